//! Command-line pieces shared by the binaries: config and connection flags, and the layering onto the config file.

use std::path::PathBuf;

use crate::config::{Config, ConfigError, ConnectionConfig};
use crate::conn::{ConnError, ConnParams, ConnSettings, Environment};
use crate::exit::{ExitStatus, Failure};

/// Flags every binary takes: where the config is and how to reach the server.
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

    /// More log output on stderr (-v info, -vv debug)
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    pub verbose: u8,

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

impl ServerArgs {
    /// Resolves the connection with libpq's rules: `-d` (else the config's `conninfo`), then
    /// `-h/-p/-U`, then PG* variables, services and defaults. `application_name` names the
    /// program when the user did not. A password in `-d` is refused.
    pub fn resolve(
        &self,
        connection: &ConnectionConfig,
        application_name: &str,
    ) -> Result<ConnSettings, SetupError> {
        let conninfo = self.conninfo.as_deref().unwrap_or(&connection.conninfo);
        let mut params = ConnParams::parse(conninfo)?;
        if self.conninfo.is_some() && params.get("password").is_some() {
            return Err(SetupError::PasswordInArgv);
        }
        if let Some(host) = &self.host {
            params.set("host", host)?;
        }
        if let Some(port) = self.port {
            params.set("port", &port.to_string())?;
        }
        if let Some(user) = &self.username {
            params.set("user", user)?;
        }
        if params.get("application_name").is_none() {
            params.set("fallback_application_name", application_name)?;
        }
        Ok(ConnSettings::resolve(
            &params,
            &Environment::from_process(),
        )?)
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

impl CommonArgs {
    /// Loads the config file and applies these flags on top of it; resolves the
    /// connection with libpq's rules. `application_name` names the program when
    /// the user did not.
    pub fn resolve(&self, application_name: &str) -> Result<(Config, ConnSettings), SetupError> {
        let (mut config, _path) = Config::load(self.config.as_deref())?;
        if let Some(schema) = &self.schema {
            config.backup.schema = schema.clone();
        }
        if let Some(table) = &self.table {
            if table.is_empty() {
                return Err(ConfigError::Value {
                    path: "command line".into(),
                    key: "--table".into(),
                    message: "must not be empty".into(),
                }
                .into());
            }
            config.backup.table = table.clone();
        }
        if let Some(name) = &self.name {
            if let Err(message) = crate::backup::state::validate_name(name) {
                return Err(ConfigError::Value {
                    path: "command line".into(),
                    key: "--name".into(),
                    message,
                }
                .into());
            }
            config.backup.name = name.clone();
        }
        let settings = self.server.resolve(&config.connection, application_name)?;
        Ok((config, settings))
    }
}
