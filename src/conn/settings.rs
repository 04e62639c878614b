//! The resolved connection: [`ConnSettings`] and the typed values of its fields (the hosts to
//! try, `sslmode`, `target_session_attrs`, `channel_binding`, a password that never prints).
//!
//! Only data lives here; the files that fill and use it add their own `impl ConnSettings`:
//! `resolve.rs` builds it, `params.rs` writes it back as conninfo and `PG*` variables,
//! `pgpass.rs` finds a host's password, `tls.rs` builds its TLS client, `connect.rs` connects.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// libpq's default port.
pub(super) const DEFAULT_PORT: u16 = 5432;

/// Fully resolved settings: explicit params > service file (PGSERVICE or `service=`) >
/// PG* environment > libpq defaults.
#[derive(Clone, Debug)]
pub struct ConnSettings {
    /// The servers to try, in order; the first that accepts the session wins.
    pub hosts: Vec<HostTarget>,
    /// The role to log in as.
    pub user: String,
    /// The database to connect to.
    pub dbname: String,
    /// A password given explicitly (param, service file or `PGPASSWORD`); otherwise the
    /// password file is consulted for each host.
    pub password: Option<Password>,
    /// The password file (`passfile`, `PGPASSFILE` or `~/.pgpass`), whether or not it exists.
    pub passfile: Option<PathBuf>,
    /// How TLS is used on TCP connections; sockets never use TLS.
    pub sslmode: SslMode,
    /// CA file for verifying the server (`~/.postgresql/root.crt` by default).
    pub sslrootcert: Option<PathBuf>,
    /// Client certificate, used when the file exists (`~/.postgresql/postgresql.crt` by default).
    pub sslcert: Option<PathBuf>,
    /// Client key for `sslcert` (`~/.postgresql/postgresql.key` by default).
    pub sslkey: Option<PathBuf>,
    /// Shown in `pg_stat_activity`.
    pub application_name: Option<String>,
    /// Limit for each host's attempt; `None` waits indefinitely.
    pub connect_timeout: Option<Duration>,
    /// TCP keepalives, so that a dead peer is noticed during a long backup.
    pub keepalives: bool,
    /// Idle time before the first keepalive probe.
    pub keepalives_idle: Option<Duration>,
    /// Time between probes.
    pub keepalives_interval: Option<Duration>,
    /// Probes lost before the connection is considered dead.
    pub keepalives_retries: Option<u32>,
    /// Command-line options sent to the server at startup (`-c name=value ...`).
    pub options: Option<String>,
    /// Which kind of server to accept among the hosts.
    pub target_session_attrs: TargetSessionAttrs,
    /// SCRAM channel binding.
    pub channel_binding: ChannelBinding,
    /// The service whose definition was applied, if any.
    pub service: Option<String>,
}

/// A password, kept out of every log line and error message.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub(super) String);

impl Password {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Password {
        Password(secret.into())
    }

    /// The secret itself, for the wire or a child's environment only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// libpq tries without TLS first; safe-backup treats it as `prefer` (tokio-postgres has no
    /// "plain first" mode, and trying TLS first is the safer of the two).
    Allow,
    /// TLS when the server offers it (libpq's default).
    Prefer,
    /// TLS or nothing; the certificate is checked only when a root certificate file exists
    /// (libpq's backward-compatible behaviour).
    Require,
    /// TLS with the server's chain verified against `sslrootcert`; the host name is not checked.
    VerifyCa,
    /// TLS with the chain and the host name verified.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl std::str::FromStr for SslMode {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return Err(()),
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// libpq's `target_session_attrs`, as far as tokio-postgres supports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetSessionAttrs {
    /// Any server will do.
    Any,
    /// Skip servers that are read-only (standbys, `default_transaction_read_only`).
    ReadWrite,
    /// Skip servers that accept writes.
    ReadOnly,
}

impl TargetSessionAttrs {
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetSessionAttrs::Any => "any",
            TargetSessionAttrs::ReadWrite => "read-write",
            TargetSessionAttrs::ReadOnly => "read-only",
        }
    }
}

/// libpq's `channel_binding` (SCRAM over TLS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelBinding {
    /// Never use channel binding.
    Disable,
    /// Use it when the server and the TLS connection allow (libpq's default).
    Prefer,
    /// Refuse to authenticate without it.
    Require,
}

impl ChannelBinding {
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelBinding::Disable => "disable",
            ChannelBinding::Prefer => "prefer",
            ChannelBinding::Require => "require",
        }
    }
}

impl std::str::FromStr for ChannelBinding {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "disable" => ChannelBinding::Disable,
            "prefer" => ChannelBinding::Prefer,
            "require" => ChannelBinding::Require,
            _ => return Err(()),
        })
    }
}

/// One server to try: a TCP host or a Unix-socket directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostTarget {
    /// A host name or IP address.
    Tcp { host: String, port: u16 },
    /// A directory holding the socket `.s.PGSQL.<port>`.
    Socket { dir: PathBuf, port: u16 },
}

impl HostTarget {
    /// The port (for a socket: the number in the socket file's name).
    pub fn port(&self) -> u16 {
        match self {
            HostTarget::Tcp { port, .. } | HostTarget::Socket { port, .. } => *port,
        }
    }

    /// The value libpq's `host` keyword takes for this target.
    pub fn host_keyword(&self) -> String {
        match self {
            HostTarget::Tcp { host, .. } => host.clone(),
            HostTarget::Socket { dir, .. } => dir.display().to_string(),
        }
    }

    /// The socket file, for a socket target.
    pub fn socket_path(&self) -> Option<PathBuf> {
        match self {
            HostTarget::Tcp { .. } => None,
            HostTarget::Socket { dir, port } => Some(socket_file(dir, *port)),
        }
    }
}

/// The socket file libpq uses in `dir` for `port`.
pub(super) fn socket_file(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

impl fmt::Display for HostTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostTarget::Tcp { host, port } => write!(f, "host \"{host}\" port {port}"),
            HostTarget::Socket { dir, port } => {
                write!(f, "socket \"{}\"", socket_file(dir, *port).display())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::conn::testing::{socket, tcp};

    #[test]
    fn host_targets_display_like_libpq() {
        assert_eq!(
            tcp("127.0.0.1", 5432).to_string(),
            "host \"127.0.0.1\" port 5432"
        );
        assert_eq!(
            socket().to_string(),
            "socket \"/var/run/postgresql/.s.PGSQL.5432\""
        );
    }
}
