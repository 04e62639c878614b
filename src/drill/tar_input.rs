//! `pgdrill BACKUP_DIR` on what `pgbase -F t` writes (`base.tar[.gz|.lz4|.zst][.age]`,
//! `pg_wal.tar...`): the checksum files are verified first, then each archive is decrypted
//! and decompressed on the fly and unpacked (with pgbase's tar reader) into a private staging
//! directory in the work directory, never into the backup. The staged data directory is then
//! drilled as any other, its `pg_wal` as the WAL archive unless one is given.

use std::fs;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use super::clone::Owner;
use super::error::DrillError;
use super::settings::WalSource;
use crate::base::{find_archive, unpack_backup, BaseError, PlainTree, INCOMPLETE_MARKER};
use crate::checksum::verify_all;
use crate::config::{take_passphrase_from_env, EncryptionConfig};

/// The archives pgdrill unpacks, in order: the data directory, then its WAL.
const ARCHIVES: [&str; 2] = ["base.tar", "pg_wal.tar"];

/// Whether `dir` is a tar backup (it holds a `base.tar...`) rather than a data directory.
pub fn is_tar_backup(dir: &Path) -> bool {
    find_archive(dir, "base.tar").is_some()
}

/// What to stage and where.
#[derive(Clone, Debug)]
pub struct StageRequest {
    /// The backup directory; only read.
    pub backup: PathBuf,
    /// The WAL source given (`--wal-archive`, `--restore-command`), if any.
    pub wal: Option<WalSource>,
    /// `--cipher-identity`.
    pub cipher_identity: Option<PathBuf>,
    /// `--work-dir` (else `$TMPDIR`).
    pub work_dir: Option<PathBuf>,
    /// `--keep`: the staging directory stays too.
    pub keep: bool,
}

/// A tar backup unpacked for one drill; dropping it removes the staging directory.
#[derive(Debug)]
pub struct Staged {
    root: PathBuf,
    keep: bool,
    /// The staged data directory.
    pub data_dir: PathBuf,
    /// The WAL source: the one given, else the staged `pg_wal/`.
    pub wal: WalSource,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// Verifies, decrypts, decompresses and unpacks the tar backup `request.data_dir`.
pub fn stage(request: &StageRequest, notes: &mut Vec<String>) -> Result<Staged, DrillError> {
    let backup = &request.backup;
    let bad = |reason: String| DrillError::TarBackup {
        path: backup.clone(),
        reason,
    };
    let names: Vec<String> = fs::read_dir(backup)
        .map_err(|source| DrillError::input(backup, source))?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    if names.iter().any(|n| n == INCOMPLETE_MARKER) {
        return Err(bad(format!(
            "pgbase did not finish this backup ({INCOMPLETE_MARKER} is there): it cannot be restored"
        )));
    }
    if let Some(tablespace) = names.iter().find(|n| {
        n.split('.')
            .next()
            .is_some_and(|oid| oid.parse::<u32>().is_ok())
    }) {
        return Err(bad(format!(
            "it holds the tablespace archive {tablespace}: pgdrill does not unpack tablespaces of a tar backup yet"
        )));
    }
    let archives: Vec<PathBuf> = ARCHIVES
        .iter()
        .filter_map(|name| find_archive(backup, name))
        .collect();
    let mut checked = archives.clone();
    checked.extend(
        ["backup_manifest", "backup_manifest.age"]
            .iter()
            .map(|name| backup.join(name))
            .filter(|path| path.is_file()),
    );
    let verified = verify_all(&checked, false)?;
    notes.push(format!(
        "{} checksum file(s) of the tar backup verified",
        verified
            .iter()
            .map(|v| v.checksum_files.len())
            .sum::<usize>()
    ));
    let key = if archives
        .iter()
        .any(|a| a.extension() == Some("age".as_ref()))
    {
        let mut config = EncryptionConfig::default();
        if let Some(identity) = &request.cipher_identity {
            config.cipher_private_key = identity.display().to_string();
        }
        let passphrase = take_passphrase_from_env().map_err(|e| DrillError::Key(e.into()))?;
        Some(config.decrypt_key(passphrase.as_ref(), None)?)
    } else {
        None
    };
    let owner = Owner::of(backup)?;
    if nix::unistd::geteuid().is_root() && owner.uid == 0 {
        return Err(DrillError::RootOwned {
            path: backup.clone(),
        });
    }
    let parent = request.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let root = parent.join(format!("pgdrill-tar-{}", std::process::id()));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&root)
        .map_err(|source| DrillError::workspace("create", &root, source))?;
    let data = root.join("data");
    let mut staged = Staged {
        root: root.clone(),
        keep: request.keep,
        data_dir: data.clone(),
        wal: WalSource::Archive(data.join("pg_wal")),
    };
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&data)
        .map_err(|source| DrillError::workspace("create", &data, source))?;
    let mut tree = PlainTree::new(&data, &[]);
    unpack_backup(backup, &data, key.as_ref(), &mut tree).map_err(|error| match error {
        BaseError::Restore { reason, .. } => bad(reason),
        other => bad(other.to_string()),
    })?;
    chown_tree(&root, &owner)?;
    match &request.wal {
        Some(wal) => staged.wal = wal.clone(),
        None if find_archive(backup, "pg_wal.tar").is_none() => {
            return Err(bad(
                "it carries no WAL (no pg_wal.tar): give --wal-archive or --restore-command"
                    .to_owned(),
            ))
        }
        None => {}
    }
    Ok(staged)
}

/// Gives everything under `root` to the data directory's owner (when running as root).
fn chown_tree(root: &Path, owner: &Owner) -> Result<(), DrillError> {
    owner.chown(root)?;
    let entries = fs::read_dir(root).map_err(|source| DrillError::input(root, source))?;
    for entry in entries {
        let path = entry
            .map_err(|source| DrillError::input(root, source))?
            .path();
        if path.is_dir() && !path.is_symlink() {
            chown_tree(&path, owner)?;
        } else {
            owner.chown(&path)?;
        }
    }
    Ok(())
}
