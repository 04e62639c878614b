//! The TOML configuration shared by all binaries: loading, errors, and the entry point that
//! layers each section defaults < file < environment < command line.
//!
//! Uses: crypt, args, conn, secret, values, exit.
//!
//! `config.toml` at the crate root documents every key with its default; it is
//! embedded here and printed by `--print-default-config`. A test parses it, so
//! the documented defaults and [`Config::default`] cannot drift apart.
//!
//! One function per section lays the command line over it: [`BackupConfig::apply`] for
//! `[backup]`, [`BaseConfig::layered`] for `[base]`, [`ConnectionConfig::resolve`] for `[connection]` (libpq's order, see there);
//! [`Config::for_hooks`] runs both for `pgpre` and `pgpost`.

mod backup;
mod base;
mod dump;
mod encryption;
mod error;
mod flags;
mod pg_back;
mod remote;

pub use remote::{RemoteFlags, RemoteSettings, StoreKind};

pub use pg_back::convert_pg_back_config;

pub use encryption::{
    take_passphrase_from_env, EncryptionConfig, EncryptionError, EncryptionFlags,
};

pub use dump::{DatabaseDumpSettings, DumpFlags};

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::args::{CommonArgs, ServerArgs, StartArgs, StopArgs};
use crate::conn::{ConnError, ConnParams, ConnSettings, Environment};
use crate::exit::{ExitStatus, Failure};
pub use backup::{limit, shorten_label, BackupConfig, LogTarget};
pub use base::{BaseConfig, BaseFlags, BaseFormat, WalMethod};
pub use dump::DumpConfig;
pub use error::ConfigError;

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
    /// The streamed base backup (`pgbase`).
    pub base: BaseConfig,
}

/// `[connection]`: the server to back up.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionConfig {
    /// A libpq keyword=value string or `postgresql://` URI; empty means environment and defaults.
    pub conninfo: String,
}

impl ConnectionConfig {
    /// Resolves the connection with libpq's rules, which put the environment *under* the
    /// file: defaults < `PG*` variables < service file < `conninfo` < `-d` < `-h/-p/-U`.
    /// `application_name` names the program when the user did not. A password in `-d` is
    /// refused.
    pub fn resolve(
        &self,
        args: &ServerArgs,
        application_name: &str,
    ) -> Result<ConnSettings, SetupError> {
        self.resolve_in(args, &Environment::from_process(), application_name)
    }

    /// [`ConnectionConfig::resolve`] in the environment `env`.
    pub fn resolve_in(
        &self,
        args: &ServerArgs,
        env: &Environment,
        application_name: &str,
    ) -> Result<ConnSettings, SetupError> {
        let conninfo = args.conninfo.as_deref().unwrap_or(&self.conninfo);
        let mut params = ConnParams::parse(conninfo)?;
        if args.conninfo.is_some() && params.get("password").is_some() {
            return Err(SetupError::PasswordInArgv);
        }
        if let Some(host) = &args.host {
            params.set("host", host)?;
        }
        if let Some(port) = args.port {
            params.set("port", &port.to_string())?;
        }
        if let Some(user) = &args.username {
            params.set("user", user)?;
        }
        if params.get("application_name").is_none() {
            params.set("fallback_application_name", application_name)?;
        }
        Ok(ConnSettings::resolve(&params, env)?)
    }
}

/// The configuration or connection settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The config file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The connection string or environment.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// `-d` carried a password, which every local user can read in `ps`.
    #[error("refusing a password in -d/--dbname: the command line is visible to every local user")]
    PasswordInArgv,
}

impl Failure for SetupError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            SetupError::Config(error) => error.exit_status(),
            SetupError::Conn(error) => error.exit_status(),
            SetupError::PasswordInArgv => ExitStatus::Usage,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            SetupError::Config(error) => error.hint(),
            SetupError::Conn(error) => error.hint(),
            SetupError::PasswordInArgv => Some(
                "put the password in ~/.pgpass (mode 0600), PGPASSFILE or PGPASSWORD".to_string(),
            ),
        }
    }
}

impl Config {
    /// `pgpre`'s and `pgpost`'s settings: the config file (`-c`, else the default path) with
    /// each section's command line laid over it, and the resolved connection. `start` holds
    /// pgpre's own `[backup]` flags, `stop` pgpost's.
    pub fn for_hooks(
        common: &CommonArgs,
        start: Option<&StartArgs>,
        stop: Option<&StopArgs>,
        application_name: &str,
    ) -> Result<(Config, ConnSettings), SetupError> {
        let (mut config, _path) = Config::load(common.config.as_deref())?;
        config
            .backup
            .apply(&common.backup, start, stop)
            .map_err(|invalid| ConfigError::invalid_key("command line", invalid))?;
        let settings = config
            .connection
            .resolve(&common.server, application_name)?;
        Ok((config, settings))
    }

    /// The primary of `[backup] primary_conninfo` (none when empty), resolved with libpq's
    /// rules in this process's environment.
    pub fn primary_settings(
        &self,
        application_name: &str,
    ) -> Result<Option<ConnSettings>, SetupError> {
        let conninfo = &self.backup.primary_conninfo;
        if conninfo.is_empty() {
            return Ok(None);
        }
        let mut params = ConnParams::parse(conninfo)?;
        if params.get("application_name").is_none() {
            params.set("fallback_application_name", application_name)?;
        }
        Ok(Some(ConnSettings::resolve(
            &params,
            &Environment::from_process(),
        )?))
    }

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
        self.backup
            .validate()
            .map_err(|invalid| ConfigError::invalid_key(path, invalid))?;
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
        assert_eq!(config.backup.fast_checkpoint, Some(true));
        assert_eq!(config.backup.backup_timeout.to_string(), "30");
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

    /// `[connection]` follows libpq: defaults < `PG*` variables < file < `-d` < `-h/-p/-U`.
    #[test]
    fn connection_layers_in_libpqs_order() {
        use crate::conn::HostTarget;
        let env = Environment {
            vars: [
                ("PGHOST", "env-host"),
                ("PGPORT", "5001"),
                ("PGUSER", "env_user"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            home: None,
            os_user: "os_user".into(),
        };
        let resolve = |conninfo: &str, env: &Environment, args: &ServerArgs| {
            let connection = ConnectionConfig {
                conninfo: conninfo.into(),
            };
            let settings = connection.resolve_in(args, env, "test").unwrap();
            let host = match &settings.hosts[0] {
                HostTarget::Tcp { host, port } => format!("{host}:{port}"),
                HostTarget::Socket { dir, port } => format!("{}:{port}", dir.display()),
            };
            (host, settings.user, settings.dbname)
        };
        let none = ServerArgs::default();
        let bare = Environment {
            vars: Default::default(),
            ..env.clone()
        };
        let (host, user, _) = resolve("", &bare, &none);
        assert!(host.ends_with(":5432"), "{host}");
        assert_eq!(user, "os_user", "libpq's defaults");
        let file = "host=file-host port=5002 dbname=file_db";
        assert_eq!(
            resolve("", &env, &none),
            ("env-host:5001".into(), "env_user".into(), "env_user".into()),
            "the environment over the defaults"
        );
        assert_eq!(
            resolve(file, &env, &none),
            ("file-host:5002".into(), "env_user".into(), "file_db".into()),
            "the file over the environment"
        );
        let dash_d = ServerArgs {
            conninfo: Some("host=d-host user=d_user".into()),
            ..ServerArgs::default()
        };
        assert_eq!(
            resolve(file, &env, &dash_d),
            ("d-host:5001".into(), "d_user".into(), "d_user".into()),
            "-d replaces the file's conninfo"
        );
        let flags = ServerArgs {
            host: Some("flag-host".into()),
            port: Some(5003),
            username: Some("flag_user".into()),
            ..dash_d
        };
        assert_eq!(
            resolve(file, &env, &flags),
            (
                "flag-host:5003".into(),
                "flag_user".into(),
                "flag_user".into()
            ),
            "-h/-p/-U over -d"
        );
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let error = Config::load(Some(Path::new("/nonexistent/safe-backup.toml"))).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/safe-backup.toml"));
    }
}
