//! pgpre / pgpost with PGHOST at a streaming hot standby: the snapshot taken between them under
//! pgbench load on the primary, restored with its label and proven by pgdrill; nothing written
//! to the standby; the label's BACKUP FROM and timeline; the archive check that cannot claim
//! anything (no archiver of its own) and an idle primary; a promotion while the backup is held.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use crate::cluster::{self, Cluster};
use crate::matrix::drill::{assert_proven, backup_args, loaded_source, pgdrill};
use crate::util::{coprocesses, wait_for, Run, TestCommand};

/// A primary with pgbench tables and a marker table, its streaming standby, and a scratch
/// directory whose `state` the hooks keep their local state in.
fn primary_and_standby() -> (Cluster, Cluster, TempDir) {
    let mut primary = loaded_source(1);
    let standby = primary.start_standby();
    (primary, standby, cluster::scratch_dir())
}

fn state_dir(scratch: &TempDir) -> PathBuf {
    scratch.path().join("state")
}

/// pgpre or pgpost against the standby, with the scratch state directory.
fn hook(standby: &Cluster, scratch: &TempDir, program: &str, args: &[&str]) -> Run {
    TestCommand::new(standby, program)
        .arg("--state-dir")
        .arg(state_dir(scratch))
        .args(args)
        .limit(Duration::from_secs(120))
        .run()
}

/// [`hook`] with `--primary` naming `primary` first.
fn hook_via(
    primary: &Cluster,
    standby: &Cluster,
    scratch: &TempDir,
    program: &str,
    args: &[&str],
) -> Run {
    let conninfo = primary.conninfo_socket();
    hook(
        standby,
        scratch,
        program,
        &[&["--primary", &conninfo], args].concat(),
    )
}

/// Waits until the standby has replayed everything the primary has written so far.
pub(crate) fn wait_for_replay(primary: &Cluster, standby: &Cluster) {
    let lsn = primary.psql("SELECT pg_current_wal_lsn()");
    let sql = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
    wait_for("the standby to replay", Duration::from_secs(60), || {
        standby.psql(&sql) == "t"
    });
}

/// The local record of the default backup, as JSON.
fn record(scratch: &TempDir) -> serde_json::Value {
    let servers: Vec<PathBuf> = std::fs::read_dir(state_dir(scratch))
        .expect("the state directory exists")
        .map(|entry| entry.expect("entry").path())
        .collect();
    assert_eq!(servers.len(), 1, "one server directory: {servers:?}");
    let text = std::fs::read_to_string(servers[0].join("default.json")).expect("the record");
    serde_json::from_str(&text).expect("the record is JSON")
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn a_standby_snapshot_restores_and_its_label_says_backup_from_standby() {
    let (primary, standby, scratch) = primary_and_standby();
    primary.psql("INSERT INTO marker VALUES ('before pgpre')");
    // The restartpoint of pgpre's start then flushes everything replayed so far.
    primary.psql("CHECKPOINT");
    wait_for_replay(&primary, &standby);
    let committed: i64 = standby
        .psql("SELECT count(*) FROM pgbench_history")
        .parse()
        .expect("a count");
    let load = primary.start_pgbench_load(2, 1);
    let pre = hook(
        &standby,
        &scratch,
        "pgpre",
        &["--fast", "--label", "standby nightly"],
    );
    pre.assert_ok("pgpre on a standby");
    let start_lsn = pre.stdout.trim().to_string();
    assert!(start_lsn.contains('/'), "{pre}");
    // Nothing is written to the standby: the state is local and private.
    assert_eq!(standby.psql("SELECT to_regclass('backup') IS NULL"), "t");
    assert_eq!(mode(&state_dir(&scratch)), 0o700);
    let running = record(&scratch);
    assert_eq!(running["state"], "running", "{running}");
    assert_eq!(running["start_lsn"], start_lsn.as_str());
    let list = hook(&standby, &scratch, "pgpre", &["--list"]);
    list.assert_ok("pgpre --list on a standby");
    assert!(
        list.stdout.contains("default\trunning\talive\t"),
        "{}",
        list.stdout
    );
    // The snapshot: the data directory, then global/pg_control again (it must be captured
    // with or after the rest).
    let copy = scratch.path().join("copy");
    standby.copy_data_dir(&copy);
    std::fs::copy(
        standby.data_dir().join("global/pg_control"),
        copy.join("global/pg_control"),
    )
    .expect("copy pg_control last");
    let labels = scratch.path().join("label");
    let archive = primary.archive_dir().to_str().unwrap().to_string();
    let post = TestCommand::new(&standby, "pgpost")
        .arg("--state-dir")
        .arg(state_dir(&scratch))
        .args(["--wal-archive", &archive, "--archive-timeout", "60"])
        .args(["-o", labels.to_str().unwrap()])
        .limit(Duration::from_secs(120))
        .spawn();
    wait_for("the co-process to exit", Duration::from_secs(30), || {
        coprocesses(&standby).is_empty()
    });
    // The primary switches the last segment out while pgpost's archive check waits for it.
    primary.psql("SELECT pg_switch_wal()");
    let post = post.finish();
    load.stop();
    post.assert_ok("pgpost on a standby")
        .assert_stderr(&format!("found in {archive}"));
    assert!(post.stdout.contains("BACKUP FROM: standby\n"), "{post}");
    assert!(post.stdout.contains("LABEL: standby nightly\n"), "{post}");
    if primary.version_num() >= 110000 {
        assert!(post.stdout.contains("START TIMELINE: 1\n"), "{post}");
    }
    let complete = record(&scratch);
    assert_eq!(complete["state"], "complete", "{complete}");
    assert_eq!(complete["start_timeline"], 1);
    assert_eq!(complete["stop_timeline"], 1);
    assert_eq!(complete["backup_label"], post.stdout.as_str());
    assert_eq!(complete["wal_archived"], "passed");
    // --fetch hands the same label out again, from the local state.
    let fetched = hook(&standby, &scratch, "pgpost", &["--fetch"]);
    fetched.assert_ok("pgpost --fetch on a standby");
    assert_eq!(fetched.stdout, post.stdout);
    let queries = [
        "SELECT count(*) = 1 FROM marker WHERE note = 'before pgpre'".to_string(),
        format!("SELECT count(*) >= {committed} FROM pgbench_history"),
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts) = \
           (SELECT coalesce(sum(delta), 0) FROM pgbench_history)"
            .to_string(),
    ];
    cluster::chown_tree_to_server_user(&copy);
    let tmp = cluster::scratch_dir();
    let label_file = labels.join("backup_label");
    let mut args = backup_args(&copy, &label_file, primary.archive_dir());
    args.extend(["--clone", "copy"]);
    for query in &queries {
        args.extend(["--sql", query.as_str()]);
    }
    let drill = pgdrill(&standby, tmp.path(), &args);
    assert_proven(&drill, "copy", queries.len());
}

#[test]
fn the_wal_of_a_standby_backup_is_not_claimed_and_an_idle_primary_is_named() {
    let (_primary, standby, scratch) = primary_and_standby();
    // No archiver on the standby (archive_mode is not always), no directory: nothing checked.
    hook(&standby, &scratch, "pgpre", &["--fast"])
        .assert_ok("pgpre")
        .assert_stderr("archive_mode is not always on this standby");
    let post = hook(&standby, &scratch, "pgpost", &["--json"]);
    post.assert_ok("pgpost without a place to check")
        .assert_stderr("the backup's WAL was not checked");
    let json: serde_json::Value = serde_json::from_str(&post.stdout).expect("--json");
    assert_eq!(json["wal_archived"], "unchecked", "{json}");
    assert_eq!(record(&scratch)["wal_archived"], "unchecked");
    // An idle primary never switches the last segment out: the failure says what to do.
    let archive = _primary.archive_dir().to_str().unwrap().to_string();
    hook(&standby, &scratch, "pgpre", &["--fast"]).assert_ok("pgpre");
    hook(
        &standby,
        &scratch,
        "pgpost",
        &["--wal-archive", &archive, "--archive-timeout", "2"],
    )
    .assert_code(10, "pgpost with an idle primary")
    .assert_stderr("is not archived")
    .assert_stderr("archive_timeout")
    .assert_stderr("--primary");
    assert_eq!(record(&scratch)["wal_archived"], "failed");
    assert_eq!(record(&scratch)["state"], "complete");
}

#[test]
fn with_primary_an_idle_primary_passes_and_a_wrong_one_is_refused() {
    let (primary, standby, scratch) = primary_and_standby();
    let archive = primary.archive_dir().to_str().unwrap().to_string();
    // Idle: pgpost makes the primary switch the last segment out (restore point + switch).
    hook_via(&primary, &standby, &scratch, "pgpre", &["--fast"]).assert_ok("pgpre --primary");
    let began = std::time::Instant::now();
    let args = ["--wal-archive", &archive, "--archive-timeout", "30"];
    hook_via(&primary, &standby, &scratch, "pgpost", &args)
        .assert_ok("pgpost --primary on an idle primary")
        .assert_stderr(&format!("found in {archive}"));
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(record(&scratch)["wal_archived"], "passed");
    // Without a directory, the primary's archiver is asked.
    hook_via(&primary, &standby, &scratch, "pgpre", &["--fast"]).assert_ok("pgpre --primary");
    hook_via(&primary, &standby, &scratch, "pgpost", &[])
        .assert_ok("pgpost --primary, the primary's archiver")
        .assert_stderr("archived (pg_stat_archiver)");
    // The standby itself is no primary: refused before anything starts.
    let wrong = standby.conninfo_socket();
    hook(
        &standby,
        &scratch,
        "pgpre",
        &["--fast", "--primary", &wrong],
    )
    .assert_code(4, "pgpre --primary at a standby")
    .assert_stderr("not at a primary")
    .assert_stderr("hint: give --primary the server this standby streams from");
    assert_eq!(record(&scratch)["state"], "complete", "nothing started");
    wait_for(
        "the refused co-process to exit",
        Duration::from_secs(10),
        || coprocesses(&standby).is_empty(),
    );
}

#[test]
fn a_standby_promoted_while_the_backup_is_held_fails_it() {
    let (_primary, standby, scratch) = primary_and_standby();
    let config = scratch.path().join("config.toml");
    std::fs::write(&config, "[backup]\nrecheck_interval = 1\n").expect("config");
    let config = config.to_str().unwrap().to_string();
    hook(&standby, &scratch, "pgpre", &["--fast", "-c", &config]).assert_ok("pgpre");
    assert_eq!(coprocesses(&standby).len(), 1);
    standby.promote();
    wait_for(
        "the co-process to see the promotion and exit",
        Duration::from_secs(30),
        || coprocesses(&standby).is_empty(),
    );
    let failed = record(&scratch);
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("promoted"),
        "{failed}"
    );
    hook(&standby, &scratch, "pgpost", &["-c", &config])
        .assert_code(1, "pgpost after a promotion")
        .assert_stderr("promoted");
}

/// Today's rules on a standby's local state: a paused replay is reported, a second pgpre
/// supersedes the first, several names run at once, a killed co-process is found gone,
/// `--exec` names the start segment itself (pg_walfile_name() fails during recovery).
#[test]
fn supersede_names_a_killed_coprocess_and_exec_work_on_a_standby() {
    let (_primary, standby, scratch) = primary_and_standby();
    standby.psql("SELECT pg_wal_replay_pause()");
    hook(&standby, &scratch, "pgpre", &["--fast"])
        .assert_ok("pgpre with replay paused")
        .assert_stderr("replay is paused on this standby");
    standby.psql("SELECT pg_wal_replay_resume()");
    let first = record(&scratch)["pid"].as_i64().expect("the holder's pid");
    hook(&standby, &scratch, "pgpre", &["--fast"]).assert_ok("a second pgpre");
    wait_for(
        "the superseded co-process to exit",
        Duration::from_secs(10),
        || !coprocesses(&standby).contains(&(first as i32)),
    );
    assert_eq!(record(&scratch)["state"], "running");
    // Another name beside it.
    hook(&standby, &scratch, "pgpre", &["--fast", "-n", "vol2"]).assert_ok("pgpre -n vol2");
    let list = hook(&standby, &scratch, "pgpre", &["--list"]);
    assert!(list.stdout.contains("default\trunning\talive\t"), "{list}");
    assert!(list.stdout.contains("vol2\trunning\talive\t"), "{list}");
    hook(
        &standby,
        &scratch,
        "pgpost",
        &["-n", "vol2", "--archive-check=none"],
    )
    .assert_ok("pgpost -n vol2");
    // The default backup's co-process is killed: pgpost finds it gone.
    let holder = record(&scratch)["pid"].as_i64().expect("pid") as i32;
    crate::util::send_signal(holder, nix::sys::signal::Signal::SIGKILL);
    wait_for(
        "the killed co-process to go",
        Duration::from_secs(10),
        || !coprocesses(&standby).contains(&holder),
    );
    hook(&standby, &scratch, "pgpost", &[])
        .assert_code(1, "pgpost after the co-process was killed")
        .assert_stderr("the co-process holding the backup is gone");
    assert_eq!(record(&scratch)["state"], "failed");
    // --exec: the start segment's name, computed here, is the label's.
    let exec = hook(
        &standby,
        &scratch,
        "pgpre",
        &[
            "--fast",
            "--archive-check=none",
            "--exec",
            "--",
            "sh",
            "-c",
            "echo \"start segment $SAFE_BACKUP_START_WAL_FILE\" >&2",
        ],
    );
    exec.assert_ok("pgpre --exec on a standby");
    let segment = exec
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("START WAL LOCATION: "))
        .and_then(|rest| rest.split("(file ").nth(1))
        .map(|file| file.trim_end_matches(')').to_string())
        .expect("the label names the start segment");
    exec.assert_stderr(&format!("start segment {segment}"));
    assert!(exec.stdout.contains("BACKUP FROM: standby\n"), "{exec}");
    assert_eq!(record(&scratch)["state"], "complete");
}

/// The archive check of a standby backup fails as a primary's does: a segment deleted from the
/// archive is named, and so is a failing archiver on the primary.
#[test]
fn a_deleted_segment_or_a_broken_archive_command_fails_a_standby_backup() {
    let (primary, standby, scratch) = primary_and_standby();
    let archive = primary.archive_dir().to_str().unwrap().to_string();
    let pre = hook_via(&primary, &standby, &scratch, "pgpre", &["--fast"]);
    pre.assert_ok("pgpre --primary");
    // The same timeline on both: the primary names the standby backup's start segment.
    let start = primary.psql(&format!("SELECT pg_walfile_name('{}')", pre.stdout.trim()));
    primary.psql("CREATE TABLE t (i int); INSERT INTO t VALUES (1)");
    primary.psql("SELECT pg_switch_wal()");
    let archived = primary.archive_dir().join(&start);
    wait_for(
        "the start segment to be archived",
        Duration::from_secs(30),
        || archived.is_file(),
    );
    std::fs::remove_file(&archived).expect("delete the start segment");
    let args = ["--wal-archive", &archive, "--archive-timeout", "2"];
    hook_via(&primary, &standby, &scratch, "pgpost", &args)
        .assert_code(10, "pgpost with a segment missing")
        .assert_stderr(&format!("WAL segment {start} is not archived"));
    assert_eq!(record(&scratch)["wal_archived"], "failed");
    // The primary's archive_command fails: its archiver (asked through --primary) says so.
    primary.psql("ALTER SYSTEM SET archive_command = 'false'");
    primary.psql("SELECT pg_reload_conf()");
    // New WAL the broken archiver cannot archive, and a checkpoint the standby's start uses.
    primary.psql("INSERT INTO t VALUES (2)");
    primary.psql("SELECT pg_switch_wal()");
    primary.psql("CHECKPOINT");
    wait_for_replay(&primary, &standby);
    hook_via(&primary, &standby, &scratch, "pgpre", &["--fast"]).assert_ok("pgpre --primary");
    hook_via(
        &primary,
        &standby,
        &scratch,
        "pgpost",
        &["--archive-timeout", "3"],
    )
    .assert_code(10, "pgpost with the primary's archiver failing")
    .assert_stderr("pg_stat_archiver.last_archived_wal")
    .assert_stderr("(failing now)");
}

/// A cascading standby whose upstream is promoted follows it onto timeline 2: a backup held on
/// it across the switch fails at the stop, and says the timeline changed.
#[test]
fn a_timeline_change_during_the_backup_fails_it() {
    let (_primary, mut upstream, scratch) = primary_and_standby();
    let mut cascade = upstream.start_standby();
    if cascade.version_num() < 120000 {
        // 10 and 11 stay on their timeline unless told to follow.
        let conf = cascade.data_dir().join("recovery.conf");
        let mut text = std::fs::read_to_string(&conf).expect("recovery.conf");
        text.push_str("recovery_target_timeline = 'latest'\n");
        std::fs::write(&conf, text).expect("recovery.conf");
        cascade.restart();
    }
    hook(&cascade, &scratch, "pgpre", &["--fast"]).assert_ok("pgpre on a cascading standby");
    upstream.promote();
    upstream.psql("CREATE TABLE after_promotion AS SELECT 1 AS i");
    upstream.psql("CHECKPOINT");
    wait_for_replay(&upstream, &cascade);
    // A restartpoint moves the cascade's minimum recovery point onto the new timeline.
    cascade.psql("CHECKPOINT");
    wait_for(
        "the cascade's minimum recovery point on timeline 2",
        Duration::from_secs(30),
        || cascade.psql("SELECT min_recovery_end_timeline FROM pg_control_recovery()") == "2",
    );
    hook(&cascade, &scratch, "pgpost", &["--archive-check=none"])
        .assert_code(1, "pgpost across a timeline change")
        .assert_stderr("timeline changed from 1 to 2");
    assert_eq!(record(&scratch)["state"], "failed");
    wait_for("the co-process to exit", Duration::from_secs(10), || {
        coprocesses(&cascade).is_empty()
    });
}
