//! `pgbase`'s WAL left to the archive and its faults, over real servers of every major:
//! `-X none` runs the hook pair's archive check on the backup's WAL range (found in the
//! archive directory and proven by pgdrill, found by `pg_stat_archiver`, missing: exit 10
//! with the backup kept and marked; archiving off: refused before the backup starts); the
//! server stopped in immediate mode mid-stream; a full disk (a small tmpfs).

use std::fs;

use crate::cluster::{self, Cluster, ClusterOptions};
use crate::matrix::drill::loaded_source;
use crate::matrix::pgbase::{
    names_in, nothing_left_behind, prove_with, slots, tar_backup, throttled_backup, INCOMPLETE,
};
use crate::util::{Run, Tmpfs};

/// The lines of stderr that are pgbase's report (the error and its hint), not log lines.
fn report_lines(run: &Run) -> Vec<&str> {
    run.stderr
        .lines()
        .filter(|line| line.starts_with("pgbase: ") || line.starts_with("hint: "))
        .collect()
}

#[test]
fn x_none_checks_the_archive_for_the_backups_wal_and_exits_10_when_it_is_missing() {
    let source = loaded_source(1);
    source.psql("INSERT INTO marker VALUES ('before pgbase')");
    let committed = source.pgbench_history_rows();
    let scratch = cluster::scratch_dir();
    let archive = source.archive_dir().to_str().unwrap().to_owned();

    // In the archive directory: the same check as pgpost's, then pgdrill restores from it.
    let out = scratch.path().join("in-directory");
    let run = tar_backup(&source, &out, &["-X", "none", "--wal-archive", &archive]).run();
    run.assert_ok("pgbase -X none --wal-archive")
        .assert_stderr(&format!("found in {archive}"));
    assert!(!out.join(INCOMPLETE).exists() && !out.join("pg_wal.tar").exists());
    prove_with(&source, &out, &["--wal-archive", &archive], committed, &[]);

    // By the server's archiver (no flag: --archive-check auto).
    let out = scratch.path().join("by-the-archiver");
    tar_backup(&source, &out, &["-X", "none"])
        .run()
        .assert_ok("pgbase -X none")
        .assert_stderr("archived (pg_stat_archiver)");

    // Missing: exit 10, the segment named, the backup kept and still marked incomplete.
    let empty = scratch.path().join("empty-archive");
    fs::create_dir(&empty).unwrap();
    let out = scratch.path().join("missing");
    let run = tar_backup(
        &source,
        &out,
        &[
            "-X",
            "none",
            "--wal-archive",
            empty.to_str().unwrap(),
            "--archive-timeout",
            "2s",
        ],
    )
    .run();
    run.assert_code(10, "pgbase -X none, WAL not archived")
        .assert_stderr("is not archived (waited")
        .assert_stderr("still marked pgbase.incomplete");
    assert_eq!(report_lines(&run).len(), 2, "{run}");
    assert!(out.join(INCOMPLETE).is_file() && out.join("base.tar").is_file());
    assert_eq!(slots(&source), "0");

    // The flags mean nothing with the WAL in the backup: refused.
    let out = scratch.path().join("streamed");
    tar_backup(&source, &out, &["--wal-archive", &archive])
        .run()
        .assert_code(2, "pgbase -X stream --wal-archive")
        .assert_stderr("only with -X none");
}

#[test]
fn x_none_without_archiving_is_refused_before_the_backup_unless_the_check_is_off() {
    let source = Cluster::start(ClusterOptions::default().without_archive());
    let scratch = cluster::scratch_dir();
    let out = scratch.path().join("backup");
    tar_backup(&source, &out, &["-X", "none"])
        .run()
        .assert_code(4, "pgbase -X none, archive_mode off")
        .assert_stderr("archive_mode is off")
        .assert_stderr("--archive-check=none");
    assert!(!out.exists(), "{:?}", names_in(&out));
    tar_backup(&source, &out, &["-X", "none", "--archive-check", "none"])
        .run()
        .assert_ok("pgbase -X none --archive-check none")
        .assert_stderr("the archive check is off");
    assert!(out.join("base.tar").is_file() && !out.join(INCOMPLETE).exists());
}

#[test]
fn a_server_stopped_in_immediate_mode_mid_stream_fails_in_one_line() {
    let mut source = loaded_source(1);
    let scratch = cluster::scratch_dir();
    let out = scratch.path().join("backup");
    let running = throttled_backup(&source, &out, &[]);
    source.stop_immediate();
    let run = running.finish();
    run.assert_code(1, "pgbase whose server crashed")
        .assert_stderr_any(&[
            "the server closed the connection unexpectedly",
            "server said: terminating connection",
        ]);
    assert_eq!(report_lines(&run).len(), 1, "{run}");
    assert!(!out.exists(), "left behind: {:?}", names_in(&out));

    // --no-clean: the partial backup stays, marked, with nothing that looks finished.
    source.restart();
    let running = throttled_backup(&source, &out, &["--no-clean"]);
    source.stop_immediate();
    let run = running.finish();
    run.assert_code(1, "pgbase -n whose server crashed");
    let names = names_in(&out);
    assert!(names.contains(&INCOMPLETE.to_owned()), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("backup_manifest")),
        "{names:?}"
    );
    source.restart();
    assert_eq!(slots(&source), "0", "a temporary slot outlived the crash");
}

#[test]
fn a_full_disk_names_enospc_and_leaves_nothing_that_looks_finished() {
    let source = loaded_source(1);
    let disk = Tmpfs::mount("4M");
    let out = disk.path().join("backup");
    let run = tar_backup(&source, &out, &[]).run();
    run.assert_code(7, "pgbase on a full disk")
        .assert_stderr("No space left on device")
        .assert_stderr("hint: the backup's file system is full");
    assert_eq!(report_lines(&run).len(), 2, "{run}");
    nothing_left_behind(&source, &out);

    // --no-clean: what fitted stays, marked incomplete.
    let run = tar_backup(&source, &out, &["--no-clean"]).run();
    run.assert_code(7, "pgbase -n on a full disk")
        .assert_stderr("No space left on device");
    let names = names_in(&out);
    assert!(names.contains(&INCOMPLETE.to_owned()), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("backup_manifest")),
        "{names:?}"
    );
}
