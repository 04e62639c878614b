//! `pgbase --restore BACKUP -D PGDATA [-T OLDDIR=NEWDIR]...`: a tar backup pgbase wrote, local
//! or fetched from the `--download` store into a private directory beside `-D`, refused when
//! not finished, its checksums verified before anything is unpacked, then decrypted and
//! decompressed on the fly into the new data directory and the tablespaces' directories.
//! `recovery.signal` (`recovery.conf` before PostgreSQL 12) and `restore_command` are written
//! only when asked.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::base::command::RestoreRequest;
use crate::base::error::{BaseError, INCOMPLETE_MARKER};
use crate::base::output::{create_private_dir, PlainTree};
use crate::base::run::{into_new_dirs, seal, NewDirs};
use crate::base::unpack::{backup_files, find_archive, unpack_backup};
use crate::checksum::verify_all;
use crate::config::StoreKind;
use crate::dump::open_store;
use crate::shutdown::{shutdown_signal, stop_on_signals, stop_requested};

/// What a restore did.
#[derive(Clone, Debug)]
pub struct RestoreSummary {
    /// The new data directory.
    pub dir: PathBuf,
    /// The backup's files checked against their checksum files.
    pub verified: usize,
    /// Files fetched from the store (`--download`).
    pub downloaded: usize,
    /// The PostgreSQL major version the data directory says (`PG_VERSION`).
    pub major: u32,
    /// The recovery files written.
    pub recovery_files: Vec<PathBuf>,
}

/// The downloaded copy of a remote backup (its staging directory, removed when dropped) and
/// how many files were fetched.
struct Fetched {
    staging: Option<PathBuf>,
    count: usize,
}

impl Drop for Fetched {
    fn drop(&mut self) {
        if let Some(dir) = &self.staging {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// Restores `request.backup` into `request.dir`; on failure, SIGINT or SIGTERM removes what it
/// wrote (a download's staging directory too). A run killed outright (SIGKILL) leaves
/// `pgbase.incomplete` in `-D`.
pub async fn restore(request: &RestoreRequest) -> Result<RestoreSummary, BaseError> {
    // The hashing and unpacking hold the thread: a signal sets a flag their reads check, the
    // run ends on the error, and into_new_dirs removes what it wrote.
    stop_on_signals().map_err(BaseError::Internal)?;
    let interrupted = |error: BaseError| match stop_requested() {
        Some(signal) => BaseError::RestoreInterrupted {
            signal: signal.as_str(),
            dir: request.dir.clone(),
        },
        None => error,
    };
    restore_until_stopped(request).await.map_err(interrupted)
}

async fn restore_until_stopped(request: &RestoreRequest) -> Result<RestoreSummary, BaseError> {
    if fs::read_dir(&request.dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(BaseError::NotEmpty {
            dir: request.dir.clone(),
            tablespace: false,
        });
    }
    let (backup, fetched) = match request.remote.download {
        StoreKind::None => (
            PathBuf::from(&request.backup),
            Fetched {
                staging: None,
                count: 0,
            },
        ),
        kind => {
            let fetched = download(request, kind).await?;
            let dir = fetched.staging.clone().unwrap_or_default();
            (dir, fetched)
        }
    };
    let refuse = |reason: String| BaseError::Restore {
        backup: request.backup.clone(),
        reason,
    };
    if backup.join(INCOMPLETE_MARKER).exists() {
        return Err(refuse(format!(
            "pgbase did not finish this backup ({INCOMPLETE_MARKER} is there)"
        )));
    }
    if find_archive(&backup, "base.tar").is_none() {
        return Err(refuse(if backup.join("PG_VERSION").is_file() {
            "it is a data directory (a plain backup, -F p): copy it instead".to_owned()
        } else {
            "it holds no base.tar: not a tar backup of pgbase".to_owned()
        }));
    }
    let files = backup_files(&backup).map_err(BaseError::output(&backup))?;
    let verified = verify_all(&files, false).map_err(|e| refuse(e.to_string()))?;
    let verified = verified
        .iter()
        .filter(|v| !v.checksum_files.is_empty())
        .count();
    tracing::info!(verified, "checksums of the backup verified");
    let key = if files.iter().any(|f| f.extension() == Some("age".as_ref())) {
        Some(
            request
                .encryption
                .decrypt_key(request.passphrase.as_ref(), request.config_file.as_deref())?,
        )
    } else {
        None
    };
    let dir = &request.dir;
    let dirs = NewDirs {
        dir,
        mapping: &request.tablespace_mapping,
        no_clean: false,
    };
    into_new_dirs(dirs, async {
        let mut tree = PlainTree::new(dir, &request.tablespace_mapping);
        unpack_backup(&backup, dir, key.as_ref(), &mut tree)?;
        let major = major_of(dir)?;
        let recovery_files = write_recovery(dir, major, request)?;
        seal(&tree.roots)?;
        Ok(RestoreSummary {
            dir: dir.clone(),
            verified,
            downloaded: fetched.count,
            major,
            recovery_files,
        })
    })
    .await
}

/// Fetches the backup named `request.backup` from the store into a private directory beside
/// `-D` (ciphertext stays ciphertext); a remote backup still marked incomplete is refused
/// before anything is fetched.
async fn download(request: &RestoreRequest, kind: StoreKind) -> Result<Fetched, BaseError> {
    let name = request.backup.trim_matches('/');
    let refuse = |reason: String| BaseError::Restore {
        backup: request.backup.clone(),
        reason,
    };
    if name.is_empty() || name.split('/').any(|part| part == ".." || part == ".") {
        return Err(refuse(
            "with --download, BACKUP is the backup's name on the store (the -D it was taken into)"
                .to_owned(),
        ));
    }
    let store = open_store(kind, &request.remote).await?;
    let prefix = format!("{name}/");
    let entries = store.list(&prefix).await?;
    let files: Vec<&str> = entries
        .iter()
        .filter_map(|e| e.key.strip_prefix(&prefix))
        .filter(|file| !file.contains('/'))
        .collect();
    if files.is_empty() {
        return Err(refuse(format!("{} holds nothing", store.location(&prefix))));
    }
    if files.contains(&INCOMPLETE_MARKER) {
        return Err(refuse(format!(
            "its upload did not finish ({INCOMPLETE_MARKER} is on the store)"
        )));
    }
    let parent = match request.dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let staging = parent.join(format!(".pgbase-download-{}", std::process::id()));
    create_private_dir(&staging)?;
    let mut fetched = Fetched {
        staging: Some(staging.clone()),
        count: 0,
    };
    for file in files {
        if stop_requested().is_some() {
            return Err(refuse("stopped during the download".to_owned()));
        }
        let (key, into) = (format!("{prefix}{file}"), staging.join(file));
        tokio::select! {
            downloaded = store.download(&key, &into) => {
                downloaded?;
            }
            // stop_on_signals set the flag; restore() names the signal.
            _ = shutdown_signal() => return Err(refuse("stopped during the download".to_owned())),
        }
        fetched.count += 1;
    }
    tracing::info!(
        files = fetched.count,
        "downloaded {}",
        store.location(&prefix)
    );
    Ok(fetched)
}

/// The major version in `dir/PG_VERSION` (`10`, `17`...).
fn major_of(dir: &Path) -> Result<u32, BaseError> {
    let path = dir.join("PG_VERSION");
    let text = fs::read_to_string(&path).map_err(BaseError::output(&path))?;
    text.trim().parse().map_err(|_| BaseError::Restore {
        backup: dir.display().to_string(),
        reason: format!("PG_VERSION holds {:?}", text.trim()),
    })
}

/// `restore_command = '...'` as postgresql.conf quotes it.
pub fn restore_command_line(command: &str) -> String {
    format!("restore_command = '{}'\n", command.replace('\'', "''"))
}

/// What `--recovery-signal` and `--restore-command` ask for: on 12+, `recovery.signal` and a
/// `restore_command` line in `postgresql.auto.conf`; before 12, `recovery.conf` (which is the
/// signal, and needs a restore_command).
fn write_recovery(
    dir: &Path,
    major: u32,
    request: &RestoreRequest,
) -> Result<Vec<PathBuf>, BaseError> {
    let command = request.restore_command.as_deref().map(restore_command_line);
    let mut written = Vec::new();
    let mut append = |name: &str, text: &str| -> Result<(), BaseError> {
        let path = dir.join(name);
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .map_err(BaseError::output(&path))?;
        written.push(path);
        Ok(())
    };
    if major < 12 {
        match (&command, request.recovery_signal) {
            (Some(command), _) => append("recovery.conf", command)?,
            (None, true) => {
                return Err(BaseError::Usage(format!(
                    "PostgreSQL {major} recovers through recovery.conf, which needs a \
                     restore_command: give --restore-command too"
                )))
            }
            (None, false) => {}
        }
        return Ok(written);
    }
    if let Some(command) = &command {
        append("postgresql.auto.conf", command)?;
    }
    if request.recovery_signal {
        append("recovery.signal", "")?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_command_is_quoted() {
        assert_eq!(
            restore_command_line("cp '/a b/%f' %p"),
            "restore_command = 'cp ''/a b/%f'' %p'\n"
        );
    }
}
