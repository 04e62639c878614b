//! `pgpost`: stops the backup held by the co-process and prints `backup_label`.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use safe_backup::backup::post::{self, PostRequest};
use safe_backup::backup::{BackupError, BackupOptions};
use safe_backup::cli::Pgpost;
use safe_backup::config::{Config, DEFAULT_CONFIG};
use safe_backup::exit::{fail, init_logging};

fn main() -> ExitCode {
    let cli = Pgpost::parse();
    if cli.common.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    init_logging(cli.common.verbose);
    let resolved = Config::for_hooks(&cli.common, None, Some(&cli.stop), "pgpost");
    let (config, settings) = match resolved {
        Ok(resolved) => resolved,
        Err(error) => return fail("pgpost", &error),
    };
    let options = BackupOptions::from_config(&config.backup);
    let request = PostRequest {
        output_dir: cli.output_dir,
        fetch: cli.fetch,
    };
    let runtime = match safe_backup::backup::runtime() {
        Ok(runtime) => runtime,
        Err(error) => return fail("pgpost", &error),
    };
    let mut progress = |line: &str| eprintln!("pgpost: {line}");
    let completed =
        match runtime.block_on(post::finish(&settings, &options, &request, &mut progress)) {
            Ok(completed) => completed,
            Err(error) => return fail("pgpost", &error),
        };
    let row = &completed.row;
    let mut stdout = std::io::stdout().lock();
    let written = if cli.json {
        let json = serde_json::json!({
            "state": row.state.as_str(),
            "label": row.label,
            "start_lsn": row.start_lsn,
            "stop_lsn": row.stop_lsn,
            "started_at": row.started_at,
            "finished_at": row.finished_at,
            "backup_label": row.backup_label,
            "tablespace_map": row.tablespace_map.as_deref().filter(|map| !map.is_empty()),
            "files": completed.files,
        });
        writeln!(stdout, "{json:#}")
    } else {
        stdout.write_all(row.backup_label.as_deref().unwrap_or_default().as_bytes())
    };
    if let Err(source) = written.and_then(|()| stdout.flush()) {
        let error = BackupError::Output {
            path: "standard output".into(),
            source,
        };
        return fail("pgpost", &error);
    }
    ExitCode::SUCCESS
}
