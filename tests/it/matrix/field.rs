//! The hook pair in the field: callers that kill a slow pgpre and retry, labels that could
//! forge `backup_label` lines, and `pgpre --exec -- CMD`, the one-process form.

use std::fs;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::restore::{check_restored, is_lsn, switch_wal_and_wait_for_archive};
use crate::cluster::{self, pg_binaries, Cluster, ClusterOptions};
use crate::util::{backup_row, coprocesses, run, wait_for, TestCommand};

/// How long a pgpre or pgpre --exec may run before the test kills it and fails.
const HOOK_TIMEOUT: Duration = Duration::from_secs(120);

/// Sessions of pgpre, its co-process or pgpre --exec still connected.
/// pgpre's sessions still in pg_stat_activity, once none is left or after 10 s: a backend
/// ends a moment after its client hung up, and no event says when (a slow bounded re-check).
fn pgpre_sessions(cluster: &Cluster) -> String {
    let count = || {
        cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgpre%'")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut sessions = count();
    while sessions != "0" && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        sessions = count();
    }
    sessions
}

#[test]
fn a_killed_pgpre_ends_its_spread_start_at_once_and_the_retry_does_not_wait() {
    // A spread checkpoint over plenty of dirty buffers takes most of 5 min x 0.9.
    let cluster = Cluster::start(
        ClusterOptions::default()
            .conf("checkpoint_timeout = '300s'")
            .conf("checkpoint_completion_target = 0.9"),
    );
    cluster.pgbench_init(3);
    cluster.psql("UPDATE pgbench_accounts SET filler = 'dirty'");
    let load = cluster.start_pgbench_load(2, 1);
    let scratch = cluster::scratch_dir();
    let log_file = scratch.path().join("coprocess.log");
    let first = TestCommand::new(&cluster, "pgpre")
        .args(["--checkpoint=spread", "-l", "orphan", "-v", "--log-file"])
        .arg(&log_file)
        .limit(HOOK_TIMEOUT)
        .spawn();
    wait_for(
        "the co-process to be in the start function",
        Duration::from_secs(20),
        || {
            cluster.psql(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE query ~ '(pg_backup_start|pg_start_backup)' AND state = 'active' \
                 AND pid <> pg_backend_pid()",
            ) == "1"
        },
    );
    // A second pgpre waits for the first one's lock: it says so, whose, and gives up in time.
    let waited = Instant::now();
    let second = TestCommand::new(&cluster, "pgpre")
        .args(["--checkpoint=fast", "--start-timeout", "2", "-l", "second"])
        .limit(Duration::from_secs(30))
        .run();
    second
        .assert_code(6, "pgpre waiting for another pgpre's start")
        .assert_stderr("waiting for another pgpre's start of backup \"default\"")
        .assert_stderr("\"pgpre co-process ")
        .assert_stderr("did not start within start_timeout (2 s)");
    assert!(waited.elapsed() < Duration::from_secs(10), "{second}");
    // The caller's limit runs out: it kills pgpre.
    first.signal(Signal::SIGKILL);
    let killed = Instant::now();
    let first = first.finish_within(Duration::from_secs(10));
    assert!(
        first
            .stderr
            .contains("waiting for a spread checkpoint: it may take up to 270 s"),
        "pgpre said nothing of the spread checkpoint: {first}\n--- co-process log ---\n{}",
        fs::read_to_string(&log_file).unwrap_or_default()
    );
    assert!(
        first.stderr.contains("--checkpoint=fast starts at once"),
        "{first}"
    );
    wait_for(
        "the orphaned co-process to exit",
        Duration::from_secs(5),
        || coprocesses(&cluster).is_empty(),
    );
    assert!(killed.elapsed() < Duration::from_secs(5));
    assert_eq!(
        backup_row(&cluster, "state || ' ' || label"),
        "failed orphan"
    );
    let error = backup_row(&cluster, "error");
    assert!(
        error.contains("pgpre ended (killed or timed out)"),
        "{error}"
    );
    // The retry does not wait for the orphan's checkpoint.
    let retried = Instant::now();
    TestCommand::new(&cluster, "pgpre")
        .args(["--checkpoint=fast", "-l", "retry"])
        .limit(Duration::from_secs(60))
        .run()
        .assert_ok("the retry");
    assert!(
        retried.elapsed() < Duration::from_secs(20),
        "the retry took {:?}",
        retried.elapsed()
    );
    run(&cluster, "pgpost", &[]).assert_ok("pgpost of the retry");
    load.stop();
}

#[test]
fn a_label_with_a_newline_is_refused_before_anything_starts() {
    let cluster = Cluster::start(ClusterOptions::default());
    let refused = run(&cluster, "pgpre", &["--label", "a\nSTART TIMELINE: 7"]);
    refused
        .assert_code(2, "pgpre with a two-line label")
        .assert_stderr("--label")
        .assert_stderr("hint:");
    let lines: Vec<&str> = refused.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one error line and a hint: {refused}");
    assert!(!refused.stderr.contains("START TIMELINE: 7\n"), "{refused}");
    let too_long = "x".repeat(1025);
    run(&cluster, "pgpre", &["--label", &too_long])
        .assert_code(2, "pgpre with a label over 1024 bytes")
        .assert_stderr("more than 1024");
    // Nothing started: no table, no session.
    assert_eq!(cluster.psql("SELECT to_regclass('backup') IS NULL"), "t");
    assert_eq!(pgpre_sessions(&cluster), "0");
    assert!(coprocesses(&cluster).is_empty());
}

#[test]
fn exec_copy_under_load_restores() {
    let mut source = Cluster::start(ClusterOptions::default().initdb_arg("--data-checksums"));
    source.pgbench_init(5);
    source.psql("CREATE TABLE marker(id int, note text)");
    let scratch = cluster::scratch_dir();
    let copy = scratch.path().join("data");
    let environment = scratch.path().join("environment");
    let load = source.start_pgbench_load(4, 2);
    // The copy a snapshot tool would make; a file vanishing during cp -a is no error. Then
    // the marker row is committed, after the copy and before the stop.
    let script = r#"cp -a "$1/." "$2" 2>"$2.err" || ! grep -v 'No such file or directory' "$2.err" || exit 1
env | grep '^SAFE_BACKUP_' | sort > "$3"
"$4" -X -q -v ON_ERROR_STOP=1 -c "INSERT INTO marker VALUES (1, 'committed after the copy, before pgpost')"
"#;
    let psql = pg_binaries().client_tool("psql");
    let exec = TestCommand::new(&source, "pgpre")
        .args(["--name", "nightly", "--label", "exec copy", "--output-dir"])
        .arg(&copy)
        .args(["--exec", "--", "sh", "-c", script, "sh"])
        .arg(source.data_dir())
        .arg(&copy)
        .arg(&environment)
        .arg(&psql)
        .limit(HOOK_TIMEOUT)
        .run();
    exec.assert_ok("pgpre --exec cp -a");
    let committed_before_stop = source.pgbench_history_rows();
    let backup_label = exec.stdout.clone();
    assert!(backup_label.starts_with("START WAL LOCATION: "), "{exec}");
    assert_eq!(
        fs::read_to_string(copy.join("backup_label")).unwrap(),
        backup_label
    );
    let environment = fs::read_to_string(&environment).unwrap();
    let variables: Vec<(&str, &str)> = environment
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    let value = |key: &str| {
        variables
            .iter()
            .find(|(name, _)| *name == key)
            .map_or("", |(_, value)| *value)
    };
    assert!(is_lsn(value("SAFE_BACKUP_START_LSN")), "{environment}");
    assert!(
        backup_label.contains(&format!("(file {})", value("SAFE_BACKUP_START_WAL_FILE"))),
        "{environment}\n{backup_label}"
    );
    assert_eq!(value("SAFE_BACKUP_LABEL"), "exec copy");
    assert_eq!(value("SAFE_BACKUP_NAME"), "nightly");
    // The state table saw it like any backup.
    let row = source.psql("SELECT state, label FROM backup WHERE name = 'nightly'");
    assert_eq!(row, "complete|exec copy");
    let listed = run(&source, "pgpre", &["--list"]);
    listed.assert_ok("pgpre --list");
    assert!(listed.stdout.contains("nightly\tcomplete"), "{listed}");
    fs::remove_file(copy.with_extension("err")).ok();
    load.stop();
    let source_transactions = source.check_pgbench_invariant();
    switch_wal_and_wait_for_archive(&source);
    let restored = Cluster::start_restored(&copy, source.archive_dir(), ClusterOptions::default());
    check_restored(&restored, &copy, &backup_label, committed_before_stop);
    assert!(restored.check_pgbench_invariant() <= source_transactions);
    source.stop();
}

#[test]
fn exec_whose_command_fails_fails_the_backup_and_ends_backup_mode() {
    let cluster = Cluster::start(ClusterOptions::default());
    let failed = TestCommand::new(&cluster, "pgpre")
        .args(["-l", "bad copy", "--json", "--exec", "--", "sh", "-c"])
        .arg(r#"test -n "$SAFE_BACKUP_START_WAL_FILE" && echo copying && exit 3"#)
        .limit(HOOK_TIMEOUT)
        .run();
    failed
        .assert_code(9, "pgpre --exec whose command exits 3")
        .assert_stderr("failed (exit status 3)")
        .assert_stderr("hint:");
    assert_eq!(failed.stdout, "", "nothing on stdout: {failed}");
    assert!(
        failed.stderr.contains("copying"),
        "the command's stdout goes to stderr: {failed}"
    );
    assert_eq!(
        backup_row(&cluster, "state || ' ' || label"),
        "failed bad copy"
    );
    assert!(backup_row(&cluster, "error").contains("exit status 3"));
    assert_eq!(
        pgpre_sessions(&cluster),
        "0",
        "backup mode ended with pgpre's session"
    );
    run(&cluster, "pgpost", &[]).assert_code(1, "pgpost after a failed --exec");
    // A command that cannot run fails the same way.
    TestCommand::new(&cluster, "pgpre")
        .args(["--exec", "--", "/nonexistent/snapshot-tool"])
        .limit(HOOK_TIMEOUT)
        .run()
        .assert_code(9, "pgpre --exec of a missing program")
        .assert_stderr("cannot run /nonexistent/snapshot-tool");
    // Backup mode really ended: the next backup starts and completes.
    let ok = TestCommand::new(&cluster, "pgpre")
        .args(["--json", "--exec", "--", "true"])
        .limit(HOOK_TIMEOUT)
        .run();
    ok.assert_ok("pgpre --exec true");
    let json: serde_json::Value = serde_json::from_str(&ok.stdout).expect("--json prints JSON");
    assert_eq!(json["state"], "complete");
    assert!(json["backup_label"]
        .as_str()
        .unwrap_or("")
        .starts_with("START WAL LOCATION"));
}

#[test]
fn sigterm_to_pgpre_exec_reaches_the_command_and_fails_the_backup() {
    let cluster = Cluster::start(ClusterOptions::default());
    let scratch = cluster::scratch_dir();
    let ready = scratch.path().join("ready");
    let got = scratch.path().join("got");
    let script =
        r#"trap 'echo TERM > "$2"; exit 143' TERM; echo ready > "$1"; while :; do sleep 0.1; done"#;
    let running = TestCommand::new(&cluster, "pgpre")
        .args([
            "-l",
            "interrupted",
            "--exec",
            "--",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(&ready)
        .arg(&got)
        .limit(HOOK_TIMEOUT)
        .spawn();
    wait_for("the command to run", Duration::from_secs(30), || {
        ready.exists()
    });
    running.signal(Signal::SIGTERM);
    let run = running.finish_within(Duration::from_secs(20));
    run.assert_code(9, "pgpre --exec after SIGTERM")
        .assert_stderr("pgpre received SIGTERM and passed it to sh");
    assert_eq!(fs::read_to_string(&got).unwrap_or_default().trim(), "TERM");
    assert_eq!(
        backup_row(&cluster, "state || ' ' || label"),
        "failed interrupted"
    );
    assert!(backup_row(&cluster, "error").contains("SIGTERM"));
    assert_eq!(pgpre_sessions(&cluster), "0");
}
