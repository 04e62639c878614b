//! The README's hook-pair and pgdrill blocks and the snapshot part of docs/restore.md, run as
//! written: a hot copy taken by the README's `pgpre`, `cp -a` and `pgpost --output-dir` lines
//! under pgbench load is proven by the doc's `pgdrill` line, then restored
//! by the doc's by-hand block under bash (the server as `postgres`) and checked: the order
//! committed during the backup, every pgbench transaction committed before pgpost, and the
//! pgbench invariant. Only the doc's paths and port are replaced by this run's. The by-hand
//! server carries the source's marker (`runuser` keeps the environment), so a failing test that
//! drops the source kills it too.
//!
//! Not in the matrix: it runs on the default server only (Debian's 15 in CI).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cluster::{self, Cluster};
use crate::matrix::drill::{loaded_source, proof_queries};
use crate::util::{doc_block, Run, TestCommand};

/// How long pgdrill, or the doc's by-hand block, may run.
const LIMIT: Duration = Duration::from_secs(300);

/// Where the doc's blocks put things, and where this run has them.
struct DocPaths {
    pairs: Vec<(&'static str, String)>,
    /// The by-hand server's port (the doc's 5499).
    port: String,
}

impl DocPaths {
    fn new(snapshot: &Path, labels: &Path, archive: &Path, restore: &Path, socket: &Path) -> Self {
        let text = |path: &Path| {
            let text = path.display().to_string();
            assert!(
                !text.contains([' ', '\'', '"', '$']),
                "{text}: the doc's blocks do not quote for this"
            );
            text
        };
        let port = cluster::free_port().to_string();
        DocPaths {
            pairs: vec![
                ("/srv/pg-snapshots/nightly", text(snapshot)),
                ("/var/backups/postgresql/snapshot/nightly", text(labels)),
                ("/var/backups/postgresql/wal", text(archive)),
                ("/srv/pgdata-restore", text(restore)),
                ("/var/run/postgresql", text(socket)),
                (
                    "/usr/lib/postgresql/15/bin",
                    text(&cluster::pg_binaries().server_bindir),
                ),
                ("port=5499", format!("port={port}")),
            ],
            port,
        }
    }

    /// The doc block `name` with every doc path that occurs in it replaced; `expected` of them
    /// must occur, so a doc that drifts from this test fails it.
    fn block(&self, name: &str, expected: usize) -> String {
        let mut block = doc_block(name);
        let mut replaced = 0;
        for (doc, ours) in &self.pairs {
            if block.contains(doc) {
                block = block.replace(doc, ours);
                replaced += 1;
            }
        }
        assert_eq!(replaced, expected, "the doc paths in {name}:\n{block}");
        block
    }
}

/// Runs a by-hand block under `bash -euo pipefail` as root (it runs the server as `postgres`).
fn bash(source: &Cluster, script: &str) -> Run {
    TestCommand::program(source, "bash")
        .args(["-euo", "pipefail", "-c", script])
        .limit(LIMIT)
        .run()
}

/// `psql -XAt -c sql` against the server the by-hand block started.
fn restored_query(source: &Cluster, socket: &Path, port: &str, db: &str, sql: &str) -> String {
    let run = TestCommand::program(source, cluster::pg_binaries().client_tool("psql"))
        .arg("-h")
        .arg(socket)
        .args(["-p", port, "-d", db, "-XAtc", sql])
        .run();
    run.assert_ok(sql);
    run.stdout.trim_end().to_string()
}

/// The README's `hook-pair-nightly` block, line by line: its pgpre and pgpost lines with the
/// doc's paths replaced; its copy line as `cp -a` of the source's data directory into the
/// snapshot path, followed by an order and the marker committed during the backup. Returns the
/// pgbench transactions committed before pgpost.
fn hook_pair_as_the_readme_says(source: &Cluster, paths: &DocPaths, snapshot: &Path) -> i64 {
    let block = paths.block("hook-pair-nightly", 2);
    let mut committed = None;
    for line in block.lines() {
        let command = line.split_once(" #").map_or(line, |(command, _)| command);
        let words = shell_words::split(command).unwrap();
        match words.first().map(String::as_str) {
            Some(program @ ("pgpre" | "pgpost")) => {
                TestCommand::new(source, program)
                    .args(&words[1..])
                    .limit(LIMIT)
                    .run()
                    .assert_ok(line);
            }
            Some("cp") => {
                assert_eq!(words[1], "-a", "{line}");
                assert_eq!(words.last().map(PathBuf::from).as_deref(), Some(snapshot));
                source.copy_data_dir(snapshot);
                source
                    .try_psql_in(
                        "app",
                        "INSERT INTO orders(note) VALUES ('during the backup')",
                    )
                    .unwrap();
                source.psql("INSERT INTO marker VALUES ('between pgpre and pgpost')");
                committed = Some(source.pgbench_history_rows());
            }
            _ => panic!("the README's hook-pair block: {line}"),
        }
    }
    committed.expect("the README's hook-pair block copies between pgpre and pgpost")
}

#[test]
fn a_hot_copy_restores_with_pgdrill_and_by_hand_as_the_docs_say() {
    let source = loaded_source(1);
    source.psql("CREATE DATABASE app");
    source
        .try_psql_in(
            "app",
            "CREATE TABLE orders(id serial PRIMARY KEY, placed_at timestamptz NOT NULL DEFAULT now(), note text); \
             INSERT INTO orders(note) VALUES ('before the backup')",
        )
        .unwrap();

    let work = cluster::scratch_dir();
    let snapshot = work.path().join("pg-snapshots-nightly");
    let labels = work.path().join("snapshot-nightly");
    let restore = work.path().join("pgdata-restore");
    let socket = cluster::scratch_dir();
    let pgdrill_tmp = cluster::scratch_dir();

    // The backup as the README's hook-pair block takes it: pgpre, the copy, an order committed
    // during the backup, pgpost --output-dir.
    let paths = DocPaths::new(
        &snapshot,
        &labels,
        source.archive_dir(),
        &restore,
        socket.path(),
    );
    let load = source.start_pgbench_load(2, 1);
    let committed = hook_pair_as_the_readme_says(&source, &paths, &snapshot);
    load.stop();
    assert!(labels.join("backup_label").is_file());

    // With pgdrill: the doc's line, and this test's exact checks.
    let line = paths.block("snapshot-pgdrill", 3).replace("\\\n", " ");
    let words = shell_words::split(&line).unwrap();
    assert_eq!(words.first().map(String::as_str), Some("pgdrill"), "{line}");
    let drill = TestCommand::new(&source, "pgdrill")
        .env("TMPDIR", pgdrill_tmp.path())
        .args(&words[1..])
        .args(["--pg-bindir", &source.bindir().display().to_string()])
        .args(["--sql", "SELECT count(*) = 2 FROM orders"])
        .limit(LIMIT)
        .run();
    drill.assert_ok("the doc's pgdrill");
    let report = &drill.stdout;
    assert!(
        report.starts_with(&format!("pgdrill: PROVEN {}", snapshot.display())),
        "{report}"
    );
    for line in [
        "amcheck    app: clean",
        "amcheck    postgres: clean",
        "interval '1 day': true",
        "SELECT count(*) = 2 FROM orders: true",
    ] {
        assert!(report.contains(line), "no {line:?} in\n{report}");
    }

    // By hand: the doc's block as root, then this test's checks on the server it left running.
    let by_hand = bash(&source, &paths.block("snapshot-by-hand", 7));
    by_hand.assert_ok("the doc's by-hand restore");
    let printed: Vec<&str> = by_hand.stdout.lines().collect();
    assert_eq!(printed.last(), Some(&"2"), "{by_hand}");
    let port = paths.port.as_str();
    let during = restored_query(
        &source,
        socket.path(),
        port,
        "app",
        "SELECT count(*) FROM orders WHERE note = 'during the backup'",
    );
    assert_eq!(during, "1");
    for check in proof_queries(committed) {
        assert_eq!(
            restored_query(&source, socket.path(), port, "postgres", &check),
            "t",
            "{check}"
        );
    }
    bash(&source, &paths.block("snapshot-by-hand-stop", 2)).assert_ok("the doc's stop");
    assert!(!restore.exists());
    assert!(
        snapshot.join("PG_VERSION").is_file(),
        "the snapshot is gone"
    );
}
