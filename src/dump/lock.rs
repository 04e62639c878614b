//! The per-database lock: an exclusive `flock` on `<dir>/<db>.lock`, held while the database is
//! dumped, so two runs never write the same database at once.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The database could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another pgback holds `<db>.lock`.
    #[error("{0} is locked by another pgback run")]
    Held(PathBuf),
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The lock of one database; released when dropped.
#[derive(Debug)]
pub struct DatabaseLock {
    _flock: Flock<File>,
}

/// Takes the lock at `path` (created 0600 when missing) without waiting.
pub fn lock_database(path: &Path) -> Result<DatabaseLock, LockError> {
    let io_error = |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io_error)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(flock) => Ok(DatabaseLock { _flock: flock }),
        Err((_, Errno::EWOULDBLOCK)) => Err(LockError::Held(path.to_path_buf())),
        Err((_, errno)) => Err(io_error(errno.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.lock");
        let first = lock_database(&path).unwrap();
        let second = lock_database(&path).unwrap_err();
        assert_eq!(
            second.to_string(),
            format!("{} is locked by another pgback run", path.display())
        );
        drop(first);
        lock_database(&path).unwrap();
        let missing = lock_database(&dir.path().join("no/such/dir.lock")).unwrap_err();
        assert!(matches!(missing, LockError::Io { .. }), "{missing:?}");
    }
}
