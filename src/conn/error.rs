//! Why a connection could not even be attempted, or why every attempt failed: [`ConnError`],
//! its exit status and hint, [`Origin`] (where a bad value came from) and the libpq-like
//! wording of a tokio-postgres failure.

use std::fmt;
use std::io;
use std::path::PathBuf;

use tokio_postgres::error::SqlState;

use crate::conn::settings::{HostTarget, SslMode};
use crate::exit::{ExitStatus, Failure};

/// Where a value came from, so that an error can say where to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The connection string, the URI, or a command-line setting.
    Params,
    /// An environment variable.
    Env(String),
    /// A line of a service file.
    Service { file: PathBuf, line: usize },
}

impl fmt::Display for Origin {
    /// A suffix for error messages: empty for explicit params.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Params => Ok(()),
            Origin::Env(var) => write!(f, " (from environment variable {var})"),
            Origin::Service { file, line } => {
                write!(f, " (from service file {}, line {line})", file.display())
            }
        }
    }
}

/// Why a connection could not even be attempted, or why every attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("missing \"=\" after \"{keyword}\" in connection info string")]
    MissingEquals { keyword: String },
    #[error("missing value after \"{keyword}\" in connection info string")]
    MissingValue { keyword: String },
    #[error("unterminated quoted string in connection info string")]
    UnterminatedQuote,
    #[error("invalid connection URI: {reason}")]
    InvalidUri { reason: String },
    #[error("invalid connection option \"{keyword}\"{origin}")]
    InvalidKeyword { keyword: String, origin: Origin },
    #[error("connection option \"{keyword}\" is not supported by safe-backup{origin}")]
    Unsupported { keyword: String, origin: Origin },
    /// `value` is never a password: passwords are not validated.
    #[error("invalid value \"{value}\" for connection option \"{keyword}\"{origin}: {reason}")]
    InvalidValue {
        keyword: String,
        value: String,
        origin: Origin,
        reason: String,
    },
    #[error("could not match {ports} port numbers to {hosts} hosts")]
    PortCount { ports: usize, hosts: usize },
    #[error("could not determine the user name to connect as: give user or set PGUSER")]
    NoUser,
    #[error("could not read service file {}: {source}", file.display())]
    ServiceFileRead { file: PathBuf, source: io::Error },
    #[error("syntax error in service file {}, line {line}: {reason}", file.display())]
    ServiceFileSyntax {
        file: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("definition of service \"{service}\" not found (looked in {searched})")]
    ServiceNotFound { service: String, searched: String },
    #[error("could not use {what} file {}: {reason}", file.display())]
    TlsFile {
        what: &'static str,
        file: PathBuf,
        reason: String,
    },
    #[error("sslmode={sslmode} needs a root certificate file, and none was given (no home directory for ~/.postgresql/root.crt)")]
    NoRootCert { sslmode: SslMode },
    #[error("could not set up TLS: {0}")]
    TlsSetup(String),
    #[error("{}", describe_attempts(attempts))]
    Connect {
        attempts: Vec<ConnectAttempt>,
        /// The password file that was consulted, for the hint.
        passfile: Option<PathBuf>,
    },
}

/// One failed attempt to reach one host.
#[derive(Debug, Clone)]
pub struct ConnectAttempt {
    /// The host or socket that was tried.
    pub target: HostTarget,
    /// What kind of failure it was, for the exit code and the hint.
    pub kind: AttemptFailure,
    /// libpq-like text of the failure (`Connection refused`, `FATAL: ...`); never a password.
    pub message: String,
}

/// The kinds of connection failure a user can act on differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// Could not open the socket: refused, no route, unknown host, no such socket file.
    Unreachable,
    /// `connect_timeout` ran out.
    Timeout,
    /// The server asked for a password and none was given or found in the password file.
    PasswordMissing,
    /// The server refused the password or the authentication method.
    AuthFailed,
    /// The TLS handshake failed or the server refused TLS that `sslmode` requires.
    Tls,
    /// The server answered with some other error (no such database, too many clients, ...).
    Server,
    /// Anything else.
    Other,
}

fn describe_attempts(attempts: &[ConnectAttempt]) -> String {
    if attempts.is_empty() {
        return "no host to connect to".to_owned();
    }
    attempts
        .iter()
        .map(|a| format!("could not connect to server at {}: {}", a.target, a.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Failure for ConnError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            ConnError::Connect { .. } => ExitStatus::Connection,
            _ => ExitStatus::Usage,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ConnError::MissingEquals { .. }
            | ConnError::MissingValue { .. }
            | ConnError::UnterminatedQuote => Some(
                "write keyword=value pairs separated by spaces; quote values with spaces as 'a value'"
                    .to_owned(),
            ),
            ConnError::Unsupported { origin, .. } => match origin {
                Origin::Env(var) => Some(format!("unset {var}")),
                Origin::Service { file, line } => {
                    Some(format!("remove it from {} (line {line})", file.display()))
                }
                Origin::Params => Some("remove it from the connection settings".to_owned()),
            },
            ConnError::ServiceNotFound { .. } => Some(
                "define the service in ~/.pg_service.conf (or PGSERVICEFILE), or fix the service name"
                    .to_owned(),
            ),
            ConnError::NoRootCert { .. } => Some(
                "set sslrootcert (or PGSSLROOTCERT) to the CA file, or use sslmode=require".to_owned(),
            ),
            ConnError::TlsFile { what, .. } if *what == "root certificate" => Some(
                "set sslrootcert (or PGSSLROOTCERT) to the CA file, or use sslmode=require".to_owned(),
            ),
            ConnError::Connect { attempts, passfile } => {
                let attempt = attempts.last()?;
                let passfile = passfile
                    .as_ref()
                    .map_or_else(|| "~/.pgpass".to_owned(), |p| p.display().to_string());
                match attempt.kind {
                    AttemptFailure::Unreachable | AttemptFailure::Timeout => {
                        Some(match &attempt.target {
                            HostTarget::Tcp { host, port } => format!(
                                "check that the server runs and accepts TCP/IP connections on host {host} port {port}"
                            ),
                            HostTarget::Socket { .. } => format!(
                                "check that the server runs locally and accepts connections on Unix socket {}",
                                attempt.target.socket_path().unwrap_or_default().display()
                            ),
                        })
                    }
                    AttemptFailure::PasswordMissing => Some(format!(
                        "set PGPASSWORD or add the host to {passfile} (mode 0600)"
                    )),
                    AttemptFailure::AuthFailed => Some(format!(
                        "check the user name, the password (PGPASSWORD or {passfile}) and the server's pg_hba.conf"
                    )),
                    AttemptFailure::Tls => Some(
                        "check sslmode, sslrootcert and the server's certificate".to_owned(),
                    ),
                    AttemptFailure::Server | AttemptFailure::Other => None,
                }
            }
            _ => None,
        }
    }
}

/// The message and kind of a failed tokio-postgres connect, libpq-like.
pub(super) fn classify(error: &tokio_postgres::Error) -> (AttemptFailure, String) {
    if let Some(db) = error.as_db_error() {
        let kind = refusal_kind(db.code());
        return (kind, format!("{}: {}", db.severity(), db.message()));
    }
    let top = error.to_string();
    let mut chain = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        chain.push(cause.to_string());
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            let text = strip_os_error(&io.to_string());
            if top.starts_with("error performing TLS handshake") {
                return (AttemptFailure::Tls, format!("TLS handshake failed: {text}"));
            }
            let kind = if io.kind() == io::ErrorKind::TimedOut {
                AttemptFailure::Timeout
            } else {
                AttemptFailure::Unreachable
            };
            return (kind, text);
        }
        source = cause.source();
    }
    let detail = chain.join(": ");
    // tokio-postgres reports a password it needs but was not given only as a configuration
    // error with this text; there is no code to inspect.
    if detail.contains("password missing") {
        return (
            AttemptFailure::PasswordMissing,
            "the server requested a password, and none was given or found in the password file"
                .to_owned(),
        );
    }
    if top.starts_with("error performing TLS handshake") {
        return (AttemptFailure::Tls, format!("TLS: {detail}"));
    }
    let message = if detail.is_empty() {
        top
    } else {
        format!("{top}: {detail}")
    };
    (AttemptFailure::Other, message)
}

/// What kind of failure the server's refusal is, by its SQLSTATE: a wrong password or a
/// pg_hba.conf rule (`28P01`, `28000`) is one the user fixes in their credentials.
fn refusal_kind(code: &SqlState) -> AttemptFailure {
    if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    {
        AttemptFailure::AuthFailed
    } else {
        AttemptFailure::Server
    }
}

fn strip_os_error(text: &str) -> String {
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_owned(),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::testing::tcp;

    #[test]
    fn connect_hints() {
        let attempt = |kind| ConnError::Connect {
            attempts: vec![ConnectAttempt {
                target: tcp("db", 5432),
                kind,
                message: "x".into(),
            }],
            passfile: Some("/home/a/.pgpass".into()),
        };
        assert_eq!(
            attempt(AttemptFailure::Unreachable).hint().as_deref(),
            Some("check that the server runs and accepts TCP/IP connections on host db port 5432")
        );
        assert_eq!(
            attempt(AttemptFailure::PasswordMissing).hint().as_deref(),
            Some("set PGPASSWORD or add the host to /home/a/.pgpass (mode 0600)")
        );
        assert!(attempt(AttemptFailure::Server).hint().is_none());
    }

    #[test]
    fn refusals_by_sqlstate() {
        for (code, kind) in [
            ("28P01", AttemptFailure::AuthFailed),
            ("28000", AttemptFailure::AuthFailed),
            ("53300", AttemptFailure::Server),
            ("3D000", AttemptFailure::Server),
            ("57P03", AttemptFailure::Server),
        ] {
            assert_eq!(refusal_kind(&SqlState::from_code(code)), kind, "{code}");
        }
    }
}
