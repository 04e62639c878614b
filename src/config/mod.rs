//! The TOML configuration shared by all binaries, layered defaults < file < environment < command line.
//!
//! `config.toml` at the crate root documents every key with its default; it is
//! embedded here and printed by `--print-default-config`. A test parses it, so
//! the documented defaults and [`Config::default`] cannot drift apart.

pub mod dump;
pub mod pg_back;
pub mod values;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::exit::{ExitStatus, Failure};
use dump::DumpConfig;

/// The documented default configuration, as shipped.
pub const DEFAULT_CONFIG: &str = include_str!("../../config.toml");

/// Where the configuration is looked up when no `-c/--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/safe-backup/config.toml";

/// Everything the configuration file can set.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How to reach the server (libpq conventions).
    pub connection: ConnectionConfig,
    /// The physical hook pair (`pgpre` / `pgpost`).
    pub backup: BackupConfig,
    /// The logical dump pipeline (`pgback`).
    pub dump: DumpConfig,
}

/// `[connection]`: the server to back up.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionConfig {
    /// A libpq keyword=value string or `postgresql://` URI; empty means environment and defaults.
    pub conninfo: String,
}

/// `[backup]`: how `pgpre`, the co-process and `pgpost` run a backup.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// Label given to the start function; empty means a generated one.
    pub label: String,
    /// Immediate checkpoint instead of a spread one.
    pub fast_checkpoint: bool,
    /// Seconds `pgpre` waits for the start function; 0 = no limit.
    pub start_timeout: u64,
    /// Seconds the co-process holds backup mode before failing it; 0 = no limit.
    pub backup_timeout: u64,
    /// Passed to the stop function: wait until the needed WAL is archived.
    pub wait_for_archive: bool,
    /// Seconds `pgpost` waits for the backup to complete; 0 = no limit.
    pub stop_timeout: u64,
    /// Schema of the state table; empty means the first schema on the search_path.
    pub schema: String,
    /// Name of the state table.
    pub table: String,
    /// Log file of the co-process; empty means none.
    pub log_file: String,
    /// Seconds between slow re-reads of the state table behind LISTEN/NOTIFY.
    pub recheck_interval: u64,
    /// Which backup (row) pgpre and pgpost work on; several can run at once.
    pub name: String,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            label: String::new(),
            fast_checkpoint: false,
            start_timeout: 600,
            backup_timeout: 0,
            wait_for_archive: true,
            stop_timeout: 3600,
            schema: String::new(),
            table: "backup".to_string(),
            log_file: String::new(),
            recheck_interval: 10,
            name: crate::backup::state::DEFAULT_NAME.to_string(),
        }
    }
}

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

impl Config {
    /// Loads the configuration: `explicit` must exist; otherwise the default
    /// path is used when it exists, and built-in defaults when it does not.
    pub fn load(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>), ConfigError> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None => {
                let default = PathBuf::from(DEFAULT_CONFIG_PATH);
                if !default.exists() {
                    return Ok((Config::default(), None));
                }
                default
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let config = Config::parse(&text, &path)?;
        Ok((config, Some(path)))
    }

    /// Parses and validates TOML text; `path` names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|error| {
            let line = error
                .span()
                .map(|span| line_of(text, span.start))
                .unwrap_or(1);
            let message = error.message().trim().replace('\n', " ");
            let message = match key_at_line(text, line) {
                Some(key) => format!("{key}: {message}"),
                None => message,
            };
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                message,
            }
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Value {
            path: path.to_path_buf(),
            key: key.to_string(),
            message: message.to_string(),
        };
        if self.backup.table.is_empty() {
            return Err(invalid("backup.table", "must not be empty"));
        }
        if self.backup.recheck_interval == 0 {
            return Err(invalid(
                "backup.recheck_interval",
                "must be at least 1 second",
            ));
        }
        if let Err(message) = crate::backup::state::validate_name(&self.backup.name) {
            return Err(invalid("backup.name", &message));
        }
        if self.backup.label.contains('\n') || self.backup.label.contains('\0') {
            return Err(invalid("backup.label", "must be a single line"));
        }
        self.dump.validate(&path.display().to_string())
    }
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The dotted `section.key` assigned on 1-based `line`, for error messages.
fn key_at_line(text: &str, line: usize) -> Option<String> {
    let mut section = String::new();
    for (number, content) in text.lines().enumerate() {
        let content = content.trim();
        if content.starts_with('[') {
            section = content
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
        }
        if number + 1 == line {
            if content.starts_with('[') || content.starts_with('#') {
                return None;
            }
            let (key, _) = content.split_once('=')?;
            let key = key.trim();
            return Some(if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn shipped_config_parses_to_the_defaults() {
        assert_eq!(parse(DEFAULT_CONFIG).unwrap(), Config::default());
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let error = parse("[backup]\nlabel = \"x\"\nlabell = \"y\"\n").unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("test.toml:3: "), "{text}");
        assert!(text.contains("labell"), "{text}");
    }

    #[test]
    fn unknown_section_is_an_error() {
        let text = parse("[bakup]\n").unwrap_err().to_string();
        assert!(text.starts_with("test.toml:1: "), "{text}");
        assert!(text.contains("bakup"), "{text}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let text = parse("[backup]\n\nstart_timeout = \"ten\"\n")
            .unwrap_err()
            .to_string();
        assert!(text.starts_with("test.toml:3: "), "{text}");
        assert!(text.contains("backup.start_timeout: "), "{text}");
        let text = parse("[backup]\nfast_checkpoint = 1\n")
            .unwrap_err()
            .to_string();
        assert!(text.starts_with("test.toml:2: "), "{text}");
    }

    #[test]
    fn negative_timeout_is_rejected() {
        assert!(parse("[backup]\nbackup_timeout = -1\n").is_err());
    }

    #[test]
    fn invalid_values_are_rejected() {
        let text = parse("[backup]\ntable = \"\"\n").unwrap_err().to_string();
        assert_eq!(
            text,
            "test.toml: invalid value for backup.table: must not be empty"
        );
        assert!(parse("[backup]\nrecheck_interval = 0\n").is_err());
        assert!(parse("[backup]\nlabel = \"a\\nb\"\n").is_err());
    }

    #[test]
    fn values_are_read() {
        let config = parse(
            "[connection]\nconninfo = \"host=/tmp\"\n[backup]\nfast_checkpoint = true\nbackup_timeout = 30\ntable = \"snap\"\n",
        )
        .unwrap();
        assert_eq!(config.connection.conninfo, "host=/tmp");
        assert!(config.backup.fast_checkpoint);
        assert_eq!(config.backup.backup_timeout, 30);
        assert_eq!(config.backup.table, "snap");
    }

    #[test]
    fn dump_errors_name_file_line_and_nested_key() {
        let text = "[connection]\n\n[dump]\njobs = 2\n\n[dump.databases.\"a b\"]\nformat = \"tar\"\ncolour = 1\n";
        let error = parse(text).unwrap_err().to_string();
        assert!(error.starts_with("test.toml:8: "), "{error}");
        assert!(error.contains("dump.databases.\"a b\".colour"), "{error}");
        let error = parse("[dump]\n# comment\nformat = \"zip\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("test.toml:3: dump.format: "), "{error}");
        let error = parse("[dump.databases.app]\nparallel_backup_jobs = 0\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "test.toml: invalid value for dump.databases.\"app\".parallel_backup_jobs: must be at least 1"
        );
        assert!(parse("[dump]\njobs = 0\n").is_err());
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let error = Config::load(Some(Path::new("/nonexistent/safe-backup.toml"))).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/safe-backup.toml"));
    }
}
