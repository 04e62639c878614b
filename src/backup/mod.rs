//! The physical hook pair: `pgpre`, the co-process that holds a non-exclusive backup, and
//! `pgpost`.
//!
//! Uses: config, args, conn, metrics, process, server, wal, files, shutdown, exit.
//!
//! In dependency order:
//! - `row`: what a state-table row holds: states, the decoded row, unusable rows.
//! - `table`: the state table: its SQL and its I/O (rows decoded by name).
//! - `local`: the state of a backup of a hot standby, in a private local directory.
//! - `files`: writing `backup_label` / `tablespace_map` safely.
//! - `archive`: the archive check after the stop: every segment the backup needs, found
//!   in a directory, through a restore_command or by the server's archiver.
//! - `standby`: backups of a hot standby: local state, socket, timelines, promotion.
//! - `wait`: what wakes a wait loop, the slow re-read, deadlines.
//! - `hold`: the detached co-process: start, wait for `done`, stop.
//! - `start`: starting a backup: lock, take-over, the start function, cancelled when
//!   it runs too long or `pgpre` is gone.
//! - `spawn`: `pgpre`'s fork, detach and handshake pipe.
//! - `post`: `pgpost`: ask for the stop, wait, collect the result.
//! - `exec`: `pgpre --exec`: start, run a command, stop, in one process.
//! - `list`: `pgpre --list` (a table, or with the history as JSON).
//! - `coprocess_log`: where the co-process logs (journal or file).
//! - `metrics`: the metrics file of pgpre and pgpost.
//! - `report`: what pgpre and pgpost print when they succeed.
//! - `command`: `pgpre` and `pgpost` from parsed flags to exit code.

mod archive;
mod command;
mod coprocess_log;
mod error;
mod exec;
mod files;
mod hold;
mod list;
mod local;
mod metrics;
mod post;
mod report;
mod row;
mod spawn;
mod standby;
mod start;
mod table;
mod wait;

pub use command::{pgpost, pgpre};

use std::path::PathBuf;
use std::time::Duration;

use crate::config::BackupConfig;
use crate::config::{limit, LogTarget};
use crate::exit::LogFormat;
pub use archive::{
    check_off_note, ArchiveOptions, ArchiveSource, BackupWal, CheckSession, WalArchived,
};
pub use error::BackupError;
use table::StateTable;

/// Everything the hook pair needs besides the connection, resolved from config and flags.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// The state table.
    pub table: StateTable,
    /// Where a backup of a hot standby keeps its state (nothing is written to a standby).
    pub state_dir: PathBuf,
    /// With the connection at a standby: its primary (`--primary`), checked by pgpre and
    /// made to switch the last segment out by pgpost.
    pub primary: Option<crate::conn::ConnSettings>,
    /// Label for the start function.
    pub label: String,
    /// Immediate instead of spread checkpoint.
    pub fast_checkpoint: bool,
    /// Limit on the start function (the checkpoint).
    pub start_timeout: Option<Duration>,
    /// Limit on how long backup mode is held.
    pub backup_timeout: Option<Duration>,
    /// The archive check after the stop (and pgpre's check that archiving is on).
    pub archive: archive::ArchiveOptions,
    /// Limit on `pgpost`'s wait for completion.
    pub stop_timeout: Option<Duration>,
    /// Slow re-read of the state table behind LISTEN/NOTIFY.
    pub recheck_interval: Duration,
    /// Log file of the co-process.
    pub log_file: Option<PathBuf>,
    /// The co-process's log level: info, debug with `-v`, trace with `-vv`.
    pub log_level: tracing::Level,
    /// How the co-process's log lines look (`--log-format`).
    pub log_format: LogFormat,
    /// Where the co-process logs: its file or the journal.
    pub log_target: LogTarget,
}

/// The shared [`crate::process::runtime`], its error as a [`BackupError`].
pub fn runtime() -> Result<tokio::runtime::Runtime, BackupError> {
    crate::process::runtime()
        .map_err(|error| BackupError::System(format!("cannot start the async runtime: {error}")))
}

impl BackupOptions {
    /// Resolves the `[backup]` section (an empty label becomes `safe-backup <UTC time>` when
    /// the backup starts) and the `-v` count.
    pub fn from_config(config: &BackupConfig, verbose: u8) -> BackupOptions {
        BackupOptions {
            table: StateTable::new(&config.schema, &config.table, &config.name),
            state_dir: match config.state_dir.as_os_str().is_empty() {
                true => local::default_state_dir(std::env::var_os("XDG_RUNTIME_DIR").as_deref()),
                false => config.state_dir.clone(),
            },
            primary: None,
            label: config.label.clone(),
            fast_checkpoint: config.checkpoint() == crate::args::Checkpoint::Fast,
            start_timeout: limit(config.start_timeout),
            backup_timeout: limit(config.backup_timeout),
            archive: archive::ArchiveOptions::from_config(config),
            stop_timeout: limit(config.stop_timeout),
            recheck_interval: config.recheck_interval.0.max(Duration::from_secs(1)),
            log_file: (!config.log_file.as_os_str().is_empty()).then(|| config.log_file.clone()),
            log_level: match verbose {
                0 => tracing::Level::INFO,
                1 => tracing::Level::DEBUG,
                _ => tracing::Level::TRACE,
            },
            log_format: LogFormat::Text,
            log_target: config.log_target,
        }
    }
}
