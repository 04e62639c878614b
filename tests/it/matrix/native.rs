//! The fidelity test of `pgback --native`, on every major: the corpus (the native fixture of
//! every object kind the export covers, pgbench's tables, pg_back's fixture and the odd
//! database names) dumped with `--native`, restored into a fresh cluster once with psql and
//! once with `pgback --restore`; `pg_dump --schema-only` (PostgreSQL 18's) of the source and of
//! each restore must be identical after dropping the `\restrict` lines, and each table's
//! `count(*)` and the md5 of its rows in a stable order equal. One database per kind the
//! export refuses: each refusal is asserted by name, `--fallback-tools` dumps a refused one
//! with pg_dump and says so.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::cluster::{self, Cluster, ClusterOptions};
use crate::restore_dump::{client_bindir, file_of, populate};
use crate::util::{Run, TestCommand};

const FIXTURE: &str = include_str!("../fixtures/native_fixture.sql");

/// The globals of the corpus: roles with attributes, a password, an expiry, comments and
/// settings (every database, and one database's), memberships with ADMIN OPTION and one
/// granted by a role that is not a superuser; `{space}` is the tablespace's directory.
const GLOBALS: &str = "CREATE ROLE nat_admin WITH CREATEROLE CREATEDB LOGIN CONNECTION LIMIT 3 \
     PASSWORD 'long secret' VALID UNTIL '2031-02-03 04:05:06+00'; \
     CREATE ROLE \"Nat Group\" NOINHERIT BYPASSRLS REPLICATION; \
     COMMENT ON ROLE nat_admin IS 'it''s the admin'; \
     GRANT \"Nat Group\" TO nat_admin WITH ADMIN OPTION; \
     GRANT nat_owner TO nat_reader; \
     SET ROLE nat_admin; GRANT \"Nat Group\" TO nat_owner; RESET ROLE; \
     ALTER ROLE nat_admin SET work_mem = '8MB'; \
     ALTER ROLE nat_admin SET search_path = app, \"$user\"; \
     ALTER ROLE nat_reader IN DATABASE native SET statement_timeout = '5s'; \
     CREATE TABLESPACE nat_space OWNER nat_admin LOCATION '{space}'; \
     ALTER TABLESPACE nat_space SET (seq_page_cost = 2); \
     GRANT CREATE ON TABLESPACE nat_space TO nat_reader WITH GRANT OPTION; \
     COMMENT ON TABLESPACE nat_space IS 'spare disk'";

/// On 16+: a membership with INHERIT and SET off.
const GLOBALS_16: &str =
    "CREATE ROLE nat_guest; GRANT nat_owner TO nat_guest WITH INHERIT FALSE, SET FALSE";

/// On 11+ (the native fixture keeps to what 10 has): hash and default partitions, a
/// partitioned primary key and index (on two levels), a foreign key and a row trigger on a
/// partitioned table (their clones on the partitions are made again by the parent's).
const PARTS_11: &str = "CREATE TABLE app.journal (id integer NOT NULL, region text NOT NULL, \
     amount numeric, PRIMARY KEY (id, region)) PARTITION BY LIST (region); \
     CREATE TABLE app.journal_eu PARTITION OF app.journal FOR VALUES IN ('eu'); \
     CREATE TABLE app.journal_rest PARTITION OF app.journal DEFAULT; \
     CREATE INDEX journal_amount ON app.journal (amount); \
     CREATE INDEX readings_kind ON app.readings (kind); \
     ALTER TABLE app.journal ADD CONSTRAINT journal_customer FOREIGN KEY (id) \
       REFERENCES app.customers (id); \
     CREATE TABLE app.buckets (id integer, note text) PARTITION BY HASH (id); \
     CREATE TABLE app.buckets_0 PARTITION OF app.buckets \
       FOR VALUES WITH (MODULUS 2, REMAINDER 0); \
     CREATE TABLE app.buckets_1 PARTITION OF app.buckets \
       FOR VALUES WITH (MODULUS 2, REMAINDER 1); \
     INSERT INTO app.journal SELECT 1 + g % 250, (ARRAY['eu', 'us', 'asia'])[1 + g % 3], g \
       FROM generate_series(1, 90) g; \
     INSERT INTO app.buckets SELECT g, 'n' || g FROM generate_series(1, 40) g; \
     CREATE FUNCTION app.journal_seen() RETURNS trigger LANGUAGE plpgsql \
       AS $$BEGIN RETURN NULL; END$$; \
     CREATE TRIGGER journal_seen AFTER INSERT ON app.journal \
       FOR EACH ROW EXECUTE PROCEDURE app.journal_seen()";

/// On 12+: a foreign key referencing a partitioned table; stored generated columns in
/// partitions and in an inheritance child (of `app.measures`).
const PARTS_12: &str = "CREATE TABLE app.journal_notes (id integer, region text, note text, \
       FOREIGN KEY (id, region) REFERENCES app.journal); \
     INSERT INTO app.journal_notes SELECT id, region, 'seen' FROM app.journal WHERE id < 50; \
     CREATE TABLE app.sizes (cm numeric NOT NULL, inches numeric \
       GENERATED ALWAYS AS (round(cm / 2.54, 2)) STORED) PARTITION BY RANGE (cm); \
     CREATE TABLE app.sizes_small PARTITION OF app.sizes FOR VALUES FROM (0) TO (100); \
     CREATE TABLE app.sizes_big PARTITION OF app.sizes FOR VALUES FROM (100) TO (MAXVALUE); \
     INSERT INTO app.sizes (cm) SELECT g * 7 FROM generate_series(1, 30) g; \
     CREATE TABLE app.measures_noted (note text) INHERITS (app.measures); \
     INSERT INTO app.measures_noted (cm, note) VALUES (10, 'ten')";

/// Databases holding one object the export refuses, and what the refusal must say.
const REFUSED: [(&str, &str, &[&str]); 6] = [
    (
        "r_range_canonical",
        "CREATE TYPE r; CREATE FUNCTION r_canon(r) RETURNS r LANGUAGE internal IMMUTABLE STRICT \
         AS 'int4range_canonical'; CREATE TYPE r AS RANGE (subtype = int4, canonical = r_canon)",
        &["range type public.r (a canonical or subtype_diff function of its own)"],
    ),
    (
        "r_column_acl",
        "CREATE TABLE ca (i int, j int); GRANT SELECT (i) ON ca TO nat_owner WITH GRANT OPTION; \
         SET ROLE nat_owner; GRANT SELECT (i) ON ca TO nat_reader; RESET ROLE",
        &["table public.ca (column privileges emptied or granted by a role other than the owner)"],
    ),
    (
        "r_inherit_order",
        "CREATE TABLE parent (a int, b int); CREATE TABLE child (b int, a int); \
         ALTER TABLE child INHERIT parent",
        &["table public.child (columns in an order INHERITS does not make (ALTER TABLE ... INHERIT))"],
    ),
    (
        "r_foreign_data",
        "CREATE FOREIGN DATA WRAPPER w",
        &["foreign-data wrapper w (kind not supported)"],
    ),
    (
        "r_public_renamed",
        "ALTER SCHEMA public RENAME TO old_public",
        &["schema public (renamed, without an ACL, or a privilege granted by a role other than its owner)"],
    ),
    (
        "r_public_grantor",
        "GRANT USAGE ON SCHEMA public TO nat_owner WITH GRANT OPTION; \
         SET ROLE nat_owner; GRANT USAGE ON SCHEMA public TO nat_reader; RESET ROLE",
        &["schema public (renamed, without an ACL, or a privilege granted by a role other than its owner)"],
    ),
];

/// npublic: databases whose `public` schema differs from initdb's (exported): privileges
/// revoked and granted, a comment; another owner, its comment dropped.
const PUBLIC_SCHEMAS: [(&str, &str); 2] = [
    (
        "pubschema",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC; REVOKE USAGE ON SCHEMA public FROM PUBLIC; \
         GRANT USAGE ON SCHEMA public TO nat_reader WITH GRANT OPTION; \
         COMMENT ON SCHEMA public IS 'hardened, it''s ours'; \
         CREATE TABLE public.kept (i int); INSERT INTO public.kept VALUES (1)",
    ),
    (
        "pubowner",
        "ALTER SCHEMA public OWNER TO nat_owner; COMMENT ON SCHEMA public IS NULL; \
         GRANT CREATE ON SCHEMA public TO nat_reader; \
         CREATE TABLE public.kept (i int); INSERT INTO public.kept VALUES (2)",
    ),
];

/// The databases exported natively: the native fixture, pgbench's (in postgres, with
/// pg_back's fixture's table), b1 of pg_back's fixture, the odd names, and a LATIN1 database
/// (the export's session is UTF-8: the file must say so, whatever the database's encoding).
const EXPORTED: [&str; 11] = [
    "native",
    "postgres",
    "b1",
    "b2",
    "a\"b",
    "x=y z",
    ".hidden",
    "név",
    "latin1",
    "pubschema",
    "pubowner",
];

/// The databases also dumped with `--encrypt`, and restored from their encrypted files.
const ENCRYPTED: [&str; 2] = ["native", "latin1"];
pub(crate) const PASSPHRASE: &str = "native passphrase";

pub(crate) fn source_cluster(space: &Path) -> Cluster {
    let source = Cluster::start(ClusterOptions::default().without_archive());
    populate(&source, true);
    source.pgbench_init(1);
    source.psql("CREATE ROLE nat_owner; CREATE ROLE nat_reader; CREATE DATABASE native");
    std::fs::create_dir_all(space).unwrap();
    cluster::chown_tree_to_server_user(space);
    source
        .try_psql(&GLOBALS.replace("{space}", &space.display().to_string()))
        .unwrap();
    if source.version_num() >= 160000 {
        source.try_psql(GLOBALS_16).unwrap();
    }
    source.try_psql_in("native", FIXTURE).unwrap();
    if source.version_num() >= 120000 {
        source
            .try_psql_in(
                "native",
                "CREATE TABLE app.measures (cm numeric, inches numeric \
                 GENERATED ALWAYS AS (round(cm / 2.54, 2)) STORED); \
                 INSERT INTO app.measures (cm) SELECT g FROM generate_series(1, 50) g",
            )
            .unwrap();
    }
    if source.version_num() >= 110000 {
        source.try_psql_in("native", PARTS_11).unwrap();
    }
    if source.version_num() >= 120000 {
        source.try_psql_in("native", PARTS_12).unwrap();
    }
    source.psql(
        "CREATE DATABASE latin1 TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'",
    );
    source
        .try_psql_in(
            "latin1",
            "CREATE TABLE \"wörter\" (w text); INSERT INTO \"wörter\" VALUES ('név'), ('Straße'); \
             COMMENT ON TABLE \"wörter\" IS 'élan'",
        )
        .unwrap();
    for (db, sql) in REFUSED
        .iter()
        .map(|(db, sql, _)| (db, sql))
        .chain(PUBLIC_SCHEMAS.iter().map(|(db, sql)| (db, sql)))
    {
        source.psql(&format!("CREATE DATABASE {db}"));
        source.try_psql_in(db, sql).unwrap();
    }
    source
}

/// pgback against `source`; without client tools (no `-B`, a `PATH` of an empty directory)
/// unless `tools`.
pub(crate) fn pgback(source: &Cluster, dir: &Path, args: &[&str], tools: bool) -> Run {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.with_extension("toml");
    std::fs::write(&config, "").unwrap();
    let empty = dir.with_extension("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let command = TestCommand::new(source, "pgback")
        .args(["-c", &config.display().to_string()])
        .args(["-d", &source.conninfo_socket()])
        .args(["-b", &dir.display().to_string(), "-S", "sha256"])
        .args(args)
        .limit(Duration::from_secs(300));
    match tools {
        true => command.args(["-B", &client_bindir()]).run(),
        false => command.env("PATH", &empty).run(),
    }
}

/// The output of PostgreSQL 18's `tool` (`pg_dumpall`, `pg_dump`) with `args` against
/// `cluster`, without its `\restrict` lines (a random key each run).
fn dump_text(cluster: &Cluster, tool: &str, args: &[String]) -> String {
    let program = cluster::pg_binaries().client_tool(tool);
    let output = cluster.command(&program).args(args).output().unwrap();
    assert!(output.status.success(), "{tool} {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.starts_with("\\restrict") && !line.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `pg_dumpall --globals-only`, the bootstrap superuser included (each restore sets its
/// attributes and password from the file).
fn globals_of(cluster: &Cluster) -> String {
    dump_text(cluster, "pg_dumpall", &["--globals-only".into()])
}

/// `pg_dump --schema-only` of `db`.
pub(crate) fn schema_of(cluster: &Cluster, db: &str) -> String {
    let dbname = format!("dbname='{}'", db.replace('\\', "\\\\").replace('\'', "\\'"));
    dump_text(
        cluster,
        "pg_dump",
        &["--schema-only".into(), "-d".into(), dbname],
    )
}

/// Each table and populated materialized view of `db`: its name, `count(*)` and the md5 of
/// its rows in a stable order; each sequence's state.
pub(crate) fn data_of(cluster: &Cluster, db: &str) -> String {
    let tables = cluster
        .try_psql_in(
            db,
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'm') AND c.relispopulated \
             AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1",
        )
        .unwrap();
    let mut out = String::new();
    for table in tables.lines().filter(|t| !t.is_empty()) {
        let sum = cluster
            .try_psql_in(
                db,
                &format!(
                    "SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, E'\\n' \
                     ORDER BY t::text), '')) FROM {table} t"
                ),
            )
            .unwrap();
        out.push_str(&format!("{table} {sum}\n"));
    }
    let sequences = cluster
        .try_psql_in(
            db,
            "SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             ORDER BY c.oid::regclass::text",
        )
        .unwrap();
    for sequence in sequences.lines().filter(|s| !s.is_empty()) {
        let state = cluster
            .try_psql_in(db, &format!("SELECT last_value, is_called FROM {sequence}"))
            .unwrap();
        out.push_str(&format!("sequence {sequence} {state}\n"));
    }
    // pg_dump --schema-only leaves large objects out: their owners, ACLs, comments and data.
    let large_objects = cluster
        .try_psql_in(
            db,
            "SELECT m.oid || ' ' || pg_get_userbyid(m.lomowner) || ' ' \
             || coalesce(m.lomacl::text, '-') || ' ' \
             || coalesce(obj_description(m.oid, 'pg_largeobject'), '-') || ' ' \
             || md5(lo_get(m.oid)) FROM pg_largeobject_metadata m ORDER BY m.oid",
        )
        .unwrap();
    for large_object in large_objects.lines().filter(|l| !l.is_empty()) {
        out.push_str(&format!("large object {large_object}\n"));
    }
    // Each policy's roles in the catalog's order (pg_dump's order is pg_roles' heap order).
    let policies = cluster
        .try_psql_in(
            db,
            "SELECT p.polrelid::regclass || ' ' || p.polname || ' ' || ARRAY(SELECT \
             CASE WHEN r = 0 THEN 'PUBLIC' ELSE r::regrole::text END \
             FROM unnest(p.polroles) WITH ORDINALITY u(r, n) ORDER BY n)::text \
             FROM pg_policy p ORDER BY 1",
        )
        .unwrap();
    for policy in policies.lines().filter(|l| !l.is_empty()) {
        out.push_str(&format!("policy {policy}\n"));
    }
    out
}

/// Runs `file` through psql (`-f`) in `db`, stopping at the first error when `strict`.
pub(crate) fn psql_file(target: &Cluster, db: &str, file: &Path, strict: bool) {
    let psql = cluster::pg_binaries().client_tool("psql");
    let mut command = target.command(&psql);
    command
        .args(["-X", "-q", "-f"])
        .arg(file)
        .arg("-d")
        .arg(format!(
            "dbname='{}'",
            db.replace('\\', "\\\\").replace('\'', "\\'")
        ));
    if strict {
        command.args(["-v", "ON_ERROR_STOP=1"]);
    }
    let output = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "psql -f {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The file name prefix of `db` in a dump set (as pg_back names it).
pub(crate) fn prefix(db: &str) -> String {
    let name = db.replace('/', "_");
    match name.starts_with('.') {
        true => format!("_{name}_"),
        false => format!("{name}_"),
    }
}

#[test]
fn native_dumps_restore_identical_with_psql_and_pgback() {
    let backups = cluster::scratch_dir();
    let space = backups.path().join("space");
    let source = source_cluster(&space);

    // Every database: refused before anything is written, each object named.
    let refused_dir = backups.path().join("refused");
    let refused = pgback(&source, &refused_dir, &["--native"], false);
    refused.assert_code(2, "pgback --native over the whole cluster");
    for (db, _, needles) in REFUSED {
        refused.assert_stderr(&format!("database {db:?}: "));
        for needle in needles {
            refused.assert_stderr(needle);
        }
    }
    // b2's public schema has a privilege granted (pg_back's fixture): exported natively.
    assert!(!refused.stderr.contains("database \"b2\""), "{refused}");
    refused.assert_stderr("hint: add --fallback-tools");
    assert_eq!(
        crate::dump::files_in(&refused_dir),
        Vec::<String>::new(),
        "a refused run writes nothing"
    );

    // --fallback-tools: pg_dump is looked for only now that r_foreign_data needs it, and
    // without client tools that fails before anything is written.
    let no_tools_dir = backups.path().join("no-tools");
    let no_tools = pgback(
        &source,
        &no_tools_dir,
        &["--native", "--fallback-tools", "r_foreign_data", "native"],
        false,
    );
    no_tools.assert_code(2, "pgback --native --fallback-tools without pg_dump");
    no_tools.assert_stderr("pg_dump");
    no_tools.assert_stderr("hint: install PostgreSQL's client tools");
    assert_eq!(crate::dump::files_in(&no_tools_dir), Vec::<String>::new());

    // --fallback-tools: r_foreign_data with pg_dump, said so; native natively.
    let fallback_dir = backups.path().join("fallback");
    let fallback = pgback(
        &source,
        &fallback_dir,
        &["--native", "--fallback-tools", "r_foreign_data", "native"],
        true,
    );
    fallback.assert_ok("pgback --native --fallback-tools r_foreign_data native");
    fallback.assert_stderr("database \"r_foreign_data\" dumped with pg_dump (--fallback-tools)");
    file_of(&fallback_dir, "r_foreign_data_", ".dump");
    let native_sql = std::fs::read_to_string(file_of(&fallback_dir, "native_", ".sql")).unwrap();
    assert!(
        native_sql.starts_with("-- pgback native dump"),
        "{native_sql:.200}"
    );

    // The corpus, natively, with no client tool reachable: the globals are pgback's own.
    let dir = backups.path().join("set");
    let mut args = vec!["--native"];
    args.extend(EXPORTED);
    let corpus = pgback(&source, &dir, &args, false);
    corpus.assert_ok("pgback --native of the corpus");
    corpus.assert_stderr("[pg_globals] written natively: ");
    let globals = std::fs::read_to_string(file_of(&dir, "pg_globals_", ".sql")).unwrap();
    assert!(
        globals.starts_with("-- pgback native globals"),
        "{globals:.200}"
    );
    let source_globals = globals_of(&source);
    for needle in [
        "CREATE ROLE nat_admin;",
        "PASSWORD '",
        "VALID UNTIL '2031-02-0",
        "ALTER ROLE nat_admin SET search_path TO ",
        "COMMENT ON ROLE nat_admin IS 'it''s the admin';",
        "GRANT \"Nat Group\" TO nat_owner",
        "CREATE TABLESPACE nat_space OWNER nat_admin LOCATION",
        "ALTER TABLESPACE nat_space SET (seq_page_cost=2);",
        "ON TABLESPACE nat_space TO nat_reader WITH GRANT OPTION;",
        "COMMENT ON TABLESPACE nat_space IS 'spare disk';",
    ] {
        assert!(
            source_globals.contains(needle),
            "{needle:?} not in the source's globals:\n{source_globals}"
        );
    }
    if source.version_num() >= 160000 {
        // pg_dumpall writes the grantor and the options of servers 16 and later only.
        for needle in ["INHERIT FALSE, SET FALSE", "GRANTED BY nat_admin"] {
            assert!(
                source_globals.contains(needle),
                "{needle}: {source_globals}"
            );
        }
    }
    // Two databases again, encrypted (a passphrase): restored below from the decrypting
    // stream, natively.
    let encrypted_dir = backups.path().join("encrypted");
    TestCommand::new(&source, "pgback")
        .args(["--native", "--encrypt", "-d", &source.conninfo_socket()])
        .args(["-b", &encrypted_dir.display().to_string(), "-S", "sha256"])
        .args(ENCRYPTED)
        .env("PGBK_CIPHER_PASS", PASSPHRASE)
        .env("PATH", dir.with_extension("empty-path"))
        .limit(Duration::from_secs(300))
        .run()
        .assert_ok("pgback --native --encrypt");
    file_of(&encrypted_dir, "native_", ".sql.age");

    // One tablespace directory serves one cluster at a time: each restore in turn gets it.
    source.psql("DROP TABLESPACE nat_space");
    for db in EXPORTED {
        let sql = std::fs::read_to_string(file_of(&dir, &prefix(db), ".sql")).unwrap();
        assert!(sql.starts_with("-- pgback native dump"), "{db}: {sql:.200}");
    }
    assert!(std::fs::read_to_string(file_of(&dir, "native_", ".sql"))
        .unwrap()
        .contains("COPY app.customers (id, \"Name\", email, balance, created, tags, \"select\") FROM stdin;"));

    // Restored with psql: globals, then each database's createdb.sql and its SQL.
    let by_psql = Cluster::start(ClusterOptions::default().without_archive());
    psql_file(
        &by_psql,
        "postgres",
        &file_of(&dir, "pg_globals_", ".sql"),
        false,
    );
    for db in EXPORTED {
        if db != "postgres" {
            psql_file(
                &by_psql,
                "postgres",
                &file_of(&dir, &prefix(db), ".createdb.sql"),
                true,
            );
        }
        let sql = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                name.starts_with(&prefix(db))
                    && name.ends_with(".sql")
                    && !name.ends_with(".createdb.sql")
            })
            .unwrap();
        psql_file(&by_psql, db, &sql, true);
    }

    assert_eq!(
        globals_of(&by_psql),
        source_globals,
        "pg_dumpall --globals-only after psql -f of the native globals"
    );
    by_psql.psql("DROP TABLESPACE nat_space");

    // Restored with pgback --restore with no client tool reachable (no -B, PATH an empty
    // directory): globals and createdb.sql run natively, each database loaded natively.
    let by_pgback = Cluster::start(ClusterOptions::default().without_archive());
    let empty_path = backups.path().join("empty-path");
    std::fs::create_dir_all(&empty_path).unwrap();
    let restore = |dir: &Path, extra: &[&str]| {
        TestCommand::new(&by_pgback, "pgback")
            .arg("--restore")
            .arg(dir)
            .args(["-d", &by_pgback.conninfo_socket()])
            .args(extra)
            .env("PATH", &empty_path)
            .env("PGBK_CIPHER_PASS", PASSPHRASE)
            .limit(Duration::from_secs(300))
            .run()
    };
    // The plain set but the databases of the encrypted one, which come after.
    let plain: Vec<&str> = EXPORTED
        .into_iter()
        .filter(|db| !ENCRYPTED.contains(db))
        .collect();
    let mut args = vec!["--dry-run"];
    args.extend(&plain);
    let plan = restore(&dir, &args);
    plan.assert_ok("pgback --restore --dry-run of the native set");
    assert!(
        !plan.stdout.contains("$ "),
        "no command in the plan\n{plan}"
    );
    assert!(
        plan.stdout.contains("run natively (no psql): pg_globals_"),
        "{plan}"
    );
    for db in &plain {
        let line = format!("native load (no psql): {}", prefix(db));
        assert!(
            plan.stdout.contains(&line),
            "{line:?} not in the plan\n{plan}"
        );
    }
    let restored = restore(&dir, &plain);
    restored.assert_ok("pgback --restore of the native set");
    restored.assert_stderr("[globals] ");
    restored.assert_stderr("statement(s) run natively (no psql)");
    for db in &plain {
        restored.assert_stderr(&format!("[{db}] loaded natively: "));
    }
    assert_eq!(
        globals_of(&by_pgback),
        source_globals,
        "pg_dumpall --globals-only after pgback --restore"
    );
    // The encrypted set, its globals again (the existing roles altered, the tablespace
    // created anew), its dumps loaded natively from the decrypting stream.
    by_pgback.psql("DROP TABLESPACE nat_space");
    let plan = restore(&encrypted_dir, &["--dry-run"]);
    plan.assert_ok("pgback --restore --dry-run of the encrypted native set");
    assert!(
        !plan.stdout.contains("$ "),
        "no command in the plan\n{plan}"
    );
    for db in ENCRYPTED {
        let line = format!("(in memory, plaintext checked against {}", prefix(db));
        assert!(plan.stdout.contains(&line), "{line:?}\n{plan}");
        assert!(
            plan.stdout.contains(") | native load (no psql): "),
            "{plan}"
        );
    }
    let restored = restore(&encrypted_dir, &[]);
    restored.assert_ok("pgback --restore of the encrypted native set");
    for db in ENCRYPTED {
        restored.assert_stderr(&format!("[{db}] loaded natively: "));
    }
    assert_eq!(globals_of(&by_pgback), source_globals);

    for db in EXPORTED {
        let schema = schema_of(&source, db);
        let data = data_of(&source, db);
        assert!(!data.is_empty(), "{db} has tables");
        for (how, target) in [("psql", &by_psql), ("pgback --restore", &by_pgback)] {
            assert_eq!(
                schema_of(target, db),
                schema,
                "{db}: schema restored by {how}"
            );
            assert_eq!(data_of(target, db), data, "{db}: rows restored by {how}");
        }
    }
    // The corpus really holds what is compared (pg_dump before 17 writes two spaces before a
    // default privilege's TO or FROM).
    let native = schema_of(&source, "native")
        .replace("  TO ", " TO ")
        .replace("  FROM ", " FROM ");
    for needle in [
        "CREATE FUNCTION app.add(a text, b text)",
        "NOT VALID",
        "DEFERRABLE INITIALLY DEFERRED",
        "GRANT USAGE ON SCHEMA app TO nat_reader WITH GRANT OPTION",
        "CREATE VIEW app.big_order_count",
        "CREATE TYPE app.status AS ENUM (\n    'new',\n    'open',\n    'paid',\n    'closed'\n);",
        "GENERATED ALWAYS AS IDENTITY (\n    SEQUENCE NAME app.events_id_seq\n    START WITH 100",
        "CREATE TRIGGER customers_touch BEFORE UPDATE OF \"Name\" ON app.customers",
        "CREATE MATERIALIZED VIEW app.not_yet",
        "CREATE DOMAIN app.code AS character varying(8) COLLATE pg_catalog.\"C\" NOT NULL DEFAULT 'NONE'",
        "ADD CONSTRAINT \"Upper\" CHECK",
        "CREATE TYPE app.tagged AS (",
        "CREATE TYPE app.span AS RANGE (",
        "subtype_opclass = pg_catalog.text_pattern_ops",
        "CREATE UNLOGGED TABLE app.scratch",
        "CREATE COLLATION \"Odd Schema\".split (provider = libc, lc_collate = 'C', lc_ctype = 'POSIX');",
        "collation = app.\"Bytes\"",
        "CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA app;",
        "USING gin (note public.gin_trgm_ops);",
        "SELECT(k)",
        "ALTER TABLE app.scratch DISABLE TRIGGER scratch_off;",
        "ALTER TABLE app.scratch ENABLE REPLICA TRIGGER \"Replica only\";",
        "ALTER TABLE app.labels ENABLE ALWAYS TRIGGER labels_always;",
        "ALTER TABLE ONLY app.accounts FORCE ROW LEVEL SECURITY;",
        "ALTER TABLE app.ledger ENABLE ROW LEVEL SECURITY;",
        "CREATE POLICY small_inserts ON app.accounts AS RESTRICTIVE FOR INSERT TO nat_reader WITH CHECK",
        "CREATE POLICY readers ON app.accounts FOR SELECT TO nat_reader USING (true);",
        "CREATE RULE ledger_insert AS\n    ON INSERT TO app.ledger_entries DO INSTEAD",
        "COMMENT ON RULE \"no updates\" ON app.audit_log IS 'append only';",
        "CREATE AGGREGATE app.rank_of(VARIADIC \"any\" ORDER BY VARIADIC \"any\") (",
        "CREATE AGGREGATE app.how_many(*) (",
        "COMMENT ON AGGREGATE app.pick(double precision ORDER BY anyelement) IS 'ordered';",
        "GRANT ALL ON FUNCTION app.total(numeric) TO nat_reader WITH GRANT OPTION;",
        "ALTER DEFAULT PRIVILEGES FOR ROLE nat_owner IN SCHEMA app GRANT USAGE ON SEQUENCES TO nat_reader;",
        "ALTER DEFAULT PRIVILEGES FOR ROLE nat_owner REVOKE ALL ON TYPES FROM PUBLIC;",
        "ALTER DEFAULT PRIVILEGES FOR ROLE nat_owner GRANT SELECT,UPDATE ON TABLES TO nat_reader WITH GRANT OPTION;",
        "PARTITION BY RANGE (day)",
        "PARTITION BY LIST (kind)",
        "ATTACH PARTITION app.readings_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
        "INHERITS (app.things, app.tag_parent)",
        "ALTER TABLE ONLY app.tagged_things ALTER COLUMN id SET DEFAULT 7;",
        "title text NOT NULL COLLATE pg_catalog.\"C\",",
        "body text COLLATE app.\"Bytes\",",
        "short app.code COLLATE pg_catalog.\"POSIX\"",
        "ALTER TABLE ONLY app.notes ALTER COLUMN body SET STORAGE EXTERNAL;",
        "ALTER TABLE ONLY app.notes ALTER COLUMN id SET STATISTICS 500;",
        "ALTER TABLE ONLY app.notes ALTER COLUMN code SET (n_distinct=-0.5, n_distinct_inherited=3);",
        "ALTER TABLE ONLY app.note_log ALTER COLUMN n SET STATISTICS 50;",
        "ALTER TABLE ONLY app.note_log_2026 ALTER COLUMN what SET STORAGE EXTERNAL;",
        "ALTER TABLE ONLY app.note_parent ALTER COLUMN label SET STORAGE EXTERNAL;",
        "ALTER TABLE ONLY app.note_child ALTER COLUMN extra SET STORAGE MAIN;",
        "ALTER TABLE ONLY app.notes REPLICA IDENTITY USING INDEX notes_title;",
        "ALTER TABLE ONLY app.note_log_2026 REPLICA IDENTITY FULL;",
        "ALTER TABLE ONLY app.note_parent REPLICA IDENTITY NOTHING;",
        "ALTER TABLE app.notes CLUSTER ON notes_pk;",
        "ALTER TABLE app.notes DISABLE RULE notes_kept;",
        "ALTER TABLE app.notes ENABLE REPLICA RULE \"Notes seen\";",
        "ALTER TABLE app.note_parent ENABLE ALWAYS RULE note_parent_always;",
    ] {
        assert!(native.contains(needle), "{needle}");
    }
    if source.version_num() >= 140000 {
        let needle = "ALTER TABLE ONLY app.notes ALTER COLUMN body SET COMPRESSION pglz;";
        assert!(native.contains(needle), "{needle}");
    }
    // npublic: the public schemas' changes are in what is compared.
    let hardened = schema_of(&source, "pubschema");
    for needle in [
        "COMMENT ON SCHEMA public IS 'hardened, it''s ours';",
        "REVOKE USAGE ON SCHEMA public FROM PUBLIC;",
        "GRANT USAGE ON SCHEMA public TO nat_reader WITH GRANT OPTION;",
    ] {
        assert!(hardened.contains(needle), "{needle}\n{hardened}");
    }
    let moved = schema_of(&source, "pubowner");
    for needle in [
        "ALTER SCHEMA public OWNER TO nat_owner;",
        "GRANT CREATE ON SCHEMA public TO nat_reader;",
    ] {
        assert!(moved.contains(needle), "{needle}\n{moved}");
    }
    if source.version_num() >= 110000 {
        for needle in [
            // pg_dump writes the argument modes of procedures from 14 on (`IN keep`).
            "CREATE PROCEDURE app.trim_log(",
            "keep integer)\n    LANGUAGE sql",
            "keep text)\n    LANGUAGE plpgsql",
            "keep integer) IS 'overloaded';",
            "FINALFUNC_MODIFY = SHAREABLE",
            "keep integer) TO nat_reader;",
            "ATTACH PARTITION app.journal_rest DEFAULT;",
            "FOR VALUES WITH (modulus 2, remainder 1);",
            "ALTER INDEX app.journal_pkey ATTACH PARTITION app.journal_eu_pkey;",
            "ALTER INDEX app.readings_kind ATTACH PARTITION app.readings_2025_kind_idx;",
            "CREATE TRIGGER journal_seen AFTER INSERT ON app.journal",
        ] {
            assert!(native.contains(needle), "{needle}");
        }
    }
    assert!(data_of(&source, "native").contains("app.things 5:"));
    assert!(data_of(&source, "postgres").contains("public.pgbench_accounts 100000:"));
    assert!(data_of(&source, "native").contains("sequence app.unused_seq 1|f"));
    assert!(data_of(&source, "native").contains("sequence app.events_id_seq 350|t"));
    // The populated materialized view's rows are compared; the other stays empty.
    assert!(data_of(&source, "native").contains("app.order_totals 300:"));
    let native_data = data_of(&source, "native");
    for needle in [
        "large object 424242 postgres - empty d41d8cd98f00b204e9800998ecf8427e",
        "large object 424243 nat_owner {nat_owner=rw/nat_owner,nat_reader=rw*/nat_owner} - ",
        "large object 424245 postgres {} - ",
        "policy app.accounts small_inserts {nat_reader}",
        "policy app.accounts updates {PUBLIC}",
    ] {
        assert!(native_data.contains(needle), "{needle}\n{native_data}");
    }
    assert!(!data_of(&source, "native").contains("app.not_yet"));
}
