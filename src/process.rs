//! Process plumbing every binary shares: running a child with its last stderr lines kept inside
//! the error it causes, writing a file atomically (temporary name, fsync, rename), and the
//! async runtime.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{ChildStdout, Command};

/// How many of its last stderr lines a failed child leaves in its error.
pub const STDERR_LINES_KEPT: usize = 20;

/// The async runtime of every binary: one thread (the work is waiting on servers and children).
pub fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// A child process that could not be run, failed, or ran too long.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// The program could not be started, or waiting for it failed.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program, as errors name it.
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The program exited non-zero or by a signal.
    #[error("{program} failed ({status}){}", stderr_suffix(.stderr))]
    Failed {
        /// The program, as errors name it.
        program: String,
        /// How it ended.
        status: ExitStatus,
        /// Its last stderr lines (at most [`STDERR_LINES_KEPT`]), newline-separated.
        stderr: String,
    },
    /// The program ran longer than its time limit and was killed.
    #[error("{program} did not finish within {timeout:?}")]
    Timeout {
        /// The program, as errors name it.
        program: String,
        /// The limit.
        timeout: Duration,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// A child that ran to its end: what its stdout consumer returned, and how it ended.
#[derive(Debug)]
pub struct Finished<T> {
    program: String,
    status: ExitStatus,
    stderr: String,
    output: T,
}

impl<T> Finished<T> {
    /// What the stdout consumer returned, and whether the child succeeded (else the error,
    /// with its last stderr lines).
    pub fn into_parts(self) -> (T, Result<(), ChildError>) {
        let ended = if self.status.success() {
            Ok(())
        } else {
            Err(ChildError::Failed {
                program: self.program,
                status: self.status,
                stderr: self.stderr,
            })
        };
        (self.output, ended)
    }

    /// What the stdout consumer returned, when the child succeeded.
    pub fn success(self) -> Result<T, ChildError> {
        let (output, ended) = self.into_parts();
        ended.map(|()| output)
    }
}

/// What a child is, for its log lines and errors.
#[derive(Debug, Clone, Copy)]
pub struct ChildName<'a> {
    /// The program as errors name it (`pg_dump`, `"/usr/bin/notify"`).
    pub program: &'a str,
    /// The label of its log lines: `[label] line`.
    pub label: &'a str,
}

/// Runs `command` (stdin from /dev/null, killed when dropped) until it ends: `stdout` consumes
/// its standard output; every stderr line is logged as a warning `[label] line` and the last
/// [`STDERR_LINES_KEPT`] are kept for the error. With `timeout`, a child still running then is
/// killed and the result is [`ChildError::Timeout`].
pub async fn run_child<T, F, Fut>(
    mut command: Command,
    name: ChildName<'_>,
    timeout: Option<Duration>,
    stdout: F,
) -> Result<Finished<T>, ChildError>
where
    F: FnOnce(ChildStdout) -> Fut,
    Fut: Future<Output = T>,
{
    let spawn_error = |source| ChildError::Spawn {
        program: name.program.to_string(),
        source,
    };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(spawn_error)?;
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(spawn_error(io::Error::other("no pipe to the child")));
    };
    widen_pipe(&out);
    let run = async { tokio::join!(stdout(out), keep_last_lines(err, name.label), child.wait()) };
    let (output, stderr, status) = match timeout {
        None => run.await,
        Some(limit) => tokio::time::timeout(limit, run)
            .await
            .map_err(|_| ChildError::Timeout {
                program: name.program.to_string(),
                timeout: limit,
            })?,
    };
    Ok(Finished {
        program: name.program.to_string(),
        status: status.map_err(spawn_error)?,
        stderr,
        output,
    })
}

/// Pipe capacity asked for a child's stdout: the Linux default is 64 KiB, so a dump writing
/// small blocks wakes its reader (and sleeps) about 16 times per MiB; 1 MiB (the default
/// `fs.pipe-max-size`) lets each side run for a whole read batch.
const PIPE_CAPACITY: i32 = 1 << 20;

/// Grows the pipe to [`PIPE_CAPACITY`]; a refusal (a lower `fs.pipe-max-size`, a user over
/// `fs.pipe-user-pages-soft`) keeps the default size, which works, only slower.
fn widen_pipe(pipe: &ChildStdout) {
    if let Err(error) = nix::fcntl::fcntl(pipe, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_CAPACITY)) {
        tracing::debug!("pipe kept at its default size: {error}");
    }
}

/// Logs every line of `stream` as a warning `[label] line`; returns the last
/// [`STDERR_LINES_KEPT`], newline-separated.
pub async fn keep_last_lines<R: AsyncRead + Unpin>(stream: R, label: &str) -> String {
    let mut kept: VecDeque<String> = VecDeque::new();
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::warn!("[{label}] {line}");
        if kept.len() == STDERR_LINES_KEPT {
            kept.pop_front();
        }
        kept.push_back(line);
    }
    Vec::from(kept).join("\n")
}

/// Creates `dir` and its missing parents, mode 0700.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// How a file written by [`AtomicFile`] is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileOptions {
    /// Permission bits set before the rename; `None` keeps the 0600 it is created with.
    pub mode: Option<u32>,
    /// Run as root (as snapshot hooks often are), give the file the owner of its directory: a
    /// `backup_label` owned by root in a copy owned by `postgres` would stop the restored
    /// server from reading it.
    pub adopt_dir_owner: bool,
}

/// A file written under a temporary name and renamed to its final name only once complete and
/// on disk: a file under its final name is never half-written. Dropped before
/// [`AtomicFile::commit`], it removes its temporary file.
#[derive(Debug)]
pub struct AtomicFile {
    file: File,
    temp: PathBuf,
    target: PathBuf,
    options: FileOptions,
    committed: bool,
}

impl AtomicFile {
    /// Creates `temp`, which must not exist yet, mode 0600; it becomes `target` on commit.
    pub fn create(target: &Path, temp: &Path, options: FileOptions) -> io::Result<AtomicFile> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(temp)?;
        let atomic = AtomicFile {
            file,
            temp: temp.to_path_buf(),
            target: target.to_path_buf(),
            options,
            committed: false,
        };
        if options.adopt_dir_owner {
            adopt_directory_owner(&atomic.file, directory_of(target))?;
        }
        Ok(atomic)
    }

    /// The open temporary file, to write into.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// fsync, chmod, rename to the final name, fsync the directory.
    pub fn commit(mut self) -> io::Result<()> {
        self.file.sync_all()?;
        if let Some(bits) = self.options.mode {
            fs::set_permissions(&self.temp, fs::Permissions::from_mode(bits))?;
        }
        fs::rename(&self.temp, &self.target)?;
        self.committed = true;
        File::open(directory_of(&self.target))?.sync_all()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Writes `contents` into `target` through [`AtomicFile`].
pub fn write_atomically(
    target: &Path,
    temp: &Path,
    contents: &[u8],
    options: FileOptions,
) -> io::Result<()> {
    use std::io::Write;
    let atomic = AtomicFile::create(target, temp, options)?;
    atomic.file().write_all(contents)?;
    atomic.commit()
}

/// The directory holding `path` (`.` for a bare name).
pub fn directory_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Run as root, gives `file` the owner of `dir`; otherwise does nothing.
fn adopt_directory_owner(file: &File, dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let owner = fs::metadata(dir)?;
    std::os::unix::fs::fchown(file, Some(owner.uid()), Some(owner.gid()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    const NAME: ChildName<'static> = ChildName {
        program: "sh",
        label: "test",
    };

    async fn read_all(mut out: ChildStdout) -> String {
        use tokio::io::AsyncReadExt;
        let mut text = String::new();
        let _ = out.read_to_string(&mut text).await;
        text
    }

    #[tokio::test]
    async fn a_failed_child_keeps_its_last_stderr_lines() {
        let finished = run_child(
            sh("echo out; for i in $(seq 1 25); do echo line$i >&2; done; exit 3"),
            NAME,
            None,
            read_all,
        )
        .await
        .unwrap();
        let (output, ended) = finished.into_parts();
        assert_eq!(output, "out\n");
        let error = ended.unwrap_err();
        match &error {
            ChildError::Failed { stderr, .. } => {
                let lines: Vec<&str> = stderr.lines().collect();
                assert_eq!(lines.len(), STDERR_LINES_KEPT);
                assert_eq!(lines[0], "line6");
                assert_eq!(lines[19], "line25");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            error
                .to_string()
                .starts_with("sh failed (exit status: 3): line6\n"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn success_missing_program_and_timeout() {
        let ok = run_child(sh("echo hi"), NAME, None, read_all).await;
        assert_eq!(ok.unwrap().success().unwrap(), "hi\n");
        let missing = run_child(Command::new("/nonexistent/program"), NAME, None, read_all).await;
        assert!(
            matches!(&missing, Err(ChildError::Spawn { .. })),
            "{missing:?}"
        );
        let started = std::time::Instant::now();
        let slow = run_child(
            sh("sleep 5"),
            NAME,
            Some(Duration::from_millis(100)),
            read_all,
        )
        .await;
        assert!(matches!(slow, Err(ChildError::Timeout { .. })), "{slow:?}");
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    #[test]
    fn atomic_files_appear_complete_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("backup_label");
        let temp = dir.path().join(".backup_label.tmp");
        write_atomically(
            &target,
            &temp,
            b"label",
            FileOptions {
                mode: Some(0o640),
                adopt_dir_owner: false,
            },
        )
        .unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"label");
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o7777, 0o640);
        assert!(!temp.exists());
        // Dropped unfinished: nothing under either name.
        let other = dir.path().join("other");
        drop(AtomicFile::create(&other, &temp, FileOptions::default()).unwrap());
        assert!(!temp.exists() && !other.exists());
        // A temporary name in use is not taken over, nor removed.
        fs::write(&temp, b"someone else's").unwrap();
        assert!(write_atomically(&other, &temp, b"x", FileOptions::default()).is_err());
        assert_eq!(fs::read(&temp).unwrap(), b"someone else's");
        // Default: 0600.
        fs::remove_file(&temp).unwrap();
        write_atomically(&other, &temp, b"x", FileOptions::default()).unwrap();
        assert_eq!(fs::metadata(&other).unwrap().mode() & 0o7777, 0o600);
    }

    #[test]
    fn files_take_the_directory_owner_when_asked_and_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "only root can give files away: run the tests as root, as scripts/test and CI do"
        );
        let dir = tempfile::tempdir().unwrap();
        nix::unistd::chown(dir.path(), Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let options = FileOptions {
            mode: None,
            adopt_dir_owner: true,
        };
        let target = dir.path().join("a");
        write_atomically(&target, &dir.path().join("a.tmp"), b"x", options).unwrap();
        assert_eq!(fs::metadata(&target).unwrap().uid(), 65534);
        let target = dir.path().join("b");
        write_atomically(
            &target,
            &dir.path().join("b.tmp"),
            b"x",
            FileOptions::default(),
        )
        .unwrap();
        assert_eq!(fs::metadata(&target).unwrap().uid(), 0);
    }

    #[test]
    fn private_directories() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("a/b");
        create_private_dir(&dir).unwrap();
        create_private_dir(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(directory_of(Path::new("x")), Path::new("."));
    }
}
