//! Reading what the drill needs from DATADIR (version, label, map, tablespaces), and turning
//! the clone into one the server recovers from the backup and nothing else: label and map in
//! place, stale files gone, links pointing into the clone, our hba, the recovery settings.

use std::fs;
use std::path::{Path, PathBuf};

use super::clone::{self, Owner};
use super::error::DrillError;
use super::label::{self, BackupLabel, TablespaceEntry};
use super::settings::{self, WalSource};

/// The major version in `DATADIR/PG_VERSION` (`9.6` -> 9).
pub fn read_major(data_dir: &Path) -> Result<u32, DrillError> {
    let path = data_dir.join("PG_VERSION");
    let text = fs::read_to_string(&path).map_err(|e| DrillError::NotDataDirectory {
        path: data_dir.to_path_buf(),
        reason: format!("{}: {e}", path.display()),
    })?;
    text.trim()
        .split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .ok_or_else(|| DrillError::NotDataDirectory {
            path: data_dir.to_path_buf(),
            reason: format!("PG_VERSION holds {:?}", text.trim()),
        })
}

/// The label: `--backup-label`, else `DATADIR/backup_label`; refused when there is none.
pub fn read_label(
    data_dir: &Path,
    given: Option<&Path>,
) -> Result<(String, BackupLabel, PathBuf), DrillError> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None => {
            let inside = data_dir.join("backup_label");
            if !inside.exists() {
                return Err(DrillError::NoBackupLabel {
                    data_dir: data_dir.to_path_buf(),
                });
            }
            inside
        }
    };
    let text = fs::read_to_string(&path).map_err(|e| DrillError::input(&path, e))?;
    let label = BackupLabel::parse(&text).map_err(|reason| DrillError::BadFile {
        path: path.clone(),
        reason: format!("not a backup_label: {reason}"),
    })?;
    Ok((text, label, path))
}

/// The map: `--tablespace-map`, else `DATADIR/tablespace_map` when there is one.
pub fn read_map(
    data_dir: &Path,
    given: Option<&Path>,
) -> Result<Option<Vec<TablespaceEntry>>, DrillError> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None if data_dir.join("tablespace_map").exists() => data_dir.join("tablespace_map"),
        None => return Ok(None),
    };
    let text = fs::read_to_string(&path).map_err(|e| DrillError::input(&path, e))?;
    label::parse_tablespace_map(&text)
        .map(Some)
        .map_err(|reason| DrillError::BadFile { path, reason })
}

/// One tablespace to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tablespace {
    /// Its link name under `pg_tblspc`.
    pub oid: String,
    /// Where the backup says it lived (map, else link).
    pub recorded: PathBuf,
    /// What is cloned: the `-T` new directory, else `recorded`.
    pub source: PathBuf,
}

/// The tablespaces of the backup: links in `DATADIR/pg_tblspc` and lines of the map (the map
/// wins), each mapped through `-T OLD=NEW`. A `-T` that maps nothing, or a tablespace whose
/// directory is missing, is an error; one read from its recorded place gets a note.
pub fn plan_tablespaces(
    data_dir: &Path,
    map: Option<&[TablespaceEntry]>,
    mappings: &[(PathBuf, PathBuf)],
    notes: &mut Vec<String>,
) -> Result<Vec<Tablespace>, DrillError> {
    let links_dir = data_dir.join("pg_tblspc");
    let mut recorded: Vec<(String, PathBuf)> = Vec::new();
    if let Ok(entries) = fs::read_dir(&links_dir) {
        for entry in entries.flatten() {
            let is_link = entry.file_type().is_ok_and(|kind| kind.is_symlink());
            if let (true, Ok(target)) = (is_link, fs::read_link(entry.path())) {
                let oid = entry.file_name().to_string_lossy().into_owned();
                recorded.push((oid, links_dir.join(target)));
            }
        }
    }
    for entry in map.unwrap_or_default() {
        match recorded.iter_mut().find(|(oid, _)| *oid == entry.oid) {
            Some(found) => found.1 = entry.path.clone(),
            None => recorded.push((entry.oid.clone(), entry.path.clone())),
        }
    }
    recorded.sort();
    for (old, _) in mappings {
        if !recorded.iter().any(|(_, path)| path == old) {
            let known: Vec<String> = recorded
                .iter()
                .map(|(_, path)| path.display().to_string())
                .collect();
            return Err(DrillError::Tablespace(format!(
                "-T {}=...: the backup has no tablespace there (its tablespaces: {})",
                old.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
    }
    let mut planned = Vec::new();
    for (oid, path) in recorded {
        let mapped = mappings.iter().find(|(old, _)| *old == path);
        let source = mapped.map_or_else(|| path.clone(), |(_, new)| new.clone());
        if !source.is_dir() {
            return Err(DrillError::Tablespace(format!(
                "tablespace {oid}: {} is not a directory; give its snapshot with -T {}=DIR",
                source.display(),
                path.display()
            )));
        }
        if mapped.is_none() {
            notes.push(format!(
                "tablespace {oid} was read from {} (not written); if that is the live \
                 tablespace, give its snapshot with -T {}=DIR",
                path.display(),
                path.display()
            ));
        }
        planned.push(Tablespace {
            oid,
            recorded: path,
            source,
        });
    }
    Ok(planned)
}

/// What goes into the clone.
pub struct CloneFiles<'a> {
    pub major: u32,
    pub label_text: &'a str,
    /// Whether the backup came with a tablespace map.
    pub has_map: bool,
    /// Tablespace OIDs and their clones.
    pub tablespaces: Vec<(String, PathBuf)>,
    /// Where the WAL comes from.
    pub wal: &'a WalSource,
}

/// Files of the data directory that belong to the server that wrote it, not to the backup.
const STALE: [&str; 8] = [
    "postmaster.pid",
    "postmaster.opts",
    "standby.signal",
    "recovery.signal",
    "recovery.conf",
    "backup_label.old",
    "tablespace_map.old",
    "tablespace_map",
];

/// Prepares the clone at `data` for recovery (see the module doc); returns notes.
pub async fn prepare_clone(
    data: &Path,
    files: &CloneFiles<'_>,
    owner: &Owner,
) -> Result<Vec<String>, DrillError> {
    let mut notes = Vec::new();
    for stale in STALE {
        clone::remove_entry(&data.join(stale))?;
    }
    let wal = data.join(if files.major >= 10 {
        "pg_wal"
    } else {
        "pg_xlog"
    });
    if fs::symlink_metadata(&wal).is_ok_and(|m| m.file_type().is_symlink()) {
        let target = fs::read_link(&wal).unwrap_or_default();
        clone::replace_with_empty_dir(&wal, owner)?;
        notes.push(format!(
            "pg_wal links to {} (not part of the snapshot): the clone starts with an empty \
             pg_wal and takes every segment from the WAL source",
            target.display()
        ));
    }
    let mut skip = Vec::new();
    for (oid, clone_path) in &files.tablespaces {
        let link = data.join("pg_tblspc").join(oid);
        clone::replace_link(&link, clone_path, owner)?;
        skip.push(link);
    }
    notes.extend(clone::materialize_links(data, &skip, owner).await?);
    clone::replace_file(
        &data.join("backup_label"),
        files.label_text.as_bytes(),
        owner,
    )?;
    if files.has_map {
        let entries: Vec<TablespaceEntry> = files
            .tablespaces
            .iter()
            .map(|(oid, path)| TablespaceEntry {
                oid: oid.clone(),
                path: path.clone(),
            })
            .collect();
        let map = label::format_tablespace_map(&entries);
        clone::replace_file(&data.join("tablespace_map"), map.as_bytes(), owner)?;
    }
    clone::replace_file(
        &data.join("pg_hba.conf"),
        settings::HBA_CONF.as_bytes(),
        owner,
    )?;
    clone::replace_file(&data.join("pg_ident.conf"), b"", owner)?;
    let conf = data.join("postgresql.conf");
    if !conf.exists() {
        let text = "# pgdrill: the data directory had no postgresql.conf (its settings live \
                    elsewhere, e.g. /etc/postgresql); defaults apply\n";
        clone::replace_file(&conf, text.as_bytes(), owner)?;
        notes.push("no postgresql.conf in the data directory: the server ran on defaults".into());
    }
    let auto_conf = fs::read_to_string(data.join("postgresql.auto.conf")).unwrap_or_default();
    let restore_command = files.wal.restore_command();
    for (name, contents) in settings::recovery_files(files.major, &restore_command, &auto_conf) {
        clone::replace_file(&data.join(name), contents.as_bytes(), owner)?;
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tablespaces_come_from_links_and_map_through_t() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let live = dir.path().join("live-ts");
        let snap = dir.path().join("snap-ts");
        for path in [&data.join("pg_tblspc"), &live, &snap] {
            fs::create_dir_all(path).unwrap();
        }
        std::os::unix::fs::symlink(&live, data.join("pg_tblspc/16384")).unwrap();
        let mut notes = Vec::new();
        let plan =
            plan_tablespaces(&data, None, &[(live.clone(), snap.clone())], &mut notes).unwrap();
        assert_eq!(
            plan,
            vec![Tablespace {
                oid: "16384".into(),
                recorded: live.clone(),
                source: snap.clone(),
            }]
        );
        assert!(notes.is_empty());
        let plan = plan_tablespaces(&data, None, &[], &mut notes).unwrap();
        assert_eq!(plan[0].source, live);
        assert_eq!(notes.len(), 1, "reading the recorded place is noted");
        let wrong = plan_tablespaces(&data, None, &[(snap.clone(), live.clone())], &mut notes);
        assert!(matches!(wrong, Err(DrillError::Tablespace(_))));
        // The map wins over the link.
        let map = [TablespaceEntry {
            oid: "16384".into(),
            path: dir.path().join("gone"),
        }];
        let missing = plan_tablespaces(&data, Some(&map), &[], &mut notes);
        assert!(matches!(missing, Err(DrillError::Tablespace(m)) if m.contains("gone")));
    }

    #[test]
    fn no_label_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_label(dir.path(), None),
            Err(DrillError::NoBackupLabel { .. })
        ));
        fs::write(dir.path().join("backup_label"), "garbage\n").unwrap();
        assert!(matches!(
            read_label(dir.path(), None),
            Err(DrillError::BadFile { .. })
        ));
    }
}
