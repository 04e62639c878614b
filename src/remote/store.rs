//! [`RemoteStore`]: one store over its backend, with the prefix, key checks and scrubbed,
//! typed errors.

use std::path::Path;

use super::credentials::Environment;
use super::error::Redactor;
use super::error::{Cause, RemoteError};
use super::types::{Fault, RemoteEntry, Tuning, Uploaded};
use super::{object, sftp};
use crate::config::{RemoteSettings, StoreKind};

enum Backend {
    Object(object::ObjectBackend),
    Sftp(sftp::SftpBackend),
}

/// A remote store opened from the settings of one [`StoreKind`].
pub struct RemoteStore {
    kind: StoreKind,
    prefix: String,
    backend: Backend,
    redactor: Redactor,
}

impl std::fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteStore({})", self.location(""))
    }
}

impl RemoteStore {
    /// Opens the store of `kind` (not `none`): checks the settings, reads the credentials from
    /// `env` and the settings' secrets, and for SFTP connects and logs in (so that a wrong host
    /// key or password fails before any dump starts).
    pub async fn open(
        kind: StoreKind,
        settings: &RemoteSettings,
        tuning: &Tuning,
        env: &dyn Environment,
    ) -> Result<RemoteStore, RemoteError> {
        let prefix = normalize_prefix(kind, &settings.upload_prefix)?;
        let mut redactor = Redactor::default();
        let backend = match kind {
            StoreKind::None => {
                return Err(RemoteError::Settings {
                    store: kind,
                    problem: "no remote store selected".into(),
                    hint: Some("choose s3, b2, gcs, azure or sftp".into()),
                })
            }
            StoreKind::Sftp => {
                Backend::Sftp(sftp::SftpBackend::open(settings, tuning, env, &mut redactor).await?)
            }
            _ => Backend::Object(object::ObjectBackend::open(
                kind,
                settings,
                tuning,
                env,
                &mut redactor,
            )?),
        };
        Ok(RemoteStore {
            kind,
            prefix,
            backend,
            redactor,
        })
    }

    /// The kind of store.
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// The full remote name of `key`, with the prefix.
    pub fn full_key(&self, key: &str) -> String {
        match (self.prefix.is_empty(), key.is_empty()) {
            (true, _) => key.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{key}", self.prefix),
        }
    }

    /// Where `key` lives, for messages: `s3://bucket/prefix/key`, `sftp://user@host:22/dir/key`.
    pub fn location(&self, key: &str) -> String {
        let full = self.full_key(key);
        match &self.backend {
            Backend::Object(b) => b.location(&full),
            Backend::Sftp(b) => b.location(&full),
        }
    }

    fn checked_key(&self, key: &str) -> Result<String, RemoteError> {
        check_key(key)?;
        Ok(self.full_key(key))
    }

    fn cause(&self, fault: Fault) -> Cause {
        self.redactor.cause(fault.kind, &fault.text, fault.hint)
    }

    /// Uploads `local` as `key` (under the prefix): streamed in parts of
    /// [`Tuning::part_size`], failed parts retried with backoff. The remote file appears only
    /// complete (multipart completion, GCS's final chunk, SFTP's rename).
    pub async fn upload(&self, local: &Path, key: &str) -> Result<Uploaded, RemoteError> {
        let full = self.checked_key(key)?;
        let result = match &self.backend {
            Backend::Object(b) => b.upload(local, &full).await,
            Backend::Sftp(b) => b.upload(local, &full).await,
        };
        match result {
            Ok(bytes) => Ok(Uploaded {
                bytes,
                location: self.location(key),
            }),
            Err(fault) => Err(RemoteError::Upload {
                file: local.to_path_buf(),
                location: self.location(key),
                cause: self.cause(fault),
            }),
        }
    }

    /// The remote files whose key starts with `prefix` (a string prefix, not only whole
    /// directories: `db_` finds `db_2024...dump`), sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<RemoteEntry>, RemoteError> {
        if prefix.starts_with('/') || prefix.split('/').any(|s| s == "..") {
            return Err(RemoteError::Key {
                key: prefix.to_string(),
                problem: "a listing prefix is relative and has no `..`",
            });
        }
        let full = listing_prefix(&self.prefix, prefix);
        let result = match &self.backend {
            Backend::Object(b) => b.list(&full).await,
            Backend::Sftp(b) => b.list(&full).await,
        };
        let mut entries = result.map_err(|fault| RemoteError::List {
            location: self.location(prefix),
            cause: self.cause(fault),
        })?;
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        for entry in &mut entries {
            entry.key = entry.key.get(strip..).unwrap_or_default().to_string();
        }
        entries.retain(|e| !e.key.is_empty());
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(entries)
    }

    /// Downloads `key` into `local` through a temporary name in the same directory, synced and
    /// renamed into place only when complete; a failure leaves no partial file.
    pub async fn download(&self, key: &str, local: &Path) -> Result<u64, RemoteError> {
        let full = self.checked_key(key)?;
        let result = match &self.backend {
            Backend::Object(b) => b.download(&full, local).await,
            Backend::Sftp(b) => b.download(&full, local).await,
        };
        result.map_err(|fault| RemoteError::Download {
            location: self.location(key),
            file: local.to_path_buf(),
            cause: self.cause(fault),
        })
    }

    /// Removes `key`. A file that is already gone is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), RemoteError> {
        let full = self.checked_key(key)?;
        let result = match &self.backend {
            Backend::Object(b) => b.delete(&full).await,
            Backend::Sftp(b) => b.delete(&full).await,
        };
        result.map_err(|fault| RemoteError::Delete {
            location: self.location(key),
            cause: self.cause(fault),
        })
    }
}

/// The full string prefix to list for `prefix` under `store_prefix`: the prefix's own
/// directory when `prefix` is empty, so that `nightly/db` does not list `nightly/db2/...`.
fn listing_prefix(store_prefix: &str, prefix: &str) -> String {
    match (store_prefix.is_empty(), prefix.is_empty()) {
        (true, _) => prefix.to_string(),
        (false, true) => format!("{store_prefix}/"),
        (false, false) => format!("{store_prefix}/{prefix}"),
    }
}

/// The remote key of `file`: its path relative to `base_dir`, with forward slashes.
pub fn remote_key(base_dir: &Path, file: &Path) -> Result<String, RemoteError> {
    let relative = file.strip_prefix(base_dir).map_err(|_| RemoteError::Key {
        key: file.display().to_string(),
        problem: "the file is not inside the backup directory",
    })?;
    let mut parts = Vec::new();
    for part in relative.components() {
        match part {
            std::path::Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            _ => {
                return Err(RemoteError::Key {
                    key: file.display().to_string(),
                    problem: "the path has `.` or `..` components",
                })
            }
        }
    }
    let key = parts.join("/");
    check_key(&key)?;
    Ok(key)
}

/// A key is relative, with non-empty segments, no `.` or `..`, no control characters.
fn check_key(key: &str) -> Result<(), RemoteError> {
    let problem = if key.is_empty() {
        Some("it is empty")
    } else if key.starts_with('/') {
        Some("it starts with `/`")
    } else if key
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        Some("it has an empty, `.` or `..` segment")
    } else if key.chars().any(char::is_control) {
        Some("it has control characters")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(RemoteError::Key {
            key: key.to_string(),
            problem,
        }),
        None => Ok(()),
    }
}

/// `upload_prefix` without leading or trailing slashes; empty stays empty.
fn normalize_prefix(kind: StoreKind, prefix: &str) -> Result<String, RemoteError> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    check_key(trimmed).map_err(|_| RemoteError::Settings {
        store: kind,
        problem: format!(
            "upload_prefix {prefix:?} has an empty, `.` or `..` segment or control characters"
        ),
        hint: Some("use a relative path such as `nightly/db1`".into()),
    })?;
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_relative_forward_slash_paths() {
        let base = Path::new("/backups");
        assert_eq!(
            remote_key(base, Path::new("/backups/db_2024.d/toc.dat")).unwrap(),
            "db_2024.d/toc.dat"
        );
        assert!(remote_key(base, Path::new("/other/x")).is_err());
        assert!(remote_key(base, Path::new("/backups")).is_err());
        for bad in ["", "/a", "a//b", "a/../b", "./a", "a\nb"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_key("50%off [x] ~y.dump").is_ok());
    }

    #[test]
    fn prefixes_lose_outer_slashes() {
        let s3 = StoreKind::S3;
        assert_eq!(normalize_prefix(s3, "/nightly/db/").unwrap(), "nightly/db");
        assert_eq!(normalize_prefix(s3, "").unwrap(), "");
        assert!(normalize_prefix(s3, "a/../b").is_err());
    }

    #[test]
    fn listings_stay_inside_the_prefix() {
        assert_eq!(listing_prefix("nightly/db", ""), "nightly/db/");
        assert_eq!(listing_prefix("nightly/db", "db1_"), "nightly/db/db1_");
        assert_eq!(listing_prefix("", "db1_"), "db1_");
        assert_eq!(listing_prefix("", ""), "");
    }
}
