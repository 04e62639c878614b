//! The local side of transfers: files read part by part for uploads, and downloads written to
//! a temporary name that is synced and renamed into place only when complete.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};

use super::types::Fault;

/// Opens `path` for an upload, with its size.
pub(crate) async fn open_source(path: &Path) -> Result<(tokio::fs::File, u64), Fault> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Fault::local("cannot open", path, e))?;
    let meta = file
        .metadata()
        .await
        .map_err(|e| Fault::local("cannot stat", path, e))?;
    if !meta.is_file() {
        return Err(Fault::new(
            super::error::CauseKind::LocalFile,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok((file, meta.len()))
}

/// Reads up to `size` bytes: fewer only at the end of the file.
pub(crate) async fn read_part(
    reader: &mut (impl AsyncRead + Unpin),
    size: usize,
    path: &Path,
) -> Result<Bytes, Fault> {
    let mut buf = BytesMut::with_capacity(size);
    while buf.len() < size {
        // read_buf fills the spare capacity without zeroing it first.
        let n = reader
            .read_buf(&mut buf)
            .await
            .map_err(|e| Fault::local("cannot read", path, e))?;
        if n == 0 {
            break;
        }
    }
    Ok(buf.freeze())
}

/// A download in progress: `.<name>.part-<pid>` beside the destination, removed unless
/// [`PartialFile::commit`] renames it into place.
pub(crate) struct PartialFile {
    temp: TempName,
    destination: PathBuf,
    file: tokio::fs::File,
}

/// Removes the temporary file when dropped, unless disarmed.
struct TempName(Option<PathBuf>);

impl TempName {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }
}

impl Drop for TempName {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl PartialFile {
    /// Creates the temporary file (mode 0600: dumps are private until the caller says otherwise).
    pub(crate) async fn create(destination: &Path) -> Result<PartialFile, Fault> {
        let name = destination
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| {
                Fault::new(
                    super::error::CauseKind::LocalFile,
                    format!("{} names no file", destination.display()),
                )
            })?;
        let temp = destination.with_file_name(format!(".{name}.part-{}", std::process::id()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .await
            .map_err(|e| Fault::local("cannot create", &temp, e))?;
        Ok(PartialFile {
            temp: TempName(Some(temp)),
            destination: destination.to_path_buf(),
            file,
        })
    }

    /// Writes `bytes`.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> Result<(), Fault> {
        let PartialFile { temp, file, .. } = self;
        file.write_all(bytes)
            .await
            .map_err(|e| Fault::local("cannot write", temp.path(), e))
    }

    /// Syncs the data, renames the file into place and syncs the directory.
    pub(crate) async fn commit(self) -> Result<(), Fault> {
        let PartialFile {
            mut temp,
            destination,
            mut file,
        } = self;
        file.flush()
            .await
            .map_err(|e| Fault::local("cannot write", temp.path(), e))?;
        file.sync_all()
            .await
            .map_err(|e| Fault::local("cannot sync", temp.path(), e))?;
        drop(file);
        tokio::fs::rename(temp.path(), &destination)
            .await
            .map_err(|e| Fault::local("cannot rename into", &destination, e))?;
        temp.0 = None;
        if let Some(dir) = destination.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(dir) = tokio::fs::File::open(dir).await {
                // Best effort: some file systems refuse to sync a directory.
                let _ = dir.sync_all().await;
            }
        }
        Ok(())
    }
}
