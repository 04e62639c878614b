//! `pgdrill`'s failures over real servers: a copy without its label, an empty archive (the
//! missing WAL named), a recovery that hangs (timeout, then SIGTERM), a label from another
//! backup, overlay over a running server's own directory. Helpers in `drill.rs`.

use std::fs;
use std::path::Path;

use nix::sys::signal::Signal;
use serde_json::Value;

use super::drill::{
    assert_proven, backup, backup_args, fingerprint, hot_copy, loaded_source, pgdrill,
    PROGRAM_LIMIT,
};
use crate::cluster::{self, Cluster, ClusterOptions};
use crate::util::{self, TestCommand};

#[test]
fn refuses_a_copy_without_backup_label() {
    let source = Cluster::start(ClusterOptions::default().without_archive());
    let scratch = cluster::scratch_dir();
    let tmp = cluster::scratch_dir();
    let copy = scratch.path().join("data");
    source.copy_data_dir(&copy);
    let empty = tempfile::tempdir().unwrap();
    let drill = pgdrill(
        &source,
        tmp.path(),
        &[
            copy.to_str().unwrap(),
            "--wal-archive",
            empty.path().to_str().unwrap(),
        ],
    );
    drill.assert_failed(2, "no backup_label");
    assert!(drill.stderr().contains("hint: ") && drill.stderr().contains("crash recovery"));
    assert_eq!(drill.report["consistent"], false);
}

#[test]
fn an_empty_archive_names_the_missing_wal_and_a_hanging_restore_times_out() {
    let source = loaded_source(1);
    let scratch = cluster::scratch_dir();
    let labels = cluster::scratch_dir();
    let tmp = cluster::scratch_dir();
    let copy = scratch.path().join("data");
    hot_copy(&source, &copy, labels.path());
    let before = fingerprint(&copy);
    let label = labels.path().join("backup_label");
    let label_text = fs::read_to_string(&label).unwrap();
    let start_file = label_text.split("(file ").nth(1).unwrap()[..24].to_string();
    let empty = tempfile::tempdir().unwrap();
    fs::set_permissions(
        empty.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let drill = pgdrill(
        &source,
        tmp.path(),
        &backup_args(&copy, &label, empty.path()),
    );
    assert_eq!(drill.code(), 8, "{}", drill.describe());
    let stderr = drill.stderr();
    assert!(
        stderr.contains("recovery needs WAL that is missing: 0000000"),
        "{stderr}"
    );
    let missing = stderr.split("missing: ").nth(1).unwrap()[..24].to_string();
    assert!(
        missing >= start_file,
        "{missing} is before the backup's start {start_file}"
    );
    assert!(
        fs::read_dir(source.archive_dir()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            == missing),
        "the segment named, {missing}, is one the real archive has"
    );
    assert!(
        stderr.contains(&format!("hint: the WAL archive {}", empty.path().display())),
        "{stderr}"
    );
    assert_eq!(drill.report["consistent"], false);
    assert!(!drill.report["server_log_tail"]
        .as_array()
        .unwrap()
        .is_empty());

    let drill = pgdrill(
        &source,
        tmp.path(),
        &[
            copy.to_str().unwrap(),
            "--backup-label",
            label.to_str().unwrap(),
            "--restore-command",
            "sleep 60",
            "--timeout",
            "3",
        ],
    );
    drill.assert_failed(6, "not consistent within 3 s");
    assert!(
        drill.report["seconds"]["total"].as_f64().unwrap() < 30.0,
        "{}",
        drill.describe()
    );
    assert_eq!(fingerprint(&copy), before);
    // SIGTERM while the server waits for WAL: server stopped, clone removed, exit 128 + 15.
    let running = TestCommand::new(&source, "pgdrill")
        .env("TMPDIR", tmp.path())
        .arg(&copy)
        .args([
            "--backup-label",
            label.to_str().unwrap(),
            "--restore-command",
            "sleep 60",
        ])
        .arg("--pg-bindir")
        .arg(source.bindir())
        .limit(PROGRAM_LIMIT)
        .spawn();
    util::wait_for("the drill's server to start", PROGRAM_LIMIT, || {
        fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .any(|e| e.path().join("socket/postmaster.pid").exists())
    });
    running.signal(Signal::SIGTERM);
    let run = running.finish_within(PROGRAM_LIMIT);
    assert_eq!(run.code, 143, "{run}");
    let stderr = run.stderr;
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "the drill left files behind"
    );
    assert!(
        cluster::marked_processes(source.marker())
            .iter()
            .all(|pid| fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| !c.contains("pgdrill"))),
        "a process of the drill outlived it"
    );
    assert_eq!(fingerprint(&copy), before);
}

#[test]
fn a_label_from_another_backup_is_refused() {
    let source = loaded_source(1);
    let scratch = cluster::scratch_dir();
    let tmp = cluster::scratch_dir();
    let (earlier, own, later) = (
        cluster::scratch_dir(),
        cluster::scratch_dir(),
        cluster::scratch_dir(),
    );
    let copy = scratch.path().join("data");
    let load = source.start_pgbench_load(2, 1);
    backup(&source, earlier.path(), || {});
    backup(&source, own.path(), || source.copy_data_dir(&copy));
    backup(&source, later.path(), || {});
    load.stop();
    let drill_with = |labels: &Path| {
        let label = labels.join("backup_label");
        pgdrill(
            &source,
            tmp.path(),
            &backup_args(&copy, &label, source.archive_dir()),
        )
    };
    let drill = drill_with(earlier.path());
    drill.assert_failed(8, "belongs to another backup");
    assert!(
        drill
            .stderr()
            .contains("changes from after that backup ended"),
        "{}",
        drill.describe()
    );
    let drill = drill_with(later.path());
    drill.assert_failed(8, "before that backup started");
    assert_eq!(
        drill.report["postgres"],
        Value::Null,
        "refused before any server started"
    );
    assert_proven(&drill_with(own.path()), "overlay", 0);
}

#[test]
fn overlay_is_refused_over_a_running_servers_data_directory() {
    let source = Cluster::start(ClusterOptions::default().without_archive());
    let tmp = cluster::scratch_dir();
    let labels = tempfile::tempdir().unwrap();
    let label = labels.path().join("backup_label");
    fs::write(
        &label,
        "START WAL LOCATION: 0/1000028 (file 000000010000000000000001)\nCHECKPOINT LOCATION: 0/1\n",
    )
    .unwrap();
    let drill = pgdrill(
        &source,
        tmp.path(),
        &[
            source.data_dir().to_str().unwrap(),
            "--backup-label",
            label.to_str().unwrap(),
            "--clone",
            "overlay",
            "--wal-archive",
            tmp.path().to_str().unwrap(),
        ],
    );
    assert_eq!(drill.code(), 4, "{}", drill.describe());
    assert!(
        drill
            .stderr()
            .contains("data directory of a running server"),
        "{}",
        drill.describe()
    );
}
