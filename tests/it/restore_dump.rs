//! `pgback --restore` over real servers: pg_back's fixture (in our own SQL) plus odd database
//! names, dumped by the README's pgback line in every format, restored by the library into a fresh
//! cluster with the commands docs/restore.md shows, then compared catalog by catalog (`pg_database`
//! owner and ACL, `pg_db_role_setting`, roles, table owners, contents). A dry run, a refused
//! database, a changed byte and a missing file leave the target untouched.
//!
//! The README's dump line and the `pgback --restore` lines of docs/restore.md run with the
//! pgback binary ([`pgback_from_doc`]: only DIR and the target are replaced); the by-hand block
//! runs verbatim under bash with the stamps of this run. The other cases call the library.

use std::path::{Path, PathBuf};
use std::time::Duration;

use safe_backup::checksum::VerifyError;
use safe_backup::conn::{ConnParams, ConnSettings, Environment};
use safe_backup::exit::{ExitStatus, Failure};
use safe_backup::restore::DatabaseAction;
use safe_backup::restore::{restore, RestoreError, RestoreReport, RestoreSettings};

use crate::cluster::{self, Cluster, ClusterOptions};
use crate::util::{doc_block, Run, TestCommand};

const FIXTURE: &str = include_str!("fixtures/restore_fixture.sql");
const DOC_DIR: &str = "/var/backups/postgresql";
const ODD_NAMES: [&str; 4] = ["a\"b", "x=y z", ".hidden", "név"];

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The fixture, then the odd names (owned by u2, one with an ACL and settings).
pub(crate) fn populate(source: &Cluster, odd_names: bool) {
    source.psql(FIXTURE);
    if !odd_names {
        return;
    }
    for name in ODD_NAMES {
        source.psql(&format!("CREATE DATABASE {} OWNER u2", ident(name)));
        source
            .try_psql_in(
                name,
                "SET ROLE u2; CREATE TABLE t(i int PRIMARY KEY, s text); \
                 INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 300) g",
            )
            .unwrap();
    }
    let db = ident("x=y z");
    source.psql(&format!(
        "REVOKE ALL ON DATABASE {db} FROM PUBLIC; GRANT CONNECT, TEMPORARY ON DATABASE {db} TO u1; \
         ALTER DATABASE {db} SET app.filter = 'a=b c'; ALTER ROLE u1 IN DATABASE {db} SET work_mem = '3MB'"
    ));
}

pub(crate) fn client_bindir() -> String {
    cluster::pg_binaries()
        .client_tool("pg_restore")
        .parent()
        .unwrap_or(Path::new("/"))
        .display()
        .to_string()
}

/// Dumps `source` with the pgback binary into `dir`, with `config` (TOML) when given.
pub(crate) fn pgback_dump(source: &Cluster, dir: &Path, config: &str, extra: &[&str]) {
    let mut args = vec![
        "-d".to_string(),
        source.conninfo_socket(),
        "-b".to_string(),
        dir.display().to_string(),
    ];
    args.extend(extra.iter().map(|arg| arg.to_string()));
    pgback_with_config(source, dir, config, &args);
}

/// Runs pgback with `config` (TOML, written beside `dir`), `-B` of the client tools and `args`.
fn pgback_with_config(source: &Cluster, dir: &Path, config: &str, args: &[String]) {
    let config_path = dir.with_extension("toml");
    std::fs::write(&config_path, config).unwrap();
    TestCommand::new(source, "pgback")
        .args(["-c", &config_path.display().to_string()])
        .args(["-B", &client_bindir()])
        .args(args)
        .limit(Duration::from_secs(180))
        .run()
        .assert_ok(&format!("pgback {args:?}"));
}

fn conn(target: &Cluster) -> ConnSettings {
    let params = ConnParams::parse(&target.conninfo_socket()).unwrap();
    ConnSettings::resolve(&params, &Environment::default()).unwrap()
}

fn settings(target: &Cluster, dir: &Path) -> RestoreSettings {
    RestoreSettings {
        dir: dir.to_path_buf(),
        timestamp: None,
        databases: Vec::new(),
        clean: false,
        dry_run: false,
        jobs: 1,
        bin_directory: client_bindir(),
        require_checksums: false,
        conn: conn(target),
        decrypt_key: Err(std::sync::Arc::new(
            safe_backup::config::EncryptionError::NoKey {
                action: "--restore",
                what: "an identity file",
            },
        )),
    }
}

fn run(settings: RestoreSettings) -> Result<RestoreReport, RestoreError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(restore(settings, std::future::pending()))
}

/// Runs the `pgback --restore` line of a doc block with the pgback binary: DIR becomes `dir`,
/// `-d` the target; `-B` (where the client tools are) and `extra` are added.
fn pgback_from_doc(name: &str, target: &Cluster, dir: &Path, extra: &[&str]) -> Run {
    TestCommand::new(target, "pgback")
        .args(doc_args(name, target, dir, None))
        .args(["-B", &client_bindir()])
        .args(extra)
        .limit(Duration::from_secs(180))
        .run()
}

/// The arguments of the `pgback` line of a doc block: DIR becomes `dir`, `-d` the target,
/// `--cipher-identity`'s file `identity`.
pub(crate) fn doc_args(
    name: &str,
    target: &Cluster,
    dir: &Path,
    identity: Option<&Path>,
) -> Vec<String> {
    let block = doc_block(name);
    let line = block
        .lines()
        .find(|l| l.starts_with("pgback "))
        .unwrap_or_else(|| panic!("no pgback line in {name}"));
    let mut words = shell_words::split(line).unwrap().into_iter().skip(1);
    let mut args = Vec::new();
    while let Some(word) = words.next() {
        match word.as_str() {
            DOC_DIR => args.push(dir.display().to_string()),
            "-d" => {
                words.next();
                args.extend(["-d".to_string(), target.conninfo_socket()]);
            }
            "--cipher-identity" => {
                let given = words.next().unwrap_or_default();
                let file = identity.map_or(given, |path| path.display().to_string());
                args.extend(["--cipher-identity".to_string(), file]);
            }
            _ => args.push(word),
        }
    }
    assert!(args.contains(&dir.display().to_string()), "{line}");
    args
}

fn query(cluster: &Cluster, db: &str, sql: &str) -> String {
    cluster
        .try_psql_in(db, sql)
        .unwrap_or_else(|e| panic!("{db}: {sql}: {e}"))
}

/// The target holds what the source holds: the server's catalog and each database's.
pub(crate) fn assert_same_catalogs<'a>(
    target: &Cluster,
    source: &Cluster,
    databases: impl IntoIterator<Item = &'a str>,
) {
    assert_eq!(server_catalog(target), server_catalog(source));
    for db in databases {
        assert_eq!(
            database_catalog(target, db),
            database_catalog(source, db),
            "database {db:?}"
        );
    }
}

/// Roles, databases (owner, ACL, limit), settings, memberships: what must match after a restore.
pub(crate) fn server_catalog(cluster: &Cluster) -> String {
    [
        "SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, \
         rolconnlimit, coalesce(rolpassword, '') FROM pg_authid WHERE rolname !~ '^pg_' ORDER BY 1",
        "SELECT datname, pg_get_userbyid(datdba), coalesce(datacl::text, 'default'), datconnlimit \
         FROM pg_database WHERE datname NOT IN ('template0', 'template1') ORDER BY 1",
        "SELECT coalesce(d.datname, '*'), coalesce(r.rolname, '*'), s.setconfig::text \
         FROM pg_db_role_setting s LEFT JOIN pg_database d ON d.oid = s.setdatabase \
         LEFT JOIN pg_roles r ON r.oid = s.setrole ORDER BY 1, 2",
        "SELECT r.rolname, m.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid \
         JOIN pg_roles m ON m.oid = a.member WHERE r.rolname !~ '^pg_' ORDER BY 1, 2",
    ]
    .iter()
    .map(|sql| query(cluster, "postgres", sql))
    .collect::<Vec<_>>()
    .join("\n---\n")
}

/// Relations of `public` with owner and ACL, the schema's ACL, and each table's rows as md5.
pub(crate) fn database_catalog(cluster: &Cluster, db: &str) -> String {
    let relations = query(
        cluster,
        db,
        "SELECT c.relname || ' ' || c.relkind::text || ' ' || pg_get_userbyid(c.relowner) || ' ' \
         || coalesce(c.relacl::text, '-') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' ORDER BY 1",
    );
    let schema = query(
        cluster,
        db,
        "SELECT coalesce(nspacl::text, '-') FROM pg_namespace WHERE nspname = 'public'",
    );
    let tables = query(
        cluster,
        db,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    );
    let mut out = format!("{relations}\n{schema}\n");
    for table in tables.lines().filter(|t| !t.is_empty()) {
        let sum = query(
            cluster,
            db,
            &format!(
                "SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM public.{} t",
                ident(table)
            ),
        );
        out.push_str(&format!("{table} {sum}\n"));
    }
    out
}

/// What "untouched" means: the server catalog and every database's relations.
pub(crate) fn target_state(cluster: &Cluster) -> String {
    let mut out = server_catalog(cluster);
    let dbs = query(
        cluster,
        "postgres",
        "SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1",
    );
    for db in dbs.lines() {
        out.push_str(&format!("\n{db}:\n{}", database_catalog(cluster, db)));
    }
    out
}

/// A file of `dir` whose name starts with `prefix` and ends with `suffix`.
pub(crate) fn file_of(dir: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
        .collect();
    names.sort();
    let name = names
        .pop()
        .unwrap_or_else(|| panic!("no {prefix}*{suffix} in {}", dir.display()));
    dir.join(name)
}

const MIXED_FORMATS: &str = r#"
[dump]
checksum_algorithm = "sha256"

[dump.databases.b2]
format = "directory"
parallel_backup_jobs = 2

[dump.databases."x=y z"]
format = "plain"
compress_level = "1"

[dump.databases."a\"b"]
format = "plain"

[dump.databases."név"]
format = "tar"
"#;

#[test]
fn fixture_and_odd_names_restore_into_a_fresh_cluster_in_every_format() {
    let source = Cluster::start(ClusterOptions::default().without_archive());
    populate(&source, true);
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().join("set");
    std::fs::create_dir(&dir).unwrap();
    // The README's pgback line (DIR and -d replaced), with a format per database.
    let readme_line = doc_args("pgback-dump", &source, &dir, None);
    pgback_with_config(&source, &dir, MIXED_FORMATS, &readme_line);
    // Every format is there: custom (b1, postgres, .hidden), directory, plain, plain.gz, tar.
    for (prefix, suffix) in [
        ("b1_", ".dump"),
        ("b2_", ".d"),
        ("x=y z_", ".sql.gz"),
        ("a\"b_", ".sql"),
        ("név_", ".tar"),
        ("_.hidden_", ".dump"),
    ] {
        file_of(&dir, prefix, suffix);
    }

    let target = Cluster::start(ClusterOptions::default().without_archive());
    let before = target_state(&target);

    // The dry run of the docs: the plan on stdout, and nothing changed.
    let dry = pgback_from_doc("restore-dry-run", &target, &dir, &[]);
    dry.assert_ok("the docs' dry run");
    let plan = &dry.stdout;
    assert_eq!(
        target_state(&target),
        before,
        "a dry run changed the target"
    );
    assert!(
        plan.contains("existing roles, not created again: \"postgres\"\n"),
        "{plan}"
    );
    let unapplied = plan.split("not applied").nth(1).unwrap_or_default();
    for name in ["pg_settings_", "hba_file_", "ident_file_"] {
        assert!(
            unapplied.contains(&dir.join(name).display().to_string()),
            "{plan}"
        );
    }
    let databases = plan.lines().filter(|l| l.contains(". database \"")).count();
    assert_eq!(databases, 7, "{plan}");
    assert!(
        plan.contains("database \"postgres\": into existing (empty)"),
        "{plan}"
    );
    assert!(plan.contains("database \"x=y z\": create"), "{plan}");
    assert!(
        plan.contains("0. verify: every file matches its checksum file"),
        "{plan}"
    );
    assert!(plan.contains("gzip -dc"), "{plan}");

    // The restore of the docs' line: its plan gives b1's pg_restore four jobs. pgback
    // streamed b1's custom dump through a pipe (no data offsets); pg_restore reads the file
    // itself, so four jobs work.
    let planned = pgback_from_doc("restore-all", &target, &dir, &["--dry-run"]);
    planned.assert_ok("the docs' restore, planned");
    let b1_load = planned
        .stdout
        .lines()
        .find(|l| l.contains("pg_restore") && l.contains("b1_"))
        .unwrap_or_else(|| panic!("no pg_restore of b1 in\n{planned}"));
    assert!(b1_load.contains(" -j 4 "), "{b1_load}");
    let restored = pgback_from_doc("restore-all", &target, &dir, &[]);
    restored.assert_ok("the docs' restore");
    let summary = &restored.stderr;
    let ok_rows = summary.lines().filter(|l| l.ends_with("  ok")).count();
    assert_eq!(ok_rows, 7, "{summary}");
    for name in ["pg_settings_", "hba_file_", "ident_file_"] {
        assert!(
            summary.contains(&format!("not applied: {}", dir.join(name).display())),
            "{summary}"
        );
    }
    assert!(summary.contains("roles that already existed"), "{summary}");

    assert_same_catalogs(
        &target,
        &source,
        ["b1", "b2", "postgres"].into_iter().chain(ODD_NAMES),
    );
    // The fixture really has what is compared.
    let catalog = server_catalog(&target);
    assert!(
        catalog.contains("b2|u1|{u1=CTc/u1,u2=c/u1}|20"),
        "{catalog}"
    );
    assert!(catalog.contains("b1|u1|{work_mem=2MB}"), "{catalog}");
    assert!(
        catalog.contains("postgres|*|{app.origin=fixture}"),
        "{catalog}"
    );
    assert!(catalog.contains("*|u1|{temp_buffers=16MB}"), "{catalog}");
    assert!(database_catalog(&target, "b2").contains("events r u2"));
    assert!(database_catalog(&target, "b1").contains("words 5000:"));

    // By hand, as the docs say, into another fresh cluster.
    let by_hand = Cluster::start(ClusterOptions::default().without_archive());
    let mut script = doc_block("restore-by-hand");
    for (var, prefix, suffix) in [
        ("globals", "pg_globals_", ".sql"),
        ("createdb", "b1_", ".createdb.sql"),
        ("dump", "b1_", ".dump"),
    ] {
        let line = script
            .lines()
            .find(|l| l.starts_with(&format!("{var}=")))
            .unwrap_or_else(|| panic!("no {var}= in the by-hand block"))
            .to_string();
        let file = file_of(&dir, prefix, suffix);
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        script = script.replace(&line, &format!("{var}={}", literal(&name)));
    }
    script = script.replace(
        &format!("cd {DOC_DIR}"),
        &format!("cd {}", literal(&dir.display().to_string())),
    );
    let path = format!(
        "{}:{}",
        client_bindir(),
        std::env::var("PATH").unwrap_or_default()
    );
    TestCommand::program(&by_hand, "bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("PATH", path)
        .limit(Duration::from_secs(180))
        .run()
        .assert_ok("by hand");
    assert_eq!(
        database_catalog(&by_hand, "b1"),
        database_catalog(&source, "b1")
    );
    let b1_row = "SELECT datname, pg_get_userbyid(datdba), datacl::text FROM pg_database WHERE datname = 'b1'";
    assert_eq!(
        query(&by_hand, "postgres", b1_row),
        query(&source, "postgres", b1_row)
    );
}

#[test]
fn refusals_a_changed_byte_a_missing_file_and_dry_runs_touch_nothing() {
    let source = Cluster::start(ClusterOptions::default().without_archive());
    populate(&source, false);
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().join("set");
    std::fs::create_dir(&dir).unwrap();
    pgback_dump(
        &source,
        &dir,
        "[dump]\nchecksum_algorithm = \"sha1\"\n",
        &[],
    );

    let target = Cluster::start(ClusterOptions::default().without_archive());
    target.psql("CREATE DATABASE b1");
    query(&target, "b1", "CREATE TABLE keep_me AS SELECT 1 AS one");
    let before = target_state(&target);

    // b1 holds a table: refused, nothing touched (not even the globals). The docs' 'b*'.
    pgback_from_doc("restore-some", &target, &dir, &[])
        .assert_code(1, "the docs' 'b*' into a target whose b1 holds a table")
        .assert_stderr("database \"b1\" holds 1 relation")
        .assert_stderr("hint: --clean");
    assert_eq!(target_state(&target), before);

    // A glob that does not parse: refused (exit 2) naming it, nothing touched.
    let mut malformed = settings(&target, &dir);
    malformed.databases = vec!["b*".into(), "[x".into()];
    let error = run(malformed).unwrap_err();
    assert_eq!(error.exit_status(), ExitStatus::Usage, "{error}");
    assert!(error.to_string().contains("\"[x\""), "{error}");
    assert!(
        error.hint().is_some_and(|hint| hint.contains("']'")),
        "{error}"
    );
    assert_eq!(target_state(&target), before);

    // A dry run of the others: a plan, nothing touched.
    let mut dry = settings(&target, &dir);
    dry.dry_run = true;
    dry.databases = vec!["b2".into(), "post*".into()];
    let report = run(dry).unwrap();
    let plan = report.plan.to_string();
    assert!(plan.contains("database \"b2\": create"), "{plan}");
    assert!(
        plan.contains("database \"postgres\": into existing (empty)"),
        "{plan}"
    );
    assert!(!plan.contains("\"b1\""), "{plan}");
    assert_eq!(target_state(&target), before);

    // One changed byte in b2's dump: the file is named, nothing touched.
    let b2_dump = file_of(&dir, "b2_", ".dump");
    let original = std::fs::read(&b2_dump).unwrap();
    let mut changed = original.clone();
    let middle = changed.len() / 2;
    changed[middle] ^= 0x01;
    std::fs::write(&b2_dump, &changed).unwrap();
    let mut only_b2 = settings(&target, &dir);
    only_b2.databases = vec!["b2".into()];
    let error = run(only_b2.clone()).unwrap_err();
    assert!(
        matches!(&error, RestoreError::Verify(VerifyError::Mismatch { file, .. }) if file == &b2_dump),
        "{error}"
    );
    assert!(
        error.to_string().contains(&b2_dump.display().to_string()),
        "{error}"
    );
    assert_eq!(target_state(&target), before);
    std::fs::write(&b2_dump, &original).unwrap();

    // A missing createdb.sql (its checksum file is still there): named, nothing touched.
    let createdb = file_of(&dir, "b2_", ".createdb.sql");
    let kept = backups.path().join("kept.sql");
    std::fs::rename(&createdb, &kept).unwrap();
    let error = run(only_b2.clone()).unwrap_err();
    assert!(
        matches!(&error, RestoreError::Verify(VerifyError::Missing { file, .. }) if file == &createdb),
        "{error}"
    );
    assert_eq!(target_state(&target), before);
    std::fs::rename(&kept, &createdb).unwrap();

    // A glob matching nothing is a usage error.
    let mut nothing = settings(&target, &dir);
    nothing.databases = vec!["nope*".into()];
    let error = run(nothing).unwrap_err();
    assert_eq!(error.exit_status(), ExitStatus::Usage, "{error}");
    assert_eq!(target_state(&target), before);

    // With --clean, b1 is restored into; what the dump does not hold stays.
    let mut clean = settings(&target, &dir);
    clean.clean = true;
    clean.databases = vec!["b1".into()];
    let report = run(clean).unwrap();
    assert!(report.success(), "{}", report.summary());
    assert!(matches!(
        report.databases[0].action,
        DatabaseAction::Clean { .. }
    ));
    let b1 = database_catalog(&target, "b1");
    assert!(b1.contains("keep_me 1:"), "{b1}");
    let without_keep_me: Vec<&str> = b1.lines().filter(|l| !l.starts_with("keep_me")).collect();
    assert_eq!(
        without_keep_me,
        database_catalog(&source, "b1").lines().collect::<Vec<_>>()
    );

    // The rest, without --clean: roles exist now and are reported, not fatal.
    let mut rest = settings(&target, &dir);
    rest.databases = vec!["b2".into(), "postgres".into()];
    let report = run(rest).unwrap();
    assert!(report.success(), "{}", report.summary());
    assert_eq!(report.plan.existing_roles, ["postgres", "u1", "u2"]);
    for db in ["b2", "postgres"] {
        assert_eq!(
            database_catalog(&target, db),
            database_catalog(&source, db),
            "{db}"
        );
    }
    assert_eq!(server_catalog(&target), server_catalog(&source));

    // A database that fails to load is named; the next one is restored all the same. (A set
    // without checksum files, written by hand: nothing to verify, no createdb.sql.)
    let hand = backups.path().join("by-hand");
    std::fs::create_dir(&hand).unwrap();
    for (name, sql) in [
        ("pg_globals_2024-01-01T00:00:00Z.sql", "SELECT 1;\n"),
        ("bad_2024-01-01T00:00:01Z.sql", "CREATE TABLE broken (;\n"),
        (
            "good_2024-01-01T00:00:02Z.sql",
            "CREATE TABLE fine (i int);\n",
        ),
    ] {
        std::fs::write(hand.join(name), sql).unwrap();
    }
    let report = run(settings(&target, &hand)).unwrap();
    let summary = report.summary();
    assert!(!report.success(), "{summary}");
    assert_eq!(report.failed_databases(), ["bad"], "{summary}");
    assert!(summary.contains("failed databases: \"bad\""), "{summary}");
    assert!(summary.contains("syntax error"), "{summary}");
    assert!(summary.contains("nothing could be verified"), "{summary}");
    assert!(
        summary.contains("\"good\" has no createdb.sql"),
        "{summary}"
    );
    assert!(database_catalog(&target, "good").contains("fine 0:"));
}
