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
mod resolve;
mod service;
mod settings;
#[cfg(test)]
mod testing;
mod uri;

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use error::classify;
use pgpass::pgpass_match;
use service::parse_service_file;

pub use env::Environment;
pub use error::{AttemptFailure, ConnError, ConnectAttempt, Origin};
pub use params::{quote_conninfo, ConnParams, LIBPQ_ENV_VARS};
pub use settings::{
    ChannelBinding, ConnSettings, HostTarget, Password, SslMode, TargetSessionAttrs,
};

impl ConnSettings {
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
    use crate::conn::testing::{resolve, test_env};
    use crate::exit::{ExitStatus, Failure as _};

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
