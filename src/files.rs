//! Files every pipeline writes the same way: atomically (temporary name, fsync, rename, fsync of
//! the directory), in private directories, and named in messages by their last component.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Creates `dir` and its missing parents, mode 0700.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// How a file written by [`AtomicFile`] is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileOptions {
    /// Permission bits set before the rename; `None` keeps the 0600 it is created with.
    pub mode: Option<u32>,
    /// Run as root (as snapshot hooks often are), give the file the owner of its directory: a
    /// `backup_label` owned by root in a copy owned by `postgres` would stop the restored
    /// server from reading it.
    pub adopt_dir_owner: bool,
}

/// A file written under a temporary name and renamed to its final name only once complete and
/// on disk: a file under its final name is never half-written. Dropped before
/// [`AtomicFile::commit`], it removes its temporary file.
#[derive(Debug)]
pub struct AtomicFile {
    file: File,
    temp: PathBuf,
    target: PathBuf,
    options: FileOptions,
    committed: bool,
}

impl AtomicFile {
    /// Creates `temp`, which must not exist yet, mode 0600; it becomes `target` on commit.
    pub fn create(target: &Path, temp: &Path, options: FileOptions) -> io::Result<AtomicFile> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(temp)?;
        let atomic = AtomicFile {
            file,
            temp: temp.to_path_buf(),
            target: target.to_path_buf(),
            options,
            committed: false,
        };
        if options.adopt_dir_owner {
            adopt_directory_owner(&atomic.file, directory_of(target))?;
        }
        Ok(atomic)
    }

    /// The open temporary file, to write into.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// fsync, chmod, rename to the final name, fsync the directory.
    pub fn commit(mut self) -> io::Result<()> {
        self.file.sync_all()?;
        if let Some(bits) = self.options.mode {
            fs::set_permissions(&self.temp, fs::Permissions::from_mode(bits))?;
        }
        fs::rename(&self.temp, &self.target)?;
        self.committed = true;
        File::open(directory_of(&self.target))?.sync_all()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Writes `contents` into `target` through [`AtomicFile`].
pub fn write_atomically(
    target: &Path,
    temp: &Path,
    contents: &[u8],
    options: FileOptions,
) -> io::Result<()> {
    use std::io::Write;
    let atomic = AtomicFile::create(target, temp, options)?;
    atomic.file().write_all(contents)?;
    atomic.commit()
}

/// The directory holding `path` (`.` for a bare name).
pub fn directory_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Run as root, gives `file` the owner of `dir`; otherwise does nothing.
fn adopt_directory_owner(file: &File, dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let owner = fs::metadata(dir)?;
    std::os::unix::fs::fchown(file, Some(owner.uid()), Some(owner.gid()))
}

/// The name a file is written under until it is complete (then renamed). It keeps the final
/// name as its prefix, so an interrupted run's leftover is grouped with its run by purge.
pub fn temp_path(final_path: &Path) -> PathBuf {
    let mut name = final_path.as_os_str().to_os_string();
    name.push(".partial");
    PathBuf::from(name)
}

/// fsyncs a directory, so that a rename or a new file in it survives a crash.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The last component of `path`, as messages name a file (empty when there is none).
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn atomic_files_appear_complete_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("backup_label");
        let temp = dir.path().join(".backup_label.tmp");
        write_atomically(
            &target,
            &temp,
            b"label",
            FileOptions {
                mode: Some(0o640),
                adopt_dir_owner: false,
            },
        )
        .unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"label");
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o7777, 0o640);
        assert!(!temp.exists());
        // Dropped unfinished: nothing under either name.
        let other = dir.path().join("other");
        drop(AtomicFile::create(&other, &temp, FileOptions::default()).unwrap());
        assert!(!temp.exists() && !other.exists());
        // A temporary name in use is not taken over, nor removed.
        fs::write(&temp, b"someone else's").unwrap();
        assert!(write_atomically(&other, &temp, b"x", FileOptions::default()).is_err());
        assert_eq!(fs::read(&temp).unwrap(), b"someone else's");
        // Default: 0600.
        fs::remove_file(&temp).unwrap();
        write_atomically(&other, &temp, b"x", FileOptions::default()).unwrap();
        assert_eq!(fs::metadata(&other).unwrap().mode() & 0o7777, 0o600);
    }

    #[test]
    fn files_take_the_directory_owner_when_asked_and_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "only root can give files away: run the tests as root, as scripts/test and CI do"
        );
        let dir = tempfile::tempdir().unwrap();
        nix::unistd::chown(dir.path(), Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let options = FileOptions {
            mode: None,
            adopt_dir_owner: true,
        };
        let target = dir.path().join("a");
        write_atomically(&target, &dir.path().join("a.tmp"), b"x", options).unwrap();
        assert_eq!(fs::metadata(&target).unwrap().uid(), 65534);
        let target = dir.path().join("b");
        write_atomically(
            &target,
            &dir.path().join("b.tmp"),
            b"x",
            FileOptions::default(),
        )
        .unwrap();
        assert_eq!(fs::metadata(&target).unwrap().uid(), 0);
    }

    #[test]
    fn private_directories() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("a/b");
        create_private_dir(&dir).unwrap();
        create_private_dir(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(directory_of(Path::new("x")), Path::new("."));
    }

    #[test]
    fn names() {
        assert_eq!(
            temp_path(Path::new("/b/a_s.dump")),
            PathBuf::from("/b/a_s.dump.partial")
        );
        assert_eq!(file_name(Path::new("/b/a_s.dump")), "a_s.dump");
        assert_eq!(file_name(Path::new("/")), "");
    }
}
