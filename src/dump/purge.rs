//! Purge: which old backups of a database to delete (pg_back's semantics, decided by a pure
//! function), deleting them, and what a successful run purges.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};

use crate::config::DumpConfig;
use crate::naming;
use crate::values::{Keep, PurgeInterval};

/// One backup of a database: every file sharing a stamp (dump, checksum, createdb.sql, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupGroup {
    /// The stamp as written in the names.
    pub stamp: String,
    /// When the backup was taken, read from the stamp.
    pub taken_at: DateTime<FixedOffset>,
    /// The directory entries of this backup.
    pub names: Vec<String>,
}

/// Groups the entries of a directory that belong to `dbname` by stamp, newest first.
pub fn group_backups<'a>(
    names: impl IntoIterator<Item = &'a str>,
    dbname: &str,
) -> Vec<BackupGroup> {
    let mut groups: BTreeMap<String, BackupGroup> = BTreeMap::new();
    for name in names {
        let Some((stamp, _ext)) = naming::split_name(name, dbname) else {
            continue;
        };
        let Some(taken_at) = naming::parse_stamp(stamp) else {
            continue;
        };
        groups
            .entry(stamp.to_string())
            .or_insert_with(|| BackupGroup {
                stamp: stamp.to_string(),
                taken_at,
                names: Vec::new(),
            })
            .names
            .push(name.to_string());
    }
    let mut groups: Vec<BackupGroup> = groups.into_values().collect();
    groups.sort_by(|a, b| {
        b.taken_at
            .cmp(&a.taken_at)
            .then_with(|| b.stamp.cmp(&a.stamp))
    });
    for group in &mut groups {
        group.names.sort();
    }
    groups
}

/// The groups to delete: past the newest `keep`, those taken before `limit`; never a group
/// whose stamp is in `protected` (the run that is purging), whatever the settings say.
pub fn select_purge<'g>(
    groups: &'g [BackupGroup],
    keep: Keep,
    limit: DateTime<FixedOffset>,
    protected: &[String],
) -> Vec<&'g BackupGroup> {
    let skip = match keep {
        Keep::All => return Vec::new(),
        Keep::Newest(n) => n,
    };
    groups
        .iter()
        .skip(skip)
        .filter(|group| group.taken_at < limit && !protected.contains(&group.stamp))
        .collect()
}

/// A file or directory purge could not delete.
#[derive(Debug, thiserror::Error)]
#[error("could not purge {path}: {source}")]
pub struct PurgeError {
    /// What could not be listed or removed.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// Deletes the old backups of `dbname` in `dir`; returns the removed paths. A file that cannot
/// be removed is reported after the others were tried.
pub fn purge_dir(
    dir: &Path,
    dbname: &str,
    keep: Keep,
    limit: DateTime<FixedOffset>,
    protected: &[String],
) -> Result<Vec<PathBuf>, Vec<PurgeError>> {
    let entries = std::fs::read_dir(dir).map_err(|source| {
        vec![PurgeError {
            path: dir.to_path_buf(),
            source,
        }]
    })?;
    let names: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    let groups = group_backups(names.iter().map(String::as_str), dbname);
    let mut removed = Vec::new();
    let mut errors = Vec::new();
    for group in select_purge(&groups, keep, limit, protected) {
        for name in &group.names {
            let path = dir.join(name);
            let result = match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path),
                Ok(_) => std::fs::remove_file(&path),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => removed.push(path),
                Err(source) => errors.push(PurgeError { path, source }),
            }
        }
    }
    if errors.is_empty() {
        Ok(removed)
    } else {
        Err(errors)
    }
}

/// What one purge works on: the files of one database (or server-level file prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeTarget {
    /// The database name or server-level prefix (`pg_globals`...).
    pub name: String,
    /// Newest backups kept whatever their age.
    pub keep: Keep,
    /// Age past which the others go.
    pub older_than: PurgeInterval,
}

/// What a successful run purges: each database it dumped, by its own settings, and unless
/// `dump_only`, the server-level files by the global ones.
pub fn purge_targets<'a>(
    dump: &DumpConfig,
    databases: impl IntoIterator<Item = &'a str>,
) -> Vec<PurgeTarget> {
    let mut targets: Vec<PurgeTarget> = databases
        .into_iter()
        .map(|name| {
            let settings = dump.for_database(name);
            PurgeTarget {
                name: name.to_string(),
                keep: settings.purge_min_keep,
                older_than: settings.purge_older_than,
            }
        })
        .collect();
    if !dump.dump_only {
        targets.extend(naming::SERVER_FILES.iter().map(|prefix| PurgeTarget {
            name: prefix.to_string(),
            keep: dump.purge_min_keep,
            older_than: dump.purge_older_than,
        }));
    }
    targets
}

/// Purges every target in its directory, never touching the stamps in `protected` (the run's
/// own); what is removed is logged, what cannot be is a warning.
pub fn purge(dump: &DumpConfig, targets: &[PurgeTarget], protected: &[String]) {
    let base = Path::new(&dump.backup_directory);
    for target in targets {
        let limit = naming::now()
            - chrono::Duration::from_std(target.older_than.0).unwrap_or(chrono::Duration::MAX);
        let dir = naming::backup_dir(base, &target.name);
        match purge_dir(&dir, &target.name, target.keep, limit, protected) {
            Ok(removed) => {
                for path in removed {
                    tracing::info!("purged {}", path.display());
                }
            }
            Err(errors) => {
                for e in errors {
                    tracing::warn!("{e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::TimestampFormat;
    use chrono::Duration;

    fn three_dumps(now: DateTime<FixedOffset>) -> Vec<String> {
        let mut names = Vec::new();
        for hours in 1..=3 {
            let stamp =
                naming::format_stamp(TimestampFormat::Rfc3339, &(now - Duration::hours(hours)));
            names.push(format!("db_{stamp}.dump"));
            names.push(format!("db_{stamp}.dump.sha256"));
        }
        names.push("db.lock".into());
        names.push(format!(
            "db_x_{}.dump",
            naming::format_stamp(TimestampFormat::Rfc3339, &(now - Duration::hours(9)))
        ));
        names
    }

    #[test]
    fn facts_vectors() {
        let now = naming::now();
        let names = three_dumps(now);
        let groups = group_backups(names.iter().map(String::as_str), "db");
        assert_eq!(groups.len(), 3);
        assert!(groups.iter().all(|g| g.names.len() == 2));
        let limit = now - Duration::minutes(90);
        let left = |keep| groups.len() - select_purge(&groups, keep, limit, &[]).len();
        assert_eq!(left(Keep::Newest(0)), 1);
        assert_eq!(left(Keep::Newest(1)), 1);
        assert_eq!(left(Keep::Newest(2)), 2);
        assert_eq!(left(Keep::Newest(3)), 3);
        assert_eq!(left(Keep::All), 3);
        // The oldest go first.
        let purged = select_purge(&groups, Keep::Newest(0), limit, &[]);
        assert_eq!(purged[0].stamp, groups[1].stamp);
    }

    #[test]
    fn the_running_backup_is_never_purged() {
        let now = naming::now();
        let names = three_dumps(now);
        let groups = group_backups(names.iter().map(String::as_str), "db");
        let newest = groups[0].stamp.clone();
        assert_eq!(select_purge(&groups, Keep::Newest(0), now, &[]).len(), 3);
        assert_eq!(
            select_purge(&groups, Keep::Newest(0), now, &[newest]).len(),
            2
        );
    }

    #[test]
    fn legacy_and_rfc3339_stamps_mix() {
        let names = [
            "db_2020-01-01_00-00-00.dump",
            "db_2021-01-01T00:00:00Z.dump",
        ];
        let groups = group_backups(names, "db");
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].stamp, "2021-01-01T00:00:00Z");
    }

    #[test]
    fn databases_by_their_settings_then_server_files() {
        let mut dump: DumpConfig = toml::from_str(
            "purge_min_keep = 2\n[databases.app]\npurge_min_keep = \"all\"\npurge_older_than = \"1h\"",
        )
        .unwrap();
        let targets = purge_targets(&dump, ["app", "other"]);
        let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "app",
                "other",
                "pg_globals",
                "pg_settings",
                "hba_file",
                "ident_file"
            ]
        );
        assert_eq!(targets[0].keep, Keep::All);
        assert_eq!(
            targets[0].older_than.0,
            std::time::Duration::from_secs(3600)
        );
        assert_eq!(targets[1].keep, Keep::Newest(2));
        assert_eq!(targets[5].older_than, PurgeInterval::default());
        dump.dump_only = true;
        assert_eq!(purge_targets(&dump, ["app"]).len(), 1);
    }

    #[test]
    fn purge_dir_removes_files_and_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let now = naming::now();
        let old = naming::format_stamp(TimestampFormat::Rfc3339, &(now - Duration::days(40)));
        let new = naming::format_stamp(TimestampFormat::Rfc3339, &now);
        std::fs::create_dir(tmp.path().join(format!("db_{old}.d"))).unwrap();
        std::fs::write(tmp.path().join(format!("db_{old}.d/toc.dat")), b"x").unwrap();
        std::fs::write(tmp.path().join(format!("db_{old}.d.sha256")), b"x").unwrap();
        std::fs::write(tmp.path().join(format!("db_{new}.dump")), b"x").unwrap();
        let removed = purge_dir(
            tmp.path(),
            "db",
            Keep::Newest(0),
            now - Duration::days(30),
            std::slice::from_ref(&new),
        )
        .unwrap();
        assert_eq!(removed.len(), 2);
        assert!(tmp.path().join(format!("db_{new}.dump")).exists());
        assert!(!tmp.path().join(format!("db_{old}.d")).exists());
    }
}
