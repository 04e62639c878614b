//! Faults a real site sees: a killed session, hostile role settings, a full or read-only output directory, a killed pgpre, a cut network, foreign writers.

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::cluster::{pg_binaries, scratch_dir, Cluster, ClusterOptions};
use crate::util::{
    backup_row, backup_state, coprocesses, holding_session_connected, run, the_coprocess, wait_for,
    TestCommand, Tmpfs,
};

#[test]
fn pg_terminate_backend_of_the_held_session_fails_the_backup() {
    let cluster = Cluster::start(ClusterOptions::default());
    run(&cluster, "pgpre", &["--fast"]).assert_ok("pgpre");
    cluster.psql("SELECT pg_terminate_backend(pid) FROM backup");
    wait_for(
        "the failure to be recorded",
        Duration::from_secs(20),
        || backup_state(&cluster) == "failed",
    );
    assert!(backup_row(&cluster, "error").contains("lost its session"));
    run(&cluster, "pgpost", &[])
        .assert_code(1, "pgpost after pg_terminate_backend")
        .assert_stderr("lost its session");
    wait_for("the co-process to exit", Duration::from_secs(10), || {
        coprocesses(&cluster).is_empty()
    });
}

#[test]
fn timeouts_set_on_the_role_do_not_end_the_held_session() {
    let cluster = Cluster::start(ClusterOptions::default());
    let timeouts = if cluster.version_num() >= 140000 {
        "statement_timeout = '1s', idle_in_transaction_session_timeout = '1s', idle_session_timeout = '1s'"
    } else {
        "statement_timeout = '1s', idle_in_transaction_session_timeout = '1s'"
    };
    // A slow archiver keeps pgpost's archive check idle for longer than the timeouts.
    let archive_command = cluster.psql("SHOW archive_command");
    cluster.psql(&format!(
        "ALTER SYSTEM SET archive_command = 'sleep 3 && {}'; SELECT pg_reload_conf();",
        archive_command.replace('\'', "''")
    ));
    for setting in timeouts.split(", ") {
        cluster.psql(&format!("ALTER ROLE postgres SET {setting}"));
        cluster.psql(&format!("ALTER DATABASE postgres SET {setting}"));
    }
    run(&cluster, "pgpre", &["--fast"]).assert_ok("pgpre");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(backup_state(&cluster), "running");
    let post = run(&cluster, "pgpost", &[]);
    post.assert_ok("pgpost after the role's timeouts ran out");
    assert!(post.stdout.starts_with("START WAL LOCATION"));
}

#[test]
fn a_session_lost_during_the_archive_check_ends_pgpost_with_the_label_kept() {
    let cluster = Cluster::start(ClusterOptions::default());
    // The archiver is slow, so pgpost is still waiting when its session is ended.
    let archive_command = cluster.psql("SHOW archive_command");
    cluster.psql(&format!(
        "ALTER SYSTEM SET archive_command = 'sleep 30 && {}'; SELECT pg_reload_conf();",
        archive_command.replace('\'', "''")
    ));
    run(&cluster, "pgpre", &["--fast"]).assert_ok("pgpre");
    let post = TestCommand::new(&cluster, "pgpost").spawn();
    wait_for(
        "pgpost to wait for the archiver",
        Duration::from_secs(20),
        || {
            cluster.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgpost' \
                 AND query LIKE '%pg_stat_archiver%'",
            ) == "1"
        },
    );
    cluster.psql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgpost'",
    );
    let post = post.finish_within(Duration::from_secs(20));
    post.assert_code(10, "pgpost whose session ended during the archive check")
        .assert_stderr("cannot read pg_stat_archiver");
    assert!(
        post.stdout.starts_with("START WAL LOCATION"),
        "the label is printed"
    );
    assert_eq!(backup_state(&cluster), "complete");
}

#[test]
fn read_only_output_dir_is_refused_before_anything_stops() {
    let cluster = Cluster::start(ClusterOptions::default());
    let disk = Tmpfs::mount("1m");
    disk.remount_read_only();
    run(&cluster, "pgpre", &["--fast"]).assert_ok("pgpre");
    run(
        &cluster,
        "pgpost",
        &["--output-dir", disk.path().to_str().unwrap()],
    )
    .assert_code(7, "read-only output dir")
    .assert_stderr("Read-only file system");
    assert_eq!(backup_state(&cluster), "running", "nothing was stopped");
    run(&cluster, "pgpost", &[]).assert_ok("pgpost without the output dir");
}

#[test]
fn full_disk_keeps_the_backup_retrievable_and_leaves_no_half_file() {
    let cluster = Cluster::start(ClusterOptions::default());
    let disk = Tmpfs::mount("64k");
    run(&cluster, "pgpre", &["--fast"]).assert_ok("pgpre");
    // Room for the probe file, none for the label.
    disk.fill();
    let full = run(
        &cluster,
        "pgpost",
        &["--output-dir", disk.path().to_str().unwrap()],
    );
    full.assert_code(7, "full output dir");
    full.assert_stderr("No space left on device");
    full.assert_stderr("pgpost --fetch --output-dir");
    let leftovers: Vec<_> = std::fs::read_dir(disk.path())
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "filler")
        .collect();
    assert!(
        leftovers.is_empty(),
        "half-written files left: {leftovers:?}"
    );
    assert_eq!(
        backup_state(&cluster),
        "complete",
        "the backup itself completed"
    );
    let elsewhere = scratch_dir();
    let fetched = run(
        &cluster,
        "pgpost",
        &[
            "--fetch",
            "--output-dir",
            elsewhere.path().to_str().unwrap(),
        ],
    );
    fetched.assert_ok("pgpost --fetch");
    assert_eq!(
        std::fs::read_to_string(elsewhere.path().join("backup_label")).unwrap(),
        fetched.stdout
    );
}

/// A psql session holding `LOCK TABLE backup IN ACCESS EXCLUSIVE MODE` until dropped.
struct TableLock(Child);

impl TableLock {
    fn take(cluster: &Cluster) -> TableLock {
        let mut child = cluster
            .command(pg_binaries().client_tool("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("psql");
        child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(b"BEGIN; LOCK TABLE backup IN ACCESS EXCLUSIVE MODE;\n")
            .unwrap();
        wait_for("the table lock", Duration::from_secs(10), || {
            cluster.psql("SELECT count(*) FROM pg_locks WHERE relation = 'backup'::regclass AND mode = 'AccessExclusiveLock' AND granted") == "1"
        });
        TableLock(child)
    }
}

impl Drop for TableLock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigkill_of_pgpre_while_it_waits_leaves_no_unknown_backup() {
    let cluster = Cluster::start(ClusterOptions::default());
    run(&cluster, "pgpre", &["--fast"]).assert_ok("first pgpre");
    run(&cluster, "pgpost", &[]).assert_ok("first pgpost");
    let lock = TableLock::take(&cluster);
    let pgpre = TestCommand::new(&cluster, "pgpre")
        .args(["--fast", "-l", "orphan"])
        .spawn();
    wait_for(
        "the co-process to block on the table",
        Duration::from_secs(20),
        || {
            cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                == "1"
        },
    );
    pgpre.signal(Signal::SIGKILL);
    pgpre.finish();
    drop(lock);
    wait_for(
        "the orphan backup to be failed",
        Duration::from_secs(20),
        || backup_row(&cluster, "state || ' ' || label") == "failed orphan",
    );
    assert!(backup_row(&cluster, "error").contains("pgpre ended"));
    wait_for("the co-process to exit", Duration::from_secs(10), || {
        coprocesses(&cluster).is_empty()
    });
    run(&cluster, "pgpost", &[]).assert_code(1, "pgpost reports the orphan");
}

#[test]
fn only_the_backup_role_can_change_the_state_table() {
    let cluster = Cluster::start(ClusterOptions::default());
    run(&cluster, "pgpre", &["--fast"]).assert_ok("pgpre");
    cluster.psql("CREATE ROLE intruder LOGIN");
    let output = TestCommand::program(&cluster, pg_binaries().client_tool("psql"))
        .args([
            "-X",
            "-U",
            "intruder",
            "-c",
            "UPDATE backup SET state = 'done'",
        ])
        .run();
    assert_ne!(output.code, 0, "{output}");
    assert!(output.stderr.contains("permission denied"), "{output}");
    assert_eq!(backup_state(&cluster), "running");
    run(&cluster, "pgpost", &[]).assert_ok("pgpost");
}

/// A loopback TCP proxy to the server whose connections can be cut.
struct Proxy {
    port: u16,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    refusing: Arc<Mutex<bool>>,
}

impl Proxy {
    fn start(target_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let streams = Arc::new(Mutex::new(Vec::new()));
        let refusing = Arc::new(Mutex::new(false));
        let (accepted, refuse) = (streams.clone(), refusing.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if *refuse.lock().unwrap() {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server.try_clone().unwrap(), client.try_clone().unwrap()),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
                accepted.lock().unwrap().extend([client, server]);
            }
        });
        Proxy {
            port,
            streams,
            refusing,
        }
    }

    fn cut(&self) {
        *self.refusing.lock().unwrap() = true;
        for stream in self.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

#[test]
fn a_cut_network_fails_the_backup() {
    let cluster = Cluster::start(ClusterOptions::default());
    let proxy = Proxy::start(cluster.port());
    TestCommand::new(&cluster, "pgpre")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", proxy.port.to_string())
        .env("PGPASSWORD", cluster.password())
        .args([
            "--fast",
            "-d",
            "keepalives_idle=1 keepalives_interval=1 keepalives_count=2",
        ])
        .limit(Duration::from_secs(30))
        .run()
        .assert_ok("pgpre through the proxy");
    let coprocess = the_coprocess(&cluster);
    proxy.cut();
    // The server loses the held session; pgpost (over the socket) finds the holder gone.
    wait_for("the held backend to end", Duration::from_secs(20), || {
        !holding_session_connected(&cluster)
    });
    TestCommand::new(&cluster, "pgpost")
        .limit(Duration::from_secs(20))
        .run()
        .assert_code(1, "pgpost after the cut")
        .assert_stderr("failed");
    assert_eq!(backup_state(&cluster), "failed");
    assert!(
        std::fs::metadata(format!("/proc/{coprocess}")).is_ok() || coprocesses(&cluster).is_empty()
    );
}

#[test]
fn start_timeout_fails_the_start_and_records_why() {
    // A spread checkpoint over plenty of dirty buffers takes most of checkpoint_timeout.
    let cluster = Cluster::start(
        ClusterOptions::default()
            .conf("checkpoint_timeout = '60s'")
            .conf("checkpoint_completion_target = 0.9"),
    );
    cluster.pgbench_init(3);
    cluster.psql("UPDATE pgbench_accounts SET filler = 'dirty'");
    let started = std::time::Instant::now();
    TestCommand::new(&cluster, "pgpre")
        .args(["--spread", "--start-timeout", "2", "-l", "slow start"])
        .limit(Duration::from_secs(90))
        .run()
        .assert_code(6, "pgpre whose checkpoint outlasts start_timeout")
        .assert_stderr("did not start within start_timeout (2 s)");
    // The start function was cancelled, not waited for to the end of the checkpoint.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "pgpre took {:?} to give up after a 2 s start_timeout",
        started.elapsed()
    );
    assert_eq!(
        backup_row(&cluster, "state || ' ' || label"),
        "failed slow start"
    );
    run(&cluster, "pgpost", &[])
        .assert_code(1, "pgpost after a start timeout")
        .assert_stderr("start_timeout");
    wait_for("the co-process to exit", Duration::from_secs(10), || {
        coprocesses(&cluster).is_empty()
    });
}
