//! `pgpre`: starts a non-exclusive backup held by a detached co-process and prints the start LSN.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use safe_backup::backup::post;
use safe_backup::backup::{spawn, BackupOptions};
use safe_backup::cli::CommonArgs;
use safe_backup::config::DEFAULT_CONFIG;
use safe_backup::conn::ConnSettings;
use safe_backup::exit::{exit_codes_help, fail};

/// Start a non-exclusive PostgreSQL backup and hand its session to a detached
/// co-process, which holds backup mode until `pgpost` stops it.
///
/// Prints the start LSN on stdout and exits 0 once the backup is running and
/// recorded in the state table, so `lsn=$(pgpre)` returns at once. Run the
/// snapshot or copy next, then `pgpost`.
#[derive(Parser, Debug)]
#[command(
    name = "pgpre",
    version,
    disable_help_flag = true,
    after_help = exit_codes_help()
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,

    /// Backup label [config: backup.label; default: "safe-backup <UTC time>"]
    #[arg(short = 'l', long, env = "SAFE_BACKUP_LABEL")]
    label: Option<String>,

    /// Immediate checkpoint [config: backup.fast_checkpoint]
    #[arg(long, conflicts_with = "spread")]
    fast: bool,

    /// Spread checkpoint, the default (as PostgreSQL and pgpre.sh)
    #[arg(long)]
    spread: bool,

    /// Seconds to wait for the backup to start; 0 = no limit [config: backup.start_timeout]
    #[arg(long, env = "SAFE_BACKUP_START_TIMEOUT", value_name = "SECONDS")]
    start_timeout: Option<u64>,

    /// Seconds the co-process holds backup mode before failing it; 0 = no limit
    /// [config: backup.backup_timeout]
    #[arg(long, env = "SAFE_BACKUP_BACKUP_TIMEOUT", value_name = "SECONDS")]
    backup_timeout: Option<u64>,

    /// Whether the stop waits for WAL archiving [config: backup.wait_for_archive]
    #[arg(long, env = "SAFE_BACKUP_WAIT_FOR_ARCHIVE", value_name = "BOOL")]
    wait_for_archive: Option<bool>,

    /// List the backups in the state table (one line per name) and exit
    #[arg(long)]
    list: bool,

    /// Log file of the co-process [config: backup.log_file]
    #[arg(long, env = "SAFE_BACKUP_LOG_FILE", value_name = "FILE")]
    log_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.common.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    let (config, settings) = match cli.common.resolve("pgpre co-process") {
        Ok(resolved) => resolved,
        Err(error) => return fail("pgpre", &error),
    };
    let mut backup = config.backup;
    if let Some(label) = cli.label {
        backup.label = label;
    }
    if cli.fast {
        backup.fast_checkpoint = true;
    }
    if cli.spread {
        backup.fast_checkpoint = false;
    }
    backup.start_timeout = cli.start_timeout.unwrap_or(backup.start_timeout);
    backup.backup_timeout = cli.backup_timeout.unwrap_or(backup.backup_timeout);
    backup.wait_for_archive = cli.wait_for_archive.unwrap_or(backup.wait_for_archive);
    let mut options = BackupOptions::from_config(&backup);
    if cli.list {
        return list(&settings, &options);
    }
    if let Some(log_file) = cli.log_file {
        options.log_file = Some(log_file);
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
