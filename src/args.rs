//! Command-line definitions (clap) of `pgpre` and `pgpost`, and the connection flags `pgback` shares.
//!
//! Definitions only: what a flag means for a config section is decided where the section is
//! ([`crate::config`]), so that the binaries never copy a flag into the config by hand. Every
//! override is an `Option`; an `env = ...` variable fills it when the flag is absent.

use std::path::PathBuf;

use crate::exit::LogFormat;
use crate::values::Seconds;

/// Start a non-exclusive PostgreSQL backup and hand its session to a detached
/// co-process, which holds backup mode until `pgpost` stops it.
///
/// Prints the start LSN on stdout and exits 0 once the backup is running and
/// recorded in the state table, so `lsn=$(pgpre)` returns at once. Run the
/// snapshot or copy next, then `pgpost`.
#[derive(clap::Parser, Debug)]
#[command(
    name = "pgpre",
    version,
    disable_help_flag = true,
    after_help = crate::exit::exit_codes_help(),
    group(clap::ArgGroup::new("json_with").args(["list", "exec"]))
)]
pub struct Pgpre {
    /// Config file, connection, backup name and verbosity.
    #[command(flatten)]
    pub common: CommonArgs,

    /// pgpre's `[backup]` keys.
    #[command(flatten)]
    pub start: StartArgs,

    /// List the backups in the state table (one line per name) and exit
    #[arg(long, conflicts_with = "exec")]
    pub list: bool,

    /// One process, no co-process: start the backup, run CMD (after `--`, without a shell,
    /// with SAFE_BACKUP_START_LSN, SAFE_BACKUP_START_WAL_FILE, SAFE_BACKUP_LABEL and
    /// SAFE_BACKUP_NAME set; its stdout goes to pgpre's stderr), then stop the backup as
    /// pgpost does when CMD exits 0, else fail it (exit 9)
    #[arg(long, requires = "command")]
    pub exec: bool,

    /// With --exec: also write backup_label and tablespace_map into DIR (as pgpost -o)
    #[arg(short = 'o', long, value_name = "DIR", requires = "exec")]
    pub output_dir: Option<PathBuf>,

    /// With --exec: print the result as pgpost --json does; with --list: the running backups
    /// and the recent history as one JSON document
    #[arg(long, requires = "json_with")]
    pub json: bool,

    /// The command --exec runs, after `--`
    #[arg(last = true, value_name = "CMD", requires = "exec")]
    pub command: Vec<std::ffi::OsString>,
}

/// Stop the backup that `pgpre` started, once the snapshot or copy is done.
///
/// Waits (event-driven) until the co-process has called the stop function,
/// then prints backup_label byte for byte on stdout. Exits 0 only when the
/// backup is complete.
#[derive(clap::Parser, Debug)]
#[command(
    name = "pgpost",
    version,
    disable_help_flag = true,
    after_help = crate::exit::exit_codes_help()
)]
pub struct Pgpost {
    /// Config file, connection, backup name and verbosity.
    #[command(flatten)]
    pub common: CommonArgs,

    /// Also write backup_label and tablespace_map (mode 0600, fsynced) into DIR,
    /// e.g. the snapshot's data directory; never the live one
    #[arg(short = 'o', long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,

    /// Print label, LSNs, times, backup_label and tablespace_map as JSON
    #[arg(long)]
    pub json: bool,

    /// Do not stop anything: print the last complete backup again
    #[arg(long)]
    pub fetch: bool,

    /// pgpost's `[backup]` keys.
    #[command(flatten)]
    pub stop: StopArgs,
}

/// Flags every hook binary takes: where the config is, how to reach the server, which backup.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Configuration file [default: /etc/safe-backup/config.toml when it exists]
    #[arg(short = 'c', long, env = "SAFE_BACKUP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the documented default configuration and exit
    #[arg(long)]
    pub print_default_config: bool,

    /// How to reach the server.
    #[command(flatten)]
    pub server: ServerArgs,

    /// Which backup, and its state table.
    #[command(flatten)]
    pub backup: BackupArgs,

    /// Write the Prometheus metrics of this run (textfile-collector format: times, outcome,
    /// the backup's LSNs) to FILE when it ends, failed or not; replaced atomically
    #[arg(long, env = "SAFE_BACKUP_METRICS_FILE", value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,

    /// -v, --log-format and --help.
    #[command(flatten)]
    pub log: LogArgs,
}

/// The log flags of the hook pair and pgbase, and `--help` (without `-h`, which is `--host`).
#[derive(clap::Args, Debug, Clone)]
pub struct LogArgs {
    /// More log output: -v info, -vv debug on stderr; pgpre's co-process log gets
    /// debug (-v) and trace (-vv) lines
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log lines as text or json (one object per line), on stderr and in the co-process log
    #[arg(
        long,
        env = "SAFE_BACKUP_LOG_FORMAT",
        value_name = "FORMAT",
        value_enum,
        default_value_t
    )]
    pub log_format: LogFormat,

    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// The connection flags of every binary (`pgpre`, `pgpost`, `pgback`): a connection string
/// and single keys overriding it.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServerArgs {
    /// Connection string or URI, e.g. "host=db1 user=backup" or postgresql://backup@db1/postgres
    /// (libpq conventions: PG* variables, ~/.pgpass, pg_service.conf, sslmode)
    #[arg(short = 'd', long = "dbname", value_name = "CONNINFO")]
    pub conninfo: Option<String>,

    /// Server host or socket directory (overrides the connection string)
    #[arg(short = 'h', long, value_name = "HOST")]
    pub host: Option<String>,

    /// Server port (overrides the connection string)
    #[arg(short = 'p', long, value_name = "PORT")]
    pub port: Option<u16>,

    /// User name (overrides the connection string)
    #[arg(short = 'U', long, value_name = "USER")]
    pub username: Option<String>,
}

/// The `[backup]` keys both hook binaries take: which backup and where its state table is.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct BackupArgs {
    /// Schema of the state table [config: backup.schema; default: first on search_path]
    #[arg(long, env = "SAFE_BACKUP_SCHEMA", value_name = "SCHEMA")]
    pub schema: Option<String>,

    /// Name of the state table [config: backup.table; default: backup]
    #[arg(long, env = "SAFE_BACKUP_TABLE", value_name = "TABLE")]
    pub table: Option<String>,

    /// Name of the backup, so several can run at once, each with its own pgpre and
    /// pgpost [config: backup.name; default: default]
    #[arg(short = 'n', long, env = "SAFE_BACKUP_NAME", value_name = "NAME")]
    pub name: Option<String>,

    /// Where a backup of a hot standby keeps its state between pgpre and pgpost (a private
    /// directory; nothing is written to a standby) [config: backup.state_dir; default:
    /// $XDG_RUNTIME_DIR/safe-backup, else /run/safe-backup]
    #[arg(long, env = "SAFE_BACKUP_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// With PGHOST at a hot standby: its primary (connection string; the password from
    /// ~/.pgpass, PGPASSFILE or PGPASSWORD). pgpre checks it is the primary of this standby
    /// and archives; pgpost makes it switch the last WAL segment out
    /// [config: backup.primary_conninfo]
    #[arg(long, env = "SAFE_BACKUP_PRIMARY", value_name = "CONNINFO")]
    pub primary: Option<String>,

    /// The archive check of both binaries.
    #[command(flatten)]
    pub archive: ArchiveArgs,
}

/// The archive check: after the stop, pgpost (and pgpre --exec) proves that every WAL segment
/// the backup needs is archived; before the start, pgpre checks that archiving is on.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ArchiveArgs {
    /// auto: check the archive (--wal-archive, else --restore-command, else the server's
    /// pg_stat_archiver); none: check nothing (WAL is copied some other way)
    /// [config: backup.archive_check; default: auto]
    #[arg(long, env = "SAFE_BACKUP_ARCHIVE_CHECK", value_name = "auto|none")]
    pub archive_check: Option<ArchiveCheck>,

    /// Check that each segment is in DIR (plain, .gz .zst .lz4 .bz2 .xz, pgBackRest's
    /// -SHA1 names) [config: backup.wal_archive]
    #[arg(long, env = "SAFE_BACKUP_WAL_ARCHIVE", value_name = "DIR")]
    pub wal_archive: Option<PathBuf>,

    /// Fetch each segment with this restore_command (%f, %p; run by sh) into a private
    /// temporary directory and check its page header [config: backup.restore_command]
    #[arg(long, env = "SAFE_BACKUP_RESTORE_COMMAND", value_name = "CMD")]
    pub restore_command: Option<String>,

    /// How long the archive check waits for a segment; restarts whenever another one arrives;
    /// 0 = no limit [config: backup.archive_timeout; default: 60s]
    #[arg(long, env = "SAFE_BACKUP_ARCHIVE_TIMEOUT", value_name = "DURATION")]
    pub archive_timeout: Option<Seconds>,

    /// Deprecated: false is --archive-check=none, true is --archive-check=auto (the stop
    /// never waits for archiving any more) [config: backup.wait_for_archive]
    #[arg(long, env = "SAFE_BACKUP_WAIT_FOR_ARCHIVE", value_name = "BOOL")]
    pub wait_for_archive: Option<bool>,
}

/// Whether the backup's WAL is checked in the archive.
#[derive(clap::ValueEnum, serde::Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveCheck {
    /// In `--wal-archive`, else through `--restore-command`, else by the server's archiver.
    #[default]
    Auto,
    /// Not at all: the WAL reaches the backup some other way.
    None,
}

/// The `[backup]` keys only `pgpre` takes: how the backup starts and how long it is held.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct StartArgs {
    /// Backup label [config: backup.label; default: "safe-backup <UTC time>"]
    #[arg(short = 'l', long, env = "SAFE_BACKUP_LABEL")]
    pub label: Option<String>,

    /// How the start's checkpoint runs: fast (immediate: pgpre returns in seconds, with a
    /// burst of writes) or spread (paced over checkpoint_timeout x
    /// checkpoint_completion_target: minutes) [config: backup.checkpoint; default: fast]
    #[arg(
        long,
        env = "SAFE_BACKUP_CHECKPOINT",
        value_name = "fast|spread",
        conflicts_with_all = ["fast", "spread"]
    )]
    pub checkpoint: Option<Checkpoint>,

    /// Same as --checkpoint=fast
    #[arg(long, conflicts_with = "spread")]
    pub fast: bool,

    /// Same as --checkpoint=spread
    #[arg(long)]
    pub spread: bool,

    /// Seconds to wait for the backup to start; 0 = no limit [config: backup.start_timeout]
    #[arg(long, env = "SAFE_BACKUP_START_TIMEOUT", value_name = "SECONDS")]
    pub start_timeout: Option<Seconds>,

    /// Seconds the co-process holds backup mode before failing it; 0 = no limit
    /// [config: backup.backup_timeout]
    #[arg(long, env = "SAFE_BACKUP_BACKUP_TIMEOUT", value_name = "SECONDS")]
    pub backup_timeout: Option<Seconds>,

    /// Log file of the co-process [config: backup.log_file]
    #[arg(long, env = "SAFE_BACKUP_LOG_FILE", value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

/// How the start function's checkpoint runs (pg_basebackup's `--checkpoint` spelling).
#[derive(clap::ValueEnum, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Checkpoint {
    /// Immediate: the start returns in seconds, at the price of a burst of writes.
    Fast,
    /// Paced over `checkpoint_timeout` x `checkpoint_completion_target`: minutes.
    Spread,
}

/// The `[backup]` keys only `pgpost` takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct StopArgs {
    /// Seconds to wait for the backup to complete; 0 = no limit [config: backup.stop_timeout]
    #[arg(long, env = "SAFE_BACKUP_STOP_TIMEOUT", value_name = "SECONDS")]
    pub stop_timeout: Option<Seconds>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Pgpre::command().debug_assert();
        Pgpost::command().debug_assert();
    }

    #[test]
    fn help_ends_with_the_exit_codes() {
        for mut command in [Pgpre::command(), Pgpost::command()] {
            let help = command.render_long_help().to_string();
            assert!(help.contains("Exit codes"), "{help}");
            assert!(help.contains("  70  internal error"), "{help}");
        }
    }
}
