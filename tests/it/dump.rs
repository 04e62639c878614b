//! pgback over real servers: every format restores into a fresh cluster, checksums verify with
//! sha256sum -c, createdb.sql recreates owner/ACL/settings, odd database names, failures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::cluster::{self, Cluster, ClusterOptions};

const ODD_NAMES: [&str; 4] = ["a\"b", "x=y z", ".hidden", "név"];

fn sql_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn conninfo_db(name: &str) -> String {
    format!(
        "dbname='{}'",
        name.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

/// pgback against `cluster`, with pg_dump from the cluster's client tools.
fn pgback(cluster: &Cluster, args: &[&str]) -> Command {
    let pg_dump = cluster::pg_binaries().client_tool("pg_dump");
    let bindir = pg_dump
        .parent()
        .unwrap_or(Path::new("/"))
        .display()
        .to_string();
    pgback_with_bin(cluster, &bindir, args)
}

fn pgback_with_bin(cluster: &Cluster, bindir: &str, args: &[&str]) -> Command {
    let mut command = cluster.command(cluster::binary("pgback"));
    command
        .args(["-d", &cluster.conninfo_socket(), "-B", bindir])
        .args(args);
    command
}

fn run(mut command: Command) -> Output {
    command.output().expect("running pgback")
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn find(dir: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let name = files_in(dir)
        .into_iter()
        .find(|n| {
            n.starts_with(prefix)
                && n.ends_with(suffix)
                && (suffix == ".createdb.sql" || !n.ends_with(".createdb.sql"))
        })
        .unwrap_or_else(|| panic!("no {prefix}*{suffix} in {:?}", files_in(dir)));
    dir.join(name)
}

fn populate(cluster: &Cluster) {
    cluster.psql("CREATE ROLE app_owner LOGIN; CREATE ROLE reader");
    for name in ODD_NAMES {
        cluster.psql(&format!(
            "CREATE DATABASE {} OWNER app_owner",
            sql_ident(name)
        ));
        cluster
            .try_psql_in(
                name,
                "CREATE TABLE t(i int primary key, s text); \
                 INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g",
            )
            .unwrap();
    }
    let db = sql_ident("x=y z");
    cluster.psql(&format!(
        "REVOKE ALL ON DATABASE {db} FROM PUBLIC; GRANT CONNECT ON DATABASE {db} TO reader; \
         ALTER DATABASE {db} SET app.filter = 'a=b c'; ALTER DATABASE {db} SET search_path = \"$user\", public; \
         ALTER ROLE reader IN DATABASE {db} SET work_mem = '3MB'"
    ));
}

fn checksum_of_table(cluster: &Cluster, db: &str) -> String {
    cluster
        .try_psql_in(
            db,
            "SELECT count(*) || ':' || md5(string_agg(s, ',' ORDER BY i)) FROM t",
        )
        .unwrap()
}

fn restore(target: &Cluster, dump: &Path, createdb: &Path, db: &str) {
    let psql = cluster::pg_binaries().client_tool("psql");
    let out = target
        .command(&psql)
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(createdb)
        .output()
        .unwrap();
    assert!(out.status.success(), "createdb.sql: {}", text(&out));
    let name = dump.file_name().unwrap().to_string_lossy().into_owned();
    let out = if name.ends_with(".sql") {
        target
            .command(&psql)
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &conninfo_db(db),
                "-f",
            ])
            .arg(dump)
            .output()
            .unwrap()
    } else {
        target
            .command(cluster::pg_binaries().client_tool("pg_restore"))
            .args(["--exit-on-error", "-d", &conninfo_db(db)])
            .arg(dump)
            .output()
            .unwrap()
    };
    assert!(out.status.success(), "restoring {name}: {}", text(&out));
}

#[test]
fn every_format_restores_with_checksums_and_createdb() {
    let source = Cluster::start(ClusterOptions::default());
    populate(&source);
    let target = Cluster::start(ClusterOptions::default());
    target.psql("CREATE ROLE app_owner LOGIN; CREATE ROLE reader");
    let out_dir = tempfile::tempdir().unwrap();
    let dir = out_dir.path().display().to_string();

    // Custom format for every database, globals and the rest, sha256.
    let output = run(pgback(
        &source,
        &["-b", &dir, "-S", "sha256", "-j", "2", "--uniform-timestamp"],
    ));
    assert!(output.status.success(), "{}", text(&output));
    let names = files_in(out_dir.path());
    for prefix in [
        "pg_globals_",
        "pg_settings_",
        "hba_file_",
        "ident_file_",
        "_.hidden_",
        "a\"b_",
        "x=y z_",
        "név_",
        "postgres_",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(prefix)),
            "{prefix} in {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.starts_with("template")),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.ends_with(".partial")), "{names:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("database") && stderr.contains("ok"),
        "{stderr}"
    );

    // Every checksum file verifies.
    for name in names.iter().filter(|n| n.ends_with(".sha256")) {
        let out = Command::new("sha256sum")
            .args(["-c", "--strict", name])
            .current_dir(out_dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", text(&out));
    }
    // Globals load with psql into the fresh cluster (roles exist already: errors allowed there,
    // but the script must run).
    let psql = cluster::pg_binaries().client_tool("psql");
    let globals = find(out_dir.path(), "pg_globals_", ".sql");
    let out = target
        .command(&psql)
        .args(["-X", "-q", "-f"])
        .arg(&globals)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // Restore each odd-named database from its custom dump and createdb.sql.
    for db in ODD_NAMES {
        let prefix = format!(
            "{}_",
            if db.starts_with('.') {
                format!("_{db}")
            } else {
                db.to_string()
            }
        );
        let dump = find(out_dir.path(), &prefix, ".dump");
        let createdb = find(out_dir.path(), &prefix, ".createdb.sql");
        restore(&target, &dump, &createdb, db);
        assert_eq!(
            checksum_of_table(&target, db),
            checksum_of_table(&source, db),
            "{db}"
        );
    }
    // createdb.sql brought owner, ACL and settings back.
    let db = "x=y z";
    let query = format!(
        "SELECT pg_get_userbyid(datdba), has_database_privilege('reader', datname, 'CONNECT'), \
         has_database_privilege('public', datname, 'CONNECT') FROM pg_database WHERE datname = '{db}'"
    );
    assert_eq!(target.psql(&query), source.psql(&query));
    assert_eq!(target.psql(&query), "app_owner|t|f");
    let settings =
        "SELECT coalesce(pg_get_userbyid(setrole), '-') || ' ' || array_to_string(setconfig, '|') \
                    FROM pg_db_role_setting s JOIN pg_database d ON d.oid = setdatabase \
                    WHERE datname = 'x=y z' ORDER BY 1";
    assert_eq!(target.psql(settings), source.psql(settings));
    assert!(source.psql(settings).contains("app.filter=a=b c"));

    // The other formats of one database restore too.
    for (format, suffix) in [("plain", ".sql"), ("tar", ".tar"), ("directory", ".d")] {
        let fmt_dir = tempfile::tempdir().unwrap();
        let output = run(pgback(
            &source,
            &[
                "-b",
                &fmt_dir.path().display().to_string(),
                "-F",
                format,
                "-J",
                "2",
                "-S",
                "sha1",
                "x=y z",
            ],
        ));
        assert!(output.status.success(), "{format}: {}", text(&output));
        let dump = find(fmt_dir.path(), "x=y z_", suffix);
        let sums = find(fmt_dir.path(), "x=y z_", &format!("{suffix}.sha1"));
        let out = Command::new("sha1sum")
            .arg("-c")
            .arg(&sums)
            .current_dir(fmt_dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{format}: {}", text(&out));
        let restored = format!("r_{format}");
        target.psql(&format!("CREATE DATABASE {restored}"));
        let createdb = fmt_dir.path().join("empty.sql");
        std::fs::write(&createdb, "SELECT 1;\n").unwrap();
        restore(&target, &dump, &createdb, &restored);
        assert_eq!(
            checksum_of_table(&target, &restored),
            checksum_of_table(&source, "x=y z"),
            "{format}"
        );
    }
}

#[test]
fn one_failing_database_fails_the_run_without_purging_and_tells_the_post_hook() {
    let source = Cluster::start(ClusterOptions::default());
    source.psql("CREATE DATABASE good; CREATE DATABASE bad");
    let out_dir = tempfile::tempdir().unwrap();
    let dir = out_dir.path();
    // An old backup that a successful run would purge.
    let old = dir.join("good_2001-01-01T00:00:00Z.dump");
    std::fs::write(&old, b"old").unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "[dump]\npurge_older_than = \"1\"\n[dump.databases.bad]\npg_dump_options = \"--strict-names --table=no_such_table\"\n",
    )
    .unwrap();
    let hook_out = dir.join("hook.txt");
    let hook = format!(
        "sh -c 'printf \"%s|%s|%s\" \"$PGBACK_STATUS\" \"$PGBACK_FAILED_DATABASES\" \"$PGBACK_FILES\" > {}'",
        hook_out.display()
    );
    let output = run(pgback(
        &source,
        &[
            "-c",
            &config.display().to_string(),
            "-b",
            &dir.display().to_string(),
            "--post-backup-hook",
            &hook,
            "good",
            "bad",
        ],
    ));
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("[bad]") && stderr.contains("no_such_table"),
        "{stderr}"
    );
    assert!(stderr.contains("failed: \"bad\""), "{stderr}");
    assert!(old.exists(), "a failed run must not purge");
    assert!(files_in(dir).iter().any(|n| n.starts_with("good_")
        && n.ends_with(".dump")
        && n != "good_2001-01-01T00:00:00Z.dump"));
    assert!(!files_in(dir)
        .iter()
        .any(|n| n.starts_with("bad_") && n.ends_with(".dump")));
    let told = std::fs::read_to_string(&hook_out).unwrap();
    assert!(told.starts_with("failure|bad|"), "{told}");
    assert!(told.contains("good_"), "{told}");

    // Without the failing database the run succeeds and purges the old file.
    let output = run(pgback(
        &source,
        &[
            "-c",
            &config.display().to_string(),
            "-b",
            &dir.display().to_string(),
            "good",
        ],
    ));
    assert!(output.status.success(), "{}", text(&output));
    assert!(!old.exists(), "a successful run purges");
}

#[test]
fn failures_before_dumping_have_their_exit_codes() {
    let source = Cluster::start(ClusterOptions::default());
    let out_dir = tempfile::tempdir().unwrap();
    let dir = out_dir.path().display().to_string();

    // A failing pre hook: nothing dumped, exit 1.
    let output = run(pgback(&source, &["-b", &dir, "--pre-backup-hook", "false"]));
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("pre-backup hook"),
        "{}",
        text(&output)
    );
    assert!(files_in(out_dir.path()).is_empty());

    // Missing pg_dump: usage error with a hint.
    let output = run(pgback_with_bin(&source, "/nonexistent/bin", &["-b", &dir]));
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("hint:"),
        "{}",
        text(&output)
    );

    // Unreachable server: connection error.
    let output = run(pgback(
        &source,
        &["-b", &dir, "-h", "/nonexistent/socket/dir"],
    ));
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));

    // Unknown config key: usage error naming it.
    let config = out_dir.path().join("bad.toml");
    std::fs::write(&config, "[dump]\nbackup_dir = \"/x\"\n").unwrap();
    let output = run(pgback(&source, &["-c", &config.display().to_string()]));
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains(&format!("{}:2: dump.backup_dir", config.display())),
        "{}",
        text(&output)
    );
    // A per-database key too, and the same file is read by pgpre (one config file).
    std::fs::write(
        &config,
        "[backup]\ntable = \"snap\"\n[dump.databases.\"my db\"]\nformat = \"tar\"\ncolour = 1\n",
    )
    .unwrap();
    let output = run(pgback(&source, &["-c", &config.display().to_string()]));
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(&format!(
            "{}:5: dump.databases.\"my db\".colour",
            config.display()
        )),
        "{}",
        text(&output)
    );

    // Invalid flag value.
    let output = run(pgback(&source, &["-m", "08170"]));
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
}

#[test]
fn a_standby_is_paused_during_the_dumps_and_resumed_after() {
    let primary = Cluster::start(ClusterOptions::default());
    primary.psql("CREATE DATABASE app");
    primary
        .try_psql_in(
            "app",
            "CREATE TABLE t(i int); INSERT INTO t SELECT generate_series(1, 100)",
        )
        .unwrap();
    let standby = primary.start_standby();
    // Wait for the standby to have the database.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while standby.try_psql_in("app", "SELECT count(*) FROM t") != Ok("100".to_string()) {
        assert!(
            std::time::Instant::now() < deadline,
            "standby never caught up"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out_dir = tempfile::tempdir().unwrap();
    let output = run(pgback(
        &standby,
        &["-v", "-b", &out_dir.path().display().to_string(), "app"],
    ));
    assert!(output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("WAL replay paused"), "{stderr}");
    assert!(stderr.contains("WAL replay resumed"), "{stderr}");
    assert_eq!(standby.psql("SELECT pg_is_wal_replay_paused()"), "f");
    // Non-superuser-readable files may be missing on a standby, but the dump is there.
    assert!(files_in(out_dir.path())
        .iter()
        .any(|n| n.starts_with("app_") && n.ends_with(".dump")));
}
