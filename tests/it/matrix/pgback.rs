//! pgback on every major: a dump restored with `pgback --restore` into a fresh cluster (roles,
//! databases, settings, ACLs and rows compared), an encrypted one restored with `--clean` over
//! a changed database, a standby's replay paused during the dumps and
//! resumed after, and a pg_dump older than the server refused before anything is dumped.
//! (`--exec -- pgback` under pgdrill is `drill::exec_pgback_dumps_the_backups_point_in_time`.)
//!
//! pg_restore 17+ cannot load into 10 to 16 itself (it always sets `transaction_timeout`):
//! there `pgback --restore` runs `pg_restore -f -` into psql without that line, and the restore
//! test checks that its plan says so.
//!
//! pg_dump, pg_restore and psql are the harness's client tools: PostgreSQL 18's from
//! `scripts/fetch-postgres` on every major (Debian 12's 15 cannot dump 16+).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use crate::cluster::{self, Cluster, ClusterOptions};
use crate::dump::{files_in, pgback, pgback_with_bin, primary_and_standby};
use crate::restore_dump::{
    assert_same_catalogs, client_bindir, database_catalog, pgback_dump, populate, server_catalog,
};
use crate::restore_encrypted::{change_b1, passphrase_dump, restore};
use crate::util::{self, Run, TestCommand};

/// b1 in custom format (the default), b2 as a directory dumped by two pg_dump jobs, postgres
/// as plain SQL (pg_dump 17+ writes `SET transaction_timeout` into it, which 10 to 16 reject:
/// pgback --restore feeds it to psql without that line).
const FORMATS: &str = r#"
[dump]
checksum_algorithm = "sha256"

[dump.databases.b2]
format = "directory"
parallel_backup_jobs = 2

[dump.databases.postgres]
format = "plain"
"#;

#[test]
fn a_dump_restores_into_a_fresh_cluster() {
    let source = Cluster::start(ClusterOptions::default().without_archive());
    populate(&source, false);
    // A row that reads like the line the script restore leaves out: it must stay.
    source
        .try_psql_in(
            "b1",
            "CREATE TABLE lines (line text); INSERT INTO lines VALUES ('SET transaction_timeout = 0;')",
        )
        .unwrap();
    let backups = cluster::scratch_dir();
    let dir = backups.path().join("set");
    std::fs::create_dir(&dir).unwrap();
    pgback_dump(&source, &dir, FORMATS, &[]);

    let target = Cluster::start(ClusterOptions::default().without_archive());
    let server_major = target.version_num() / 10000;
    let plan = pgback_restore(&target, &dir, &["--dry-run"]);
    plan.assert_ok("pgback --restore --dry-run");
    let script = tool_major("pg_restore") >= 17 && server_major < 17;
    let expected: &[&str] = if script {
        // pg_restore 17+ into 10-16: its script into psql, without SET transaction_timeout.
        &[
            "pg_restore -f - ",
            "# without the line \"SET transaction_timeout = 0;\"",
            "rejects: its script (pg_restore -f -) goes into psql without that line, one job instead of 2",
        ]
    } else {
        &["-w --exit-on-error -j 2 "]
    };
    for needle in expected {
        assert!(
            plan.stdout.contains(needle),
            "{needle:?} not in the plan\n{plan}"
        );
    }
    assert_eq!(
        plan.stdout.contains("transaction_timeout"),
        script,
        "{plan}"
    );
    pgback_restore(&target, &dir, &[]).assert_ok("pgback --restore");
    assert_same_catalogs(&target, &source, ["b1", "b2", "postgres"]);
    // The fixture really has what is compared.
    let b1 = database_catalog(&target, "b1");
    assert!(b1.contains("words 5000:"), "{b1}");
    assert!(b1.contains("lines 1:"), "{b1}");
    assert!(
        server_catalog(&target).contains("b2|u1|{u1=CTc/u1,u2=c/u1}|20"),
        "{}",
        server_catalog(&target)
    );
}

/// An encrypted custom dump of b1 (passphrase) restored into a fresh cluster, then with
/// `--clean` over a changed b1: from the decrypting stream into pg_restore's stdin, on 10 to 16
/// `pg_restore -f - [--clean --if-exists] --format=custom` into psql.
#[test]
fn an_encrypted_dump_restores_with_clean_from_its_decrypting_stream() {
    const PASSPHRASE: &str = "matrix-pgback-passphrase-7d2e";
    let source = Cluster::start(ClusterOptions::default().without_archive());
    populate(&source, false);
    let backups = cluster::scratch_dir();
    let encrypted = backups.path().join("encrypted");
    passphrase_dump(&source, &encrypted, PASSPHRASE, "b1");

    let target = Cluster::start(ClusterOptions::default().without_archive());
    let pass = [("PGBK_CIPHER_PASS", PASSPHRASE)];
    restore(&target, &encrypted, &[], &pass).assert_ok("pgback --restore of the encrypted b1");
    assert_eq!(
        database_catalog(&target, "b1"),
        database_catalog(&source, "b1")
    );
    change_b1(&target, &source);
    let cleaned = restore(&target, &encrypted, &["--clean"], &pass);
    cleaned.assert_ok("pgback --restore --clean of the encrypted b1");
    let script = tool_major("pg_restore") >= 17 && target.version_num() / 10000 < 17;
    assert_eq!(
        cleaned
            .stderr
            .contains("its script (pg_restore -f -) goes into psql without that line"),
        script,
        "{cleaned}"
    );
    let b1 = database_catalog(&target, "b1");
    assert_eq!(b1, database_catalog(&source, "b1"));
    assert!(b1.contains("words 5000:"), "{b1}");
}

/// `pgback --restore dir -j 2 -d target -B <the harness's client tools> [extra]`.
fn pgback_restore(target: &Cluster, dir: &Path, extra: &[&str]) -> Run {
    TestCommand::new(target, "pgback")
        .arg("--restore")
        .arg(dir)
        .args([
            "-j",
            "2",
            "-d",
            &target.conninfo_socket(),
            "-B",
            &client_bindir(),
        ])
        .args(extra)
        .limit(Duration::from_secs(180))
        .run()
}

/// The major of the harness's client tool `name` ("pg_restore (PostgreSQL) 18.6" -> 18).
fn tool_major(name: &str) -> u32 {
    let tool = cluster::pg_binaries().client_tool(name);
    let text = util::tool(
        tool.to_str().expect("test paths are UTF-8"),
        &["--version".as_ref()],
    );
    text.split_whitespace()
        .find_map(|word| word.split('.').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{} --version printed {text:?}", tool.display()))
}

#[test]
fn a_standby_is_paused_during_the_dumps_and_resumed_after() {
    let (_primary, standby) = primary_and_standby();
    let out_dir = cluster::scratch_dir();
    let output = pgback(
        &standby,
        &["-v", "-b", &out_dir.path().display().to_string(), "app"],
    )
    .run();
    output
        .assert_ok("pgback on a standby")
        .assert_stderr("WAL replay paused")
        .assert_stderr("WAL replay resumed");
    assert_eq!(standby.psql("SELECT pg_is_wal_replay_paused()"), "f");
    // Non-superuser-readable files may be missing on a standby, but the dump is there.
    assert!(
        files_in(out_dir.path())
            .iter()
            .any(|n| n.starts_with("app_") && n.ends_with(".dump")),
        "{:?}",
        files_in(out_dir.path())
    );
}

/// A bin directory whose pg_dump is older than a server of `server_major`: Debian's newest
/// when it is older (15 against 16+), else a script that says it is one major older and
/// records any other call in `dumped`.
fn older_pg_dump(server_major: u32, dumped: &Path) -> tempfile::TempDir {
    let bin = cluster::scratch_dir();
    let debian = cluster::debian_bindirs()
        .into_iter()
        .find(|(major, dir)| *major < server_major && dir.join("pg_dump").is_file());
    if let Some((_, dir)) = debian {
        std::os::unix::fs::symlink(dir.join("pg_dump"), bin.path().join("pg_dump")).unwrap();
        return bin;
    }
    let older = match server_major {
        10 => "9.6.24".to_string(),
        major => format!("{}.9", major - 1),
    };
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'pg_dump (PostgreSQL) {older}'; exit 0; fi\n\
         echo \"$*\" >> '{}'\nexit 1\n",
        dumped.display()
    );
    let wrapper = bin.path().join("pg_dump");
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[test]
fn a_pg_dump_older_than_the_server_is_refused_before_anything_runs() {
    let source = Cluster::start(ClusterOptions::default().without_archive());
    source.psql("CREATE DATABASE app");
    let server_major = source.version_num() / 10000;
    let scratch = cluster::scratch_dir();
    let dumped = scratch.path().join("dumped");
    let bin = older_pg_dump(server_major, &dumped);
    let out_dir = scratch.path().join("backups");
    std::fs::create_dir(&out_dir).unwrap();
    let run = pgback_with_bin(
        &source,
        &bin.path().display().to_string(),
        &["-b", &out_dir.display().to_string()],
    )
    .run();
    run.assert_code(4, "pgback with a pg_dump older than the server")
        .assert_stderr("older than the server")
        .assert_stderr(&format!(
            "hint: point -B (dump.bin_directory) at the client tools of PostgreSQL {server_major} or later"
        ));
    let last: Vec<&str> = run.stderr.lines().rev().take(2).collect();
    assert!(
        last[1].starts_with("pgback: ") && last[0].starts_with("hint: "),
        "one error line and its hint at the end\n{run}"
    );
    assert!(!run.stderr.contains("app"), "no database was tried\n{run}");
    assert!(files_in(&out_dir).is_empty(), "{:?}", files_in(&out_dir));
    assert!(!dumped.exists(), "pg_dump was run to dump\n{run}");
}
