//! The restore proof: a hot copy taken between `pgpre` and `pgpost` under a write load recovers
//! from the WAL archive into a consistent cluster that holds every row committed before `pgpost`.
//!
//! Each test runs the hook sequence a snapshot tool would: `pgpre --fast`, `cp -a` of the data
//! directory (and of the tablespace directory), a marker row committed after the copy, `pgpost
//! --output-dir <copy>`; then it pushes the marker row's WAL through `archive_command`, starts
//! the copy with `restore_command` + `recovery.signal` and checks `pg_amcheck`, the load's sum
//! invariant and the marker row. Every wait is bounded and panics with the programs' output.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::cluster::{self, Cluster, ClusterOptions};
use crate::util::TestCommand;

/// How long `pgpre` and `pgpost` may run before the test kills them and fails.
const HOOK_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the archiver may take to archive the segment holding the marker row.
const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// `pgpre --fast` with a co-process log in `work_dir`; asserts exit 0 and returns the start LSN.
fn run_pgpre(source: &Cluster, work_dir: &Path) -> String {
    let log_file = work_dir.join("coprocess.log");
    let run = TestCommand::new(source, "pgpre")
        .arg("--fast")
        .arg("--log-file")
        .arg(&log_file)
        .limit(HOOK_TIMEOUT)
        .run();
    let co_process_log = fs::read_to_string(&log_file).unwrap_or_default();
    assert!(
        run.code == 0,
        "pgpre --fast failed: {run}\n--- co-process log ---\n{co_process_log}"
    );
    let start_lsn = run.stdout.trim().to_string();
    assert!(
        is_lsn(&start_lsn),
        "pgpre printed {start_lsn:?}, not an LSN: {run}"
    );
    start_lsn
}

/// `pgpost --output-dir <copy>`; asserts exit 0, a `backup_label` on stdout that names
/// `start_lsn`, and the same bytes in `<copy>/backup_label` (mode 0600). Returns stdout.
fn run_pgpost(source: &Cluster, copy: &Path, start_lsn: &str, work_dir: &Path) -> String {
    let run = TestCommand::new(source, "pgpost")
        .arg("--output-dir")
        .arg(copy)
        .args(["--stop-timeout", &HOOK_TIMEOUT.as_secs().to_string()])
        .limit(HOOK_TIMEOUT + Duration::from_secs(10))
        .run();
    let co_process_log = fs::read_to_string(work_dir.join("coprocess.log")).unwrap_or_default();
    assert!(
        run.code == 0,
        "pgpost --output-dir {} failed: {run}\n--- co-process log ---\n{co_process_log}",
        copy.display()
    );
    assert!(
        run.stdout.starts_with("START WAL LOCATION"),
        "pgpost's stdout is not a backup_label: {run}"
    );
    assert!(
        run.stdout
            .starts_with(&format!("START WAL LOCATION: {start_lsn} ")),
        "backup_label does not start at pgpre's LSN {start_lsn}: {run}"
    );
    let label_path = copy.join("backup_label");
    let written = fs::read_to_string(&label_path)
        .unwrap_or_else(|e| panic!("pgpost did not write {}: {e}", label_path.display()));
    assert_eq!(
        written,
        run.stdout,
        "{} differs from pgpost's stdout",
        label_path.display()
    );
    assert_mode_0600(&label_path);
    run.stdout
}

fn assert_mode_0600(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = fs::metadata(path)
        .unwrap_or_else(|e| panic!("reading metadata of {}: {e}", path.display()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{} has mode {mode:o}", path.display());
}

/// `X/Y` with hexadecimal halves, as PostgreSQL prints a pg_lsn.
pub(crate) fn is_lsn(text: &str) -> bool {
    let is_hex = |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_hexdigit());
    text.split_once('/')
        .is_some_and(|(high, low)| is_hex(high) && is_hex(low))
}

/// Close the current WAL segment (`pg_switch_wal()`) and wait until the archiver has archived
/// it, so that a restore from the archive replays everything committed so far.
pub(crate) fn switch_wal_and_wait_for_archive(source: &Cluster) {
    let segment = source.psql("SELECT pg_walfile_name(pg_switch_wal())");
    assert_eq!(segment.len(), 24, "unexpected WAL file name {segment:?}");
    let deadline = Instant::now() + ARCHIVE_TIMEOUT;
    loop {
        let last_archived =
            source.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
        // The archiver works in order; a later segment (or `.backup` file of a later
        // segment) being archived means ours was. `<segment>.<offset>.backup` is not ours.
        let done = last_archived == segment
            || last_archived
                .get(..24)
                .is_some_and(|prefix| prefix > segment.as_str());
        if done {
            assert!(
                source.archive_dir().join(&segment).is_file(),
                "pg_stat_archiver reports {segment} archived, but it is not in {}",
                source.archive_dir().display()
            );
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "the archiver did not archive WAL segment {segment} within {} s; pg_stat_archiver: {}",
                ARCHIVE_TIMEOUT.as_secs(),
                source.psql(
                    "SELECT format('archived_count=%s last_archived_wal=%s failed_count=%s last_failed_wal=%s', \
                     archived_count, last_archived_wal, failed_count, last_failed_wal) FROM pg_stat_archiver"
                )
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The checks every restored copy must pass: recovery went through `backup_label` (renamed
/// to `backup_label.old` at its end, byte for byte what pgpost printed), `pg_amcheck` is
/// clean, the pgbench invariant holds with at least `committed_transactions`, and the marker
/// row is there.
pub(crate) fn check_restored(
    restored: &Cluster,
    copy: &Path,
    backup_label: &str,
    committed_transactions: i64,
) {
    let used_label = copy.join("backup_label.old");
    assert_eq!(
        fs::read_to_string(&used_label)
            .unwrap_or_else(|e| panic!("recovery left no {}: {e}", used_label.display())),
        backup_label,
        "the restored server did not recover from pgpost's backup_label"
    );
    assert!(!copy.join("backup_label").exists());
    restored.pg_amcheck();
    let transactions = restored.check_pgbench_invariant();
    assert!(
        transactions >= committed_transactions,
        "the restored copy has {transactions} pgbench transactions, but {committed_transactions} \
         were committed before pgpost"
    );
    assert_eq!(
        restored.psql("SELECT id, note FROM marker"),
        "1|committed after the copy, before pgpost",
        "the marker row committed before pgpost is missing from the restored copy"
    );
}

#[test]
fn hot_copy_between_pgpre_and_pgpost_restores_under_pgbench_load() {
    let mut source = Cluster::start(ClusterOptions::default().initdb_arg("--data-checksums"));
    source.pgbench_init(5);
    source.psql("CREATE TABLE marker(id int, note text)");
    let work = cluster::scratch_dir();
    let scratch = cluster::scratch_dir();
    let copy = scratch.path().join("data");

    let load = source.start_pgbench_load(4, 2);
    let start_lsn = run_pgpre(&source, work.path());
    source.copy_data_dir(&copy);
    source.psql("INSERT INTO marker VALUES (1, 'committed after the copy, before pgpost')");
    let committed_before_pgpost = source.pgbench_history_rows();
    let backup_label = run_pgpost(&source, &copy, &start_lsn, work.path());
    assert!(
        !copy.join("tablespace_map").exists(),
        "pgpost wrote a tablespace_map for a cluster without tablespaces"
    );
    load.stop();
    let source_transactions = source.check_pgbench_invariant();
    switch_wal_and_wait_for_archive(&source);

    let restored = Cluster::start_restored(&copy, source.archive_dir(), ClusterOptions::default());
    check_restored(&restored, &copy, &backup_label, committed_before_pgpost);
    assert!(
        restored.check_pgbench_invariant() <= source_transactions,
        "the restored copy has more transactions than the source ever committed"
    );

    // The source is untouched by its restored copy.
    source.stop();
    source.restart();
    assert_eq!(source.check_pgbench_invariant(), source_transactions);
}

/// One line of `tablespace_map`: `<oid> <path>` (the path may contain spaces).
fn parse_tablespace_map(map: &str) -> Vec<(String, String)> {
    map.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (oid, path) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("tablespace_map line {line:?} is not `<oid> <path>`"));
            (oid.to_string(), path.to_string())
        })
        .collect()
}

#[test]
fn hot_copy_with_a_relocated_tablespace_restores_under_load() {
    // Declared before the clusters, so they outlive the servers using them.
    let tablespace_dir = cluster::scratch_dir();
    let scratch = cluster::scratch_dir();
    let work = cluster::scratch_dir();
    let mut source = Cluster::start(ClusterOptions::default());
    source.pgbench_init(1);
    source.psql(&format!(
        "CREATE TABLESPACE ts LOCATION '{}'; \
         CREATE TABLE marker(id int, note text) TABLESPACE ts; \
         CREATE TABLE ts_accounts(id int PRIMARY KEY USING INDEX TABLESPACE ts, balance bigint NOT NULL) TABLESPACE ts; \
         CREATE TABLE ts_history(delta bigint NOT NULL) TABLESPACE ts; \
         INSERT INTO ts_accounts SELECT i, 0 FROM generate_series(1, 20000) i",
        tablespace_dir.path().display()
    ));
    let tablespace_oid = source.psql("SELECT oid FROM pg_tablespace WHERE spcname = 'ts'");
    let script = work.path().join("ts-load.sql");
    fs::write(
        &script,
        "\\set id random(1, 20000)\n\
         \\set delta random(-5000, 5000)\n\
         BEGIN;\n\
         UPDATE ts_accounts SET balance = balance + :delta WHERE id = :id;\n\
         INSERT INTO ts_history VALUES (:delta);\n\
         END;\n",
    )
    .expect("writing the custom pgbench script");
    let ts_invariant = "SELECT (SELECT sum(balance) FROM ts_accounts) = (SELECT coalesce(sum(delta), 0) FROM ts_history), \
                        (SELECT count(*) FROM ts_history)";

    let pgbench_load = source.start_pgbench_load(2, 1);
    let ts_load = source.start_pgbench(
        &["-c", "2", "-f", script.to_str().expect("script path")],
        "SELECT count(*) FROM ts_history",
    );
    let start_lsn = run_pgpre(&source, work.path());
    let copy = scratch.path().join("data");
    let relocated = scratch.path().join("ts");
    source.copy_data_dir(&copy);
    crate::cluster::copy_live_tree(tablespace_dir.path(), &relocated);
    source.psql("INSERT INTO marker VALUES (1, 'committed after the copy, before pgpost')");
    let committed_before_pgpost = source.pgbench_history_rows();
    let ts_committed_before_pgpost: i64 = source
        .psql("SELECT count(*) FROM ts_history")
        .parse()
        .expect("count(*) is a number");
    let backup_label = run_pgpost(&source, &copy, &start_lsn, work.path());
    ts_load.stop();
    pgbench_load.stop();

    // pgpost wrote the source's tablespace map; point it at the relocated copy. The copied
    // pg_tblspc/<oid> symlink still points at the live source tablespace: recovery must
    // replace it from tablespace_map (checked below).
    let map_path = copy.join("tablespace_map");
    let map = fs::read_to_string(&map_path)
        .unwrap_or_else(|e| panic!("pgpost wrote no {}: {e}", map_path.display()));
    assert_mode_0600(&map_path);
    let entries = parse_tablespace_map(&map);
    assert_eq!(
        entries,
        vec![(
            tablespace_oid.clone(),
            tablespace_dir.path().display().to_string()
        )],
        "unexpected tablespace_map {map:?}"
    );
    fs::write(
        &map_path,
        format!("{tablespace_oid} {}\n", relocated.display()),
    )
    .unwrap_or_else(|e| panic!("rewriting {}: {e}", map_path.display()));
    let source_ts_sum = source.psql(ts_invariant);
    assert!(
        source_ts_sum.starts_with("t|"),
        "source invariant broken: {source_ts_sum}"
    );
    switch_wal_and_wait_for_archive(&source);
    // The restored server must never reach the source's tablespace: stop the source.
    source.stop();

    let restored = Cluster::start_restored(&copy, source.archive_dir(), ClusterOptions::default());
    let link = copy.join("pg_tblspc").join(&tablespace_oid);
    assert_eq!(
        fs::read_link(&link)
            .unwrap_or_else(|e| panic!("reading the symlink {}: {e}", link.display())),
        relocated,
        "recovery did not point pg_tblspc/{tablespace_oid} at the relocated tablespace"
    );
    assert_eq!(
        restored.psql("SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'ts'"),
        relocated.display().to_string()
    );
    assert!(
        !copy.join("tablespace_map").exists(),
        "tablespace_map was not consumed"
    );
    check_restored(&restored, &copy, &backup_label, committed_before_pgpost);
    let restored_ts = restored.psql(ts_invariant);
    let (holds, rows) = restored_ts
        .split_once('|')
        .unwrap_or_else(|| panic!("unexpected invariant row {restored_ts:?}"));
    assert_eq!(
        holds, "t",
        "sum(balance) != sum(delta) in the restored tablespace"
    );
    let rows: i64 = rows.parse().expect("count(*) is a number");
    assert!(
        rows >= ts_committed_before_pgpost,
        "the restored tablespace has {rows} transactions, {ts_committed_before_pgpost} were committed before pgpost"
    );
    assert_eq!(restored.psql("SELECT count(*) FROM ts_accounts"), "20000");
    // Writes land in the relocated tablespace.
    restored.psql("INSERT INTO ts_history SELECT 0 FROM generate_series(1, 1000); CHECKPOINT");
}

#[test]
fn hot_copy_of_a_cluster_whose_pg_wal_is_a_symlink_restores() {
    let wal_home = cluster::scratch_dir();
    let wal_dir = wal_home.path().join("wal");
    let mut source = Cluster::start(
        ClusterOptions::default().initdb_arg(format!("--waldir={}", wal_dir.display())),
    );
    assert!(
        fs::symlink_metadata(source.data_dir().join("pg_wal"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "initdb --waldir makes pg_wal a symlink"
    );
    source.pgbench_init(2);
    source.psql("CREATE TABLE marker(id int, note text)");
    let work = cluster::scratch_dir();
    let scratch = cluster::scratch_dir();
    let copy = scratch.path().join("data");

    let load = source.start_pgbench_load(2, 1);
    let start_lsn = run_pgpre(&source, work.path());
    source.copy_data_dir(&copy);
    // The copied link points at the live server's WAL: a snapshot of the data
    // volume alone has no pg_wal, so replace it with an empty directory and let
    // recovery take every segment from the archive.
    let copied_wal = copy.join("pg_wal");
    assert!(fs::symlink_metadata(&copied_wal)
        .unwrap()
        .file_type()
        .is_symlink());
    fs::remove_file(&copied_wal).unwrap();
    fs::create_dir(&copied_wal).unwrap();
    source.psql("INSERT INTO marker VALUES (1, 'committed after the copy, before pgpost')");
    let committed_before_pgpost = source.pgbench_history_rows();
    let backup_label = run_pgpost(&source, &copy, &start_lsn, work.path());
    load.stop();
    switch_wal_and_wait_for_archive(&source);

    let restored = Cluster::start_restored(&copy, source.archive_dir(), ClusterOptions::default());
    check_restored(&restored, &copy, &backup_label, committed_before_pgpost);
    source.stop();
}
