//! What a state-table row holds: the states, the decoded row, and the rows pgpre and pgpost
//! never write ([`InvalidRow`]).

use std::fmt;
use std::str::FromStr;

use crate::server::quote_literal;

/// Where a backup is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupState {
    /// Backup mode is on and the co-process holds the session.
    Running,
    /// `pgpost` asked the co-process to stop.
    Done,
    /// The stop function returned; `backup_label` is stored.
    Complete,
    /// The backup failed; `error` says why.
    Failed,
}

impl BackupState {
    /// The enum label in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupState::Running => "running",
            BackupState::Done => "done",
            BackupState::Complete => "complete",
            BackupState::Failed => "failed",
        }
    }

    /// Whether the backup has ended, one way or the other.
    pub fn is_final(self) -> bool {
        matches!(self, BackupState::Complete | BackupState::Failed)
    }
}

impl fmt::Display for BackupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackupState {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "running" => Ok(BackupState::Running),
            "done" => Ok(BackupState::Done),
            "complete" => Ok(BackupState::Complete),
            "failed" => Ok(BackupState::Failed),
            other => Err(format!("unknown backup state {other:?}")),
        }
    }
}

/// The row of one backup, as read by [`super::table::read_row`] and [`super::table::list`].
#[derive(Clone, Debug, PartialEq)]
pub struct BackupRow {
    /// The backup's name.
    pub name: String,
    /// Current state.
    pub state: BackupState,
    /// Backend pid of the session holding backup mode.
    pub pid: Option<i32>,
    /// That backend's start time, so a reused pid is never mistaken for it.
    pub backend_start: Option<String>,
    /// The label given to the start function.
    pub label: Option<String>,
    /// LSN returned by the start function.
    pub start_lsn: Option<String>,
    /// LSN returned by the stop function.
    pub stop_lsn: Option<String>,
    /// When the backup started.
    pub started_at: Option<String>,
    /// When it completed or failed.
    pub finished_at: Option<String>,
    /// The `backup_label` file's contents, once complete.
    pub backup_label: Option<String>,
    /// The `tablespace_map` file's contents, once complete.
    pub tablespace_map: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// The archive check of a complete backup: `passed`, `failed`, `unchecked`, `off`
    /// (NULL before completion, and in rows of older versions).
    pub wal_archived: Option<String>,
    /// Whether the holding backend still exists (same pid and start time).
    pub holder_alive: bool,
    /// What the holding backend runs now, for "waiting for WAL archiving" reports.
    pub holder_query: Option<String>,
}

/// A row that pgpre and pgpost never write: a NULL where a value must be, a state this
/// version does not know, or a complete backup without its `backup_label`.
#[derive(Debug, thiserror::Error)]
#[error("the state table {table} holds an unusable row for backup {name:?}: {problem}")]
pub struct InvalidRow {
    /// The table, for the message.
    pub table: String,
    /// The backup name of the row.
    pub name: String,
    /// What is wrong with it.
    pub problem: RowProblem,
}

/// What is wrong with an [`InvalidRow`].
#[derive(Clone, Debug, thiserror::Error)]
pub enum RowProblem {
    /// A column that is never NULL is.
    #[error("column {0} is NULL")]
    Null(&'static str),
    /// A `state` outside running, done, complete, failed.
    #[error("unknown state {0:?} (known: running, done, complete, failed)")]
    UnknownState(String),
    /// A column of an unexpected type.
    #[error("column {column}: {message}")]
    Column {
        /// Its name.
        column: &'static str,
        /// The decoding error.
        message: String,
    },
    /// A `complete` row whose `backup_label` is NULL or empty.
    #[error("column backup_label is NULL in a complete backup, and without it the copy cannot be restored")]
    NoBackupLabel,
}

impl InvalidRow {
    /// What the user can do about it.
    pub fn hint(&self) -> String {
        match self.problem {
            RowProblem::NoBackupLabel => {
                "take a new backup (pgpre, snapshot, pgpost): this one cannot be restored".into()
            }
            _ => format!(
                "someone changed the row by hand: set its state to running, done, complete or \
                 failed, or delete it (DELETE FROM {} WHERE name = {})",
                self.table,
                quote_literal(&self.name)
            ),
        }
    }
}

impl BackupRow {
    /// The `backup_label` of a complete backup; an error when it is missing.
    pub fn complete_label(&self, table: &str) -> Result<&str, InvalidRow> {
        match self.backup_label.as_deref() {
            Some(label) if !label.is_empty() => Ok(label),
            _ => Err(InvalidRow {
                table: table.to_string(),
                name: self.name.clone(),
                problem: RowProblem::NoBackupLabel,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for state in [
            BackupState::Running,
            BackupState::Done,
            BackupState::Complete,
            BackupState::Failed,
        ] {
            assert_eq!(state.as_str().parse::<BackupState>(), Ok(state));
        }
        assert!("paused".parse::<BackupState>().is_err());
        assert!(BackupState::Failed.is_final() && !BackupState::Done.is_final());
    }

    #[test]
    fn invalid_rows_name_the_value_and_the_column() {
        let invalid = |problem| InvalidRow {
            table: "ops.backup".into(),
            name: "vol'1".into(),
            problem,
        };
        assert_eq!(
            invalid(RowProblem::UnknownState("paused".into())).to_string(),
            "the state table ops.backup holds an unusable row for backup \"vol'1\": \
             unknown state \"paused\" (known: running, done, complete, failed)"
        );
        let null = invalid(RowProblem::Null("state"));
        assert!(null.to_string().ends_with(": column state is NULL"));
        assert!(null
            .hint()
            .ends_with("(DELETE FROM ops.backup WHERE name = 'vol''1')"));
    }
}
