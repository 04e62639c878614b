//! The state table shared with safe-backup's `pgpre.sh`/`pgpost.sh`: its SQL, and the I/O that
//! reads (by column name, with `try_get`) and moves it.
//!
//! One row per backup name (`default` unless `--name` says otherwise; the
//! `default` row is safe-backup's `id = 1`) holds the backup in progress; every
//! finished backup is also appended to `<table>_history`. Each state change is followed by a
//! `NOTIFY` on [`StateTable::channel`].

use tokio_postgres::types::FromSql;
use tokio_postgres::{Client, Row};
use tracing::{info, warn};

use super::error::BackupError;
pub use super::row::{BackupRow, BackupState, InvalidRow, RowProblem};
use crate::server::{quote_ident, quote_literal};

/// Names and SQL of one state table (schema-qualified or on the search_path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateTable {
    schema: Option<String>,
    table: String,
    name: String,
}

/// The columns we add, with their types, in order.
pub const ADDED_COLUMNS: [(&str, &str); 9] = [
    ("label", "text"),
    ("start_lsn", "pg_lsn"),
    ("stop_lsn", "pg_lsn"),
    ("started_at", "timestamptz"),
    ("finished_at", "timestamptz"),
    ("error", "text"),
    ("backend_start", "timestamptz"),
    ("name", "text NOT NULL DEFAULT 'default'"),
    ("wal_archived", "text"),
];

/// The columns a table must have for pgpost to find a backup pgpre started: the added ones
/// but those a later version added (pgpost adds them itself).
pub const REQUIRED_COLUMNS: usize = 8;

/// First key of the advisory lock that serializes `pgpre` calls ("safe" in ASCII-ish).
const LOCK_CLASS: i32 = 0x7361_6665;

impl StateTable {
    /// The row `name` of a table named `table` in `schema` (empty: the first
    /// schema on the search_path). `name` must pass [`crate::config::validate_name`].
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

    /// Every column of [`BackupRow`], named, with the liveness of the holder.
    fn select_sql(&self) -> String {
        format!(
            "SELECT b.name AS name, b.state::text AS state, b.pid AS pid, \
               b.backend_start::text AS backend_start, b.label AS label, \
               b.start_lsn::text AS start_lsn, b.stop_lsn::text AS stop_lsn, \
               b.started_at::text AS started_at, b.finished_at::text AS finished_at, \
               b.backup_label AS backup_label, b.tablespace_map AS tablespace_map, \
               b.error AS error, b.wal_archived AS wal_archived, a.pid IS NOT NULL AS holder_alive, a.query AS holder_query \
             FROM {} b LEFT JOIN pg_stat_activity a ON a.pid = b.pid \
               AND (a.backend_start = b.backend_start OR a.backend_start IS NULL)",
            self.table_sql()
        )
    }

    /// Lists every backup name, for `pgpre --list`.
    pub fn list_sql(&self) -> String {
        format!("{} ORDER BY b.name", self.select_sql())
    }

    /// Creates the history of finished backups.
    pub fn create_history_sql(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (label text, state {} NOT NULL, start_lsn pg_lsn, \
             stop_lsn pg_lsn, started_at timestamptz, finished_at timestamptz, error text, pid integer, \
             name text, wal_archived text)",
            self.history_sql(),
            self.type_sql()
        )
    }

    /// Adds the archive check's column to a history table of an earlier version.
    pub fn upgrade_history_sql(&self) -> String {
        format!(
            "DO $safe_backup$ BEGIN \
               IF NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = {}::regclass \
                 AND attname = 'wal_archived' AND NOT attisdropped) THEN \
                 ALTER TABLE {} ADD COLUMN wal_archived text; \
               END IF; \
             END $safe_backup$",
            quote_literal(&self.history_sql()),
            self.history_sql()
        )
    }

    /// pgpost records the archive check of a complete backup, in the row and its history
    /// entry. Parameters: `$1` the result (text), `$2` the backup's `started_at` (text), so a
    /// later backup of the same name is never marked. Returns a row when the state row changed.
    pub fn set_wal_archived_sql(&self) -> String {
        format!(
            "WITH history AS (UPDATE {history} SET wal_archived = $1::text \
               WHERE name = {name} AND state = 'complete' AND started_at = $2::text::timestamptz) \
             UPDATE {table} SET wal_archived = $1::text \
             WHERE {row} AND state = 'complete' AND started_at = $2::text::timestamptz \
             RETURNING wal_archived",
            history = self.history_sql(),
            name = quote_literal(&self.name),
            table = self.table_sql(),
            row = self.row()
        )
    }

    /// Reads this name's row with the liveness of its holder; no row when there is none.
    pub fn read_sql(&self) -> String {
        format!("{} WHERE b.{}", self.select_sql(), self.row())
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
               error = NULL, wal_archived = NULL \
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
               finished_at, error, pid, name, wal_archived) \
             INSERT INTO {} (label, state, start_lsn, stop_lsn, started_at, finished_at, error, pid, name, \
               wal_archived) \
             SELECT * FROM finished RETURNING state::text",
            self.history_sql()
        )
    }

    /// The holder stores the stop function's result, its WAL not yet checked (`unchecked`:
    /// pgpost checks it next). Parameters: `$1` stop LSN, `$2` backup_label, `$3`
    /// tablespace_map. Returns a row only if this session still owns a running or done row.
    pub fn set_complete_sql(&self) -> String {
        self.with_history(format!(
            "UPDATE {} SET state = 'complete', stop_lsn = $1::text::pg_lsn, backup_label = $2::text, \
               tablespace_map = $3::text, finished_at = now(), error = NULL, \
               wal_archived = 'unchecked' \
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
               error = excluded.error, wal_archived = NULL",
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

/// Why the state table could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The statement failed or the session is gone.
    Sql(tokio_postgres::Error),
    /// The row holds what pgpre and pgpost never write.
    Invalid(InvalidRow),
}

impl From<ReadError> for BackupError {
    fn from(error: ReadError) -> BackupError {
        match error {
            ReadError::Sql(error) => BackupError::sql("reading the state table", error),
            ReadError::Invalid(row) => BackupError::InvalidRow(row),
        }
    }
}

/// Decodes a row of [`StateTable::select_sql`] by column name.
fn decode(row: &Row, table: &StateTable) -> Result<BackupRow, InvalidRow> {
    let name = row
        .try_get::<_, Option<String>>("name")
        .ok()
        .flatten()
        .unwrap_or_else(|| table.name.clone());
    let invalid = |problem| InvalidRow {
        table: table.display_name(),
        name: name.clone(),
        problem,
    };
    fn get<'a, T: FromSql<'a>>(row: &'a Row, column: &'static str) -> Result<T, RowProblem> {
        row.try_get(column).map_err(|error| RowProblem::Column {
            column,
            message: std::error::Error::source(&error)
                .map_or_else(|| error.to_string(), ToString::to_string),
        })
    }
    let state: Option<String> = get(row, "state").map_err(invalid)?;
    let state = state.ok_or(RowProblem::Null("state")).map_err(invalid)?;
    let state = state
        .parse()
        .map_err(|_| invalid(RowProblem::UnknownState(state)))?;
    Ok(BackupRow {
        state,
        pid: get(row, "pid").map_err(invalid)?,
        backend_start: get(row, "backend_start").map_err(invalid)?,
        label: get(row, "label").map_err(invalid)?,
        start_lsn: get(row, "start_lsn").map_err(invalid)?,
        stop_lsn: get(row, "stop_lsn").map_err(invalid)?,
        started_at: get(row, "started_at").map_err(invalid)?,
        finished_at: get(row, "finished_at").map_err(invalid)?,
        backup_label: get(row, "backup_label").map_err(invalid)?,
        tablespace_map: get(row, "tablespace_map").map_err(invalid)?,
        error: get(row, "error").map_err(invalid)?,
        wal_archived: get(row, "wal_archived").map_err(invalid)?,
        holder_alive: get(row, "holder_alive").map_err(invalid)?,
        holder_query: get(row, "holder_query").map_err(invalid)?,
        name,
    })
}

/// Reads this name's row, if any.
pub async fn read_row(client: &Client, table: &StateTable) -> Result<Option<BackupRow>, ReadError> {
    let row = client
        .query_opt(&table.read_sql(), &[])
        .await
        .map_err(ReadError::Sql)?;
    row.map(|row| decode(&row, table).map_err(ReadError::Invalid))
        .transpose()
}

/// Every backup in the table, by name.
pub async fn list(client: &Client, table: &StateTable) -> Result<Vec<BackupRow>, BackupError> {
    let rows = client
        .query(&table.list_sql(), &[])
        .await
        .map_err(|e| BackupError::sql("listing backups", e))?;
    Ok(rows
        .iter()
        .map(|row| decode(row, table))
        .collect::<Result<_, _>>()?)
}

/// The state table's columns; empty when the table does not exist.
pub async fn columns(client: &Client, table: &StateTable) -> Result<Vec<String>, BackupError> {
    client
        .query(&table.columns_sql(), &[])
        .await
        .map_err(|e| BackupError::sql("inspecting the state table", e))?
        .iter()
        .map(|row| {
            row.try_get(0)
                .map_err(|e| BackupError::sql("inspecting the state table", e))
        })
        .collect()
}

/// Creates the table (or adds our columns to safe-backup's) and the history table.
pub async fn ensure(client: &Client, table: &StateTable) -> Result<(), BackupError> {
    let columns = columns(client, table).await?;
    let ddl = if columns.is_empty() {
        Some(table.create_sql())
    } else {
        table.upgrade_sql(&columns)
    };
    if let Some(ddl) = ddl {
        info!(
            "creating or upgrading the state table {}",
            table.display_name()
        );
        client
            .batch_execute(&ddl)
            .await
            .map_err(|e| BackupError::sql("creating the state table", e))?;
    }
    let history: bool = client
        .query_one(&table.history_exists_sql(), &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| BackupError::sql("inspecting the history table", e))?;
    let history_ddl = match history {
        false => table.create_history_sql(),
        true => table.upgrade_history_sql(),
    };
    client
        .batch_execute(&history_ddl)
        .await
        .map_err(|e| BackupError::sql("creating the history table", e))?;
    Ok(())
}

/// Runs `work` while holding the table-wide advisory lock (DDL, row creation).
pub async fn with_table_lock<T>(
    client: &Client,
    table: &StateTable,
    work: impl std::future::Future<Output = T>,
) -> Result<T, tokio_postgres::Error> {
    client.query_one(&table.table_lock_sql(), &[]).await?;
    let result = work.await;
    client.query_one(&table.table_unlock_sql(), &[]).await?;
    Ok(result)
}

/// Sends the state-change notification; a failure only delays waiters until their re-read.
pub async fn notify(client: &Client, table: &StateTable, state: BackupState) {
    if let Err(error) = client.batch_execute(&table.notify_sql(state)).await {
        warn!("cannot notify waiters: {error}");
    }
}

/// Marks the unfinished backup of `holder` failed. Returns whether the row changed.
pub async fn set_failed(
    client: &Client,
    table: &StateTable,
    holder_pid: i32,
    holder_backend_start: Option<&str>,
    reason: &str,
) -> Result<bool, tokio_postgres::Error> {
    let rows = client
        .query(
            &table.set_failed_sql(),
            &[&reason, &holder_pid, &holder_backend_start],
        )
        .await?;
    if !rows.is_empty() {
        notify(client, table, BackupState::Failed).await;
    }
    Ok(!rows.is_empty())
}

/// `pgpost`: sets `done` where the row is `running` and tells the holder.
pub async fn request_stop(client: &Client, table: &StateTable) -> Result<(), BackupError> {
    let asked = client
        .query(&table.request_stop_sql(), &[])
        .await
        .map_err(|e| BackupError::sql("asking the co-process to stop", e))?;
    if !asked.is_empty() {
        notify(client, table, BackupState::Done).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The columns safe-backup's bash scripts create.
    const ORIGINAL_COLUMNS: [&str; 5] = ["id", "state", "pid", "backup_label", "tablespace_map"];
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
        assert!(table.list_sql().ends_with("ORDER BY b.name"));
        for column in [
            "state",
            "pid",
            "backup_label",
            "holder_alive",
            "holder_query",
        ] {
            assert!(
                table.read_sql().contains(&format!(" AS {column}")),
                "{column}"
            );
        }
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
}
