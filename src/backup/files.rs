//! Writing `backup_label` and `tablespace_map`: mode 0600, temp name, fsync, rename, fsync the directory.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::error::BackupError;
use crate::files::{self, FileOptions};

fn output_error(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Output {
        path: path.to_path_buf(),
        source,
    }
}

/// Checks `dir` before anything is stopped: creates it (0700) when missing and
/// refuses the data directory of a running server.
pub fn prepare_output_dir(dir: &Path) -> Result<(), BackupError> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(output_error(dir))?;
    }
    if !dir.is_dir() {
        return Err(BackupError::Output {
            path: dir.to_path_buf(),
            source: std::io::Error::other("not a directory"),
        });
    }
    if is_live_data_dir(dir) {
        return Err(BackupError::LiveDataDir(dir.to_path_buf()));
    }
    // Find out now, before the backup is stopped, whether we can write here.
    let probe = dir.join(format!(".safe-backup-probe.{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)
        .map_err(output_error(dir))?;
    fs::remove_file(&probe).map_err(output_error(dir))?;
    Ok(())
}

/// A data directory is live when its `postmaster.pid` names this very
/// directory (line 2). A copy made with `cp -a` of a running cluster has the
/// file too, but naming the original: writing the label there is the point.
fn is_live_data_dir(dir: &Path) -> bool {
    let Ok(pid_file) = fs::read_to_string(dir.join("postmaster.pid")) else {
        return false;
    };
    let Some(named) = pid_file.lines().nth(1) else {
        return true;
    };
    match (fs::canonicalize(named), fs::canonicalize(dir)) {
        (Ok(named), Ok(dir)) => named == dir,
        // Cannot tell: be safe.
        _ => true,
    }
}

/// Writes `backup_label` and, when not empty, `tablespace_map` into `dir`.
/// Returns the files written.
pub fn write_backup_files(
    dir: &Path,
    backup_label: &str,
    tablespace_map: Option<&str>,
) -> Result<Vec<PathBuf>, BackupError> {
    let mut written = vec![write_atomically(dir, "backup_label", backup_label)?];
    if let Some(map) = tablespace_map.filter(|map| !map.is_empty()) {
        written.push(write_atomically(dir, "tablespace_map", map)?);
    }
    Ok(written)
}

/// Temp name, 0600, write, fsync, rename (the shared [`crate::files::write_atomically`]),
/// owned like `dir` when run as root: never a half-written file under the final name.
fn write_atomically(dir: &Path, name: &str, contents: &str) -> Result<PathBuf, BackupError> {
    let target = dir.join(name);
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let options = FileOptions {
        mode: None,
        adopt_dir_owner: true,
    };
    files::write_atomically(&target, &temp, contents.as_bytes(), options).map_err(|source| {
        BackupError::Output {
            path: target.clone(),
            source,
        }
    })?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_files_with_mode_0600_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nLABEL: é'\"\n";
        let written = write_backup_files(dir.path(), label, Some("16384 /mnt/ts\n")).unwrap();
        assert_eq!(written.len(), 2);
        assert_eq!(
            fs::read_to_string(dir.path().join("backup_label")).unwrap(),
            label
        );
        let mode = fs::metadata(dir.path().join("tablespace_map"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temp file left"
        );
    }

    #[test]
    fn files_take_the_directory_owner_when_run_as_root() {
        use std::os::unix::fs::MetadataExt;
        assert!(
            nix::unistd::geteuid().is_root(),
            "only root can give files away: run the tests as root, as scripts/test and CI do"
        );
        let dir = tempfile::tempdir().unwrap();
        let nobody = nix::unistd::Uid::from_raw(65534);
        nix::unistd::chown(dir.path(), Some(nobody), None).unwrap();
        write_backup_files(dir.path(), "label", Some("16384 /x\n")).unwrap();
        for name in ["backup_label", "tablespace_map"] {
            assert_eq!(
                fs::metadata(dir.path().join(name)).unwrap().uid(),
                65534,
                "{name}"
            );
        }
    }

    #[test]
    fn empty_tablespace_map_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        write_backup_files(dir.path(), "x", Some("")).unwrap();
        assert!(!dir.path().join("tablespace_map").exists());
    }

    #[test]
    fn live_data_dir_is_refused_but_a_copy_is_not() {
        let live = tempfile::tempdir().unwrap();
        let pid_file = format!("4242\n{}\n1700000000\n5432\n", live.path().display());
        fs::write(live.path().join("postmaster.pid"), &pid_file).unwrap();
        assert!(matches!(
            prepare_output_dir(live.path()),
            Err(BackupError::LiveDataDir(_))
        ));
        let copy = tempfile::tempdir().unwrap();
        fs::write(copy.path().join("postmaster.pid"), &pid_file).unwrap();
        prepare_output_dir(copy.path()).unwrap();
    }

    #[test]
    fn missing_dir_is_created_private() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("a/b");
        prepare_output_dir(&dir).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn unwritable_dir_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        let error = write_backup_files(&missing, "x", None).unwrap_err();
        assert!(error.to_string().contains("backup_label"), "{error}");
    }
}
