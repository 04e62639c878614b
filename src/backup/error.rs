//! Why a backup could not be started, held, stopped or collected: [`BackupError`], with its exit status and hint.

use std::path::PathBuf;

use super::row::InvalidRow;
use crate::conn::ConnError;
use crate::exit::{ExitStatus, Failure};
use crate::server::ServerVersion;

/// Why a backup could not be started, held, stopped or collected.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Connecting failed.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// A statement failed; `action` says what we were doing.
    #[error("{action}: {message}")]
    Sql {
        /// What we were doing, e.g. "starting the backup".
        action: &'static str,
        /// The server's message (with its detail), or the client error.
        message: String,
        /// The server's own hint, or ours.
        hint: Option<String>,
        /// The exit status this SQL failure maps to.
        status: ExitStatus,
        /// The SQLSTATE, when the server sent one.
        code: Option<tokio_postgres::error::SqlState>,
    },
    /// The server is older than 9.6.
    #[error("PostgreSQL {0} is not supported: non-exclusive backups need 9.6 or later")]
    UnsupportedVersion(ServerVersion),
    /// `--primary` is not the primary of this standby.
    #[error("{0}")]
    Primary(String),
    /// There is nothing for `pgpost` to stop.
    #[error("no backup in progress: {0}")]
    NoBackup(String),
    /// The backup ended in `failed`.
    #[error("backup {} failed: {reason}", crate::config::shorten_label(label))]
    Failed {
        label: String,
        /// The `error` column.
        reason: String,
    },
    /// A configured wait ran out.
    #[error("{0}")]
    Timeout(String),
    /// The co-process ended without reporting.
    #[error("{0}")]
    Coproc(String),
    /// `pgpre --exec`: the command did not succeed; the backup was failed.
    #[error("{0}")]
    CommandFailed(String),
    /// `pgpre` went away (killed, or its own limit ran out) before the start completed.
    #[error("{0}")]
    Orphaned(String),
    /// The co-process reported an error through the handshake pipe.
    #[error("{message}")]
    Reported {
        message: String,
        hint: Option<String>,
        /// Its exit status.
        status: ExitStatus,
    },
    /// Writing a result file failed.
    #[error("cannot write {path}: {source}")]
    Output {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `--output-dir` is a running cluster's data directory.
    #[error(
        "refusing to write into {0}: it is the data directory of a running server (postmaster.pid)"
    )]
    LiveDataDir(PathBuf),
    /// The state table holds a row pgpre and pgpost never write.
    #[error(transparent)]
    InvalidRow(#[from] InvalidRow),
    /// The backup is stored but its WAL is not (all) in the archive.
    #[error("{0}")]
    WalNotArchived(String),
    /// Archiving is off, so nothing would reach the archive (pgpre refuses to start).
    #[error("{0}")]
    ArchivingOff(String),
    /// Setting up the process (fork, pipe, runtime, signals) failed.
    #[error("{0}")]
    System(String),
}

impl Failure for BackupError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            BackupError::Conn(error) => error.exit_status(),
            BackupError::Sql { status, .. } | BackupError::Reported { status, .. } => *status,
            BackupError::UnsupportedVersion(_)
            | BackupError::ArchivingOff(_)
            | BackupError::Primary(_) => ExitStatus::Server,
            BackupError::WalNotArchived(_) => ExitStatus::WalNotArchived,
            BackupError::NoBackup(_) => ExitStatus::NoBackup,
            BackupError::Failed { .. }
            | BackupError::Coproc(_)
            | BackupError::Orphaned(_)
            | BackupError::InvalidRow(_) => ExitStatus::BackupFailed,
            BackupError::Timeout(_) => ExitStatus::Timeout,
            BackupError::CommandFailed(_) => ExitStatus::CommandFailed,
            BackupError::Output { .. } | BackupError::LiveDataDir(_) => ExitStatus::Output,
            BackupError::System(_) => ExitStatus::Internal,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            BackupError::Conn(error) => error.hint(),
            BackupError::Sql { hint, .. } | BackupError::Reported { hint, .. } => hint.clone(),
            BackupError::NoBackup(_) => Some("start one with pgpre first".into()),
            BackupError::Primary(_) => Some(
                "give --primary the server this standby streams from (its primary_conninfo), \
                 or leave --primary out"
                    .into(),
            ),
            BackupError::CommandFailed(_) => Some(
                "the backup was failed and backup mode ended: what the command copied is not a \
                 backup; run it again"
                    .into(),
            ),
            BackupError::InvalidRow(invalid) => Some(invalid.hint()),
            BackupError::WalNotArchived(_) => Some(
                "backup_label and tablespace_map are stored: keep the snapshot. It becomes \
                 usable once the missing WAL is archived (check archive_command and the server \
                 log); pgpost --fetch checks again"
                    .into(),
            ),
            BackupError::ArchivingOff(_) => Some(
                "set archive_mode = on and an archive_command (or archive_library) and restart, \
                 or, when the WAL reaches the backup some other way, pass --archive-check=none"
                    .into(),
            ),
            BackupError::LiveDataDir(_) => Some(
                "write backup_label into the copy or snapshot, never into the live data directory"
                    .into(),
            ),
            _ => None,
        }
    }
}

impl BackupError {
    /// Wraps a tokio-postgres error with what we were doing, the server's detail
    /// and hint, and an exit status chosen by SQLSTATE (never by message text).
    pub fn sql(action: &'static str, error: tokio_postgres::Error) -> BackupError {
        use tokio_postgres::error::SqlState;
        let Some(db) = error.as_db_error() else {
            let closed = error.is_closed();
            return BackupError::Sql {
                action,
                message: if closed {
                    "the connection to the server was lost".to_string()
                } else {
                    error.to_string()
                },
                hint: None,
                status: ExitStatus::Connection,
                code: None,
            };
        };
        let mut message = db.message().to_string();
        if let Some(detail) = db.detail() {
            message.push_str(&format!(" ({detail})"));
        }
        let status = match db.code() {
            code if *code == SqlState::INSUFFICIENT_PRIVILEGE => ExitStatus::Server,
            code if *code == SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE => ExitStatus::Server,
            code if *code == SqlState::READ_ONLY_SQL_TRANSACTION => ExitStatus::Server,
            code if *code == SqlState::UNDEFINED_FUNCTION => ExitStatus::Server,
            code if *code == SqlState::ADMIN_SHUTDOWN || *code == SqlState::CRASH_SHUTDOWN => {
                ExitStatus::Connection
            }
            _ => ExitStatus::BackupFailed,
        };
        BackupError::Sql {
            action,
            message,
            hint: db.hint().map(str::to_string),
            status,
            code: Some(db.code().clone()),
        }
    }

    /// Adds `hint` (the GRANTs to run) when this is a missing privilege.
    pub fn with_privilege_hint(mut self, privilege_hint: impl FnOnce() -> String) -> BackupError {
        if let BackupError::Sql {
            hint,
            code: Some(code),
            ..
        } = &mut self
        {
            if *code == tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE {
                *hint = Some(privilege_hint());
            }
        }
        self
    }
}
