//! pgback's offsite stage: each final file goes up while other databases still dump
//! ([`Offsite`], [`FinalFiles`]); a failed upload fails the run (nothing purged, local files
//! kept); after a successful run, `purge_remote` applies the local purge rules to the remote
//! listing. And the ways back: `--list-remote` and `--download` (then each file is checked
//! against its checksum file), filtered by the DBNAME globs.
//!
//! Remote keys are paths relative to the fixed part of the backup directory (before any
//! `{dbname}`), so a listing compares with, and downloads into, the same layout.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::output::WrittenFile;
use super::purge::{group_backups, select_purge, PurgeTarget};
use super::report::{RunReport, UploadReport};
use crate::checksum::{verify_all, VerifyError};
use crate::config::DumpConfig;
use crate::config::{RemoteSettings, StoreKind};
use crate::glob::{any_matches, Glob, GlobError};
use crate::naming::{self, backup_dir, fixed_backup_dir};
use crate::remote::{
    remote_key, ProcessEnvironment, RemoteEntry, RemoteError, RemoteStore, Tuning, UploadQueue,
    Uploader, UploaderOptions,
};

/// Checksum file extensions (pg_back's names), also under `.age`.
const CHECKSUM_EXTENSIONS: [&str; 5] = ["sha1", "sha224", "sha256", "sha384", "sha512"];

/// Files uploaded at once.
const PARALLEL_UPLOADS: usize = 2;

/// Opens the store `kind` from `remote`, with the default tuning and the process environment.
pub async fn open_store(
    kind: StoreKind,
    remote: &RemoteSettings,
) -> Result<RemoteStore, RemoteError> {
    RemoteStore::open(kind, remote, &Tuning::default(), &ProcessEnvironment).await
}

/// The running upload stage of one run; cheap to clone.
#[derive(Clone)]
pub struct Offsite {
    store: Arc<RemoteStore>,
    uploader: Arc<tokio::sync::Mutex<Option<Uploader>>>,
    finals: FinalFiles,
    started: std::time::Instant,
}

impl std::fmt::Debug for Offsite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Offsite({:?})", self.store)
    }
}

impl Offsite {
    /// Opens the upload store of `dump.remote` and starts uploading; `None` without `upload`.
    /// Must run inside the run's tokio runtime. For SFTP this logs in, so a refused host key or
    /// login fails before anything is dumped.
    pub async fn start(dump: &DumpConfig) -> Result<Option<Offsite>, RemoteError> {
        let remote = &dump.remote;
        if remote.upload == StoreKind::None {
            return Ok(None);
        }
        let store = Arc::new(open_store(remote.upload, remote).await?);
        let uploader = Uploader::spawn(
            store.clone(),
            UploaderOptions {
                parallel: PARALLEL_UPLOADS,
                delete_uploaded: remote.delete_uploaded,
            },
        );
        let finals = FinalFiles {
            queue: Arc::new(Mutex::new(uploader.queue())),
            base: PathBuf::from(fixed_backup_dir(&dump.backup_directory)),
            encrypting: dump.encryption.encrypt,
            errors: Arc::default(),
        };
        Ok(Some(Offsite {
            store,
            uploader: Arc::new(tokio::sync::Mutex::new(Some(uploader))),
            finals,
            started: std::time::Instant::now(),
        }))
    }

    /// The store files go up to.
    pub fn store(&self) -> Arc<RemoteStore> {
        self.store.clone()
    }

    /// Where the dump steps report final files.
    pub fn final_files(&self) -> FinalFiles {
        self.finals.clone()
    }
}

/// Where a dump step reports files that are final: each is queued for upload at once (never
/// waiting). The default does nothing (no upload).
#[derive(Clone, Debug, Default)]
pub struct FinalFiles {
    /// Shared by every clone, so that [`finish`] closes them all (the uploader ends only when
    /// no queue is left).
    queue: Arc<Mutex<Option<UploadQueue>>>,
    base: PathBuf,
    encrypting: bool,
    errors: Arc<Mutex<Vec<String>>>,
}

impl FinalFiles {
    /// Queues `files` (and their checksum files; every file of a dump directory) for upload.
    pub fn submit(&self, files: &[WrittenFile]) {
        let Some(queue) = self.queue.lock().ok().and_then(|q| q.clone()) else {
            return;
        };
        for file in files {
            let mut paths = files_under(&file.path);
            paths.extend(file.checksum_path.iter().cloned());
            for path in paths {
                if !uploadable(&path, self.encrypting) {
                    tracing::debug!("not uploaded: {}", path.display());
                    continue;
                }
                match remote_key(&self.base, &path) {
                    Ok(key) => {
                        if !queue.submit(path.clone(), key) {
                            self.error(format!("{}: the uploader has stopped", path.display()));
                        }
                    }
                    Err(e) => self.error(e.to_string()),
                }
            }
        }
    }

    fn error(&self, text: String) {
        tracing::error!("{text}");
        if let Ok(mut errors) = self.errors.lock() {
            errors.push(text);
        }
    }
}

/// `path` itself, or every regular file under it when it is a directory (sorted).
fn files_under(path: &Path) -> Vec<PathBuf> {
    if !path.is_dir() {
        return vec![path.to_path_buf()];
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Whether a final file goes up: never a lock or a partial file; when encrypting, only
/// encrypted files and their checksum files (`*.age`, `*.age.<algo>`, `*.<algo>.age`), never a
/// plaintext kept by `--encrypt-keep-src` nor its checksum.
fn uploadable(path: &Path, encrypting: bool) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    if name.ends_with(".lock") || name.ends_with(".partial") {
        return false;
    }
    let checksummed = match name.rsplit_once('.') {
        Some((file, ext)) if CHECKSUM_EXTENSIONS.contains(&ext) => file,
        _ => &name,
    };
    !encrypting || checksummed.ends_with(".age")
}

/// A checksum file's name: `<file>.<algo>` or `<file>.<algo>.age`.
fn is_checksum_name(name: &str) -> bool {
    let name = name.strip_suffix(".age").unwrap_or(name);
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| CHECKSUM_EXTENSIONS.contains(&ext))
}

/// Ends the upload stage of a run: waits for every queued upload and records each failure in
/// `report` (the run then fails and nothing is purged); after a successful run with
/// `purge_remote`, purges `targets` on the store, sparing the run's own `protected` stamps.
pub async fn finish(
    offsite: Option<Offsite>,
    dump: &DumpConfig,
    targets: &[PurgeTarget],
    protected: &[String],
    report: &mut RunReport,
) {
    let Some(offsite) = offsite else {
        return;
    };
    if let Ok(mut queue) = offsite.finals.queue.lock() {
        queue.take();
    }
    let uploader = offsite.uploader.lock().await.take();
    let outcomes = match uploader {
        Some(uploader) => uploader.finish().await,
        None => Vec::new(),
    };
    let mut upload = UploadReport {
        store: offsite.store.kind().name().to_string(),
        files: 0,
        bytes: 0,
        failed: 0,
        duration: offsite.started.elapsed(),
    };
    for outcome in outcomes {
        match &outcome.result {
            Ok(uploaded) => {
                upload.files += 1;
                upload.bytes += uploaded.bytes;
                tracing::info!("uploaded {}", uploaded.location);
            }
            Err(e) => {
                upload.failed += 1;
                tracing::error!("{e}");
                report.server_errors.push(e.to_string());
            }
        }
        if let Some(Err(e)) = outcome.removed {
            report.warn(e);
        }
    }
    if let Ok(errors) = offsite.finals.errors.lock() {
        upload.failed += errors.len();
        report.server_errors.extend(errors.iter().cloned());
    }
    tracing::info!(
        "{} file(s), {} bytes uploaded to {}",
        upload.files,
        upload.bytes,
        offsite.store.location("")
    );
    report.upload = Some(upload);
    if !report.success() {
        return;
    }
    if dump.remote.purge_remote {
        if let Err(e) = purge_remote(&offsite.store, dump, targets, protected).await {
            report.warn(format!("remote purge: {e}"));
        }
    }
}

/// Applies each target's age and min-keep rules to the remote listing, per database and per
/// dump set (a stamp's files go together), never touching `protected` stamps.
pub async fn purge_remote(
    store: &RemoteStore,
    dump: &DumpConfig,
    targets: &[PurgeTarget],
    protected: &[String],
) -> Result<Vec<String>, RemoteError> {
    let entries = store.list("").await?;
    let base = Path::new(&dump.backup_directory);
    let fixed = Path::new(fixed_backup_dir(&dump.backup_directory));
    let mut removed = Vec::new();
    for target in targets {
        let dir = backup_dir(base, &target.name);
        let dir = remote_dir(fixed, &dir);
        // (top-level name under the database's directory, key)
        let keyed: Vec<(&str, &str)> = entries
            .iter()
            .filter_map(|e| {
                let rest = match &dir {
                    None => e.key.as_str(),
                    Some(dir) => e.key.strip_prefix(dir.as_str())?.strip_prefix('/')?,
                };
                Some((rest.split('/').next()?, e.key.as_str()))
            })
            .collect();
        let tops: BTreeSet<&str> = keyed.iter().map(|(top, _)| *top).collect();
        let groups = group_backups(tops.iter().copied(), &target.name);
        let limit = naming::now()
            - chrono::Duration::from_std(target.older_than.0).unwrap_or(chrono::Duration::MAX);
        for group in select_purge(&groups, target.keep, limit, protected) {
            for (_, key) in keyed
                .iter()
                .filter(|(top, _)| group.names.iter().any(|n| n == top))
            {
                store.delete(key).await?;
                tracing::info!("purged {}", store.location(key));
                removed.push(key.to_string());
            }
        }
    }
    Ok(removed)
}

/// The key prefix of a database's directory: `None` when it is the fixed base itself.
fn remote_dir(fixed: &Path, dir: &Path) -> Option<String> {
    let relative = dir.strip_prefix(fixed).ok()?;
    let text = relative.to_string_lossy().trim_matches('/').to_string();
    (!text.is_empty()).then_some(text)
}

/// The remote entries whose key, or a leading part of it (a dump directory), matches one of
/// `globs` (every entry when there are none).
pub fn matching<'e>(entries: &'e [RemoteEntry], globs: &[Glob]) -> Vec<&'e RemoteEntry> {
    entries
        .iter()
        .filter(|e| globs.is_empty() || leading_parts(&e.key).any(|part| any_matches(globs, part)))
        .collect()
}

/// `a`, `a/b`, `a/b/c` for `a/b/c`.
fn leading_parts(key: &str) -> impl Iterator<Item = &str> {
    key.match_indices('/')
        .map(move |(at, _)| &key[..at])
        .chain(std::iter::once(key))
}

/// A failure of `--list-remote` or `--download`.
#[derive(Debug, thiserror::Error)]
pub enum OffsiteError {
    /// The store failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// A downloaded file does not match its checksum file.
    #[error("downloaded files do not verify: {0}")]
    Verify(#[from] VerifyError),
    /// A DBNAME glob does not parse: nothing was listed or downloaded.
    #[error(transparent)]
    Glob(#[from] GlobError),
    /// The local directory cannot be written.
    #[error("cannot create {path}: {source}")]
    Local {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl crate::exit::Failure for OffsiteError {
    fn exit_status(&self) -> crate::exit::ExitStatus {
        match self {
            OffsiteError::Remote(e) => e.exit_status(),
            OffsiteError::Verify(_) => crate::exit::ExitStatus::BackupFailed,
            OffsiteError::Glob(e) => e.exit_status(),
            OffsiteError::Local { .. } => crate::exit::ExitStatus::Output,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            OffsiteError::Remote(e) => e.hint(),
            OffsiteError::Glob(e) => e.hint(),
            _ => None,
        }
    }
}

/// `--list-remote`: the remote names matching the DBNAME globs, one per line.
pub async fn list_remote(dump: &DumpConfig) -> Result<Vec<String>, OffsiteError> {
    let globs = Glob::parse_all(&dump.include_dbs)?;
    let store = open_store(dump.remote.list_remote, &dump.remote).await?;
    let entries = store.list("").await?;
    Ok(matching(&entries, &globs)
        .into_iter()
        .map(|e| e.key.clone())
        .collect())
}

/// `--download`: fetches the files matching the DBNAME globs into the backup directory, then
/// checks each against its checksum file. Returns the local paths fetched.
pub async fn download(dump: &DumpConfig) -> Result<Vec<PathBuf>, OffsiteError> {
    let globs = Glob::parse_all(&dump.include_dbs)?;
    let store = open_store(dump.remote.download, &dump.remote).await?;
    let entries = store.list("").await?;
    let base = PathBuf::from(fixed_backup_dir(&dump.backup_directory));
    let mut fetched = Vec::new();
    let mut tops = BTreeSet::new();
    for entry in matching(&entries, &globs) {
        let path = base.join(&entry.key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| OffsiteError::Local {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        store.download(&entry.key, &path).await?;
        tracing::info!("downloaded {}", path.display());
        let top = entry.key.split('/').next().unwrap_or(&entry.key);
        tops.insert(base.join(top));
        fetched.push(path);
    }
    let checked: Vec<PathBuf> = tops
        .into_iter()
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            !is_checksum_name(&name)
        })
        .collect();
    for verified in verify_all(&checked, false)? {
        if !verified.checksum_files.is_empty() {
            tracing::info!("verified {}", verified.file.display());
        }
    }
    Ok(fetched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_goes_up() {
        assert!(uploadable(Path::new("/b/db_s.dump"), false));
        assert!(!uploadable(Path::new("/b/db.lock"), false));
        assert!(!uploadable(Path::new("/b/db_s.dump.partial"), false));
        assert!(!uploadable(Path::new("/b/db_s.dump"), true));
        assert!(!uploadable(Path::new("/b/db_s.createdb.sql"), true));
        assert!(!uploadable(Path::new("/b/db_s.dump.sha256"), true));
        assert!(uploadable(Path::new("/b/db_s.dump.sha256"), false));
        for name in [
            "db_s.dump.age",
            "db_s.dump.age.sha256",
            "db_s.dump.sha256.age",
        ] {
            assert!(uploadable(&Path::new("/b").join(name), true), "{name}");
        }
    }

    #[test]
    fn globs_match_names_and_dump_directories() {
        let entry = |key: &str| RemoteEntry {
            key: key.into(),
            size: 1,
            modified: chrono::Utc::now(),
        };
        let entries = [
            entry("db1_s.dump"),
            entry("db1_s.d/toc.dat"),
            entry("db12_s.dump"),
            entry("pg_globals_s.sql"),
        ];
        let keys = |globs: &[&str]| -> Vec<String> {
            let globs: Vec<Glob> = globs.iter().map(|g| Glob::new(g).unwrap()).collect();
            matching(&entries, &globs)
                .into_iter()
                .map(|e| e.key.clone())
                .collect()
        };
        assert_eq!(keys(&["db1_*"]), ["db1_s.dump", "db1_s.d/toc.dat"]);
        assert_eq!(keys(&[]).len(), 4);
        assert_eq!(keys(&["pg_globals*", "db12_*"]).len(), 2);
    }

    #[test]
    fn database_directories_under_the_fixed_base() {
        let fixed = Path::new("/b");
        assert_eq!(remote_dir(fixed, Path::new("/b")), None);
        assert_eq!(remote_dir(fixed, Path::new("/b/db1")), Some("db1".into()));
    }
}
