//! The state table shared with safe-backup's `pgpre.sh`/`pgpost.sh`, and the SQL that reads and moves it.
//!
//! One row per backup name (`default` unless `--name` says otherwise; the
//! `default` row is safe-backup's `id = 1`) holds the backup in progress; every
//! finished backup is also appended to `<table>_history`. Each state change is followed by a
//! `NOTIFY` on [`StateTable::channel`].

use std::fmt;
use std::str::FromStr;

use crate::server::{quote_ident, quote_literal};

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

/// The row of the backup in progress (or the last one), as read by [`StateTable::read_sql`].
#[derive(Clone, Debug, PartialEq)]
pub struct BackupRow {
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
    /// Whether the holding backend still exists (same pid and start time).
    pub holder_alive: bool,
    /// What the holding backend runs now, for "waiting for WAL archiving" reports.
    pub holder_query: Option<String>,
}

/// Names and SQL of one state table (schema-qualified or on the search_path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateTable {
    schema: Option<String>,
    table: String,
    name: String,
}

/// The columns safe-backup's bash scripts create.
pub const ORIGINAL_COLUMNS: [&str; 5] = ["id", "state", "pid", "backup_label", "tablespace_map"];

/// The columns we add, with their types, in order.
pub const ADDED_COLUMNS: [(&str, &str); 8] = [
    ("label", "text"),
    ("start_lsn", "pg_lsn"),
    ("stop_lsn", "pg_lsn"),
    ("started_at", "timestamptz"),
    ("finished_at", "timestamptz"),
    ("error", "text"),
    ("backend_start", "timestamptz"),
    ("name", "text NOT NULL DEFAULT 'default'"),
];

/// First key of the advisory lock that serializes `pgpre` calls ("safe" in ASCII-ish).
const LOCK_CLASS: i32 = 0x7361_6665;

impl StateTable {
    /// The row `name` of a table named `table` in `schema` (empty: the first
    /// schema on the search_path). `name` must pass [`crate::config::backup::validate_name`].
    pub fn new(schema: &str, table: &str, name: &str) -> StateTable {
        StateTable {
            schema: (!schema.is_empty()).then(|| schema.to_string()),
            table: table.to_string(),
            name: name.to_string(),
        }
    }

    /// The backup name this table handle works on.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `name = '<name>'`, the row selector.
    fn row(&self) -> String {
        format!("name = {}", quote_literal(&self.name))
    }

    fn qualify(&self, name: &str) -> String {
        match &self.schema {
            Some(schema) => format!("{}.{}", quote_ident(schema), quote_ident(name)),
            None => quote_ident(name),
        }
    }

    /// The table, quoted for SQL.
    pub fn table_sql(&self) -> String {
        self.qualify(&self.table)
    }

    /// The history table, quoted for SQL.
    pub fn history_sql(&self) -> String {
        self.qualify(&format!("{}_history", self.table))
    }

    /// The enum type, quoted for SQL (`backup_state` for the default table).
    pub fn type_sql(&self) -> String {
        self.qualify(&format!("{}_state", self.table))
    }

    /// Human-readable name for messages.
    pub fn display_name(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}.{}", self.table),
            None => self.table.clone(),
        }
    }

    /// The LISTEN/NOTIFY channel (a text value for `pg_notify`).
    pub fn channel(&self) -> String {
        let mut channel = format!("safe_backup.{}", self.display_name());
        // Channel names are identifiers: at most 63 bytes.
        while channel.len() > 63 {
            channel.pop();
        }
        channel
    }

    /// `LISTEN` on the channel.
    pub fn listen_sql(&self) -> String {
        format!("LISTEN {}", quote_ident(&self.channel()))
    }

    /// Notifies waiters that the row changed; payload = the new state.
    pub fn notify_sql(&self, state: BackupState) -> String {
        format!(
            "SELECT pg_notify({}, {})",
            quote_literal(&self.channel()),
            quote_literal(state.as_str())
        )
    }

    /// Takes the advisory lock that serializes `pgpre` calls for this backup name.
    pub fn lock_sql(&self) -> String {
        format!(
            "SELECT pg_advisory_lock({LOCK_CLASS}, hashtext({}))",
            quote_literal(&format!("{}/{}", self.display_name(), self.name))
        )
    }

    /// Releases the lock of [`StateTable::lock_sql`].
    pub fn unlock_sql(&self) -> String {
        format!(
            "SELECT pg_advisory_unlock({LOCK_CLASS}, hashtext({}))",
            quote_literal(&format!("{}/{}", self.display_name(), self.name))
        )
    }

    /// Takes the brief table-wide lock around DDL and row creation.
    pub fn table_lock_sql(&self) -> String {
        format!(
            "SELECT pg_advisory_lock({LOCK_CLASS}, hashtext({}))",
            quote_literal(&self.display_name())
        )
    }

    /// Releases the lock of [`StateTable::table_lock_sql`].
    pub fn table_unlock_sql(&self) -> String {
        format!(
            "SELECT pg_advisory_unlock({LOCK_CLASS}, hashtext({}))",
            quote_literal(&self.display_name())
        )
    }

    /// Lists the table's existing columns (no rows: the table does not exist).
    pub fn columns_sql(&self) -> String {
        format!(
            "SELECT attname::text FROM pg_attribute \
             WHERE attrelid = to_regclass({}) AND attnum > 0 AND NOT attisdropped",
            quote_literal(&self.table_sql())
        )
    }

    /// Whether the history table exists (one row, boolean).
    pub fn history_exists_sql(&self) -> String {
        format!(
            "SELECT to_regclass({}) IS NOT NULL",
            quote_literal(&self.history_sql())
        )
    }

    /// Creates the enum type and the table as safe-backup does, plus our columns.
    pub fn create_sql(&self) -> String {
        format!(
            "DO $safe_backup$ BEGIN \
               IF to_regtype({type_text}) IS NULL THEN \
                 CREATE TYPE {type_sql} AS ENUM ('running', 'done', 'complete', 'failed'); \
               END IF; \
             END $safe_backup$; \
             CREATE TABLE IF NOT EXISTS {table} (\
               id integer PRIMARY KEY DEFAULT 1, \
               state {type_sql} NOT NULL, pid integer, backup_label text, tablespace_map text{added}); \
             CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {table} (name)",
            index = quote_ident(&format!("{}_name_key", self.table)),
            type_text = quote_literal(&self.type_sql()),
            type_sql = self.type_sql(),
            table = self.table_sql(),
            added = ADDED_COLUMNS
                .iter()
                .map(|(name, kind)| format!(", {name} {kind}"))
                .collect::<String>(),
        )
    }

    /// Adds the columns missing from an existing (e.g. safe-backup's) table. When
    /// `name` is new, safe-backup's one-row guards (`CHECK (id = 1)`, the unique
    /// index on `((1))`) are dropped so that other names get rows; its row stays,
    /// as the `default` backup with `id = 1`.
    pub fn upgrade_sql(&self, existing: &[String]) -> Option<String> {
        let missing: Vec<String> = ADDED_COLUMNS
            .iter()
            .filter(|(name, _)| !existing.iter().any(|column| column == name))
            .map(|(name, kind)| format!("ADD COLUMN IF NOT EXISTS {name} {kind}"))
            .collect();
        if missing.is_empty() {
            return None;
        }
        let mut sql = format!("ALTER TABLE {} {}", self.table_sql(), missing.join(", "));
        if !existing.iter().any(|column| column == "name") {
            let table = quote_literal(&self.table_sql());
            sql.push_str(&format!(
                "; DO $safe_backup$ DECLARE guard record; BEGIN \
                   FOR guard IN SELECT conname FROM pg_constraint \
                     WHERE conrelid = {table}::regclass AND contype = 'c' \
                       AND pg_get_constraintdef(oid) LIKE '%id = 1%' LOOP \
                     EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', {table}, guard.conname); \
                   END LOOP; \
                   FOR guard IN SELECT indexrelid::regclass::text AS index FROM pg_index \
                     WHERE indrelid = {table}::regclass AND indexprs IS NOT NULL \
                       AND pg_get_indexdef(indexrelid) LIKE '%((1))%' LOOP \
                     EXECUTE 'DROP INDEX ' || guard.index; \
                   END LOOP; \
                 END $safe_backup$; \
                 CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {} (name)",
                self.table_sql(),
                index = quote_ident(&format!("{}_name_key", self.table)),
            ));
        }
        Some(sql)
    }

    /// Lists every backup name with its state, for `pgpre --list`.
    pub fn list_sql(&self) -> String {
        format!(
            "SELECT b.name, b.state::text, coalesce(b.label, ''), coalesce(b.start_lsn::text, ''), \
               coalesce(b.started_at::text, ''), coalesce(b.error, ''), a.pid IS NOT NULL \
             FROM {} b LEFT JOIN pg_stat_activity a ON a.pid = b.pid \
               AND (a.backend_start = b.backend_start OR a.backend_start IS NULL) \
             ORDER BY b.name",
            self.table_sql()
        )
    }

    /// Creates the history of finished backups.
    pub fn create_history_sql(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (label text, state {} NOT NULL, start_lsn pg_lsn, \
             stop_lsn pg_lsn, started_at timestamptz, finished_at timestamptz, error text, pid integer, \
             name text)",
            self.history_sql(),
            self.type_sql()
        )
    }

    /// Reads the row with the liveness of its holder; no row when there is none.
    pub fn read_sql(&self) -> String {
        format!(
            "SELECT b.state::text, b.pid, b.backend_start::text, b.label, b.start_lsn::text, \
               b.stop_lsn::text, b.started_at::text, b.finished_at::text, b.backup_label, \
               b.tablespace_map, b.error, a.pid IS NOT NULL, a.query \
             FROM {} b LEFT JOIN pg_stat_activity a ON a.pid = b.pid \
               AND (a.backend_start = b.backend_start OR a.backend_start IS NULL) \
             WHERE b.{}",
            self.table_sql(),
            self.row()
        )
    }

    /// Records this session as the holder of a running backup.
    /// Parameters: `$1` label, `$2` start LSN (text).
    pub fn set_running_sql(&self) -> String {
        format!(
            "INSERT INTO {table} AS b (id, name, state, pid, backend_start, label, start_lsn, started_at, \
               finished_at, stop_lsn, backup_label, tablespace_map, error) \
             VALUES ({id}, {name}, 'running', pg_backend_pid(), \
               (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()), \
               $1::text, $2::text::pg_lsn, now(), NULL, NULL, NULL, NULL, NULL) \
             ON CONFLICT (name) DO UPDATE SET state = excluded.state, pid = excluded.pid, \
               backend_start = excluded.backend_start, label = excluded.label, \
               start_lsn = excluded.start_lsn, started_at = excluded.started_at, \
               finished_at = NULL, stop_lsn = NULL, backup_label = NULL, tablespace_map = NULL, \
               error = NULL \
             RETURNING b.backend_start::text",
            table = self.table_sql(),
            id = self.row_id_sql(),
            name = quote_literal(&self.name),
        )
    }

    /// The id of this name's row: its existing id, else the next free one (the
    /// first row gets 1, as safe-backup's). Run under [`StateTable::table_lock_sql`].
    fn row_id_sql(&self) -> String {
        format!(
            "coalesce((SELECT id FROM {table} WHERE {row}), (SELECT max(id) + 1 FROM {table}), 1)",
            table = self.table_sql(),
            row = self.row()
        )
    }

    /// `pgpost`: asks the holder to stop. Returns a row only when the state was `running`.
    pub fn request_stop_sql(&self) -> String {
        format!(
            "UPDATE {} SET state = 'done' WHERE {} AND state = 'running' RETURNING pid",
            self.table_sql(),
            self.row()
        )
    }

    /// Appends the row changed by `update` (a data-modifying CTE named `finished`) to the history.
    fn with_history(&self, update: String) -> String {
        format!(
            "WITH finished AS ({update} RETURNING label, state, start_lsn, stop_lsn, started_at, \
               finished_at, error, pid, name) \
             INSERT INTO {} (label, state, start_lsn, stop_lsn, started_at, finished_at, error, pid, name) \
             SELECT * FROM finished RETURNING state::text",
            self.history_sql()
        )
    }

    /// The holder stores the stop function's result. Parameters: `$1` stop LSN,
    /// `$2` backup_label, `$3` tablespace_map. Returns a row only if this session
    /// still owns a running or done row.
    pub fn set_complete_sql(&self) -> String {
        self.with_history(format!(
            "UPDATE {} SET state = 'complete', stop_lsn = $1::text::pg_lsn, backup_label = $2::text, \
               tablespace_map = $3::text, finished_at = now(), error = NULL \
             WHERE {} AND pid = pg_backend_pid() AND state IN ('running', 'done')",
            self.table_sql(),
            self.row()
        ))
    }

    /// Marks the backup of one holder failed. Parameters: `$1` error, `$2` holder
    /// pid, `$3` holder backend start (text or NULL). Only an unfinished row of
    /// that very holder changes, so a late report never overwrites a newer backup.
    pub fn set_failed_sql(&self) -> String {
        self.with_history(format!(
            "UPDATE {} SET state = 'failed', error = $1::text, finished_at = now() \
             WHERE {} AND pid = $2::integer \
               AND backend_start IS NOT DISTINCT FROM $3::text::timestamptz \
               AND state IN ('running', 'done')",
            self.table_sql(),
            self.row()
        ))
    }

    /// Records a backup that failed before it started (so `pgpost` reports it).
    /// Parameters: `$1` label, `$2` error. Run under [`StateTable::table_lock_sql`].
    pub fn set_start_failed_sql(&self) -> String {
        self.with_history(format!(
            "INSERT INTO {table} AS b (id, name, state, pid, backend_start, label, started_at, finished_at, error) \
             VALUES ({id}, {name}, 'failed', pg_backend_pid(), \
               (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()), \
               $1::text, now(), now(), $2::text) \
             ON CONFLICT (name) DO UPDATE SET state = excluded.state, pid = excluded.pid, \
               backend_start = excluded.backend_start, label = excluded.label, \
               start_lsn = NULL, stop_lsn = NULL, started_at = excluded.started_at, \
               finished_at = excluded.finished_at, backup_label = NULL, tablespace_map = NULL, \
               error = excluded.error",
            table = self.table_sql(),
            id = self.row_id_sql(),
            name = quote_literal(&self.name),
        ))
    }

    /// Ends the session of an earlier holder, only if pid and start time both match.
    /// Parameters: `$1` pid, `$2` backend start (text).
    pub fn terminate_holder_sql(&self) -> &'static str {
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE pid = $1::integer AND backend_start = $2::text::timestamptz"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_table_matches_safe_backup_names() {
        let table = StateTable::new("", "backup", "default");
        assert_eq!(table.table_sql(), "\"backup\"");
        assert_eq!(table.type_sql(), "\"backup_state\"");
        assert_eq!(table.history_sql(), "\"backup_history\"");
        assert_eq!(table.channel(), "safe_backup.backup");
        assert_eq!(table.listen_sql(), "LISTEN \"safe_backup.backup\"");
    }

    #[test]
    fn names_with_any_characters_are_quoted() {
        let table = StateTable::new("ops \"x\"", "snap'shot", "default");
        assert_eq!(table.table_sql(), "\"ops \"\"x\"\"\".\"snap'shot\"");
        assert!(table
            .table_lock_sql()
            .contains("hashtext('ops \"x\".snap''shot')"));
        assert!(table
            .lock_sql()
            .contains("hashtext('ops \"x\".snap''shot/default')"));
        assert!(table
            .columns_sql()
            .contains("to_regclass('\"ops \"\"x\"\"\".\"snap''shot\"')"));
        assert!(table.notify_sql(BackupState::Done).ends_with("'done')"));
    }

    #[test]
    fn channel_is_cut_to_an_identifier() {
        let table = StateTable::new("s", &"t".repeat(100), "default");
        assert_eq!(table.channel().len(), 63);
    }

    #[test]
    fn create_includes_original_and_added_columns() {
        let sql = StateTable::new("", "backup", "default").create_sql();
        assert!(sql.contains(
            "CREATE TYPE \"backup_state\" AS ENUM ('running', 'done', 'complete', 'failed')"
        ));
        for column in [
            "id integer PRIMARY KEY",
            "pid integer",
            "backup_label text",
            "tablespace_map text",
        ] {
            assert!(sql.contains(column), "{column}");
        }
        for (name, kind) in ADDED_COLUMNS {
            assert!(sql.contains(&format!(", {name} {kind}")), "{name}");
        }
    }

    #[test]
    fn upgrade_adds_only_missing_columns() {
        let table = StateTable::new("", "backup", "default");
        let original: Vec<String> = ORIGINAL_COLUMNS.iter().map(|c| c.to_string()).collect();
        let sql = table.upgrade_sql(&original).unwrap();
        assert!(sql.starts_with("ALTER TABLE \"backup\" ADD COLUMN IF NOT EXISTS label text"));
        assert_eq!(sql.matches("ADD COLUMN").count(), ADDED_COLUMNS.len());
        let mut all = original;
        all.extend(ADDED_COLUMNS.iter().map(|(name, _)| name.to_string()));
        assert_eq!(table.upgrade_sql(&all), None);
    }

    #[test]
    fn finishing_statements_guard_the_owner_and_record_history() {
        let table = StateTable::new("", "backup", "default");
        let complete = table.set_complete_sql();
        assert!(complete.contains("pid = pg_backend_pid() AND state IN ('running', 'done')"));
        assert!(complete.contains("INSERT INTO \"backup_history\""));
        let failed = table.set_failed_sql();
        assert!(failed.contains("pid = $2::integer"));
        assert!(failed.contains("backend_start IS NOT DISTINCT FROM $3"));
        assert!(failed.contains("state IN ('running', 'done')"));
        assert!(table.request_stop_sql().contains("state = 'running'"));
    }

    #[test]
    fn rows_are_selected_by_name() {
        let table = StateTable::new("", "backup", "vol-2.data");
        assert!(table.read_sql().ends_with("WHERE b.name = 'vol-2.data'"));
        assert!(table
            .request_stop_sql()
            .contains("WHERE name = 'vol-2.data' AND state = 'running'"));
        assert!(table.set_running_sql().contains("ON CONFLICT (name)"));
        assert!(table.set_running_sql().contains(
            "coalesce((SELECT id FROM \"backup\" WHERE name = 'vol-2.data'), (SELECT max(id) + 1 FROM \"backup\"), 1)"
        ));
        assert!(table
            .set_failed_sql()
            .contains("WHERE name = 'vol-2.data' AND pid = $2"));
        assert!(table
            .set_complete_sql()
            .contains("WHERE name = 'vol-2.data' AND pid = pg_backend_pid()"));
        assert_ne!(
            table.lock_sql(),
            StateTable::new("", "backup", "other").lock_sql()
        );
    }

    #[test]
    fn upgrading_safe_backups_table_drops_its_one_row_guards() {
        let table = StateTable::new("", "backup", "default");
        let original: Vec<String> = ORIGINAL_COLUMNS.iter().map(|c| c.to_string()).collect();
        let sql = table.upgrade_sql(&original).unwrap();
        assert!(sql.contains("ADD COLUMN IF NOT EXISTS name text NOT NULL DEFAULT 'default'"));
        assert!(sql.contains("DROP CONSTRAINT"));
        assert!(sql.contains(
            "CREATE UNIQUE INDEX IF NOT EXISTS \"backup_name_key\" ON \"backup\" (name)"
        ));
    }

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
}
