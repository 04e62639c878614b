//! Connecting: one host after the other, like libpq, each with its own tokio-postgres
//! configuration (password from the password file, TLS only over TCP) and `connect_timeout`
//! bounding the whole attempt; when all fail, the error names every attempt.

use crate::conn::error::{classify, AttemptFailure, ConnError, ConnectAttempt};
use crate::conn::session::{spawn_connection, Session};
use crate::conn::settings::{
    ChannelBinding, ConnSettings, HostTarget, SslMode, TargetSessionAttrs,
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
}
