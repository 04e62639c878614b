//! Starting a backup: connect, prepare the session, take the lock, supersede an earlier backup,
//! call the start function (cancelled when it runs too long or `pgpre` is gone), record `running`.

use futures_util::future::BoxFuture;
use tokio::time::{Duration, Instant};
use tokio_postgres::Client;
use tracing::{debug, info, warn};

use super::archive::{self, archiving_problem, ArchiveSource};
use super::local::LocalState;
use super::standby::{self, Standby};
use super::table::{self, BackupState, StateTable};
use super::{BackupError, BackupOptions};
use crate::conn::{ConnSettings, Session};
use crate::server::{self, ServerVersion, VersionError};

/// What the co-process tells `pgpre` through the handshake pipe.
pub trait Handshake {
    /// A warning for `pgpre` to print (e.g. archiving is off).
    fn warn(&mut self, text: &str);
    /// Backup mode is on and recorded; returns false when `pgpre` is gone.
    fn started(&mut self, start_lsn: &str) -> bool;
    /// The backup could not be started.
    fn failed(&mut self, error: &BackupError);
    /// Why the start is taking long (a lock held by another backend, a spread checkpoint),
    /// said at once so that a caller with a time limit sees it.
    fn waiting(&mut self, text: &str);
    /// Resolves when whoever waits for the start is gone (`pgpre` killed or timed out: the
    /// handshake pipe's reader closed). Never resolves when nobody can go away.
    fn gone(&self) -> BoxFuture<'static, ()>;
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
pub(crate) struct HeldBackup {
    /// The session in backup mode.
    pub(crate) session: Session,
    /// Its server's version.
    pub(crate) version: ServerVersion,
    /// Its backend, as recorded in the row.
    pub(crate) holder: Holder,
    /// The label given to the start function.
    pub(crate) label: String,
    /// The start function's LSN.
    pub(crate) start_lsn: String,
    /// On a standby: the local state, its socket and the start timeline.
    pub(crate) standby: Option<Standby>,
}

/// The held session must notice a dead network within about a minute, not the
/// kernel's default two hours: keepalives after 30 s idle, every 10 s, 3 probes,
/// unless the connection string says otherwise.
pub(crate) fn with_keepalive_defaults(settings: &ConnSettings) -> ConnSettings {
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

/// More `.ready` segments than this are reported by pgpre.
const READY_BACKLOG_REPORTED: i64 = 16;

async fn server_version(client: &Client) -> Result<ServerVersion, BackupError> {
    server::read_version(client)
        .await
        .map_err(|error| match error {
            VersionError::Query(e) => BackupError::sql("reading the server version", e),
            VersionError::Unreadable(text) => BackupError::Sql {
                action: "reading the server version",
                message: format!("unexpected server_version_num {text:?}"),
                hint: None,
                status: crate::exit::ExitStatus::Server,
                code: None,
            },
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

pub(crate) async fn start(
    settings: &ConnSettings,
    options: &BackupOptions,
    handshake: &mut dyn Handshake,
) -> Result<HeldBackup, BackupError> {
    let mut gone = handshake.gone();
    let session = settings.connect().await?;
    let client = &session.client;
    let version = prepare_session(client).await?;
    name_the_process(settings, client).await;
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery() AS in_recovery, \
               current_setting('archive_mode') AS archive_mode, \
               current_setting('archive_command') AS archive_command, \
               coalesce(current_setting('archive_library', true), '') AS archive_library, \
               (SELECT coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), \
                  false) FROM pg_stat_archiver) AS archiver_failing, \
               pg_backend_pid() AS pid, current_user::text AS role",
            &[],
        )
        .await
        .map_err(|e| BackupError::sql("reading the server state", e))?;
    let column_error = |e| BackupError::sql("reading the server state", e);
    let in_recovery: bool = row.try_get("in_recovery").map_err(column_error)?;
    let archive_mode: String = row.try_get("archive_mode").map_err(column_error)?;
    let archive_command: String = row.try_get("archive_command").map_err(column_error)?;
    let archive_library: String = row.try_get("archive_library").map_err(column_error)?;
    let archiver_failing: bool = row.try_get("archiver_failing").map_err(column_error)?;
    let pid: i32 = row.try_get("pid").map_err(column_error)?;
    let role: String = row.try_get("role").map_err(column_error)?;
    debug!("connected as {role:?}, backend {pid}, archive_mode {archive_mode}");
    let local = match in_recovery {
        true => Some(standby_checks(client, version, options, &archive_mode, handshake).await?),
        false => None,
    };
    let checked =
        options.archive.source != ArchiveSource::Off && (!in_recovery || archive_mode == "always");
    match archiving_problem(&archive_mode, &archive_command, &archive_library) {
        _ if in_recovery => {}
        Some(problem) if checked => return Err(BackupError::ArchivingOff(problem)),
        Some(_) if archive_mode == "off" => {
            let text = "archive_mode is off: the WAL written during the backup must be copied by \
                        other means (pg_receivewal, or a snapshot that includes pg_wal)";
            warn!("{text}");
            handshake.warn(text);
        }
        _ => {}
    }
    if checked && archiver_failing {
        let text = format!(
            "the archiver is failing (its last failure is newer than its last success): {}",
            archive::archiver_status(client).await
        );
        warn!("{text}");
        handshake.warn(&text);
    }
    if checked && version.num() >= 120000 {
        match archive::ready_backlog(client).await {
            Some(backlog) if backlog > READY_BACKLOG_REPORTED => {
                let text = format!(
                    "{backlog} WAL segments wait to be archived: pgpost's archive check waits \
                     for them"
                );
                warn!("{text}");
                handshake.warn(&text);
            }
            _ => {}
        }
    }
    let table = &options.table;
    // One start_timeout covers the wait for the lock and the start function.
    let deadline = options.start_timeout.map(|limit| Instant::now() + limit);
    let starting = Starting { options, deadline };
    let lock_sql = table.lock_sql();
    let locked = starting
        .interruptible(
            client.query_one(&lock_sql, &[]),
            &mut gone,
            handshake,
            (LOCK_REPORT_AFTER, lock_holder(settings, pid, options)),
        )
        .await;
    match locked {
        Ok(result) => result
            .map_err(|e| BackupError::sql("taking the advisory lock of the state table", e))?,
        Err(interrupted) => {
            // The lock request still waits on our session: cancel it.
            cancel_backend(settings, pid).await;
            return Err(interrupted.into_error(options, "waiting for the lock of this backup"));
        }
    };
    let label = if options.label.is_empty() {
        default_label(client).await?
    } else {
        options.label.clone()
    };
    let target = Target {
        version,
        label: &label,
        local: local.as_ref(),
        pid,
    };
    let result = start_locked(client, &target, &starting, &mut gone, handshake).await;
    if let Err((BackupError::Timeout(_) | BackupError::Orphaned(_), _)) = &result {
        // The start function still runs on our session: cancel it, so that backup
        // mode never begins and the session is free for the unlock below.
        cancel_backend(settings, pid).await;
    }
    if let Err(error) = client.query_one(&table.unlock_sql(), &[]).await {
        warn!("cannot release the advisory lock: {error}");
    }
    let (start_lsn, backend_start, standby) = match result {
        Ok(started) => started,
        Err((error, owns_row)) => {
            let error = error.with_privilege_hint(|| privilege_hint(version, &role, table));
            match &local {
                Some(local) if owns_row => {
                    standby::record_start_failed(local, &label, &error.to_string())
                }
                None if owns_row => {
                    record_start_failure(settings, &session, options, &label, &error).await
                }
                _ => {}
            }
            return Err(error);
        }
    };
    if standby.is_none() {
        client
            .batch_execute(&table.listen_sql())
            .await
            .map_err(|e| BackupError::sql("listening for state changes", e))?;
    }
    Ok(HeldBackup {
        session,
        version,
        holder: Holder { pid, backend_start },
        label,
        start_lsn,
        standby,
    })
}

/// On a standby: the local state directory (made private), what pgpre says of replay, and
/// whether the WAL can be checked at all.
async fn standby_checks(
    client: &Client,
    version: ServerVersion,
    options: &BackupOptions,
    archive_mode: &str,
    handshake: &mut dyn Handshake,
) -> Result<LocalState, BackupError> {
    let (local, _) = standby::local_state(client, options).await?;
    local.ensure_dir()?;
    if let Some(primary) = &options.primary {
        let checked = options.archive.source != ArchiveSource::Off;
        standby::check_primary(client, primary, checked).await?;
    }
    let mut warnings = standby::replay_warnings(client, version).await;
    let primary_archiver = options.primary.is_some();
    if options.archive.source == ArchiveSource::Server
        && archive_mode != "always"
        && !primary_archiver
    {
        warnings.push(
            "archive_mode is not always on this standby, so its archiver archives nothing: \
             pgpost will not check the backup's WAL (give --wal-archive or --restore-command)"
                .to_string(),
        );
    }
    for text in warnings {
        warn!("{text}");
        handshake.warn(&text);
    }
    Ok(local)
}

/// What the start works on: the server, the label, where the state goes, our backend.
struct Target<'a> {
    version: ServerVersion,
    label: &'a str,
    /// The local state on a standby; the state table otherwise.
    local: Option<&'a LocalState>,
    pid: i32,
}

/// The application name the binaries give when the user gave none.
pub const COPROCESS_APPLICATION: &str = "pgpre co-process";

/// Adds our process id to the default application name, so that a pgpre waiting for this
/// one's lock can say whose it is. A name the user chose is left alone.
async fn name_the_process(settings: &ConnSettings, client: &Client) {
    if settings.application_name.as_deref() != Some(COPROCESS_APPLICATION) {
        return;
    }
    let name = format!("{COPROCESS_APPLICATION} {}", std::process::id());
    if let Err(error) = client
        .query("SELECT set_config('application_name', $1, false)", &[&name])
        .await
    {
        debug!("cannot set application_name: {error}");
    }
}

/// How long the wait for the lock runs before pgpre says whose it is.
const LOCK_REPORT_AFTER: Duration = Duration::from_secs(1);
/// How long a spread checkpoint runs before pgpre says how long it may take.
const SPREAD_REPORT_AFTER: Duration = Duration::from_secs(2);

/// What ended a statement before it returned.
enum Interrupted {
    /// start_timeout ran out.
    Timeout,
    /// `pgpre` is gone.
    Gone,
}

impl Interrupted {
    fn into_error(self, options: &BackupOptions, doing: &str) -> BackupError {
        match self {
            Interrupted::Timeout => BackupError::Timeout(format!(
                "the backup did not start within start_timeout ({} s): {doing}",
                options.start_timeout.map_or(0, |limit| limit.as_secs())
            )),
            Interrupted::Gone => BackupError::Orphaned(format!(
                "pgpre ended (killed or timed out) while {doing}; the start was cancelled"
            )),
        }
    }
}

/// The session, the limits and the process `pgpre` may be waiting on.
struct Starting<'a> {
    options: &'a BackupOptions,
    deadline: Option<Instant>,
}

impl Starting<'_> {
    /// Runs `statement` until it returns, start_timeout runs out or `pgpre` is gone; once it
    /// has run for `report.0`, says on the handshake what `report.1` finds (why it waits).
    async fn interruptible<T>(
        &self,
        statement: impl std::future::Future<Output = T>,
        gone: &mut BoxFuture<'static, ()>,
        handshake: &mut dyn Handshake,
        report: (Duration, impl std::future::Future<Output = Option<String>>),
    ) -> Result<T, Interrupted> {
        let (report_after, reason) = report;
        tokio::pin!(statement);
        let explain = async {
            tokio::time::sleep(report_after).await;
            reason.await
        };
        tokio::pin!(explain);
        let mut explained = false;
        loop {
            tokio::select! {
                biased;
                result = &mut statement => return Ok(result),
                () = &mut *gone => return Err(Interrupted::Gone),
                () = super::wait::sleep_until_option(self.deadline) => return Err(Interrupted::Timeout),
                text = &mut explain, if !explained => {
                    explained = true;
                    if let Some(text) = text {
                        info!("{text}");
                        handshake.waiting(&text);
                    }
                }
            }
        }
    }
}

/// Who holds the lock backend `pid` waits for, read on a fresh session.
async fn lock_holder(settings: &ConnSettings, pid: i32, options: &BackupOptions) -> Option<String> {
    let fresh = settings.connect().await.ok()?;
    let row = fresh
        .client
        .query_opt(
            "SELECT a.pid, coalesce(a.application_name, '') AS application, \
               coalesce(a.query, '') ~ '(pg_backup_start|pg_start_backup)' AS starting, \
               coalesce(extract(epoch FROM now() - a.query_start)::int8, 0) AS secs \
             FROM pg_stat_activity a WHERE a.pid = ANY (pg_blocking_pids($1)) LIMIT 1",
            &[&pid],
        )
        .await
        .ok()??;
    let holder: i32 = row.try_get("pid").ok()?;
    let application: String = row.try_get("application").ok()?;
    let starting: bool = row.try_get("starting").ok()?;
    let secs: i64 = row.try_get("secs").ok()?;
    let whose = match application.is_empty() {
        true => format!("backend {holder}"),
        false => format!("backend {holder}, {application:?}"),
    };
    let what = match starting {
        true => format!(
            "another pgpre's start of backup {:?}, running for {secs} s",
            options.table.name()
        ),
        false => format!("the lock of backup {:?}", options.table.name()),
    };
    let limit = match options.start_timeout {
        Some(limit) => format!("gives up after start_timeout ({} s)", limit.as_secs()),
        None => "has no start_timeout".to_string(),
    };
    Some(format!("waiting for {what} ({whose}); pgpre {limit}"))
}

/// How long a spread checkpoint may take, read from the server, as pgpre says it.
async fn spread_checkpoint_note(client: &Client) -> Option<String> {
    let row = client
        .query_one(
            "SELECT (SELECT setting::float8 FROM pg_settings WHERE name = 'checkpoint_timeout') AS timeout, \
               current_setting('checkpoint_completion_target')::float8 AS target",
            &[],
        )
        .await
        .ok()?;
    let timeout: f64 = row.try_get("timeout").ok()?;
    let target: f64 = row.try_get("target").ok()?;
    Some(format!(
        "waiting for a spread checkpoint: it may take up to {:.0} s (checkpoint_timeout {timeout:.0} s \
         x checkpoint_completion_target {target}); --checkpoint=fast starts at once",
        timeout * target
    ))
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
    target: &Target<'_>,
    starting: &Starting<'_>,
    gone: &mut BoxFuture<'static, ()>,
    handshake: &mut dyn Handshake,
) -> Result<(String, Option<String>, Option<Standby>), (BackupError, bool)> {
    let (version, label) = (target.version, target.label);
    let options = starting.options;
    let table = &options.table;
    match target.local {
        Some(local) => standby::take_over(local).map_err(|e| (e, false))?,
        None => {
            table::with_table_lock(client, table, table::ensure(client, table))
                .await
                .map_err(|e| (BackupError::sql("locking the state table", e), false))?
                .map_err(|e| (e, false))?;
            take_over(client, table).await.map_err(|e| (e, false))?;
        }
    }
    // Read before the start: the session is busy once the checkpoint runs.
    let spread_note = match options.fast_checkpoint {
        true => None,
        false => spread_checkpoint_note(client).await,
    };
    let start_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
        [&label, &options.fast_checkpoint];
    let start = client.query_one(server::backup_start_sql(version), &start_params);
    let report = (SPREAD_REPORT_AFTER, async move { spread_note });
    let start_lsn: String = match starting.interruptible(start, gone, handshake, report).await {
        Ok(result) => result,
        Err(Interrupted::Timeout) => {
            let doing = match options.fast_checkpoint {
                true => "the checkpoint takes longer",
                false => "the checkpoint takes longer; --checkpoint=fast starts at once",
            };
            return Err((Interrupted::Timeout.into_error(options, doing), true));
        }
        Err(gone) => {
            let doing = "the start function ran (the checkpoint)";
            return Err((gone.into_error(options, doing), true));
        }
    }
    .and_then(|row| row.try_get(0))
    .map_err(|e| (BackupError::sql("starting the backup", e), true))?;
    if let Some(local) = target.local {
        let standby = standby::record_running(client, local, label, &start_lsn, target.pid)
            .await
            .map_err(|e| (e, true))?;
        let process_start = standby::own_process_start();
        return Ok((start_lsn, process_start, Some(standby)));
    }
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
    Ok((start_lsn, backend_start, None))
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
    let session_busy = matches!(error, BackupError::Timeout(_) | BackupError::Orphaned(_));
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
