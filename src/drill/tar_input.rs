//! `pgdrill BACKUP_DIR` on what `pgbase -F t` writes (`base.tar[.gz|.lz4|.zst][.age]`,
//! `<oid>.tar...`, `pg_wal.tar...`): the checksum files are verified first, then each archive
//! is decrypted and decompressed on the fly and unpacked (with pgbase's tar reader) into a
//! private staging directory in the work directory, never into the backup. The staged data
//! directory is then drilled as any other, its `pg_wal` as the WAL archive unless one is
//! given, each tablespace read from its staged directory (as `-T RECORDED=STAGED` would say).

use std::fs;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use super::clone::Owner;
use super::error::DrillError;
use super::settings::WalSource;
use crate::base::{
    backup_files, find_archive, tablespace_archives, unpack_archive, PlainTree, INCOMPLETE_MARKER,
};
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
    /// Each tablespace's recorded location (its `pg_tblspc` link or `tablespace_map` line)
    /// and its staged directory, for the drill's `-T`.
    pub tablespace_mappings: Vec<(PathBuf, PathBuf)>,
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
    let tablespaces =
        tablespace_archives(backup).map_err(|source| DrillError::input(backup, source))?;
    let checked = backup_files(backup).map_err(|source| DrillError::input(backup, source))?;
    let verified = verify_all(&checked, false)?;
    notes.push(format!(
        "{} checksum file(s) of the tar backup verified",
        verified
            .iter()
            .map(|v| v.checksum_files.len())
            .sum::<usize>()
    ));
    let key = if checked
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
        tablespace_mappings: Vec::new(),
    };
    let mut tree = PlainTree::new(&data, &[]);
    for name in ARCHIVES {
        let Some(archive) = find_archive(backup, name) else {
            continue;
        };
        let into = if name == "pg_wal.tar" {
            data.join("pg_wal")
        } else {
            data.clone()
        };
        if fs::symlink_metadata(&into).is_ok_and(|meta| meta.file_type().is_symlink()) {
            // base.tar's pg_wal is a directory; a link would unpack pg_wal.tar elsewhere.
            return Err(bad(format!(
                "{}: its pg_wal is a symbolic link, which pgdrill does not follow",
                backup.display()
            )));
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&into)
            .map_err(|source| DrillError::workspace("create", &into, source))?;
        let location = (name == "pg_wal.tar").then(|| into.display().to_string());
        unpack_archive(&archive, name, key.as_ref(), &mut tree, location.as_deref())
            .map_err(|reason| bad(format!("{}: {reason}", archive.display())))?;
    }
    staged.tablespace_mappings = tablespace_locations(&data, &tablespaces).map_err(bad)?;
    for ((oid, archive), (_, into)) in tablespaces.iter().zip(&staged.tablespace_mappings) {
        let tar_name = format!("{oid}.tar");
        let location = into.display().to_string();
        unpack_archive(archive, &tar_name, key.as_ref(), &mut tree, Some(&location))
            .map_err(|reason| bad(format!("{}: {reason}", archive.display())))?;
    }
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

/// Where each tablespace of the staged data directory `data` was recorded (its `pg_tblspc`
/// link, or the `tablespace_map` line, which wins) and where it is staged
/// (`<staging>/tablespaces/<oid>`). Every tablespace must come with its archive and every
/// archive with a tablespace.
fn tablespace_locations(
    data: &Path,
    archives: &[(u32, PathBuf)],
) -> Result<Vec<(PathBuf, PathBuf)>, String> {
    let map = super::prepare::read_map(data, None).map_err(|e| e.to_string())?;
    let staging = data.parent().unwrap_or(data).join("tablespaces");
    let links = data.join("pg_tblspc");
    let mut recorded: Vec<String> = fs::read_dir(&links)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    recorded.extend(map.iter().flatten().map(|entry| entry.oid.clone()));
    recorded.sort();
    recorded.dedup();
    if let Some(oid) = recorded.iter().find(|oid| {
        !archives
            .iter()
            .any(|(archive_oid, _)| archive_oid.to_string() == **oid)
    }) {
        return Err(format!(
            "base.tar has tablespace {oid}, but the backup has no {oid}.tar"
        ));
    }
    archives
        .iter()
        .map(|(oid, archive)| {
            let oid = oid.to_string();
            let from_map = map
                .iter()
                .flatten()
                .find(|entry| entry.oid == oid)
                .map(|entry| entry.path.clone());
            let location = match from_map {
                Some(path) => path,
                None => fs::read_link(links.join(&oid)).map_err(|_| {
                    format!(
                        "{}: base.tar has no tablespace {oid} (no pg_tblspc link, no \
                         tablespace_map line)",
                        archive.display()
                    )
                })?,
            };
            Ok((location, staging.join(oid)))
        })
        .collect()
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
