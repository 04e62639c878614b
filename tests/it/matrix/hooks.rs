//! pgpre / pgpost against real servers: the cycle, the failure paths of safe-backup's table, and bad input.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::cluster::{scratch_dir, Cluster, ClusterOptions};
use crate::util::{
    backup_row, backup_state, coprocesses, holding_session_connected, run, send_signal,
    the_coprocess, wait_for, TestCommand,
};

/// A config file in `dir` with a short re-read interval, so ownership checks are quick.
fn quick_config(dir: &Path, extra: &str) -> String {
    let path = dir.join("config.toml");
    std::fs::write(&path, format!("[backup]\nrecheck_interval = 1\n{extra}"))
        .expect("write config");
    path.to_string_lossy().into_owned()
}

fn new_cluster() -> Cluster {
    Cluster::start(ClusterOptions::default())
}

#[test]
fn full_cycle_prints_the_label_and_records_history() {
    let cluster = new_cluster();
    let label = "nightly 'quoted' \"double\" é 日本";
    let pre = run(&cluster, "pgpre", &["--fast", "--label", label]);
    pre.assert_ok("pgpre");
    let lsn = pre.stdout.trim();
    assert!(lsn.contains('/'), "pgpre prints the start LSN: {pre:#?}");
    // `running` is committed before pgpre exits: no race with a fast pgpost.
    assert_eq!(backup_state(&cluster), "running");
    assert_eq!(backup_row(&cluster, "start_lsn"), lsn);
    assert_eq!(backup_row(&cluster, "label"), label);
    let post = run(&cluster, "pgpost", &[]);
    post.assert_ok("pgpost");
    assert!(post.stdout.starts_with("START WAL LOCATION: "), "{post:#?}");
    assert!(
        post.stdout.contains(&format!("LABEL: {label}\n")),
        "{post:#?}"
    );
    // Byte for byte what the server returned.
    assert_eq!(post.stdout, backup_row(&cluster, "backup_label"));
    assert_eq!(backup_state(&cluster), "complete");
    assert_eq!(
        cluster.psql("SELECT state || ' ' || label FROM backup_history"),
        format!("complete {label}")
    );
    wait_for("the co-process to exit", Duration::from_secs(10), || {
        coprocesses(&cluster).is_empty()
    });
}

#[test]
fn pgpre_returns_at_once_while_the_coprocess_holds_the_backup() {
    let cluster = new_cluster();
    // Both pipes captured, as `lsn=$(pgpre 2>&1 | cat)` would: run() times out
    // if the co-process kept either.
    let pre = TestCommand::new(&cluster, "pgpre")
        .args(["--fast"])
        .limit(Duration::from_secs(20))
        .run();
    pre.assert_ok("pgpre");
    let coprocess = the_coprocess(&cluster);
    let stat = std::fs::read_to_string(format!("/proc/{coprocess}/stat")).expect("stat");
    // Fields after the command: state ppid pgrp session.
    let fields: Vec<&str> = stat.rsplit_once(") ").expect("stat").1.split(' ').collect();
    let own_session = nix::unistd::getsid(None).expect("getsid").to_string();
    assert_ne!(
        fields[3], own_session,
        "the co-process left the caller's session"
    );
    assert_ne!(
        fields[2], own_session,
        "the co-process left the caller's process group"
    );
    let fds: Vec<_> = std::fs::read_dir(format!("/proc/{coprocess}/fd"))
        .expect("fd dir")
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .collect();
    assert!(
        fds.iter()
            .all(|target| !target.to_string_lossy().starts_with("pipe:")),
        "the co-process keeps no pipe of its caller: {fds:?}"
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{coprocess}/cwd")).unwrap(),
        Path::new("/")
    );
    assert_eq!(backup_state(&cluster), "running");
    run(&cluster, "pgpost", &[]).assert_ok("pgpost");
}

#[test]
fn second_pgpre_supersedes_the_first() {
    let cluster = new_cluster();
    run(&cluster, "pgpre", &["--fast", "-l", "first"]).assert_ok("first pgpre");
    let first = the_coprocess(&cluster);
    run(&cluster, "pgpre", &["--fast", "-l", "second"]).assert_ok("second pgpre");
    assert_eq!(
        backup_row(&cluster, "state || ' ' || label"),
        "running second"
    );
    let history = cluster.psql("SELECT state || ' ' || label || ': ' || error FROM backup_history");
    assert!(
        history.starts_with("failed first: superseded by a new backup"),
        "{history}"
    );
    wait_for(
        "the first co-process to exit",
        Duration::from_secs(20),
        || !coprocesses(&cluster).contains(&first),
    );
    // The superseded co-process's late report did not touch the new row.
    assert_eq!(backup_state(&cluster), "running");
    let post = run(&cluster, "pgpost", &[]);
    post.assert_ok("pgpost");
    assert!(post.stdout.contains("LABEL: second\n"), "{post:#?}");
}

#[test]
fn backup_timeout_fails_the_backup_and_pgpost_reports_it_at_once() {
    let cluster = new_cluster();
    run(&cluster, "pgpre", &["--fast", "--backup-timeout", "2"]).assert_ok("pgpre");
    wait_for("the backup to fail", Duration::from_secs(20), || {
        backup_state(&cluster) == "failed"
    });
    assert!(backup_row(&cluster, "error").contains("backup_timeout (2 s)"));
    let started = Instant::now();
    run(&cluster, "pgpost", &[])
        .assert_code(1, "pgpost after the timeout")
        .assert_stderr("failed: backup_timeout (2 s) ran out");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "pgpost reports at once"
    );
    // Backup mode ended: a new backup starts and completes.
    run(&cluster, "pgpre", &["--fast"]).assert_ok("pgpre again");
    run(&cluster, "pgpost", &[]).assert_ok("pgpost again");
}

#[test]
fn pgpost_without_any_backup() {
    let cluster = new_cluster();
    run(&cluster, "pgpost", &[])
        .assert_code(5, "pgpost with no table")
        .assert_stderr("pgpost: no backup in progress: the state table backup does not exist")
        .assert_stderr("hint: start one with pgpre first");
    // The table exists but its row is gone (as after a failed first pgpre.sh).
    run(&cluster, "pgpre", &["--fast"]).assert_ok("pgpre");
    run(&cluster, "pgpost", &[]).assert_ok("pgpost");
    cluster.psql("DELETE FROM backup");
    TestCommand::new(&cluster, "pgpost")
        .limit(Duration::from_secs(10))
        .run()
        .assert_code(5, "pgpost with an empty table")
        .assert_stderr("the table backup is empty");
}

#[test]
fn pgpost_never_overwrites_a_finished_backup() {
    let cluster = new_cluster();
    run(&cluster, "pgpre", &["--fast", "-l", "done-once"]).assert_ok("pgpre");
    let first = run(&cluster, "pgpost", &[]);
    first.assert_ok("pgpost");
    let started = Instant::now();
    run(&cluster, "pgpost", &[])
        .assert_code(5, "second pgpost")
        .assert_stderr("already completed");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(backup_state(&cluster), "complete");
    let fetched = run(&cluster, "pgpost", &["--fetch"]);
    fetched.assert_ok("pgpost --fetch");
    assert_eq!(fetched.stdout, first.stdout);
    // A failed row is reported, not overwritten.
    cluster.psql("UPDATE backup SET state = 'failed', error = 'disk on fire'");
    run(&cluster, "pgpost", &[])
        .assert_code(1, "pgpost on a failed row")
        .assert_stderr("backup \"done-once\" failed: disk on fire");
    assert_eq!(backup_state(&cluster), "failed");
}

#[test]
fn sigkill_of_the_coprocess_is_detected_by_pgpost() {
    let cluster = new_cluster();
    run(&cluster, "pgpre", &["--fast", "-l", "killed"]).assert_ok("pgpre");
    let coprocess = the_coprocess(&cluster);
    send_signal(coprocess, Signal::SIGKILL);
    wait_for("the held backend to end", Duration::from_secs(10), || {
        !holding_session_connected(&cluster)
    });
    TestCommand::new(&cluster, "pgpost")
        .limit(Duration::from_secs(10))
        .run()
        .assert_code(1, "pgpost after SIGKILL")
        .assert_stderr("the co-process holding the backup is gone");
    assert_eq!(backup_state(&cluster), "failed");
    // The next pgpre takes over cleanly.
    run(&cluster, "pgpre", &["--fast"]).assert_ok("pgpre after SIGKILL");
    run(&cluster, "pgpost", &[]).assert_ok("pgpost after SIGKILL");
}

#[test]
fn sigterm_to_the_coprocess_fails_the_backup_and_ends_backup_mode() {
    let cluster = new_cluster();
    run(&cluster, "pgpre", &["--fast"]).assert_ok("pgpre");
    let coprocess = the_coprocess(&cluster);
    send_signal(coprocess, Signal::SIGTERM);
    wait_for("the backup to fail", Duration::from_secs(10), || {
        backup_state(&cluster) == "failed"
    });
    assert!(backup_row(&cluster, "error").contains("received SIGTERM"));
    wait_for("the co-process to exit", Duration::from_secs(10), || {
        coprocesses(&cluster).is_empty()
    });
    run(&cluster, "pgpost", &[])
        .assert_code(1, "pgpost after SIGTERM")
        .assert_stderr("received SIGTERM");
    run(&cluster, "pgpre", &["--fast"]).assert_ok("pgpre after SIGTERM");
    run(&cluster, "pgpost", &[]).assert_ok("pgpost after SIGTERM");
}

#[test]
fn server_restart_mid_backup_fails_the_backup() {
    let mut cluster = new_cluster();
    run(&cluster, "pgpre", &["--fast"]).assert_ok("pgpre");
    cluster.restart();
    wait_for(
        "the failure to be recorded",
        Duration::from_secs(30),
        || backup_state(&cluster) == "failed",
    );
    let post = TestCommand::new(&cluster, "pgpost")
        .limit(Duration::from_secs(10))
        .run();
    post.assert_code(1, "pgpost after a restart");
    assert!(
        post.stderr.contains("lost its session") || post.stderr.contains("is gone"),
        "{post:#?}"
    );
    wait_for("the co-process to exit", Duration::from_secs(10), || {
        coprocesses(&cluster).is_empty()
    });
}

#[test]
fn a_row_taken_over_by_someone_else_ends_the_coprocess() {
    let cluster = new_cluster();
    let dir = scratch_dir();
    let config = quick_config(dir.path(), "");
    run(&cluster, "pgpre", &["-c", &config, "--fast"]).assert_ok("pgpre");
    cluster.psql("UPDATE backup SET pid = 1");
    wait_for(
        "the disowned co-process to exit",
        Duration::from_secs(10),
        || coprocesses(&cluster).is_empty(),
    );
    TestCommand::new(&cluster, "pgpost")
        .args(["-c", &config])
        .limit(Duration::from_secs(10))
        .run()
        .assert_code(1, "pgpost on a foreign row")
        .assert_stderr("is gone");
}

#[test]
fn non_superuser_with_the_documented_grants() {
    let cluster = new_cluster();
    cluster.psql("CREATE ROLE backup LOGIN");
    let denied = run(&cluster, "pgpre", &["--fast", "-U", "backup"]);
    denied.assert_code(4, "pgpre without grants");
    denied.assert_stderr("hint: as a superuser, in this database: GRANT");
    // Exactly what docs/hook-pair.md documents for this server's major. `CREATE ON SCHEMA public`
    // is needed on 15+ only, and harmless before.
    let grants = documented_grants(cluster.version_num());
    for grant in &grants {
        denied.assert_stderr(&grant.replace(" backup;", " \"backup\";"));
    }
    cluster.psql(&format!(
        "GRANT CREATE ON SCHEMA public TO backup; {}",
        grants.join(" ")
    ));
    run(&cluster, "pgpre", &["--fast", "-U", "backup"]).assert_ok("pgpre as backup");
    let post = run(&cluster, "pgpost", &["-U", "backup"]);
    post.assert_ok("pgpost as backup");
    assert!(post.stdout.starts_with("START WAL LOCATION"));
}

/// docs/hook-pair.md's GRANTs for role `backup` on a server of `version_num`.
fn documented_grants(version_num: u32) -> [&'static str; 2] {
    if version_num >= 150000 {
        [
            "GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean) TO backup;",
            "GRANT EXECUTE ON FUNCTION pg_backup_stop(boolean) TO backup;",
        ]
    } else {
        [
            "GRANT EXECUTE ON FUNCTION pg_start_backup(text, boolean, boolean) TO backup;",
            "GRANT EXECUTE ON FUNCTION pg_stop_backup(boolean, boolean) TO backup;",
        ]
    }
}

#[test]
fn bad_config_key_conninfo_and_host_are_clear_errors() {
    let cluster = new_cluster();
    let dir = scratch_dir();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[backup]\nfast_checkpoint = true\nlabell = \"x\"\n",
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();
    for program in ["pgpre", "pgpost"] {
        let bad = run(&cluster, program, &["-c", &config]);
        bad.assert_code(2, "unknown key");
        bad.assert_stderr(&format!(
            "{program}: {config}:3: backup.labell: unknown field"
        ));
        assert_eq!(
            bad.stderr.lines().count(),
            2,
            "one line and a hint: {bad:#?}"
        );
    }
    run(&cluster, "pgpre", &["-c", "/nonexistent/config.toml"])
        .assert_code(2, "missing config")
        .assert_stderr("/nonexistent/config.toml");
    run(&cluster, "pgpre", &["-d", "host=/tmp bad"])
        .assert_code(2, "bad conninfo")
        .assert_stderr("bad");
    run(&cluster, "pgpre", &["-d", "host=/tmp gssencmode=require"])
        .assert_code(2, "unsupported keyword")
        .assert_stderr("gssencmode");
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    for program in ["pgpre", "pgpost"] {
        TestCommand::new(&cluster, program)
            .args(["-h", "127.0.0.1", "-p", &closed_port])
            .limit(Duration::from_secs(20))
            .run()
            .assert_code(3, "unreachable server")
            .assert_stderr("127.0.0.1")
            .assert_stderr("hint:");
    }
    // A co-process that reported its failure exits a moment later.
    wait_for(
        "no co-process left after failures",
        Duration::from_secs(10),
        || coprocesses(&cluster).is_empty(),
    );
}

#[test]
fn output_dir_is_written_but_never_the_live_data_directory() {
    let cluster = new_cluster();
    run(&cluster, "pgpre", &["--fast"]).assert_ok("pgpre");
    let live = cluster.data_dir().to_string_lossy().into_owned();
    run(&cluster, "pgpost", &["--output-dir", &live])
        .assert_code(7, "pgpost into the live data dir")
        .assert_stderr("data directory of a running server");
    assert!(!cluster.data_dir().join("backup_label").exists());
    // Nothing was stopped: the backup is still running and can be finished.
    assert_eq!(backup_state(&cluster), "running");
    let dir = scratch_dir();
    let out = dir.path().join("nightly");
    let post = run(
        &cluster,
        "pgpost",
        &["--output-dir", out.to_str().unwrap(), "--json"],
    );
    post.assert_ok("pgpost --output-dir --json");
    let json: serde_json::Value = serde_json::from_str(&post.stdout).expect("json");
    let written = std::fs::read_to_string(out.join("backup_label")).unwrap();
    assert_eq!(json["backup_label"].as_str(), Some(written.as_str()));
    assert_eq!(json["state"], "complete");
    assert!(json["stop_lsn"]
        .as_str()
        .is_some_and(|lsn| lsn.contains('/')));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.join("backup_label"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn wal_level_minimal_is_reported_by_both_sides() {
    let cluster = Cluster::start(
        ClusterOptions::default()
            .without_archive()
            .conf("wal_level = minimal")
            .conf("max_wal_senders = 0"),
    );
    // With archiving off the archive check would refuse first: this test is about wal_level.
    run(&cluster, "pgpre", &["--fast", "--archive-check=none"])
        .assert_code(4, "pgpre on wal_level=minimal")
        .assert_stderr("WAL level not sufficient")
        // The server's own hint; 17 started quoting the names ("wal_level").
        .assert_stderr_any(&[
            "hint: wal_level must be set to",
            "hint: \"wal_level\" must be set to",
        ]);
    TestCommand::new(&cluster, "pgpost")
        .limit(Duration::from_secs(10))
        .run()
        .assert_code(1, "pgpost after the failed start")
        .assert_stderr("WAL level not sufficient");
    wait_for(
        "the failed co-process to exit",
        Duration::from_secs(10),
        || coprocesses(&cluster).is_empty(),
    );
}

#[test]
fn archive_mode_off_is_refused_unless_the_check_is_off() {
    let cluster = Cluster::start(ClusterOptions::default().without_archive());
    run(&cluster, "pgpre", &["--fast"])
        .assert_code(4, "pgpre with archive_mode=off")
        .assert_stderr("archive_mode is off")
        .assert_stderr("hint: set archive_mode = on")
        .assert_stderr("--archive-check=none");
    assert!(coprocesses(&cluster).is_empty(), "no co-process is left");
    run(&cluster, "pgpre", &["--fast", "--archive-check=none"])
        .assert_ok("pgpre")
        .assert_stderr("pgpre: warning: archive_mode is off");
    let post = run(&cluster, "pgpost", &["--archive-check=none"]);
    post.assert_ok("pgpost")
        .assert_stderr("pgpost: note: the archive check is off");
    assert!(post.stdout.starts_with("START WAL LOCATION"), "{post:#?}");
    assert_eq!(backup_row(&cluster, "wal_archived"), "off");
}

/// The archiver fails: pgpost prints the label and stores it before it checks, ends within its
/// archive timeout with exit 10, and the next cycle works once archiving is repaired.
#[test]
fn broken_archiving_is_reported_and_the_row_stays_the_truth() {
    let cluster = Cluster::start(ClusterOptions::default().conf("archive_command = 'false'"));
    run(&cluster, "pgpre", &["--fast"]).assert_ok("pgpre");
    let dir = scratch_dir();
    let output = dir.path().to_str().unwrap();
    let began = Instant::now();
    let post = TestCommand::new(&cluster, "pgpost")
        .args(["--archive-timeout", "3", "--output-dir", output])
        .limit(Duration::from_secs(30))
        .run();
    post.assert_code(10, "pgpost while archiving fails")
        .assert_stderr("its WAL is not in the archive: WAL segment ")
        .assert_stderr("is not archived (waited ")
        .assert_stderr("pg_stat_archiver")
        .assert_stderr("(failing now)")
        .assert_stderr("hint: backup_label and tablespace_map are stored");
    assert!(
        began.elapsed() < Duration::from_secs(15),
        "pgpost ends within its archive timeout: {:?}",
        began.elapsed()
    );
    // The label is everywhere it is asked for, byte for byte.
    assert!(post.stdout.starts_with("START WAL LOCATION"), "{post:#?}");
    assert_eq!(post.stdout, backup_row(&cluster, "backup_label"));
    let written = std::fs::read_to_string(dir.path().join("backup_label")).expect("backup_label");
    assert_eq!(written, post.stdout);
    assert_eq!(backup_state(&cluster), "complete");
    assert_eq!(backup_row(&cluster, "wal_archived"), "failed");
    assert_eq!(
        cluster.psql("SELECT wal_archived FROM backup_history ORDER BY finished_at DESC LIMIT 1"),
        "failed"
    );
    wait_for("the co-process to exit", Duration::from_secs(10), || {
        coprocesses(&cluster).is_empty()
    });
    // Archiving is repaired: the next cycle works.
    let archive = cluster.archive_dir().to_string_lossy().into_owned();
    cluster.psql(&format!(
        "ALTER SYSTEM SET archive_command = 'cp %p {archive}/%f'; SELECT pg_reload_conf();"
    ));
    // Before 14, a reload does not wake an archiver that gave up after three failures: it
    // retries at its 60 s wake-up or when a WAL segment is completed, which pgpost's switch
    // does. The timeout covers the 60 s wake-up should the nudge come too early.
    wait_for(
        "the repaired archive_command to be in effect",
        Duration::from_secs(10),
        || cluster.psql("SHOW archive_command") != "false",
    );
    // The stored backup becomes usable once its WAL arrives: --fetch checks it again.
    let fetched = TestCommand::new(&cluster, "pgpost")
        .args(["--fetch", "--archive-timeout", "70"])
        .limit(Duration::from_secs(90))
        .run();
    fetched
        .assert_ok("pgpost --fetch after repair")
        .assert_stderr("archived (pg_stat_archiver)");
    assert_eq!(fetched.stdout, written);
    assert_eq!(backup_row(&cluster, "wal_archived"), "passed");
    run(&cluster, "pgpre", &["--fast"]).assert_ok("pgpre after repair");
    let post = TestCommand::new(&cluster, "pgpost")
        .args(["--archive-timeout", "70", "--json"])
        .limit(Duration::from_secs(90))
        .run();
    post.assert_ok("pgpost after repair")
        .assert_stderr("archived (pg_stat_archiver)");
    let json: serde_json::Value = serde_json::from_str(&post.stdout).expect("pgpost --json");
    assert_eq!(json["wal_archived"], "passed", "{json}");
    assert_eq!(backup_row(&cluster, "wal_archived"), "passed");
}

#[test]
fn tablespace_map_is_written_beside_backup_label() {
    let cluster = new_cluster();
    let location = cluster.data_dir().parent().unwrap().join("ts1");
    std::fs::create_dir(&location).unwrap();
    nix::unistd::chown(&location, cluster_owner(cluster.data_dir()), None).unwrap();
    cluster.psql(&format!(
        "CREATE TABLESPACE ts1 LOCATION '{}'",
        location.display()
    ));
    run(&cluster, "pgpre", &["--fast"]).assert_ok("pgpre");
    let dir = scratch_dir();
    run(
        &cluster,
        "pgpost",
        &["--output-dir", dir.path().to_str().unwrap()],
    )
    .assert_ok("pgpost");
    let map = std::fs::read_to_string(dir.path().join("tablespace_map")).expect("tablespace_map");
    let oid = cluster.psql("SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'");
    assert_eq!(map, format!("{oid} {}\n", location.display()));
}

fn cluster_owner(data_dir: &Path) -> Option<nix::unistd::Uid> {
    use std::os::unix::fs::MetadataExt;
    Some(nix::unistd::Uid::from_raw(
        std::fs::metadata(data_dir).ok()?.uid(),
    ))
}

#[test]
fn config_is_found_from_any_working_directory() {
    let cluster = new_cluster();
    let dir = scratch_dir();
    let config = quick_config(
        dir.path(),
        "fast_checkpoint = true\nlabel = \"from config\"\n",
    );
    TestCommand::new(&cluster, "pgpre")
        .args(["-c", &config])
        .current_dir("/")
        .run()
        .assert_ok("pgpre from /");
    assert_eq!(backup_row(&cluster, "label"), "from config");
    run(&cluster, "pgpost", &["-c", &config]).assert_ok("pgpost");
}
