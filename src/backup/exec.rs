//! `pgpre --exec -- CMD`: one process starts the backup, runs CMD without a shell, and stops
//! the backup as `pgpost` would when CMD succeeds, or fails it when CMD does not.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::process::{ExitStatus as ProcessStatus, Stdio};

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;
use tracing::info;

use super::hold::{abort, stop};
use super::post::{self, Completed, PostRequest};
use super::start::{start, with_keepalive_defaults, Handshake, HeldBackup};
use super::wait::sleep_until_option;
use super::{files, BackupError, BackupOptions};
use crate::conn::ConnSettings;
use crate::shutdown::ShutdownSignals;

/// What `pgpre --exec` runs and where its result goes.
#[derive(Clone, Debug)]
pub struct ExecRequest {
    /// CMD and its arguments (never through a shell).
    pub command: Vec<OsString>,
    /// Write `backup_label` / `tablespace_map` here, as `pgpost -o`.
    pub output_dir: Option<std::path::PathBuf>,
}

/// `pgpre --exec` has no one to hand the start to: it says everything on stderr itself.
struct StderrHandshake;

impl Handshake for StderrHandshake {
    fn warn(&mut self, text: &str) {
        eprintln!("pgpre: warning: {text}");
    }
    fn started(&mut self, _start_lsn: &str) -> bool {
        true
    }
    fn failed(&mut self, _error: &BackupError) {}
    fn waiting(&mut self, text: &str) {
        eprintln!("pgpre: {text}");
    }
    fn gone(&self) -> BoxFuture<'static, ()> {
        Box::pin(std::future::pending())
    }
}

/// Starts the backup, runs the command, and stops the backup when it exits 0.
pub async fn run(
    settings: &ConnSettings,
    options: &BackupOptions,
    request: &ExecRequest,
    progress: &mut dyn FnMut(&str),
) -> Result<Completed, BackupError> {
    let Some((program, args)) = request.command.split_first() else {
        return Err(BackupError::CommandFailed(
            "--exec needs a command after --".into(),
        ));
    };
    if let Some(dir) = &request.output_dir {
        files::prepare_output_dir(dir)?;
    }
    let settings = &with_keepalive_defaults(settings);
    let mut signals = ShutdownSignals::new()
        .map_err(|error| BackupError::System(format!("cannot handle signals: {error}")))?;
    let mut handshake = StderrHandshake;
    let held = tokio::select! {
        result = start(settings, options, &mut handshake) => result?,
        Some(signal) = signals.next() => return Err(BackupError::CommandFailed(format!(
            "pgpre received {} while starting the backup; the command was not run",
            signal.as_str()
        ))),
    };
    info!("backup {:?} running from {}", held.label, held.start_lsn);
    let deadline = options.backup_timeout.map(|limit| Instant::now() + limit);
    let outcome = match start_wal_file(&held).await {
        Ok(wal_file) => {
            let environment = [
                ("SAFE_BACKUP_START_LSN", held.start_lsn.clone()),
                ("SAFE_BACKUP_START_WAL_FILE", wal_file),
                ("SAFE_BACKUP_LABEL", held.label.clone()),
                ("SAFE_BACKUP_NAME", options.table.name().to_string()),
            ];
            run_command(program, args, &environment, &mut signals, deadline, options).await
        }
        Err(error) => Err(error.to_string()),
    };
    match outcome {
        Ok(()) => {
            stop(held, settings, options, &mut signals, deadline).await?;
            let collect = PostRequest {
                output_dir: request.output_dir.clone(),
                fetch: true,
            };
            post::finish(settings, options, &collect, progress).await
        }
        Err(reason) => {
            // Ends backup mode and records `failed` with the reason; its error is ours.
            let _ = abort(held, options, reason.clone()).await;
            Err(BackupError::CommandFailed(reason))
        }
    }
}

/// The WAL file the backup starts in, named by the server (here on a standby, where
/// `pg_walfile_name()` fails during recovery).
async fn start_wal_file(held: &HeldBackup) -> Result<String, BackupError> {
    if let Some(standby) = &held.standby {
        let client = &held.session.client;
        let size = super::archive::wal_segment_size(client).await?;
        let lsn = crate::wal::Lsn::parse(&held.start_lsn).ok_or_else(|| {
            BackupError::System(format!("the start LSN {:?} is not an LSN", held.start_lsn))
        })?;
        let timeline = standby.start_timeline.unwrap_or(1);
        return Ok(crate::wal::wal_file_name(timeline, lsn, size));
    }
    let function = match held.version.num() >= 100_000 {
        true => "pg_walfile_name",
        false => "pg_xlogfile_name",
    };
    held.session
        .client
        .query_one(
            &format!("SELECT {function}($1::text::pg_lsn)"),
            &[&held.start_lsn],
        )
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| BackupError::sql("naming the start WAL file", e))
}

/// Runs the command to its end. A signal to pgpre is passed on to it; at the deadline it
/// gets SIGTERM. Ok only when it exited 0 and nothing interrupted it; else why not.
async fn run_command(
    program: &OsString,
    args: &[OsString],
    environment: &[(&str, String)],
    signals: &mut ShutdownSignals,
    deadline: Option<Instant>,
    options: &BackupOptions,
) -> Result<(), String> {
    let shown = program.to_string_lossy();
    // The command's stdout goes to our stderr: our stdout is backup_label alone.
    let stdout = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .envs(environment.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(stdout)
        .spawn()
        .map_err(|error| format!("cannot run {shown}: {error}"))?;
    let pid = child.id().and_then(|id| i32::try_from(id).ok());
    let pass_on = |signal: Signal| {
        if let Some(pid) = pid {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    };
    let mut interrupted: Option<String> = None;
    let status: ProcessStatus = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(|e| format!("cannot wait for {shown}: {e}"))?,
            Some(signal) = signals.next() => {
                let name = signal.as_str();
                pass_on(signal);
                interrupted.get_or_insert(format!("pgpre received {name} and passed it to {shown}"));
            }
            () = sleep_until_option(deadline), if interrupted.is_none() => {
                pass_on(Signal::SIGTERM);
                interrupted = Some(format!(
                    "backup_timeout ({} s) ran out while {shown} ran; it got SIGTERM",
                    options.backup_timeout.map_or(0, |limit| limit.as_secs())
                ));
            }
        }
    };
    if let Some(reason) = interrupted {
        return Err(format!("{reason} ({})", describe(&status)));
    }
    match status.success() {
        true => Ok(()),
        false => Err(format!(
            "the command {shown} failed ({})",
            describe(&status)
        )),
    }
}

fn describe(status: &ProcessStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => match Signal::try_from(signal) {
            Ok(signal) => format!("killed by {signal}"),
            Err(_) => format!("killed by signal {signal}"),
        },
        _ => status.to_string(),
    }
}
