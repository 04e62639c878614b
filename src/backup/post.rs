//! `pgpost`: asks the co-process to stop, waits for the outcome event-driven, and collects the result.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::{sleep, Instant};
use tokio_postgres::Client;

use super::files;
use super::local::LocalState;
use super::standby::{self, describe, failed};
use super::start::prepare_session;
use super::table::{self, BackupRow, BackupState, StateTable, ADDED_COLUMNS, REQUIRED_COLUMNS};
use super::wait::{sleep_until_option, SessionWatch, Wake, Watch};
use super::{BackupError, BackupOptions};
use crate::conn::ConnSettings;

/// What `pgpost` was asked to do besides stopping.
#[derive(Clone, Debug, Default)]
pub struct PostRequest {
    /// Write `backup_label` / `tablespace_map` here.
    pub output_dir: Option<PathBuf>,
    /// Do not stop anything: return the stored result of the last complete backup.
    pub fetch: bool,
}

/// A complete backup as `pgpost` hands it to its caller.
#[derive(Debug)]
pub struct Completed {
    /// The final row.
    pub row: BackupRow,
    /// Files written into the output directory.
    pub files: Vec<PathBuf>,
    /// Where a backup taken on a standby is recorded (none: the state table).
    pub(crate) local: Option<LocalState>,
}

/// How often the "waiting for WAL archiving" line is repeated.
const ARCHIVE_REPORT_EVERY: Duration = Duration::from_secs(30);
/// How long a stop may run before we look at why.
const ARCHIVE_REPORT_AFTER: Duration = Duration::from_secs(3);

/// Stops the running backup (or, with `fetch`, reads the last complete one) and
/// writes the files. `progress` receives human-readable waiting messages.
pub async fn finish(
    settings: &ConnSettings,
    options: &BackupOptions,
    request: &PostRequest,
    progress: &mut dyn FnMut(&str),
) -> Result<Completed, BackupError> {
    if let Some(dir) = &request.output_dir {
        files::prepare_output_dir(dir)?;
    }
    let mut session = settings.connect().await?;
    let client = &session.client;
    let table = &options.table;
    prepare_session(client).await?;
    if let Some(local) = standby::locate(client, options).await? {
        let row = standby::finish(&local, options, request.fetch).await?;
        return collect(row, request, table, Some(local));
    }
    check_table(client, options).await?;
    client
        .batch_execute(&table.listen_sql())
        .await
        .map_err(|e| BackupError::sql("listening for state changes", e))?;
    let row = table::read_row(client, table).await?.ok_or_else(|| {
        BackupError::NoBackup(format!("the table {} is empty", table.display_name()))
    })?;
    let row = match row.state {
        BackupState::Complete if request.fetch => row,
        state if request.fetch => {
            return Err(BackupError::NoBackup(format!(
                "the last backup ({}) is {state}, not complete",
                describe(&row)
            )))
        }
        BackupState::Complete => {
            return Err(BackupError::NoBackup(format!(
                "the last backup ({}) already completed at {}; pgpost --fetch prints it again",
                describe(&row),
                row.finished_at.as_deref().unwrap_or("?")
            )))
        }
        BackupState::Failed => return Err(failed(&row)),
        BackupState::Running | BackupState::Done if !row.holder_alive => {
            return Err(mark_gone(client, options, &row).await)
        }
        state => {
            if state == BackupState::Running {
                table::request_stop(client, table).await?;
            }
            let mut watch = SessionWatch {
                session: &mut session,
                table,
            };
            match wait_for_outcome(&mut watch, options, progress).await? {
                Ended::Complete(row) => row,
                Ended::Failed(row) => return Err(failed(&row)),
                Ended::HolderGone(row) => {
                    return Err(mark_gone(&session.client, options, &row).await)
                }
            }
        }
    };
    collect(row, request, table, None)
}

/// Writes the files of a complete backup where asked.
fn collect(
    row: BackupRow,
    request: &PostRequest,
    table: &StateTable,
    local: Option<LocalState>,
) -> Result<Completed, BackupError> {
    let backup_label = row.complete_label(&table.display_name())?;
    let files = match &request.output_dir {
        Some(dir) => write_files(dir, backup_label, row.tablespace_map.as_deref(), table)?,
        None => Vec::new(),
    };
    Ok(Completed { row, files, local })
}

/// The archive check of a complete backup whose label is stored and handed out: records
/// the result in the row and in `completed`. A backup already `passed` (or `off`) is not
/// checked again (`pgpost --fetch`); any other is.
pub async fn check_archive(
    settings: &ConnSettings,
    options: &BackupOptions,
    completed: &mut Completed,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BackupError> {
    use super::archive::{self, WalArchived};
    let done = [WalArchived::Passed, WalArchived::Off].map(WalArchived::as_str);
    if let Some(result) = completed.row.wal_archived.as_deref() {
        if done.contains(&result) {
            return Ok(());
        }
    }
    let recorder = match &completed.local {
        Some(local) => archive::Recorder::Local(local),
        None => archive::Recorder::Table(&options.table),
    };
    let checked = archive::check(
        settings,
        options.primary.as_ref(),
        recorder,
        &options.archive,
        &completed.row,
        progress,
    )
    .await;
    let result = match &checked {
        Ok(result) => *result,
        Err(BackupError::WalNotArchived(_)) => WalArchived::Failed,
        Err(_) => WalArchived::Unchecked,
    };
    completed.row.wal_archived = Some(result.as_str().to_string());
    checked.map(|_| ())
}

fn write_files(
    dir: &Path,
    backup_label: &str,
    tablespace_map: Option<&str>,
    table: &StateTable,
) -> Result<Vec<PathBuf>, BackupError> {
    files::write_backup_files(dir, backup_label, tablespace_map).map_err(|error| match error {
        BackupError::Output { path, source } => BackupError::Output {
            path,
            source: std::io::Error::new(
                source.kind(),
                format!(
                    "{source}; the backup is complete and kept in table {}: \
                     pgpost --fetch --output-dir DIR writes it again",
                    table.display_name()
                ),
            ),
        },
        other => other,
    })
}

/// Makes sure the table exists with our columns.
async fn check_table(client: &Client, options: &BackupOptions) -> Result<(), BackupError> {
    let table = &options.table;
    let columns = table::columns(client, table).await?;
    if columns.is_empty() {
        return Err(BackupError::NoBackup(format!(
            "the state table {} does not exist in this database",
            table.display_name()
        )));
    }
    if ADDED_COLUMNS[..REQUIRED_COLUMNS]
        .iter()
        .any(|(name, _)| !columns.iter().any(|column| column == name))
    {
        return Err(BackupError::NoBackup(format!(
            "the state table {} was made by safe-backup's pgpre.sh and holds no backup started by pgpre",
            table.display_name()
        )));
    }
    // A backup started by an earlier pgpre: add the columns it did not know.
    if let Some(upgrade) = table.upgrade_sql(&columns) {
        let history = table.upgrade_history_sql();
        client
            .batch_execute(&format!("{upgrade}; {history}"))
            .await
            .map_err(|e| BackupError::sql("upgrading the state table", e))?;
    }
    Ok(())
}

/// The holder's session is gone: record it and return the failure.
async fn mark_gone(client: &Client, options: &BackupOptions, row: &BackupRow) -> BackupError {
    let reason = "the co-process holding the backup is gone (its session ended, so the server \
                  ended backup mode)";
    if let Some(pid) = row.pid {
        if let Err(error) = table::set_failed(
            client,
            &options.table,
            pid,
            row.backend_start.as_deref(),
            reason,
        )
        .await
        {
            tracing::warn!("cannot record the failure: {error}");
        }
    }
    // Re-read: the co-process may have recorded a better reason first.
    match table::read_row(client, &options.table).await {
        Ok(Some(current)) if current.state == BackupState::Failed => failed(&current),
        _ => BackupError::Failed {
            label: row.label.clone().unwrap_or_default(),
            reason: reason.to_string(),
        },
    }
}

/// How pgpost's wait ended, short of an error.
#[derive(Debug)]
enum Ended {
    /// The row says `complete`.
    Complete(BackupRow),
    /// The row says `failed`.
    Failed(BackupRow),
    /// The row is unfinished but its holder's session is gone.
    HolderGone(BackupRow),
}

/// Waits for `complete` or `failed`: a NOTIFY wakes us at once, and the row is re-read
/// `recheck_interval` (at most [`ARCHIVE_REPORT_AFTER`]) after the last read in case one
/// was missed. Says why the stop takes long while the stop function waits for archiving.
async fn wait_for_outcome(
    watch: &mut impl Watch,
    options: &BackupOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Ended, BackupError> {
    let asked_at = Instant::now();
    let deadline = options.stop_timeout.map(|limit| asked_at + limit);
    let recheck = options.recheck_interval.min(ARCHIVE_REPORT_AFTER);
    let mut last_report: Option<Instant> = None;
    loop {
        let row = watch.read_row().await?.ok_or_else(|| {
            BackupError::NoBackup(format!(
                "the row in {} disappeared",
                options.table.display_name()
            ))
        })?;
        match row.state {
            BackupState::Complete => return Ok(Ended::Complete(row)),
            BackupState::Failed => return Ok(Ended::Failed(row)),
            _ if !row.holder_alive => return Ok(Ended::HolderGone(row)),
            _ => {}
        }
        let stopping = row
            .holder_query
            .as_deref()
            .is_some_and(|query| query.contains("backup_stop") || query.contains("stop_backup"));
        let due = last_report.is_none_or(|at| at.elapsed() >= ARCHIVE_REPORT_EVERY);
        if stopping && asked_at.elapsed() >= ARCHIVE_REPORT_AFTER && due {
            progress(&watch.archive_status().await);
            last_report = Some(Instant::now());
        }
        // Biased: at the deadline the deadline wins, whatever else is ready.
        tokio::select! {
            biased;
            () = sleep_until_option(deadline) => {
                return Err(BackupError::Timeout(format!(
                    "the backup did not complete within stop_timeout ({} s); it goes on, and its \
                     outcome will be recorded in {}: run pgpost again to keep waiting",
                    options.stop_timeout.map_or(0, |limit| limit.as_secs()),
                    options.table.display_name()
                )));
            }
            wake = watch.wake() => if let Wake::Closed(_) = wake {
                return Err(BackupError::Coproc(
                    "pgpost lost its connection while waiting; the backup's outcome is in the state table".into(),
                ));
            },
            () = sleep(recheck) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::wait::script::{row, Script, Step};
    use crate::config::BackupConfig;

    fn options(stop_timeout_secs: u64) -> BackupOptions {
        let mut options = BackupOptions::from_config(&BackupConfig::default(), 0);
        options.stop_timeout = Some(Duration::from_secs(stop_timeout_secs));
        options
    }

    async fn wait(
        script: &mut Script,
        options: &BackupOptions,
    ) -> (Result<Ended, BackupError>, Vec<String>) {
        let mut lines = Vec::new();
        let result =
            wait_for_outcome(script, options, &mut |line| lines.push(line.to_string())).await;
        (result, lines)
    }

    fn complete() -> Step {
        Step::Row(Some(row(BackupState::Complete)))
    }

    #[tokio::test(start_paused = true)]
    async fn stop_timeout_ends_the_wait_at_the_deadline() {
        let mut script = Script::new(row(BackupState::Done));
        let (result, _) = wait(&mut script, &options(30)).await;
        let error = result.unwrap_err();
        assert!(matches!(error, BackupError::Timeout(_)), "{error:?}");
        assert!(error.to_string().contains("stop_timeout (30 s)"), "{error}");
        assert_eq!(script.elapsed(), Duration::from_secs(30));
        // Re-read every 3 s (recheck_interval 10 s, capped for the archiving report).
        assert_eq!(script.read_secs(), [0, 3, 6, 9, 12, 15, 18, 21, 24, 27]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_missed_notify_is_caught_by_the_next_reread() {
        let mut script = Script::new(row(BackupState::Done)).then(7, complete());
        let (result, _) = wait(&mut script, &options(30)).await;
        assert!(matches!(result, Ok(Ended::Complete(_))), "{result:?}");
        assert_eq!(script.elapsed(), Duration::from_secs(9));
    }

    #[tokio::test(start_paused = true)]
    async fn a_notify_rereads_at_once() {
        let mut script = Script::new(row(BackupState::Done))
            .then(1, complete())
            .notify_at(1);
        let (result, _) = wait(&mut script, &options(30)).await;
        assert!(matches!(result, Ok(Ended::Complete(_))), "{result:?}");
        assert_eq!(script.read_secs(), [0, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reread_does_not_make_reads_pile_up() {
        let mut script = Script::new(row(BackupState::Done))
            .reads_take(5)
            .then(20, complete());
        let (result, _) = wait(&mut script, &options(60)).await;
        assert!(matches!(result, Ok(Ended::Complete(_))), "{result:?}");
        assert_eq!(script.read_secs(), [0, 8, 16, 24]);
        assert_eq!(script.elapsed(), Duration::from_secs(29));
    }

    #[tokio::test(start_paused = true)]
    async fn a_gone_holder_or_a_failure_ends_the_wait() {
        let mut gone = row(BackupState::Done);
        gone.holder_alive = false;
        let mut script = Script::new(row(BackupState::Done)).then(2, Step::Row(Some(gone)));
        let (result, _) = wait(&mut script, &options(30)).await;
        assert!(matches!(result, Ok(Ended::HolderGone(_))), "{result:?}");
        let mut script =
            Script::new(row(BackupState::Done)).then(2, Step::Row(Some(row(BackupState::Failed))));
        let (result, _) = wait(&mut script, &options(30)).await;
        assert!(matches!(result, Ok(Ended::Failed(_))), "{result:?}");
        let mut script = Script::new(row(BackupState::Done)).then(2, Step::Row(None));
        let (result, _) = wait(&mut script, &options(30)).await;
        assert!(
            matches!(result, Err(BackupError::NoBackup(_))),
            "{result:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_waiting_for_archiving_says_so_every_30_seconds() {
        let mut stopping = row(BackupState::Done);
        stopping.holder_query = Some("SELECT lsn::text FROM pg_backup_stop($1::boolean)".into());
        let mut script = Script::new(stopping);
        let (result, lines) = wait(&mut script, &options(40)).await;
        assert!(matches!(result, Err(BackupError::Timeout(_))), "{result:?}");
        assert_eq!(lines, ["waiting for WAL archiving to finish"; 2]);
    }
}
