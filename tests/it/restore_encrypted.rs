//! `pgback --restore` of encrypted dump sets (`--encrypt`) into fresh clusters: custom and
//! gzipped plain dumps encrypted to an age recipient and restored with `--cipher-identity`,
//! compared with the source; a passphrase set restored with PGBK_CIPHER_PASS (`--clean`); a
//! wrong identity stops before anything is touched; an encrypted directory dump is refused with
//! a hint; and a watcher reads the backup directory and the restore's TMPDIR throughout and
//! finds no plaintext, while the directory's names stay what the dump wrote.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::{Cluster, ClusterOptions};
use crate::crypt::keygen;
use crate::dump::files_in;
use crate::encrypt::watch;
use crate::restore_dump::{
    assert_same_catalogs, client_bindir, database_catalog, doc_args, file_of, pgback_dump,
    populate, target_state,
};
use crate::util::{Run, TestCommand};

const PASSPHRASE: &str = "restore-test-passphrase-41c9";

/// b1 custom (the default), b2 plain and gzipped, `postgres` custom; sha256 checksums.
const FORMATS: &str = r#"
[dump]
checksum_algorithm = "sha256"

[dump.databases.b2]
format = "plain"
compress_level = "1"
"#;

/// `pgback --restore DIR` into `target` with `extra` flags (and `env`).
pub(crate) fn restore(target: &Cluster, dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = TestCommand::new(target, "pgback")
        .args(["--restore", &dir.display().to_string()])
        .args(["-d", &target.conninfo_socket(), "-B", &client_bindir()])
        .args(extra);
    for (key, value) in env {
        command = command.env(key, value);
    }
    command.limit(Duration::from_secs(240)).run()
}

/// `pgback --encrypt DB` of `source` into `dir`, the passphrase in PGBK_CIPHER_PASS, sha256
/// checksums.
pub(crate) fn passphrase_dump(source: &Cluster, dir: &Path, passphrase: &str, db: &str) {
    TestCommand::new(source, "pgback")
        .args(["-d", &source.conninfo_socket(), "-B", &client_bindir()])
        .args(["-b", &dir.display().to_string(), "-S", "sha256"])
        .args(["--encrypt", db])
        .env("PGBK_CIPHER_PASS", passphrase)
        .limit(Duration::from_secs(240))
        .run()
        .assert_ok("the passphrase dump");
}

/// Deletes most of b1's words on `target`, which then differs from `source`.
pub(crate) fn change_b1(target: &Cluster, source: &Cluster) {
    target
        .try_psql_in("b1", "DELETE FROM words WHERE id > 10")
        .unwrap();
    assert_ne!(
        database_catalog(target, "b1"),
        database_catalog(source, "b1")
    );
}

/// The lines pgback wrote to report a failure (`pgback: ...`).
fn failure_lines(run: &Run) -> Vec<&str> {
    run.stderr
        .lines()
        .filter(|l| l.starts_with("pgback: "))
        .collect()
}

#[test]
fn encrypted_sets_restore_from_decrypting_streams_and_wrong_keys_touch_nothing() {
    let source = Cluster::start(ClusterOptions::default().without_archive());
    populate(&source, false);
    let keys = tempfile::tempdir().unwrap();
    let (identity, public) = keygen(keys.path(), "key.txt");
    let (wrong, _) = keygen(keys.path(), "other.txt");
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().join("set");
    std::fs::create_dir(&dir).unwrap();
    pgback_dump(
        &source,
        &dir,
        FORMATS,
        &["--encrypt", "--cipher-public-key", &public],
    );
    for (prefix, suffix) in [
        ("pg_globals_", ".sql.age"),
        ("b1_", ".dump.age"),
        ("b1_", ".createdb.sql.age"),
        ("b1_", ".dump.sha256.age"),
        ("b2_", ".sql.gz.age"),
    ] {
        file_of(&dir, prefix, suffix);
    }
    let written = files_in(&dir);
    let identity_arg = identity.display().to_string();
    let wrong_arg = wrong.display().to_string();

    let target = Cluster::start(ClusterOptions::default().without_archive());
    let before = target_state(&target);

    // A wrong identity: one line naming the file, a hint, and nothing touched.
    let refused = restore(&target, &dir, &["--cipher-identity", &wrong_arg], &[]);
    refused.assert_code(1, "a wrong identity");
    let lines = failure_lines(&refused);
    assert_eq!(lines.len(), 1, "{refused}");
    assert!(
        lines[0].contains("cannot decrypt") && lines[0].contains(".age"),
        "{refused}"
    );
    assert!(refused.stderr.contains("hint: "), "{refused}");
    // Without any key: one line too.
    let keyless = restore(&target, &dir, &[], &[]);
    assert_ne!(keyless.code, 0, "{keyless}");
    assert_eq!(failure_lines(&keyless).len(), 1, "{keyless}");
    assert!(keyless.stderr.contains("encrypted"), "{keyless}");
    assert_eq!(
        target_state(&target),
        before,
        "a refused restore touched it"
    );

    // The dry run shows the decryption, and pg_restore with one job.
    let dry = restore(
        &target,
        &dir,
        &["--cipher-identity", &identity_arg, "-j", "4", "--dry-run"],
        &[],
    );
    dry.assert_ok("the dry run");
    let plan = &dry.stdout;
    let b1_load = plan
        .lines()
        .find(|l| l.contains("pg_restore") && l.contains("b1_"))
        .unwrap_or_else(|| panic!("no pg_restore of b1 in\n{plan}"));
    assert!(
        b1_load.contains("$ decrypt ") && b1_load.contains(".dump.age (in memory"),
        "{b1_load}"
    );
    assert!(!b1_load.contains(" -j "), "{b1_load}");
    assert!(plan.contains("one job"), "{plan}");
    assert!(plan.contains("gzip -dc"), "{plan}");
    assert!(plan.contains("decrypted in memory"), "{plan}");
    assert!(plan.contains(".dump.age.sha256"), "{plan}");
    assert_eq!(target_state(&target), before, "a dry run touched it");

    // The restore, watched: no plaintext in the backup directory nor in TMPDIR.
    let tmpdir = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let watchers = [
        watch(dir.clone(), stop.clone()),
        watch(tmpdir.path().to_path_buf(), stop.clone()),
    ];
    let restored = TestCommand::new(&target, "pgback")
        .args(doc_args(
            "restore-encrypted",
            &target,
            &dir,
            Some(&identity),
        ))
        .args(["-B", &client_bindir(), "-j", "4"])
        .env("TMPDIR", tmpdir.path())
        .limit(Duration::from_secs(240))
        .run();
    stop.store(true, Ordering::SeqCst);
    for watcher in watchers {
        let (offenders, _) = watcher.join().unwrap();
        assert!(offenders.is_empty(), "plaintext on disk: {offenders:?}");
    }
    restored.assert_ok("the encrypted restore");
    assert!(files_in(tmpdir.path()).is_empty());
    assert_eq!(files_in(&dir), written, "the restore wrote into the set");
    let ok_rows = restored
        .stderr
        .lines()
        .filter(|l| l.ends_with("  ok"))
        .count();
    assert_eq!(ok_rows, 3, "{restored}");
    assert_same_catalogs(&target, &source, ["b1", "b2", "postgres"]);
    assert!(database_catalog(&target, "b1").contains("words 5000:"));

    // A passphrase set of b1 (PGBK_CIPHER_PASS), restored over the changed b1 with --clean.
    let pass_dir = backups.path().join("pass");
    passphrase_dump(&source, &pass_dir, PASSPHRASE, "b1");
    change_b1(&target, &source);
    let wrong_pass = restore(
        &target,
        &pass_dir,
        &["--clean"],
        &[("PGBK_CIPHER_PASS", "not the passphrase")],
    );
    wrong_pass.assert_code(1, "a wrong passphrase");
    assert!(
        wrong_pass.stderr.contains("wrong passphrase"),
        "{wrong_pass}"
    );
    assert!(!wrong_pass.stderr.contains(PASSPHRASE), "{wrong_pass}");
    let by_pass = restore(
        &target,
        &pass_dir,
        &["--clean"],
        &[("PGBK_CIPHER_PASS", PASSPHRASE)],
    );
    by_pass.assert_ok("the passphrase restore");
    assert_eq!(
        database_catalog(&target, "b1"),
        database_catalog(&source, "b1")
    );

    // An encrypted directory dump: refused with one line and a hint, nothing touched.
    let dir_set = backups.path().join("directory");
    pgback_dump(
        &source,
        &dir_set,
        FORMATS,
        &[
            "--encrypt",
            "--cipher-public-key",
            &public,
            "-F",
            "directory",
            "b2",
        ],
    );
    let state = target_state(&target);
    let refused = restore(
        &target,
        &dir_set,
        &["--cipher-identity", &identity_arg],
        &[],
    );
    refused.assert_code(2, "an encrypted directory dump");
    let lines = failure_lines(&refused);
    assert_eq!(lines.len(), 1, "{refused}");
    assert!(lines[0].contains("encrypted directory dump"), "{refused}");
    assert!(refused.stderr.contains("pgback --decrypt"), "{refused}");
    assert_eq!(target_state(&target), state);
}
