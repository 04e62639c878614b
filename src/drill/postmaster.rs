//! The throwaway server: the binaries of the data directory's major version, `postgres` started
//! on the clone as the data directory's owner, the wait (on its log, event-driven) until it has
//! recovered and promoted, and its stop. Dropping a running [`Postmaster`] shuts it down.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::Notify;

use super::clone::Owner;
use super::error::DrillError;
use super::serverlog;

/// The server binaries that match the data directory.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// Directory of `postgres`.
    pub bindir: PathBuf,
    /// What `postgres --version` says, e.g. `15.18`.
    pub version: String,
}

/// `postgres (PostgreSQL) 15.18 (Debian ...)` -> (`15.18`, 15).
fn parse_version(output: &str) -> Option<(String, u32)> {
    let version = output.split_whitespace().nth(2)?;
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    Some((version.to_string(), digits.parse().ok()?))
}

fn postgres_version(bindir: &Path) -> Option<(String, u32)> {
    let output = std::process::Command::new(bindir.join("postgres"))
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    parse_version(&String::from_utf8_lossy(&output.stdout))
}

/// `pg_config --bindir`, when a pg_config is on PATH.
fn pg_config_bindir() -> Option<PathBuf> {
    let output = std::process::Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let dir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (output.status.success() && !dir.is_empty()).then(|| PathBuf::from(dir))
}

/// `/usr/lib/postgresql/<major>/bin` directories, newest major first.
fn debian_bindirs() -> Vec<(u32, PathBuf)> {
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .collect();
    found.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    found
}

/// The binaries for `major`: `--pg-bindir` when given (it must match), else the first match
/// of `/usr/lib/postgresql/<major>/bin`, `/usr/pgsql-<major>/bin`, `pg_config --bindir`, PATH.
pub fn find_binaries(major: u32, explicit: Option<&Path>) -> Result<Binaries, DrillError> {
    let candidates: Vec<PathBuf> = match explicit {
        Some(dir) => vec![dir.to_path_buf()],
        None => {
            let mut dirs = vec![
                PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")),
                PathBuf::from(format!("/usr/pgsql-{major}/bin")),
            ];
            dirs.extend(pg_config_bindir());
            if let Some(path) = std::env::var_os("PATH") {
                dirs.extend(std::env::split_paths(&path));
            }
            dirs
        }
    };
    let mut tried = Vec::new();
    for dir in candidates {
        match postgres_version(&dir) {
            Some((version, found)) if found == major => {
                return Ok(Binaries {
                    bindir: dir,
                    version,
                })
            }
            Some((version, _)) => tried.push(format!("{} ({version})", dir.display())),
            None if explicit.is_some() => tried.push(format!("{} (no postgres)", dir.display())),
            None => {}
        }
    }
    Err(DrillError::NoBinaries { major, tried })
}

/// `pg_amcheck` for a 14+ server: beside the server, else `pg_config --bindir`, else the
/// newest Debian install that has one.
pub fn find_pg_amcheck(bindir: &Path) -> Option<PathBuf> {
    std::iter::once(bindir.to_path_buf())
        .chain(pg_config_bindir())
        .chain(
            debian_bindirs()
                .into_iter()
                .filter(|(major, _)| *major >= 14)
                .map(|(_, dir)| dir),
        )
        .map(|dir| dir.join("pg_amcheck"))
        .find(|path| path.is_file())
}

/// The server's stderr, read line by line as it comes (event-driven), appended to the log
/// file and kept in memory; `changed` is notified after each line and at the end.
#[derive(Debug, Clone, Default)]
struct LogPump {
    text: Arc<Mutex<String>>,
    changed: Arc<Notify>,
}

impl LogPump {
    /// Reads `stderr` until it closes (the postmaster and all its children have exited).
    fn spawn(
        &self,
        stderr: tokio::process::ChildStderr,
        mut file: fs::File,
    ) -> tokio::task::JoinHandle<()> {
        let pump = self.clone();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let _ = file.write_all(&line);
                        pump.lock().push_str(&String::from_utf8_lossy(&line));
                        pump.changed.notify_one();
                    }
                }
            }
            pump.changed.notify_one();
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, String> {
        self.text
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Why the server stopped waiting.
#[derive(Debug)]
pub enum NotReady {
    /// The postmaster exited (the log says why).
    Exited,
    /// The deadline passed first.
    TimedOut,
}

/// A running `postgres` on the clone.
#[derive(Debug)]
pub struct Postmaster {
    child: Option<tokio::process::Child>,
    pid: Pid,
    log: LogPump,
    pump: Option<tokio::task::JoinHandle<()>>,
}

impl Postmaster {
    /// Starts `postgres -D <clone> -c ...` with stderr into `log_path`, as `owner` when root,
    /// in its own process group (a terminal's Ctrl-C reaches pgdrill, which stops it).
    pub fn start(
        binaries: &Binaries,
        data_dir: &Path,
        options: &[(&str, String)],
        log_path: &Path,
        owner: &Owner,
    ) -> Result<Postmaster, DrillError> {
        let log_file = fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(log_path)
            .map_err(|source| DrillError::workspace("create", log_path, source))?;
        let mut command = tokio::process::Command::new(binaries.bindir.join("postgres"));
        command.arg("-D").arg(data_dir);
        for (name, value) in options {
            command.arg("-c").arg(format!("{name}={value}"));
        }
        command
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .current_dir(log_path.parent().unwrap_or(Path::new("/")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(home) = &owner.home {
            command.env("HOME", home);
        }
        if nix::unistd::geteuid().is_root() {
            command.uid(owner.uid).gid(owner.gid);
        }
        let mut child = command.spawn().map_err(|source| DrillError::Spawn {
            program: binaries.bindir.join("postgres"),
            source,
        })?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw)
            .ok_or_else(|| DrillError::Internal("the server exited before it had a pid".into()))?;
        let log = LogPump::default();
        let pump = child
            .stderr
            .take()
            .map(|stderr| log.spawn(stderr, log_file));
        Ok(Postmaster {
            child: Some(child),
            pid,
            log,
            pump,
        })
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().clone()
    }

    /// Waits until the log says the server accepts connections (recovered and promoted: with
    /// `hot_standby = off` nothing is accepted before), the postmaster exits, or `deadline`.
    pub async fn wait_ready(&mut self, deadline: Option<Instant>) -> Result<(), NotReady> {
        let until = deadline.map(tokio::time::Instant::from_std);
        let mut scanned = 0;
        loop {
            {
                let log = self.log.lock();
                if serverlog::is_ready(&log[scanned..]) {
                    return Ok(());
                }
                scanned = log.rfind('\n').map_or(0, |at| at + 1);
            }
            let Some(child) = self.child.as_mut() else {
                return Err(NotReady::TimedOut);
            };
            tokio::select! {
                _ = child.wait() => {
                    self.child = None;
                    self.drain().await;
                    return Err(NotReady::Exited);
                }
                () = self.log.changed.notified() => {}
                () = sleep_until(until) => return Err(NotReady::TimedOut),
            }
        }
    }

    /// Waits (briefly) until the log pipe is closed, so the log is complete.
    async fn drain(&mut self) {
        if let Some(pump) = self.pump.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), pump).await;
        }
    }

    /// Stops the server: fast shutdown (a clean clone to keep) or immediate (one to throw
    /// away), then SIGKILL after `patience`.
    pub async fn stop(&mut self, fast: bool) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let (signal, patience) = if fast {
            (Signal::SIGINT, Duration::from_secs(120))
        } else {
            (Signal::SIGQUIT, Duration::from_secs(20))
        };
        let _ = kill(self.pid, signal);
        if tokio::time::timeout(patience, child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
        self.drain().await;
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl Drop for Postmaster {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Immediate shutdown; the drill is being abandoned (failure or signal).
        let _ = kill(self.pid, Signal::SIGQUIT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = child.try_wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(
            parse_version("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some(("15.18".into(), 15))
        );
        assert_eq!(
            parse_version("postgres (PostgreSQL) 10.23\n"),
            Some(("10.23".into(), 10))
        );
        assert_eq!(
            parse_version("postgres (PostgreSQL) 18beta1\n"),
            Some(("18beta1".into(), 18))
        );
        assert_eq!(parse_version("bash: postgres: not found"), None);
    }
}
