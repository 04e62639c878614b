//! Opening a replication connection: the socket (TCP or Unix), TLS as `sslmode` says (with
//! the rustls client `conn` builds), the StartupMessage with `replication=true`, and the login
//! (trust, cleartext, md5, SCRAM-SHA-256), host after host like libpq.

use std::time::Duration;

use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::tls::TlsConnect as _;

use crate::conn::{ChannelBinding, ConnSettings, HostTarget, SslMode};
use crate::replication::error::ReplicationError;
use crate::replication::wire::{message_name, unexpected, Socket, Wire};

/// A physical replication connection (a walsender session), logged in and idle.
pub struct ReplicationConnection {
    pub(crate) wire: Wire,
    /// The host or socket that accepted the login.
    pub target: HostTarget,
}

impl ReplicationConnection {
    /// Connects to the first host that accepts, like libpq; when all fail, the last host's
    /// error is returned (each failure is logged at debug level).
    pub async fn connect(
        settings: &ConnSettings,
    ) -> Result<ReplicationConnection, ReplicationError> {
        // The SCRAM client offers no channel binding yet: refuse rather than go without it.
        if settings.channel_binding == ChannelBinding::Require {
            return Err(ReplicationError::UnsupportedAuth {
                method: "SCRAM with channel binding (channel_binding=require)".to_owned(),
            });
        }
        let mut last = None;
        for target in &settings.hosts {
            let attempt = connect_host(settings, target);
            let result = match settings.connect_timeout {
                Some(limit) => tokio::time::timeout(limit, attempt)
                    .await
                    .unwrap_or_else(|_| {
                        Err(ReplicationError::ConnectTimeout {
                            target: target.clone(),
                        })
                    }),
                None => attempt.await,
            };
            match result {
                Ok(wire) => {
                    return Ok(ReplicationConnection {
                        wire,
                        target: target.clone(),
                    })
                }
                Err(error) => {
                    tracing::debug!(%target, %error, "replication connection attempt failed");
                    last = Some(error);
                }
            }
        }
        Err(last.unwrap_or(ReplicationError::Protocol(
            "no host to connect to".to_owned(),
        )))
    }

    /// `server_version` as the server reported it at login, e.g. `17.2` or `18beta1`.
    pub fn server_version_text(&self) -> Option<&str> {
        self.wire.server_version.as_deref()
    }

    /// Ends the session politely (Terminate); the server drops a temporary slot.
    pub async fn close(mut self) {
        frontend::terminate(&mut self.wire.write);
        let _ = self.wire.flush().await;
    }
}

async fn connect_host(
    settings: &ConnSettings,
    target: &HostTarget,
) -> Result<Wire, ReplicationError> {
    let connect_error = |source| ReplicationError::Connect {
        target: target.clone(),
        source,
    };
    let socket: Box<dyn Socket> = match target {
        HostTarget::Tcp { host, port } => {
            let tcp = TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(connect_error)?;
            tcp.set_nodelay(true).map_err(connect_error)?;
            set_keepalive(&tcp, settings).map_err(connect_error)?;
            if settings.sslmode == SslMode::Disable {
                Box::new(tcp)
            } else {
                negotiate_tls(settings, target, host, tcp).await?
            }
        }
        HostTarget::Socket { .. } => {
            let path = target
                .socket_path()
                .ok_or_else(|| ReplicationError::Protocol("no socket path".to_owned()))?;
            Box::new(UnixStream::connect(path).await.map_err(connect_error)?)
        }
    };
    let mut wire = Wire::new(socket);
    let mut parameters = vec![
        ("user", settings.user.as_str()),
        ("database", "replication"),
        ("replication", "true"),
    ];
    if let Some(name) = &settings.application_name {
        parameters.push(("application_name", name));
    }
    if let Some(options) = &settings.options {
        parameters.push(("options", options));
    }
    frontend::startup_message(parameters, &mut wire.write)?;
    wire.flush().await?;
    authenticate(&mut wire, settings, target).await?;
    loop {
        match wire.expect_message().await? {
            Message::BackendKeyData(_) => {}
            Message::ReadyForQuery(_) => return Ok(wire),
            other => return Err(unexpected(message_name(&other))),
        }
    }
}

/// Keepalive probes when `keepalives_idle` is not given: a backup's connection is quiet for
/// long stretches (a spread checkpoint, a throttled server), and a peer gone without a word
/// (a crashed host, a dropped route) must be noticed in minutes, not in the system's 2 hours.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Time between probes when `keepalives_interval` is not given.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Probes lost before the connection is dead when `keepalives_count` is not given: with the
/// two above, a dead peer is noticed within two minutes.
pub const KEEPALIVE_RETRIES: u32 = 6;

/// TCP keepalives as libpq's `keepalives*` keywords say (on unless `keepalives=0`), with
/// [`KEEPALIVE_IDLE`], [`KEEPALIVE_INTERVAL`] and [`KEEPALIVE_RETRIES`] for the keywords not
/// given (or 0, libpq's "the system's default").
fn set_keepalive(tcp: &TcpStream, settings: &ConnSettings) -> std::io::Result<()> {
    let socket = socket2::SockRef::from(tcp);
    if !settings.keepalives {
        return socket.set_keepalive(false);
    }
    let given =
        |value: Option<Duration>, default| value.filter(|d| !d.is_zero()).unwrap_or(default);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(given(settings.keepalives_idle, KEEPALIVE_IDLE))
        .with_interval(given(settings.keepalives_interval, KEEPALIVE_INTERVAL))
        .with_retries(
            settings
                .keepalives_retries
                .filter(|count| *count > 0)
                .unwrap_or(KEEPALIVE_RETRIES),
        );
    socket.set_tcp_keepalive(&keepalive)
}

/// SSLRequest, then TLS if the server agrees; a refusal is fine below `require`.
async fn negotiate_tls(
    settings: &ConnSettings,
    target: &HostTarget,
    host: &str,
    mut tcp: TcpStream,
) -> Result<Box<dyn Socket>, ReplicationError> {
    let mut request = bytes::BytesMut::new();
    frontend::ssl_request(&mut request);
    tcp.write_all(&request).await?;
    match tcp.read_u8().await? {
        b'S' => {}
        b'N' if matches!(settings.sslmode, SslMode::Allow | SslMode::Prefer) => {
            return Ok(Box::new(tcp))
        }
        b'N' => {
            return Err(ReplicationError::TlsRefused {
                target: target.clone(),
                sslmode: settings.sslmode,
            })
        }
        other => {
            return Err(ReplicationError::Protocol(format!(
                "unexpected answer {other:#04x} to SSLRequest"
            )))
        }
    }
    let mut maker = settings.tls_connector()?;
    let connector =
        <_ as tokio_postgres::tls::MakeTlsConnect<TcpStream>>::make_tls_connect(&mut maker, host)
            .map_err(|e| ReplicationError::Tls {
            target: target.clone(),
            reason: e.to_string(),
        })?;
    let stream = connector
        .connect(tcp)
        .await
        .map_err(|e| ReplicationError::Tls {
            target: target.clone(),
            reason: e.to_string(),
        })?;
    Ok(Box::new(stream))
}

async fn authenticate(
    wire: &mut Wire,
    settings: &ConnSettings,
    target: &HostTarget,
) -> Result<(), ReplicationError> {
    // The password file is searched for the database `replication`, as libpq does for a
    // replication connection.
    let lookup = ConnSettings {
        dbname: "replication".to_owned(),
        ..settings.clone()
    };
    let password = || {
        lookup
            .password_for(target)
            .ok_or_else(|| ReplicationError::NoPassword {
                user: settings.user.clone(),
            })
    };
    let mut scram: Option<sasl::ScramSha256> = None;
    loop {
        match wire.expect_message().await? {
            Message::AuthenticationOk => return Ok(()),
            Message::AuthenticationCleartextPassword => {
                frontend::password_message(password()?.expose().as_bytes(), &mut wire.write)?;
            }
            Message::AuthenticationMd5Password(body) => {
                let hash = md5_hash(
                    settings.user.as_bytes(),
                    password()?.expose().as_bytes(),
                    body.salt(),
                );
                frontend::password_message(hash.as_bytes(), &mut wire.write)?;
            }
            Message::AuthenticationSasl(body) => {
                use fallible_iterator::FallibleIterator as _;
                let mechanisms: Vec<String> = body
                    .mechanisms()
                    .map(|m| Ok(m.to_owned()))
                    .collect()
                    .map_err(|e| ReplicationError::Protocol(e.to_string()))?;
                if !mechanisms.iter().any(|m| m == sasl::SCRAM_SHA_256) {
                    return Err(ReplicationError::UnsupportedAuth {
                        method: mechanisms.join(", "),
                    });
                }
                // No channel binding: the client says it does not support it ("n").
                let state = sasl::ScramSha256::new(
                    password()?.expose().as_bytes(),
                    sasl::ChannelBinding::unsupported(),
                );
                frontend::sasl_initial_response(
                    sasl::SCRAM_SHA_256,
                    state.message(),
                    &mut wire.write,
                )?;
                scram = Some(state);
            }
            Message::AuthenticationSaslContinue(body) => {
                let state = scram.as_mut().ok_or_else(|| unexpected("SASLContinue"))?;
                state
                    .update(body.data())
                    .map_err(|e| ReplicationError::Scram(e.to_string()))?;
                frontend::sasl_response(state.message(), &mut wire.write)?;
            }
            Message::AuthenticationSaslFinal(body) => {
                let state = scram.as_mut().ok_or_else(|| unexpected("SASLFinal"))?;
                state
                    .finish(body.data())
                    .map_err(|e| ReplicationError::Scram(e.to_string()))?;
                continue;
            }
            Message::AuthenticationGss
            | Message::AuthenticationGssContinue(_)
            | Message::AuthenticationSspi => {
                return Err(ReplicationError::UnsupportedAuth {
                    method: "GSSAPI/SSPI".to_owned(),
                })
            }
            Message::AuthenticationKerberosV5 | Message::AuthenticationScmCredential => {
                return Err(ReplicationError::UnsupportedAuth {
                    method: "Kerberos/SCM".to_owned(),
                })
            }
            other => return Err(unexpected(message_name(&other))),
        }
        wire.flush().await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{ConnParams, Environment};

    /// The socket options pgbase's replication socket ends up with, for `conninfo`.
    async fn keepalive_of(conninfo: &str) -> (bool, Option<(Duration, Duration, u32)>) {
        let env = Environment {
            os_user: "alice".to_owned(),
            ..Environment::default()
        };
        let settings = ConnSettings::resolve(&ConnParams::parse(conninfo).unwrap(), &env).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        set_keepalive(&tcp, &settings).unwrap();
        let socket = socket2::SockRef::from(&tcp);
        let on = socket.keepalive().unwrap();
        let times = on.then(|| {
            (
                socket.tcp_keepalive_time().unwrap(),
                socket.tcp_keepalive_interval().unwrap(),
                socket.tcp_keepalive_retries().unwrap(),
            )
        });
        (on, times)
    }

    #[tokio::test]
    async fn keepalives_follow_libpq_keywords_with_minutes_not_hours_by_default() {
        let defaults = Some((KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_RETRIES));
        assert_eq!(keepalive_of("host=db").await, (true, defaults));
        assert_eq!(
            keepalive_of("host=db keepalives_idle=5 keepalives_interval=2 keepalives_count=3")
                .await,
            (
                true,
                Some((Duration::from_secs(5), Duration::from_secs(2), 3))
            )
        );
        assert_eq!(
            keepalive_of("host=db keepalives_idle=0").await,
            (true, defaults)
        );
        assert_eq!(keepalive_of("host=db keepalives=0").await, (false, None));
    }
}
