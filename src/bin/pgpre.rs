//! `pgpre`: starts a non-exclusive backup held by a detached co-process and prints the start LSN.

use std::process::ExitCode;

use clap::Parser;
use safe_backup::backup::post;
use safe_backup::backup::{spawn, BackupOptions};
use safe_backup::cli::Pgpre;
use safe_backup::config::{Config, DEFAULT_CONFIG};
use safe_backup::conn::ConnSettings;
use safe_backup::exit::fail;

fn main() -> ExitCode {
    let cli = Pgpre::parse();
    if cli.common.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    let resolved = Config::for_hooks(&cli.common, Some(&cli.start), None, "pgpre co-process");
    let (config, settings) = match resolved {
        Ok(resolved) => resolved,
        Err(error) => return fail("pgpre", &error),
    };
    let mut options = BackupOptions::from_config(&config.backup);
    if cli.list {
        return list(&settings, &options);
    }
    // The co-process runs in "/": make the log path absolute first.
    if let Some(log_file) = options.log_file.as_mut() {
        if let Ok(absolute) = std::path::absolute(&*log_file) {
            *log_file = absolute;
        }
    }
    // No thread or runtime may exist before this fork.
    match spawn::start_detached(settings, options) {
        Ok(report) => {
            for warning in &report.warnings {
                eprintln!("pgpre: warning: {warning}");
            }
            println!("{}", report.start_lsn);
            ExitCode::SUCCESS
        }
        Err(error) => fail("pgpre", &error),
    }
}
/// `pgpre --list`: one line per backup name.
fn list(settings: &ConnSettings, options: &BackupOptions) -> ExitCode {
    let runtime = match safe_backup::backup::runtime() {
        Ok(runtime) => runtime,
        Err(error) => return fail("pgpre", &error),
    };
    let backups = match runtime.block_on(post::list_backups(settings, options)) {
        Ok(backups) => backups,
        Err(error) => return fail("pgpre", &error),
    };
    println!("name\tstate\tholder\tstart_lsn\tstarted_at\tlabel\terror");
    for backup in backups {
        let holder = match (backup.state.as_str(), backup.holder_alive) {
            ("running" | "done", true) => "alive",
            ("running" | "done", false) => "gone",
            _ => "-",
        };
        println!(
            "{}\t{}\t{holder}\t{}\t{}\t{}\t{}",
            backup.name,
            backup.state,
            backup.start_lsn,
            backup.started_at,
            backup.label,
            backup.error
        );
    }
    ExitCode::SUCCESS
}
