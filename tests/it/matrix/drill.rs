//! `pgdrill` over real servers: it proves hot copies taken between `pgpre` and `pgpost` under a
//! pgbench load (a plain directory, a read-only btrfs snapshot on a loop device, a relocated
//! tablespace), and `--exec -- pgback` dumps the backup's point in time. The failures are in
//! `drill_failures.rs`; the helpers here serve both, and the recipes (`recipes.rs`). DATADIR
//! is fingerprinted before and after every drill: it is never written.
//!
//! Every test runs on the server of `PG_BINDIR` (10 to 18); pgdrill gets `--pg-bindir`.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{self, Cluster, ClusterOptions};
use crate::util::{self, LoopFs, Run, TestCommand};

/// How long any one pgdrill, pgpre or pgpost may run.
pub(crate) const PROGRAM_LIMIT: Duration = Duration::from_secs(300);

/// One backup: `pgpre --fast`, what `between` does (the copy), a marker row, `pgpost
/// --output-dir label_dir`. Returns the pgbench transactions committed before pgpost.
pub(crate) fn backup(source: &Cluster, label_dir: &Path, between: impl FnOnce()) -> i64 {
    TestCommand::new(source, "pgpre")
        .arg("--fast")
        .limit(PROGRAM_LIMIT)
        .run()
        .assert_ok("pgpre --fast");
    between();
    source.psql("INSERT INTO marker VALUES ('between pgpre and pgpost')");
    let committed = source.pgbench_history_rows();
    TestCommand::new(source, "pgpost")
        .arg("--output-dir")
        .arg(label_dir)
        .limit(PROGRAM_LIMIT)
        .run()
        .assert_ok("pgpost --output-dir");
    committed
}

/// A source with pgbench data and a marker table.
pub(crate) fn loaded_source(scale: u32) -> Cluster {
    let source = Cluster::start(ClusterOptions::default());
    source.pgbench_init(scale);
    source.psql("CREATE TABLE marker(note text)");
    source
}

/// A hot copy of `source`'s data directory at `copy`, taken between pgpre and pgpost under
/// pgbench load, with pgpost's label in `label_dir`. Returns the transactions committed
/// before pgpost.
pub(crate) fn hot_copy(source: &Cluster, copy: &Path, label_dir: &Path) -> i64 {
    let load = source.start_pgbench_load(2, 1);
    let committed = backup(source, label_dir, || source.copy_data_dir(copy));
    load.stop();
    committed
}

/// The checks that prove the copy holds what was committed before pgpost.
pub(crate) fn proof_queries(committed_before_pgpost: i64) -> Vec<String> {
    vec![
        "SELECT count(*) = 1 FROM marker WHERE note = 'between pgpre and pgpost'".into(),
        format!("SELECT count(*) >= {committed_before_pgpost} FROM pgbench_history"),
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history) \
            AND (SELECT sum(bbalance) FROM pgbench_branches) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history)"
            .into(),
    ]
}

/// What one pgdrill run left: its output and exit code, and its JSON report.
pub(crate) struct Drill {
    pub(super) run: Run,
    pub(super) report: Value,
}

impl Drill {
    pub(super) fn code(&self) -> i32 {
        self.run.code
    }

    pub(super) fn stderr(&self) -> &str {
        &self.run.stderr
    }

    pub(super) fn describe(&self) -> String {
        self.run.to_string()
    }

    /// Asserts the exit code and that stderr says `message`.
    pub(super) fn assert_failed(&self, code: i32, message: &str) {
        self.run.assert_code(code, "pgdrill").assert_stderr(message);
    }
}

/// `DATADIR --backup-label FILE --wal-archive DIR`, what every drill of a backup is given.
pub(crate) fn backup_args<'a>(data: &'a Path, label: &'a Path, archive: &'a Path) -> Vec<&'a str> {
    let text = |path: &'a Path| path.to_str().expect("test paths are UTF-8");
    vec![
        text(data),
        "--backup-label",
        text(label),
        "--wal-archive",
        text(archive),
    ]
}

/// Runs `pgdrill --json --pg-bindir <server's> args...` with `TMPDIR=tmp`, then checks that
/// it left nothing in `tmp` and no mount of its own.
pub(crate) fn pgdrill(source: &Cluster, tmp: &Path, args: &[&str]) -> Drill {
    let run = TestCommand::new(source, "pgdrill")
        .env("TMPDIR", tmp)
        .arg("--json")
        .arg("--pg-bindir")
        .arg(source.bindir())
        .args(args)
        .limit(PROGRAM_LIMIT)
        .run();
    let report: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("pgdrill's stdout is not one JSON document ({e}): {run}"));
    let left: Vec<_> = fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let keeping = args.contains(&"--keep");
    assert!(keeping || left.is_empty(), "pgdrill left {left:?} behind");
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    assert!(
        keeping || !mounts.contains(&tmp.display().to_string()),
        "pgdrill left a mount under {}: {mounts}",
        tmp.display()
    );
    Drill { run, report }
}

/// Path, kind, size, mode, owner, mtime and link target of every entry under `root`; a write
/// of any kind changes it.
pub(crate) fn fingerprint(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut seen = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = fs::symlink_metadata(&path).unwrap();
        let link = fs::read_link(&path)
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        seen.insert(
            path.strip_prefix(root).unwrap().to_path_buf(),
            format!(
                "{:o} {} {}:{} {}.{} {link}",
                meta.mode(),
                meta.size(),
                meta.uid(),
                meta.gid(),
                meta.mtime(),
                meta.mtime_nsec()
            ),
        );
        if meta.is_dir() {
            pending.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    seen
}

pub(crate) fn assert_proven(drill: &Drill, clone: &str, queries: usize) {
    let report = &drill.report;
    assert_eq!(
        drill.code(),
        0,
        "pgdrill did not prove the copy: {}",
        drill.describe()
    );
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["consistent"], true);
    assert_eq!(report["clone"], clone, "{}", drill.describe());
    let lsn = report["consistent_lsn"].as_str().unwrap_or_default();
    assert!(lsn.contains('/'), "no consistent LSN: {}", drill.describe());
    let databases: Vec<&str> = report["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(
        databases.contains(&"postgres") && databases.contains(&"template1"),
        "{databases:?}"
    );
    assert_eq!(
        report["findings"].as_array().unwrap().len(),
        0,
        "{}",
        drill.describe()
    );
    let sql = report["sql"].as_array().unwrap();
    assert_eq!(sql.len(), queries);
    assert!(
        sql.iter().all(|check| check["passed"] == true),
        "{}",
        drill.describe()
    );
}

#[test]
fn proves_a_hot_copy_taken_under_load_and_fails_its_checks_when_they_fail() {
    let mut source = loaded_source(2);
    let scratch = cluster::scratch_dir();
    let tmp = cluster::scratch_dir();
    let copy = scratch.path().join("data");
    // The label goes into the copy itself, as restore.rs does: DATADIR may hold it.
    let committed = hot_copy(&source, &copy, &copy);
    source.psql("INSERT INTO marker VALUES ('after pgpost')");
    assert!(
        copy.join("postmaster.pid").is_file(),
        "a live copy holds the live pid file"
    );
    let before = fingerprint(&copy);

    let queries = proof_queries(committed);
    let mut args = vec![copy.to_str().unwrap(), "--clone", "copy", "--wal-archive"];
    let archive = source.archive_dir().display().to_string();
    args.push(&archive);
    let mut sql_args = Vec::new();
    for query in &queries {
        sql_args.extend(["--sql", query.as_str()]);
    }
    sql_args.extend([
        "--sql",
        "SELECT count(*) = 0 FROM marker WHERE note = 'after pgpost'",
    ]);
    let drill = pgdrill(&source, tmp.path(), &[args.as_slice(), &sql_args].concat());
    assert_proven(&drill, "copy", queries.len() + 1);
    let label = fs::read_to_string(copy.join("backup_label")).unwrap();
    assert!(label.contains(drill.report["backup_label"]["start_lsn"].as_str().unwrap()));
    assert_eq!(fingerprint(&copy), before, "pgdrill wrote into DATADIR");

    // A check that is not true, and an --exec that fails, fail the drill with exit 1; the
    // command reaches the clone through PGHOST, PGPORT, PGUSER and PGDATABASE.
    let script = format!(
        "test \"$PGDATABASE\" = postgres && {} -XAtc 'SELECT 1' >/dev/null && exit 3",
        cluster::pg_binaries().client_tool("psql").display()
    );
    let failing = [
        "--sql",
        "SELECT count(*) = 0 FROM marker",
        "--exec",
        "--",
        "sh",
        "-c",
        &script,
    ];
    let drill = pgdrill(&source, tmp.path(), &[args.as_slice(), &failing].concat());
    assert_eq!(drill.code(), 1, "{}", drill.describe());
    assert_eq!(drill.report["consistent"], true);
    assert_eq!(
        drill.report["exec"]["exit_code"],
        3,
        "CMD ran against the clone: {}",
        drill.describe()
    );
    assert_eq!(
        drill.report["findings"].as_array().unwrap().len(),
        2,
        "{}",
        drill.describe()
    );
    assert!(
        drill.stderr().contains("2 check(s) failed"),
        "{}",
        drill.describe()
    );
    assert_eq!(fingerprint(&copy), before);

    // The source was never touched by its clones.
    source.stop();
    source.restart();
    source.check_pgbench_invariant();
}

/// `btrfs ARGS...` within the tool limit, panicking with its output on failure.
pub(crate) fn btrfs(args: &[&OsStr]) -> String {
    util::tool("btrfs", args)
}

#[test]
fn proves_a_read_only_btrfs_snapshot_by_overlay_and_by_reflink() {
    let source = loaded_source(1);
    let btrfs_fs = LoopFs::btrfs("1G");
    let volume = btrfs_fs.mount().join("vol");
    let snapshot = btrfs_fs.mount().join("snap");
    let work = btrfs_fs.mount().join("work");
    btrfs(&["subvolume".as_ref(), "create".as_ref(), volume.as_ref()]);
    fs::create_dir(&work).unwrap();
    let labels = cluster::scratch_dir();
    let tmp = cluster::scratch_dir();

    // The snapshot is taken between pgpre and pgpost; the label stays beside it.
    let load = source.start_pgbench_load(2, 1);
    let copy = volume.join("data");
    let committed = backup(&source, labels.path(), || {
        source.copy_data_dir(&copy);
        btrfs(&[
            "subvolume".as_ref(),
            "snapshot".as_ref(),
            "-r".as_ref(),
            volume.as_ref(),
            snapshot.as_ref(),
        ]);
    });
    load.stop();
    let data = snapshot.join("data");
    assert!(
        fs::write(data.join("probe"), "x").is_err(),
        "the snapshot is read-only"
    );
    let before = fingerprint(&data);

    let label = labels.path().join("backup_label");
    let queries = proof_queries(committed);
    let mut common = backup_args(&data, &label, source.archive_dir());
    for query in &queries {
        common.extend(["--sql", query.as_str()]);
    }
    let overlay = pgdrill(&source, tmp.path(), &common);
    assert_proven(&overlay, "overlay", queries.len());
    assert_eq!(fingerprint(&data), before);

    let reflink = pgdrill(
        &source,
        tmp.path(),
        &[
            common.as_slice(),
            &["--clone", "reflink", "--work-dir", work.to_str().unwrap()],
        ]
        .concat(),
    );
    assert_proven(&reflink, "reflink", queries.len());
    assert_eq!(
        fs::read_dir(&work).unwrap().count(),
        0,
        "the reflink clone was not removed"
    );
    assert_eq!(fingerprint(&data), before);
    assert_eq!(
        overlay.report["consistent_lsn"],
        reflink.report["consistent_lsn"]
    );
}

#[test]
fn a_relocated_tablespace_is_cloned_from_its_snapshot_and_the_live_one_is_never_written() {
    let live_tablespace = cluster::scratch_dir();
    let scratch = cluster::scratch_dir();
    let labels = cluster::scratch_dir();
    let tmp = cluster::scratch_dir();
    let mut source = loaded_source(1);
    source.psql(&format!(
        "CREATE TABLESPACE ts LOCATION '{}'; \
         CREATE TABLE ts_rows(id int PRIMARY KEY USING INDEX TABLESPACE ts) TABLESPACE ts; \
         INSERT INTO ts_rows SELECT generate_series(1, 10000)",
        live_tablespace.path().display()
    ));
    let copy = scratch.path().join("data");
    let ts_copy = scratch.path().join("ts");
    let load = source.start_pgbench_load(2, 1);
    backup(&source, labels.path(), || {
        source.copy_data_dir(&copy);
        source.psql("INSERT INTO ts_rows SELECT generate_series(10001, 10100)");
        util::tool(
            "cp",
            &[
                "-a".as_ref(),
                live_tablespace.path().as_ref(),
                ts_copy.as_ref(),
            ],
        );
    });
    load.stop();
    source.stop();
    let live_before = fingerprint(live_tablespace.path());
    let copy_before = fingerprint(&copy);
    let ts_before = fingerprint(&ts_copy);
    let mapping = format!("{}={}", live_tablespace.path().display(), ts_copy.display());
    let label = labels.path().join("backup_label");
    let map = labels.path().join("tablespace_map");
    let drill = pgdrill(
        &source,
        tmp.path(),
        &[
            backup_args(&copy, &label, source.archive_dir()).as_slice(),
            &[
                "--tablespace-map",
                map.to_str().unwrap(),
                "-T",
                &mapping,
                "--sql",
                "SELECT count(*) = 10100 FROM ts_rows",
                "--sql",
                "SELECT pg_tablespace_location(oid) LIKE '%/tblspc/%' FROM pg_tablespace WHERE spcname = 'ts'",
            ],
        ]
        .concat(),
    );
    assert_proven(&drill, "overlay", 2);
    assert_eq!(
        fingerprint(live_tablespace.path()),
        live_before,
        "the live tablespace was written"
    );
    assert_eq!(fingerprint(&copy), copy_before);
    assert_eq!(fingerprint(&ts_copy), ts_before);

    // A -T that maps no tablespace of the backup is a usage error.
    let drill = pgdrill(
        &source,
        tmp.path(),
        &[
            backup_args(&copy, &label, source.archive_dir()).as_slice(),
            &["-T", "/nowhere=/tmp"],
        ]
        .concat(),
    );
    drill.assert_failed(2, "-T /nowhere=...");
}

#[test]
fn exec_pgback_dumps_the_backups_point_in_time() {
    let source = loaded_source(1);
    // At least as new as the server (PostgreSQL 18's from scripts/fetch-postgres), or the
    // harness fails the test saying how to install one.
    let pg_dump = cluster::pg_binaries().client_tool("pg_dump");
    source.psql("CREATE DATABASE app");
    source.try_psql_in("app", "CREATE TABLE orders(id int PRIMARY KEY, note text); INSERT INTO orders VALUES (1, 'before pgpre')").unwrap();
    let scratch = cluster::scratch_dir();
    let labels = cluster::scratch_dir();
    let dumps = cluster::scratch_dir();
    let tmp = cluster::scratch_dir();
    let copy = scratch.path().join("data");
    let load = source.start_pgbench_load(2, 1);
    backup(&source, labels.path(), || {
        source.copy_data_dir(&copy);
        source
            .try_psql_in(
                "app",
                "INSERT INTO orders VALUES (2, 'between pgpre and pgpost')",
            )
            .unwrap();
    });
    load.stop();
    source
        .try_psql_in("app", "INSERT INTO orders VALUES (3, 'after pgpost')")
        .unwrap();

    let drill = pgdrill(
        &source,
        tmp.path(),
        &[
            backup_args(
                &copy,
                &labels.path().join("backup_label"),
                source.archive_dir(),
            )
            .as_slice(),
            &[
                "--exec",
                "--",
                crate::util::binary("pgback").to_str().unwrap(),
                "-b",
                dumps.path().to_str().unwrap(),
                "-B",
                pg_dump.parent().unwrap().to_str().unwrap(),
                "app",
            ],
        ]
        .concat(),
    );
    assert_proven(&drill, "overlay", 0);
    assert_eq!(drill.report["exec"]["exit_code"], 0);
    let dump = fs::read_dir(dumps.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name().unwrap().to_string_lossy().starts_with("app_")
                && p.extension().is_some_and(|e| e == "dump")
        })
        .unwrap_or_else(|| {
            panic!(
                "pgback wrote no app dump: {:?}",
                fs::read_dir(dumps.path()).unwrap().collect::<Vec<_>>()
            )
        });
    // The rows of the dump, read by pg_restore without a server: pg_restore 17+ cannot load
    // into 10-16 (it sets transaction_timeout), and what is checked is what the dump holds.
    let rows = TestCommand::program(&source, cluster::pg_binaries().client_tool("pg_restore"))
        .args(["--data-only", "--table=orders", "-f", "-"])
        .arg(&dump)
        .run();
    rows.assert_ok("pg_restore -f -");
    let copied: Vec<&str> = rows
        .stdout
        .lines()
        .skip_while(|line| !line.starts_with("COPY public.orders "))
        .skip(1)
        .take_while(|line| *line != "\\.")
        .collect();
    assert_eq!(
        copied,
        ["1\tbefore pgpre", "2\tbetween pgpre and pgpost"],
        "the dump holds the rows committed before pgpost, and none after\n{}",
        rows.stdout
    );
}
