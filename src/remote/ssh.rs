//! SSH for the SFTP backend (russh): host keys checked against `/etc/ssh/ssh_known_hosts` and
//! `~/.ssh/known_hosts` (an unknown or changed key refuses the server unless
//! `sftp_ignore_hostkey`), then authentication as pg_back does it: the identity file (its
//! passphrase is `PGBK_SSH_PASS`), the ssh-agent's keys, and the password when no identity
//! file is given.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, AuthResult, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::SftpSession;

use super::error::CauseKind;
use super::types::Fault;
use crate::secret::Secret;

/// Who to log in as, where, and how.
pub(crate) struct SshTarget {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    /// The identity file's path and its decoded key.
    pub(crate) identity: Option<(PathBuf, Arc<PrivateKey>)>,
    /// Password authentication, tried only without an identity file (as pg_back).
    pub(crate) password: Option<Secret>,
    /// `SSH_AUTH_SOCK`.
    pub(crate) agent_socket: Option<PathBuf>,
    /// The known_hosts files, in order.
    pub(crate) known_hosts: Vec<PathBuf>,
    pub(crate) ignore_hostkey: bool,
    pub(crate) connect_timeout: Duration,
}

/// A logged-in SSH connection with its SFTP session.
pub(crate) struct SftpConnection {
    /// Kept so that the connection lives as long as the session.
    _handle: Handle<HostKeyCheck>,
    pub(crate) sftp: SftpSession,
}

/// The host key check, recording why it refused a server.
pub(crate) struct HostKeyCheck {
    host: String,
    port: u16,
    files: Vec<PathBuf>,
    ignore: bool,
    refusal: Arc<Mutex<Option<Fault>>>,
}

impl HostKeyCheck {
    fn refuse(&self, fault: Fault) -> Result<bool, russh::Error> {
        if let Ok(mut refusal) = self.refusal.lock() {
            *refusal = Some(fault);
        }
        Ok(false)
    }

    fn known_hosts_hint(&self) -> String {
        let host = if self.port == 22 {
            self.host.clone()
        } else {
            format!("-p {} {}", self.port, self.host)
        };
        format!(
            "compare the fingerprint with the server's (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub \
             on it), then add it: ssh-keyscan {host} >> ~/.ssh/known_hosts; or set \
             sftp_ignore_hostkey = true to skip the check"
        )
    }
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        if self.ignore {
            return Ok(true);
        }
        let key = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(_) => {
                let fault = Fault::new(
                    CauseKind::UnknownHost,
                    "the server presents a host certificate; only known_hosts keys are checked",
                )
                .with_hint(self.known_hosts_hint());
                return self.refuse(fault);
            }
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        for file in &self.files {
            match russh::keys::check_known_hosts_path(&self.host, self.port, key, file) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(russh::keys::Error::KeyChanged { line }) => {
                    let fault = Fault::new(
                        CauseKind::HostKeyChanged,
                        format!(
                            "the host key of {}:{} ({fingerprint}) differs from line {line} of {}: \
                             possible man-in-the-middle attack",
                            self.host,
                            self.port,
                            file.display()
                        ),
                    )
                    .with_hint(format!(
                        "if the server's key really changed, remove line {line} of {} and add \
                         the new key",
                        file.display()
                    ));
                    return self.refuse(fault);
                }
                Err(e) => {
                    let fault = Fault::new(
                        CauseKind::LocalFile,
                        format!("cannot read {}: {e}", file.display()),
                    );
                    return self.refuse(fault);
                }
            }
        }
        let searched: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
        let fault = Fault::new(
            CauseKind::UnknownHost,
            format!(
                "the host key of {}:{} ({fingerprint}) is not in {}",
                self.host,
                self.port,
                searched.join(" or ")
            ),
        )
        .with_hint(self.known_hosts_hint());
        self.refuse(fault)
    }
}

/// Connects, checks the host key, logs in and opens the SFTP subsystem.
pub(crate) async fn connect(target: &SshTarget) -> Result<SftpConnection, Fault> {
    let refusal = Arc::new(Mutex::new(None));
    let check = HostKeyCheck {
        host: target.host.clone(),
        port: target.port,
        files: target.known_hosts.clone(),
        ignore: target.ignore_hostkey,
        refusal: refusal.clone(),
    };
    let config = Arc::new(client::Config {
        inactivity_timeout: Some(Duration::from_secs(600)),
        keepalive_interval: Some(Duration::from_secs(30)),
        ..client::Config::default()
    });
    let address = (target.host.as_str(), target.port);
    let connecting = client::connect(config, address, check);
    let mut handle = match tokio::time::timeout(target.connect_timeout, connecting).await {
        Ok(Ok(handle)) => handle,
        Ok(Err(e)) => {
            let refused = refusal.lock().ok().and_then(|mut r| r.take());
            return Err(refused.unwrap_or_else(|| {
                let text = format!("cannot connect to {}:{}: {e}", target.host, target.port);
                Fault::new(CauseKind::Unreachable, text)
            }));
        }
        Err(_) => {
            return Err(Fault::new(
                CauseKind::Unreachable,
                format!("no SSH handshake within {:?}", target.connect_timeout),
            ))
        }
    };
    let login = tokio::time::timeout(target.connect_timeout, authenticate(&mut handle, target));
    match login.await {
        Ok(result) => result?,
        Err(_) => {
            return Err(Fault::new(
                CauseKind::Unreachable,
                format!("no login within {:?}", target.connect_timeout),
            ))
        }
    }
    let sftp = open_sftp(&handle).await?;
    Ok(SftpConnection {
        _handle: handle,
        sftp,
    })
}

async fn open_sftp(handle: &Handle<HostKeyCheck>) -> Result<SftpSession, Fault> {
    let no_sftp = |e: &dyn std::fmt::Display| {
        Fault::new(
            CauseKind::Server,
            format!("cannot start the sftp subsystem: {e}"),
        )
    };
    let channel = handle
        .channel_open_session()
        .await
        .map_err(|e| no_sftp(&e))?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| no_sftp(&e))?;
    SftpSession::new(channel.into_stream())
        .await
        .map_err(|e| no_sftp(&e))
}

/// Tries the identity file, the agent's keys, then the password; the first success wins.
async fn authenticate(handle: &mut Handle<HostKeyCheck>, target: &SshTarget) -> Result<(), Fault> {
    let user = target.user.as_str();
    let failed = |e: &dyn std::fmt::Display| {
        Fault::new(
            CauseKind::Unreachable,
            format!("authentication broke off: {e}"),
        )
    };
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .map_err(|e| failed(&e))?
        .flatten();
    let mut tried = Vec::new();
    if let Some((path, key)) = &target.identity {
        let key = PrivateKeyWithHashAlg::new(key.clone(), rsa_hash);
        let result = handle
            .authenticate_publickey(user, key)
            .await
            .map_err(|e| failed(&e))?;
        if result.success() {
            return Ok(());
        }
        tried.push(format!("the key in {}", path.display()));
    }
    if let Some(socket) = &target.agent_socket {
        // An agent that cannot be reached is skipped, as ssh does.
        if let Ok(mut agent) = AgentClient::connect_uds(socket).await {
            let identities = agent.request_identities().await.unwrap_or_default();
            let count = identities.len();
            for identity in identities {
                let AgentIdentity::PublicKey { key, .. } = identity else {
                    continue;
                };
                let result = handle
                    .authenticate_publickey_with(user, key, rsa_hash, &mut agent)
                    .await;
                if matches!(result, Ok(AuthResult::Success)) {
                    return Ok(());
                }
            }
            tried.push(format!("{count} ssh-agent key(s)"));
        }
    }
    if let (None, Some(password)) = (&target.identity, &target.password) {
        let result = handle
            .authenticate_password(user, password.expose())
            .await
            .map_err(|e| failed(&e))?;
        if result.success() {
            return Ok(());
        }
        tried.push("the password".into());
    }
    let text = if tried.is_empty() {
        format!("no way to log in as {user}: no identity file, ssh-agent or password")
    } else {
        format!("the server refused {user} with {}", tried.join(", "))
    };
    Err(Fault::new(CauseKind::Refused, text).with_hint(
        "check sftp_user, sftp_identity (its public key in the server's authorized_keys), \
         the keys of the ssh-agent (SSH_AUTH_SOCK), or PGBK_SSH_PASS",
    ))
}
