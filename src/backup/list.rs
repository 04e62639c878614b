//! `pgpre --list`: every backup in the state table, one tab-separated line each; with
//! `--json`, the running backups and the recent history (`<table>_history`) as one document.

use std::fmt::Write as _;

use super::standby;
use super::table::{self, BackupRow, StateTable};
use super::{BackupError, BackupOptions};
use crate::conn::ConnSettings;

/// The header line of `pgpre --list`.
const HEADER: &str = "name\tstate\tholder\tstart_lsn\tstarted_at\tlabel\terror";

/// How many finished backups `--list --json` shows, newest first.
pub const HISTORY_LIMIT: i64 = 100;

/// Every backup in the state table, as `pgpre --list` prints it (only the header when the
/// table does not exist), or with `json` the document of [`json`].
pub async fn list_backups(
    settings: &ConnSettings,
    options: &BackupOptions,
    as_json: bool,
) -> Result<String, BackupError> {
    let session = settings.connect().await?;
    let client = &session.client;
    let (local, in_recovery) = standby::local_state(client, options).await?;
    if in_recovery {
        // A standby's backups are in its local state: every name, finished ones as history.
        let records = local.list()?;
        let rows = records
            .iter()
            .map(|record| record.to_row())
            .collect::<Result<Vec<_>, _>>()?;
        if !as_json {
            return Ok(render(&rows));
        }
        let history: Vec<serde_json::Value> = records
            .iter()
            .filter(|record| record.is_final())
            .filter_map(|record| serde_json::to_value(record).ok())
            .collect();
        return Ok(format!("{:#}\n", json(&rows, &history)));
    }
    let rows = if table::columns(client, &options.table).await?.is_empty() {
        Vec::new()
    } else {
        table::list(client, &options.table).await?
    };
    if !as_json {
        return Ok(render(&rows));
    }
    let history = history(client, &options.table).await?;
    Ok(format!("{:#}\n", json(&rows, &history)))
}

/// The newest [`HISTORY_LIMIT`] rows of `<table>_history` (none when it does not exist).
async fn history(
    client: &tokio_postgres::Client,
    table: &StateTable,
) -> Result<Vec<serde_json::Value>, BackupError> {
    let failed = |e| BackupError::sql("reading the backup history", e);
    let exists: bool = client
        .query_one(&table.history_exists_sql(), &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(failed)?;
    if !exists {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT coalesce(json_agg(h ORDER BY h.finished_at DESC NULLS LAST), '[]')::text FROM \
           (SELECT * FROM {} ORDER BY finished_at DESC NULLS LAST LIMIT {HISTORY_LIMIT}) h",
        table.history_sql()
    );
    let text: String = client
        .query_one(&sql, &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(failed)?;
    serde_json::from_str(&text)
        .map_err(|e| BackupError::System(format!("the backup history is not JSON: {e}")))
}

/// `--list --json`: `running` (the state table's unfinished rows, with their holder) and
/// `history` (finished backups, newest first; every column of the history table, so
/// `wal_archived`, the archive check, where the table has it).
pub fn json(rows: &[BackupRow], history: &[serde_json::Value]) -> serde_json::Value {
    let running: Vec<serde_json::Value> = rows
        .iter()
        .filter(|row| !row.state.is_final())
        .map(|row| {
            serde_json::json!({
                "name": row.name,
                "state": row.state.as_str(),
                "holder": holder(row),
                "pid": row.pid,
                "label": row.label,
                "start_lsn": row.start_lsn,
                "started_at": row.started_at,
            })
        })
        .collect();
    serde_json::json!({ "running": running, "history": history })
}

/// Whether the session holding an unfinished backup still exists; `-` for a finished one.
pub fn holder(row: &BackupRow) -> &'static str {
    match (row.state.is_final(), row.holder_alive) {
        (true, _) => "-",
        (false, true) => "alive",
        (false, false) => "gone",
    }
}

/// The header and one line per backup.
pub fn render(rows: &[BackupRow]) -> String {
    let mut out = format!("{HEADER}\n");
    for row in rows {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            row.name,
            row.state,
            holder(row),
            text(&row.start_lsn),
            text(&row.started_at),
            text(&row.label),
            text(&row.error)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::table::BackupState;
    use crate::backup::wait::script::row;

    #[test]
    fn one_line_per_backup_with_its_holder() {
        let mut gone = row(BackupState::Done);
        gone.name = "vol2".into();
        gone.holder_alive = false;
        let mut failed = row(BackupState::Failed);
        failed.name = "vol3".into();
        failed.error = Some("disk on fire".into());
        let text = render(&[row(BackupState::Running), gone, failed]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], HEADER);
        assert_eq!(lines[1], "default\trunning\talive\t0/2000028\t\tscripted\t");
        assert!(lines[2].starts_with("vol2\tdone\tgone\t"), "{text}");
        assert!(lines[3].starts_with("vol3\tfailed\t-\t"), "{text}");
        assert!(lines[3].ends_with("\tdisk on fire"), "{text}");
        assert_eq!(render(&[]), format!("{HEADER}\n"));
    }

    #[test]
    fn json_holds_the_unfinished_backups_and_the_history() {
        let mut done = row(BackupState::Done);
        done.name = "vol2".into();
        let finished = serde_json::json!({"name": "vol3", "state": "complete"});
        let document = json(
            &[row(BackupState::Running), done, row(BackupState::Failed)],
            std::slice::from_ref(&finished),
        );
        let running = document["running"].as_array().unwrap();
        assert_eq!(running.len(), 2, "{document}");
        assert_eq!(running[0]["name"], "default");
        assert_eq!(running[0]["holder"], "alive");
        assert_eq!(running[0]["start_lsn"], "0/2000028");
        assert_eq!(running[1]["state"], "done");
        assert_eq!(document["history"], serde_json::json!([finished]));
    }
}
