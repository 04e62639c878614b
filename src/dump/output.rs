//! Writing result files safely: under a temporary name, checksummed while streaming, fsynced,
//! chmodded, then renamed into place (and the directory fsynced), with the checksum file beside.
//!
//! A stream is read, hashed and written on a blocking thread of its own ([`crate::pump`]), and
//! every fsync runs on one too, so that concurrent dumps never wait for one another's disk work.
//! Write-back starts every [`FLUSH_AFTER_BYTES`] (as PostgreSQL's `*_flush_after`), so the
//! final fsync finds little left to write.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::checksum::{self, checksum_line, hash_file, Hasher};
use crate::files::{
    create_private_dir, directory_of, file_name, fsync_dir, temp_path, AtomicFile, FileOptions,
};
use crate::pump::{blocking, pump, BatchSink, Source};
use crate::values::{ChecksumAlgorithm, FileMode};

/// A file (or dump directory) that is complete and in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// Its final path.
    pub path: PathBuf,
    /// The checksum file beside it, when one was asked for.
    pub checksum_path: Option<PathBuf>,
    /// Bytes written (all files of a directory dump).
    pub bytes: u64,
}

/// Writing `path` failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct OutputError {
    /// The file or directory.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> OutputError + '_ {
    move |source| OutputError {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the backup directory (0700) when missing.
pub fn ensure_dir(dir: &Path) -> Result<(), OutputError> {
    create_private_dir(dir).map_err(at(dir))
}

fn file_options(mode: FileMode) -> FileOptions {
    FileOptions {
        mode: mode.bits(),
        adopt_dir_owner: false,
    }
}

fn chmod(path: &Path, mode: FileMode, is_dir: bool) -> io::Result<()> {
    if let Some(bits) = mode.bits() {
        // A directory needs x wherever r is granted, or it cannot be listed.
        let bits = if is_dir {
            bits | ((bits & 0o444) >> 2)
        } else {
            bits
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(bits))?;
    }
    Ok(())
}

/// Writes the checksum file `<path>.<algo>` ([`crate::checksum::write_checksum_file`]) with
/// the backup directory's file mode.
pub fn write_checksum_file(
    path: &Path,
    algorithm: ChecksumAlgorithm,
    lines: &str,
    mode: FileMode,
) -> Result<PathBuf, OutputError> {
    checksum::write_checksum_file(path, algorithm, lines, file_options(mode))
        .map_err(|(checksum_path, error)| at(&checksum_path)(error))
}

/// Written bytes after which write-back of them is started (`posix_fadvise`), so that the
/// final fsync has little left to do and dirty pages do not pile up.
pub const FLUSH_AFTER_BYTES: u64 = 8 * 1024 * 1024;

/// The synchronous end of a stream: writes into the temporary file, hashes, starts write-back.
struct HashedFile {
    file: File,
    hasher: Option<Hasher>,
    written: u64,
    flushed: u64,
}

impl BatchSink for HashedFile {
    fn write_batch(&mut self, batch: &[u8]) -> io::Result<()> {
        self.file.write_all(batch)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(batch);
        }
        self.written += batch.len() as u64;
        if self.written - self.flushed >= FLUSH_AFTER_BYTES {
            let from = self.flushed.saturating_sub(FLUSH_AFTER_BYTES);
            start_write_back(&self.file, from, self.written - from);
            self.flushed = self.written;
        }
        Ok(())
    }
}

/// Asks the kernel to start writing `len` bytes from `offset` without waiting for them, and
/// to drop what is already on disk from the page cache (a dump is not read again). On Linux,
/// `POSIX_FADV_DONTNEED` starts write-back of the dirty pages of the range (`WB_SYNC_NONE`)
/// and evicts the clean ones: called over the last two windows, it starts the newest and
/// evicts the one before, written meanwhile. Only a hint: the final fsync makes it durable.
fn start_write_back(file: &File, offset: u64, len: u64) {
    use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    let _ = posix_fadvise(file, offset, len, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
}

/// Streams `reader` into `path`: temp name, digest while writing, fsync, chmod, rename.
pub async fn write_streamed(
    path: &Path,
    reader: Source,
    algorithm: ChecksumAlgorithm,
    mode: FileMode,
    on_progress: impl FnMut(u64),
) -> Result<WrittenFile, OutputError> {
    let target = path.to_path_buf();
    let atomic =
        blocking(move || AtomicFile::create(&target, &temp_path(&target), file_options(mode)))
            .await
            .map_err(at(path))?;
    let sink = HashedFile {
        file: atomic.file().try_clone().map_err(at(path))?,
        hasher: Hasher::new(algorithm),
        written: 0,
        flushed: 0,
    };
    let (sink, bytes) = pump(reader, sink, on_progress).await.map_err(at(path))?;
    let digest = sink.hasher.map(Hasher::finish_hex);
    let target = path.to_path_buf();
    // fsync, rename and the checksum file, off the runtime thread.
    let checksum_path = blocking(move || {
        drop(sink.file);
        atomic.commit()?;
        let Some(hex) = digest else {
            return Ok(None);
        };
        let line = checksum_line(&hex, &file_name(&target));
        write_checksum_file(&target, algorithm, &line, mode)
            .map(Some)
            .map_err(|e| e.source)
    })
    .await
    .map_err(at(path))?;
    Ok(WrittenFile {
        path: path.to_path_buf(),
        checksum_path,
        bytes,
    })
}

/// Writes a small file from memory, the same safe way.
pub async fn write_bytes(
    path: &Path,
    bytes: &[u8],
    algorithm: ChecksumAlgorithm,
    mode: FileMode,
) -> Result<WrittenFile, OutputError> {
    write_streamed(path, Source::bytes(bytes.to_vec()), algorithm, mode, |_| {}).await
}

/// Finishes a directory dump that pg_dump wrote into `temp_path(path)`: fsync and checksum
/// every file (listed in one checksum file as `<dir>/<file>`), chmod, rename.
pub fn finish_directory(
    path: &Path,
    algorithm: ChecksumAlgorithm,
    mode: FileMode,
) -> Result<WrittenFile, OutputError> {
    let tmp = temp_path(path);
    let dir_name = file_name(path);
    let mut lines = String::new();
    let mut bytes = 0u64;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&tmp)
        .map_err(at(&tmp))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(at(&tmp))?;
    entries.sort();
    for file in &entries {
        let meta = std::fs::metadata(file).map_err(at(file))?;
        bytes += meta.len();
        std::fs::File::open(file)
            .and_then(|f| f.sync_all())
            .map_err(at(file))?;
        if let Some(hex) = hash_file(file, algorithm).map_err(at(file))? {
            lines.push_str(&checksum_line(
                &hex,
                &format!("{dir_name}/{}", file_name(file)),
            ));
        }
        chmod(file, mode, false).map_err(at(file))?;
    }
    chmod(&tmp, mode, true).map_err(at(&tmp))?;
    fsync_dir(&tmp).map_err(at(&tmp))?;
    std::fs::rename(&tmp, path).map_err(at(path))?;
    fsync_dir(directory_of(path)).map_err(at(path))?;
    let checksum_path = if algorithm == ChecksumAlgorithm::None {
        None
    } else {
        Some(write_checksum_file(path, algorithm, &lines, mode)?)
    };
    Ok(WrittenFile {
        path: path.to_path_buf(),
        checksum_path,
        bytes,
    })
}

/// Removes what an interrupted write left under the temporary name.
pub fn remove_partial(path: &Path) {
    let tmp = temp_path(path);
    match std::fs::symlink_metadata(&tmp) {
        Ok(meta) if meta.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(&tmp);
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streamed_files_land_with_mode_and_checksum() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a b_stamp.dump");
        let written = write_bytes(
            &path,
            b"abc",
            ChecksumAlgorithm::Sha256,
            FileMode::Chmod(0o640),
        )
        .await
        .unwrap();
        assert_eq!(written.bytes, 3);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o640
        );
        let sums = std::fs::read_to_string(tmp.path().join("a b_stamp.dump.sha256")).unwrap();
        assert_eq!(
            sums,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  a b_stamp.dump\n"
        );
        assert!(!temp_path(&path).exists());
        // Never overwrites a leftover temp file silently.
        std::fs::write(temp_path(&tmp.path().join("x")), b"old").unwrap();
        assert!(write_bytes(
            &tmp.path().join("x"),
            b"new",
            ChecksumAlgorithm::None,
            FileMode::Unchanged
        )
        .await
        .is_err());
    }

    #[tokio::test]
    async fn streams_of_many_batches_land_whole_with_their_digest() {
        let tmp = tempfile::tempdir().unwrap();
        // More than the write-back window and not a multiple of the batch size.
        let data: Vec<u8> = (0..(FLUSH_AFTER_BYTES as usize + 3 * crate::pump::BATCH_BYTES + 4321))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let path = tmp.path().join("big.dump");
        let mut seen = Vec::new();
        let written = write_streamed(
            &path,
            Source::bytes(data.clone()),
            ChecksumAlgorithm::Sha256,
            FileMode::Unchanged,
            |n| seen.push(n),
        )
        .await
        .unwrap();
        assert_eq!(written.bytes, data.len() as u64);
        assert_eq!(seen.last(), Some(&(data.len() as u64)));
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert!(std::fs::read(&path).unwrap() == data);
        let sums = std::fs::read_to_string(written.checksum_path.unwrap()).unwrap();
        let hex = hash_file(&path, ChecksumAlgorithm::Sha256)
            .unwrap()
            .unwrap();
        assert_eq!(sums, format!("{hex}  big.dump\n"));
        // An empty stream makes an empty file.
        let empty = tmp.path().join("empty.sql");
        let written = write_bytes(&empty, b"", ChecksumAlgorithm::None, FileMode::Unchanged)
            .await
            .unwrap();
        assert_eq!((written.bytes, written.checksum_path), (0, None));
        assert!(empty.exists());
    }

    #[test]
    fn directory_dumps_list_every_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("db_s.d");
        std::fs::create_dir(temp_path(&path)).unwrap();
        std::fs::write(temp_path(&path).join("toc.dat"), b"toc").unwrap();
        std::fs::write(temp_path(&path).join("3001.dat.gz"), b"data").unwrap();
        let written =
            finish_directory(&path, ChecksumAlgorithm::Sha1, FileMode::Chmod(0o600)).unwrap();
        assert_eq!(written.bytes, 7);
        let sums = std::fs::read_to_string(written.checksum_path.unwrap()).unwrap();
        let names: Vec<&str> = sums
            .lines()
            .map(|l| l.split_once("  ").unwrap().1)
            .collect();
        assert_eq!(names, ["db_s.d/3001.dat.gz", "db_s.d/toc.dat"]);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}
