//! libpq conventions on top of tokio-postgres: conninfo strings and URIs, PG* variables,
//! `pg_service.conf`, `~/.pgpass`, the default socket directory and `sslmode` with rustls.
//!
//! Three steps, kept apart like raw flags and validated settings:
//! - [`ConnParams`]: the keywords the user wrote (a conninfo string, a URI, or `set` calls),
//!   checked against the keywords safe-backup supports;
//! - [`ConnSettings::resolve`]: explicit params, the service file, the environment and libpq's
//!   defaults layered into one typed value;
//! - [`ConnSettings::connect`]: one host after the other, like libpq, each attempt named in the
//!   error when all of them fail.
//!
//! Secrets never leave through `Debug`, `Display`, [`ConnSettings::describe`] or an error
//! message; child processes get them through [`ConnSettings::libpq_env`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io::{self, BufRead as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use crate::exit::{ExitStatus, Failure};

/// libpq's default port.
pub const DEFAULT_PORT: u16 = 5432;

/// Socket directories tried, in order, when no host is given (Debian's first, then upstream's).
pub const DEFAULT_SOCKET_DIRS: &[&str] = &["/var/run/postgresql", "/tmp"];

/// System-wide service files tried when `PGSYSCONFDIR` is not set (Debian's, then a plain one).
const DEFAULT_SYSCONF_SERVICE_FILES: &[&str] = &[
    "/etc/postgresql-common/pg_service.conf",
    "/etc/pg_service.conf",
];

/// Every environment variable libpq reads. A caller that runs `pg_dump` clears these before
/// applying [`ConnSettings::libpq_env`], so that nothing resolved here is re-resolved
/// differently by the child (libpq lets a `PGSERVICE` beat `PGHOST`, for example).
pub const LIBPQ_ENV_VARS: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGSYSCONFDIR",
    "PGOPTIONS",
    "PGAPPNAME",
    "PGSSLMODE",
    "PGREQUIRESSL",
    "PGSSLCOMPRESSION",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGSSLCERTMODE",
    "PGSSLROOTCERT",
    "PGSSLCRL",
    "PGSSLCRLDIR",
    "PGSSLSNI",
    "PGSSLNEGOTIATION",
    "PGREQUIREPEER",
    "PGSSLMINPROTOCOLVERSION",
    "PGSSLMAXPROTOCOLVERSION",
    "PGGSSENCMODE",
    "PGKRBSRVNAME",
    "PGGSSLIB",
    "PGGSSDELEGATION",
    "PGCONNECT_TIMEOUT",
    "PGCLIENTENCODING",
    "PGTARGETSESSIONATTRS",
    "PGLOADBALANCEHOSTS",
    "PGREQUIREAUTH",
    "PGCHANNELBINDING",
    "PGDATESTYLE",
    "PGTZ",
    "PGGEQO",
];

/// The keywords safe-backup understands, with the environment variable libpq reads for each.
const SUPPORTED: &[(&str, Option<&str>)] = &[
    ("host", Some("PGHOST")),
    ("hostaddr", Some("PGHOSTADDR")),
    ("port", Some("PGPORT")),
    ("dbname", Some("PGDATABASE")),
    ("user", Some("PGUSER")),
    ("password", Some("PGPASSWORD")),
    ("passfile", Some("PGPASSFILE")),
    ("connect_timeout", Some("PGCONNECT_TIMEOUT")),
    ("application_name", Some("PGAPPNAME")),
    ("fallback_application_name", None),
    ("options", Some("PGOPTIONS")),
    ("sslmode", Some("PGSSLMODE")),
    ("sslrootcert", Some("PGSSLROOTCERT")),
    ("sslcert", Some("PGSSLCERT")),
    ("sslkey", Some("PGSSLKEY")),
    ("keepalives", None),
    ("keepalives_idle", None),
    ("keepalives_interval", None),
    ("keepalives_count", None),
    ("target_session_attrs", Some("PGTARGETSESSIONATTRS")),
    ("service", Some("PGSERVICE")),
    ("channel_binding", Some("PGCHANNELBINDING")),
];

/// Real libpq keywords that safe-backup refuses rather than ignores, with their variables.
const UNSUPPORTED: &[(&str, Option<&str>)] = &[
    ("gssencmode", Some("PGGSSENCMODE")),
    ("krbsrvname", Some("PGKRBSRVNAME")),
    ("gsslib", Some("PGGSSLIB")),
    ("gssdelegation", Some("PGGSSDELEGATION")),
    ("requirepeer", Some("PGREQUIREPEER")),
    ("sslcrl", Some("PGSSLCRL")),
    ("sslcrldir", Some("PGSSLCRLDIR")),
    ("sslcompression", Some("PGSSLCOMPRESSION")),
    ("sslpassword", None),
    ("sslcertmode", Some("PGSSLCERTMODE")),
    ("sslsni", Some("PGSSLSNI")),
    ("sslnegotiation", Some("PGSSLNEGOTIATION")),
    ("sslkeylogfile", None),
    ("ssl_min_protocol_version", Some("PGSSLMINPROTOCOLVERSION")),
    ("ssl_max_protocol_version", Some("PGSSLMAXPROTOCOLVERSION")),
    ("min_protocol_version", None),
    ("max_protocol_version", None),
    ("tcp_user_timeout", None),
    ("load_balance_hosts", Some("PGLOADBALANCEHOSTS")),
    ("require_auth", Some("PGREQUIREAUTH")),
    ("replication", None),
    ("client_encoding", Some("PGCLIENTENCODING")),
    ("servicefile", None),
    ("scram_client_key", None),
    ("scram_server_key", None),
    ("oauth_issuer", None),
    ("oauth_client_id", None),
    ("oauth_client_secret", None),
    ("oauth_scope", None),
    ("tty", None),
];

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

/// How to look up a keyword: supported, a real libpq keyword we refuse, or not libpq's at all.
fn check_keyword(keyword: &str, origin: &Origin) -> Result<(), ConnError> {
    if SUPPORTED.iter().any(|(k, _)| *k == keyword) {
        Ok(())
    } else if UNSUPPORTED.iter().any(|(k, _)| *k == keyword) {
        Err(ConnError::Unsupported {
            keyword: keyword.to_owned(),
            origin: origin.clone(),
        })
    } else {
        Err(ConnError::InvalidKeyword {
            keyword: keyword.to_owned(),
            origin: origin.clone(),
        })
    }
}

/// Checks a value for a supported keyword. Passwords are never checked, so never echoed.
fn check_value(keyword: &str, value: &str, origin: &Origin) -> Result<(), ConnError> {
    let invalid = |reason: &str| ConnError::InvalidValue {
        keyword: keyword.to_owned(),
        value: value.to_owned(),
        origin: origin.clone(),
        reason: reason.to_owned(),
    };
    match keyword {
        "port" => {
            for port in value.split(',') {
                if !port.trim().is_empty() {
                    parse_port(port)
                        .ok_or_else(|| invalid("a port is a number from 1 to 65535"))?;
                }
            }
        }
        "hostaddr" => {
            for addr in value.split(',') {
                if !addr.trim().is_empty() && addr.trim().parse::<std::net::IpAddr>().is_err() {
                    return Err(invalid("hostaddr takes numeric IP addresses"));
                }
            }
        }
        "connect_timeout" | "keepalives"
            if !value.trim().is_empty() && value.trim().parse::<i64>().is_err() =>
        {
            return Err(invalid("expected an integer"));
        }
        "keepalives_idle" | "keepalives_interval" | "keepalives_count"
            if !value.trim().is_empty() && value.trim().parse::<u32>().is_err() =>
        {
            return Err(invalid("expected a non-negative integer"));
        }
        "sslmode" => {
            value.parse::<SslMode>().map_err(|()| {
                invalid("expected disable, allow, prefer, require, verify-ca or verify-full")
            })?;
        }
        "channel_binding" => {
            value
                .parse::<ChannelBinding>()
                .map_err(|()| invalid("expected disable, prefer or require"))?;
        }
        "target_session_attrs" => match value {
            "any" | "read-write" | "read-only" => {}
            "primary" | "standby" | "prefer-standby" => {
                return Err(invalid(
                    "not supported by safe-backup; supported are any, read-write and read-only",
                ))
            }
            _ => return Err(invalid("expected any, read-write or read-only")),
        },
        "sslrootcert" if value == "system" => {
            return Err(invalid(
                "the system certificate store is not supported by safe-backup; give a CA file",
            ))
        }
        _ => {}
    }
    Ok(())
}

fn parse_port(text: &str) -> Option<u16> {
    text.trim().parse::<u16>().ok().filter(|p| *p != 0)
}

/// Raw, validated libpq keywords -> values, as parsed from a conninfo string or URI.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnParams {
    values: BTreeMap<String, String>,
}

impl fmt::Debug for ConnParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (keyword, value) in &self.values {
            if keyword == "password" {
                map.entry(keyword, &"********");
            } else {
                map.entry(keyword, value);
            }
        }
        map.finish()
    }
}

impl ConnParams {
    /// Parses a libpq connection string: `keyword=value ...` or a `postgresql://` /
    /// `postgres://` URI. The empty string gives empty params.
    pub fn parse(conninfo: &str) -> Result<ConnParams, ConnError> {
        let pairs = if let Some(rest) = strip_uri_prefix(conninfo) {
            parse_uri(rest)?
        } else {
            parse_keyword_value(conninfo)?
        };
        let mut params = ConnParams::default();
        for (keyword, value) in pairs {
            params.insert(&keyword, value)?;
        }
        Ok(params)
    }

    /// Sets one keyword, overriding an earlier value. Like libpq's `expand_dbname`, a `dbname`
    /// that is itself a connection string (contains `=` or starts with `postgresql://`) is
    /// expanded, each of its keywords overriding.
    pub fn set(&mut self, keyword: &str, value: &str) -> Result<(), ConnError> {
        if keyword == "dbname" && (value.contains('=') || strip_uri_prefix(value).is_some()) {
            let expanded = ConnParams::parse(value)?;
            self.values.extend(expanded.values);
            return Ok(());
        }
        self.insert(keyword, value.to_owned())
    }

    /// The value given for a keyword, if any.
    pub fn get(&self, keyword: &str) -> Option<&str> {
        self.values.get(keyword).map(String::as_str)
    }

    /// Whether no keyword was given.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn insert(&mut self, keyword: &str, value: String) -> Result<(), ConnError> {
        check_keyword(keyword, &Origin::Params)?;
        check_value(keyword, &value, &Origin::Params)?;
        self.values.insert(keyword.to_owned(), value);
        Ok(())
    }
}

fn strip_uri_prefix(text: &str) -> Option<&str> {
    text.strip_prefix("postgresql://")
        .or_else(|| text.strip_prefix("postgres://"))
}

/// libpq's `conninfo_parse`: `keyword = value` pairs, values optionally single-quoted, `\`
/// escaping the next character both inside and outside quotes.
fn parse_keyword_value(conninfo: &str) -> Result<Vec<(String, String)>, ConnError> {
    let mut pairs = Vec::new();
    let mut chars = conninfo.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut keyword = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            keyword.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.next() {
            Some('=') => {}
            None => return Err(ConnError::MissingValue { keyword }),
            Some(_) => return Err(ConnError::MissingEquals { keyword }),
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(ConnError::UnterminatedQuote),
                    Some('\\') => {
                        if let Some(c) = chars.next() {
                            value.push(c);
                        }
                    }
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((keyword, value));
    }
    Ok(pairs)
}

/// Percent-decoding as libpq does it: a `%` must be followed by two hex digits, and `%00` is
/// refused.
fn uri_decode(text: &str) -> Result<String, ConnError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
            match hex {
                Some(b"00") => {
                    return Err(ConnError::InvalidUri {
                        reason: "forbidden value %00 in percent-encoded value".to_owned(),
                    })
                }
                Some(_) => i += 3,
                None => {
                    return Err(ConnError::InvalidUri {
                        reason: "invalid percent-encoded token".to_owned(),
                    })
                }
            }
        } else {
            i += 1;
        }
    }
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ConnError::InvalidUri {
            reason: "percent-encoded value is not UTF-8".to_owned(),
        })
}

/// libpq's `conninfo_uri_parse`, after the scheme:
/// `[user[:password]@][host][:port][,...][/dbname][?param1=value1&...]`.
fn parse_uri(rest: &str) -> Result<Vec<(String, String)>, ConnError> {
    let mut pairs = Vec::new();
    let (main, query) = match rest.split_once('?') {
        Some((main, query)) => (main, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match main.split_once('/') {
        Some((authority, path)) => (authority, Some(path)),
        None => (main, None),
    };
    // The last '@' ends the user part: hosts cannot contain one, careless passwords might.
    let hostspec = match authority.rsplit_once('@') {
        Some((userinfo, hostspec)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                pairs.push(("user".to_owned(), uri_decode(user)?));
            }
            if let Some(password) = password {
                pairs.push(("password".to_owned(), uri_decode(password)?));
            }
            hostspec
        }
        None => authority,
    };
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    for entry in hostspec.split(',') {
        let (host, port) = if let Some(bracketed) = entry.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| ConnError::InvalidUri {
                    reason: "missing \"]\" after an IPv6 host address".to_owned(),
                })?;
            if host.is_empty() {
                return Err(ConnError::InvalidUri {
                    reason: "IPv6 host address may not be empty".to_owned(),
                });
            }
            let port = match after {
                "" => "",
                _ => after
                    .strip_prefix(':')
                    .ok_or_else(|| ConnError::InvalidUri {
                        reason: format!(
                            "unexpected character \"{}\" after an IPv6 host address",
                            after.chars().next().unwrap_or(' ')
                        ),
                    })?,
            };
            (host, port)
        } else {
            entry.split_once(':').unwrap_or((entry, ""))
        };
        hosts.push(uri_decode(host)?);
        ports.push(uri_decode(port)?);
    }
    if hosts.iter().any(|h| !h.is_empty()) {
        pairs.push(("host".to_owned(), hosts.join(",")));
    }
    if ports.iter().any(|p| !p.is_empty()) {
        pairs.push(("port".to_owned(), ports.join(",")));
    }
    if let Some(path) = path.filter(|p| !p.is_empty()) {
        pairs.push(("dbname".to_owned(), uri_decode(path)?));
    }
    for param in query.into_iter().flat_map(|q| q.split('&')) {
        if param.is_empty() {
            continue;
        }
        let (key, value) = param.split_once('=').ok_or_else(|| ConnError::InvalidUri {
            reason: format!("missing key/value separator \"=\" in query parameter \"{param}\""),
        })?;
        let key = uri_decode(key)?;
        let value = uri_decode(value)?;
        // libpq's JDBC-compatible spelling.
        if key == "ssl" && value == "true" {
            pairs.push(("sslmode".to_owned(), "require".to_owned()));
        } else {
            pairs.push((key, value));
        }
    }
    Ok(pairs)
}

/// The process environment as libpq sees it; injectable for tests.
#[derive(Clone, Debug, Default)]
pub struct Environment {
    /// Environment variables (only the `PG*` ones matter).
    pub vars: HashMap<String, String>,
    /// The home directory, for `~/.pgpass`, `~/.pg_service.conf` and `~/.postgresql/`.
    pub home: Option<PathBuf>,
    /// The operating-system user name, libpq's default user.
    pub os_user: String,
}

impl Environment {
    /// Reads the real environment, the home directory (`$HOME`, else the password database)
    /// and the user name of the effective uid.
    pub fn from_process() -> Environment {
        let vars: HashMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let account = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten();
        let home = vars
            .get("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| account.as_ref().map(|a| a.dir.clone()));
        let os_user = account
            .map(|a| a.name)
            .or_else(|| vars.get("USER").cloned())
            .unwrap_or_default();
        Environment {
            vars,
            home,
            os_user,
        }
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
}

/// A password, kept out of every log line and error message.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

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

fn socket_file(dir: &Path, port: u16) -> PathBuf {
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

/// The first of `candidates` that holds the socket for `port`, else the first candidate.
fn default_socket_dir(candidates: &[&Path], port: u16) -> PathBuf {
    candidates
        .iter()
        .find(|dir| socket_file(dir, port).exists())
        .or(candidates.first())
        .map_or_else(
            || PathBuf::from(DEFAULT_SOCKET_DIRS[0]),
            |d| d.to_path_buf(),
        )
}

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

/// A service definition: keyword -> (value, the file and line that set it).
type ServiceValues = HashMap<String, (String, Origin)>;

/// The layered view of one keyword: params > service > environment.
struct Layers<'a> {
    params: &'a ConnParams,
    service: ServiceValues,
    env: &'a Environment,
}

impl Layers<'_> {
    /// The value for a keyword and where it came from. An empty environment variable counts as
    /// unset, like libpq's callers usually expect; an empty explicit value is kept.
    fn get(&self, keyword: &str) -> Option<(String, Origin)> {
        if let Some(value) = self.params.get(keyword) {
            return Some((value.to_owned(), Origin::Params));
        }
        if let Some((value, origin)) = self.service.get(keyword) {
            return Some((value.clone(), origin.clone()));
        }
        let var = SUPPORTED
            .iter()
            .find(|(k, _)| *k == keyword)
            .and_then(|(_, var)| *var)?;
        self.env
            .var(var)
            .map(|value| (value.to_owned(), Origin::Env(var.to_owned())))
    }

    /// A non-empty value, validated (values from the environment and service files were not
    /// checked on the way in).
    fn value(&self, keyword: &str) -> Result<Option<(String, Origin)>, ConnError> {
        match self.get(keyword) {
            Some((value, origin)) if !value.is_empty() => {
                check_value(keyword, &value, &origin)?;
                Ok(Some((value, origin)))
            }
            _ => Ok(None),
        }
    }

    fn string(&self, keyword: &str) -> Result<Option<String>, ConnError> {
        Ok(self.value(keyword)?.map(|(v, _)| v))
    }

    fn seconds(&self, keyword: &str) -> Result<Option<u64>, ConnError> {
        match self.value(keyword)? {
            None => Ok(None),
            Some((value, origin)) => {
                value
                    .trim()
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| ConnError::InvalidValue {
                        keyword: keyword.to_owned(),
                        value,
                        origin,
                        reason: "expected a non-negative integer".to_owned(),
                    })
            }
        }
    }
}

impl ConnSettings {
    /// Layers explicit params, the service file, the environment and libpq's defaults.
    ///
    /// Precedence follows libpq's `conninfo_add_defaults`: the service definition is applied
    /// to every keyword the params left unset *before* the environment is consulted, so a
    /// service value beats a `PG*` variable (and `PGSERVICE` itself is just the fallback for
    /// `service=`).
    pub fn resolve(params: &ConnParams, env: &Environment) -> Result<ConnSettings, ConnError> {
        // A PG* variable for an option we don't implement would change what libpq does;
        // refuse it rather than connect differently than the user asked.
        for (keyword, var) in UNSUPPORTED {
            if let Some(var) = var {
                if env.var(var).is_some_and(|v| !v.is_empty()) {
                    return Err(ConnError::Unsupported {
                        keyword: (*keyword).to_owned(),
                        origin: Origin::Env((*var).to_owned()),
                    });
                }
            }
        }
        let service_name = params
            .get("service")
            .filter(|s| !s.is_empty())
            .or_else(|| env.var("PGSERVICE").filter(|s| !s.is_empty()))
            .map(str::to_owned);
        let service = match &service_name {
            Some(name) => load_service(name, env)?,
            None => HashMap::new(),
        };
        let layers = Layers {
            params,
            service,
            env,
        };

        let port_spec = layers.value("port")?;
        let ports: Vec<u16> = match &port_spec {
            None => vec![DEFAULT_PORT],
            Some((value, _)) => value
                .split(',')
                .map(|p| parse_port(p).unwrap_or(DEFAULT_PORT))
                .collect(),
        };
        let host = layers.value("host")?;
        let hostaddr = layers.value("hostaddr")?;
        let host_list = match (host, hostaddr) {
            (Some((_, host_origin)), Some((_, addr_origin))) => {
                return Err(ConnError::Unsupported {
                    keyword: "hostaddr together with host".to_owned(),
                    origin: if addr_origin == Origin::Params {
                        host_origin
                    } else {
                        addr_origin
                    },
                })
            }
            (Some((value, _)), None) | (None, Some((value, _))) => {
                value.split(',').map(|h| h.trim().to_owned()).collect()
            }
            (None, None) => vec![String::new()],
        };
        if ports.len() != 1 && ports.len() != host_list.len() {
            return Err(ConnError::PortCount {
                ports: ports.len(),
                hosts: host_list.len(),
            });
        }
        let socket_dirs: Vec<&Path> = DEFAULT_SOCKET_DIRS.iter().map(Path::new).collect();
        let hosts = host_list
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let port = if ports.len() == 1 { ports[0] } else { ports[i] };
                if host.is_empty() {
                    HostTarget::Socket {
                        dir: default_socket_dir(&socket_dirs, port),
                        port,
                    }
                } else if host.starts_with('/') {
                    HostTarget::Socket {
                        dir: PathBuf::from(host),
                        port,
                    }
                } else {
                    HostTarget::Tcp {
                        host: host.clone(),
                        port,
                    }
                }
            })
            .collect();

        let user = match layers.string("user")? {
            Some(user) => user,
            None if !env.os_user.is_empty() => env.os_user.clone(),
            None => return Err(ConnError::NoUser),
        };
        let dbname = layers.string("dbname")?.unwrap_or_else(|| user.clone());
        let password = layers.string("password")?.map(Password);
        let home_file = |parts: &[&str]| {
            env.home.as_ref().map(|h| {
                let mut path = h.clone();
                path.extend(parts);
                path
            })
        };
        let passfile = layers
            .string("passfile")?
            .map(PathBuf::from)
            .or_else(|| home_file(&[".pgpass"]));
        let sslmode = match layers.value("sslmode")? {
            Some((value, _)) => value.parse().unwrap_or(SslMode::Prefer),
            None => SslMode::Prefer,
        };
        let sslrootcert = layers
            .string("sslrootcert")?
            .map(PathBuf::from)
            .or_else(|| home_file(&[".postgresql", "root.crt"]));
        let sslcert = layers
            .string("sslcert")?
            .map(PathBuf::from)
            .or_else(|| home_file(&[".postgresql", "postgresql.crt"]));
        let sslkey = layers
            .string("sslkey")?
            .map(PathBuf::from)
            .or_else(|| home_file(&[".postgresql", "postgresql.key"]));
        let application_name = match layers.string("application_name")? {
            Some(name) => Some(name),
            None => layers.string("fallback_application_name")?,
        };
        // libpq: zero or negative waits forever; anything below 2 s counts as 2 s.
        let connect_timeout = match layers.value("connect_timeout")? {
            None => None,
            Some((value, _)) => match value.trim().parse::<i64>() {
                Ok(secs) if secs > 0 => Some(Duration::from_secs(secs.max(2).unsigned_abs())),
                _ => None,
            },
        };
        let keepalives = match layers.value("keepalives")? {
            None => true,
            Some((value, _)) => value.trim().parse::<i64>() != Ok(0),
        };
        let keepalives_idle = layers.seconds("keepalives_idle")?.map(Duration::from_secs);
        let keepalives_interval = layers
            .seconds("keepalives_interval")?
            .map(Duration::from_secs);
        let keepalives_retries = layers
            .seconds("keepalives_count")?
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        let options = layers.string("options")?;
        let target_session_attrs = match layers.string("target_session_attrs")?.as_deref() {
            Some("read-write") => TargetSessionAttrs::ReadWrite,
            Some("read-only") => TargetSessionAttrs::ReadOnly,
            _ => TargetSessionAttrs::Any,
        };
        let channel_binding = match layers.value("channel_binding")? {
            Some((value, _)) => value.parse().unwrap_or(ChannelBinding::Prefer),
            None => ChannelBinding::Prefer,
        };
        Ok(ConnSettings {
            hosts,
            user,
            dbname,
            password,
            passfile,
            sslmode,
            sslrootcert,
            sslcert,
            sslkey,
            application_name,
            connect_timeout,
            keepalives,
            keepalives_idle,
            keepalives_interval,
            keepalives_retries,
            options,
            target_session_attrs,
            channel_binding,
            service: service_name,
        })
    }

    /// A conninfo-style line for logs and messages, e.g.
    /// `host=/var/run/postgresql port=5432 user=postgres dbname=postgres`; never the password.
    pub fn describe(&self) -> String {
        let mut parts = vec![
            format!("host={}", quote_conninfo(&self.host_list())),
            format!("port={}", self.port_list()),
            format!("user={}", quote_conninfo(&self.user)),
            format!("dbname={}", quote_conninfo(&self.dbname)),
        ];
        if self.sslmode != SslMode::Prefer {
            parts.push(format!("sslmode={}", self.sslmode));
        }
        if self.target_session_attrs != TargetSessionAttrs::Any {
            parts.push(format!(
                "target_session_attrs={}",
                self.target_session_attrs.as_str()
            ));
        }
        if let Some(service) = &self.service {
            parts.push(format!("service={}", quote_conninfo(service)));
        }
        parts.join(" ")
    }

    fn host_list(&self) -> String {
        self.hosts
            .iter()
            .map(HostTarget::host_keyword)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn port_list(&self) -> String {
        let ports: Vec<u16> = self.hosts.iter().map(HostTarget::port).collect();
        if ports.windows(2).all(|w| w[0] == w[1]) {
            ports.first().copied().unwrap_or(DEFAULT_PORT).to_string()
        } else {
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",")
        }
    }

    /// The variables that make a libpq child (`pg_dump`, `psql`) connect exactly like this.
    /// Secrets go here, never into argv. `PGPASSWORD` is set only for a password given
    /// explicitly; one from the password file reaches the child through `PGPASSFILE`.
    /// Clear [`LIBPQ_ENV_VARS`] in the child first.
    pub fn libpq_env(&self) -> Vec<(String, String)> {
        let mut vars = vec![
            ("PGHOST".to_owned(), self.host_list()),
            ("PGPORT".to_owned(), self.port_list()),
            ("PGUSER".to_owned(), self.user.clone()),
            ("PGDATABASE".to_owned(), self.dbname.clone()),
            ("PGSSLMODE".to_owned(), self.sslmode.as_str().to_owned()),
            (
                "PGCHANNELBINDING".to_owned(),
                self.channel_binding.as_str().to_owned(),
            ),
        ];
        let mut push_path = |name: &str, path: &Option<PathBuf>| {
            if let Some(path) = path {
                vars.push((name.to_owned(), path.display().to_string()));
            }
        };
        push_path("PGSSLROOTCERT", &self.sslrootcert);
        push_path("PGSSLCERT", &self.sslcert);
        push_path("PGSSLKEY", &self.sslkey);
        push_path("PGPASSFILE", &self.passfile);
        if let Some(name) = &self.application_name {
            vars.push(("PGAPPNAME".to_owned(), name.clone()));
        }
        if let Some(timeout) = self.connect_timeout {
            vars.push((
                "PGCONNECT_TIMEOUT".to_owned(),
                timeout.as_secs().to_string(),
            ));
        }
        if let Some(options) = &self.options {
            vars.push(("PGOPTIONS".to_owned(), options.clone()));
        }
        if self.target_session_attrs != TargetSessionAttrs::Any {
            vars.push((
                "PGTARGETSESSIONATTRS".to_owned(),
                self.target_session_attrs.as_str().to_owned(),
            ));
        }
        if let Some(password) = &self.password {
            vars.push(("PGPASSWORD".to_owned(), password.expose().to_owned()));
        }
        vars
    }

    /// The password for one host: the explicit one, else the matching password-file line.
    pub fn password_for(&self, target: &HostTarget) -> Option<Password> {
        if let Some(password) = self.password.as_ref().filter(|p| !p.0.is_empty()) {
            return Some(password.clone());
        }
        let passfile = self.passfile.as_ref()?;
        pgpass_lookup(passfile, target, &self.dbname, &self.user)
    }

    /// Connects to the first host that accepts, trying them in order like libpq. When every
    /// host fails, the error names each attempt.
    pub async fn connect(&self) -> Result<Session, ConnError> {
        let tls = if self.sslmode != SslMode::Disable
            && self
                .hosts
                .iter()
                .any(|h| matches!(h, HostTarget::Tcp { .. }))
        {
            Some(self.tls_connector()?)
        } else {
            None
        };
        let mut attempts = Vec::new();
        for target in &self.hosts {
            match self.connect_host(target, tls.as_ref()).await {
                Ok(session) => return Ok(session),
                Err(attempt) => {
                    tracing::debug!(target = %attempt.target, error = %attempt.message, "connection attempt failed");
                    attempts.push(attempt);
                }
            }
        }
        Err(ConnError::Connect {
            attempts,
            passfile: self.passfile.clone(),
        })
    }

    fn pg_config(&self, target: &HostTarget) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        match target {
            HostTarget::Tcp { host, port } => {
                config.host(host).port(*port);
            }
            HostTarget::Socket { dir, port } => {
                config.host_path(dir).port(*port);
            }
        }
        config.user(&self.user).dbname(&self.dbname);
        if let Some(password) = self.password_for(target) {
            config.password(password.expose());
        }
        if let Some(name) = &self.application_name {
            config.application_name(name);
        }
        if let Some(options) = &self.options {
            config.options(options);
        }
        if let Some(timeout) = self.connect_timeout {
            config.connect_timeout(timeout);
        }
        config.keepalives(self.keepalives);
        if let Some(idle) = self.keepalives_idle {
            config.keepalives_idle(idle);
        }
        if let Some(interval) = self.keepalives_interval {
            config.keepalives_interval(interval);
        }
        if let Some(retries) = self.keepalives_retries {
            config.keepalives_retries(retries);
        }
        config.target_session_attrs(match self.target_session_attrs {
            TargetSessionAttrs::Any => tokio_postgres::config::TargetSessionAttrs::Any,
            TargetSessionAttrs::ReadWrite => tokio_postgres::config::TargetSessionAttrs::ReadWrite,
            TargetSessionAttrs::ReadOnly => tokio_postgres::config::TargetSessionAttrs::ReadOnly,
        });
        config.channel_binding(match self.channel_binding {
            ChannelBinding::Disable => tokio_postgres::config::ChannelBinding::Disable,
            ChannelBinding::Prefer => tokio_postgres::config::ChannelBinding::Prefer,
            ChannelBinding::Require => tokio_postgres::config::ChannelBinding::Require,
        });
        // Sockets never use TLS; "allow" is treated as "prefer" (see SslMode::Allow).
        config.ssl_mode(match (target, self.sslmode) {
            (HostTarget::Socket { .. }, _) | (_, SslMode::Disable) => {
                tokio_postgres::config::SslMode::Disable
            }
            (_, SslMode::Allow | SslMode::Prefer) => tokio_postgres::config::SslMode::Prefer,
            (_, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull) => {
                tokio_postgres::config::SslMode::Require
            }
        });
        config
    }

    async fn connect_host(
        &self,
        target: &HostTarget,
        tls: Option<&tokio_postgres_rustls::MakeRustlsConnect>,
    ) -> Result<Session, ConnectAttempt> {
        let config = self.pg_config(target);
        let attempt = async {
            match tls {
                Some(tls) if matches!(target, HostTarget::Tcp { .. }) => config
                    .connect(tls.clone())
                    .await
                    .map(|(client, connection)| (client, spawn_connection(connection))),
                _ => config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map(|(client, connection)| (client, spawn_connection(connection))),
            }
        };
        // libpq's connect_timeout bounds the whole attempt, startup and authentication
        // included; tokio-postgres bounds only the socket connect.
        let result = match self.connect_timeout {
            Some(limit) => match tokio::time::timeout(limit, attempt).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(ConnectAttempt {
                        target: target.clone(),
                        kind: AttemptFailure::Timeout,
                        message: "timeout expired".to_owned(),
                    })
                }
            },
            None => attempt.await,
        };
        match result {
            Ok((client, events)) => Ok(Session {
                client,
                events,
                target: target.clone(),
            }),
            Err(error) => {
                let (kind, message) = classify(&error);
                Err(ConnectAttempt {
                    target: target.clone(),
                    kind,
                    message,
                })
            }
        }
    }

    /// The rustls client for TCP hosts, built with the ring provider explicitly (no process
    /// default is assumed).
    fn tls_connector(&self) -> Result<tokio_postgres_rustls::MakeRustlsConnect, ConnError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let root_file = self.sslrootcert.as_deref().filter(|f| f.exists());
        let verifier: Arc<dyn ServerCertVerifier> = match self.sslmode {
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let file = self.sslrootcert.as_deref().ok_or(ConnError::NoRootCert {
                    sslmode: self.sslmode,
                })?;
                let roots = load_roots(file)?;
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| ConnError::TlsSetup(e.to_string()))?;
                if self.sslmode == SslMode::VerifyFull {
                    webpki
                } else {
                    Arc::new(ChainOnlyVerifier(webpki))
                }
            }
            // libpq: with a root certificate file present, even require/prefer verify the
            // chain (but not the host name).
            _ => match root_file {
                Some(file) => {
                    let roots = load_roots(file)?;
                    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider.clone(),
                    )
                    .build()
                    .map_err(|e| ConnError::TlsSetup(e.to_string()))?;
                    Arc::new(ChainOnlyVerifier(webpki))
                }
                None => Arc::new(AnyCertVerifier(provider.clone())),
            },
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConnError::TlsSetup(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        // libpq uses the client certificate when its file exists, and ignores it otherwise.
        let config = match self.sslcert.as_deref().filter(|f| f.exists()) {
            Some(cert_file) => {
                let certs = load_certs(cert_file, "client certificate")?;
                let key_file = self.sslkey.as_deref().ok_or_else(|| ConnError::TlsFile {
                    what: "client certificate",
                    file: cert_file.to_path_buf(),
                    reason: "no sslkey given for it".to_owned(),
                })?;
                let key = load_key(key_file)?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| ConnError::TlsFile {
                        what: "client certificate",
                        file: cert_file.to_path_buf(),
                        reason: format!("{e} (with key {})", key_file.display()),
                    })?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }
}

/// Quotes a conninfo value when it needs it.
pub fn quote_conninfo(value: &str) -> String {
    if !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\')
    {
        return value.to_owned();
    }
    let mut quoted = String::from("'");
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

/// The message and kind of a failed tokio-postgres connect, libpq-like.
fn classify(error: &tokio_postgres::Error) -> (AttemptFailure, String) {
    if let Some(db) = error.as_db_error() {
        let kind = match db.code().code() {
            // invalid_password, invalid_authorization_specification
            "28P01" | "28000" => AttemptFailure::AuthFailed,
            _ => AttemptFailure::Server,
        };
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

fn strip_os_error(text: &str) -> String {
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_owned(),
        _ => text.to_owned(),
    }
}

fn load_certs(file: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, ConnError> {
    let tls_file = |reason: String| ConnError::TlsFile {
        what,
        file: file.to_path_buf(),
        reason,
    };
    let handle = fs::File::open(file).map_err(|e| {
        tls_file(if e.kind() == io::ErrorKind::NotFound {
            "it does not exist".to_owned()
        } else {
            e.to_string()
        })
    })?;
    let certs = rustls_pemfile::certs(&mut io::BufReader::new(handle))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_file(e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_file("no PEM certificate in it".to_owned()));
    }
    Ok(certs)
}

fn load_roots(file: &Path) -> Result<RootCertStore, ConnError> {
    let certs = load_certs(file, "root certificate")?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| ConnError::TlsFile {
            what: "root certificate",
            file: file.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// Loads a client key, refusing one others can read (libpq: 0600, or 0640 when root owns it).
fn load_key(file: &Path) -> Result<PrivateKeyDer<'static>, ConnError> {
    let key_file = |reason: String| ConnError::TlsFile {
        what: "client key",
        file: file.to_path_buf(),
        reason,
    };
    let meta = fs::metadata(file).map_err(|e| key_file(e.to_string()))?;
    if !meta.is_file() {
        return Err(key_file("not a regular file".to_owned()));
    }
    let allowed = if meta.uid() == 0 { 0o037 } else { 0o077 };
    if meta.mode() & allowed != 0 {
        return Err(key_file(
            "has group or world access; permissions should be u=rw (0600) or less".to_owned(),
        ));
    }
    let handle = fs::File::open(file).map_err(|e| key_file(e.to_string()))?;
    rustls_pemfile::private_key(&mut io::BufReader::new(handle))
        .map_err(|e| key_file(e.to_string()))?
        .ok_or_else(|| key_file("no PEM private key in it".to_owned()))
}

/// `sslmode=require` without a root certificate: encryption only. Handshake signatures are
/// still verified, so the peer must hold the key of the certificate it shows.
#[derive(Debug)]
struct AnyCertVerifier(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnlyVerifier(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name, so a name error means the chain is good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Service files in libpq's order: `PGSERVICEFILE` or `~/.pg_service.conf`, then
/// `PGSYSCONFDIR/pg_service.conf` (or the distribution's default). The first file that
/// defines the service is used alone.
fn service_files(env: &Environment) -> Vec<PathBuf> {
    let mut files = Vec::new();
    match env.var("PGSERVICEFILE").filter(|v| !v.is_empty()) {
        Some(file) => files.push(PathBuf::from(file)),
        None => {
            if let Some(home) = &env.home {
                files.push(home.join(".pg_service.conf"));
            }
        }
    }
    match env.var("PGSYSCONFDIR").filter(|v| !v.is_empty()) {
        Some(dir) => files.push(Path::new(dir).join("pg_service.conf")),
        None => files.extend(DEFAULT_SYSCONF_SERVICE_FILES.iter().map(PathBuf::from)),
    }
    files
}

fn load_service(name: &str, env: &Environment) -> Result<ServiceValues, ConnError> {
    let files = service_files(env);
    for file in &files {
        let text = match fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(ConnError::ServiceFileRead {
                    file: file.clone(),
                    source,
                })
            }
        };
        if let Some(values) = parse_service_file(&text, name, file)? {
            return Ok(values);
        }
    }
    Err(ConnError::ServiceNotFound {
        service: name.to_owned(),
        searched: files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Runs every parser that reads untrusted text (conninfo strings and URIs, the
/// layering onto an empty environment, a pgpass line, a service file) on `text`.
/// The entry point of the `fuzz/` targets; none of them may panic.
#[doc(hidden)]
pub fn fuzz_parsers(text: &str) {
    if let Ok(params) = ConnParams::parse(text) {
        let _ = ConnSettings::resolve(&params, &Environment::default());
        let _ = format!("{params:?}");
    }
    let _ = pgpass_match(text, "localhost", "5432", "db", "user");
    let _ = parse_service_file(text, "svc", Path::new("fuzz"));
}

/// The `[name]` section of a service file, `None` if the file does not define it. Only the
/// wanted section is checked, like libpq; within it the first value of a keyword wins.
fn parse_service_file(
    text: &str,
    name: &str,
    file: &Path,
) -> Result<Option<ServiceValues>, ConnError> {
    let mut values: Option<ServiceValues> = None;
    let mut in_group = false;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(group) = line.strip_prefix('[') {
            in_group = group.strip_suffix(']') == Some(name);
            if in_group && values.is_none() {
                values = Some(HashMap::new());
            }
            continue;
        }
        if !in_group {
            continue;
        }
        let syntax = |reason: String| ConnError::ServiceFileSyntax {
            file: file.to_path_buf(),
            line: line_no,
            reason,
        };
        let (keyword, value) = line
            .split_once('=')
            .ok_or_else(|| syntax("expected keyword=value".to_owned()))?;
        let keyword = keyword.trim();
        let value = value.trim();
        if keyword == "service" {
            return Err(syntax(
                "nested service specifications not supported".to_owned(),
            ));
        }
        let origin = Origin::Service {
            file: file.to_path_buf(),
            line: line_no,
        };
        check_keyword(keyword, &origin)?;
        if let Some(values) = values.as_mut() {
            values
                .entry(keyword.to_owned())
                .or_insert_with(|| (value.to_owned(), origin));
        }
    }
    Ok(values)
}

/// Looks `target` up in a password file. A missing file gives nothing; a file that is not a
/// regular file or that others may read is ignored with a warning, like libpq.
fn pgpass_lookup(file: &Path, target: &HostTarget, dbname: &str, user: &str) -> Option<Password> {
    let meta = match fs::metadata(file) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %file.display(), "password file ignored: {e}");
            return None;
        }
    };
    if !meta.is_file() {
        tracing::warn!(file = %file.display(), "password file ignored: not a regular file");
        return None;
    }
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(
            file = %file.display(),
            "password file ignored: it has group or world access; permissions should be u=rw (0600) or less"
        );
        return None;
    }
    let handle = match fs::File::open(file) {
        Ok(handle) => handle,
        Err(e) => {
            tracing::warn!(file = %file.display(), "password file ignored: {e}");
            return None;
        }
    };
    // libpq matches a socket connection against "localhost".
    let host = match target {
        HostTarget::Tcp { host, .. } => host.as_str(),
        HostTarget::Socket { .. } => "localhost",
    };
    let port = target.port().to_string();
    for line in io::BufReader::new(handle).lines() {
        let Ok(line) = line else {
            tracing::warn!(file = %file.display(), "password file: stopped at an unreadable line");
            return None;
        };
        if let Some(password) = pgpass_match(&line, host, &port, dbname, user) {
            return Some(password);
        }
    }
    None
}

/// One `hostname:port:database:username:password` line against a connection. `*` matches
/// anything; `\:` and `\\` are a literal colon and backslash.
fn pgpass_match(line: &str, host: &str, port: &str, dbname: &str, user: &str) -> Option<Password> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut rest = line;
    for wanted in [host, port, dbname, user] {
        rest = pgpass_field_matches(rest, wanted)?;
    }
    // The rest is the password, up to an unescaped ':'.
    let mut password = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            ':' => break,
            '\\' => match chars.next() {
                Some(escaped) => password.push(escaped),
                None => password.push('\\'),
            },
            c => password.push(c),
        }
    }
    Some(Password(password))
}

/// If the field at the start of `rest` matches `wanted`, what follows its ':'.
fn pgpass_field_matches<'a>(rest: &'a str, wanted: &str) -> Option<&'a str> {
    if let Some(after) = rest.strip_prefix("*:") {
        return Some(after);
    }
    let mut field = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            ':' => return (field == wanted).then(|| &rest[i + 1..]),
            '\\' => field.push(chars.next().map_or('\\', |(_, c)| c)),
            c => field.push(c),
        }
    }
    None
}

/// An open connection whose Connection future is spawned on the current tokio runtime.
#[derive(Debug)]
pub struct Session {
    /// Runs queries.
    pub client: tokio_postgres::Client,
    /// Notifications, notices and the end of the connection, in arrival order.
    pub events: mpsc::UnboundedReceiver<SessionEvent>,
    /// The host that accepted the session.
    pub target: HostTarget,
}

/// What the spawned connection task reports.
// The variants are as large as tokio-postgres makes them; events are rare, boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum SessionEvent {
    /// A `NOTIFY` on a channel this session `LISTEN`s to.
    Notification(tokio_postgres::Notification),
    /// A notice or warning from the server.
    Notice(tokio_postgres::error::DbError),
    /// The connection ended; the error text if it ended in one. Sent once, last.
    Closed(Option<String>),
}

fn spawn_connection<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
) -> mpsc::UnboundedReceiver<SessionEvent>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        let mut end = None;
        while let Some(message) = messages.next().await {
            // A closed receiver is fine: nobody is listening any more.
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    let _ = sender.send(SessionEvent::Notification(notification));
                }
                Ok(AsyncMessage::Notice(notice)) => {
                    tracing::debug!(
                        severity = notice.severity(),
                        "server notice: {}",
                        notice.message()
                    );
                    let _ = sender.send(SessionEvent::Notice(notice));
                }
                Ok(_) => {}
                Err(error) => {
                    let (_, text) = classify(&error);
                    tracing::warn!("database connection ended: {text}");
                    end = Some(text);
                    break;
                }
            }
        }
        let _ = sender.send(SessionEvent::Closed(end));
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// An environment with nothing from the machine: no PG* variables, a temporary home,
    /// and PGSYSCONFDIR pointing into it so /etc is never read.
    fn test_env(home: &Path, vars: &[(&str, &str)]) -> Environment {
        let mut map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        map.entry("PGSYSCONFDIR".to_owned())
            .or_insert_with(|| home.join("etc").display().to_string());
        Environment {
            vars: map,
            home: Some(home.to_path_buf()),
            os_user: "alice".to_owned(),
        }
    }

    fn resolve(conninfo: &str, env: &Environment) -> Result<ConnSettings, ConnError> {
        ConnSettings::resolve(&ConnParams::parse(conninfo)?, env)
    }

    fn write_mode(path: &Path, text: &str, mode: u32) {
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    // --- keyword=value strings (pg_back's vectors) ---

    #[test]
    fn quoted_socket_host() {
        let params = ConnParams::parse("host='/tmp'").unwrap();
        assert_eq!(params.get("host"), Some("/tmp"));
    }

    #[test]
    fn whitespace_around_equals_and_quoted_values() {
        let params =
            ConnParams::parse("host =  pg.local port\n = 5433 user=u1 dbname= 'silly name'")
                .unwrap();
        assert_eq!(params.values.len(), 4);
        assert_eq!(params.get("host"), Some("pg.local"));
        assert_eq!(params.get("port"), Some("5433"));
        assert_eq!(params.get("user"), Some("u1"));
        assert_eq!(params.get("dbname"), Some("silly name"));
    }

    #[test]
    fn missing_equals_names_the_word() {
        let error = ConnParams::parse("bad keyword = value").unwrap_err();
        assert_eq!(
            error.to_string(),
            "missing \"=\" after \"bad\" in connection info string"
        );
    }

    #[test]
    fn backslash_escapes_inside_and_outside_quotes() {
        let parsed = parse_keyword_value(r"key='\' \\ \p' other_key=ab\ cd").unwrap();
        assert_eq!(parsed, pairs(&[("key", r"' \ p"), ("other_key", "ab cd")]));
    }

    #[test]
    fn keyword_without_value() {
        assert!(matches!(
            parse_keyword_value("novalue"),
            Err(ConnError::MissingValue { keyword }) if keyword == "novalue"
        ));
    }

    #[test]
    fn unterminated_quote() {
        assert!(matches!(
            parse_keyword_value("key = 'no end quote"),
            Err(ConnError::UnterminatedQuote)
        ));
    }

    #[test]
    fn empty_string_and_empty_values() {
        assert!(ConnParams::parse("").unwrap().is_empty());
        assert!(ConnParams::parse("   ").unwrap().is_empty());
        let params = ConnParams::parse("dbname='' user=").unwrap();
        assert_eq!(params.get("dbname"), Some(""));
        assert_eq!(params.get("user"), Some(""));
        // As in libpq, whitespace after "=" is skipped, so the next word is the value.
        let params = ConnParams::parse("dbname= user=x").unwrap();
        assert_eq!(params.get("dbname"), Some("user=x"));
    }

    #[test]
    fn unknown_and_unsupported_keywords_are_refused_by_name() {
        assert_eq!(
            ConnParams::parse("hots=x").unwrap_err().to_string(),
            "invalid connection option \"hots\""
        );
        for keyword in [
            "gssencmode",
            "krbsrvname",
            "requirepeer",
            "sslcrl",
            "sslcompression",
            "tcp_user_timeout",
            "load_balance_hosts",
            "require_auth",
        ] {
            let error = ConnParams::parse(&format!("{keyword}=1")).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("connection option \"{keyword}\" is not supported by safe-backup")
            );
            assert_eq!(error.exit_status(), ExitStatus::Usage);
        }
    }

    #[test]
    fn values_are_checked() {
        for bad in [
            "port=abc",
            "port=0",
            "port=70000",
            "sslmode=maybe",
            "channel_binding=sometimes",
            "connect_timeout=soon",
            "keepalives_idle=-1",
            "hostaddr=db.example",
            "target_session_attrs=whatever",
        ] {
            assert!(
                matches!(ConnParams::parse(bad), Err(ConnError::InvalidValue { .. })),
                "{bad}"
            );
        }
        let error = ConnParams::parse("target_session_attrs=standby").unwrap_err();
        assert!(error.to_string().contains("not supported by safe-backup"));
        assert!(error.to_string().contains("\"standby\""));
        assert!(ConnParams::parse("target_session_attrs=read-only port=5432,,5433").is_ok());
    }

    #[test]
    fn set_overrides_and_validates() {
        let mut params = ConnParams::parse("host=a port=1").unwrap();
        params.set("host", "b").unwrap();
        assert_eq!(params.get("host"), Some("b"));
        assert!(params.set("sslcrl", "x").is_err());
        assert!(params.set("nonsense", "x").is_err());
    }

    #[test]
    fn dbname_holding_a_connection_string_is_expanded() {
        let mut params = ConnParams::parse("user=u port=1").unwrap();
        params
            .set("dbname", "host=h dbname='my db' port=2")
            .unwrap();
        assert_eq!(params.get("host"), Some("h"));
        assert_eq!(params.get("dbname"), Some("my db"));
        assert_eq!(params.get("port"), Some("2"));
        assert_eq!(params.get("user"), Some("u"));
        params.set("dbname", "postgresql://other/db2").unwrap();
        assert_eq!(params.get("host"), Some("other"));
        assert_eq!(params.get("dbname"), Some("db2"));
        // Within a connection string, dbname is literal (as in libpq).
        let literal = ConnParams::parse(r"dbname='a=b'").unwrap();
        assert_eq!(literal.get("dbname"), Some("a=b"));
    }

    // --- URIs ---

    #[test]
    fn uri_with_several_hosts_and_ports() {
        let params = ConnParams::parse("postgresql://host1:123,host2:456/somedb").unwrap();
        assert_eq!(params.get("host"), Some("host1,host2"));
        assert_eq!(params.get("port"), Some("123,456"));
        assert_eq!(params.get("dbname"), Some("somedb"));
        let settings =
            ConnSettings::resolve(&params, &test_env(Path::new("/nonexistent"), &[])).unwrap();
        assert_eq!(
            settings.hosts,
            vec![
                HostTarget::Tcp {
                    host: "host1".into(),
                    port: 123
                },
                HostTarget::Tcp {
                    host: "host2".into(),
                    port: 456
                },
            ]
        );
    }

    #[test]
    fn uri_with_ipv6_host() {
        let params = ConnParams::parse("postgresql://[::1]:5433").unwrap();
        assert_eq!(params.get("host"), Some("::1"));
        assert_eq!(params.get("port"), Some("5433"));
        assert_eq!(params.get("dbname"), None);
        assert!(ConnParams::parse("postgresql://[::1:5433/db").is_err());
    }

    #[test]
    fn uri_with_socket_directory_in_the_query() {
        let params = ConnParams::parse("postgresql:///db?host=%2Ftmp").unwrap();
        assert_eq!(params.get("host"), Some("/tmp"));
        let settings =
            ConnSettings::resolve(&params, &test_env(Path::new("/nonexistent"), &[])).unwrap();
        assert_eq!(
            settings.hosts,
            vec![HostTarget::Socket {
                dir: "/tmp".into(),
                port: 5432
            }]
        );
        assert_eq!(settings.dbname, "db");
    }

    #[test]
    fn uri_user_password_and_percent_decoding() {
        let params = ConnParams::parse(
            "postgres://us%40er:p%40ss:w@db.example:6432/my%20db?application_name=a%26b&sslmode=verify-full",
        )
        .unwrap();
        assert_eq!(params.get("user"), Some("us@er"));
        assert_eq!(params.get("password"), Some("p@ss:w"));
        assert_eq!(params.get("host"), Some("db.example"));
        assert_eq!(params.get("port"), Some("6432"));
        assert_eq!(params.get("dbname"), Some("my db"));
        assert_eq!(params.get("application_name"), Some("a&b"));
        assert_eq!(params.get("sslmode"), Some("verify-full"));
        assert!(!format!("{params:?}").contains("p@ss"));
    }

    #[test]
    fn uri_odds_and_ends() {
        assert!(ConnParams::parse("postgresql://").unwrap().is_empty());
        let params = ConnParams::parse("postgresql://:5433/db?ssl=true").unwrap();
        assert_eq!(params.get("host"), None);
        assert_eq!(params.get("port"), Some("5433"));
        assert_eq!(params.get("sslmode"), Some("require"));
        let socket = ConnParams::parse("postgresql://%2Fvar%2Frun%2Fpostgresql/db").unwrap();
        assert_eq!(socket.get("host"), Some("/var/run/postgresql"));
        assert!(matches!(
            ConnParams::parse("postgresql://h/db?bogus=1"),
            Err(ConnError::InvalidKeyword { .. })
        ));
        assert!(matches!(
            ConnParams::parse("postgresql://h/db?sslmode"),
            Err(ConnError::InvalidUri { .. })
        ));
        assert!(matches!(
            ConnParams::parse("postgresql://h/d%zzb"),
            Err(ConnError::InvalidUri { .. })
        ));
        assert!(matches!(
            ConnParams::parse("postgresql://h/d%00b"),
            Err(ConnError::InvalidUri { .. })
        ));
    }

    #[test]
    fn uri_errors_never_echo_the_password() {
        let error = ConnParams::parse("postgresql://u:s3cret@h/db?x%zz=1").unwrap_err();
        assert!(!error.to_string().contains("s3cret"));
    }

    // --- layering ---

    #[test]
    fn libpq_defaults() {
        let home = tempfile::tempdir().unwrap();
        let settings = resolve("host=db", &test_env(home.path(), &[])).unwrap();
        assert_eq!(settings.user, "alice");
        assert_eq!(settings.dbname, "alice");
        assert_eq!(settings.sslmode, SslMode::Prefer);
        assert_eq!(settings.passfile, Some(home.path().join(".pgpass")));
        assert_eq!(
            settings.sslrootcert,
            Some(home.path().join(".postgresql/root.crt"))
        );
        assert!(settings.keepalives);
        assert_eq!(settings.connect_timeout, None);
        assert_eq!(settings.target_session_attrs, TargetSessionAttrs::Any);
        assert_eq!(settings.channel_binding, ChannelBinding::Prefer);
        assert!(settings.password.is_none());
    }

    #[test]
    fn environment_fills_what_params_leave_out() {
        let home = tempfile::tempdir().unwrap();
        let env = test_env(
            home.path(),
            &[
                ("PGHOST", "envhost"),
                ("PGPORT", "6000"),
                ("PGUSER", "bob"),
                ("PGDATABASE", "envdb"),
                ("PGSSLMODE", "require"),
                ("PGAPPNAME", "envapp"),
                ("PGCONNECT_TIMEOUT", "1"),
                ("PGPASSWORD", "envsecret"),
                ("PGOPTIONS", "-c work_mem=1MB"),
                ("PGTARGETSESSIONATTRS", "read-write"),
                ("PGCHANNELBINDING", "require"),
            ],
        );
        let settings = resolve("host=explicit", &env).unwrap();
        assert_eq!(
            settings.hosts,
            vec![HostTarget::Tcp {
                host: "explicit".into(),
                port: 6000
            }]
        );
        assert_eq!(settings.user, "bob");
        assert_eq!(settings.dbname, "envdb");
        assert_eq!(settings.sslmode, SslMode::Require);
        assert_eq!(settings.application_name.as_deref(), Some("envapp"));
        // libpq: a timeout below 2 s counts as 2 s.
        assert_eq!(settings.connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(
            settings.password.as_ref().map(Password::expose),
            Some("envsecret")
        );
        assert_eq!(settings.options.as_deref(), Some("-c work_mem=1MB"));
        assert_eq!(settings.target_session_attrs, TargetSessionAttrs::ReadWrite);
        assert_eq!(settings.channel_binding, ChannelBinding::Require);
    }

    #[test]
    fn fallback_application_name_loses_to_pgappname() {
        let home = tempfile::tempdir().unwrap();
        let params = "fallback_application_name=pgback";
        let settings = resolve(params, &test_env(home.path(), &[])).unwrap();
        assert_eq!(settings.application_name.as_deref(), Some("pgback"));
        let env = test_env(home.path(), &[("PGAPPNAME", "mine")]);
        let settings = resolve(params, &env).unwrap();
        assert_eq!(settings.application_name.as_deref(), Some("mine"));
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let home = tempfile::tempdir().unwrap();
        let env = test_env(home.path(), &[("PGSSLMODE", "bogus")]);
        let error = resolve("", &env).unwrap_err();
        assert!(error.to_string().contains("PGSSLMODE"), "{error}");
        let env = test_env(home.path(), &[("PGGSSENCMODE", "require")]);
        let error = resolve("", &env).unwrap_err();
        assert_eq!(
            error.to_string(),
            "connection option \"gssencmode\" is not supported by safe-backup (from environment variable PGGSSENCMODE)"
        );
        assert_eq!(error.hint().as_deref(), Some("unset PGGSSENCMODE"));
    }

    #[test]
    fn ports_pair_with_hosts() {
        let env = test_env(Path::new("/nonexistent"), &[]);
        let settings = resolve("host=a,b,/sock port=7000", &env).unwrap();
        assert_eq!(
            settings.hosts,
            vec![
                HostTarget::Tcp {
                    host: "a".into(),
                    port: 7000
                },
                HostTarget::Tcp {
                    host: "b".into(),
                    port: 7000
                },
                HostTarget::Socket {
                    dir: "/sock".into(),
                    port: 7000
                },
            ]
        );
        let settings = resolve("host=a,b port=7000,", &env).unwrap();
        assert_eq!(settings.hosts[1].port(), 5432);
        assert_eq!(
            resolve("host=a,b,c port=1,2", &env)
                .unwrap_err()
                .to_string(),
            "could not match 2 port numbers to 3 hosts"
        );
    }

    #[test]
    fn hostaddr_alone_is_a_tcp_host_and_with_host_is_refused() {
        let env = test_env(Path::new("/nonexistent"), &[]);
        let settings = resolve("hostaddr=127.0.0.1 port=5", &env).unwrap();
        assert_eq!(
            settings.hosts,
            vec![HostTarget::Tcp {
                host: "127.0.0.1".into(),
                port: 5
            }]
        );
        assert!(matches!(
            resolve("hostaddr=127.0.0.1 host=db", &env),
            Err(ConnError::Unsupported { .. })
        ));
    }

    #[test]
    fn default_socket_is_the_first_directory_holding_it() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let dirs = [first.path(), second.path()];
        // No socket anywhere: the first directory.
        assert_eq!(default_socket_dir(&dirs, 5432), first.path());
        // A (fake) socket file only in the second one.
        fs::write(second.path().join(".s.PGSQL.5433"), "").unwrap();
        assert_eq!(default_socket_dir(&dirs, 5433), second.path());
        assert_eq!(default_socket_dir(&dirs, 5432), first.path());
    }

    // --- service files ---

    const SERVICES: &str = "\
# comment
[other]
host=elsewhere

[broken]
bogus line, ignored unless this section is wanted

[nightly]
host = svc.example
port=6543
dbname=svcdb
user=svcuser
port=1111
";

    #[test]
    fn service_beats_environment_and_params_beat_service() {
        let home = tempfile::tempdir().unwrap();
        fs::write(home.path().join(".pg_service.conf"), SERVICES).unwrap();
        let env = test_env(
            home.path(),
            &[
                ("PGSERVICE", "nightly"),
                ("PGHOST", "envhost"),
                ("PGUSER", "envuser"),
            ],
        );
        let settings = resolve("user=explicit", &env).unwrap();
        assert_eq!(
            settings.hosts,
            vec![HostTarget::Tcp {
                host: "svc.example".into(),
                port: 6543
            }]
        );
        assert_eq!(settings.user, "explicit");
        assert_eq!(settings.dbname, "svcdb");
        assert_eq!(settings.service.as_deref(), Some("nightly"));
        assert!(settings.describe().contains("service=nightly"));
    }

    #[test]
    fn service_keyword_beats_pgservice_and_pgservicefile_is_used() {
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join("custom.conf");
        fs::write(&file, SERVICES).unwrap();
        let env = test_env(
            home.path(),
            &[
                ("PGSERVICE", "missing"),
                ("PGSERVICEFILE", file.to_str().unwrap()),
            ],
        );
        let settings = resolve("service=other", &env).unwrap();
        assert_eq!(settings.hosts[0].host_keyword(), "elsewhere");
    }

    #[test]
    fn system_service_file_is_the_fallback() {
        let home = tempfile::tempdir().unwrap();
        let etc = home.path().join("etc");
        fs::create_dir(&etc).unwrap();
        fs::write(
            home.path().join(".pg_service.conf"),
            "[unrelated]\nhost=x\n",
        )
        .unwrap();
        fs::write(etc.join("pg_service.conf"), SERVICES).unwrap();
        let settings = resolve("service=nightly", &test_env(home.path(), &[])).unwrap();
        assert_eq!(settings.hosts[0].host_keyword(), "svc.example");
    }

    #[test]
    fn unknown_service_is_named() {
        let home = tempfile::tempdir().unwrap();
        fs::write(home.path().join(".pg_service.conf"), SERVICES).unwrap();
        let error = resolve("service=nope", &test_env(home.path(), &[])).unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("definition of service \"nope\" not found"),
            "{text}"
        );
        assert!(text.contains(".pg_service.conf"), "{text}");
        assert_eq!(error.exit_status(), ExitStatus::Usage);
    }

    #[test]
    fn service_file_errors_name_file_and_line() {
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join(".pg_service.conf");
        fs::write(&file, "[s]\nhost=a\ngssencmode=disable\n").unwrap();
        let error = resolve("service=s", &test_env(home.path(), &[])).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "connection option \"gssencmode\" is not supported by safe-backup (from service file {}, line 3)",
                file.display()
            )
        );
        fs::write(&file, "[s]\nhost a\n").unwrap();
        let error = resolve("service=s", &test_env(home.path(), &[])).unwrap_err();
        assert!(error.to_string().contains("line 2"), "{error}");
        fs::write(&file, "[s]\nservice=t\n").unwrap();
        assert!(resolve("service=s", &test_env(home.path(), &[])).is_err());
        fs::write(&file, "[s]\nport=x\n").unwrap();
        let error = resolve("service=s", &test_env(home.path(), &[])).unwrap_err();
        assert!(error.to_string().contains("line 2"), "{error}");
    }

    // --- pgpass ---

    fn socket() -> HostTarget {
        HostTarget::Socket {
            dir: "/var/run/postgresql".into(),
            port: 5432,
        }
    }

    fn tcp(host: &str, port: u16) -> HostTarget {
        HostTarget::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn pgpass_lines() {
        let exact = "db.example:5432:sales:bob:pw1";
        assert_eq!(
            pgpass_match(exact, "db.example", "5432", "sales", "bob").map(|p| p.0),
            Some("pw1".into())
        );
        assert!(pgpass_match(exact, "db.example", "5433", "sales", "bob").is_none());
        assert!(pgpass_match(exact, "db.example", "5432", "sales", "eve").is_none());
        let wild = "*:*:*:bob:pw2";
        assert_eq!(
            pgpass_match(wild, "any", "1", "x", "bob").map(|p| p.0),
            Some("pw2".into())
        );
        let escaped = r"h\:1:5432:d\\b:u:p\:w\\d:ignored";
        assert_eq!(
            pgpass_match(escaped, "h:1", "5432", r"d\b", "u").map(|p| p.0),
            Some(r"p:w\d".into())
        );
        assert!(pgpass_match("# *:*:*:*:x", "h", "1", "d", "u").is_none());
        assert!(pgpass_match("", "h", "1", "d", "u").is_none());
        assert!(pgpass_match("h:1:d", "h", "1", "d", "u").is_none());
    }

    #[test]
    fn pgpass_file_first_match_wins_and_localhost_matches_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        write_mode(
            &file,
            "# comment\r\nlocalhost:5432:*:alice:sock\ndb:*:*:alice:first\ndb:*:*:alice:second\n*:*:*:*:fallback\n",
            0o600,
        );
        assert_eq!(
            pgpass_lookup(&file, &socket(), "x", "alice").map(|p| p.0),
            Some("sock".into())
        );
        assert_eq!(
            pgpass_lookup(&file, &tcp("db", 9999), "x", "alice").map(|p| p.0),
            Some("first".into())
        );
        assert_eq!(
            pgpass_lookup(&file, &tcp("other", 5432), "x", "alice").map(|p| p.0),
            Some("fallback".into())
        );
        assert!(pgpass_lookup(&dir.path().join("missing"), &socket(), "x", "alice").is_none());
    }

    #[test]
    fn pgpass_readable_by_others_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        write_mode(&file, "*:*:*:*:secret\n", 0o644);
        assert!(pgpass_lookup(&file, &socket(), "d", "u").is_none());
        fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(pgpass_lookup(&file, &socket(), "d", "u").is_none());
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(pgpass_lookup(&file, &socket(), "d", "u").is_some());
        // A directory is not a password file.
        assert!(pgpass_lookup(dir.path(), &socket(), "d", "u").is_none());
    }

    #[test]
    fn explicit_password_wins_over_pgpass_and_empty_means_none() {
        let home = tempfile::tempdir().unwrap();
        write_mode(&home.path().join(".pgpass"), "*:*:*:*:frompass\n", 0o600);
        let env = test_env(home.path(), &[]);
        let settings = resolve("host=h password=given", &env).unwrap();
        assert_eq!(
            settings.password_for(&settings.hosts[0]).map(|p| p.0),
            Some("given".into())
        );
        let settings = resolve("host=h password=", &env).unwrap();
        assert_eq!(
            settings.password_for(&settings.hosts[0]).map(|p| p.0),
            Some("frompass".into())
        );
        let other = home.path().join("other");
        write_mode(&other, "h:5432:alice:alice:viaparam\n", 0o600);
        let settings = resolve(&format!("host=h passfile={}", other.display()), &env).unwrap();
        assert_eq!(
            settings.password_for(&settings.hosts[0]).map(|p| p.0),
            Some("viaparam".into())
        );
    }

    // --- secrets stay secret ---

    #[test]
    fn password_never_shows() {
        let home = tempfile::tempdir().unwrap();
        let env = test_env(home.path(), &[]);
        let params = ConnParams::parse("host=h user=u password=hunter2 dbname=d").unwrap();
        assert!(!format!("{params:?}").contains("hunter2"));
        let settings = ConnSettings::resolve(&params, &env).unwrap();
        assert!(!format!("{settings:?}").contains("hunter2"));
        assert!(!settings.describe().contains("hunter2"));
        let password = settings.password.clone().unwrap();
        assert_eq!(password.to_string(), "********");
        assert_eq!(format!("{password:?}"), "********");
        assert_eq!(password.expose(), "hunter2");
    }

    #[test]
    fn describe_is_a_conninfo_line() {
        let env = test_env(Path::new("/nonexistent"), &[]);
        let settings = resolve(
            "host=/var/run/postgresql user=postgres dbname=postgres",
            &env,
        )
        .unwrap();
        assert_eq!(
            settings.describe(),
            "host=/var/run/postgresql port=5432 user=postgres dbname=postgres"
        );
        let settings =
            resolve("host=a,b port=1,2 dbname='my db' sslmode=verify-full", &env).unwrap();
        assert_eq!(
            settings.describe(),
            "host=a,b port=1,2 user=alice dbname='my db' sslmode=verify-full"
        );
        // The described line parses back to the same settings.
        let again = resolve(&settings.describe(), &env).unwrap();
        assert_eq!(again.hosts, settings.hosts);
        assert_eq!(again.dbname, "my db");
    }

    #[test]
    fn libpq_env_carries_the_password_only_when_explicit() {
        let home = tempfile::tempdir().unwrap();
        let env = test_env(home.path(), &[]);
        let settings = resolve(
            "host=h port=6 user=u dbname=d application_name=pgback",
            &env,
        )
        .unwrap();
        let vars: HashMap<String, String> = settings.libpq_env().into_iter().collect();
        assert_eq!(vars["PGHOST"], "h");
        assert_eq!(vars["PGPORT"], "6");
        assert_eq!(vars["PGUSER"], "u");
        assert_eq!(vars["PGDATABASE"], "d");
        assert_eq!(vars["PGSSLMODE"], "prefer");
        assert_eq!(vars["PGAPPNAME"], "pgback");
        assert_eq!(
            vars["PGPASSFILE"],
            home.path().join(".pgpass").display().to_string()
        );
        assert!(!vars.contains_key("PGPASSWORD"));
        for name in vars.keys() {
            assert!(LIBPQ_ENV_VARS.contains(&name.as_str()), "{name}");
        }
        let settings = resolve("host=h password=s3", &env).unwrap();
        let vars: HashMap<String, String> = settings.libpq_env().into_iter().collect();
        assert_eq!(vars["PGPASSWORD"], "s3");
    }

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

    // --- connection failures (no server needed) ---

    #[tokio::test]
    async fn every_failed_host_is_named() {
        let home = tempfile::tempdir().unwrap();
        let env = test_env(home.path(), &[]);
        // Port 1 on loopback is closed; the socket directory holds no socket.
        let settings = resolve(
            &format!(
                "host=127.0.0.1,{} port=1 sslmode=disable",
                home.path().display()
            ),
            &env,
        )
        .unwrap();
        let Err(error) = settings.connect().await else {
            panic!("connected to a closed port");
        };
        let text = error.to_string();
        assert!(
            text.starts_with(
                "could not connect to server at host \"127.0.0.1\" port 1: Connection refused; "
            ),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "could not connect to server at socket \"{}/.s.PGSQL.1\": No such file or directory",
                home.path().display()
            )),
            "{text}"
        );
        assert_eq!(error.exit_status(), ExitStatus::Connection);
        let hint = error.hint().unwrap();
        assert!(hint.contains("Unix socket"), "{hint}");
    }

    #[tokio::test]
    async fn verify_full_without_root_certificate_names_the_file() {
        let home = tempfile::tempdir().unwrap();
        let env = test_env(home.path(), &[]);
        let settings = resolve("host=127.0.0.1 port=1 sslmode=verify-full", &env).unwrap();
        let Err(error) = settings.connect().await else {
            panic!("connected without a root certificate");
        };
        assert!(
            error.to_string().contains(".postgresql/root.crt"),
            "{error}"
        );
        assert_eq!(error.exit_status(), ExitStatus::Usage);
        assert!(error.hint().unwrap().contains("sslrootcert"));
    }

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
}
