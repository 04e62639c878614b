//! The data worker of a native export reads the main session's exported snapshot: rows
//! committed by another session after the snapshot was exported, before the worker copies, are
//! not in the dump, and rows deleted so are; the rows are copied by the worker's session and
//! the definitions read by the main one (two backends, told apart in the server log). A worker
//! whose snapshot is gone, or that would wait behind an `ACCESS EXCLUSIVE` request, fails with
//! one readable line. Drives the library (`native::open`, `Worker::open`, `native::export`), so
//! that the changes land between the export of the snapshot and the worker's COPY.

use std::io::Read as _;
use std::time::{Duration, Instant};

use safe_backup::conn::{ConnParams, ConnSettings, Environment, Session};
use safe_backup::native::{self, NativeError, Worker};
use safe_backup::server::read_version;

use crate::cluster::{Cluster, ClusterOptions};

/// The database exported.
const DB: &str = "snapshotdb";

/// A cluster logging every statement with its backend's pid (the harness's prefix has `[%p]`),
/// holding `DB` with the rows 1 to 100 of `t`.
fn source() -> Cluster {
    let source = Cluster::start(
        ClusterOptions::default()
            .without_archive()
            .conf("log_statement = 'all'"),
    );
    source.psql(&format!("CREATE DATABASE {DB}"));
    source
        .try_psql_in(
            DB,
            "CREATE TABLE t (id integer PRIMARY KEY, note text); \
             INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 100) g",
        )
        .unwrap();
    source
}

/// A session on `DB` of `cluster`, through the library's own connection code.
async fn connect(cluster: &Cluster) -> Session {
    let params = ConnParams::parse(&cluster.conninfo_socket()).unwrap();
    let mut settings = ConnSettings::resolve(&params, &Environment::default()).unwrap();
    settings.dbname = DB.to_string();
    settings.connect().await.unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn backend_pid(session: &Session) -> i32 {
    session
        .client
        .query_one("SELECT pg_catalog.pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// The rows of `table`'s COPY block in a native dump, each line as written.
fn copied_rows<'a>(dump: &'a str, table: &str) -> Vec<&'a str> {
    let start = format!("COPY {table} (");
    let mut lines = dump.lines().skip_while(|line| !line.starts_with(&start));
    assert!(lines.next().is_some(), "no COPY of {table} in:\n{dump}");
    lines.take_while(|line| *line != "\\.").collect()
}

/// The pids of the server log's statement lines that contain `needle`.
fn logged_by(log: &str, needle: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = log
        .lines()
        .filter(|line| line.contains("LOG:") && line.contains(needle))
        .filter_map(|line| {
            let pid = line.split_once(" [")?.1.split_once(']')?.0;
            pid.parse().ok()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

#[test]
fn the_worker_copies_the_rows_of_the_exported_snapshot() {
    let source = source();
    let (main_pid, worker_pid, dump) = runtime().block_on(async {
        let main = connect(&source).await;
        let main_pid = backend_pid(&main).await;
        let version = read_version(&main.client).await.unwrap();
        let snapshot = native::open(&main.client, version, true).await.unwrap();
        // Committed after the snapshot was exported, before the worker opens and copies:
        // neither change may be seen (ROW EXCLUSIVE does not wait for ACCESS SHARE).
        source
            .try_psql_in(
                DB,
                "INSERT INTO t SELECT g, 'late ' || g FROM generate_series(101, 150) g; \
                 DELETE FROM t WHERE id <= 10",
            )
            .unwrap();
        let worker_session = connect(&source).await;
        let worker_pid = backend_pid(&worker_session).await;
        let worker = Worker::open(&worker_session.client, &snapshot)
            .await
            .unwrap();
        let (writer, mut reader) = native::sql_stream();
        let read = tokio::task::spawn_blocking(move || {
            let mut dump = String::new();
            reader.read_to_string(&mut dump).map(|_| dump)
        });
        let summary = native::export(&snapshot, &worker, DB, writer)
            .await
            .unwrap();
        assert_eq!(summary.tables, 1);
        (main_pid, worker_pid, read.await.unwrap().unwrap())
    });
    assert_ne!(main_pid, worker_pid);

    let rows = copied_rows(&dump, "public.t");
    let expected: Vec<String> = (1..=100).map(|id| format!("{id}\trow {id}")).collect();
    assert_eq!(rows, expected, "the rows of the exported snapshot");
    assert_eq!(
        source
            .try_psql_in(DB, "SELECT count(*), min(id), max(id) FROM t")
            .unwrap(),
        "140|11|150",
        "the changes were committed"
    );
    // The definitions after the data are written after it, as before the worker.
    let copy_at = dump.find("COPY public.t (").unwrap();
    let key_at = dump.find("ADD CONSTRAINT t_pkey PRIMARY KEY").unwrap();
    assert!(copy_at < key_at, "the primary key after the data");

    let log = source.server_log();
    assert_eq!(logged_by(&log, "pg_export_snapshot()"), [main_pid]);
    assert_eq!(logged_by(&log, "SET TRANSACTION SNAPSHOT"), [worker_pid]);
    assert_eq!(logged_by(&log, "NOWAIT"), [worker_pid]);
    assert_eq!(
        logged_by(&log, "TO STDOUT"),
        [worker_pid],
        "COPY on the worker"
    );
    assert_eq!(
        logged_by(&log, "relforcerowsecurity"),
        [main_pid],
        "the definitions after the data on the main session"
    );
}

/// The error's text, asserted to be one line.
fn one_line(error: NativeError) -> String {
    let text = error.to_string();
    assert!(!text.contains('\n'), "one line: {text:?}");
    text
}

#[test]
fn a_worker_without_the_snapshot_or_behind_an_exclusive_lock_fails_in_one_line() {
    let source = source();
    runtime().block_on(async {
        // The snapshot is gone once the main transaction ends.
        let main = connect(&source).await;
        let version = read_version(&main.client).await.unwrap();
        let snapshot = native::open(&main.client, version, true).await.unwrap();
        main.client.batch_execute("COMMIT").await.unwrap();
        let worker_session = connect(&source).await;
        let error = Worker::open(&worker_session.client, &snapshot)
            .await
            .unwrap_err();
        let text = one_line(error);
        // "invalid snapshot identifier: \"ID\"" up to 17, "snapshot \"ID\" does not exist" on 18.
        assert!(
            text.starts_with("opening the data worker in the export's snapshot: ")
                && text.contains(&format!("\"{}\"", snapshot.snapshot_id)),
            "{text}"
        );

        // An ACCESS EXCLUSIVE request queued behind the main session's ACCESS SHARE: a worker
        // that waited behind it would never be woken (the main session waits for the worker).
        let main = connect(&source).await;
        let snapshot = native::open(&main.client, version, true).await.unwrap();
        let exclusive = connect(&source).await;
        let exclusive_pid = backend_pid(&exclusive).await;
        let queued = tokio::spawn(async move {
            let taken = exclusive
                .client
                .batch_execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
                .await;
            (exclusive, taken)
        });
        let watcher = connect(&source).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // No event tells that a lock request is queued: a slow, bounded re-check.
            let waiting: bool = watcher
                .client
                .query_one(
                    "SELECT EXISTS (SELECT FROM pg_catalog.pg_locks \
                     WHERE pid = $1 AND NOT granted)",
                    &[&exclusive_pid],
                )
                .await
                .unwrap()
                .get(0);
            if waiting {
                break;
            }
            assert!(Instant::now() < deadline, "the LOCK never queued");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let worker_session = connect(&source).await;
        let opened = tokio::time::timeout(
            Duration::from_secs(30),
            Worker::open(&worker_session.client, &snapshot),
        )
        .await;
        let Ok(opened) = opened else {
            panic!("the worker waited behind the queued ACCESS EXCLUSIVE request");
        };
        let text = one_line(opened.unwrap_err());
        assert!(
            text.starts_with("the data worker locking the tables")
                && text.contains("could not obtain lock on relation"),
            "{text}"
        );
        // The main session's end lets the exclusive lock through.
        drop(snapshot);
        drop(main);
        let (_exclusive, taken) = queued.await.unwrap();
        taken.unwrap();
    });
}
