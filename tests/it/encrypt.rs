//! pgback `--encrypt` and `--decrypt` over a real server: encrypted runs (recipients, and a
//! passphrase from PGBK_CIPHER_PASS) whose `.age` files the `age` CLI decrypts and pg_restore
//! loads; `--decrypt -j 2` in place; wrong passphrase, wrong key and a truncated file; a watcher
//! that reads every file of the backup directory while a run writes it and fails on any
//! plaintext dump; every secret flag refused; no secret in the output, in
//! `/proc/<pid>/cmdline` of pgback and its children, nor in their environment.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use safe_backup::dump::SECRET_FLAGS;

use crate::cluster::{self, Cluster, ClusterOptions};
use crate::crypt::{age_tool, age_with_tty, check, keygen, pg_restore_list};
use crate::dump::{files_in, pgback, pgback_with_bin, wrapped_pg_dump};
use crate::util::TestCommand;

const PASSPHRASE: &str = "pgback-test-passphrase-7f3a";

/// A cluster with a database `app` holding enough rows for dumps that take a moment.
fn cluster_with_app(rows: u32) -> Cluster {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.psql("CREATE DATABASE app");
    cluster
        .try_psql_in(
            "app",
            &format!(
                "CREATE TABLE orders(id int PRIMARY KEY, note text); \
                 INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, {rows}) g"
            ),
        )
        .unwrap();
    cluster
}

fn the_one(dir: &Path, suffix: &str) -> PathBuf {
    let names: Vec<String> = files_in(dir)
        .into_iter()
        .filter(|n| n.ends_with(suffix))
        .collect();
    assert_eq!(names.len(), 1, "{suffix}: {:?}", files_in(dir));
    dir.join(&names[0])
}

/// Names a run left that are neither encrypted nor checksums of encrypted files nor locks.
fn plaintext_names(dir: &Path) -> Vec<String> {
    files_in(dir)
        .into_iter()
        .filter(|n| !n.ends_with(".age") && !n.contains(".age.") && !n.ends_with(".lock"))
        .collect()
}

fn sha256sum_check(dir: &Path, sums: &Path) {
    let output = std::process::Command::new("sha256sum")
        .arg("-c")
        .arg(sums)
        .current_dir(dir)
        .output()
        .unwrap();
    check(output, "sha256sum -c");
}

#[test]
fn a_run_encrypted_to_recipients_decrypts_with_the_age_cli_and_restores() {
    let cluster = cluster_with_app(5000);
    let tmp = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (identity, public) = keygen(keys.path(), "key.txt");
    let dir = tmp.path().join("backups");
    let dir_arg = dir.display().to_string();
    pgback(
        &cluster,
        &[
            "-b",
            &dir_arg,
            "-S",
            "sha256",
            "--encrypt",
            "--cipher-public-key",
            &public,
            "app",
        ],
    )
    .run()
    .assert_ok("encrypted run");
    assert!(plaintext_names(&dir).is_empty(), "{:?}", files_in(&dir));
    for suffix in [
        ".dump.age",
        ".dump.age.sha256",
        ".dump.sha256.age",
        ".dump.sha256.age.sha256",
        ".createdb.sql.age",
    ] {
        the_one(&dir, suffix);
    }
    for prefix in ["pg_globals_", "pg_settings_", "hba_file_", "ident_file_"] {
        assert!(
            files_in(&dir)
                .iter()
                .any(|n| n.starts_with(prefix) && n.ends_with(".age")),
            "{prefix}: {:?}",
            files_in(&dir)
        );
    }
    // The encrypted files verify as they are; the age CLI opens them.
    sha256sum_check(&dir, &the_one(&dir, ".dump.age.sha256"));
    sha256sum_check(&dir, &the_one(&dir, ".dump.sha256.age.sha256"));
    let age_file = the_one(&dir, ".dump.age");
    let plain = dir.join(age_file.file_stem().unwrap());
    let decrypt = |from: &Path, to: &Path| {
        let out = age_tool("age")
            .arg("-d")
            .arg("-i")
            .arg(&identity)
            .arg("-o")
            .arg(to)
            .arg(from)
            .output()
            .unwrap();
        check(out, "age -d");
    };
    decrypt(&age_file, &plain);
    let sums = the_one(&dir, ".dump.sha256.age");
    decrypt(&sums, &dir.join(sums.file_stem().unwrap()));
    // The plaintext's checksum, computed on the stream, holds for the decrypted dump.
    sha256sum_check(&dir, &dir.join(sums.file_stem().unwrap()));
    assert!(pg_restore_list(&cluster, &plain).contains("TABLE DATA public orders"));
    let createdb = the_one(&dir, ".createdb.sql.age");
    let createdb_plain = dir.join(createdb.file_stem().unwrap());
    decrypt(&createdb, &createdb_plain);
    assert!(std::fs::read_to_string(&createdb_plain)
        .unwrap()
        .contains("CREATE DATABASE "));

    // pg_restore loads it into a fresh database.
    cluster.psql("CREATE DATABASE app_restored");
    TestCommand::program(&cluster, cluster::pg_binaries().client_tool("pg_restore"))
        .args(["--exit-on-error", "-d", "app_restored"])
        .arg(&plain)
        .run()
        .assert_ok("pg_restore");
    assert_eq!(
        cluster
            .try_psql_in("app_restored", "SELECT count(*) FROM orders")
            .unwrap(),
        "5000"
    );

    // --decrypt in place, two at a time: every .age file (here in a fresh copy) gets its
    // plaintext beside it.
    let copy = tmp.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for name in files_in(&dir).iter().filter(|n| n.ends_with(".age")) {
        std::fs::copy(dir.join(name), copy.join(name)).unwrap();
    }
    let copy_arg = copy.display().to_string();
    let identity_arg = identity.display().to_string();
    pgback(
        &cluster,
        &[
            "--decrypt",
            "-j",
            "2",
            "-b",
            &copy_arg,
            "--cipher-identity",
            &identity_arg,
            "app_*",
            "pg_globals_*",
        ],
    )
    .run()
    .assert_ok("--decrypt -j 2");
    let decrypted = plaintext_names(&copy);
    assert_eq!(decrypted.len(), 6, "{decrypted:?}");
    assert!(!files_in(&copy).iter().any(|n| n.ends_with(".partial")));
    let dump = the_one(&copy, ".dump");
    assert_eq!(
        std::fs::read(&dump).unwrap(),
        std::fs::read(&plain).unwrap()
    );
    assert!(!files_in(&copy)
        .iter()
        .any(|n| n.starts_with("hba_file_") && !n.ends_with(".age")));
}

#[test]
fn a_passphrase_run_decrypts_with_the_age_cli_and_wrong_keys_leave_nothing() {
    let cluster = cluster_with_app(2000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    let dir_arg = dir.display().to_string();
    pgback(
        &cluster,
        &[
            "-b",
            &dir_arg,
            "-F",
            "plain",
            "--dump-only",
            "-S",
            "sha256",
            "--encrypt",
            "app",
        ],
    )
    .env("PGBK_CIPHER_PASS", PASSPHRASE)
    .run()
    .assert_ok("passphrase run");
    assert!(plaintext_names(&dir).is_empty(), "{:?}", files_in(&dir));
    let age_file = the_one(&dir, ".sql.age");
    let name = age_file.file_name().unwrap().to_string_lossy().into_owned();
    let out = age_with_tty(
        &dir,
        &format!("-d -o plain.sql {name}"),
        &format!("{PASSPHRASE}\n"),
    );
    check(out, "age -d with the passphrase");
    let sql = std::fs::read_to_string(dir.join("plain.sql")).unwrap();
    assert!(
        sql.contains("CREATE TABLE public.orders"),
        "{}",
        &sql[..200.min(sql.len())]
    );
    std::fs::remove_file(dir.join("plain.sql")).unwrap();

    let before = files_in(&dir);
    // A wrong passphrase: one line (and its hint), exit 1, no output file.
    let run = pgback(&cluster, &["--decrypt", "-b", &dir_arg, "app_*"])
        .env("PGBK_CIPHER_PASS", "not the passphrase")
        .run();
    run.assert_code(1, "wrong passphrase")
        .assert_stderr("wrong passphrase");
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("pgback: "))
        .collect();
    assert_eq!(
        errors.len(),
        2,
        "one line per file (dump and checksum)\n{run}"
    );
    assert!(!run.stderr.contains("not the passphrase"), "{run}");
    assert_eq!(files_in(&dir), before);

    // A key instead of the passphrase.
    let keys = tempfile::tempdir().unwrap();
    let (identity, _) = keygen(keys.path(), "other.txt");
    let identity_arg = identity.display().to_string();
    let run = pgback(
        &cluster,
        &[
            "--decrypt",
            "-b",
            &dir_arg,
            "--cipher-identity",
            &identity_arg,
            "*.sql.age",
        ],
    )
    .run();
    run.assert_code(1, "identity for a passphrase file")
        .assert_stderr("encrypted with a passphrase");
    assert_eq!(files_in(&dir), before);

    // A truncated file: its chunks fail authentication, nothing is written.
    let cut = dir.join("cut_2026-01-01T00:00:00Z.sql.age");
    let bytes = std::fs::read(&age_file).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 40]).unwrap();
    let run = pgback(&cluster, &["--decrypt", "-b", &dir_arg, "cut_*"])
        .env("PGBK_CIPHER_PASS", PASSPHRASE)
        .run();
    run.assert_code(1, "truncated").assert_stderr("truncated");
    assert_eq!(
        run.stderr
            .lines()
            .filter(|l| l.starts_with("pgback: "))
            .count(),
        1,
        "{run}"
    );
    assert!(!dir.join("cut_2026-01-01T00:00:00Z.sql").exists());
    assert!(!files_in(&dir).iter().any(|n| n.ends_with(".partial")));

    // The right passphrase, in place.
    std::fs::remove_file(&cut).unwrap();
    pgback(&cluster, &["--decrypt", "-j", "2", "-b", &dir_arg])
        .env("PGBK_CIPHER_PASS", PASSPHRASE)
        .run()
        .assert_ok("--decrypt");
    sha256sum_check(&dir, &the_one(&dir, ".sql.sha256"));
}

/// Whether `bytes` hold a dump or SQL text: pg_dump's magic or what plain dumps, globals,
/// settings, hba and createdb.sql are made of.
fn looks_like_plaintext(bytes: &[u8]) -> bool {
    const MARKS: [&[u8]; 6] = [
        b"PGDMP",
        b"PostgreSQL database",
        b"CREATE ",
        b"ALTER ",
        b"# path: ",
        b"orders",
    ];
    MARKS
        .iter()
        .any(|mark| bytes.windows(mark.len()).any(|w| w == *mark))
}

/// Reads every file under `dir` over and over until `stop`, recording the names of those that
/// are neither `.age` files nor locks and hold plaintext; also counts the files seen.
pub(crate) fn watch(
    dir: PathBuf,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(BTreeSet<String>, usize)> {
    std::thread::spawn(move || {
        let mut offenders = BTreeSet::new();
        let mut seen = BTreeSet::new();
        let mut pending = vec![dir.clone()];
        loop {
            let last_round = stop.load(Ordering::SeqCst);
            while let Some(current) = pending.pop() {
                let Ok(entries) = std::fs::read_dir(&current) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        pending.push(path);
                        continue;
                    }
                    let name = path.strip_prefix(&dir).unwrap().display().to_string();
                    seen.insert(name.clone());
                    if name.ends_with(".age") || name.ends_with(".lock") {
                        continue;
                    }
                    if std::fs::read(&path).is_ok_and(|bytes| looks_like_plaintext(&bytes)) {
                        offenders.insert(name);
                    }
                }
            }
            if last_round {
                return (offenders, seen.len());
            }
            pending.push(dir.clone());
        }
    })
}

/// Runs pgback over `app`, `app2` and `app3` into `dir` with `extra` flags while [`watch`] reads
/// the directory; returns the offenders.
fn watched_run(cluster: &Cluster, dir: &Path, extra: &[&str]) -> BTreeSet<String> {
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(dir.to_path_buf(), stop.clone());
    let dir_arg = dir.display().to_string();
    let mut args = vec!["-b", &dir_arg, "-j", "2", "-S", "sha256"];
    args.extend_from_slice(extra);
    args.extend(["app", "app2", "app3"]);
    pgback(cluster, &args).run().assert_ok("watched run");
    stop.store(true, Ordering::SeqCst);
    let (offenders, seen) = watcher.join().unwrap();
    assert!(seen > 10, "the watcher saw {seen} files");
    offenders
}

#[test]
fn no_plaintext_byte_touches_the_disk_while_an_encrypted_run_writes() {
    let cluster = cluster_with_app(100_000);
    for db in ["app2", "app3"] {
        cluster.psql(&format!("CREATE DATABASE {db} TEMPLATE app"));
    }
    let keys = tempfile::tempdir().unwrap();
    let (_, public) = keygen(keys.path(), "key.txt");
    let tmp = tempfile::tempdir().unwrap();
    // The watcher can fail: without --encrypt it sees the plaintext.
    let offenders = watched_run(&cluster, &tmp.path().join("clear"), &["-F", "custom"]);
    assert!(
        offenders.iter().any(|n| n.ends_with(".dump")),
        "{offenders:?}"
    );
    for format in ["custom", "plain", "tar"] {
        let dir = tmp.path().join(format);
        let offenders = watched_run(
            &cluster,
            &dir,
            &["-F", format, "--encrypt", "--cipher-public-key", &public],
        );
        assert!(
            offenders.is_empty(),
            "{format}: plaintext on disk: {offenders:?}"
        );
        assert!(plaintext_names(&dir).is_empty(), "{:?}", files_in(&dir));
    }
}

#[test]
fn every_secret_flag_is_refused_with_a_hint() {
    let cluster = Cluster::start(ClusterOptions::default());
    let hints = [
        "PGBK_CIPHER_PASS",
        "--cipher-identity",
        "AWS_SECRET_ACCESS_KEY",
        "B2_APPLICATION_KEY",
        "AZURE_STORAGE_KEY",
        "PGBK_SSH_PASS",
    ];
    for (secret, hint) in SECRET_FLAGS.iter().zip(hints) {
        for args in [
            vec![format!("{}=s3cr3t-value", secret.flag)],
            vec![secret.flag.to_string(), "s3cr3t-value".into(), "app".into()],
        ] {
            let run = TestCommand::new(&cluster, "pgback").args(&args).run();
            run.assert_code(2, secret.flag)
                .assert_stderr(&format!("pgback: refusing {}", secret.flag))
                .assert_stderr("hint: ")
                .assert_stderr(hint);
            assert_eq!(run.stderr.lines().count(), 2, "{run}");
            assert!(
                !run.stderr.contains("s3cr3t") && !run.stdout.contains("s3cr3t"),
                "{run}"
            );
        }
    }
    // --encrypt without a key.
    let run = TestCommand::new(&cluster, "pgback")
        .args(["--encrypt"])
        .run();
    run.assert_code(2, "no key")
        .assert_stderr("PGBK_CIPHER_PASS");
}

/// The pids of `root` and its descendants.
fn family(root: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The parent follows the command name, which is in parentheses.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parents.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        index += 1;
    }
    found
}

fn read_nul_separated(path: String) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
}

#[test]
fn no_secret_in_output_errors_or_proc_of_pgback_and_its_children() {
    let cluster = cluster_with_app(1000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    let dir_arg = dir.display().to_string();
    let hook_env = tmp.path().join("hook.env");
    let hook = format!("sh -c 'env > {}; sleep 0.3'", hook_env.display());
    // pg_dump waits a little, so that the watcher sees it with its final command line.
    let bin = wrapped_pg_dump("sleep 0.5");
    let bindir = bin.path().display().to_string();
    let running = pgback_with_bin(
        &cluster,
        &bindir,
        &[
            "-v",
            "-b",
            &dir_arg,
            "--encrypt",
            "--post-backup-hook",
            &hook,
            "app",
        ],
    )
    .env("PGBK_CIPHER_PASS", PASSPHRASE)
    .spawn();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut pgback_pid = None;
    crate::util::wait_for("pgback's post hook", Duration::from_secs(120), || {
        if pgback_pid.is_none() {
            pgback_pid = family(1).into_iter().find(|pid| {
                read_nul_separated(format!("/proc/{pid}/cmdline"))
                    .is_some_and(|c| c.contains(&dir_arg) && c.contains("pgback"))
            });
        }
        let Some(root) = pgback_pid else {
            return false;
        };
        for pid in family(root) {
            let Some(cmdline) = read_nul_separated(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            assert!(!cmdline.contains(PASSPHRASE), "{pid}: {cmdline}");
            // A child forked but not yet exec'd still shows pgback's own initial environment
            // block (and cmdline) in /proc; what it will run gets the environment pgback sets.
            let not_yet_execd = read_nul_separated(format!("/proc/{root}/cmdline"))
                .is_some_and(|root_cmdline| root_cmdline == cmdline);
            if pid != root && !not_yet_execd {
                let environ =
                    read_nul_separated(format!("/proc/{pid}/environ")).unwrap_or_default();
                assert!(
                    !environ.contains(PASSPHRASE),
                    "{pid} ({cmdline}) inherited it"
                );
                seen.lock().unwrap().push(cmdline);
            }
        }
        hook_env.exists()
    });
    let run = running.finish();
    run.assert_ok("encrypted run");
    let seen = seen.lock().unwrap();
    assert!(seen.iter().any(|c| c.contains("pg_dump")), "{seen:?}");
    assert!(!run.stderr.contains(PASSPHRASE) && !run.stdout.contains(PASSPHRASE));
    let env = std::fs::read_to_string(&hook_env).unwrap();
    assert!(
        !env.contains("PGBK_CIPHER_PASS") && !env.contains(PASSPHRASE),
        "{env}"
    );

    // A configuration file holding the passphrase must not be readable by others; the refusal
    // does not show it.
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[dump.encryption]\nencrypt = true\ncipher_pass = \"{PASSPHRASE}\"\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config_arg = config.display().to_string();
    let run = pgback(&cluster, &["-c", &config_arg, "-b", &dir_arg, "app"]).run();
    run.assert_code(2, "exposed config")
        .assert_stderr("readable by others")
        .assert_stderr("chmod o-r");
    assert!(!run.stderr.contains(PASSPHRASE), "{run}");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    pgback(
        &cluster,
        &["-c", &config_arg, "-b", &dir_arg, "--dump-only", "app"],
    )
    .run()
    .assert_ok("passphrase from a private config file");
    assert!(plaintext_names(&dir).is_empty(), "{:?}", files_in(&dir));
}

#[test]
fn directory_dumps_are_encrypted_file_by_file_and_keep_src_writes_both() {
    let cluster = cluster_with_app(3000);
    let keys = tempfile::tempdir().unwrap();
    let (identity, public) = keygen(keys.path(), "key.txt");
    let identity_arg = identity.display().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let dir_arg = dir.display().to_string();
    let encrypt = ["--encrypt", "--cipher-public-key", &public, "-S", "sha256"];
    let mut args = vec!["-b", &dir_arg, "-F", "directory", "--dump-only"];
    args.extend(encrypt);
    args.push("app");
    pgback(&cluster, &args).run().assert_ok("directory format");
    let dump = the_one(&dir, ".d");
    let inside = files_in(&dump);
    assert!(
        inside.contains(&"toc.dat.age".to_string()) && inside.iter().all(|n| n.ends_with(".age")),
        "{inside:?}"
    );
    sha256sum_check(&dir, &the_one(&dir, ".d.age.sha256"));
    the_one(&dir, ".d.sha256.age");
    pgback(
        &cluster,
        &[
            "--decrypt",
            "-j",
            "2",
            "-b",
            &dir_arg,
            "--cipher-identity",
            &identity_arg,
            "app_*",
        ],
    )
    .run()
    .assert_ok("--decrypt of a directory dump");
    assert!(pg_restore_list(&cluster, &dump).contains("TABLE DATA public orders"));

    // --encrypt-keep-src: the plaintext and the encrypted file from the one stream.
    let keep = tmp.path().join("keep");
    let keep_arg = keep.display().to_string();
    let mut args = vec!["-b", &keep_arg, "--dump-only", "--encrypt-keep-src"];
    args.extend(encrypt);
    args.push("app");
    pgback(&cluster, &args).run().assert_ok("keep-src");
    let plain = the_one(&keep, ".dump");
    sha256sum_check(&keep, &the_one(&keep, ".dump.sha256"));
    sha256sum_check(&keep, &the_one(&keep, ".dump.age.sha256"));
    let out = age_tool("age")
        .arg("-d")
        .arg("-i")
        .arg(&identity)
        .arg(the_one(&keep, ".dump.age"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, std::fs::read(&plain).unwrap());
}
