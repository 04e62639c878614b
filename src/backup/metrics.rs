//! The metrics file of `pgpre` and `pgpost` (`--metrics-file`): the backup's LSNs, how long
//! backup mode was held, the bytes pgpost wrote, and the exit status.

use std::time::Duration;

use super::post::Completed;
use crate::exit::ExitStatus;
use crate::metrics::BackupMetrics;
use crate::wal::Lsn;

/// The backup as the metrics file shows it: LSNs as byte positions, and how long backup
/// mode was held (the row's `started_at` to `finished_at`).
pub fn backup_metrics(
    name: &str,
    start_lsn: Option<&str>,
    stop_lsn: Option<&str>,
    held: Option<Duration>,
) -> BackupMetrics {
    BackupMetrics {
        name: name.to_string(),
        start_lsn: start_lsn.and_then(Lsn::parse).map(|lsn| lsn.0),
        stop_lsn: stop_lsn.and_then(Lsn::parse).map(|lsn| lsn.0),
        held,
        wal_archived: None,
    }
}

/// pgpost's backup: both LSNs and the time held, from the completed row.
pub fn completed_metrics(completed: &Completed) -> BackupMetrics {
    let row = &completed.row;
    let held = match (&row.started_at, &row.finished_at) {
        (Some(started), Some(finished)) => held_between(started, finished),
        _ => None,
    };
    BackupMetrics {
        wal_archived: row.wal_archived.clone(),
        ..backup_metrics(
            &row.name,
            row.start_lsn.as_deref(),
            row.stop_lsn.as_deref(),
            held,
        )
    }
}

/// What pgpost wrote: `backup_label` and `tablespace_map` (printed, and into `--output-dir`).
pub fn bytes_of(completed: &Completed) -> u64 {
    let row = &completed.row;
    [&row.backup_label, &row.tablespace_map]
        .iter()
        .map(|text| text.as_deref().map_or(0, str::len) as u64)
        .sum()
}

/// The time between two `timestamptz::text` values (`2026-11-21 21:40:00.123456+00`).
fn held_between(started: &str, finished: &str) -> Option<Duration> {
    let parse =
        |text: &str| chrono::DateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S%.f%#z").ok();
    (parse(finished)? - parse(started)?).to_std().ok()
}

/// The exit status an [`std::process::ExitCode`] was made from (they cannot be read back).
pub fn status_of<E: crate::exit::Failure>(result: &Result<(), E>) -> ExitStatus {
    match result {
        Ok(()) => ExitStatus::Success,
        Err(error) => error.exit_status(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_from_the_row_times() {
        assert_eq!(
            held_between("2026-11-21 21:40:00.25+00", "2026-11-21 21:41:01.75+00"),
            Some(Duration::from_millis(61_500))
        );
        assert_eq!(
            held_between("2026-11-21 23:40:00+02", "2026-11-21 21:40:03+00"),
            Some(Duration::from_secs(3))
        );
        assert_eq!(held_between("yesterday", "2026-11-21 21:40:03+00"), None);
        let metrics = backup_metrics("vol1", Some("0/2000028"), None, None);
        assert_eq!(metrics.start_lsn, Some(0x200_0028));
        assert_eq!(metrics.stop_lsn, None);
    }
}
