//! `pgpost`: stops the backup held by the co-process and prints `backup_label`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use safe_backup::backup::post::{self, PostRequest};
use safe_backup::backup::{BackupError, BackupOptions};
use safe_backup::cli::CommonArgs;
use safe_backup::config::DEFAULT_CONFIG;
use safe_backup::exit::{exit_codes_help, fail, init_logging};

/// Stop the backup that `pgpre` started, once the snapshot or copy is done.
///
/// Waits (event-driven) until the co-process has called the stop function,
/// then prints backup_label byte for byte on stdout. Exits 0 only when the
/// backup is complete.
#[derive(Parser, Debug)]
#[command(
    name = "pgpost",
    version,
    disable_help_flag = true,
    after_help = exit_codes_help()
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,

    /// Also write backup_label and tablespace_map (mode 0600, fsynced) into DIR,
    /// e.g. the snapshot's data directory; never the live one
    #[arg(short = 'o', long, value_name = "DIR")]
    output_dir: Option<PathBuf>,

    /// Print label, LSNs, times, backup_label and tablespace_map as JSON
    #[arg(long)]
    json: bool,

    /// Do not stop anything: print the last complete backup again
    #[arg(long)]
    fetch: bool,

    /// Seconds to wait for the backup to complete; 0 = no limit [config: backup.stop_timeout]
    #[arg(long, env = "SAFE_BACKUP_STOP_TIMEOUT", value_name = "SECONDS")]
    stop_timeout: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.common.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    init_logging(cli.common.verbose);
    let (config, settings) = match cli.common.resolve("pgpost") {
        Ok(resolved) => resolved,
        Err(error) => return fail("pgpost", &error),
    };
    let mut backup = config.backup;
    backup.stop_timeout = cli.stop_timeout.unwrap_or(backup.stop_timeout);
    let options = BackupOptions::from_config(&backup);
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
