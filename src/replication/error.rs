//! Why a replication connection or one of its commands failed: [`ReplicationError`], and
//! [`ServerError`], an `ErrorResponse` with the server's own words, in whatever state it came.

use std::fmt;
use std::io;

use postgres_protocol::message::backend::ErrorFields;

use crate::conn::{ConnError, HostTarget, SslMode};
use crate::exit::{ExitStatus, Failure};

/// An `ErrorResponse` (or a FATAL at login): the fields a user needs, nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerError {
    /// `ERROR`, `FATAL`, `PANIC` (not localized: the `V` field, 9.6+).
    pub severity: String,
    /// The SQLSTATE, e.g. `42501`.
    pub code: String,
    /// The primary message.
    pub message: String,
    /// The `DETAIL` field, if any.
    pub detail: Option<String>,
    /// The server's own `HINT`, if any.
    pub hint: Option<String>,
}

impl ServerError {
    /// Reads the fields of an `ErrorResponse` or `NoticeResponse`; fields it lacks stay empty.
    pub(crate) fn from_fields(mut fields: ErrorFields<'_>) -> ServerError {
        use fallible_iterator::FallibleIterator as _;
        let mut error = ServerError {
            severity: String::new(),
            code: String::new(),
            message: String::new(),
            detail: None,
            hint: None,
        };
        while let Ok(Some(field)) = fields.next() {
            let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
            match field.type_() {
                b'V' => error.severity = value,
                b'S' if error.severity.is_empty() => error.severity = value,
                b'C' => error.code = value,
                b'M' => error.message = value,
                b'D' => error.detail = Some(value),
                b'H' => error.hint = Some(value),
                _ => {}
            }
        }
        error
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "server said: {}", self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

/// A replication connection could not be opened, or a command on it failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The settings themselves (TLS files, ...).
    #[error(transparent)]
    Settings(#[from] ConnError),
    /// The socket could not be opened.
    #[error("could not connect to server at {target}: {source}")]
    Connect {
        /// The host or socket tried.
        target: HostTarget,
        /// Why.
        source: io::Error,
    },
    /// `connect_timeout` ran out during connection or login.
    #[error("could not connect to server at {target}: timeout expired")]
    ConnectTimeout {
        /// The host or socket tried.
        target: HostTarget,
    },
    /// The server refused TLS and `sslmode` demands it.
    #[error("server at {target} does not accept TLS, and sslmode={sslmode} requires it")]
    TlsRefused {
        /// The host tried.
        target: HostTarget,
        /// The mode that demands TLS.
        sslmode: SslMode,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {target} failed: {reason}")]
    Tls {
        /// The host tried.
        target: HostTarget,
        /// rustls's words.
        reason: String,
    },
    /// The server asked for a password and none was found.
    #[error("the server asks for a password for user \"{user}\" and none was given")]
    NoPassword {
        /// The role logging in.
        user: String,
    },
    /// An authentication method this client does not speak (GSSAPI, SSPI, ...).
    #[error("the server asks for {method} authentication, which safe-backup does not support")]
    UnsupportedAuth {
        /// The method's name.
        method: String,
    },
    /// SCRAM failed on our side (bad server message, failed server signature).
    #[error("SCRAM-SHA-256 authentication failed: {0}")]
    Scram(String),
    /// The server sent an ErrorResponse.
    #[error("{0}")]
    Server(ServerError),
    /// Reading from or writing to the server failed.
    #[error("connection to the server lost: {0}")]
    Io(#[from] io::Error),
    /// The server closed the connection.
    #[error("the server closed the connection unexpectedly")]
    Closed,
    /// A message that does not belong where it came.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl Failure for ReplicationError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            ReplicationError::Settings(error) => error.exit_status(),
            ReplicationError::Connect { .. }
            | ReplicationError::ConnectTimeout { .. }
            | ReplicationError::TlsRefused { .. }
            | ReplicationError::Tls { .. }
            | ReplicationError::NoPassword { .. }
            | ReplicationError::UnsupportedAuth { .. }
            | ReplicationError::Scram(_) => ExitStatus::Connection,
            ReplicationError::Server(error) => server_status(&error.code),
            ReplicationError::Io(_) | ReplicationError::Closed | ReplicationError::Protocol(_) => {
                ExitStatus::BackupFailed
            }
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ReplicationError::Settings(error) => error.hint(),
            ReplicationError::NoPassword { .. } => Some(
                "put the password in ~/.pgpass (mode 0600), PGPASSFILE or PGPASSWORD".to_owned(),
            ),
            ReplicationError::Server(error) => server_hint(error),
            _ => None,
        }
    }
}

/// The exit status of a server's SQLSTATE: login refusals are connection failures, missing
/// privileges and settings make the server unusable, anything else failed the backup.
fn server_status(code: &str) -> ExitStatus {
    match code {
        c if c.starts_with("28") || c == "3D000" || c == "57P03" || c == "53300" => {
            ExitStatus::Connection
        }
        "42501" | "55000" | "0A000" | "42704" => ExitStatus::Server,
        _ => ExitStatus::BackupFailed,
    }
}

fn server_hint(error: &ServerError) -> Option<String> {
    if error.message.contains("pg_hba.conf") && error.message.contains("replication") {
        return Some(
            "add a line for replication connections to pg_hba.conf, e.g. \
             `host replication <role> <client address>/32 scram-sha-256` (the database \
             `all` does not match them), then reload the server"
                .to_owned(),
        );
    }
    let walsender = ["replication", "WAL sender", "walsender"];
    if error.code == "42501" && walsender.iter().any(|w| error.message.contains(w)) {
        return Some(
            "give the role the REPLICATION attribute (ALTER ROLE <role> REPLICATION) or \
             connect as a superuser"
                .to_owned(),
        );
    }
    error.hint.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str, message: &str) -> ReplicationError {
        ReplicationError::Server(ServerError {
            severity: "FATAL".to_owned(),
            code: code.to_owned(),
            message: message.to_owned(),
            detail: None,
            hint: None,
        })
    }

    #[test]
    fn server_errors_map_to_documented_codes_and_hints() {
        let hba = server(
            "28000",
            "no pg_hba.conf entry for replication connection from host \"[local]\", user \"x\"",
        );
        assert_eq!(hba.exit_status(), ExitStatus::Connection);
        assert!(hba.hint().unwrap().contains("host replication"));
        let role = server(
            "42501",
            "must be superuser or replication role to start walsender",
        );
        assert_eq!(role.exit_status(), ExitStatus::Server);
        assert!(role.hint().unwrap().contains("REPLICATION"));
        // 16+ words it differently.
        let role = server("42501", "permission denied to start WAL sender");
        assert!(role.hint().unwrap().contains("REPLICATION"));
        let copy = server("58P01", "could not open file \"base/1/1234\"");
        assert_eq!(copy.exit_status(), ExitStatus::BackupFailed);
        assert_eq!(
            copy.to_string(),
            "server said: could not open file \"base/1/1234\""
        );
    }
}
