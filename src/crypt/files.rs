//! Whole files: encrypting the files of a directory dump once pg_dump has written them (the
//! plaintext removed as soon as each is encrypted), and `--decrypt`: decrypting `.age` files in
//! place, `-j` at a time, through a temporary name so that a failure leaves no partial output.
//! Everything here blocks: call it from `spawn_blocking` inside the async runtime.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::error::CryptError;
use super::keys::{DecryptKey, EncryptKey, SCRYPT_MAX_WORK_FACTOR};
use super::naming::{decrypted_path, encrypted_path, is_encrypted_name};
use super::stream::EncryptSink;
use crate::config::values::ChecksumAlgorithm;
use crate::dump::naming::temp_path;
use crate::glob::{any_matches, Glob};
use crate::pump::BATCH_BYTES;

/// One file encrypted by [`encrypt_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedEntry {
    /// The plaintext file (removed unless keep-src).
    pub plain_path: PathBuf,
    /// `<file>.age`.
    pub age_path: PathBuf,
    /// The plaintext's digest in hex, for the `<file>.<algo>` list.
    pub plain_digest: Option<String>,
    /// The encrypted file's digest in hex, for the `<file>.age.<algo>` list.
    pub age_digest: Option<String>,
    /// Plaintext bytes.
    pub plain_bytes: u64,
    /// Encrypted bytes.
    pub age_bytes: u64,
}

/// What [`decrypt_files`] did: every file is tried, each failure kept with its own message.
#[derive(Debug, Default)]
pub struct DecryptReport {
    /// The plaintext files written, in the order of the input.
    pub decrypted: Vec<PathBuf>,
    /// One error per file that could not be decrypted (its output is absent).
    pub failures: Vec<CryptError>,
}

fn write_error(path: &Path) -> impl FnOnce(io::Error) -> CryptError + '_ {
    move |source| CryptError::Write {
        path: path.to_path_buf(),
        source,
    }
}

fn read_error(path: &Path) -> impl FnOnce(io::Error) -> CryptError + '_ {
    move |source| CryptError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `tmp` (0600) for writing, replacing what an interrupted earlier run left there.
fn create_temp(tmp: &Path) -> io::Result<File> {
    match std::fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Runs `work` on each item, at most `jobs` at a time, and returns the results in order.
fn parallel<T: Sync, R: Send>(items: &[T], jobs: usize, work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(index) else {
                    return;
                };
                let result = work(item);
                if let Ok(mut slots) = results.lock() {
                    slots[index] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

/// Encrypts one finished file into `<path>.age` (through a temporary name, fsynced, chmodded
/// to `mode` when given (else 0600), renamed, the directory fsynced), then removes `path`
/// unless `keep_src`. Blocking; with a passphrase it runs scrypt.
pub fn encrypt_file(
    path: &Path,
    key: &EncryptKey,
    algorithm: ChecksumAlgorithm,
    mode: Option<u32>,
    keep_src: bool,
) -> Result<EncryptedEntry, CryptError> {
    let age_path = encrypted_path(path);
    let tmp = temp_path(&age_path);
    let mut source = File::open(path).map_err(read_error(path))?;
    let result = (|| {
        let mut sink = EncryptSink::new(key, create_temp(&tmp)?, None, algorithm)?;
        let mut buf = vec![0u8; BATCH_BYTES];
        loop {
            let n = source.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sink.write_all(&buf[..n])?;
        }
        let done = sink.finish()?;
        if let Some(bits) = mode {
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(bits))?;
        }
        std::fs::rename(&tmp, &age_path)?;
        Ok::<_, io::Error>(done)
    })();
    let done = match result {
        Ok(done) => done,
        Err(source) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(CryptError::Write {
                path: age_path,
                source,
            });
        }
    };
    if !keep_src {
        std::fs::remove_file(path).map_err(write_error(path))?;
    }
    fsync_dir(parent(path)).map_err(write_error(parent(path)))?;
    Ok(EncryptedEntry {
        plain_path: path.to_path_buf(),
        age_path,
        plain_digest: done.plain_digest,
        age_digest: done.age_digest,
        plain_bytes: done.plain_bytes,
        age_bytes: done.age_bytes,
    })
}

/// Encrypts every file of a directory dump once pg_dump has finished: each `<f>` becomes
/// `<f>.age` and (unless `keep_src`) the plaintext is removed as soon as its encrypted copy is
/// on disk; `jobs` files at a time. Entries come back sorted by name, with the digests the
/// `<dir>.<algo>` and `<dir>.age.<algo>` lists need. On an error the directory is left half
/// done: the caller discards the dump.
pub fn encrypt_directory(
    dir: &Path,
    key: &EncryptKey,
    algorithm: ChecksumAlgorithm,
    mode: Option<u32>,
    keep_src: bool,
    jobs: usize,
) -> Result<Vec<EncryptedEntry>, CryptError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error(dir))? {
        let entry = entry.map_err(read_error(dir))?;
        let is_file = entry.file_type().map_err(read_error(dir))?.is_file();
        if is_file && !is_encrypted_name(&entry.file_name()) {
            files.push(entry.path());
        }
    }
    files.sort();
    let results = parallel(&files, jobs, |path| {
        encrypt_file(path, key, algorithm, mode, keep_src)
    });
    results.into_iter().collect()
}

/// Maps an error of age's header or key stage to one clear error.
fn open_error(
    path: &Path,
    key: &DecryptKey,
    is_scrypt: bool,
    error: age::DecryptError,
) -> CryptError {
    let path = path.to_path_buf();
    match error {
        age::DecryptError::NoMatchingKeys if is_scrypt && !key.is_passphrase() => {
            CryptError::NeedsPassphrase { path }
        }
        age::DecryptError::NoMatchingKeys if !is_scrypt && key.is_passphrase() => {
            CryptError::NeedsIdentity { path }
        }
        age::DecryptError::NoMatchingKeys => CryptError::WrongKey { path },
        age::DecryptError::DecryptionFailed if key.is_passphrase() => {
            CryptError::WrongPassphrase { path }
        }
        age::DecryptError::DecryptionFailed | age::DecryptError::KeyDecryptionFailed => {
            CryptError::WrongKey { path }
        }
        age::DecryptError::InvalidMac => CryptError::Damaged {
            path,
            detail: "the header's MAC does not match".into(),
        },
        age::DecryptError::ExcessiveWork { required, .. } => CryptError::ExcessiveWork {
            path,
            required,
            limit: SCRYPT_MAX_WORK_FACTOR,
        },
        age::DecryptError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            CryptError::Damaged {
                path,
                detail: "it ends inside the header".into(),
            }
        }
        age::DecryptError::Io(source) => CryptError::Read { path, source },
        _ => CryptError::NotAge { path },
    }
}

/// Maps an error met while streaming the payload.
pub fn payload_error(path: &Path, error: io::Error) -> CryptError {
    let path = path.to_path_buf();
    match error.kind() {
        io::ErrorKind::UnexpectedEof => CryptError::Damaged {
            path,
            detail: "it ends before age's last chunk".into(),
        },
        io::ErrorKind::InvalidData => CryptError::Damaged {
            path,
            detail: "a chunk fails authentication".into(),
        },
        _ => CryptError::Read {
            path,
            source: error,
        },
    }
}

/// Reads the age header of `source` (the file `path`) and unwraps its file key with `key`:
/// a wrong key gives one clear error before any payload byte is read. The reader returns the
/// plaintext; map its errors with [`payload_error`]. Blocking (with a passphrase, scrypt).
pub fn open_decryptor(
    source: File,
    path: &Path,
    key: &DecryptKey,
) -> Result<impl Read, CryptError> {
    let decryptor = age::Decryptor::new_buffered(BufReader::with_capacity(BATCH_BYTES, source))
        .map_err(|e| open_error(path, key, false, e))?;
    let is_scrypt = decryptor.is_scrypt();
    decryptor
        .decrypt(key.identities().into_iter())
        .map_err(|e| open_error(path, key, is_scrypt, e))
}

/// Decrypts `path` (`<file>.age`) into `<file>`, through a temporary name renamed only once
/// every chunk has been authenticated: a wrong key, a truncated or a modified file gives one
/// error and no output. An existing `<file>` is replaced (as pg_back does). The result gets the
/// permission bits of the `.age` file.
pub fn decrypt_file(path: &Path, key: &DecryptKey) -> Result<PathBuf, CryptError> {
    let target = decrypted_path(path).ok_or_else(|| CryptError::NotAgeName {
        path: path.to_path_buf(),
    })?;
    let source = File::open(path).map_err(read_error(path))?;
    let mode = source
        .metadata()
        .map_err(read_error(path))?
        .permissions()
        .mode()
        & 0o777;
    let mut reader = open_decryptor(source, path, key)?;
    let tmp = temp_path(&target);
    let mut out = create_temp(&tmp).map_err(write_error(&tmp))?;
    let result = (|| {
        let mut buf = vec![0u8; BATCH_BYTES];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(payload_error(path, e)),
            };
            out.write_all(&buf[..n]).map_err(write_error(&target))?;
        }
        out.sync_all().map_err(write_error(&target))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .map_err(write_error(&target))?;
        std::fs::rename(&tmp, &target).map_err(write_error(&target))?;
        fsync_dir(parent(&target)).map_err(write_error(&target))
    })();
    if let Err(e) = result {
        drop(out);
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(target)
}

/// Decrypts `files`, `jobs` at a time (`-j`). Every file is tried; see [`DecryptReport`].
pub fn decrypt_files(files: &[PathBuf], key: &DecryptKey, jobs: usize) -> DecryptReport {
    let results = parallel(files, jobs, |path| {
        tracing::info!("decrypting {}", path.display());
        decrypt_file(path, key)
    });
    let mut report = DecryptReport::default();
    for result in results {
        match result {
            Ok(path) => report.decrypted.push(path),
            Err(e) => report.failures.push(e),
        }
    }
    report
}

/// The `.age` files `--decrypt GLOBS` works on, as pg_back finds them: the entries of `dir`
/// whose name matches one of `globs` (all entries when there is none); a matching file ending
/// in `.age` is taken, a matching directory (a directory dump) gives the `.age` files directly
/// inside it. Sorted by path.
pub fn find_encrypted(dir: &Path, globs: &[String]) -> Result<Vec<PathBuf>, CryptError> {
    let patterns = Glob::parse_all(globs)?;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error(dir))? {
        let entry = entry.map_err(read_error(dir))?;
        let name = entry.file_name();
        let name_text = name.to_string_lossy();
        if !any_matches(&patterns, &name_text) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            for inner in std::fs::read_dir(&path).map_err(read_error(&path))? {
                let inner = inner.map_err(read_error(&path))?;
                let is_file = inner.file_type().map_err(read_error(&path))?.is_file();
                if is_file && is_encrypted_name(&inner.file_name()) {
                    found.push(inner.path());
                }
            }
        } else if is_encrypted_name(&name) {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// `--decrypt [GLOBS]`: [`find_encrypted`] then [`decrypt_files`]. An empty report with no
/// failure means nothing matched (pg_back then warns: "maybe add a wildcard (*) to the
/// patterns?").
pub fn decrypt_in_place(
    dir: &Path,
    globs: &[String],
    key: &DecryptKey,
    jobs: usize,
) -> Result<DecryptReport, CryptError> {
    let files = find_encrypted(dir, globs)?;
    Ok(decrypt_files(&files, key, jobs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_keeps_order_and_bounds_jobs() {
        let items: Vec<u32> = (0..50).collect();
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let out = parallel(&items, 3, |i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(2));
            running.fetch_sub(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert!(parallel(&[] as &[u32], 4, |i| *i).is_empty());
        assert_eq!(parallel(&[7u32], 0, |i| *i), [7]);
    }

    fn touch(path: &Path) {
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn finds_like_pg_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for name in [
            "db1_2026-01-01T00:00:00Z.dump.age",
            "db1_2026-01-01T00:00:00Z.dump.age.sha256",
            "db1_2026-01-01T00:00:00Z.dump.sha256.age",
            "db2_2026-01-01T00:00:00Z.dump.age",
            "db2_2026-01-01T00:00:00Z.dump",
            "pg_globals_2026-01-01T00:00:00Z.sql.age",
        ] {
            touch(&dir.join(name));
        }
        let d = dir.join("db3_2026-01-01T00:00:00Z.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::create_dir(d.join("nested")).unwrap();
        touch(&d.join("toc.dat.age"));
        touch(&d.join("3001.dat.gz.age"));
        touch(&d.join("nested/x.age"));
        let names = |globs: &[&str]| -> Vec<String> {
            let globs: Vec<String> = globs.iter().map(|g| g.to_string()).collect();
            find_encrypted(dir, &globs)
                .unwrap()
                .iter()
                .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
                .collect()
        };
        assert_eq!(
            names(&["db1_*"]),
            [
                "db1_2026-01-01T00:00:00Z.dump.age",
                "db1_2026-01-01T00:00:00Z.dump.sha256.age"
            ]
        );
        assert_eq!(
            names(&["db3*"]),
            [
                "db3_2026-01-01T00:00:00Z.d/3001.dat.gz.age",
                "db3_2026-01-01T00:00:00Z.d/toc.dat.age"
            ]
        );
        assert_eq!(names(&[]).len(), 6);
        assert!(names(&["db1"]).is_empty(), "a bare name is not a glob");
        assert_eq!(names(&["db[12]_*.dump.age"]).len(), 2);
        let error = find_encrypted(dir, &["db[".to_string()]).unwrap_err();
        assert!(matches!(error, CryptError::BadGlob { .. }), "{error}");
    }
}
