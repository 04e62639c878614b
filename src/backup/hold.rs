//! The detached co-process: starts backup mode, holds the session, and stops it when `pgpost` says `done`.

use futures_util::{Stream, StreamExt};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_tokio::Signals;
use tokio::time::{Duration, Instant};
use tokio_postgres::Client;
use tracing::{debug, error, info, warn};

use super::table::{self, BackupState, ReadError, StateTable};
use super::wait::{sleep_until_option, SessionWatch, Wake, Watch};
use super::{BackupError, BackupOptions};
use crate::conn::{ConnSettings, Session};
use crate::server::{self, ServerVersion};

/// What the co-process tells `pgpre` through the handshake pipe.
pub trait Handshake {
    /// A warning for `pgpre` to print (e.g. archiving is off).
    fn warn(&mut self, text: &str);
    /// Backup mode is on and recorded; returns false when `pgpre` is gone.
    fn started(&mut self, start_lsn: &str) -> bool;
    /// The backup could not be started.
    fn failed(&mut self, error: &BackupError);
}

/// The backend that holds backup mode, as recorded in the row.
#[derive(Clone, Debug)]
pub struct Holder {
    /// Backend pid.
    pub pid: i32,
    /// Backend start time (text), so a reused pid is never taken for it.
    pub backend_start: Option<String>,
}

/// A session in backup mode, recorded as `running`.
struct HeldBackup {
    session: Session,
    version: ServerVersion,
    holder: Holder,
    label: String,
    start_lsn: String,
}

/// Runs the co-process to the end. Returns Ok only when the backup completed.
pub async fn run(
    settings: &ConnSettings,
    options: &BackupOptions,
    handshake: &mut dyn Handshake,
) -> Result<(), BackupError> {
    let settings = &with_keepalive_defaults(settings);
    let mut signals = Signals::new([SIGTERM, SIGINT])
        .map_err(|error| BackupError::System(format!("cannot handle signals: {error}")))?;
    let started = tokio::select! {
        result = start(settings, options, handshake) => result,
        Some(signal) = signals.next() => Err(BackupError::Coproc(format!(
            "the co-process received {} while starting the backup", signal_name(signal)
        ))),
    };
    let held = match started {
        Ok(held) => held,
        Err(error) => {
            error!("{error}");
            handshake.failed(&error);
            return Err(error);
        }
    };
    info!(
        "backup {:?} running from {}, held by backend {}",
        held.label, held.start_lsn, held.holder.pid
    );
    if !handshake.started(&held.start_lsn) {
        let reason = "pgpre ended before it could report the start, so nobody knows of this backup";
        return abort(held, options, reason.to_string()).await;
    }
    hold(held, settings, options, &mut signals).await
}

/// The held session must notice a dead network within about a minute, not the
/// kernel's default two hours: keepalives after 30 s idle, every 10 s, 3 probes,
/// unless the connection string says otherwise.
fn with_keepalive_defaults(settings: &ConnSettings) -> ConnSettings {
    let mut settings = settings.clone();
    if settings.keepalives {
        settings
            .keepalives_idle
            .get_or_insert(Duration::from_secs(30));
        settings
            .keepalives_interval
            .get_or_insert(Duration::from_secs(10));
        settings.keepalives_retries.get_or_insert(3);
    }
    settings
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        _ => "a signal",
    }
}

async fn server_version(client: &Client) -> Result<ServerVersion, BackupError> {
    let text: String = client
        .query_one("SELECT current_setting('server_version_num')", &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| BackupError::sql("reading the server version", e))?;
    ServerVersion::parse(&text).ok_or_else(|| BackupError::Sql {
        action: "reading the server version",
        message: format!("unexpected server_version_num {text:?}"),
        hint: None,
        status: crate::exit::ExitStatus::Server,
        code: None,
    })
}

/// Checks the server version and turns off the timeouts a role or database may
/// set (`statement_timeout`, `idle_session_timeout`, ...) for this long-lived session.
pub(crate) async fn prepare_session(client: &Client) -> Result<ServerVersion, BackupError> {
    let version = server_version(client).await?;
    debug!("server version {version}");
    if !version.is_supported() {
        return Err(BackupError::UnsupportedVersion(version));
    }
    client
        .batch_execute(server::session_guard_sql(version))
        .await
        .map_err(|e| BackupError::sql("preparing the session", e))?;
    Ok(version)
}

/// The GRANTs a non-superuser needs, as a hint.
fn privilege_hint(version: ServerVersion, role: &str, table: &StateTable) -> String {
    let mut grants = server::backup_grants(version, role);
    grants.push(format!(
        "and CREATE on the schema of {} (or create it once as its owner)",
        table.display_name()
    ));
    format!("as a superuser, in this database: {}", grants.join(" "))
}

async fn start(
    settings: &ConnSettings,
    options: &BackupOptions,
    handshake: &mut dyn Handshake,
) -> Result<HeldBackup, BackupError> {
    let session = settings.connect().await?;
    let client = &session.client;
    let version = prepare_session(client).await?;
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery() AS in_recovery, \
               current_setting('archive_mode') AS archive_mode, pg_backend_pid() AS pid, \
               current_user::text AS role",
            &[],
        )
        .await
        .map_err(|e| BackupError::sql("reading the server state", e))?;
    let column_error = |e| BackupError::sql("reading the server state", e);
    let in_recovery: bool = row.try_get("in_recovery").map_err(column_error)?;
    let archive_mode: String = row.try_get("archive_mode").map_err(column_error)?;
    let pid: i32 = row.try_get("pid").map_err(column_error)?;
    let role: String = row.try_get("role").map_err(column_error)?;
    debug!("connected as {role:?}, backend {pid}, archive_mode {archive_mode}");
    if in_recovery {
        return Err(BackupError::Standby);
    }
    if archive_mode == "off" {
        let text = "archive_mode is off: the WAL written during the backup must be copied by \
                    other means (pg_receivewal, or a snapshot that includes pg_wal)";
        warn!("{text}");
        handshake.warn(text);
    }
    let table = &options.table;
    client
        .query_one(&table.lock_sql(), &[])
        .await
        .map_err(|e| BackupError::sql("taking the advisory lock of the state table", e))?;
    let label = if options.label.is_empty() {
        default_label(client).await?
    } else {
        options.label.clone()
    };
    let result = start_locked(client, version, &label, options).await;
    if let Err((BackupError::Timeout(_), _)) = &result {
        // The start function still runs on our session: cancel it, so that backup
        // mode never begins and the session is free for the unlock below.
        cancel_backend(settings, pid).await;
    }
    if let Err(error) = client.query_one(&table.unlock_sql(), &[]).await {
        warn!("cannot release the advisory lock: {error}");
    }
    let (start_lsn, backend_start) = match result {
        Ok(started) => started,
        Err((error, owns_row)) => {
            let error = error.with_privilege_hint(|| privilege_hint(version, &role, table));
            if owns_row {
                record_start_failure(settings, &session, options, &label, &error).await;
            }
            return Err(error);
        }
    };
    client
        .batch_execute(&table.listen_sql())
        .await
        .map_err(|e| BackupError::sql("listening for state changes", e))?;
    Ok(HeldBackup {
        session,
        version,
        holder: Holder { pid, backend_start },
        label,
        start_lsn,
    })
}

/// Cancels the statement running on backend `pid`, from a fresh session.
async fn cancel_backend(settings: &ConnSettings, pid: i32) {
    let cancelled = match settings.connect().await {
        Ok(fresh) => fresh
            .client
            .query_one("SELECT pg_cancel_backend($1)", &[&pid])
            .await
            .map(|_| ())
            .map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    };
    if let Err(error) = cancelled {
        warn!("cannot cancel the start function: {error}");
    }
}

async fn default_label(client: &Client) -> Result<String, BackupError> {
    client
        .query_one(
            "SELECT 'safe-backup ' || to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
            &[],
        )
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| BackupError::sql("making the backup label", e))
}

/// Under the advisory lock: table, take-over, start, `running`. The flag in the
/// error says whether the row was already ours (so the failure is recorded there).
async fn start_locked(
    client: &Client,
    version: ServerVersion,
    label: &str,
    options: &BackupOptions,
) -> Result<(String, Option<String>), (BackupError, bool)> {
    let table = &options.table;
    table::with_table_lock(client, table, table::ensure(client, table))
        .await
        .map_err(|e| (BackupError::sql("locking the state table", e), false))?
        .map_err(|e| (e, false))?;
    take_over(client, table).await.map_err(|e| (e, false))?;
    let start_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
        [&label, &options.fast_checkpoint];
    let start = client.query_one(server::backup_start_sql(version), &start_params);
    let start_lsn: String = match options.start_timeout {
        Some(limit) => tokio::time::timeout(limit, start).await.map_err(|_| {
            let message = format!(
                "the backup did not start within start_timeout ({} s): the checkpoint takes longer",
                limit.as_secs()
            );
            (BackupError::Timeout(message), true)
        })?,
        None => start.await,
    }
    .and_then(|row| row.try_get(0))
    .map_err(|e| (BackupError::sql("starting the backup", e), true))?;
    let set_running_sql = table.set_running_sql();
    let backend_start: Option<String> = table::with_table_lock(
        client,
        table,
        client.query_one(&set_running_sql, &[&label, &start_lsn]),
    )
    .await
    .and_then(|inserted| inserted)
    .and_then(|row| row.try_get(0))
    .map_err(|e| (BackupError::sql("recording the backup as running", e), true))?;
    table::notify(client, table, BackupState::Running).await;
    Ok((start_lsn, backend_start))
}

/// Ends an earlier backup still in the row: superseded when its holder lives
/// (its session is then terminated), or gone when it does not.
async fn take_over(client: &Client, table: &StateTable) -> Result<(), BackupError> {
    let Some(row) = table::read_row(client, table).await? else {
        return Ok(());
    };
    if row.state.is_final() {
        return Ok(());
    }
    let Some(pid) = row.pid else {
        return Ok(());
    };
    let reason = if row.holder_alive {
        format!(
            "superseded by a new backup: a later pgpre ended this one (its backend {pid} was terminated)"
        )
    } else {
        "the co-process holding this backup is gone (its session ended, so the server ended \
         backup mode)"
            .to_string()
    };
    table::set_failed(client, table, pid, row.backend_start.as_deref(), &reason)
        .await
        .map_err(|e| BackupError::sql("recording the earlier backup as failed", e))?;
    if row.holder_alive {
        if let Some(backend_start) = &row.backend_start {
            warn!("superseding the running backup held by backend {pid}");
            client
                .query(table.terminate_holder_sql(), &[&pid, backend_start])
                .await
                .map_err(|e| BackupError::sql("ending the earlier backup's session", e))?;
        }
    }
    Ok(())
}

/// Records a backup that failed while starting: on the same session unless it
/// is still busy (a start that timed out), else on a fresh one.
async fn record_start_failure(
    settings: &ConnSettings,
    session: &Session,
    options: &BackupOptions,
    label: &str,
    error: &BackupError,
) {
    let reason = error.to_string();
    let sql = options.table.set_start_failed_sql();
    let session_busy = matches!(error, BackupError::Timeout(_));
    if !session_busy
        && matches!(
            table::with_table_lock(
                &session.client,
                &options.table,
                session.client.query(&sql, &[&label, &reason])
            )
            .await,
            Ok(Ok(_))
        )
    {
        table::notify(&session.client, &options.table, BackupState::Failed).await;
        return;
    }
    let recorded = match settings.connect().await {
        Ok(fresh) => match table::with_table_lock(
            &fresh.client,
            &options.table,
            fresh.client.query(&sql, &[&label, &reason]),
        )
        .await
        .and_then(|inserted| inserted)
        {
            Ok(_) => {
                table::notify(&fresh.client, &options.table, BackupState::Failed).await;
                Ok(())
            }
            Err(error) => Err(error.to_string()),
        },
        Err(error) => Err(error.to_string()),
    };
    if let Err(error) = recorded {
        warn!("cannot record the failure in the state table: {error}");
    }
}

/// Why the wait for `done` ended.
#[derive(Debug, PartialEq)]
enum WaitOutcome {
    /// `pgpost` set `done`.
    StopRequested,
    /// Something else ended it: mark failed and end backup mode.
    Abort(String),
    /// The session is gone; the server has ended backup mode.
    Lost(String),
    /// The row no longer belongs to this backup, or was marked failed by someone else.
    Disowned(String),
}

/// Holds backup mode until `done`, a timeout, a signal or a lost session.
async fn hold(
    mut held: HeldBackup,
    settings: &ConnSettings,
    options: &BackupOptions,
    signals: &mut Signals,
) -> Result<(), BackupError> {
    let deadline = options.backup_timeout.map(|limit| Instant::now() + limit);
    let mut watch = SessionWatch {
        session: &mut held.session,
        table: &options.table,
    };
    let outcome = wait_for_done(&mut watch, &held.holder, options, signals, deadline).await;
    match outcome {
        WaitOutcome::StopRequested => stop(held, settings, options, signals, deadline).await,
        WaitOutcome::Abort(reason) => abort(held, options, reason).await,
        WaitOutcome::Lost(reason) => {
            record_after_loss(settings, options, &held.holder, &reason).await;
            Err(BackupError::Coproc(reason))
        }
        WaitOutcome::Disowned(reason) => {
            warn!("{reason}");
            Err(BackupError::Coproc(reason))
        }
    }
}

/// Re-reads the row on every NOTIFY and `recheck_interval` after the last read, until it
/// says `done`, belongs to someone else, or the deadline, a signal or the session's end comes.
async fn wait_for_done(
    watch: &mut impl Watch,
    holder: &Holder,
    options: &BackupOptions,
    signals: &mut (impl Stream<Item = i32> + Unpin),
    deadline: Option<Instant>,
) -> WaitOutcome {
    loop {
        match watch.read_row().await {
            Ok(Some(row))
                if row.pid != Some(holder.pid) || row.backend_start != holder.backend_start =>
            {
                return WaitOutcome::Disowned(
                    "another backup took over the state table row; this one was superseded".into(),
                );
            }
            Ok(Some(row)) => match row.state {
                BackupState::Running => debug!("the backup is running; waiting for pgpost"),
                BackupState::Done => return WaitOutcome::StopRequested,
                BackupState::Complete | BackupState::Failed => {
                    return WaitOutcome::Disowned(format!(
                        "the backup was marked {} by someone else: {}",
                        row.state,
                        row.error.unwrap_or_default()
                    ));
                }
            },
            Ok(None) => {
                return WaitOutcome::Abort("the state table row was deleted".into());
            }
            Err(ReadError::Invalid(invalid)) => return WaitOutcome::Disowned(invalid.to_string()),
            Err(ReadError::Sql(error)) if error.is_closed() => {
                return WaitOutcome::Lost(lost_reason(None))
            }
            Err(ReadError::Sql(error)) if error.as_db_error().is_none() => {
                return WaitOutcome::Lost(lost_reason(Some(error.to_string())));
            }
            Err(ReadError::Sql(error)) => warn!("cannot read the state table: {error}"),
        }
        let recheck = tokio::time::sleep(options.recheck_interval);
        tokio::pin!(recheck);
        loop {
            // Biased: at the deadline the deadline wins, whatever else is ready.
            tokio::select! {
                biased;
                () = sleep_until_option(deadline) => {
                    return WaitOutcome::Abort(format!(
                        "backup_timeout ({} s) ran out before pgpost asked to stop the backup",
                        options.backup_timeout.map_or(0, |limit| limit.as_secs())
                    ));
                }
                Some(signal) = signals.next() => {
                    return WaitOutcome::Abort(format!(
                        "the co-process received {} while holding the backup", signal_name(signal)
                    ));
                }
                wake = watch.wake() => match wake {
                    Wake::Changed => {
                        debug!("notified of a state change");
                        break;
                    }
                    Wake::Notice(text) => info!("server notice: {text}"),
                    Wake::Closed(reason) => return WaitOutcome::Lost(lost_reason(reason)),
                },
                () = &mut recheck => break,
            }
        }
    }
}

fn lost_reason(detail: Option<String>) -> String {
    match detail {
        Some(detail) if !detail.is_empty() => {
            format!("the co-process lost its session ({detail}); the server ended backup mode")
        }
        _ => "the co-process lost its session; the server ended backup mode".to_string(),
    }
}

/// Stops backup mode and stores the result.
async fn stop(
    held: HeldBackup,
    settings: &ConnSettings,
    options: &BackupOptions,
    signals: &mut Signals,
    deadline: Option<Instant>,
) -> Result<(), BackupError> {
    info!("stop requested; calling the stop function");
    let client = &held.session.client;
    let stop_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&options.wait_for_archive];
    let stop = client.query_one(server::backup_stop_sql(held.version), &stop_params);
    let interrupted = tokio::select! {
        result = stop => match result {
            Ok(row) => return complete(&held, options, row).await,
            Err(error) if error.as_db_error().is_some() => {
                // The session survives a failed statement: record it there.
                let error = BackupError::sql("stopping the backup", error);
                let reason = error.to_string();
                if let Err(e) = table::set_failed(client, &options.table, held.holder.pid,
                    held.holder.backend_start.as_deref(), &reason).await {
                    warn!("cannot record the failure: {e}");
                }
                return Err(error);
            }
            Err(error) => lost_reason(Some(error.to_string())),
        },
        _ = sleep_until_option(deadline) => format!(
            "backup_timeout ({} s) ran out while stopping the backup (waiting for WAL archiving?)",
            options.backup_timeout.map_or(0, |limit| limit.as_secs())
        ),
        Some(signal) = signals.next() => format!(
            "the co-process received {} while stopping the backup", signal_name(signal)
        ),
    };
    // The session is busy or gone: closing it ends backup mode on the server.
    let holder = held.holder.clone();
    drop(held);
    record_after_loss(settings, options, &holder, &interrupted).await;
    Err(BackupError::Coproc(interrupted))
}

async fn complete(
    held: &HeldBackup,
    options: &BackupOptions,
    row: tokio_postgres::Row,
) -> Result<(), BackupError> {
    let column = |e| BackupError::sql("reading the stop function's result", e);
    let stop_lsn: String = row.try_get("lsn").map_err(column)?;
    let backup_label: String = row.try_get("labelfile").map_err(column)?;
    let tablespace_map: Option<String> = row.try_get("spcmapfile").map_err(column)?;
    let client = &held.session.client;
    let updated = client
        .query(
            &options.table.set_complete_sql(),
            &[&stop_lsn, &backup_label, &tablespace_map],
        )
        .await
        .map_err(|e| BackupError::sql("recording the completed backup", e))?;
    if updated.is_empty() {
        // Someone else changed the row: the label is only in our log now.
        error!("the state table row changed under us; backup_label follows:\n{backup_label}");
        return Err(BackupError::Coproc(
            "the backup completed but the state table row was taken over".into(),
        ));
    }
    table::notify(client, &options.table, BackupState::Complete).await;
    info!("backup {:?} complete at {stop_lsn}", held.label);
    Ok(())
}

/// Ends backup mode on a session that is still idle, and records the reason.
async fn abort(
    held: HeldBackup,
    options: &BackupOptions,
    reason: String,
) -> Result<(), BackupError> {
    warn!("ending the backup: {reason}");
    let client = &held.session.client;
    if let Err(error) = client
        .query_one(server::backup_stop_sql(held.version), &[&false])
        .await
    {
        warn!("cannot end backup mode cleanly: {error}");
    }
    if let Err(error) = table::set_failed(
        client,
        &options.table,
        held.holder.pid,
        held.holder.backend_start.as_deref(),
        &reason,
    )
    .await
    {
        warn!("cannot record the failure: {error}");
    }
    Err(BackupError::Coproc(reason))
}

/// After the session is lost, records the failure on a fresh session, retrying
/// for a while so that a restarting server still gets the reason.
async fn record_after_loss(
    settings: &ConnSettings,
    options: &BackupOptions,
    holder: &Holder,
    reason: &str,
) {
    warn!("{reason}");
    let give_up = Instant::now() + RECORD_RETRY_FOR;
    loop {
        match settings.connect().await {
            Ok(fresh) => {
                match table::set_failed(
                    &fresh.client,
                    &options.table,
                    holder.pid,
                    holder.backend_start.as_deref(),
                    reason,
                )
                .await
                {
                    Ok(_) => return,
                    Err(error) => warn!("cannot record the failure: {error}"),
                }
            }
            Err(error) => warn!("cannot reconnect to record the failure: {error}"),
        }
        if Instant::now() >= give_up {
            error!("giving up recording the failure; pgpost will find the co-process gone");
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// How long a co-process that lost its session keeps trying to record why.
const RECORD_RETRY_FOR: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::table::RowProblem;
    use crate::backup::wait::script::{row, Script, Step};
    use crate::config::BackupConfig;
    use futures_util::stream;

    fn options(recheck_secs: u64, backup_timeout_secs: u64) -> BackupOptions {
        let mut options = BackupOptions::from_config(&BackupConfig::default(), 0);
        options.recheck_interval = Duration::from_secs(recheck_secs);
        options.backup_timeout =
            (backup_timeout_secs > 0).then(|| Duration::from_secs(backup_timeout_secs));
        options
    }

    /// The holder the scripted rows name.
    fn holder() -> Holder {
        let row = row(BackupState::Running);
        Holder {
            pid: row.pid.unwrap_or_default(),
            backend_start: row.backend_start,
        }
    }

    async fn wait(script: &mut Script, options: &BackupOptions) -> WaitOutcome {
        wait_with(script, options, &mut stream::pending()).await
    }

    async fn wait_with(
        script: &mut Script,
        options: &BackupOptions,
        signals: &mut (impl Stream<Item = i32> + Unpin),
    ) -> WaitOutcome {
        let deadline = options.backup_timeout.map(|limit| Instant::now() + limit);
        wait_for_done(script, &holder(), options, signals, deadline).await
    }

    #[tokio::test(start_paused = true)]
    async fn backup_timeout_ends_the_wait_at_the_deadline() {
        let mut script = Script::new(row(BackupState::Running));
        let outcome = wait(&mut script, &options(10, 35)).await;
        assert_eq!(
            outcome,
            WaitOutcome::Abort(
                "backup_timeout (35 s) ran out before pgpost asked to stop the backup".into()
            )
        );
        assert_eq!(script.elapsed(), Duration::from_secs(35));
        assert_eq!(
            script.read_secs(),
            [0, 10, 20, 30],
            "one slow re-read per interval"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_missed_notify_is_caught_by_the_next_reread() {
        let mut script = Script::new(row(BackupState::Running))
            .then(15, Step::Row(Some(row(BackupState::Done))));
        assert_eq!(
            wait(&mut script, &options(10, 3600)).await,
            WaitOutcome::StopRequested
        );
        assert_eq!(script.elapsed(), Duration::from_secs(20));
        assert_eq!(script.read_secs(), [0, 10, 20]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_notify_rereads_at_once() {
        let mut script = Script::new(row(BackupState::Running))
            .then(4, Step::Row(Some(row(BackupState::Done))))
            .notify_at(4);
        assert_eq!(
            wait(&mut script, &options(10, 3600)).await,
            WaitOutcome::StopRequested
        );
        assert_eq!(script.read_secs(), [0, 4]);
    }

    /// A re-read that takes longer than the interval is followed by a full interval, not by
    /// a burst of reads making up for the ticks it missed.
    #[tokio::test(start_paused = true)]
    async fn a_slow_reread_does_not_make_reads_pile_up() {
        let mut script = Script::new(row(BackupState::Running)).reads_take(25);
        let outcome = wait(&mut script, &options(10, 100)).await;
        assert!(matches!(outcome, WaitOutcome::Abort(_)), "{outcome:?}");
        assert_eq!(script.read_secs(), [0, 35, 70]);
        assert_eq!(script.elapsed(), Duration::from_secs(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_signal_or_someone_elses_row_ends_the_wait() {
        let mut script = Script::new(row(BackupState::Running));
        let outcome = wait_with(&mut script, &options(10, 0), &mut stream::iter([SIGTERM])).await;
        assert_eq!(
            outcome,
            WaitOutcome::Abort("the co-process received SIGTERM while holding the backup".into())
        );
        let mut taken = row(BackupState::Running);
        taken.pid = Some(4242);
        let mut script = Script::new(row(BackupState::Running)).then(5, Step::Row(Some(taken)));
        let outcome = wait(&mut script, &options(10, 3600)).await;
        assert!(matches!(&outcome, WaitOutcome::Disowned(why) if why.contains("superseded")));
        let paused = Step::Invalid(RowProblem::UnknownState("paused".into()));
        let mut script = Script::new(row(BackupState::Running)).then(5, paused);
        let outcome = wait(&mut script, &options(10, 3600)).await;
        assert!(
            matches!(&outcome, WaitOutcome::Disowned(why) if why.contains("unknown state \"paused\"")),
            "{outcome:?}"
        );
        let mut script = Script::new(row(BackupState::Running)).then(5, Step::Row(None));
        let outcome = wait(&mut script, &options(10, 3600)).await;
        assert_eq!(
            outcome,
            WaitOutcome::Abort("the state table row was deleted".into())
        );
    }
}
