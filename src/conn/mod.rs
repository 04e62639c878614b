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

mod env;
mod error;
mod params;
mod pgpass;
mod service;
mod settings;
#[cfg(test)]
mod testing;
mod uri;

use std::collections::HashMap;
use std::fs;
use std::io;
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

use error::classify;
use params::{check_value, parse_port, SUPPORTED, UNSUPPORTED};
use pgpass::pgpass_match;
use service::{load_service, parse_service_file, ServiceValues};
use settings::{socket_file, DEFAULT_PORT};

pub use env::Environment;
pub use error::{AttemptFailure, ConnError, ConnectAttempt, Origin};
pub use params::{quote_conninfo, ConnParams, LIBPQ_ENV_VARS};
pub use settings::{
    ChannelBinding, ConnSettings, HostTarget, Password, SslMode, TargetSessionAttrs,
};

/// Socket directories tried, in order, when no host is given (Debian's first, then upstream's).
pub const DEFAULT_SOCKET_DIRS: &[&str] = &["/var/run/postgresql", "/tmp"];

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
    use crate::conn::testing::{resolve, test_env};
    use crate::exit::{ExitStatus, Failure as _};

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
}
