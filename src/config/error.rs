//! Why a configuration file could not be used: [`ConfigError`], with its exit status.

use std::path::PathBuf;

use super::backup;
use crate::exit::{ExitStatus, Failure};

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named with `-c` could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a key or value we do not accept.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending key or value.
        line: usize,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A value is well-typed but not acceptable.
    #[error("{path}: invalid value for {key}: {message}")]
    Value {
        /// The file (or "command line", or `file:line` for a converted pg_back.conf).
        path: PathBuf,
        /// The key, as `section.key` (`dump.databases."name".key` for a per-database one).
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// A section's [`backup::InvalidKey`], found in `path` (a file, or "command line").
    pub(super) fn invalid_key(
        path: impl Into<PathBuf>,
        invalid: backup::InvalidKey,
    ) -> ConfigError {
        ConfigError::Value {
            path: path.into(),
            key: invalid.key.to_string(),
            message: invalid.message,
        }
    }
}

impl Failure for ConfigError {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Usage
    }
    fn hint(&self) -> Option<String> {
        match self {
            ConfigError::Invalid { .. } | ConfigError::Value { .. } => {
                Some("--print-default-config shows every key with its default".to_string())
            }
            ConfigError::Read { .. } => None,
        }
    }
}
