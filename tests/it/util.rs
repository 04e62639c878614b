//! The only way the tests run one of our binaries (and the client tools they call on a cluster):
//! [`TestCommand`], with a clean environment and always a time limit, past which the program's
//! process group is killed and the test fails naming the command and the limit. Also the one
//! [`wait_for`], the blocks of README.md and docs/ the tests run ([`doc_block`]), the helpers that
//! read the state table and find the co-processes, and a small [`Tmpfs`] for full and read-only
//! disks.
//!
//! As ripgrep's `tests/util.rs`: a builder over [`std::process::Command`] that starts from
//! [`Cluster::command`] (only `PATH`, `HOME`, the cluster's `PG*` variables and its marker), so
//! nothing of the developer's environment reaches the program under test.

use std::ffi::OsStr;
use std::fmt;
use std::io::{ErrorKind, Read, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::cluster::{marked_processes, scratch_dir, Cluster};

/// How long a run may take unless the test sets its own [`TestCommand::limit`].
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(60);

/// Path of one of this package's binaries, built by cargo for the integration tests.
pub fn binary(name: &str) -> PathBuf {
    let path = match name {
        "pgpre" => env!("CARGO_BIN_EXE_pgpre"),
        "pgpost" => env!("CARGO_BIN_EXE_pgpost"),
        "pgback" => env!("CARGO_BIN_EXE_pgback"),
        "pgdrill" => env!("CARGO_BIN_EXE_pgdrill"),
        "pgbase" => env!("CARGO_BIN_EXE_pgbase"),
        other => {
            panic!("binary({other:?}): not a binary of this package (known: pgpre, pgpost, pgback, pgdrill, pgbase)")
        }
    };
    PathBuf::from(path)
}

/// The directory of this package's binaries, for a `PATH` that finds them by name.
pub fn binary_dir() -> PathBuf {
    let pgpre = binary("pgpre");
    pgpre
        .parent()
        .unwrap_or_else(|| panic!("{} has no parent directory", pgpre.display()))
        .to_path_buf()
}

/// `PATH` with [`binary_dir`] first, then the test's own `PATH`.
pub fn path_with_binaries() -> std::ffi::OsString {
    let mut dirs = vec![binary_dir()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap_or_else(|e| panic!("building PATH: {e}"))
}

/// Path of a file under `examples/` (the hook recipes).
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// A program to run against a cluster: stdin is empty, stdout and stderr are captured, and
/// the program runs in a process group of its own, which is killed when the time limit runs
/// out (a co-process that detached itself is the cluster's to clean up).
#[derive(Debug)]
pub struct TestCommand {
    command: Command,
    limit: Duration,
}

impl TestCommand {
    /// One of our binaries (`pgpre`, `pgpost`, `pgback`) against `cluster`.
    pub fn new(cluster: &Cluster, name: &str) -> TestCommand {
        TestCommand::program(cluster, binary(name))
    }

    /// A system tool (`losetup`, `mount`, `btrfs`, `cp`) on the same terms (time limit, own
    /// process group), in the test's environment with `LC_ALL=C`.
    pub fn tool(program: impl AsRef<OsStr>) -> TestCommand {
        let mut command = Command::new(program);
        command.env("LC_ALL", "C");
        TestCommand {
            command,
            limit: DEFAULT_LIMIT,
        }
    }

    /// A script of `examples/` against `cluster`, with our binaries first on `PATH`, as an
    /// installed recipe would find them.
    pub fn example(cluster: &Cluster, name: &str) -> TestCommand {
        TestCommand::program(cluster, example(name)).env("PATH", path_with_binaries())
    }

    /// A client tool (`psql`, `pg_restore`, ...) against `cluster`, on the same terms.
    pub fn program(cluster: &Cluster, program: impl AsRef<OsStr>) -> TestCommand {
        TestCommand {
            command: cluster.command(program),
            limit: DEFAULT_LIMIT,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> TestCommand {
        self.command.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> TestCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    /// Set (or, with an empty value, blank out) one environment variable.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> TestCommand {
        self.command.env(key, value);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> TestCommand {
        self.command.current_dir(dir);
        self
    }

    /// How long the run may take instead of [`DEFAULT_LIMIT`].
    pub fn limit(mut self, limit: Duration) -> TestCommand {
        self.limit = limit;
        self
    }

    /// Run to the end: the program has exited and every holder of its output pipes has
    /// closed them (a co-process that kept them would make this run out of time).
    pub fn run(self) -> Run {
        self.spawn().finish()
    }

    /// Start the program, for a test that acts on it while it runs; [`Running::finish`]
    /// collects it.
    pub fn spawn(mut self) -> Running {
        let what = describe(&self.command);
        let mut child = self
            .command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let (sender, events) = mpsc::channel();
        let stdout = child.stdout.take().map(|out| collect(out, sender.clone()));
        let stderr = child.stderr.take().map(|err| collect(err, sender.clone()));
        let pid = Pid::from_raw(child.id() as i32);
        thread::spawn(move || {
            let _ = sender.send(Event::Exited(child.wait()));
        });
        Running {
            what,
            pid,
            limit: self.limit,
            started: Instant::now(),
            events,
            stdout: stdout.unwrap_or_default(),
            stderr: stderr.unwrap_or_default(),
            status: None,
            open_streams: 2,
            finished: false,
        }
    }
}

/// Shorthand for `TestCommand::new(cluster, program).args(args).run()`: the default limit.
pub fn run(cluster: &Cluster, program: &str, args: &[&str]) -> Run {
    TestCommand::new(cluster, program).args(args).run()
}

/// `pgpre --fast -l x` style: the program's file name and its arguments, quoted when needed.
fn describe(command: &Command) -> String {
    let program = Path::new(command.get_program());
    let mut what = program
        .file_name()
        .unwrap_or(program.as_os_str())
        .to_string_lossy()
        .into_owned();
    for arg in command.get_args() {
        let arg = arg.to_string_lossy();
        let plain = !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=./:,@%+".contains(c));
        what.push(' ');
        if plain {
            what.push_str(&arg);
        } else {
            what.push_str(&format!("{arg:?}"));
        }
    }
    what
}

/// What the threads watching a running program report.
enum Event {
    Exited(std::io::Result<ExitStatus>),
    StreamClosed,
}

type Captured = Arc<Mutex<Vec<u8>>>;

/// Read `stream` to its end on a thread of its own, keeping what arrived so far readable.
fn collect(mut stream: impl Read + Send + 'static, events: mpsc::Sender<Event>) -> Captured {
    let captured = Captured::default();
    let filled = captured.clone();
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => filled
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = events.send(Event::StreamClosed);
    });
    captured
}

fn text(captured: &Captured) -> String {
    String::from_utf8_lossy(&captured.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
}

/// A started [`TestCommand`]. Dropped before it finished (a failing test), its process group
/// is killed.
pub struct Running {
    what: String,
    pid: Pid,
    limit: Duration,
    started: Instant,
    events: mpsc::Receiver<Event>,
    stdout: Captured,
    stderr: Captured,
    status: Option<ExitStatus>,
    open_streams: usize,
    finished: bool,
}

impl Running {
    /// Send `signal` to the program itself (not its process group).
    pub fn signal(&self, signal: Signal) {
        send_signal(self.pid.as_raw(), signal);
    }

    /// Wait for the end of the run within the command's limit, counted from its start.
    pub fn finish(self) -> Run {
        let deadline = self.started + self.limit;
        let limit = self.limit;
        self.finish_by(deadline, limit)
    }

    /// Wait for the end of the run for at most `limit` from now (e.g. after a signal).
    pub fn finish_within(self, limit: Duration) -> Run {
        self.finish_by(Instant::now() + limit, limit)
    }

    fn finish_by(mut self, deadline: Instant, limit: Duration) -> Run {
        while self.status.is_none() || self.open_streams > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Exited(status)) => {
                    self.status =
                        Some(status.unwrap_or_else(|e| panic!("waiting for {}: {e}", self.what)))
                }
                Ok(Event::StreamClosed) => self.open_streams -= 1,
                Err(RecvTimeoutError::Timeout) => self.overrun(limit),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("lost the threads watching {}", self.what)
                }
            }
        }
        self.finished = true;
        Run {
            code: self.status.and_then(|status| status.code()).unwrap_or(-1),
            stdout: text(&self.stdout),
            stderr: text(&self.stderr),
        }
    }

    fn overrun(&mut self, limit: Duration) -> ! {
        self.kill();
        let how = match self.status {
            None => "did not finish".to_string(),
            Some(status) => format!(
                "exited ({status}) but its output pipes stayed open (a process it started holds them)"
            ),
        };
        panic!(
            "{} {how} within its time limit of {limit:?}; killed\n--- stdout so far ---\n{}\n--- stderr so far ---\n{}",
            self.what,
            text(&self.stdout),
            text(&self.stderr)
        );
    }

    /// SIGKILL the program's process group, and the program should it have left the group.
    fn kill(&mut self) {
        self.finished = true;
        let _ = nix::sys::signal::killpg(self.pid, Signal::SIGKILL);
        if self.status.is_none() {
            let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.finished {
            self.kill();
        }
    }
}

/// What a finished run printed, and its exit code (-1 when a signal ended it).
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn assert_code(&self, code: i32, what: &str) -> &Self {
        assert_eq!(self.code, code, "{what}: unexpected exit code\n{self}");
        self
    }

    pub fn assert_ok(&self, what: &str) -> &Self {
        self.assert_code(0, what)
    }

    pub fn assert_stderr(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{self}"
        );
        self
    }

    pub fn assert_stderr_any(&self, needles: &[&str]) -> &Self {
        assert!(
            needles.iter().any(|needle| self.stderr.contains(needle)),
            "stderr lacks all of {needles:?}\n{self}"
        );
        self
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit code {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub use crate::docs::doc_block;

/// Checks `condition` until it holds, first every 10 ms, backing off to every 100 ms; panics
/// naming `what` once `limit` has passed.
pub fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(10);
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// `SELECT <expression> FROM backup`: a column (or an expression over the columns) of the
/// state table, for tests that run one backup.
pub fn backup_row(cluster: &Cluster, expression: &str) -> String {
    cluster.psql(&format!("SELECT {expression} FROM backup"))
}

/// The state of the one backup: `running`, `done`, `complete` or `failed`.
pub fn backup_state(cluster: &Cluster) -> String {
    backup_row(cluster, "state")
}

/// Whether the session holding the backup (the row's `pid`) is still connected.
pub fn holding_session_connected(cluster: &Cluster) -> bool {
    cluster.psql("SELECT count(*) FROM pg_stat_activity a JOIN backup b ON a.pid = b.pid") != "0"
}

/// Pids of the live co-processes started against this cluster.
pub fn coprocesses(cluster: &Cluster) -> Vec<i32> {
    marked_processes(cluster.marker())
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|stat| stat.contains("(pgpre)") && !stat.contains(") Z "))
                .unwrap_or(false)
        })
        .collect()
}

/// The one co-process; panics unless exactly one runs.
pub fn the_coprocess(cluster: &Cluster) -> i32 {
    let pids = coprocesses(cluster);
    assert_eq!(pids.len(), 1, "expected one co-process, found {pids:?}");
    pids[0]
}

/// Send `signal` to process `pid` (a co-process, or a program the test started).
pub fn send_signal(pid: i32, signal: Signal) {
    nix::sys::signal::kill(Pid::from_raw(pid), signal)
        .unwrap_or_else(|e| panic!("sending {signal} to process {pid}: {e}"));
}

/// A tmpfs of `size` mounted on a fresh directory the server user may use, unmounted on drop
/// (the tests run as root).
pub struct Tmpfs {
    path: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Tmpfs {
        let parent = scratch_dir();
        let path = parent.path().join("disk");
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&path)
            .output()
            .expect("running mount");
        assert!(
            output.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Tmpfs {
            path,
            _parent: parent,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write zeros until the disk is full.
    pub fn fill(&self) {
        let path = self.path.join("filler");
        let mut filler = std::fs::File::create(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        let block = vec![0u8; 4096];
        while filler.write_all(&block).is_ok() {}
    }

    pub fn remount_read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.path)
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "remounting {} read-only",
            self.path.display()
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A file system in an image file on a loop device, mounted; unmounted (retrying while it is
/// busy) and detached on drop, even when the test failed. The tests run as root.
pub struct LoopFs {
    image: PathBuf,
    mount: PathBuf,
    device: Option<String>,
    mounted: bool,
    /// Holds the image and the mount point when [`LoopFs`] made them; removed after the unmount.
    _dir: Option<tempfile::TempDir>,
}

/// How long one system tool (mkfs, mount, losetup, btrfs, fsfreeze, cp) may run.
pub const TOOL_LIMIT: Duration = Duration::from_secs(120);

/// Runs a system tool within [`TOOL_LIMIT`], panicking with its output unless it exits 0;
/// returns its stdout, trimmed.
pub fn tool(program: &str, args: &[&OsStr]) -> String {
    let run = TestCommand::tool(program)
        .args(args)
        .limit(TOOL_LIMIT)
        .run();
    run.assert_ok(&format!("{program} {args:?}"));
    run.stdout.trim().to_string()
}

impl LoopFs {
    /// A new btrfs of `size` (e.g. "1G") in a fresh directory the server user may enter.
    pub fn btrfs(size: &str) -> LoopFs {
        LoopFs::make(scratch_dir(), size, &["mkfs.btrfs", "-q"])
    }

    /// A new XFS with reflink of `size`.
    pub fn xfs_reflink(size: &str) -> LoopFs {
        LoopFs::make(scratch_dir(), size, &["mkfs.xfs", "-q", "-m", "reflink=1"])
    }

    /// A new XFS (reflink on) in `image`, a file to be created, mounted on `mount`, a
    /// directory to be created: e.g. a disk image on another [`LoopFs`].
    pub fn xfs_in(image: &Path, mount: &Path, size: &str) -> LoopFs {
        let mut fs = LoopFs::attach_new(image, mount, None);
        tool("truncate", &["-s".as_ref(), size.as_ref(), image.as_ref()]);
        fs.attach("");
        let device = fs.device.clone().unwrap_or_default();
        tool("mkfs.xfs", &["-q".as_ref(), device.as_ref()]);
        fs.mount_device("");
        fs
    }

    /// An existing image (a snapshot of another [`LoopFs`]'s image) on a new loop device,
    /// mounted with `options` (e.g. "ro,nouuid") on `mount`, a directory to be created.
    pub fn open(image: &Path, mount: &Path, options: &str) -> LoopFs {
        let mut fs = LoopFs::attach_new(image, mount, None);
        fs.attach(if options.split(',').any(|o| o == "ro") {
            "-r"
        } else {
            ""
        });
        fs.mount_device(options);
        fs
    }

    fn make(dir: tempfile::TempDir, size: &str, mkfs: &[&str]) -> LoopFs {
        let image = dir.path().join("disk.img");
        let mount = dir.path().join("mnt");
        let mut fs = LoopFs::attach_new(&image, &mount, Some(dir));
        tool("truncate", &["-s".as_ref(), size.as_ref(), image.as_ref()]);
        fs.attach("");
        let device = fs.device.clone().unwrap_or_default();
        let mut args: Vec<&OsStr> = mkfs[1..].iter().map(OsStr::new).collect();
        args.push(device.as_ref());
        tool(mkfs[0], &args);
        fs.mount_device("");
        fs
    }

    fn attach_new(image: &Path, mount: &Path, dir: Option<tempfile::TempDir>) -> LoopFs {
        std::fs::create_dir(mount).unwrap_or_else(|e| panic!("creating {}: {e}", mount.display()));
        LoopFs {
            image: image.to_path_buf(),
            mount: mount.to_path_buf(),
            device: None,
            mounted: false,
            _dir: dir,
        }
    }

    fn attach(&mut self, flag: &str) {
        let mut args: Vec<&OsStr> = vec!["--find".as_ref(), "--show".as_ref()];
        if !flag.is_empty() {
            args.push(flag.as_ref());
        }
        args.push(self.image.as_ref());
        self.device = Some(tool("losetup", &args));
    }

    fn mount_device(&mut self, options: &str) {
        let device = self.device.clone().unwrap_or_default();
        let mut args: Vec<&OsStr> = Vec::new();
        if !options.is_empty() {
            args.extend([OsStr::new("-o"), OsStr::new(options)]);
        }
        args.extend([OsStr::new(&device), self.mount.as_os_str()]);
        tool("mount", &args);
        self.mounted = true;
    }

    /// Where the file system is mounted.
    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// The image file behind the loop device.
    pub fn image(&self) -> &Path {
        &self.image
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        // Plain `timeout` here: a panic while the test is already unwinding would abort.
        let quietly = |program: &str, args: &[&OsStr]| {
            Command::new("timeout")
                .args(["30", program])
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        };
        if self.mounted {
            // Busy for a moment while a server on it shuts down.
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.mounted && Instant::now() < deadline {
                self.mounted = !quietly("umount", &[self.mount.as_os_str()]);
                if self.mounted {
                    thread::sleep(Duration::from_millis(100));
                }
            }
            if self.mounted {
                quietly("umount", &["-l".as_ref(), self.mount.as_os_str()]);
            }
        }
        if let Some(device) = self.device.take() {
            quietly("losetup", &["-d".as_ref(), device.as_ref()]);
        }
    }
}
