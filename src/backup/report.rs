//! What `pgpre` and `pgpost` print when they succeed: the start LSN with its warnings,
//! `backup_label` byte for byte, or the JSON document of `pgpost --json`.

use std::io::Write;

use super::error::BackupError;
use super::post::Completed;
use super::spawn::StartReport;

/// pgpre: the warnings on stderr, the start LSN on stdout.
pub fn print_start(report: &StartReport) {
    for warning in &report.warnings {
        eprintln!("pgpre: warning: {warning}");
    }
    println!("{}", report.start_lsn);
}

/// pgpost --json: label, LSNs, times, `backup_label`, `tablespace_map` (null when empty),
/// the archive check (`wal_archived`) and the files written.
pub fn json(completed: &Completed) -> serde_json::Value {
    let row = &completed.row;
    serde_json::json!({
        "state": row.state.as_str(),
        "label": row.label,
        "start_lsn": row.start_lsn,
        "stop_lsn": row.stop_lsn,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "backup_label": row.backup_label,
        "tablespace_map": row.tablespace_map.as_deref().filter(|map| !map.is_empty()),
        "wal_archived": row.wal_archived,
        "files": completed.files,
    })
}

/// pgpost: `backup_label` byte for byte, or the JSON document, on stdout.
pub fn print_completed(completed: &Completed, as_json: bool) -> Result<(), BackupError> {
    let mut stdout = std::io::stdout().lock();
    let written = if as_json {
        writeln!(stdout, "{:#}", json(completed))
    } else {
        let label = completed.row.backup_label.as_deref().unwrap_or_default();
        stdout.write_all(label.as_bytes())
    };
    written
        .and_then(|()| stdout.flush())
        .map_err(|source| BackupError::Output {
            path: "standard output".into(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::table::BackupState;
    use crate::backup::wait::script::row;

    #[test]
    fn json_holds_the_result_and_no_empty_map() {
        let mut complete = row(BackupState::Complete);
        complete.backup_label = Some("START WAL LOCATION: 0/2000028\n".into());
        complete.tablespace_map = Some(String::new());
        complete.wal_archived = Some("failed".into());
        let completed = Completed {
            row: complete,
            files: vec!["/backup/backup_label".into()],
            local: None,
        };
        let json = json(&completed);
        assert_eq!(json["state"], "complete");
        assert_eq!(json["backup_label"], "START WAL LOCATION: 0/2000028\n");
        assert!(json["tablespace_map"].is_null());
        assert_eq!(json["wal_archived"], "failed");
        assert_eq!(json["files"][0], "/backup/backup_label");
    }
}
