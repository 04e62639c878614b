//! `pgpre --list`: every backup in the state table, one tab-separated line each.

use std::fmt::Write as _;

use super::table::{self, BackupRow};
use super::{BackupError, BackupOptions};
use crate::conn::ConnSettings;

/// The header line of `pgpre --list`.
const HEADER: &str = "name\tstate\tholder\tstart_lsn\tstarted_at\tlabel\terror";

/// Every backup in the state table, as `pgpre --list` prints it (only the header when the
/// table does not exist).
pub async fn list_backups(
    settings: &ConnSettings,
    options: &BackupOptions,
) -> Result<String, BackupError> {
    let session = settings.connect().await?;
    let client = &session.client;
    let rows = if table::columns(client, &options.table).await?.is_empty() {
        Vec::new()
    } else {
        table::list(client, &options.table).await?
    };
    Ok(render(&rows))
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
}
