//! `pgbase --upload` and the purge: pgback's upload stage ([`Offsite`]) fed with each file as
//! it becomes final, the remote copy marked incomplete (`pgbase.incomplete` goes up first and
//! is deleted only once every file is confirmed), and the purge of the other tar backups
//! beside `-D` (and remotely) by pgback's rule ([`select_purge`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, FixedOffset, Utc};

use crate::base::command::Request;
use crate::base::error::{BaseError, INCOMPLETE_MARKER};
use crate::base::unpack::find_archive;
use crate::config::{DumpConfig, EncryptionConfig};
use crate::dump::{finish_offsite, select_purge, BackupGroup, Offsite, RunReport, UploadReport};
use crate::remote::{remote_key, RemoteStore};
use crate::values::{Keep, PurgeInterval};

/// `-D`'s parent, the base of every remote key: a backup `nightly` goes up as `nightly/...`.
pub fn backups_dir(dir: &Path) -> Result<PathBuf, BaseError> {
    let dir = std::path::absolute(dir).map_err(BaseError::output(dir))?;
    Ok(dir.parent().map(Path::to_path_buf).unwrap_or(dir))
}

/// pgback's `[dump]` as its upload stage reads it: the store, the key base, what is sealed.
fn upload_config(request: &Request, base: &Path) -> DumpConfig {
    DumpConfig {
        backup_directory: base.display().to_string(),
        remote: request.remote.clone(),
        encryption: EncryptionConfig {
            encrypt: request.encrypt.is_some(),
            ..EncryptionConfig::default()
        },
        ..DumpConfig::default()
    }
}

/// Opens the store (an SFTP login or a refused key fails here, before the backup starts) and
/// puts the incomplete marker up; `None` without `--upload`.
pub async fn start(request: &Request) -> Result<Option<Offsite>, BaseError> {
    let base = backups_dir(&request.dir)?;
    let Some(offsite) = Offsite::start(&upload_config(request, &base)).await? else {
        return Ok(None);
    };
    let marker = request.dir.join(INCOMPLETE_MARKER);
    let key = remote_key(&base, &marker)?;
    offsite.store().upload(&marker, &key).await?;
    Ok(Some(offsite))
}

/// Waits for every queued upload; only when all arrived is the remote marker deleted (the
/// remote backup complete). A failed upload is an error naming it.
pub async fn finish(offsite: Offsite, request: &Request) -> Result<UploadReport, BaseError> {
    let base = backups_dir(&request.dir)?;
    let config = upload_config(request, &base);
    let mut report = RunReport::default();
    let store_marker = remote_key(&base, &request.dir.join(INCOMPLETE_MARKER))?;
    let handle = offsite.clone();
    finish_offsite(Some(offsite), &config, &[], &[], &mut report).await;
    let upload = report.upload.clone().unwrap_or_else(|| UploadReport {
        store: request.remote.upload.name().to_owned(),
        files: 0,
        bytes: 0,
        failed: 0,
        duration: std::time::Duration::ZERO,
    });
    if !report.server_errors.is_empty() {
        return Err(BaseError::Upload {
            message: format!(
                "{} file(s) did not upload ({}): the local backup in \"{}\" is complete, the \
                 remote one is not (still marked {INCOMPLETE_MARKER})",
                report.server_errors.len(),
                report.server_errors.join("; "),
                request.dir.display()
            ),
            report: Some(upload),
        });
    }
    handle.store().delete(&store_marker).await?;
    Ok(upload)
}

/// The name of the backup directory `dir` (its last component).
fn dir_name(dir: &Path) -> Result<String, BaseError> {
    std::path::absolute(dir)
        .map_err(BaseError::output(dir))?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| BaseError::Usage(format!("{} has no name", dir.display())))
}

/// The backups to delete among `backups` (name, when taken), newest kept first: pgback's rule,
/// never the run's own `protected` one.
fn select<'b>(
    backups: &'b [(String, DateTime<FixedOffset>)],
    (older_than, keep): (PurgeInterval, Keep),
    protected: &str,
) -> Vec<&'b str> {
    let mut groups: Vec<BackupGroup> = backups
        .iter()
        .map(|(name, taken_at)| BackupGroup {
            stamp: name.clone(),
            taken_at: *taken_at,
            names: vec![name.clone()],
        })
        .collect();
    groups.sort_by(|a, b| b.taken_at.cmp(&a.taken_at).then(b.stamp.cmp(&a.stamp)));
    let limit = crate::naming::now()
        - chrono::Duration::from_std(older_than.0).unwrap_or(chrono::Duration::MAX);
    let selected: Vec<String> = select_purge(&groups, keep, limit, &[protected.to_owned()])
        .into_iter()
        .map(|g| g.stamp.clone())
        .collect();
    backups
        .iter()
        .filter(|(name, _)| selected.contains(name))
        .map(|(name, _)| name.as_str())
        .collect()
}

/// When a file was last written, as the purge compares it.
fn modified(path: &Path) -> Option<DateTime<FixedOffset>> {
    let time: SystemTime = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(DateTime::<Utc>::from(time).fixed_offset())
}

/// The complete tar backups beside `dir` (its siblings holding `base.tar...` and no
/// `pgbase.incomplete`), each taken when its newest file was written. A directory without
/// `base.tar` (a data directory, a plain backup, anything else) is never a candidate.
fn local_backups(parent: &Path) -> Vec<(String, DateTime<FixedOffset>)> {
    let mut backups = Vec::new();
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_symlink()
            || !path.is_dir()
            || find_archive(&path, "base.tar").is_none()
            || path.join(INCOMPLETE_MARKER).exists()
        {
            continue;
        }
        let newest = std::fs::read_dir(&path)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|f| modified(&f.path()))
            .max();
        if let Some(newest) = newest {
            backups.push((entry.file_name().to_string_lossy().into_owned(), newest));
        }
    }
    backups
}

/// Deletes the old tar backups beside `request.dir` (and, with `purge_remote`, on the store);
/// returns what went. Each failure is a warning: the backup itself is complete.
pub async fn purge(request: &Request, offsite: Option<&RemoteStore>) -> Vec<String> {
    let Some(rule) = request.purge else {
        return Vec::new();
    };
    let mut purged = Vec::new();
    let (Ok(parent), Ok(own)) = (backups_dir(&request.dir), dir_name(&request.dir)) else {
        return purged;
    };
    let backups = local_backups(&parent);
    for name in select(&backups, rule, &own) {
        let path = parent.join(name);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::info!("purged {}", path.display());
                purged.push(path.display().to_string());
            }
            Err(e) => tracing::warn!("could not purge {}: {e}", path.display()),
        }
    }
    if let (Some(store), true) = (offsite, request.remote.purge_remote) {
        match purge_remote(store, rule, &own).await {
            Ok(removed) => purged.extend(removed),
            Err(e) => tracing::warn!("remote purge: {e}"),
        }
    }
    purged
}

/// The objects under one top-level name of the store.
struct RemoteBackup<'e> {
    keys: Vec<&'e str>,
    has_base: bool,
    incomplete: bool,
    newest: DateTime<FixedOffset>,
}

/// The remote half of [`purge`]: backups are the top-level names with a `base.tar...` and no
/// marker, taken when their newest object was written.
async fn purge_remote(
    store: &RemoteStore,
    rule: (PurgeInterval, Keep),
    own: &str,
) -> Result<Vec<String>, BaseError> {
    let entries = store.list("").await?;
    let mut tops: BTreeMap<&str, RemoteBackup> = BTreeMap::new();
    for entry in &entries {
        let Some((top, file)) = entry.key.split_once('/') else {
            continue;
        };
        let backup = tops.entry(top).or_insert_with(|| RemoteBackup {
            keys: Vec::new(),
            has_base: false,
            incomplete: false,
            newest: DateTime::<Utc>::MIN_UTC.fixed_offset(),
        });
        backup.keys.push(&entry.key);
        backup.has_base |= file.starts_with("base.tar");
        backup.incomplete |= file == INCOMPLETE_MARKER;
        backup.newest = backup.newest.max(entry.modified.fixed_offset());
    }
    let backups: Vec<(String, DateTime<FixedOffset>)> = tops
        .iter()
        .filter(|(_, b)| b.has_base && !b.incomplete)
        .map(|(top, b)| (top.to_string(), b.newest))
        .collect();
    let mut removed = Vec::new();
    for name in select(&backups, rule, own) {
        for key in tops.get(name).map(|b| b.keys.clone()).unwrap_or_default() {
            store.delete(key).await?;
            tracing::info!("purged {}", store.location(key));
            removed.push(store.location(key));
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_newest_and_the_own_backup_stay() {
        let now = crate::naming::now();
        let day = chrono::Duration::days(1);
        let backups = vec![
            ("a".to_owned(), now - day * 10),
            ("b".to_owned(), now - day * 5),
            ("c".to_owned(), now - day * 3),
            ("own".to_owned(), now),
        ];
        let week = PurgeInterval(Duration::from_secs(4 * 86_400));
        assert_eq!(select(&backups, (week, Keep::Newest(0)), "own"), ["a", "b"]);
        assert_eq!(select(&backups, (week, Keep::Newest(3)), "own"), ["a"]);
        assert!(select(&backups, (week, Keep::All), "own").is_empty());
        let zero = PurgeInterval(Duration::ZERO);
        assert_eq!(select(&backups, (zero, Keep::Newest(0)), "own").len(), 3);
    }
}
