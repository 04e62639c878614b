//! The SFTP backend: files under `sftp_directory` on an SSH server, written to a hidden
//! temporary name and renamed when complete, so a listing never shows half a file. One SSH
//! connection is shared by concurrent transfers; a broken one is replaced and the transfer
//! retried with backoff.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use russh::keys::PrivateKey;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::StatusCode;
use tokio::io::AsyncWriteExt as _;

use super::credentials::{expand_home, Environment};
use super::error::{CauseKind, Redactor, RemoteError};
use super::local::{open_source, read_part, PartialFile};
use super::ssh::{connect, SftpConnection, SshTarget};
use super::types::{Backoff, Fault, RemoteEntry, Tuning};
use crate::config::{RemoteSettings, StoreKind};
use crate::secret::Secret;

/// The system-wide known_hosts file, read before the user's.
const SYSTEM_KNOWN_HOSTS: &str = "/etc/ssh/ssh_known_hosts";

pub(crate) struct SftpBackend {
    target: SshTarget,
    /// `sftp_directory` without a trailing slash; empty = the login directory.
    base_dir: String,
    connection: tokio::sync::Mutex<Option<Arc<SftpConnection>>>,
    tuning: Tuning,
}

fn settings_error(problem: String, hint: &str) -> RemoteError {
    RemoteError::Settings {
        store: StoreKind::Sftp,
        problem,
        hint: Some(hint.into()),
    }
}

impl SftpBackend {
    pub(crate) async fn open(
        settings: &RemoteSettings,
        tuning: &Tuning,
        env: &dyn Environment,
        redactor: &mut Redactor,
    ) -> Result<SftpBackend, RemoteError> {
        if settings.sftp_host.is_empty() {
            return Err(settings_error(
                "sftp_host is not set".into(),
                "set sftp_host in the configuration or --sftp-host",
            ));
        }
        let user = Some(settings.sftp_user.clone())
            .filter(|u| !u.is_empty())
            .or_else(|| env.var("USER"))
            .or_else(|| env.var("LOGNAME"))
            .ok_or_else(|| settings_error("no SSH user".into(), "set sftp_user or --sftp-user"))?;
        let password = settings
            .sftp_password
            .clone()
            .filter(|p| !p.is_empty())
            .or_else(|| env.secret("PGBK_SSH_PASS"));
        if let Some(password) = &password {
            redactor.add(password);
        }
        let identity = if settings.sftp_identity.is_empty() {
            None
        } else {
            let path = expand_home(&settings.sftp_identity, env);
            Some((path.clone(), load_identity(&path, password.as_ref())?))
        };
        let mut known_hosts = vec![PathBuf::from(SYSTEM_KNOWN_HOSTS)];
        if let Some(home) = env.home() {
            known_hosts.push(home.join(".ssh/known_hosts"));
        }
        let target = SshTarget {
            host: settings.sftp_host.clone(),
            port: settings.sftp_port,
            user,
            identity,
            password,
            agent_socket: env.var("SSH_AUTH_SOCK").map(PathBuf::from),
            known_hosts,
            ignore_hostkey: settings.sftp_ignore_hostkey,
            connect_timeout: tuning.connect_timeout,
        };
        let backend = SftpBackend {
            target,
            base_dir: settings.sftp_directory.trim_end_matches('/').to_string(),
            connection: tokio::sync::Mutex::new(None),
            tuning: tuning.clone(),
        };
        // Connect now: a refused host key or login fails before anything is dumped.
        if let Err(fault) = backend.session().await {
            return Err(RemoteError::Connect {
                location: backend.location(""),
                cause: redactor.cause(fault.kind, &fault.text, fault.hint),
            });
        }
        Ok(backend)
    }

    pub(crate) fn location(&self, full_key: &str) -> String {
        let t = &self.target;
        let path = self.remote_path(full_key);
        let sep = if path.starts_with('/') || path.is_empty() {
            ""
        } else {
            "/~/"
        };
        format!("sftp://{}@{}:{}{sep}{path}", t.user, t.host, t.port)
    }

    fn remote_path(&self, full_key: &str) -> String {
        match (self.base_dir.is_empty(), full_key.is_empty()) {
            (true, _) => full_key.to_string(),
            (false, true) => self.base_dir.clone(),
            (false, false) => format!("{}/{full_key}", self.base_dir),
        }
    }

    /// The shared connection, made when there is none.
    async fn session(&self) -> Result<Arc<SftpConnection>, Fault> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let connection = Arc::new(connect(&self.target).await?);
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Drops `broken` so that the next call connects again.
    async fn forget(&self, broken: &Arc<SftpConnection>) {
        let mut slot = self.connection.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, broken)) {
            *slot = None;
        }
    }

    /// Runs `op` on the connection; when the connection broke, reconnects and runs it again,
    /// with backoff.
    async fn with_retry<T, F, Fut>(&self, op: F) -> Result<T, Fault>
    where
        F: Fn(Arc<SftpConnection>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Fault>>,
    {
        let mut backoff = Backoff::new(&self.tuning);
        let hint = format!(
            "check that {}:{} is reachable and that sshd runs there",
            self.target.host, self.target.port
        );
        loop {
            let result = match self.session().await {
                Ok(connection) => {
                    let result = op(connection.clone()).await;
                    if matches!(&result, Err(f) if f.kind == CauseKind::Unreachable) {
                        self.forget(&connection).await;
                    }
                    result
                }
                Err(fault) => Err(fault),
            };
            match result {
                Err(fault) if fault.kind == CauseKind::Unreachable && backoff.wait().await => {
                    continue
                }
                Err(fault) if fault.kind == CauseKind::Unreachable && fault.hint.is_none() => {
                    return Err(fault.with_hint(hint))
                }
                other => return other,
            }
        }
    }

    pub(crate) async fn upload(&self, local: &Path, full_key: &str) -> Result<u64, Fault> {
        let path = self.remote_path(full_key);
        self.with_retry(|c| self.upload_once(c, local, path.clone()))
            .await
    }

    async fn upload_once(
        &self,
        connection: Arc<SftpConnection>,
        local: &Path,
        path: String,
    ) -> Result<u64, Fault> {
        let sftp = &connection.sftp;
        let (parent, name) = match path.rsplit_once('/') {
            Some((parent, name)) => (Some(parent), name),
            None => (None, path.as_str()),
        };
        if let Some(parent) = parent {
            make_dirs(sftp, parent).await?;
        }
        let temp = match parent {
            Some(parent) => format!("{parent}/.{name}.part"),
            None => format!(".{name}.part"),
        };
        let (mut source, size) = open_source(local).await?;
        let mut remote = sftp
            .create(temp.clone())
            .await
            .map_err(|e| fault(&e, &temp))?;
        let mut sent = 0u64;
        loop {
            let part = read_part(&mut source, self.tuning.part_size.max(1), local).await?;
            if part.is_empty() {
                break;
            }
            remote
                .write_all(&part)
                .await
                .map_err(|e| io_fault(&e, &temp))?;
            sent += part.len() as u64;
        }
        remote.shutdown().await.map_err(|e| io_fault(&e, &temp))?;
        drop(remote);
        if sent != size {
            return Err(Fault::new(
                CauseKind::LocalFile,
                format!("{} changed size during the upload", local.display()),
            ));
        }
        if sftp.rename(temp.clone(), path.clone()).await.is_err() {
            // SFTP's rename refuses an existing target: replace it.
            match sftp.remove_file(path.clone()).await {
                Ok(()) => {}
                Err(e) if status(&e) == Some(StatusCode::NoSuchFile) => {}
                Err(e) => return Err(fault(&e, &path)),
            }
            sftp.rename(temp.clone(), path.clone())
                .await
                .map_err(|e| fault(&e, &path))?;
        }
        Ok(sent)
    }

    pub(crate) async fn list(&self, full_prefix: &str) -> Result<Vec<RemoteEntry>, Fault> {
        let start = full_prefix
            .rsplit_once('/')
            .map(|(dir, _)| dir)
            .unwrap_or("");
        self.with_retry(|c| self.list_once(c, start.to_string(), full_prefix))
            .await
    }

    async fn list_once(
        &self,
        connection: Arc<SftpConnection>,
        start: String,
        full_prefix: &str,
    ) -> Result<Vec<RemoteEntry>, Fault> {
        let sftp = &connection.sftp;
        let mut entries = Vec::new();
        let mut pending = vec![start];
        while let Some(dir_key) = pending.pop() {
            let dir = match self.remote_path(&dir_key) {
                p if p.is_empty() => ".".to_string(),
                p => p,
            };
            let listing = match sftp.read_dir(dir.clone()).await {
                Ok(listing) => listing,
                Err(e) if status(&e) == Some(StatusCode::NoSuchFile) => continue,
                Err(e) => return Err(fault(&e, &dir)),
            };
            for entry in listing {
                let name = entry.file_name();
                if name == "." || name == ".." || (name.starts_with('.') && name.ends_with(".part"))
                {
                    continue;
                }
                let key = if dir_key.is_empty() {
                    name
                } else {
                    format!("{dir_key}/{name}")
                };
                let meta = entry.metadata();
                if meta.is_dir() {
                    let may_match =
                        key.starts_with(full_prefix) || full_prefix.starts_with(&format!("{key}/"));
                    if may_match {
                        pending.push(key);
                    }
                } else if key.starts_with(full_prefix) {
                    let modified = meta
                        .mtime
                        .and_then(|t| DateTime::<Utc>::from_timestamp(i64::from(t), 0))
                        .unwrap_or_default();
                    entries.push(RemoteEntry {
                        key,
                        size: meta.len(),
                        modified,
                    });
                }
            }
        }
        Ok(entries)
    }

    pub(crate) async fn download(&self, full_key: &str, local: &Path) -> Result<u64, Fault> {
        let path = self.remote_path(full_key);
        self.with_retry(|c| self.download_once(c, path.clone(), local))
            .await
    }

    async fn download_once(
        &self,
        connection: Arc<SftpConnection>,
        path: String,
        local: &Path,
    ) -> Result<u64, Fault> {
        let mut remote = connection
            .sftp
            .open(path.clone())
            .await
            .map_err(|e| fault(&e, &path))?;
        let mut partial = PartialFile::create(local).await?;
        let mut received = 0u64;
        loop {
            let part = read_part(&mut remote, self.tuning.part_size.max(1), Path::new(&path))
                .await
                .map_err(|f| Fault::new(CauseKind::Unreachable, f.text))?;
            if part.is_empty() {
                break;
            }
            received += part.len() as u64;
            partial.write(&part).await?;
        }
        partial.commit().await?;
        Ok(received)
    }

    pub(crate) async fn delete(&self, full_key: &str) -> Result<(), Fault> {
        let path = self.remote_path(full_key);
        self.with_retry(|c| {
            let path = path.clone();
            async move {
                match c.sftp.remove_file(path.clone()).await {
                    Ok(()) => Ok(()),
                    Err(e) if status(&e) == Some(StatusCode::NoSuchFile) => Ok(()),
                    Err(e) => Err(fault(&e, &path)),
                }
            }
        })
        .await
    }
}

/// Decodes the identity file, refusing one that group or others can read.
fn load_identity(path: &Path, passphrase: Option<&Secret>) -> Result<Arc<PrivateKey>, RemoteError> {
    let text = Secret::from_key_file(path).map_err(|source| RemoteError::Secret {
        store: StoreKind::Sftp,
        source,
    })?;
    russh::keys::decode_secret_key(text.expose(), passphrase.map(Secret::expose))
        .map(Arc::new)
        .map_err(|e| {
            let hint = if passphrase.is_none() {
                "if the key has a passphrase, put it in PGBK_SSH_PASS"
            } else {
                "check that PGBK_SSH_PASS holds the key's passphrase"
            };
            settings_error(format!("cannot use {}: {e}", path.display()), hint)
        })
}

/// Creates `dir` and its parents, like `mkdir -p`.
async fn make_dirs(sftp: &russh_sftp::client::SftpSession, dir: &str) -> Result<(), Fault> {
    let mut path = String::new();
    for (i, segment) in dir.split('/').enumerate() {
        if i > 0 || dir.starts_with('/') {
            path.push('/');
        }
        path.push_str(segment);
        if segment.is_empty() || segment == "." || segment == "~" {
            continue;
        }
        match sftp.metadata(path.clone()).await {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => {
                return Err(Fault::new(
                    CauseKind::Server,
                    format!("{path} exists and is not a directory"),
                ))
            }
            Err(e) if status(&e) == Some(StatusCode::NoSuchFile) => {}
            Err(e) => return Err(fault(&e, &path)),
        }
        match sftp.create_dir(path.clone()).await {
            Ok(()) => {}
            // Created meanwhile by a concurrent upload.
            Err(_) if matches!(sftp.metadata(path.clone()).await, Ok(m) if m.is_dir()) => {}
            Err(e) => return Err(fault(&e, &path)),
        }
    }
    Ok(())
}

fn status(e: &SftpError) -> Option<StatusCode> {
    match e {
        SftpError::Status(status) => Some(status.status_code),
        _ => None,
    }
}

/// A fault from an SFTP error on `path`.
fn fault(e: &SftpError, path: &str) -> Fault {
    let kind = match status(e) {
        Some(StatusCode::NoSuchFile) => CauseKind::NotFound,
        Some(StatusCode::PermissionDenied) => CauseKind::Refused,
        Some(StatusCode::NoConnection) | Some(StatusCode::ConnectionLost) => CauseKind::Unreachable,
        Some(_) => CauseKind::Server,
        None => CauseKind::Unreachable,
    };
    match kind {
        CauseKind::Unreachable => {
            Fault::new(kind, format!("the SSH connection broke: {path}: {e}"))
        }
        _ => Fault::new(kind, format!("{path}: {e}")),
    }
}

/// A write or close on a remote file failed: the session is gone or the server refused.
fn io_fault(e: &std::io::Error, path: &str) -> Fault {
    Fault::new(
        CauseKind::Unreachable,
        format!("the SSH connection broke while writing {path}: {e}"),
    )
}
