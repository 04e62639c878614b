//! Tests of the harness itself: servers start, answer over both paths, carry a pgbench load,
//! clean up after themselves, and a cold copy restores through the archive-recovery plumbing.

use std::path::Path;
use std::time::Duration;

use crate::cluster::{self, Cluster, ClusterOptions};
use crate::util::{wait_for, TestCommand};

#[test]
fn cluster_answers_over_socket_with_trust_and_over_tcp_with_password() {
    let mut cluster = Cluster::start(ClusterOptions::default().conf("work_mem = '2MB'"));
    assert_eq!(cluster.psql("SELECT 1"), "1");
    assert_eq!(cluster.psql("SHOW work_mem"), "2MB");
    assert_eq!(cluster.psql("SHOW archive_mode"), "on");
    assert_eq!(cluster.psql("SHOW wal_level"), "replica");
    assert!(
        cluster.version_num() >= 100_000,
        "{}",
        cluster.version_num()
    );
    assert_eq!(cluster.superuser(), "postgres");
    assert!(cluster.bindir().join("postgres").is_file());
    assert!(cluster.data_dir().join("PG_VERSION").is_file());
    assert!(cluster.socket_dir().is_dir());
    assert!(cluster.log_file().is_file());

    // Several statements, one output per row.
    assert_eq!(
        cluster.psql(
            "CREATE TABLE t(i int); INSERT INTO t VALUES (1), (2); SELECT i FROM t ORDER BY i"
        ),
        "1\n2"
    );
    let error = cluster
        .try_psql("SELECT * FROM no_such_table")
        .expect_err("a failing statement must be an error");
    assert!(error.contains("no_such_table"), "{error}");
    assert_eq!(
        cluster.try_psql_in("template1", "SELECT current_database()"),
        Ok("template1".to_string())
    );

    // The clean libpq environment of `command` points at this cluster's socket.
    let psql = cluster::pg_binaries().client_tool("psql");
    let output = cluster
        .command(&psql)
        .args(["-XAtc", "SELECT current_setting('port')"])
        .output()
        .expect("running psql through Cluster::command");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        cluster.port().to_string()
    );

    // TCP needs the password (scram-sha-256); the socket does not (trust).
    let tcp = |password: Option<&str>| {
        let mut command = cluster.command(&psql);
        command
            .args(["-XAtw", "-c", "SELECT inet_server_addr()", "-d"])
            .arg(cluster.conninfo_tcp());
        if let Some(password) = password {
            command.env("PGPASSWORD", password);
        }
        command.output().expect("running psql over TCP")
    };
    let with_password = tcp(Some(cluster.password()));
    assert!(with_password.status.success(), "{with_password:?}");
    assert_eq!(
        String::from_utf8_lossy(&with_password.stdout).trim(),
        "127.0.0.1"
    );
    assert!(
        !tcp(None).status.success(),
        "TCP without a password must fail"
    );
    assert!(
        !tcp(Some("wrong")).status.success(),
        "a wrong password must fail"
    );
    let over_socket = cluster
        .command(&psql)
        .args(["-XAtw", "-c", "SELECT 1", "-d"])
        .arg(cluster.conninfo_socket())
        .output()
        .expect("running psql over the socket");
    assert!(over_socket.status.success(), "{over_socket:?}");

    // Data survives a restart; stop + restart starts it again.
    cluster.restart();
    assert_eq!(cluster.psql("SELECT count(*) FROM t"), "2");
    cluster.stop();
    assert!(!cluster.is_running());
    assert!(cluster.try_psql("SELECT 1").is_err());
    cluster.restart();
    assert!(cluster.is_running());
    assert_eq!(cluster.psql("SELECT count(*) FROM t"), "2");
    assert!(
        cluster
            .server_log()
            .contains("database system is ready to accept connections"),
        "{}",
        cluster.server_log()
    );
}

#[test]
fn archiving_can_be_turned_off() {
    let cluster = Cluster::start(ClusterOptions::default().without_archive());
    assert_eq!(cluster.psql("SHOW archive_mode"), "off");
    assert!(cluster.archive_dir().is_dir());
}

#[test]
fn crate_binaries_are_built() {
    for name in ["pgpre", "pgpost"] {
        let path = crate::util::binary(name);
        assert!(path.is_file(), "{} is missing", path.display());
    }
}

#[test]
fn a_run_past_its_limit_fails_naming_the_command_and_kills_its_process_group() {
    let cluster = Cluster::start(ClusterOptions::default());
    // A child in the background (same process group), its pid on stdout, then a long wait.
    let overrun = std::panic::catch_unwind(|| {
        TestCommand::program(&cluster, "/bin/sh")
            .args(["-c", "sleep 300 & echo $!; sleep 300"])
            .limit(Duration::from_secs(1))
            .run()
    });
    let payload = overrun.expect_err("a run past its limit must fail the test");
    let message = payload
        .downcast_ref::<String>()
        .expect("the panic message is a String");
    assert!(
        message.starts_with(
            "sh -c \"sleep 300 & echo $!; sleep 300\" did not finish within its time limit of 1s"
        ),
        "{message}"
    );
    let background: u32 = message
        .split("--- stdout so far ---\n")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .and_then(|line| line.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in the output so far: {message}"));
    wait_for(
        "the background child to be killed with its group",
        Duration::from_secs(10),
        || is_dead(background),
    );
}

/// /proc/<pid> is gone or a zombie.
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn drop_stops_the_server_kills_marked_processes_and_removes_the_directory() {
    let cluster = Cluster::start(ClusterOptions::default());
    let socket_dir = cluster.socket_dir().to_path_buf();
    let port = cluster.port();
    // A detached grandchild, as the co-process of pgpre will be.
    let output = cluster
        .command("/bin/sh")
        .args(["-c", "sleep 300 >/dev/null 2>&1 & echo $!"])
        .output()
        .expect("starting a background sleep");
    let pid: u32 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("the background pid");
    assert!(!is_dead(pid));
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("reading the environment");
    let marker = format!("{}={}", cluster::MARKER_VAR, cluster.marker());
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|var| var == marker.as_bytes()),
        "the background process lacks {marker}"
    );
    let postmaster_pid: u32 = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid"))
        .expect("reading postmaster.pid")
        .lines()
        .next()
        .and_then(|line| line.parse().ok())
        .expect("the postmaster pid");

    drop(cluster);

    wait_for(
        "the processes to die with the cluster (they survived the drop)",
        Duration::from_secs(10),
        || is_dead(pid) && is_dead(postmaster_pid),
    );
    assert!(
        !socket_dir.exists(),
        "{} was not removed",
        socket_dir.display()
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "something still listens on port {port}"
    );
}

#[test]
fn pgbench_load_keeps_its_invariant_and_a_cold_copy_restores_from_the_archive() {
    let mut source = Cluster::start(ClusterOptions::default().initdb_arg("--data-checksums"));
    assert_eq!(source.psql("SHOW data_checksums"), "on");
    source.pgbench_init(1);
    assert_eq!(source.check_pgbench_invariant(), 0);

    let load = source.start_pgbench_load(4, 2);
    std::thread::sleep(Duration::from_millis(500));
    let during = source.check_pgbench_invariant();
    assert!(during > 0);
    load.stop();
    let transactions = source.check_pgbench_invariant();
    assert!(transactions >= during);

    // Push a segment through archive_command, so the restore has something to fetch.
    source.psql("CREATE TABLE marker AS SELECT 42 AS answer; SELECT pg_switch_wal()");
    wait_for(
        "archive_command to archive something",
        Duration::from_secs(30),
        || source.psql("SELECT archived_count FROM pg_stat_archiver") != "0",
    );
    assert!(std::fs::read_dir(source.archive_dir())
        .expect("listing the archive")
        .next()
        .is_some());

    source.stop();
    let scratch = cluster::scratch_dir();
    let copy = scratch.path().join("data");
    source.copy_data_dir(&copy);
    assert!(copy.join("postmaster.opts").is_file());

    let restored = Cluster::start_restored(&copy, source.archive_dir(), ClusterOptions::default());
    assert_ne!(restored.port(), source.port());
    assert_eq!(restored.data_dir(), Path::new(&copy));
    assert_eq!(restored.psql("SELECT pg_is_in_recovery()"), "f");
    assert_eq!(restored.check_pgbench_invariant(), transactions);
    assert_eq!(restored.psql("SELECT answer FROM marker"), "42");
    restored.psql("INSERT INTO marker VALUES (43)");
    restored.pg_amcheck();
    let log = restored.server_log();
    assert!(log.contains("starting archive recovery"), "{log}");
    assert!(log.contains("selected new timeline ID"), "{log}");
    assert!(!copy.join("recovery.signal").exists());

    // The original is untouched by the restored copy and starts again.
    source.restart();
    assert_eq!(source.check_pgbench_invariant(), transactions);
    assert_eq!(source.psql("SELECT count(*) FROM marker"), "1");
    source.pg_amcheck();
}

#[test]
#[should_panic(expected = "the restored server in")]
fn a_broken_copy_fails_fast_with_the_server_log() {
    let mut source = Cluster::start(ClusterOptions::default());
    source.stop();
    let scratch = cluster::scratch_dir();
    let copy = scratch.path().join("data");
    source.copy_data_dir(&copy);
    std::fs::remove_file(copy.join("global/pg_control")).expect("removing pg_control");
    let _restored = Cluster::start_restored(&copy, source.archive_dir(), ClusterOptions::default());
}
