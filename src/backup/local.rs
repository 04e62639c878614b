//! The state of a backup taken on a hot standby, which is read-only (and refuses LISTEN): one
//! JSON record per backup name in a private local directory, and the socket its co-process
//! serves for `pgpost`.
//!
//! Layout: `<state_dir>/<system identifier>.<port>/<name>.json` and `<name>.sock`, so that two
//! standbys on one host (or a standby and its primary) never share a record. Directories are
//! owner-only (0700), records 0600, written whole and renamed into place.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::BackupError;
use super::row::{BackupRow, BackupState};

/// The default state directory: `$XDG_RUNTIME_DIR/safe-backup`, else `/run/safe-backup`.
pub fn default_state_dir(xdg_runtime_dir: Option<&std::ffi::OsStr>) -> PathBuf {
    match xdg_runtime_dir {
        Some(dir) if !dir.is_empty() => Path::new(dir).join("safe-backup"),
        _ => PathBuf::from("/run/safe-backup"),
    }
}

/// The local state of one backup name on one standby.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalState {
    /// `<state_dir>/<system identifier>.<port>`.
    dir: PathBuf,
    /// The backup name.
    name: String,
}

/// What the record of one backup holds: a state-table row's columns, the co-process that
/// holds it (an OS process here, not a backend), and the timelines.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LocalRecord {
    /// The backup name.
    pub name: String,
    /// running, done, complete or failed.
    pub state: String,
    /// The co-process's process id.
    pub pid: Option<i32>,
    /// Its start time (clock ticks since boot, from `/proc`), so a reused pid is never taken
    /// for it.
    pub process_start: Option<String>,
    /// The backend of its session on the standby.
    pub backend_pid: Option<i32>,
    /// The label given to the start function.
    pub label: Option<String>,
    /// The start function's LSN.
    pub start_lsn: Option<String>,
    /// The stop function's LSN (the standby's minimum recovery point).
    pub stop_lsn: Option<String>,
    /// The timeline the backup started on.
    pub start_timeline: Option<u32>,
    /// The timeline it stopped on.
    pub stop_timeline: Option<u32>,
    /// When it started (the server's clock).
    pub started_at: Option<String>,
    /// When it completed or failed.
    pub finished_at: Option<String>,
    /// The `backup_label` file, once complete.
    pub backup_label: Option<String>,
    /// The `tablespace_map` file, once complete.
    pub tablespace_map: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// The archive check: passed, failed, unchecked, off.
    pub wal_archived: Option<String>,
}

impl LocalRecord {
    /// The record as a state-table row, with the liveness of its co-process.
    pub fn to_row(&self) -> Result<BackupRow, BackupError> {
        let state: BackupState = self.state.parse().map_err(|problem| {
            BackupError::System(format!(
                "the local state of backup {:?} is unusable: {problem}",
                self.name
            ))
        })?;
        Ok(BackupRow {
            name: self.name.clone(),
            state,
            pid: self.pid,
            backend_start: self.process_start.clone(),
            label: self.label.clone(),
            start_lsn: self.start_lsn.clone(),
            stop_lsn: self.stop_lsn.clone(),
            started_at: self.started_at.clone(),
            finished_at: self.finished_at.clone(),
            backup_label: self.backup_label.clone(),
            tablespace_map: self.tablespace_map.clone(),
            error: self.error.clone(),
            wal_archived: self.wal_archived.clone(),
            holder_alive: self.holder_alive(),
            holder_query: None,
        })
    }

    /// Whether the co-process that holds this backup still runs (same pid and start time).
    pub fn holder_alive(&self) -> bool {
        match (self.pid, &self.process_start) {
            (Some(pid), Some(start)) => process_start(pid).as_deref() == Some(start.as_str()),
            _ => false,
        }
    }

    /// Whether the backup has ended, one way or the other (an unknown state has not).
    pub fn is_final(&self) -> bool {
        self.state
            .parse::<BackupState>()
            .is_ok_and(BackupState::is_final)
    }
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`), if it runs (a zombie,
/// dead but not yet reaped, does not).
pub fn process_start(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command (field 2) may hold spaces and parentheses: count from its last ')'.
    let (_, rest) = stat.rsplit_once(") ")?;
    let mut fields = rest.split(' ');
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18).map(str::to_string)
}

impl LocalState {
    /// The state of backup `name` on the server with this system identifier and port.
    pub fn new(state_dir: &Path, system_identifier: &str, port: &str, name: &str) -> LocalState {
        LocalState {
            dir: state_dir.join(format!("{system_identifier}.{port}")),
            name: name.to_string(),
        }
    }

    /// The server's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The record's file.
    pub fn record_path(&self) -> PathBuf {
        self.dir.join(format!("{}.json", self.name))
    }

    /// The socket the co-process serves while it holds the backup.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.join(format!("{}.sock", self.name))
    }

    /// Creates the state directory and the server's directory (0700) when missing, and
    /// refuses one that another user owns or others may read.
    pub fn ensure_dir(&self) -> Result<(), BackupError> {
        let output = |path: &Path, source| BackupError::Output {
            path: path.to_path_buf(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|source| output(&self.dir, source))?;
        private_dir(&self.dir)
    }

    /// Reads the record; `None` when there is none.
    pub fn read(&self) -> Result<Option<LocalRecord>, BackupError> {
        read_record(&self.record_path())
    }

    /// Writes the record whole: a temporary file (0600), then a rename.
    pub fn write(&self, record: &LocalRecord) -> Result<(), BackupError> {
        let path = self.record_path();
        let temporary = self.dir.join(format!(".{}.json.tmp", self.name));
        let failed = |source| BackupError::Output {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_string_pretty(record)
            .map_err(|e| BackupError::System(format!("cannot encode the local state: {e}")))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(failed)?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(failed)?;
        std::fs::rename(&temporary, &path).map_err(failed)
    }

    /// Reads the record, lets `change` edit it, writes it back; Ok(false) when `change`
    /// declined (returned false) or there is no record.
    pub fn update(
        &self,
        change: impl FnOnce(&mut LocalRecord) -> bool,
    ) -> Result<bool, BackupError> {
        let Some(mut record) = self.read()? else {
            return Ok(false);
        };
        if !change(&mut record) {
            return Ok(false);
        }
        self.write(&record)?;
        Ok(true)
    }

    /// Every record of this server's directory, by name.
    pub fn list(&self) -> Result<Vec<LocalRecord>, BackupError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(BackupError::Output {
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        let mut records = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let is_record = path.extension().is_some_and(|ext| ext == "json")
                && !entry.file_name().to_string_lossy().starts_with('.');
            if is_record {
                if let Some(record) = read_record(&path)? {
                    records.push(record);
                }
            }
        }
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(records)
    }
}

fn read_record(path: &Path) -> Result<Option<LocalRecord>, BackupError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(BackupError::Output {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    serde_json::from_str(&text).map(Some).map_err(|error| {
        BackupError::System(format!(
            "the local state {} is unusable: {error}; delete it to start afresh",
            path.display()
        ))
    })
}

/// Refuses a directory another user owns or that group or others may use.
fn private_dir(dir: &Path) -> Result<(), BackupError> {
    let metadata = std::fs::metadata(dir).map_err(|source| BackupError::Output {
        path: dir.to_path_buf(),
        source,
    })?;
    let mode = metadata.permissions().mode() & 0o777;
    let ours = metadata.uid() == nix::unistd::geteuid().as_raw();
    if !ours || mode & 0o077 != 0 {
        return Err(BackupError::Output {
            path: dir.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "the state directory must be owned by this user and private (mode 0700); \
                     it is mode {mode:o}{}",
                    if ours {
                        ""
                    } else {
                        " and owned by another user"
                    }
                ),
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_dir_follows_xdg_runtime_dir() {
        assert_eq!(
            default_state_dir(Some("/run/user/1000".as_ref())),
            PathBuf::from("/run/user/1000/safe-backup")
        );
        assert_eq!(
            default_state_dir(Some("".as_ref())),
            PathBuf::from("/run/safe-backup")
        );
        assert_eq!(default_state_dir(None), PathBuf::from("/run/safe-backup"));
    }

    #[test]
    fn records_round_trip_privately_and_name_their_holder() {
        let base = tempfile::tempdir().unwrap();
        let state = LocalState::new(base.path(), "7000", "5433", "vol-1");
        assert_eq!(state.read().unwrap(), None);
        state.ensure_dir().unwrap();
        let mode = std::fs::metadata(state.dir()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let me = std::process::id() as i32;
        let record = LocalRecord {
            name: "vol-1".into(),
            state: "running".into(),
            pid: Some(me),
            process_start: process_start(me),
            start_timeline: Some(2),
            ..LocalRecord::default()
        };
        state.write(&record).unwrap();
        let file = std::fs::metadata(state.record_path()).unwrap();
        assert_eq!(file.permissions().mode() & 0o777, 0o600);
        assert_eq!(state.read().unwrap().as_ref(), Some(&record));
        let row = record.to_row().unwrap();
        assert!(row.holder_alive && row.state == BackupState::Running);
        let stale = LocalRecord {
            process_start: Some("1".into()),
            ..record.clone()
        };
        assert!(!stale.holder_alive(), "a reused pid is not the holder");
        assert!(state
            .update(|r| {
                r.state = "failed".into();
                true
            })
            .unwrap());
        assert!(state.read().unwrap().unwrap().is_final());
        assert_eq!(state.list().unwrap().len(), 1);
        std::fs::set_permissions(state.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let refused = state.ensure_dir().unwrap_err();
        assert!(refused.to_string().contains("mode 0700"), "{refused}");
    }
}
