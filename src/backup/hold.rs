//! The detached co-process: starts backup mode, holds the session, and stops it when `pgpost` says `done`.

use futures_util::{Stream, StreamExt};
use nix::sys::signal::Signal;
use tokio::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

use super::local::LocalState;
use super::standby;
use super::start::{start, with_keepalive_defaults, Handshake, HeldBackup, Holder};
use super::table::{self, BackupState, ReadError};
use super::wait::{sleep_until_option, SessionWatch, Wake, Watch};
use super::{BackupError, BackupOptions};
use crate::conn::{ConnSettings, Session, SessionEvent};
use crate::server;
use crate::shutdown::ShutdownSignals;

/// Runs the co-process to the end. Returns Ok only when the backup completed.
pub async fn run(
    settings: &ConnSettings,
    options: &BackupOptions,
    handshake: &mut dyn Handshake,
) -> Result<(), BackupError> {
    let settings = &with_keepalive_defaults(settings);
    let mut signals = ShutdownSignals::new()
        .map_err(|error| BackupError::System(format!("cannot handle signals: {error}")))?;
    let started = tokio::select! {
        result = start(settings, options, handshake) => result,
        Some(signal) = signals.next() => Err(BackupError::Coproc(format!(
            "the co-process received {} while starting the backup", signal.as_str()
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
    signals: &mut ShutdownSignals,
) -> Result<(), BackupError> {
    let deadline = options.backup_timeout.map(|limit| Instant::now() + limit);
    if held.standby.is_some() {
        return hold_on_standby(held, settings, options, signals, deadline).await;
    }
    let mut watch = SessionWatch {
        session: &mut held.session,
        table: &options.table,
    };
    let outcome = wait_for_done(&mut watch, &held.holder, options, signals, deadline).await;
    match outcome {
        WaitOutcome::StopRequested => stop(held, settings, options, signals, deadline).await,
        WaitOutcome::Abort(reason) => abort(held, options, reason).await,
        WaitOutcome::Lost(reason) => {
            record_after_loss(settings, options, &held.holder, None, &reason).await;
            Err(BackupError::Coproc(reason))
        }
        WaitOutcome::Disowned(reason) => {
            warn!("{reason}");
            Err(BackupError::Coproc(reason))
        }
    }
}

/// Why a standby's wait for pgpost ended.
enum StandbyWait {
    /// pgpost asked to stop, on this stream (it gets the outcome).
    Stop(tokio::net::UnixStream),
    /// Something else ended it: mark failed and end backup mode.
    Abort(String),
    /// The session is gone; the server has ended backup mode.
    Lost(String),
}

/// On a standby: holds backup mode until pgpost asks on the socket, a timeout, a signal, a
/// lost session or a promotion (re-checked every `recheck_interval`: no event says it).
async fn hold_on_standby(
    mut held: HeldBackup,
    settings: &ConnSettings,
    options: &BackupOptions,
    signals: &mut ShutdownSignals,
    deadline: Option<Instant>,
) -> Result<(), BackupError> {
    let Some(listener) = held.standby.as_mut().and_then(|s| s.listener.take()) else {
        return abort(
            held,
            options,
            "the co-process has no socket for pgpost".into(),
        )
        .await;
    };
    let outcome = wait_on_standby(&mut held.session, &listener, options, signals, deadline).await;
    let local = held.standby.as_ref().map(|s| s.local.clone());
    match outcome {
        StandbyWait::Stop(stream) => {
            if let Some(local) = &local {
                standby::mark_done(local);
            }
            let result = stop(held, settings, options, signals, deadline).await;
            standby::answer(stream, &result).await;
            result
        }
        StandbyWait::Abort(reason) => abort(held, options, reason).await,
        StandbyWait::Lost(reason) => {
            let holder = held.holder.clone();
            drop(held);
            record_after_loss(settings, options, &holder, local.as_ref(), &reason).await;
            Err(BackupError::Coproc(reason))
        }
    }
}

async fn wait_on_standby(
    session: &mut Session,
    listener: &tokio::net::UnixListener,
    options: &BackupOptions,
    signals: &mut ShutdownSignals,
    deadline: Option<Instant>,
) -> StandbyWait {
    loop {
        let recheck = tokio::time::sleep(options.recheck_interval);
        tokio::select! {
            biased;
            () = sleep_until_option(deadline) => return StandbyWait::Abort(timeout_reason(options)),
            Some(signal) = signals.next() => return StandbyWait::Abort(signal_reason(signal)),
            Some(stream) = standby::next_request(listener) => return StandbyWait::Stop(stream),
            event = session.events.recv() => match event {
                Some(SessionEvent::Notice(notice)) => info!("server notice: {}", notice.message()),
                Some(SessionEvent::Notification(_)) => {}
                Some(SessionEvent::Closed(reason)) => return StandbyWait::Lost(lost_reason(reason)),
                None => return StandbyWait::Lost(lost_reason(None)),
            },
            () = recheck => {
                match session.client.query_one("SELECT pg_is_in_recovery()", &[]).await {
                    Ok(row) if !row.try_get::<_, bool>(0).unwrap_or(true) => {
                        return StandbyWait::Abort(standby::PROMOTED.to_string());
                    }
                    Ok(_) => debug!("still a standby; waiting for pgpost"),
                    Err(error) if error.as_db_error().is_none() => {
                        return StandbyWait::Lost(lost_reason(Some(error.to_string())));
                    }
                    Err(error) => warn!("cannot check for a promotion: {error}"),
                }
            }
        }
    }
}

fn timeout_reason(options: &BackupOptions) -> String {
    format!(
        "backup_timeout ({} s) ran out before pgpost asked to stop the backup",
        options.backup_timeout.map_or(0, |limit| limit.as_secs())
    )
}

fn signal_reason(signal: Signal) -> String {
    format!(
        "the co-process received {} while holding the backup",
        signal.as_str()
    )
}

/// Records the failure of the backup `held` holds, in its state table row or local state.
async fn record_failed(held: &HeldBackup, options: &BackupOptions, reason: &str) {
    if let Some(standby) = &held.standby {
        standby::record_failed(&standby.local, reason);
        return;
    }
    if let Err(error) = table::set_failed(
        &held.session.client,
        &options.table,
        held.holder.pid,
        held.holder.backend_start.as_deref(),
        reason,
    )
    .await
    {
        warn!("cannot record the failure: {error}");
    }
}

/// Re-reads the row on every NOTIFY and `recheck_interval` after the last read, until it
/// says `done`, belongs to someone else, or the deadline, a signal or the session's end comes.
async fn wait_for_done(
    watch: &mut impl Watch,
    holder: &Holder,
    options: &BackupOptions,
    signals: &mut (impl Stream<Item = Signal> + Unpin),
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
                    return WaitOutcome::Abort(timeout_reason(options));
                }
                Some(signal) = signals.next() => {
                    return WaitOutcome::Abort(signal_reason(signal));
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
pub(crate) async fn stop(
    held: HeldBackup,
    settings: &ConnSettings,
    options: &BackupOptions,
    signals: &mut ShutdownSignals,
    deadline: Option<Instant>,
) -> Result<(), BackupError> {
    info!("stop requested; calling the stop function");
    let client = &held.session.client;
    // Without the server's archive wait: the label is stored the moment backup mode ends;
    // pgpost checks the archive afterwards.
    let stop = client.query_one(server::backup_stop_sql(held.version), &[]);
    let interrupted = tokio::select! {
        result = stop => match result {
            Ok(row) => return complete(&held, options, row).await,
            Err(error) if error.as_db_error().is_some() => {
                // The session survives a failed statement: record it there.
                let error = BackupError::sql("stopping the backup", error);
                record_failed(&held, options, &error.to_string()).await;
                return Err(error);
            }
            Err(error) => lost_reason(Some(error.to_string())),
        },
        _ = sleep_until_option(deadline) => format!(
            "backup_timeout ({} s) ran out while stopping the backup",
            options.backup_timeout.map_or(0, |limit| limit.as_secs())
        ),
        Some(signal) = signals.next() => format!(
            "the co-process received {} while stopping the backup", signal.as_str()
        ),
    };
    // The session is busy or gone: closing it ends backup mode on the server.
    let holder = held.holder.clone();
    let local = held.standby.as_ref().map(|s| s.local.clone());
    drop(held);
    record_after_loss(settings, options, &holder, local.as_ref(), &interrupted).await;
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
    if let Some(standby) = &held.standby {
        standby::complete(
            client,
            standby,
            &stop_lsn,
            &backup_label,
            tablespace_map.as_deref(),
        )
        .await?;
        info!(
            "backup {:?} complete at {stop_lsn} (on a standby)",
            held.label
        );
        return Ok(());
    }
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
pub(crate) async fn abort(
    held: HeldBackup,
    options: &BackupOptions,
    reason: String,
) -> Result<(), BackupError> {
    warn!("ending the backup: {reason}");
    let client = &held.session.client;
    if let Err(error) = client
        .query_one(server::backup_stop_sql(held.version), &[])
        .await
    {
        warn!("cannot end backup mode cleanly: {error}");
    }
    record_failed(&held, options, &reason).await;
    Err(BackupError::Coproc(reason))
}

/// After the session is lost, records the failure on a fresh session, retrying
/// for a while so that a restarting server still gets the reason.
async fn record_after_loss(
    settings: &ConnSettings,
    options: &BackupOptions,
    holder: &Holder,
    local: Option<&LocalState>,
    reason: &str,
) {
    warn!("{reason}");
    if let Some(local) = local {
        standby::record_failed(local, reason);
        return;
    }
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
        signals: &mut (impl Stream<Item = Signal> + Unpin),
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
        let outcome = wait_with(
            &mut script,
            &options(10, 0),
            &mut stream::iter([Signal::SIGTERM]),
        )
        .await;
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
