//! pgpost's archive check against real servers: a segment missing from the archive directory,
//! an idle primary, a restore_command that returns the right, a garbage and a wrong file.

use std::time::{Duration, Instant};

use crate::cluster::{Cluster, ClusterOptions};
use crate::util::{backup_row, run, wait_for, TestCommand};

/// pgpost with a short archive timeout, so a failure costs seconds.
fn pgpost(cluster: &Cluster, args: &[&str]) -> crate::util::Run {
    TestCommand::new(cluster, "pgpost")
        .args(["--archive-timeout", "2"])
        .args(args)
        .limit(Duration::from_secs(60))
        .run()
}

/// An idle primary passes (the restore point and the switch push the last segment out), then
/// a segment the next backup needs is deleted from the archive: the failure names it.
#[test]
fn a_segment_missing_from_the_archive_directory_is_named() {
    let cluster = Cluster::start(ClusterOptions::default());
    let archive = cluster.archive_dir().to_string_lossy().into_owned();
    // Idle: nothing is written between the hooks.
    run(&cluster, "pgpre", &["--fast"]).assert_ok("pgpre");
    let began = Instant::now();
    pgpost(&cluster, &["--wal-archive", &archive])
        .assert_ok("pgpost on an idle primary")
        .assert_stderr(&format!("found in {archive}"));
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(backup_row(&cluster, "wal_archived"), "passed");
    // pgpre --exec stops as pgpost does, archive check included.
    let exec = TestCommand::new(&cluster, "pgpre")
        .args([
            "--fast",
            "--json",
            "--wal-archive",
            &archive,
            "--exec",
            "--",
            "true",
        ])
        .limit(Duration::from_secs(60))
        .run();
    exec.assert_ok("pgpre --exec")
        .assert_stderr(&format!("found in {archive}"));
    let json: serde_json::Value = serde_json::from_str(&exec.stdout).expect("pgpre --exec --json");
    assert_eq!(json["wal_archived"], "passed", "{json}");
    // The start segment is switched out during the backup, archived, then lost.
    let pre = run(&cluster, "pgpre", &["--fast"]);
    pre.assert_ok("pgpre");
    let start_segment = cluster.psql(&format!("SELECT pg_walfile_name('{}')", pre.stdout.trim()));
    cluster.psql("CREATE TABLE IF NOT EXISTS t (i int); INSERT INTO t VALUES (1)");
    cluster.psql("SELECT pg_switch_wal()");
    let archived = cluster.archive_dir().join(&start_segment);
    wait_for(
        "the start segment to be archived",
        Duration::from_secs(30),
        || archived.is_file(),
    );
    std::fs::remove_file(&archived).expect("delete the start segment");
    pgpost(&cluster, &["--wal-archive", &archive])
        .assert_code(10, "pgpost with a segment missing")
        .assert_stderr(&format!("WAL segment {start_segment} is not archived"))
        .assert_stderr(&format!("in the directory {archive}"));
    assert_eq!(backup_row(&cluster, "wal_archived"), "failed");
    assert_eq!(backup_row(&cluster, "state::text"), "complete");
}

/// The restore_command is what a restore runs: its segments pass with this major's page
/// magic, a short copy still being written is waited for; a garbage file fails at once, a
/// truncated one once the archiver says it is archived; --archive-check=none checks nothing.
#[test]
fn the_restore_command_fetches_each_segment_and_its_header_is_checked() {
    let cluster = Cluster::start(ClusterOptions::default());
    let archive = cluster.archive_dir().to_string_lossy().into_owned();
    // An archiver that writes each segment in two steps, as a slow `cp` does: a short file in
    // the archive first, whole 2 s later. A short copy is waited for, not taken for damage
    // (CI once failed here on a loaded machine).
    let two_steps = format!(
        "head -c 4194304 \"%p\" > \"{archive}/%f\" && sleep 2 && cp \"%p\" \"{archive}/%f\""
    );
    cluster.psql(&format!(
        "ALTER SYSTEM SET archive_command = '{}'; SELECT pg_reload_conf();",
        two_steps.replace('\'', "''")
    ));
    run(&cluster, "pgpre", &["--fast"]).assert_ok("pgpre");
    let fetch = format!("cp \"{archive}/%f\" \"%p\"");
    TestCommand::new(&cluster, "pgpost")
        .args(["--restore-command", &fetch, "--archive-timeout", "30"])
        .limit(Duration::from_secs(60))
        .run()
        .assert_ok("pgpost with a restore_command")
        .assert_stderr("fetched by the restore_command");
    assert_eq!(backup_row(&cluster, "wal_archived"), "passed");
    // Garbage of the right size: the page header gives it away, without waiting.
    run(&cluster, "pgpre", &["--fast"]).assert_ok("pgpre");
    let began = Instant::now();
    let garbage = "head -c 16777216 /dev/urandom > \"%p\"";
    TestCommand::new(&cluster, "pgpost")
        .args(["--restore-command", garbage, "--archive-timeout", "30"])
        .limit(Duration::from_secs(60))
        .run()
        .assert_code(10, "pgpost with a garbage restore_command")
        .assert_stderr("the restore_command returned a wrong file for it: page magic");
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(backup_row(&cluster, "wal_archived"), "failed");
    // A truncated copy (a half-uploaded file) has a good header, but a restore refuses it.
    let truncated = format!("head -c 8192 \"{archive}/%f\" > \"%p\"");
    TestCommand::new(&cluster, "pgpost")
        .args([
            "--fetch",
            "--restore-command",
            &truncated,
            "--archive-timeout",
            "30",
        ])
        .limit(Duration::from_secs(60))
        .run()
        .assert_code(10, "pgpost --fetch with a truncating restore_command")
        .assert_stderr("bytes for it, not a whole segment");
    // Off: nothing is checked, and it says so.
    run(&cluster, "pgpre", &["--fast"]).assert_ok("pgpre");
    pgpost(&cluster, &["--archive-check=none"])
        .assert_ok("pgpost --archive-check=none")
        .assert_stderr("nothing checked");
    assert_eq!(backup_row(&cluster, "wal_archived"), "off");
}
