//! Why a drill failed, with its documented exit code and a `hint:` where the user can act.

use std::path::PathBuf;

use crate::exit::ExitStatus;

/// The exit code of a clone that did not recover: missing WAL, a label from another backup,
/// a server error. pgdrill's other codes are [`ExitStatus`]'s, with these meanings: 0 proven,
/// 1 a check failed, 2 usage, 4 this machine cannot run the drill, 6 timeout, 7 work
/// directory, 70 internal; a signal N ends it with 128 + N (README "pgdrill").
pub const NOT_RECOVERED: u8 = ExitStatus::NotRecovered as u8;

/// A drill that could not be completed or did not prove the backup.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// A file given or found could not be read.
    #[error("cannot read {path}: {source}")]
    Input {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// DATADIR lacks what every data directory has.
    #[error("{path} is not a PostgreSQL data directory: {reason}")]
    NotDataDirectory {
        /// The directory.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// Neither `--backup-label` nor `DATADIR/backup_label`.
    #[error("no backup_label: {data_dir} has none and --backup-label was not given")]
    NoBackupLabel {
        /// The data directory.
        data_dir: PathBuf,
    },
    /// A label or map that does not parse.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tablespace that cannot be found, or a `-T` that maps nothing.
    #[error("{0}")]
    Tablespace(String),
    /// Older than 10: no amcheck.
    #[error("PostgreSQL {major} is not supported: pgdrill needs 10 or later (amcheck)")]
    Unsupported {
        /// From PG_VERSION.
        major: u32,
    },
    /// No `postgres` of the data directory's major.
    #[error("no PostgreSQL {major} server binaries found{}", tried_list(.tried))]
    NoBinaries {
        /// The major version needed.
        major: u32,
        /// Directories tried, with what they held.
        tried: Vec<String>,
    },
    /// A 14+ server and no `pg_amcheck` anywhere.
    #[error(
        "no pg_amcheck found (beside postgres, pg_config --bindir, /usr/lib/postgresql/*/bin)"
    )]
    NoPgAmcheck,
    /// PostgreSQL refuses to run as root.
    #[error("{path} belongs to root, and PostgreSQL does not run as root")]
    RootOwned {
        /// The data directory.
        path: PathBuf,
    },
    /// overlayfs over a directory a running server writes to.
    #[error("{path} is the data directory of a running server (pid {pid}); overlayfs needs a lower layer that does not change")]
    InUse {
        /// The data directory.
        path: PathBuf,
        /// The live postmaster.
        pid: i32,
    },
    /// No clone method worked.
    #[error("cannot clone with {method}: {reason}")]
    CloneUnavailable {
        /// The method asked for.
        method: &'static str,
        /// Why each one tried failed.
        reason: String,
    },
    /// The work directory could not be written.
    #[error("cannot {what} {path}: {source}")]
    Workspace {
        /// The operation.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server user cannot reach the work directory.
    #[error("the server runs as {user}, who cannot pass through {path}")]
    Unreachable {
        /// The directory in the way.
        path: PathBuf,
        /// The data directory's owner.
        user: String,
    },
    /// A program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The label does not belong to this copy.
    #[error("the backup_label belongs to another backup: {0}")]
    ForeignLabel(String),
    /// Replay ran out of WAL before the backup's end.
    #[error("recovery needs WAL that is missing: {segment}{} ({fatal})", .wal_end.as_ref().map(|lsn| format!(", where the WAL ends at {lsn}")).unwrap_or_default())]
    MissingWal {
        /// The segment missing or incomplete.
        segment: String,
        /// Where replay found the end of the WAL.
        wal_end: Option<String>,
        /// The server's message.
        fatal: String,
        /// Where the WAL was looked for, for the hint.
        wal_source: String,
    },
    /// The server stopped for another reason.
    #[error("the server did not recover: {0}")]
    RecoveryFailed(String),
    /// `--timeout` ran out.
    #[error("the clone was not consistent within {seconds} s (last server log line: {last})")]
    Timeout {
        /// The limit.
        seconds: u64,
        /// What the server was doing.
        last: String,
    },
    /// No role to connect as, or the connection failed.
    #[error("cannot connect to the recovered server: {0}")]
    Connect(String),
    /// Some checks found problems.
    #[error("{count} check(s) failed: {first}")]
    ChecksFailed {
        /// How many checks failed.
        count: usize,
        /// The first finding.
        first: String,
    },
    /// The recovered server answered one of pgdrill's own queries with a value of another
    /// type, or NULL.
    #[error("unexpected answer of the recovered server ({what}): {source}")]
    Answer {
        /// What was asked.
        what: &'static str,
        /// tokio-postgres' conversion error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// SIGINT or SIGTERM.
    #[error("interrupted by {0}; the server was stopped and the clone removed")]
    Interrupted(nix::sys::signal::Signal),
    /// A tar backup (`pgbase -F t`) that cannot be drilled.
    #[error("cannot drill the tar backup {path}: {reason}")]
    TarBackup {
        /// The backup directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A checksum file of a tar backup does not match, or cannot be read.
    #[error(transparent)]
    Checksum(#[from] crate::checksum::VerifyError),
    /// The key of an encrypted tar backup.
    #[error(transparent)]
    Key(#[from] crate::config::EncryptionError),
    /// A bug or an unexpected system failure.
    #[error("internal error: {0}")]
    Internal(String),
}

fn tried_list(tried: &[String]) -> String {
    if tried.is_empty() {
        String::new()
    } else {
        format!(" (found: {})", tried.join(", "))
    }
}

impl DrillError {
    /// A file given or found could not be read.
    pub fn input(path: &std::path::Path, source: std::io::Error) -> DrillError {
        DrillError::Input {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The work directory could not be written.
    pub fn workspace(
        what: &'static str,
        path: &std::path::Path,
        source: std::io::Error,
    ) -> DrillError {
        DrillError::Workspace {
            what,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The documented exit code.
    pub fn exit_code(&self) -> u8 {
        use DrillError::*;
        let status = match self {
            Input { .. }
            | NotDataDirectory { .. }
            | NoBackupLabel { .. }
            | BadFile { .. }
            | Tablespace(_)
            | Key(_) => ExitStatus::Usage,
            TarBackup { .. } | Checksum(_) => ExitStatus::BackupFailed,
            Unsupported { .. }
            | NoBinaries { .. }
            | NoPgAmcheck
            | RootOwned { .. }
            | InUse { .. }
            | CloneUnavailable { .. }
            | Spawn { .. }
            | Connect(_) => ExitStatus::Server,
            Workspace { .. } | Unreachable { .. } => ExitStatus::Output,
            ForeignLabel(_) | MissingWal { .. } | RecoveryFailed(_) => return NOT_RECOVERED,
            Timeout { .. } => ExitStatus::Timeout,
            ChecksFailed { .. } => ExitStatus::BackupFailed,
            Interrupted(signal) => return 128 + *signal as u8,
            Answer { .. } | Internal(_) => ExitStatus::Internal,
        };
        status.code()
    }

    /// What the user can do, when they can.
    pub fn hint(&self) -> Option<String> {
        match self {
            DrillError::NoBackupLabel { .. } => Some(
                "pass the label pgpost printed or wrote (pgpost --output-dir DIR) with \
                 --backup-label DIR/backup_label; without it the copy would get crash recovery, \
                 which can finish without an error on a copy that is corrupt"
                    .into(),
            ),
            DrillError::NoBinaries { major, .. } => Some(format!(
                "install PostgreSQL {major}'s server or name its bin directory with --pg-bindir"
            )),
            DrillError::NoPgAmcheck => Some(
                "install a PostgreSQL 14 or later client (Debian: postgresql-client-15)".into(),
            ),
            DrillError::RootOwned { .. } => Some(
                "drill a copy owned by the database's OS user (chown -R postgres: the copy)".into(),
            ),
            DrillError::InUse { .. } => Some(
                "drill a snapshot of it, or use --clone copy (a copy of a live directory is only \
                 as good as its backup_label)"
                    .into(),
            ),
            DrillError::CloneUnavailable { .. } => Some(
                "--clone copy always works; reflink needs --work-dir on DATADIR's file system"
                    .into(),
            ),
            DrillError::Unreachable { .. } => Some(
                "point TMPDIR or --work-dir at a directory the data directory's owner can reach"
                    .into(),
            ),
            DrillError::ForeignLabel(_) => Some(
                "use the backup_label that pgpost returned for the snapshot or copy you drill"
                    .into(),
            ),
            DrillError::MissingWal { wal_source, .. } => Some(format!(
                "{wal_source} must hold every WAL segment from the backup's start to its end \
                 (pgpost's archive check proves it, docs/wal-archive.md); check archive_command and \
                 pg_stat_archiver"
            )),
            DrillError::Timeout { .. } => {
                Some("raise --timeout when recovery needs to replay a lot of WAL".into())
            }
            DrillError::Connect(_) => Some(
                "pgdrill connects as the data directory owner's name, then postgres; \
                 one of them must be a role of the backed-up cluster"
                    .into(),
            ),
            DrillError::Key(error) => crate::exit::Failure::hint(error),
            _ => None,
        }
    }
}
