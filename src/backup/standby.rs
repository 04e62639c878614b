//! Backups of a hot standby: the session runs on the standby, the state lives in a private
//! local directory ([`LocalState`]: nothing is written to a standby, which also refuses
//! LISTEN), and `pgpost` asks the co-process to stop through the socket it serves.
//!
//! What differs from a primary: the stop LSN is the standby's minimum recovery point, start
//! and stop timelines are recorded and must match, and a promotion while the backup is held
//! fails it.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::time::Instant;
use tokio_postgres::Client;
use tracing::{info, warn};

use super::error::BackupError;
use super::local::{process_start, LocalRecord, LocalState};
use super::row::{BackupRow, BackupState};
use super::wait::sleep_until_option;
use super::BackupOptions;
use crate::server::{self, ServerVersion};

/// The message a backup fails with when its standby was promoted while it was held.
pub const PROMOTED: &str = "the standby was promoted while the backup was held: the copy is not \
                            a usable backup (a standby backup must end on the standby)";

/// Replay further behind than this is reported by pgpre.
const LAG_REPORTED: Duration = Duration::from_secs(60);

/// How long pgpost's request line may take to arrive on the socket.
const REQUEST_WITHIN: Duration = Duration::from_secs(10);

/// A backup held on a standby: its local state, the socket pgpost reaches it through, and the
/// timeline it started on.
#[derive(Debug)]
pub(crate) struct Standby {
    /// Its record and socket.
    pub local: LocalState,
    /// The socket pgpost connects to; taken by the wait for `done`.
    pub listener: Option<UnixListener>,
    /// The timeline of the start's checkpoint, when readable.
    pub start_timeline: Option<u32>,
}

/// The local state of backup `options`' name on the server `client` is connected to.
pub(crate) async fn local_state(
    client: &Client,
    options: &BackupOptions,
) -> Result<(LocalState, bool), BackupError> {
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), \
               (SELECT system_identifier::text FROM pg_control_system()), \
               current_setting('port')",
            &[],
        )
        .await
        .map_err(|e| BackupError::sql("reading the server's identity", e))?;
    let read = |e| BackupError::sql("reading the server's identity", e);
    let in_recovery: bool = row.try_get(0).map_err(read)?;
    let system_identifier: String = row.try_get(1).map_err(read)?;
    let port: String = row.try_get(2).map_err(read)?;
    let local = LocalState::new(
        &options.state_dir,
        &system_identifier,
        &port,
        options.table.name(),
    );
    Ok((local, in_recovery))
}

/// pgpost, `--list`: the local state when the server is a standby, or when a backup taken
/// while it was one is unfinished (it was promoted since).
pub(crate) async fn locate(
    client: &Client,
    options: &BackupOptions,
) -> Result<Option<LocalState>, BackupError> {
    let (local, in_recovery) = local_state(client, options).await?;
    if in_recovery {
        return Ok(Some(local));
    }
    // Promoted since: an unfinished backup is still the local one's, and so is the last one
    // when this server never had a state table.
    match local.read() {
        Ok(Some(record)) if !record.is_final() => Ok(Some(local)),
        Ok(Some(_))
            if super::table::columns(client, &options.table)
                .await?
                .is_empty() =>
        {
            Ok(Some(local))
        }
        _ => Ok(None),
    }
}

/// pgpre with `--primary`: the primary must be a primary, of this standby's system, and
/// archive (when the archive is checked).
pub(crate) async fn check_primary(
    standby: &Client,
    primary: &crate::conn::ConnSettings,
    archive_checked: bool,
) -> Result<(), BackupError> {
    let identity = "SELECT pg_is_in_recovery(), \
           (SELECT system_identifier::text FROM pg_control_system()), \
           current_setting('archive_mode'), current_setting('archive_command'), \
           coalesce(current_setting('archive_library', true), '')";
    let read = |e| BackupError::sql("reading the primary's identity", e);
    let own: String = standby
        .query_one(identity, &[])
        .await
        .and_then(|row| row.try_get(1))
        .map_err(read)?;
    let session = primary.connect().await?;
    let row = session
        .client
        .query_one(identity, &[])
        .await
        .map_err(read)?;
    let in_recovery: bool = row.try_get(0).map_err(read)?;
    let system: String = row.try_get(1).map_err(read)?;
    if in_recovery {
        return Err(BackupError::Primary(
            "--primary points at a server in recovery, not at a primary".into(),
        ));
    }
    if system != own {
        return Err(BackupError::Primary(format!(
            "--primary is another system (system identifier {system}; this standby's is {own})"
        )));
    }
    let text = |i| row.try_get::<_, String>(i).map_err(read);
    let problem = super::archive::archiving_problem(&text(2)?, &text(3)?, &text(4)?);
    match problem {
        Some(problem) if archive_checked => Err(BackupError::ArchivingOff(format!(
            "on the primary: {problem}"
        ))),
        _ => Ok(()),
    }
}

/// What pgpre says before a standby backup starts: replay paused, or far behind.
pub(crate) async fn replay_warnings(client: &Client, version: ServerVersion) -> Vec<String> {
    let Ok(row) = client
        .query_one(server::replay_state_sql(version), &[])
        .await
    else {
        return Vec::new();
    };
    let mut warnings = Vec::new();
    if row.try_get::<_, bool>("paused").unwrap_or(false) {
        warnings.push(
            "replay is paused on this standby: the backup holds what was replayed before the \
             pause, and pgpost's stop waits for nothing newer"
                .to_string(),
        );
    }
    if let Ok(Some(lag)) = row.try_get::<_, Option<f64>>("lag") {
        if lag > LAG_REPORTED.as_secs_f64() {
            warnings.push(format!(
                "replay on this standby lags {lag:.0} s behind the WAL it received: the backup \
                 is that much older than the primary"
            ));
        }
    }
    warnings
}

/// Ends an earlier unfinished backup of this name: superseded when its co-process lives (it
/// is sent SIGTERM), gone when it does not.
pub(crate) fn take_over(local: &LocalState) -> Result<(), BackupError> {
    let Some(record) = local.read()? else {
        return Ok(());
    };
    if record.is_final() {
        return Ok(());
    }
    let alive = record.holder_alive();
    let reason = match alive {
        true => {
            "superseded by a new backup: a later pgpre ended this one (its co-process got \
                 SIGTERM)"
        }
        false => {
            "the co-process holding this backup is gone (its session ended, so the server \
                  ended backup mode)"
        }
    };
    local.update(|r| fail(r, reason))?;
    if let (true, Some(pid)) = (alive, record.pid) {
        warn!("superseding the running backup held by co-process {pid}");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    Ok(())
}

/// Marks `record` failed with `reason` when unfinished; false when it already ended.
fn fail(record: &mut LocalRecord, reason: &str) -> bool {
    if record.is_final() {
        return false;
    }
    record.state = BackupState::Failed.as_str().into();
    record.error = Some(reason.to_string());
    record.finished_at = Some(now_text());
    true
}

/// Now, as the local records say it (UTC, like `now()::text` with `TimeZone=UTC`).
fn now_text() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S%.6f+00")
        .to_string()
}

/// Serves the socket, then records this co-process as the holder of a running backup.
pub(crate) async fn record_running(
    client: &Client,
    local: &LocalState,
    label: &str,
    start_lsn: &str,
    backend_pid: i32,
) -> Result<Standby, BackupError> {
    let socket = local.socket_path();
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(|source| BackupError::Output {
        path: socket.clone(),
        source,
    })?;
    let start_timeline = checkpoint_timeline(client).await;
    let me = std::process::id() as i32;
    local.write(&LocalRecord {
        name: local_name(local),
        state: BackupState::Running.as_str().into(),
        pid: Some(me),
        process_start: process_start(me),
        backend_pid: Some(backend_pid),
        label: Some(label.to_string()),
        start_lsn: Some(start_lsn.to_string()),
        start_timeline,
        started_at: Some(now_text()),
        ..LocalRecord::default()
    })?;
    Ok(Standby {
        local: local.clone(),
        listener: Some(listener),
        start_timeline,
    })
}

/// This process's start time, as the record holds it.
pub(crate) fn own_process_start() -> Option<String> {
    process_start(std::process::id() as i32)
}

fn local_name(local: &LocalState) -> String {
    local
        .record_path()
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Records a backup that failed while starting.
pub(crate) fn record_start_failed(local: &LocalState, label: &str, reason: &str) {
    let record = LocalRecord {
        name: local_name(local),
        state: BackupState::Failed.as_str().into(),
        label: Some(label.to_string()),
        error: Some(reason.to_string()),
        finished_at: Some(now_text()),
        ..LocalRecord::default()
    };
    if let Err(error) = local.write(&record) {
        warn!("cannot record the failure: {error}");
    }
}

/// Records the failure of the backup this co-process holds (nothing when the record ended
/// or belongs to a later backup), and stops serving the socket.
pub(crate) fn record_failed(local: &LocalState, reason: &str) {
    let me = std::process::id() as i32;
    if let Err(error) = local.update(|r| r.pid == Some(me) && fail(r, reason)) {
        warn!("cannot record the failure: {error}");
    }
    remove_socket(local);
}

/// Removes the socket when the record is still this co-process's.
fn remove_socket(local: &LocalState) {
    let me = std::process::id() as i32;
    if local.read().ok().flatten().and_then(|r| r.pid) == Some(me) {
        let _ = std::fs::remove_file(local.socket_path());
    }
}

/// The timeline of the last checkpoint (on a standby: the restartpoint the start made).
async fn checkpoint_timeline(client: &Client) -> Option<u32> {
    let row = client
        .query_one("SELECT timeline_id::int8 FROM pg_control_checkpoint()", &[])
        .await
        .ok()?;
    u32::try_from(row.try_get::<_, i64>(0).ok()?).ok()
}

/// The timeline of the standby's minimum recovery point: the stop's timeline.
async fn stop_timeline(client: &Client) -> Option<u32> {
    let row = client
        .query_one(
            "SELECT min_recovery_end_timeline::int8 FROM pg_control_recovery()",
            &[],
        )
        .await
        .ok()?;
    u32::try_from(row.try_get::<_, i64>(0).ok()?).ok()
}

/// Why a backup whose timeline moved cannot be used; `None` when it did not.
pub fn timeline_change(start: Option<u32>, stop: Option<u32>) -> Option<String> {
    match (start, stop) {
        (Some(start), Some(stop)) if stop != start && stop != 0 => Some(format!(
            "the standby's timeline changed from {start} to {stop} during the backup (its \
             upstream was promoted): the copy is not a usable backup"
        )),
        _ => None,
    }
}

/// Stores the stop function's result, unless the timeline moved (then the backup failed).
pub(crate) async fn complete(
    client: &Client,
    standby: &Standby,
    stop_lsn: &str,
    backup_label: &str,
    tablespace_map: Option<&str>,
) -> Result<(), BackupError> {
    let start = super::archive::label_timeline(backup_label).or(standby.start_timeline);
    let stop = stop_timeline(client).await;
    if let Some(reason) = timeline_change(start, stop) {
        record_failed(&standby.local, &reason);
        return Err(BackupError::Coproc(reason));
    }
    let me = std::process::id() as i32;
    let updated = standby.local.update(|r| {
        if r.pid != Some(me) || r.is_final() {
            return false;
        }
        r.state = BackupState::Complete.as_str().into();
        r.stop_lsn = Some(stop_lsn.to_string());
        r.start_timeline = start;
        r.stop_timeline = stop.or(start);
        r.backup_label = Some(backup_label.to_string());
        r.tablespace_map = tablespace_map.map(str::to_string);
        r.finished_at = Some(now_text());
        r.wal_archived = Some("unchecked".into());
        true
    })?;
    remove_socket(&standby.local);
    if !updated {
        tracing::error!("the local state changed under us; backup_label follows:\n{backup_label}");
        return Err(BackupError::Coproc(
            "the backup completed but its local state was taken over".into(),
        ));
    }
    Ok(())
}

/// The co-process: waits for pgpost's request on the socket; returns the stream to answer on.
pub(crate) async fn next_request(listener: &UnixListener) -> Option<UnixStream> {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors, say: try again in a while, not at once.
                warn!("cannot accept pgpost's connection: {error}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        let read = tokio::time::timeout(REQUEST_WITHIN, reader.read_line(&mut line)).await;
        if matches!(read, Ok(Ok(_))) && line.trim() == "stop" {
            return Some(reader.into_inner());
        }
    }
}

/// The co-process marks the record `done` (pgpost asked to stop).
pub(crate) fn mark_done(local: &LocalState) {
    let me = std::process::id() as i32;
    let done = local.update(|r| {
        let running = r.state == BackupState::Running.as_str();
        if r.pid == Some(me) && running {
            r.state = BackupState::Done.as_str().into();
        }
        running
    });
    if let Err(error) = done {
        warn!("cannot record the stop request: {error}");
    }
}

/// The co-process tells pgpost the outcome; pgpost reads the record itself.
pub(crate) async fn answer(mut stream: UnixStream, outcome: &Result<(), BackupError>) {
    let line = match outcome {
        Ok(()) => "complete\n".to_string(),
        Err(error) => format!("failed {}\n", error.to_string().replace('\n', " ")),
    };
    let _ = stream.write_all(line.as_bytes()).await;
}

/// pgpost on a standby: stops the running backup (or, with `fetch`, reads the last complete
/// one) and returns its row.
pub(crate) async fn finish(
    local: &LocalState,
    options: &BackupOptions,
    fetch: bool,
) -> Result<BackupRow, BackupError> {
    let record = local.read()?.ok_or_else(|| {
        BackupError::NoBackup(format!(
            "no backup named {:?} was started on this standby (its state would be in {})",
            options.table.name(),
            local.dir().display()
        ))
    })?;
    let row = record.to_row()?;
    match row.state {
        BackupState::Complete if fetch => Ok(row),
        state if fetch => Err(BackupError::NoBackup(format!(
            "the last backup ({}) is {state}, not complete",
            describe(&row)
        ))),
        BackupState::Complete => Err(BackupError::NoBackup(format!(
            "the last backup ({}) already completed at {}; pgpost --fetch prints it again",
            describe(&row),
            row.finished_at.as_deref().unwrap_or("?")
        ))),
        BackupState::Failed => Err(failed(&row)),
        _ if !row.holder_alive => Err(mark_gone(local, &row)),
        _ => {
            ask_to_stop(&local.socket_path(), &row, options).await?;
            let row = local
                .read()?
                .ok_or_else(|| BackupError::NoBackup("the local state disappeared".into()))?
                .to_row()?;
            match row.state {
                BackupState::Complete => Ok(row),
                BackupState::Failed => Err(failed(&row)),
                _ if !row.holder_alive => Err(mark_gone(local, &row)),
                state => Err(BackupError::Coproc(format!(
                    "the co-process ended the exchange but the backup is still {state}"
                ))),
            }
        }
    }
}

/// How messages name a backup: its label.
pub(crate) fn describe(row: &BackupRow) -> String {
    format!("label {:?}", row.label.as_deref().unwrap_or(""))
}

/// The error of a backup that ended in `failed`.
pub(crate) fn failed(row: &BackupRow) -> BackupError {
    BackupError::Failed {
        label: row.label.clone().unwrap_or_default(),
        reason: row
            .error
            .clone()
            .unwrap_or_else(|| "no reason recorded".to_string()),
    }
}

/// The co-process is gone: record it and return the failure.
fn mark_gone(local: &LocalState, row: &BackupRow) -> BackupError {
    let reason = "the co-process holding the backup is gone (its session ended, so the server \
                  ended backup mode)";
    if let Err(error) = local.update(|r| fail(r, reason)) {
        warn!("cannot record the failure: {error}");
    }
    match local.read().ok().flatten().and_then(|r| r.to_row().ok()) {
        Some(current) if current.state == BackupState::Failed => failed(&current),
        _ => BackupError::Failed {
            label: row.label.clone().unwrap_or_default(),
            reason: reason.to_string(),
        },
    }
}

/// Whether the co-process of `row` runs now (same pid and start time).
fn still_alive(row: &BackupRow) -> bool {
    row.backend_start.is_some() && row.pid.and_then(process_start) == row.backend_start
}

/// Asks the co-process to stop and waits for its answer (the end of the stream), within
/// `stop_timeout`. A co-process that dies meanwhile is no error here: the record says the
/// rest. A living one that cannot be reached is (nothing is marked).
async fn ask_to_stop(
    socket: &Path,
    row: &BackupRow,
    options: &BackupOptions,
) -> Result<(), BackupError> {
    let deadline = options.stop_timeout.map(|limit| Instant::now() + limit);
    let mut stream = match UnixStream::connect(socket).await {
        Ok(stream) => stream,
        Err(error) if still_alive(row) => {
            return Err(BackupError::Coproc(format!(
                "cannot reach the co-process (pid {}) holding the backup through {}: {error}",
                row.pid.unwrap_or_default(),
                socket.display()
            )))
        }
        Err(error) => {
            info!("the co-process is gone ({error}); reading its record");
            return Ok(());
        }
    };
    let exchange = async {
        stream.write_all(b"stop\n").await?;
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer).await?;
        Ok::<String, std::io::Error>(answer)
    };
    tokio::select! {
        answer = exchange => {
            match answer {
                Ok(answer) => info!("the co-process answered: {}", answer.trim()),
                Err(error) => info!("the co-process did not answer ({error}); reading its record"),
            }
            Ok(())
        }
        () = sleep_until_option(deadline) => Err(BackupError::Timeout(format!(
            "the backup did not complete within stop_timeout ({} s); it goes on, and its \
             outcome will be recorded in {}: run pgpost again to keep waiting",
            options.stop_timeout.map_or(0, |limit| limit.as_secs()),
            socket.with_extension("json").display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeline_change_fails_the_backup() {
        assert_eq!(timeline_change(Some(1), Some(1)), None);
        assert_eq!(timeline_change(None, Some(2)), None);
        assert_eq!(timeline_change(Some(1), Some(0)), None, "0: not known");
        let changed = timeline_change(Some(1), Some(2)).unwrap();
        assert!(changed.contains("from 1 to 2"), "{changed}");
    }

    #[test]
    fn failing_keeps_the_first_reason() {
        let mut record = LocalRecord {
            state: "running".into(),
            ..LocalRecord::default()
        };
        assert!(fail(&mut record, PROMOTED));
        assert!(!fail(&mut record, "later"));
        assert_eq!(record.error.as_deref(), Some(PROMOTED));
        assert!(PROMOTED.contains("promoted"));
    }
}
