//! Reading back a tar backup pgbase wrote (`base.tar[.gz|.lz4|.zst][.age]`, `<oid>.tar...`,
//! `pg_wal.tar...`), for `pgbase --restore` and pgdrill: each archive found whatever its
//! compression and encryption, decrypted and decompressed on the fly into a [`PlainTree`].

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::base::error::BaseError;
use crate::base::output::{create_private_dir, PlainTree};
use crate::compress::{decompressing_reader, Method};
use crate::crypt::{open_decryptor, payload_error, DecryptKey};
use crate::shutdown::Stoppable;

/// The file in `dir` that holds the archive `name`, with whatever compression and encryption.
pub fn find_archive(dir: &Path, name: &str) -> Option<PathBuf> {
    ["", ".gz", ".lz4", ".zst"]
        .iter()
        .flat_map(|compressed| {
            ["", ".age"].map(|sealed| dir.join(format!("{name}{compressed}{sealed}")))
        })
        .find(|path| path.is_file())
}

/// The tablespace archives of a tar backup (`<oid>.tar...`): (oid, file), by oid.
pub fn tablespace_archives(dir: &Path) -> io::Result<Vec<(u32, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some((oid, rest)) = name.split_once('.') else {
            continue;
        };
        let Ok(oid) = oid.parse::<u32>() else {
            continue;
        };
        if rest.starts_with("tar") && !found.iter().any(|(o, _)| *o == oid) {
            if let Some(path) = find_archive(dir, &format!("{oid}.tar")) {
                found.push((oid, path));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Every file of a tar backup a checksum file covers: the archives (`base.tar`, the
/// tablespaces', `pg_wal.tar`) and the manifest, as they are named on disk.
pub fn backup_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = find_archive(dir, "base.tar").into_iter().collect();
    files.extend(tablespace_archives(dir)?.into_iter().map(|(_, path)| path));
    files.extend(find_archive(dir, "pg_wal.tar"));
    files.extend(
        ["backup_manifest", "backup_manifest.age"]
            .iter()
            .map(|name| dir.join(name))
            .filter(|path| path.is_file()),
    );
    Ok(files)
}

/// Streams `archive` through age and the decompressor its name says into `tree`, as the
/// archive `tar_name` (unpacked at `location` when given, else into the tree's directory).
pub fn unpack_archive(
    archive: &Path,
    tar_name: &str,
    key: Option<&DecryptKey>,
    tree: &mut PlainTree,
    location: Option<&str>,
) -> Result<(), String> {
    let file = File::open(archive).map_err(|e| e.to_string())?;
    let mut name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut reader: Box<dyn Read> = match name.strip_suffix(".age") {
        Some(inner) => {
            let key = key.ok_or("encrypted, and no key was given (--cipher-identity)")?;
            let plain = open_decryptor(file, archive, key).map_err(|e| e.to_string())?;
            name = inner.to_owned();
            Box::new(plain)
        }
        None => Box::new(BufReader::new(file)),
    };
    reader =
        decompressing_reader(Method::of_file_name(&name), reader).map_err(|e| e.to_string())?;
    // A SIGINT or SIGTERM ends the unpacking within one read (see shutdown::stop_on_signals).
    let mut reader = Stoppable::new(reader);
    tree.begin(tar_name, location).map_err(|e| e.to_string())?;
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(payload_error(archive, e).to_string()),
        };
        tree.data(&buffer[..n]).map_err(|e| e.to_string())?;
    }
    tree.end().map_err(|e| e.to_string())
}

/// Unpacks a (verified) tar backup into `tree`'s data directory `data_dir`, which exists:
/// `base.tar`; then each `<oid>.tar` into the directory its `pg_tblspc/<oid>` link names
/// (relocated by the tree's `-T` as base.tar was unpacked; new or empty); then `pg_wal.tar`
/// into `pg_wal`. A `-T` whose new directory no tablespace link names is refused.
pub fn unpack_backup(
    backup: &Path,
    data_dir: &Path,
    key: Option<&DecryptKey>,
    tree: &mut PlainTree,
) -> Result<(), BaseError> {
    let bad = |archive: &Path, reason: String| BaseError::Restore {
        backup: backup.display().to_string(),
        reason: format!("{}: {reason}", archive.display()),
    };
    let base = find_archive(backup, "base.tar").ok_or_else(|| BaseError::Restore {
        backup: backup.display().to_string(),
        reason: "it holds no base.tar: not a tar backup of pgbase".to_owned(),
    })?;
    unpack_archive(&base, "base.tar", key, tree, None).map_err(|r| bad(&base, r))?;
    let tablespaces = tablespace_archives(backup).map_err(BaseError::output(backup))?;
    let mut targets = Vec::new();
    for (oid, _) in &tablespaces {
        let link = data_dir.join("pg_tblspc").join(oid.to_string());
        let target = std::fs::read_link(&link)
            .map_err(|e| bad(&base, format!("no tablespace link pg_tblspc/{oid}: {e}")))?;
        if std::fs::read_dir(&target).is_ok_and(|mut entries| entries.next().is_some()) {
            return Err(BaseError::NotEmpty {
                dir: target,
                tablespace: true,
            });
        }
        targets.push(target);
    }
    if let Some((old, _)) = tree
        .mapping()
        .iter()
        .find(|(_, new)| !targets.contains(new))
    {
        return Err(BaseError::Usage(format!(
            "-T maps \"{}\", which is not the location of any tablespace of the backup",
            old.display()
        )));
    }
    for ((oid, archive), target) in tablespaces.iter().zip(&targets) {
        let location = target.display().to_string();
        unpack_archive(archive, &format!("{oid}.tar"), key, tree, Some(&location))
            .map_err(|r| bad(archive, r))?;
    }
    if let Some(wal) = find_archive(backup, "pg_wal.tar") {
        let into = data_dir.join("pg_wal");
        if std::fs::symlink_metadata(&into).is_ok_and(|meta| meta.file_type().is_symlink()) {
            // base.tar's pg_wal is a directory; a link would unpack pg_wal.tar elsewhere.
            return Err(bad(
                &base,
                "its pg_wal is a symbolic link, which is not followed".to_owned(),
            ));
        }
        create_private_dir(&into)?;
        let location = into.display().to_string();
        unpack_archive(&wal, "pg_wal.tar", key, tree, Some(&location)).map_err(|r| bad(&wal, r))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_are_found_whatever_their_packing() {
        let scratch = tempfile::tempdir().unwrap();
        for name in [
            "base.tar.zst.age",
            "16384.tar.zst.age",
            "16384.tar.zst.age.sha256",
        ] {
            std::fs::write(scratch.path().join(name), "").unwrap();
        }
        std::fs::write(scratch.path().join("123.txt"), "").unwrap();
        assert_eq!(
            find_archive(scratch.path(), "base.tar"),
            Some(scratch.path().join("base.tar.zst.age"))
        );
        assert_eq!(find_archive(scratch.path(), "pg_wal.tar"), None);
        assert_eq!(
            tablespace_archives(scratch.path()).unwrap(),
            vec![(16384, scratch.path().join("16384.tar.zst.age"))]
        );
    }
}
