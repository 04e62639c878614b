//! The archive check: after the stop (the label is stored by then), pgpost proves that every
//! WAL segment the backup needs is in the archive, within a timeout that restarts whenever
//! another segment arrives, and records the result in the state row.
//!
//! Where it looks ([`ArchiveSource`]): a directory, a `restore_command`, or the server's own
//! archiver (`pg_stat_archiver`). The server offers no notification for any of them, so each
//! is re-checked at a slow, bounded interval ([`RECHECK_DIRECTORY`], [`RECHECK_SERVER`]).

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::{sleep, Instant};
use tokio_postgres::Client;

use super::error::BackupError;
use super::local::LocalState;
use super::row::BackupRow;
use super::table::StateTable;
use crate::args::ArchiveCheck;
use crate::config::limit;
use crate::config::BackupConfig;
use crate::conn::{ConnSettings, Session};
use crate::server::{self, ServerVersion};
use crate::wal::{self, Lsn, SegmentRange};
use look::{
    archived_by_server, fetch_in_order, first_missing_in, short_copies, PrivateDir, ShortCopy,
};
pub use look::{RECHECK_DIRECTORY, RECHECK_SERVER};

/// Where the check looks: a directory, a restore_command, the server's archiver.
mod look;

/// Where the check looks for the backup's WAL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchiveSource {
    /// Nowhere (`--archive-check=none`).
    Off,
    /// `pg_stat_archiver`: the archiver's own word.
    Server,
    /// An archive directory (`--wal-archive`).
    Directory(PathBuf),
    /// A `restore_command` that fetches one segment (`--restore-command`).
    Command(String),
}

/// The archive check's settings, resolved from `[backup]` and the flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveOptions {
    /// Where to look.
    pub source: ArchiveSource,
    /// How long to wait for the next segment; `None`: no limit.
    pub timeout: Option<Duration>,
}

impl ArchiveOptions {
    /// From the `[backup]` section: a directory before a command before the server.
    pub fn from_config(config: &BackupConfig) -> ArchiveOptions {
        let source = if config.archive_check() == ArchiveCheck::None {
            ArchiveSource::Off
        } else if !config.wal_archive.as_os_str().is_empty() {
            ArchiveSource::Directory(config.wal_archive.clone())
        } else if !config.restore_command.is_empty() {
            ArchiveSource::Command(config.restore_command.clone())
        } else {
            ArchiveSource::Server
        };
        ArchiveOptions {
            source,
            timeout: limit(config.archive_timeout),
        }
    }
}

/// Why nothing would reach the archive, if so: `archive_mode` off, or no `archive_command`
/// and no `archive_library` (15+).
pub fn archiving_problem(mode: &str, command: &str, library: &str) -> Option<String> {
    if mode == "off" {
        return Some(
            "archive_mode is off: no WAL reaches the archive, so the backup's WAL cannot be \
             checked"
                .into(),
        );
    }
    if command.trim().is_empty() && library.trim().is_empty() {
        return Some(format!(
            "archive_mode is {mode} but neither archive_command nor archive_library is set: no \
             WAL reaches the archive"
        ));
    }
    None
}

/// The archive check's result, as the `wal_archived` column, `--json` and the metrics say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalArchived {
    /// Every segment was found.
    Passed,
    /// A segment was missing (or wrong) when the timeout ran out.
    Failed,
    /// Not checked yet (the co-process stored the label; pgpost has not checked).
    Unchecked,
    /// `--archive-check=none`.
    Off,
}

impl WalArchived {
    /// The column's text.
    pub fn as_str(self) -> &'static str {
        match self {
            WalArchived::Passed => "passed",
            WalArchived::Failed => "failed",
            WalArchived::Unchecked => "unchecked",
            WalArchived::Off => "off",
        }
    }
}

/// Where the archive check's result is recorded: the state table, or a standby's local state.
#[derive(Clone, Copy, Debug)]
pub enum Recorder<'a> {
    /// The row (and its history entry) in the state table.
    Table(&'a StateTable),
    /// The record of a backup taken on a standby.
    Local(&'a LocalState),
}

/// Checks the archive for the WAL of the complete backup in `row` and records the result
/// there. Ok with the result when it passed, was off or could not be checked (a standby with
/// no archiver of its own); [`BackupError::WalNotArchived`] when a segment is missing.
/// `progress` gets the one-line report.
pub async fn check(
    settings: &ConnSettings,
    primary: Option<&ConnSettings>,
    table: Recorder<'_>,
    options: &ArchiveOptions,
    row: &BackupRow,
    progress: &mut dyn FnMut(&str),
) -> Result<WalArchived, BackupError> {
    let (start, stop) = backup_lsns(row)?;
    let session = CheckSession::open(settings).await?;
    if options.source == ArchiveSource::Off {
        progress(&check_off_note(start, stop));
        record(&session.session.client, table, row, WalArchived::Off).await;
        return Ok(WalArchived::Off);
    }
    let timeline = row
        .backup_label
        .as_deref()
        .and_then(label_timeline)
        .ok_or_else(|| {
            BackupError::System(
                "the stored backup_label has no \"START WAL LOCATION: ... (file ...)\" line".into(),
            )
        })?;
    let wal = BackupWal {
        timeline,
        start,
        stop,
        name: row.name.clone(),
    };
    // On a standby, the primary (`--primary`) switches the last segment out and, when the
    // standby archives nothing itself, its archiver is asked.
    let primary = match (session.server.in_recovery, primary) {
        (true, Some(primary)) => Some(primary.connect().await?),
        _ => None,
    };
    let outcome = session
        .wait_for_wal(options, &wal, primary.as_ref(), progress)
        .await;
    let result = match &outcome {
        Ok(result) => *result,
        Err(_) => WalArchived::Failed,
    };
    record(&session.session.client, table, row, result).await;
    outcome
}

/// Said after a failed check of a standby backup: the last segment is the primary's to switch.
const STANDBY_IDLE_PRIMARY: &str = "; on a standby the last segment reaches the archive only \
    when the primary switches to the next one: on an idle primary, set archive_timeout there \
    (e.g. 60s), or give pgpost --primary CONNINFO so that it switches the WAL itself";

/// The WAL one backup needs, as the archive check looks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupWal {
    /// The backup's timeline (its start's).
    pub timeline: u32,
    /// The backup's start.
    pub start: Lsn,
    /// The backup's end (stop): the segment holding the byte before it is the last needed.
    pub stop: Lsn,
    /// The backup's name, for the restore point that forces the last segment out.
    pub name: String,
}

/// What `--archive-check=none` reports instead of checking.
pub fn check_off_note(start: Lsn, stop: Lsn) -> String {
    format!(
        "note: the archive check is off (--archive-check=none): nothing checked that the WAL \
         from {start} to {stop} is archived; the backup restores only with it"
    )
}

/// The check's own session: its statement and idle timeouts off. pgbase `-X none` opens it
/// before its backup starts (archiving must be on) and waits for the backup's WAL with it.
pub struct CheckSession {
    session: Session,
    server: ServerFacts,
}

impl CheckSession {
    /// Connects and turns the session's timeouts off.
    pub async fn open(settings: &ConnSettings) -> Result<CheckSession, BackupError> {
        let session = settings.connect().await?;
        let client = &session.client;
        let server = ServerFacts::read(client).await?;
        // The role's or database's statement or idle timeouts must not end the wait.
        client
            .batch_execute(server::session_guard_sql(server.version))
            .await
            .map_err(|e| BackupError::sql("preparing the session", e))?;
        Ok(CheckSession { session, server })
    }

    /// [`BackupError::ArchivingOff`] when nothing would reach the archive.
    pub fn require_archiving(&self) -> Result<(), BackupError> {
        let server = &self.server;
        match archiving_problem(
            &server.archive_mode,
            &server.archive_command,
            &server.archive_library,
        ) {
            Some(problem) => Err(BackupError::ArchivingOff(problem)),
            None => Ok(()),
        }
    }

    /// Forces the last segment out (on a standby, through `primary` when given), then waits
    /// for every segment of `wal` in the archive: `Passed`, or `Unchecked` on a standby whose
    /// archiver archives nothing with no primary to ask; [`BackupError::WalNotArchived`] when
    /// one is missing once the timeout runs out.
    pub async fn wait_for_wal(
        &self,
        options: &ArchiveOptions,
        wal: &BackupWal,
        primary: Option<&Session>,
        progress: &mut dyn FnMut(&str),
    ) -> Result<WalArchived, BackupError> {
        let client = &self.session.client;
        let server = &self.server;
        let range = SegmentRange::of_backup(wal.timeline, wal.start, wal.stop, server.segment_size);
        let own_archiver = !server.in_recovery || server.archive_mode == "always";
        let archiver = match (primary, own_archiver) {
            (Some(primary), false) => &primary.client,
            _ => client,
        };
        if options.source == ArchiveSource::Server && !own_archiver && primary.is_none() {
            progress(&format!(
                "warning: the backup's WAL was not checked: this standby's archiver archives \
                 nothing (archive_mode is {}, not always), so pg_stat_archiver here says nothing \
                 of {} to {}; give --wal-archive, --restore-command or --primary to check the \
                 archive the primary fills",
                server.archive_mode,
                range.name(range.first),
                range.name(range.last)
            ));
            return Ok(WalArchived::Unchecked);
        }
        let point = restore_point_name(&wal.name, &wal.stop.to_string());
        // A standby writes no WAL: only its primary can switch the last segment out.
        match primary {
            Some(primary) => {
                let version = ServerFacts::read(&primary.client).await?.version;
                force_segment_out(&primary.client, version, &point, progress).await;
            }
            None if !server.in_recovery => {
                force_segment_out(client, server.version, &point, progress).await
            }
            None => {}
        }
        let outcome = wait_for_range(archiver, options, &range, server.version, progress).await;
        match outcome {
            Ok(()) => Ok(WalArchived::Passed),
            Err(missing) => {
                let mut message = missing.describe(archiver, options, &range).await;
                if server.in_recovery && primary.is_none() {
                    message.push_str(STANDBY_IDLE_PRIMARY);
                }
                Err(BackupError::WalNotArchived(message))
            }
        }
    }
}

/// Start and stop LSN of a complete row.
fn backup_lsns(row: &BackupRow) -> Result<(Lsn, Lsn), BackupError> {
    let lsn = |value: &Option<String>| value.as_deref().and_then(Lsn::parse);
    match (lsn(&row.start_lsn), lsn(&row.stop_lsn)) {
        (Some(start), Some(stop)) => Ok((start, stop)),
        _ => Err(BackupError::System(format!(
            "the complete backup's row has no start or stop LSN ({:?}, {:?})",
            row.start_lsn, row.stop_lsn
        ))),
    }
}

/// The timeline of `START WAL LOCATION: 0/2000028 (file 000000010000000000000002)`.
pub fn label_timeline(backup_label: &str) -> Option<u32> {
    let line = backup_label
        .lines()
        .find(|line| line.starts_with("START WAL LOCATION:"))?;
    let file = line.split("(file ").nth(1)?.get(..24)?;
    wal::is_wal_file_name(file)
        .then(|| u32::from_str_radix(&file[..8], 16).ok())
        .flatten()
}

/// What the check needs to know of the server.
struct ServerFacts {
    version: ServerVersion,
    segment_size: u64,
    /// A standby: nothing can be forced out here, and its archiver may archive nothing.
    in_recovery: bool,
    archive_mode: String,
    archive_command: String,
    archive_library: String,
}

impl ServerFacts {
    async fn read(client: &Client) -> Result<ServerFacts, BackupError> {
        let row = client
            .query_one(
                "SELECT current_setting('server_version_num')::int4, \
                   (SELECT setting || ' ' || coalesce(unit, '') FROM pg_settings \
                    WHERE name = 'wal_segment_size'), \
                   current_setting('archive_mode'), current_setting('archive_command'), \
                   coalesce(current_setting('archive_library', true), ''), pg_is_in_recovery()",
                &[],
            )
            .await
            .map_err(|e| BackupError::sql("reading the WAL settings", e))?;
        let read = |e| BackupError::sql("reading the WAL settings", e);
        let version: i32 = row.try_get(0).map_err(read)?;
        let size: String = row.try_get(1).map_err(read)?;
        let archive_mode: String = row.try_get(2).map_err(read)?;
        let archive_command: String = row.try_get(3).map_err(read)?;
        let archive_library: String = row.try_get(4).map_err(read)?;
        let segment_size = segment_size_setting(&size)
            .ok_or_else(|| BackupError::System(format!("cannot read wal_segment_size {size:?}")))?;
        Ok(ServerFacts {
            version: ServerVersion(u32::try_from(version).unwrap_or_default()),
            segment_size,
            in_recovery: row.try_get(5).map_err(read)?,
            archive_mode,
            archive_command,
            archive_library,
        })
    }
}

/// The server's WAL segment size.
pub async fn wal_segment_size(client: &Client) -> Result<u64, BackupError> {
    ServerFacts::read(client)
        .await
        .map(|facts| facts.segment_size)
}

/// `wal_segment_size` from `pg_settings`' `setting unit`: `16777216 B` (11+), `2048 8kB` (10).
pub fn segment_size_setting(text: &str) -> Option<u64> {
    let (setting, unit) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    let setting: u64 = setting.parse().ok()?;
    let unit = match unit {
        "" | "B" => 1,
        "kB" => 1024,
        "8kB" => 8192,
        "MB" => 1024 * 1024,
        _ => return None,
    };
    let size = setting.checked_mul(unit)?;
    (size.is_power_of_two() && size >= 1024 * 1024).then_some(size)
}

/// A restore point, then a switch: the segment holding the stop goes to the archiver even on
/// an idle server. A refusal (no privilege) is reported, not fatal: on a busy server the
/// segment is archived anyway.
async fn force_segment_out(
    client: &Client,
    version: ServerVersion,
    name: &str,
    progress: &mut dyn FnMut(&str),
) {
    let [point, switch] = server::force_segment_out_sql(version);
    // The switch runs even when the restore point is refused: on a server with new WAL it
    // is enough by itself.
    let point = client.query_one(point, &[&name]).await.err();
    let switch = client.query_one(switch, &[]).await.err();
    for error in [point, switch].into_iter().flatten() {
        let error = BackupError::sql("forcing the last WAL segment out", error);
        progress(&format!(
            "warning: {error}; on an idle server the last segment may not reach the archive \
             (GRANT EXECUTE ON FUNCTION pg_create_restore_point(text), pg_switch_wal() to the \
             backup role)"
        ));
    }
}

/// `safe-backup <name> <stop LSN>`, cut to the 63 bytes PostgreSQL allows a restore point
/// name (a longer one is an error), on a character boundary.
fn restore_point_name(backup: &str, stop_lsn: &str) -> String {
    const MAX: usize = 63;
    let mut name = format!("safe-backup {backup} {stop_lsn}");
    if name.len() > MAX {
        let mut cut = MAX;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    name
}

/// The program a restore_command runs, for messages: its first word that is not a
/// `NAME=value` assignment (those may hold a secret).
fn command_program(command: &str) -> &str {
    command
        .split_whitespace()
        .find(|word| {
            !word.split_once('=').is_some_and(|(name, _)| {
                !name.is_empty() && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
            })
        })
        .unwrap_or_default()
}

/// The archive timeout that restarts whenever the first missing segment moves on.
#[derive(Debug)]
struct Patience {
    timeout: Option<Duration>,
    began: Instant,
    last_progress: Instant,
    /// The first segment not found yet.
    next: u64,
}

impl Patience {
    fn new(timeout: Option<Duration>, first: u64) -> Patience {
        let now = Instant::now();
        Patience {
            timeout,
            began: now,
            last_progress: now,
            next: first,
        }
    }

    /// The first missing segment is now `first_missing`: progress restarts the timer.
    fn saw(&mut self, first_missing: u64) {
        if first_missing > self.next {
            self.next = first_missing;
            self.last_progress = Instant::now();
        }
    }

    /// What is left of the timeout since the last progress; `None`: no limit.
    fn left(&self) -> Option<Duration> {
        self.timeout
            .map(|timeout| timeout.saturating_sub(self.last_progress.elapsed()))
    }

    fn ran_out(&self) -> bool {
        self.left().is_some_and(|left| left.is_zero())
    }

    fn waited(&self) -> Duration {
        self.began.elapsed()
    }
}

/// The first segment not found, and why the wait ended.
struct Missing {
    segment: String,
    /// Why the segment does not count (a wrong file), if it was there at all.
    problem: Option<String>,
    waited: Duration,
}

/// Waits until every segment of `range` is found, the timer restarting whenever the first
/// missing one moves on.
async fn wait_for_range(
    client: &Client,
    options: &ArchiveOptions,
    range: &SegmentRange,
    version: ServerVersion,
    progress: &mut dyn FnMut(&str),
) -> Result<(), Missing> {
    let mut patience = Patience::new(options.timeout, range.first);
    let mut fetch_dir: Option<PrivateDir> = None;
    let mut short_copy: Option<ShortCopy> = None;
    loop {
        let found = match &options.source {
            ArchiveSource::Off => return Ok(()),
            ArchiveSource::Server => archived_by_server(client, range).await,
            ArchiveSource::Directory(dir) => Ok(first_missing_in(dir, range, patience.next)),
            ArchiveSource::Command(command) => {
                let dir = match &fetch_dir {
                    Some(dir) => dir,
                    None => match PrivateDir::create() {
                        Ok(dir) => fetch_dir.insert(dir),
                        Err(error) => {
                            return Err(Missing {
                                segment: range.name(patience.next),
                                problem: Some(format!(
                                    "cannot create a private directory: {error}"
                                )),
                                waited: patience.waited(),
                            })
                        }
                    },
                };
                let fetched = fetch_in_order(
                    command,
                    dir.path(),
                    range,
                    patience.next,
                    version,
                    patience.left(),
                )
                .await;
                short_copies(client, range, fetched, &mut short_copy).await
            }
        };
        match found {
            Ok(first_missing) => patience.saw(first_missing),
            Err((segment, problem)) => {
                return Err(Missing {
                    segment: range.name(segment),
                    problem: Some(problem),
                    waited: patience.waited(),
                })
            }
        }
        if patience.next > range.last {
            progress(&format!(
                "WAL {} to {} ({} segment{}) {}",
                range.name(range.first),
                range.name(range.last),
                range.len(),
                if range.len() == 1 { "" } else { "s" },
                where_found(&options.source)
            ));
            return Ok(());
        }
        if patience.ran_out() {
            let problem = short_copy
                .take()
                .filter(|short| short.segment == patience.next)
                .map(|short| short.problem);
            return Err(Missing {
                segment: range.name(patience.next),
                problem,
                waited: patience.waited(),
            });
        }
        let interval = match options.source {
            ArchiveSource::Directory(_) => RECHECK_DIRECTORY,
            _ => RECHECK_SERVER,
        };
        sleep(interval).await;
    }
}

fn where_found(source: &ArchiveSource) -> String {
    match source {
        ArchiveSource::Off => "not checked".into(),
        ArchiveSource::Server => "archived (pg_stat_archiver)".into(),
        ArchiveSource::Directory(dir) => format!("found in {}", dir.display()),
        ArchiveSource::Command(_) => {
            "fetched by the restore_command, each a WAL segment of its timeline and address".into()
        }
    }
}

impl Missing {
    /// The failure's message: the segment, what was checked where, the wait, the archiver.
    async fn describe(
        &self,
        client: &Client,
        options: &ArchiveOptions,
        range: &SegmentRange,
    ) -> String {
        let checked = match &options.source {
            ArchiveSource::Off => "nothing".to_string(),
            ArchiveSource::Server => "pg_stat_archiver.last_archived_wal".to_string(),
            ArchiveSource::Directory(dir) => format!("the directory {}", dir.display()),
            // Only its program: the rest may hold a secret.
            ArchiveSource::Command(command) => format!(
                "what the restore_command ({} ...) fetched",
                command_program(command)
            ),
        };
        let what = match &self.problem {
            Some(problem) => format!("WAL segment {} is not usable: {problem}", self.segment),
            None => format!(
                "WAL segment {} is not archived (waited {} s, --archive-timeout {})",
                self.segment,
                self.waited.as_secs(),
                options
                    .timeout
                    .map_or("none".to_string(), |timeout| format!(
                        "{} s",
                        timeout.as_secs()
                    ))
            ),
        };
        format!(
            "the backup stopped and its files are stored, but its WAL is not in the archive: \
             {what}; checked {} to {} in {checked}; {}",
            range.name(range.first),
            range.name(range.last),
            archiver_status(client).await
        )
    }
}

/// The archiver's backlog and last failure, in words.
pub async fn archiver_status(client: &Client) -> String {
    let row = client
        .query_one(
            "SELECT last_archived_wal, last_archived_time::text, last_failed_wal, \
               last_failed_time::text, \
               coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false) \
             FROM pg_stat_archiver",
            &[],
        )
        .await;
    let backlog = ready_backlog(client).await;
    let Ok(row) = row else {
        return "the archiver's state could not be read".into();
    };
    let text = |i: usize| -> String {
        row.try_get::<_, Option<String>>(i)
            .ok()
            .flatten()
            .unwrap_or_else(|| "none".into())
    };
    let failing: bool = row.try_get(4).unwrap_or(false);
    let backlog = match backlog {
        Some(count) => format!("{count} segment(s) waiting to be archived"),
        None => "backlog unknown".into(),
    };
    format!(
        "archiver: last archived {} at {}, last failed {} at {}{}, {backlog}",
        text(0),
        text(1),
        text(2),
        text(3),
        if failing { " (failing now)" } else { "" }
    )
}

/// The `.ready` files in `archive_status` (12+, `pg_monitor`); `None` when unknown.
pub async fn ready_backlog(client: &Client) -> Option<i64> {
    client
        .query_one(
            "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'",
            &[],
        )
        .await
        .and_then(|row| row.try_get(0))
        .ok()
}

/// Records the result in the row (and its history entry) or the local record; a failure to
/// record is logged.
async fn record(client: &Client, recorder: Recorder<'_>, row: &BackupRow, result: WalArchived) {
    let started_at = row.started_at.clone().unwrap_or_default();
    let table = match recorder {
        Recorder::Table(table) => table,
        Recorder::Local(local) => {
            let recorded = local.update(|r| {
                let same = r.started_at == row.started_at && r.state == "complete";
                if same {
                    r.wal_archived = Some(result.as_str().to_string());
                }
                same
            });
            if let Err(error) = recorded {
                tracing::warn!(
                    "cannot record the archive check ({}): {error}",
                    result.as_str()
                );
            }
            return;
        }
    };
    if let Err(error) = client
        .query(
            &table.set_wal_archived_sql(),
            &[&result.as_str(), &started_at],
        )
        .await
    {
        tracing::warn!(
            "cannot record the archive check ({}): {error}",
            result.as_str()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_point_names_fit_and_messages_name_no_assignment() {
        assert_eq!(
            restore_point_name("default", "0/3000028"),
            "safe-backup default 0/3000028"
        );
        let long = restore_point_name(&"é".repeat(40), "16/B374D848");
        assert!(
            long.len() <= 63 && long.starts_with("safe-backup é"),
            "{long}"
        );
        assert_eq!(command_program("cp /wal/%f %p"), "cp");
        assert_eq!(
            command_program("AWS_SECRET_ACCESS_KEY=s3cr3t PGPASSWORD=x aws s3 cp s3://b/%f %p"),
            "aws"
        );
        assert_eq!(command_program(""), "");
    }

    #[tokio::test(start_paused = true)]
    async fn the_timeout_restarts_whenever_another_segment_arrives() {
        let mut patience = Patience::new(Some(Duration::from_secs(10)), 3);
        sleep(Duration::from_secs(8)).await;
        patience.saw(3);
        assert!(!patience.ran_out());
        assert_eq!(patience.left(), Some(Duration::from_secs(2)));
        patience.saw(4);
        sleep(Duration::from_secs(8)).await;
        assert!(
            !patience.ran_out(),
            "segment 3 arrived at 8 s: the timer restarted"
        );
        patience.saw(4);
        sleep(Duration::from_secs(2)).await;
        assert!(patience.ran_out());
        assert_eq!(
            (patience.next, patience.waited()),
            (4, Duration::from_secs(18))
        );
        let endless = Patience::new(None, 3);
        sleep(Duration::from_secs(86_400)).await;
        assert!(!endless.ran_out());
    }

    #[test]
    fn the_timeline_comes_from_the_label() {
        let label = "START WAL LOCATION: 0/2000028 (file 000000030000000000000002)\n\
                     CHECKPOINT LOCATION: 0/2000060\n";
        assert_eq!(label_timeline(label), Some(3));
        assert_eq!(label_timeline("START WAL LOCATION: 0/2000028\n"), None);
        assert_eq!(label_timeline(""), None);
    }

    #[test]
    fn pgpre_wants_archiving_on() {
        assert!(archiving_problem("off", "cp %p /a/%f", "").is_some());
        assert!(archiving_problem("on", "", "")
            .unwrap()
            .contains("archive_library"));
        assert!(archiving_problem("always", " ", "").is_some());
        assert_eq!(archiving_problem("on", "cp %p /a/%f", ""), None);
        assert_eq!(archiving_problem("on", "", "basic_archive"), None);
    }

    #[test]
    fn segment_sizes_by_unit() {
        assert_eq!(segment_size_setting("16777216 B"), Some(16 << 20));
        assert_eq!(segment_size_setting("2048 8kB"), Some(16 << 20));
        assert_eq!(segment_size_setting("64 MB"), Some(64 << 20));
        assert_eq!(segment_size_setting("1000 B"), None);
        assert_eq!(segment_size_setting("x B"), None);
    }
}
