//! `pgback --native` and what pg_dump writes of extensions besides `CREATE EXTENSION`, and
//! identity columns in partition trees, on every major: an extension of the test's own
//! (`nat_cfg`, its control file and script written into the server's extension directory)
//! with configuration tables (one with a condition that keeps the rows users added, one whose
//! foreign key references another created after it, a serial's sequence and a sequence) that
//! users added rows to; privileges changed on extensions' members (pg_trgm's `similarity`
//! granted, nat_cfg's table and function revoked from PUBLIC and granted, with grant option);
//! a policy on a configuration table (which pg_dump 18 loses; compared through `pg_policy`);
//! an identity column in a partition tree of two levels. Dumped with `--native` with no client
//! tool reachable, restored into a fresh cluster with psql and with `pgback --restore`, and
//! compared with the source as the fidelity test compares (PostgreSQL 18's `pg_dump
//! --schema-only`, every table's rows, every sequence's state). A member's privilege granted
//! by a role other than its owner is refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cluster::{self, Cluster, ClusterOptions};
use crate::matrix::native::{data_of, pgback, prefix, psql_file, schema_of};
use crate::restore_dump::file_of;
use crate::util::TestCommand;

const CONTROL: &str = "comment = 'pgback tests: configuration tables'\n\
default_version = '1.0'\n\
relocatable = false\n";

/// The extension's script: its configuration tables (the rules' foreign key added after the
/// settings exist, so that their oids are in the wrong order for loading), built-in rows,
/// a function, and privileges recorded in `pg_init_privs`.
const SCRIPT: &str = "CREATE TABLE @extschema@.nat_cfg_rules (id integer PRIMARY KEY, \
       setting integer, note text);\n\
CREATE TABLE @extschema@.nat_cfg_settings (id serial PRIMARY KEY, name text NOT NULL, \
       value text, builtin boolean NOT NULL DEFAULT false);\n\
ALTER TABLE @extschema@.nat_cfg_rules ADD FOREIGN KEY (setting) \
       REFERENCES @extschema@.nat_cfg_settings (id);\n\
CREATE SEQUENCE @extschema@.nat_cfg_ticket;\n\
INSERT INTO @extschema@.nat_cfg_settings (name, value, builtin) \
       VALUES ('mode', 'fast', true), ('level', '1', true);\n\
SELECT pg_catalog.pg_extension_config_dump('@extschema@.nat_cfg_settings', 'WHERE NOT builtin');\n\
SELECT pg_catalog.pg_extension_config_dump('@extschema@.nat_cfg_settings_id_seq', '');\n\
SELECT pg_catalog.pg_extension_config_dump('@extschema@.nat_cfg_rules', '');\n\
SELECT pg_catalog.pg_extension_config_dump('@extschema@.nat_cfg_ticket', '');\n\
CREATE FUNCTION @extschema@.nat_cfg_value(text) RETURNS text LANGUAGE sql STABLE \
       AS 'SELECT value FROM @extschema@.nat_cfg_settings WHERE name = $1';\n\
GRANT SELECT ON @extschema@.nat_cfg_settings TO PUBLIC;\n";

/// The database exported: the extensions, their users' rows and privileges, the partitions.
const DATABASE: &str = "CREATE SCHEMA app; \
     CREATE EXTENSION nat_cfg WITH SCHEMA app; \
     CREATE EXTENSION pg_trgm; \
     GRANT EXECUTE ON FUNCTION similarity(text, text) TO nat_reader; \
     INSERT INTO app.nat_cfg_settings (name, value) VALUES ('colour', 'blue'), \
       ('size', E'tab\\there'), ('empty', NULL); \
     INSERT INTO app.nat_cfg_rules VALUES (1, 3, 'colour rule'), (2, NULL, 'free'); \
     SELECT nextval('app.nat_cfg_ticket') FROM generate_series(1, 3); \
     REVOKE SELECT ON app.nat_cfg_settings FROM PUBLIC; \
     GRANT SELECT ON app.nat_cfg_settings TO nat_owner; \
     GRANT SELECT, UPDATE ON app.nat_cfg_settings TO nat_reader WITH GRANT OPTION; \
     REVOKE EXECUTE ON FUNCTION app.nat_cfg_value(text) FROM PUBLIC; \
     GRANT EXECUTE ON FUNCTION app.nat_cfg_value(text) TO nat_owner; \
     CREATE POLICY numbered ON app.nat_cfg_rules USING (id > 0); \
     CREATE TABLE app.ids (i integer GENERATED ALWAYS AS IDENTITY (START WITH 5), \
       k integer, note text) PARTITION BY RANGE (k); \
     CREATE TABLE app.ids_low PARTITION OF app.ids FOR VALUES FROM (0) TO (10); \
     CREATE TABLE app.ids_high PARTITION OF app.ids FOR VALUES FROM (10) TO (100) \
       PARTITION BY RANGE (k); \
     CREATE TABLE app.ids_high_a PARTITION OF app.ids_high FOR VALUES FROM (10) TO (50); \
     INSERT INTO app.ids (k, note) SELECT g, 'n' || g FROM generate_series(0, 49) g";

/// A privilege on a member granted by a role other than its owner: refused.
const REFUSED: &str = "CREATE EXTENSION pg_trgm; \
     GRANT EXECUTE ON FUNCTION similarity(text, text) TO nat_owner WITH GRANT OPTION; \
     SET ROLE nat_owner; GRANT EXECUTE ON FUNCTION similarity(text, text) TO nat_reader; \
     RESET ROLE";

/// The extension directory of the server under test: beside its binaries (the fetched
/// servers), or Debian's.
fn extension_dir() -> PathBuf {
    let binaries = cluster::pg_binaries();
    let share = binaries.server_bindir.join("../share");
    [
        share.join("postgresql/extension"),
        share.join("extension"),
        PathBuf::from(format!(
            "/usr/share/postgresql/{}/extension",
            binaries.server_major
        )),
    ]
    .into_iter()
    .find(|dir| dir.join("plpgsql.control").is_file())
    .unwrap_or_else(|| {
        panic!(
            "no extension directory of the server in {}",
            binaries.server_bindir.display()
        )
    })
}

/// Writes `name` into `dir` whole or not at all (other tests may read it at the same time).
fn install(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text) {
        return;
    }
    let partial = dir.join(format!("{name}.{}.partial", std::process::id()));
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, &path).unwrap();
}

/// A fresh cluster with the roles the database uses.
fn cluster_with_roles() -> Cluster {
    let cluster = Cluster::start(ClusterOptions::default().without_archive());
    cluster.psql("CREATE ROLE nat_owner; CREATE ROLE nat_reader");
    cluster
}

#[test]
fn extension_configuration_member_privileges_and_partition_identity_restore_identical() {
    let dir = extension_dir();
    install(&dir, "nat_cfg.control", CONTROL);
    install(&dir, "nat_cfg--1.0.sql", SCRIPT);
    let backups = cluster::scratch_dir();
    let source = cluster_with_roles();
    source.psql("CREATE DATABASE natext");
    source.try_psql_in("natext", DATABASE).unwrap();
    source.psql("CREATE DATABASE natext_refused");
    source.try_psql_in("natext_refused", REFUSED).unwrap();

    let refused = pgback(
        &source,
        &backups.path().join("refused"),
        &["--native", "natext_refused"],
        false,
    );
    refused.assert_code(2, "pgback --native of a member granted by another role");
    refused.assert_stderr(
        "extension pg_trgm (privileges on its members granted or revoked by a role other than \
         their owner)",
    );

    let set = backups.path().join("set");
    pgback(&source, &set, &["--native", "natext"], false).assert_ok("pgback --native natext");
    let sql = std::fs::read_to_string(file_of(&set, &prefix("natext"), ".sql")).unwrap();
    for needle in [
        "COPY app.nat_cfg_settings (id, name, value, builtin) FROM stdin;\n3\tcolour\tblue\tf\n",
        "GRANT EXECUTE ON FUNCTION public.similarity(pg_catalog.text,pg_catalog.text) TO nat_reader;",
        "REVOKE SELECT ON TABLE app.nat_cfg_settings FROM PUBLIC;",
        "GRANT SELECT, UPDATE ON TABLE app.nat_cfg_settings TO nat_reader WITH GRANT OPTION;",
        "SELECT pg_catalog.setval('app.nat_cfg_ticket', 3, true);",
    ] {
        assert!(sql.contains(needle), "{needle:?} not in the dump:\n{sql}");
    }
    // A member table's policy: pg_dump 18 loses it, the native export does not.
    assert!(
        sql.contains("CREATE POLICY numbered ON app.nat_cfg_rules"),
        "{sql}"
    );
    // The built-in rows are the extension's: CREATE EXTENSION makes them again.
    assert!(!sql.contains("\tfast\tt\n"), "{sql}");
    assert!(
        sql.find("COPY app.nat_cfg_settings").unwrap()
            < sql.find("COPY app.nat_cfg_rules").unwrap(),
        "a configuration table after the one its foreign key references"
    );

    let by_psql = cluster_with_roles();
    psql_file(
        &by_psql,
        "postgres",
        &file_of(&set, &prefix("natext"), ".createdb.sql"),
        true,
    );
    psql_file(
        &by_psql,
        "natext",
        &file_of(&set, &prefix("natext"), ".sql"),
        true,
    );
    let by_pgback = cluster_with_roles();
    let empty_path = backups.path().join("empty-path");
    std::fs::create_dir_all(&empty_path).unwrap();
    TestCommand::new(&by_pgback, "pgback")
        .arg("--restore")
        .arg(&set)
        .args(["-d", &by_pgback.conninfo_socket(), "natext"])
        .env("PATH", &empty_path)
        .limit(Duration::from_secs(300))
        .run()
        .assert_ok("pgback --restore natext");

    let schema = schema_of(&source, "natext");
    let data = data_of(&source, "natext");
    for needle in [
        "GRANT ALL ON FUNCTION public.similarity(text, text) TO nat_reader;",
        "REVOKE SELECT ON TABLE app.nat_cfg_settings FROM PUBLIC;",
        "GRANT ALL ON FUNCTION app.nat_cfg_value(text) TO nat_owner;",
        "ADD GENERATED ALWAYS AS IDENTITY",
    ] {
        assert!(
            schema.contains(needle),
            "{needle:?} not in the source's schema"
        );
    }
    for needle in [
        "app.nat_cfg_settings 5:",
        "app.nat_cfg_rules 2:",
        "app.ids_high_a 40:",
        "sequence app.nat_cfg_ticket 3|t",
        "sequence app.nat_cfg_settings_id_seq 5|t",
        "policy app.nat_cfg_rules numbered {PUBLIC}",
    ] {
        assert!(
            data.contains(needle),
            "{needle:?} not in the source's data:\n{data}"
        );
    }
    for (how, target) in [("psql", &by_psql), ("pgback --restore", &by_pgback)] {
        assert_eq!(
            schema_of(target, "natext"),
            schema,
            "schema restored by {how}"
        );
        assert_eq!(data_of(target, "natext"), data, "rows restored by {how}");
        // The identity goes on taking values where the source's would.
        let next = target
            .try_psql_in("natext", "INSERT INTO app.ids (k) VALUES (5) RETURNING i")
            .unwrap();
        assert_eq!(next.trim(), "55", "the identity after a restore by {how}");
    }
}
