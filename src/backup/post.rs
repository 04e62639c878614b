//! `pgpost`: asks the co-process to stop, waits for the outcome event-driven, and collects the result.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::{sleep_until, Instant};
use tokio_postgres::Client;

use super::hold::{notify, prepare_session, read_row, set_failed, table_columns};
use super::output;
use super::state::{BackupRow, BackupState, ADDED_COLUMNS};
use super::{BackupError, BackupOptions};
use crate::conn::{ConnSettings, SessionEvent};

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
        output::prepare_output_dir(dir)?;
    }
    let mut session = settings.connect().await?;
    let client = &session.client;
    let table = &options.table;
    prepare_session(client).await?;
    check_table(client, options).await?;
    client
        .batch_execute(&table.listen_sql())
        .await
        .map_err(|e| BackupError::sql("listening for state changes", e))?;
    let archive_mode: String = client
        .query_one("SELECT current_setting('archive_mode')", &[])
        .await
        .map_err(|e| BackupError::sql("reading archive_mode", e))?
        .get(0);
    let row = read(client, options).await?.ok_or_else(|| {
        BackupError::NoBackup(format!("the table {} is empty", table.display_name()))
    })?;
    let row = if request.fetch {
        match row.state {
            BackupState::Complete => row,
            state => {
                return Err(BackupError::NoBackup(format!(
                    "the last backup ({}) is {state}, not complete",
                    describe(&row)
                )))
            }
        }
    } else {
        match row.state {
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
            BackupState::Running => {
                let asked = client
                    .query(&table.request_stop_sql(), &[])
                    .await
                    .map_err(|e| BackupError::sql("asking the co-process to stop", e))?;
                if !asked.is_empty() {
                    notify(client, table, BackupState::Done).await;
                }
                wait_for_outcome(&mut session, options, progress).await?
            }
            BackupState::Done => wait_for_outcome(&mut session, options, progress).await?,
        }
    };
    if archive_mode == "off" {
        progress(
            "warning: archive_mode is off: the WAL between start_lsn and stop_lsn must be \
             copied by other means for this backup to restore",
        );
    }
    let files = match &request.output_dir {
        Some(dir) => write_files(dir, &row, table)?,
        None => Vec::new(),
    };
    Ok(Completed { row, files })
}

fn write_files(
    dir: &Path,
    row: &BackupRow,
    table: &super::state::StateTable,
) -> Result<Vec<PathBuf>, BackupError> {
    let label = row.backup_label.as_deref().unwrap_or_default();
    output::write_backup_files(dir, label, row.tablespace_map.as_deref()).map_err(|error| {
        match error {
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
        }
    })
}

fn describe(row: &BackupRow) -> String {
    format!("label {:?}", row.label.as_deref().unwrap_or(""))
}

fn failed(row: &BackupRow) -> BackupError {
    BackupError::Failed {
        label: row.label.clone().unwrap_or_default(),
        reason: row
            .error
            .clone()
            .unwrap_or_else(|| "no reason recorded".to_string()),
    }
}

/// Makes sure the table exists with our columns.
async fn check_table(client: &Client, options: &BackupOptions) -> Result<(), BackupError> {
    let table = &options.table;
    let columns = table_columns(client, table).await?;
    if columns.is_empty() {
        return Err(BackupError::NoBackup(format!(
            "the state table {} does not exist in this database",
            table.display_name()
        )));
    }
    if ADDED_COLUMNS
        .iter()
        .any(|(name, _)| !columns.iter().any(|column| column == name))
    {
        return Err(BackupError::NoBackup(format!(
            "the state table {} was made by safe-backup's pgpre.sh and holds no backup started by pgpre",
            table.display_name()
        )));
    }
    Ok(())
}

async fn read(client: &Client, options: &BackupOptions) -> Result<Option<BackupRow>, BackupError> {
    read_row(client, &options.table)
        .await
        .map_err(|e| BackupError::sql("reading the state table", e))
}

/// The holder's session is gone: record it and return the failure.
async fn mark_gone(client: &Client, options: &BackupOptions, row: &BackupRow) -> BackupError {
    let reason = "the co-process holding the backup is gone (its session ended, so the server \
                  ended backup mode)";
    if let Some(pid) = row.pid {
        if let Err(error) = set_failed(
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
    match read(client, options).await {
        Ok(Some(current)) if current.state == BackupState::Failed => failed(&current),
        _ => BackupError::Failed {
            label: row.label.clone().unwrap_or_default(),
            reason: reason.to_string(),
        },
    }
}

/// Waits for `complete` or `failed`: NOTIFY wakes us, a slow re-read backs it up.
async fn wait_for_outcome(
    session: &mut crate::conn::Session,
    options: &BackupOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<BackupRow, BackupError> {
    let asked_at = Instant::now();
    let deadline = options.stop_timeout.map(|limit| asked_at + limit);
    let mut recheck = tokio::time::interval(options.recheck_interval.min(ARCHIVE_REPORT_AFTER));
    let mut last_report: Option<Instant> = None;
    loop {
        let row = read(&session.client, options).await?.ok_or_else(|| {
            BackupError::NoBackup(format!(
                "the row in {} disappeared",
                options.table.display_name()
            ))
        })?;
        match row.state {
            BackupState::Complete => return Ok(row),
            BackupState::Failed => return Err(failed(&row)),
            _ if !row.holder_alive => return Err(mark_gone(&session.client, options, &row).await),
            _ => {}
        }
        let stopping = row
            .holder_query
            .as_deref()
            .is_some_and(|query| query.contains("backup_stop") || query.contains("stop_backup"));
        let due = last_report.map_or(true, |at| at.elapsed() >= ARCHIVE_REPORT_EVERY);
        if stopping && asked_at.elapsed() >= ARCHIVE_REPORT_AFTER && due {
            progress(&archive_wait_message(&session.client).await);
            last_report = Some(Instant::now());
        }
        tokio::select! {
            event = session.events.recv() => match event {
                Some(SessionEvent::Notification(_) | SessionEvent::Notice(_)) => {}
                Some(SessionEvent::Closed(_)) | None => {
                    return Err(BackupError::Coproc(
                        "pgpost lost its connection while waiting; the backup's outcome is in the state table".into(),
                    ))
                }
            },
            _ = recheck.tick() => {}
            _ = sleep_until_option(deadline) => {
                return Err(BackupError::Timeout(format!(
                    "the backup did not complete within stop_timeout ({} s); it goes on, and its \
                     outcome will be recorded in {}: run pgpost again to keep waiting",
                    options.stop_timeout.map_or(0, |limit| limit.as_secs()),
                    options.table.display_name()
                )));
            }
        }
    }
}

async fn sleep_until_option(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn archive_wait_message(client: &Client) -> String {
    let failure = client
        .query_opt(
            "SELECT last_failed_wal, last_failed_time::text FROM pg_stat_archiver \
             WHERE last_failed_time IS NOT NULL \
               AND last_failed_time > coalesce(last_archived_time, '-infinity')",
            &[],
        )
        .await;
    match failure {
        Ok(Some(row)) => {
            let wal: Option<String> = row.get(0);
            let at: Option<String> = row.get(1);
            format!(
                "waiting for WAL archiving: the archiver is failing (last failure: {} at {})",
                wal.unwrap_or_default(),
                at.unwrap_or_default()
            )
        }
        _ => "waiting for WAL archiving to finish".to_string(),
    }
}

/// One line of `pgpre --list`.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupSummary {
    /// Backup name.
    pub name: String,
    /// Its state.
    pub state: String,
    /// Its label.
    pub label: String,
    /// Start LSN, if started.
    pub start_lsn: String,
    /// Start time.
    pub started_at: String,
    /// Why it failed, if it did.
    pub error: String,
    /// Whether the holding session still exists.
    pub holder_alive: bool,
}

/// Every backup name in the state table (none when the table does not exist).
pub async fn list_backups(
    settings: &ConnSettings,
    options: &BackupOptions,
) -> Result<Vec<BackupSummary>, BackupError> {
    let session = settings.connect().await?;
    let client = &session.client;
    if table_columns(client, &options.table).await?.is_empty() {
        return Ok(Vec::new());
    }
    let rows = client
        .query(&options.table.list_sql(), &[])
        .await
        .map_err(|e| BackupError::sql("listing backups", e))?;
    Ok(rows
        .iter()
        .map(|row| BackupSummary {
            name: row.get(0),
            state: row.get(1),
            label: row.get(2),
            start_lsn: row.get(3),
            started_at: row.get(4),
            error: row.get(5),
            holder_alive: row.get(6),
        })
        .collect())
}
