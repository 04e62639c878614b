//! `pgpre`'s side of the co-process: fork and detach before any runtime exists, then wait on the handshake pipe.
//!
//! Protocol, one line each, co-process to `pgpre`: `warn <text>` and `wait <text>`
//! (any number; `pgpre` prints a `wait` line at once), then `ok <start lsn>` or `err <exit code> <message>` optionally followed by
//! `hint <text>`; then the co-process closes the pipe. A pipe closed without
//! `ok` or `err` is an error too.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use daemonize::{Daemonize, Outcome};
use futures_util::future::BoxFuture;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::hold;
use super::start::Handshake;
use super::{BackupError, BackupOptions};
use crate::conn::ConnSettings;
use crate::exit::{ExitStatus, Failure};

/// What `pgpre` learned from a co-process that started a backup.
#[derive(Debug)]
pub struct StartReport {
    /// The LSN returned by the start function.
    pub start_lsn: String,
    /// Warnings to print (e.g. archiving is off).
    pub warnings: Vec<String>,
}

/// Slack on top of `start_timeout` for connecting and the advisory lock.
const HANDSHAKE_SLACK: Duration = Duration::from_secs(60);

/// Forks the detached co-process and waits for its report. In the co-process this never returns.
///
/// Must be called before any thread or tokio runtime exists.
pub fn start_detached(
    settings: ConnSettings,
    options: BackupOptions,
) -> Result<StartReport, BackupError> {
    let log_file = match &options.log_file {
        Some(path) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|source| BackupError::Output {
                    path: path.clone(),
                    source,
                })?,
        ),
        None => None,
    };
    let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| BackupError::System(format!("cannot create the handshake pipe: {e}")))?;
    let mut daemon = Daemonize::new().working_directory("/").umask(0o077);
    if let Some(file) = &log_file {
        let stderr = file
            .try_clone()
            .map_err(|e| BackupError::System(format!("cannot duplicate the log file: {e}")))?;
        let stdout = file
            .try_clone()
            .map_err(|e| BackupError::System(format!("cannot duplicate the log file: {e}")))?;
        daemon = daemon.stdout(stdout).stderr(stderr);
    }
    drop(log_file);
    match daemon.execute() {
        Outcome::Parent(Ok(_)) => {
            drop(write_end);
            let limit = options.start_timeout.map(|limit| limit + HANDSHAKE_SLACK);
            read_report(read_end, limit, options.log_file.as_deref())
        }
        Outcome::Parent(Err(error)) => Err(BackupError::System(format!(
            "cannot start the co-process: {error}"
        ))),
        Outcome::Child(result) => {
            drop(read_end);
            let mut handshake = PipeHandshake {
                pipe: Some(File::from(write_end)),
            };
            let code = match result {
                Ok(_) => coprocess_main(&settings, &options, &mut handshake),
                Err(error) => {
                    let error =
                        BackupError::System(format!("cannot detach the co-process: {error}"));
                    handshake.failed(&error);
                    error.exit_status().code()
                }
            };
            std::process::exit(i32::from(code));
        }
    }
}

/// The detached co-process: closes inherited descriptors, runs the backup, returns the exit code.
fn coprocess_main(
    settings: &ConnSettings,
    options: &BackupOptions,
    handshake: &mut PipeHandshake,
) -> u8 {
    let keep = handshake.pipe.as_ref().map(|pipe| pipe.as_raw_fd());
    close_inherited_descriptors(keep);
    super::coprocess_log::init_coprocess_log(options);
    tracing::info!("co-process {} started", std::process::id());
    let runtime = match super::runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            handshake.failed(&error);
            return error.exit_status().code();
        }
    };
    let result = runtime.block_on(hold::run(settings, options, handshake));
    // No waiting for blocking threads (a stuck name lookup): pgpre waits for this exit.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitStatus::Success.code(),
        Err(error) => {
            tracing::error!("{error}");
            error.exit_status().code()
        }
    }
}

/// Closes every descriptor above stderr except `keep`, so the caller's pipes
/// (`lsn=$(pgpre)`, `pgpre 2>&1 | cat`) see end-of-file as soon as `pgpre` exits.
fn close_inherited_descriptors(keep: Option<i32>) {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let descriptors: Vec<i32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2 && Some(fd) != keep)
        .collect();
    for fd in descriptors {
        // The directory's own descriptor is among them and already closed: EBADF is fine.
        let _ = nix::unistd::close(fd);
    }
}

/// The co-process's end of the handshake pipe.
struct PipeHandshake {
    pipe: Option<File>,
}

impl PipeHandshake {
    fn send(&mut self, line: &str) -> bool {
        let Some(pipe) = self.pipe.as_mut() else {
            return false;
        };
        let line = format!("{}\n", line.replace(['\n', '\r'], " "));
        pipe.write_all(line.as_bytes()).is_ok()
    }
}

impl Handshake for PipeHandshake {
    fn warn(&mut self, text: &str) {
        self.send(&format!("warn {text}"));
    }

    fn started(&mut self, start_lsn: &str) -> bool {
        let delivered = self.send(&format!("ok {start_lsn}"));
        // Closing our end is what lets pgpre see end-of-file and exit.
        self.pipe = None;
        delivered
    }

    fn failed(&mut self, error: &BackupError) {
        self.send(&format!("err {} {error}", error.exit_status().code()));
        if let Some(hint) = error.hint() {
            self.send(&format!("hint {hint}"));
        }
        // The pipe stays open until this process exits, so pgpre returns its error only once
        // the co-process is gone: a caller that retries at once never meets a failing one.
    }

    fn waiting(&mut self, text: &str) {
        self.send(&format!("wait {text}"));
    }

    fn gone(&self) -> BoxFuture<'static, ()> {
        // A duplicate of our end, watched for the error event a pipe's writer gets when
        // its reader closes; dropped with the future, so it never keeps the pipe open.
        let watched = self
            .pipe
            .as_ref()
            .map(|pipe| pipe.as_fd().try_clone_to_owned());
        Box::pin(async move {
            let reader_closed = match watched {
                // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and the
                // same for the AsyncFd's whole life.
                Some(Ok(fd)) => {
                    match unsafe { AsyncFd::register_with_interest(fd, Interest::ERROR) } {
                        Ok(watch) => watch
                            .ready(Interest::ERROR)
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string()),
                        Err(error) => Err(error.to_string()),
                    }
                }
                Some(Err(error)) => Err(error.to_string()),
                None => return std::future::pending().await,
            };
            if let Err(error) = reader_closed {
                tracing::warn!("cannot watch the handshake pipe: {error}");
                std::future::pending::<()>().await;
            }
        })
    }
}

/// Reads the co-process's report until the pipe closes or `limit` runs out.
fn read_report(
    read_end: OwnedFd,
    limit: Option<Duration>,
    log_file: Option<&std::path::Path>,
) -> Result<StartReport, BackupError> {
    let see_log = match log_file {
        Some(path) => format!(" (see {})", path.display()),
        None => " (set backup.log_file to keep its log)".to_string(),
    };
    let deadline = limit.map(|limit| Instant::now() + limit);
    let mut text = Vec::new();
    let mut pipe = File::from(read_end);
    let mut buffer = [0u8; 4096];
    loop {
        let timeout = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(BackupError::Timeout(format!(
                        "the co-process did not report within {} s{see_log}",
                        limit.map_or(0, |limit| limit.as_secs())
                    )));
                }
                PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32)
                    .unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(error) => {
                return Err(BackupError::System(format!(
                    "cannot wait for the co-process: {error}"
                )))
            }
        }
        match pipe.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => {
                let printed = text.len()
                    - text
                        .iter()
                        .rev()
                        .position(|&b| b == b'\n')
                        .map_or(text.len(), |p| p);
                text.extend_from_slice(&buffer[..count]);
                print_waiting(&text[printed..]);
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => {
                return Err(BackupError::System(format!(
                    "cannot read from the co-process: {error}"
                )))
            }
        }
    }
    parse_report(&String::from_utf8_lossy(&text), &see_log)
}

/// Prints the `wait` lines among the complete lines of `new` (the text after the last line
/// already looked at) on stderr at once: the caller learns why pgpre takes long.
fn print_waiting(new: &[u8]) {
    let complete = match new.iter().rposition(|&b| b == b'\n') {
        Some(end) => &new[..end],
        None => return,
    };
    for line in String::from_utf8_lossy(complete).lines() {
        if let Some(text) = line.strip_prefix("wait ") {
            eprintln!("pgpre: {text}");
        }
    }
}

/// Interprets the handshake lines.
fn parse_report(text: &str, see_log: &str) -> Result<StartReport, BackupError> {
    let mut warnings = Vec::new();
    let mut failure: Option<(ExitStatus, String)> = None;
    let mut hint = None;
    for line in text.lines() {
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        match kind {
            "warn" => warnings.push(rest.to_string()),
            "ok" if failure.is_none() => {
                return Ok(StartReport {
                    start_lsn: rest.to_string(),
                    warnings,
                })
            }
            "err" => {
                let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
                failure = Some((status_from_code(code), message.to_string()));
            }
            "hint" => hint = Some(rest.to_string()),
            _ => {}
        }
    }
    match failure {
        Some((status, message)) => Err(BackupError::Reported {
            message,
            hint,
            status,
        }),
        None => Err(BackupError::Coproc(format!(
            "the co-process ended without reporting whether the backup started{see_log}"
        ))),
    }
}

/// The status of an `err` line; an unknown code (or 0, which is no error) is internal.
fn status_from_code(code: &str) -> ExitStatus {
    code.parse()
        .ok()
        .and_then(ExitStatus::from_code)
        .filter(|status| *status != ExitStatus::Success)
        .unwrap_or(ExitStatus::Internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_report_carries_lsn_and_warnings() {
        let report = parse_report("warn archive_mode is off\nok 0/2000028\n", "").unwrap();
        assert_eq!(report.start_lsn, "0/2000028");
        assert_eq!(report.warnings, vec!["archive_mode is off"]);
    }

    #[test]
    fn err_report_keeps_status_and_hint() {
        let error = parse_report(
            "err 4 permission denied for function pg_backup_start\nhint GRANT ...\n",
            "",
        )
        .unwrap_err();
        assert_eq!(error.exit_status(), ExitStatus::Server);
        assert_eq!(error.hint().as_deref(), Some("GRANT ..."));
        assert_eq!(
            error.to_string(),
            "permission denied for function pg_backup_start"
        );
    }

    #[test]
    fn silence_is_an_error() {
        let error = parse_report("", " (see /var/log/x)").unwrap_err();
        assert_eq!(error.exit_status(), ExitStatus::BackupFailed);
        assert!(error.to_string().ends_with("(see /var/log/x)"));
        assert!(parse_report("warn only a warning\n", "").is_err());
    }

    /// The co-process learns that pgpre is gone from the pipe itself, at once, and a watch
    /// that is dropped does not keep the pipe open (pgpre would never see end-of-file).
    #[tokio::test]
    async fn a_closed_reader_is_seen_at_once_and_the_watch_holds_no_descriptor() {
        let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let mut handshake = PipeHandshake {
            pipe: Some(File::from(write_end)),
        };
        let watch = handshake.gone();
        drop(watch);
        handshake.waiting("waiting for a spread checkpoint");
        handshake.pipe = None;
        let mut text = String::new();
        File::from(read_end).read_to_string(&mut text).unwrap();
        assert_eq!(
            text, "wait waiting for a spread checkpoint\n",
            "end-of-file came"
        );

        let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let handshake = PipeHandshake {
            pipe: Some(File::from(write_end)),
        };
        let gone = handshake.gone();
        tokio::pin!(gone);
        let early = tokio::time::timeout(Duration::from_millis(200), &mut gone).await;
        assert!(early.is_err(), "pgpre is still there");
        drop(read_end);
        tokio::time::timeout(Duration::from_secs(1), gone)
            .await
            .expect("the closed reader is seen within a second");
    }

    #[test]
    fn unknown_codes_are_internal() {
        assert_eq!(status_from_code("3"), ExitStatus::Connection);
        assert_eq!(status_from_code("x"), ExitStatus::Internal);
        assert_eq!(status_from_code("0"), ExitStatus::Internal);
    }
}
