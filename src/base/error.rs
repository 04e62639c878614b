//! Why `pgbase` failed: [`BaseError`], with its exit status and hint.

use std::io;
use std::path::PathBuf;

use crate::backup::BackupError;
use crate::config::EncryptionError;
use crate::config::SetupError;
use crate::dump::UploadReport;
use crate::exit::{ExitStatus, Failure};
use crate::remote::RemoteError;
use crate::replication::ReplicationError;
use crate::server::ServerVersion;

/// The name of the file that marks a backup directory as not finished.
pub const INCOMPLETE_MARKER: &str = "pgbase.incomplete";

/// A failed `pgbase` run.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    /// Connection settings.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The replication connection or a command on it.
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    /// `--encrypt`'s key cannot be used.
    #[error(transparent)]
    Encryption(#[from] EncryptionError),
    /// A bad flag value the parser cannot check.
    #[error("{0}")]
    Usage(String),
    /// `-D` (or a tablespace's target) already holds files.
    #[error("directory \"{}\" exists but is not empty", dir.display())]
    NotEmpty {
        /// The directory.
        dir: PathBuf,
        /// Whether it is a tablespace's target rather than `-D`.
        tablespace: bool,
    },
    /// The server is older than 10.
    #[error("server version {0} is not supported: pgbase needs PostgreSQL 10 or later")]
    Unsupported(ServerVersion),
    /// `-Z server-...` asked of a server older than 15.
    #[error("-Z server-... needs PostgreSQL 15 or later; the server is {0}")]
    ServerCompression(ServerVersion),
    /// Writing the backup failed.
    #[error("could not write \"{}\": {source}", path.display())]
    Output {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The server's archive is not a tar stream we can read.
    #[error("bad tar stream in {archive}: {source}")]
    Tar {
        /// `base.tar` or `<oid>.tar`.
        archive: String,
        /// Why.
        source: io::Error,
    },
    /// The stream did not follow the protocol as the backup needs it.
    #[error("{0}")]
    Stream(String),
    /// SIGINT or SIGTERM.
    #[error(
        "interrupted by {signal}: the partial backup in \"{}\" was {}",
        dir.display(),
        if *kept { "kept (--no-clean), marked pgbase.incomplete" } else { "removed" }
    )]
    Interrupted {
        /// `SIGINT` or `SIGTERM`.
        signal: &'static str,
        /// The backup directory.
        dir: PathBuf,
        /// `--no-clean`: the partial backup is left.
        kept: bool,
    },
    /// `--restore`: SIGINT or SIGTERM; what it wrote is removed, the backup is untouched.
    #[error(
        "interrupted by {signal}: what the restore wrote into \"{}\" was removed; the backup is untouched",
        dir.display()
    )]
    RestoreInterrupted {
        /// `SIGINT` or `SIGTERM`.
        signal: &'static str,
        /// `-D`.
        dir: PathBuf,
    },
    /// `-X none`: archiving is off, or the backup's WAL is not in the archive.
    #[error(transparent)]
    Archive(#[from] BackupError),
    /// The store of `--upload` or `--download` failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// A file did not upload (the local backup is complete, the remote one is not).
    #[error("{message}")]
    Upload {
        /// What did not arrive, and where the backup stands.
        message: String,
        /// The upload stage's counts, for the metrics.
        report: Option<UploadReport>,
    },
    /// `--restore` refused the backup: not finished, not a pgbase tar backup, a checksum that
    /// does not match, an archive that cannot be decrypted or unpacked.
    #[error("cannot restore {backup}: {reason}")]
    Restore {
        /// The backup directory (or its remote name).
        backup: String,
        /// Why.
        reason: String,
    },
    /// The runtime or a signal handler could not be set up.
    #[error("internal error: {0}")]
    Internal(io::Error),
}

impl BaseError {
    /// Whether the run's files stay on disk after this failure: a backup whose WAL is not
    /// archived yet becomes usable once it is.
    pub fn keeps_backup(&self) -> bool {
        matches!(self, BaseError::Archive(BackupError::WalNotArchived(_)))
    }

    /// An [`BaseError::Output`] for `path`.
    pub fn output(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> BaseError {
        let path = path.into();
        move |source| BaseError::Output { path, source }
    }
}

impl Failure for BaseError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            BaseError::Setup(error) => error.exit_status(),
            BaseError::Replication(error) => error.exit_status(),
            BaseError::Encryption(error) => error.exit_status(),
            BaseError::Archive(error) => error.exit_status(),
            BaseError::Usage(_) | BaseError::NotEmpty { .. } | BaseError::ServerCompression(_) => {
                ExitStatus::Usage
            }
            BaseError::Unsupported(_) => ExitStatus::Server,
            BaseError::Output { .. } => ExitStatus::Output,
            BaseError::Tar { .. }
            | BaseError::Stream(_)
            | BaseError::Interrupted { .. }
            | BaseError::RestoreInterrupted { .. }
            | BaseError::Upload { .. }
            | BaseError::Restore { .. } => ExitStatus::BackupFailed,
            BaseError::Remote(error) => error.exit_status(),
            BaseError::Internal(_) => ExitStatus::Internal,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            BaseError::Setup(error) => error.hint(),
            BaseError::Replication(error) => error.hint(),
            BaseError::Encryption(error) => error.hint(),
            BaseError::Archive(BackupError::WalNotArchived(_)) => Some(format!(
                "the backup is kept, still marked {INCOMPLETE_MARKER}: it restores once that WAL \
                 is archived (check archive_command and the server log); then remove the marker"
            )),
            BaseError::Archive(error) => error.hint(),
            BaseError::Remote(error) => error.hint(),
            BaseError::NotEmpty {
                tablespace: false, ..
            } => Some("give -D a new or empty directory".to_owned()),
            BaseError::NotEmpty {
                tablespace: true, ..
            } => Some(
                "relocate the tablespace with -T OLDDIR=NEWDIR to a new or empty directory"
                    .to_owned(),
            ),
            BaseError::Output { source, .. }
                if source.kind() == io::ErrorKind::StorageFull
                    || source.kind() == io::ErrorKind::QuotaExceeded =>
            {
                Some(
                    "the backup's file system is full: free space there or give -D a larger one \
                     (the partial backup was removed unless --no-clean was given)"
                        .to_owned(),
                )
            }
            BaseError::ServerCompression(_) => Some(
                "compress on this side instead: -Z client-METHOD (gzip, lz4 or zstd)".to_owned(),
            ),
            _ => None,
        }
    }
}
