//! Why a restore stops: [`RestoreError`], its exit status and its hint.

use std::path::PathBuf;
use std::sync::Arc;

use super::decrypt::DecryptError;
use super::exec::ToolError;
use super::script;
use super::set::SetError;
use super::target::TargetError;
use super::verify::VerifyError;
use crate::config::encryption::EncryptionError;
use crate::exit::{ExitStatus, Failure};

/// A failure that stops the restore. Everything before the globals leaves the server untouched.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// No set, a bad stamp, a glob matching nothing.
    #[error(transparent)]
    Set(#[from] SetError),
    /// A file does not match its checksum, or is missing: nothing was touched.
    #[error("{0}: nothing was restored")]
    Verify(#[from] VerifyError),
    /// The target could not be read.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The set is encrypted and there is no usable key: nothing was touched.
    #[error("the dump set is encrypted: {0}")]
    Key(Arc<EncryptionError>),
    /// An encrypted file does not open with the key, or is damaged: nothing was touched.
    #[error("{0}: nothing was restored")]
    Decrypt(#[from] DecryptError),
    /// Databases that hold objects, without `--clean`: nothing was touched.
    #[error("{}: nothing was restored", refused.iter().map(|(db, why)| format!("database {db:?} {why}")).collect::<Vec<_>>().join("; "))]
    Refused {
        /// Each database and why.
        refused: Vec<(String, String)>,
    },
    /// A file of the set could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A createdb.sql that cannot be applied to an existing database.
    #[error("{path}: {source}")]
    Createdb {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: script::UnexpectedCreatedb,
    },
    /// pg_restore could not be run.
    #[error("cannot use {program}: {reason}")]
    Tool {
        program: PathBuf,
        /// Why.
        reason: String,
    },
    /// The globals failed: no database was restored.
    #[error("globals {file}: {source}; no database was restored")]
    Globals {
        /// The globals file.
        file: PathBuf,
        /// psql's failure.
        #[source]
        source: ToolError,
    },
    /// SIGINT or SIGTERM.
    #[error("interrupted by a signal")]
    Interrupted,
}

impl Failure for RestoreError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            RestoreError::Set(SetError::Read { .. }) | RestoreError::Read { .. } => {
                ExitStatus::Output
            }
            RestoreError::Set(_) | RestoreError::Tool { .. } => ExitStatus::Usage,
            RestoreError::Target(TargetError::Connect(e)) => e.exit_status(),
            RestoreError::Target(TargetError::Query { .. }) => ExitStatus::Server,
            RestoreError::Key(e) => e.exit_status(),
            RestoreError::Decrypt(e) => e.exit_status(),
            RestoreError::Verify(_)
            | RestoreError::Refused { .. }
            | RestoreError::Createdb { .. }
            | RestoreError::Globals { .. }
            | RestoreError::Interrupted => ExitStatus::BackupFailed,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            RestoreError::Set(SetError::NoMatch { .. }) => {
                Some("globs match database names as written in createdb.sql; quote them for the shell".into())
            }
            RestoreError::Set(SetError::NoSuchStamp { .. }) => {
                Some("--timestamp takes a stamp from a file name of the set, e.g. of pg_globals_<stamp>.sql".into())
            }
            RestoreError::Set(SetError::Glob(e)) => e.hint(),
            RestoreError::Key(e) => e.hint(),
            RestoreError::Decrypt(e) => e.hint(),
            RestoreError::Verify(VerifyError::NoChecksum(_)) => Some(
                "restore a set written with checksum_algorithm, or restore this file by hand".into(),
            ),
            RestoreError::Verify(_) => Some(
                "the file changed since it was written: restore another set (--timestamp)".into(),
            ),
            RestoreError::Refused { .. } => Some(
                "--clean restores into them anyway (pg_restore --clean --if-exists), or leave them out with DBNAME globs"
                    .into(),
            ),
            RestoreError::Target(TargetError::Connect(e)) => e.hint(),
            RestoreError::Tool { .. } => Some(
                "install PostgreSQL's client tools, or point dump.bin_directory (-B) at them".into(),
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses() {
        let refused = RestoreError::Refused {
            refused: vec![("b1".into(), "holds 4 relations".into())],
        };
        assert_eq!(refused.exit_status(), ExitStatus::BackupFailed);
        assert_eq!(
            refused.to_string(),
            "database \"b1\" holds 4 relations: nothing was restored"
        );
        assert!(refused.hint().unwrap().contains("--clean"));
        let no_set = RestoreError::Set(SetError::BadStamp("x".into()));
        assert_eq!(no_set.exit_status(), ExitStatus::Usage);
    }
}
