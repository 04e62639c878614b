//! The hook recipes of `examples/`, run as written on real file systems (as root: loop
//! devices, btrfs, XFS with reflink), each under a pgbench load, each ending with a restore
//! that `pgdrill` proves: a row committed between pgpre and pgpost is there, and so is every
//! pgbench transaction committed before pgpost. Callers' time limits are the runs' limits,
//! and the hooks run from `/` as callers start them. docs/hook-pair.md's "Callers" section points
//! here.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cluster::{self, Cluster};
use crate::matrix::drill::{
    assert_proven, backup_args, btrfs, loaded_source, pgdrill, proof_queries, PROGRAM_LIMIT,
};
use crate::util::{self, LoopFs, TestCommand};

/// Moves the live data directory of `source` (stopped meanwhile) to `dir/data` and leaves a
/// link in its place: from then on the server writes onto the file system under test.
fn move_data_dir(source: &mut Cluster, dir: &Path) -> PathBuf {
    let live = source.data_dir().to_path_buf();
    let moved = dir.join("data");
    source.stop();
    util::tool("mv", &[live.as_ref(), moved.as_ref()]);
    symlink(&moved, &live).unwrap_or_else(|e| panic!("linking {}: {e}", live.display()));
    source.restart();
    moved
}

/// A test shim on `PATH` in front of one program a recipe calls: it commits the row
/// `marker(note = tag)` and records how many pgbench transactions were committed, before
/// (or after) running the real program. That is how a test commits a row between pgpre and
/// pgpost of a recipe that makes both calls itself.
struct Between {
    dir: tempfile::TempDir,
    tag: String,
}

impl Between {
    /// Before `program` runs (`pgpost`).
    fn before(program: &str, tag: &str) -> Between {
        Between::shim(program, tag, true)
    }

    /// After `program` has run and succeeded (the snapshot command under `pgpre --exec`).
    fn after(program: &str, tag: &str) -> Between {
        Between::shim(program, tag, false)
    }

    fn shim(program: &str, tag: &str, before: bool) -> Between {
        let dir = cluster::scratch_dir();
        let real = which(program);
        let psql = format!(
            "{} -XAtq -v ON_ERROR_STOP=1 -c \"INSERT INTO marker VALUES ('{tag}')\" \
             -c 'SELECT count(*) FROM pgbench_history' > {}",
            cluster::pg_binaries().client_tool("psql").display(),
            dir.path().join("committed").display()
        );
        let body = if before {
            format!("{psql} || exit 1\nexec {} \"$@\"\n", real.display())
        } else {
            format!("{} \"$@\" || exit\n{psql}\n", real.display())
        };
        let shim = dir.path().join(program);
        fs::write(&shim, format!("#!/bin/sh\n{body}")).unwrap();
        fs::set_permissions(&shim, fs::Permissions::from_mode(0o755)).unwrap();
        Between {
            dir,
            tag: tag.to_string(),
        }
    }

    /// `PATH` with the shim first, then our binaries.
    fn path(&self) -> std::ffi::OsString {
        let mut dirs = vec![self.dir.path().to_path_buf()];
        dirs.extend(std::env::split_paths(&util::path_with_binaries()));
        std::env::join_paths(dirs).unwrap()
    }

    /// The pgbench transactions committed when the shim ran.
    fn committed(&self) -> i64 {
        let path = self.dir.path().join("committed");
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("the shim never ran ({}: {e})", path.display()));
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{text:?} from the shim: {e}"))
    }
}

/// Where `program` is: one of our binaries, else the first on `PATH`.
fn which(program: &str) -> PathBuf {
    if ["pgpre", "pgpost", "pgback", "pgdrill"].contains(&program) {
        return util::binary(program);
    }
    std::env::split_paths(&util::path_with_binaries())
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
}

/// Runs pgdrill on `data` with `label` and the source's archive, and asserts the restore
/// holds the row `tag` and at least `committed` pgbench transactions, consistently.
fn prove(source: &Cluster, data: &Path, label: &Path, tag: &str, committed: i64) {
    let tmp = cluster::scratch_dir();
    let mut queries = proof_queries(committed);
    queries[0] = format!("SELECT count(*) = 1 FROM marker WHERE note = '{tag}'");
    let mut args = backup_args(data, label, source.archive_dir());
    for query in &queries {
        args.extend(["--sql", query.as_str()]);
    }
    let drill = pgdrill(source, tmp.path(), &args);
    assert_proven(&drill, "overlay", queries.len());
}

/// The recipe's `examples/` script against `source`, from `/`, with `between`'s `PATH`.
fn recipe(source: &Cluster, name: &str, between: &Between) -> TestCommand {
    TestCommand::example(source, name)
        .env("PATH", between.path())
        .current_dir("/")
        .limit(PROGRAM_LIMIT)
}

/// A btrfs with the subvolume `pg` holding the live data directory of a loaded source, and
/// the directory for snapshots. The file system comes first, so that it is dropped after
/// the source's server stopped.
fn btrfs_source() -> (LoopFs, Cluster, PathBuf, PathBuf) {
    let disk = LoopFs::btrfs("1G");
    let mut source = loaded_source(1);
    let volume = disk.mount().join("pg");
    let snapshots = disk.mount().join("snapshots");
    btrfs(&["subvolume".as_ref(), "create".as_ref(), volume.as_ref()]);
    move_data_dir(&mut source, &volume);
    (disk, source, volume, snapshots)
}

#[test]
fn btrfs_snapshot_recipe_restores_and_a_failed_snapshot_ends_the_backup() {
    let (_disk, source, volume, snapshots) = btrfs_source();
    let labels = cluster::scratch_dir();

    let between = Between::before("pgpost", "btrfs two-call");
    let load = source.start_pgbench_load(2, 1);
    // examples/btrfs-snapshot taking the snapshot `nightly`, its labels into `label_dir`.
    let snapshot_nightly = |label_dir: &str| {
        recipe(&source, "btrfs-snapshot", &between)
            .env("PG_VOLUME", &volume)
            .env("SNAPSHOT_DIR", &snapshots)
            .env("SNAPSHOT_NAME", "nightly")
            .env("LABEL_DIR", labels.path().join(label_dir))
            .run()
    };
    let run = snapshot_nightly("nightly");
    load.stop();
    run.assert_ok("examples/btrfs-snapshot");
    assert!(run.stdout.starts_with("START WAL LOCATION: "), "{run}");
    let data = snapshots.join("nightly/data");
    assert!(
        fs::write(data.join("probe"), "x").is_err(),
        "the snapshot is read-only"
    );
    let label = labels.path().join("nightly/backup_label");
    assert_eq!(fs::read_to_string(&label).unwrap(), run.stdout);
    prove(&source, &data, &label, &between.tag, between.committed());

    // The same name again: the snapshot fails, the recipe exits non-zero, and the backup
    // it started is not left held.
    let run = snapshot_nightly("again");
    assert_ne!(run.code, 0, "{run}");
    assert_ne!(util::backup_state(&source), "running", "{run}");
    assert!(!labels.path().join("again/backup_label").exists());
}

/// examples/btrfs-standby-snapshot: PG* at a streaming standby whose data directory is a btrfs
/// subvolume, pgbench on the primary, `SAFE_BACKUP_PRIMARY` so pgpost switches the primary's
/// WAL; the snapshot restores with the label (BACKUP FROM: standby) and pgdrill proves it.
#[test]
fn btrfs_standby_snapshot_recipe_restores() {
    let disk = LoopFs::btrfs("1G");
    let mut primary = loaded_source(1);
    let mut standby = primary.start_standby();
    let volume = disk.mount().join("pg");
    let snapshots = disk.mount().join("snapshots");
    btrfs(&["subvolume".as_ref(), "create".as_ref(), volume.as_ref()]);
    move_data_dir(&mut standby, &volume);
    let tag = "before the standby snapshot";
    primary.psql(&format!("INSERT INTO marker VALUES ('{tag}')"));
    // The restartpoint of pgpre's start then flushes everything replayed so far.
    primary.psql("CHECKPOINT");
    crate::matrix::standby::wait_for_replay(&primary, &standby);
    let committed: i64 = standby
        .psql("SELECT count(*) FROM pgbench_history")
        .parse()
        .unwrap();
    let labels = cluster::scratch_dir();
    let state = cluster::scratch_dir();
    let load = primary.start_pgbench_load(2, 1);
    let run = TestCommand::example(&standby, "btrfs-standby-snapshot")
        .current_dir("/")
        .limit(PROGRAM_LIMIT)
        .env("PG_VOLUME", &volume)
        .env("SNAPSHOT_DIR", &snapshots)
        .env("SNAPSHOT_NAME", "nightly")
        .env("LABEL_DIR", labels.path())
        .env("WAL_ARCHIVE", primary.archive_dir())
        .env("SAFE_BACKUP_PRIMARY", primary.conninfo_socket())
        .env("SAFE_BACKUP_STATE_DIR", state.path().join("state"))
        .run();
    load.stop();
    run.assert_ok("examples/btrfs-standby-snapshot");
    assert!(run.stdout.contains("BACKUP FROM: standby\n"), "{run}");
    let label = labels.path().join("backup_label");
    assert_eq!(fs::read_to_string(&label).unwrap(), run.stdout);
    prove(
        &primary,
        &snapshots.join("nightly/data"),
        &label,
        tag,
        committed,
    );
}

#[test]
fn btrfs_snapshot_exec_recipe_restores_and_a_failed_snapshot_fails_the_backup() {
    let (_disk, source, volume, snapshots) = btrfs_source();
    let labels = cluster::scratch_dir();
    let exec = |name: &str, between: &Between| {
        recipe(&source, "btrfs-snapshot-exec", between)
            .env("PG_VOLUME", &volume)
            .env("SNAPSHOT_DIR", &snapshots)
            .env("SNAPSHOT_NAME", name)
            .env("LABEL_DIR", labels.path().join(name))
            .run()
    };

    // The row is committed after the snapshot, while pgpre --exec still holds the backup.
    let between = Between::after("btrfs", "btrfs exec");
    let load = source.start_pgbench_load(2, 1);
    let run = exec("nightly", &between);
    load.stop();
    run.assert_ok("examples/btrfs-snapshot-exec");
    assert!(run.stdout.starts_with("START WAL LOCATION: "), "{run}");
    let label = labels.path().join("nightly/backup_label");
    let first_label = run.stdout;
    assert_eq!(fs::read_to_string(&label).unwrap(), first_label);
    prove(
        &source,
        &snapshots.join("nightly/data"),
        &label,
        &between.tag,
        between.committed(),
    );

    // The same name again: the snapshot fails, so does the backup (exit 9), and backup
    // mode has ended.
    let run = exec("nightly", &between);
    assert_eq!(run.code, 9, "{run}");
    assert_eq!(util::backup_state(&source), "failed", "{run}");
    assert!(!util::holding_session_connected(&source), "{run}");
    assert_eq!(
        fs::read_to_string(&label).unwrap(),
        first_label,
        "a failed backup wrote its label"
    );
}

#[test]
fn fsfreeze_recipe_with_an_image_reflink_restores_and_never_leaves_the_disk_frozen() {
    // The disk images live on an XFS with reflink: a reflink copy of the frozen disk's
    // image is the storage array's snapshot.
    let array = LoopFs::xfs_reflink("3G");
    let mounts = cluster::scratch_dir();
    let disk = LoopFs::xfs_in(
        &array.mount().join("pg.img"),
        &mounts.path().join("pg"),
        "1G",
    );
    let mut source = loaded_source(1);
    move_data_dir(&mut source, disk.mount());
    let labels = cluster::scratch_dir();
    let snapshot_image = array.mount().join("pg-snap.img");

    let between = Between::before("pgpost", "fsfreeze");
    let load = source.start_pgbench_load(2, 1);
    let run = recipe(&source, "fsfreeze-snapshot", &between)
        .env("PG_MOUNT", disk.mount())
        .env("LABEL_DIR", labels.path())
        .args(["cp", "--reflink=always"])
        .args([disk.image(), &snapshot_image])
        .run();
    load.stop();
    run.assert_ok("examples/fsfreeze-snapshot");
    // Mounted as an array's snapshot would be: writable, so that XFS replays its log (a
    // frozen XFS needs that; read-only it refuses), under a new UUID.
    let snapshot = LoopFs::open(&snapshot_image, &mounts.path().join("snap"), "nouuid");
    prove(
        &source,
        &snapshot.mount().join("data"),
        &labels.path().join("backup_label"),
        &between.tag,
        between.committed(),
    );

    // A snapshot command that fails: non-zero exit, the disk thawed (a second thaw is
    // refused), and no backup left held.
    let run = recipe(&source, "fsfreeze-snapshot", &between)
        .env("PG_MOUNT", disk.mount())
        .env("LABEL_DIR", labels.path().join("failed"))
        .arg("false")
        .run();
    assert_ne!(run.code, 0, "{run}");
    let thaw = TestCommand::tool("fsfreeze")
        .arg("--unfreeze")
        .arg(disk.mount())
        .limit(util::TOOL_LIMIT)
        .run();
    assert_ne!(
        thaw.code,
        0,
        "the recipe left {} frozen",
        disk.mount().display()
    );
    assert_ne!(util::backup_state(&source), "running", "{run}");
}

#[test]
fn copy_recipe_by_rsync_twice_and_by_cp_restores() {
    let source = loaded_source(1);
    let copies = cluster::scratch_dir();
    for (round, (with, into)) in [("rsync", "rsynced"), ("rsync", "rsynced"), ("cp", "copied")]
        .into_iter()
        .enumerate()
    {
        // The second rsync updates the first one's copy in place, old label and all.
        let copy = copies.path().join(into);
        let between = Between::before("pgpost", &format!("copy {round}"));
        let load = source.start_pgbench_load(2, 1);
        let run = recipe(&source, "copy-to-directory", &between)
            .env("PGDATA", source.data_dir())
            .env("COPY_DIR", &copy)
            .env("COPY_WITH", with)
            .run();
        load.stop();
        run.assert_ok(&format!("examples/copy-to-directory with {with}"));
        assert!(!copy.join("postmaster.pid").exists());
        prove(
            &source,
            &copy,
            &copy.join("backup_label"),
            &between.tag,
            between.committed(),
        );
    }
}

/// Runs Debian's `/etc/qemu/fsfreeze-hook` from a directory of its own (it finds its
/// `fsfreeze-hook.d` beside itself) with `phase`, as qemu-guest-agent would.
fn fsfreeze_hook(source: &Cluster, hook: &Path, labels: &Path, phase: &str) {
    TestCommand::program(source, hook)
        .arg(phase)
        .env("PATH", util::path_with_binaries())
        .env("LABEL_DIR", labels)
        .current_dir("/")
        .limit(PROGRAM_LIMIT)
        .run()
        .assert_ok(&format!("fsfreeze-hook {phase}"));
}

#[test]
fn qemu_fsfreeze_hook_runs_pgpre_on_freeze_and_pgpost_on_thaw() {
    const DEBIAN_HOOK: &str = "/etc/qemu/fsfreeze-hook";
    const LOG: &str = "/var/log/qga-fsfreeze-hook.log";
    assert!(
        Path::new(DEBIAN_HOOK).is_file(),
        "{DEBIAN_HOOK} is missing: scripts/test installs qemu-guest-agent"
    );
    let source = loaded_source(1);
    let hooks = cluster::scratch_dir();
    let hook = hooks.path().join("fsfreeze-hook");
    symlink(DEBIAN_HOOK, &hook).unwrap();
    let hook_d = hooks.path().join("fsfreeze-hook.d");
    fs::create_dir(&hook_d).unwrap();
    let ours = hook_d.join("safe-backup");
    fs::copy(util::example("snapshot-hook"), &ours).unwrap();
    fs::set_permissions(&ours, fs::Permissions::from_mode(0o755)).unwrap();
    let logged_before = fs::read(LOG).map(|log| log.len()).unwrap_or(0);
    let labels = cluster::scratch_dir();
    let copies = cluster::scratch_dir();
    let copy = copies.path().join("data");

    let load = source.start_pgbench_load(2, 1);
    fsfreeze_hook(&source, &hook, labels.path(), "freeze");
    // The hypervisor's snapshot, while the guest's file systems are frozen.
    source.copy_data_dir(&copy);
    source.psql("INSERT INTO marker VALUES ('qemu')");
    let committed = source.pgbench_history_rows();
    fsfreeze_hook(&source, &hook, labels.path(), "thaw");
    load.stop();

    // The hook itself always exits 0: its log is the only record.
    let log = fs::read(LOG).unwrap_or_default();
    let ours_logged: String =
        String::from_utf8_lossy(&log[logged_before.min(log.len())..]).into_owned();
    let ran = ours.display().to_string();
    for phase in ["freeze", "thaw"] {
        assert!(
            ours_logged.contains(&format!("execute {ran} {phase}")),
            "{LOG} lacks the {phase} run:\n{ours_logged}"
        );
    }
    assert_eq!(
        ours_logged
            .matches(&format!("{ran} finished with status=0"))
            .count(),
        2,
        "{LOG}:\n{ours_logged}"
    );
    assert!(
        ours_logged.contains("START WAL LOCATION: "),
        "pgpost's label goes to the log:\n{ours_logged}"
    );
    let label = labels.path().join("backup_label");
    prove(&source, &copy, &label, "qemu", committed);
}

/// The `command:` arrays of `examples/kubernetes-hooks.yaml`, in order, with the label
/// volume `/backup-labels` mapped to `labels`.
fn kubernetes_commands(labels: &Path) -> Vec<Vec<String>> {
    let yaml = fs::read_to_string(util::example("kubernetes-hooks.yaml")).unwrap();
    yaml.lines()
        .filter_map(|line| line.split_once("command: ").map(|(_, array)| array.trim()))
        .map(|array| {
            let array = array.trim_matches('\'');
            let argv: Vec<String> = serde_json::from_str(array)
                .unwrap_or_else(|e| panic!("not a JSON array of strings ({e}): {array}"));
            argv.into_iter()
                .map(|arg| match arg.strip_prefix("/backup-labels") {
                    Some(rest) => format!("{}{rest}", labels.display()),
                    None => arg,
                })
                .collect()
        })
        .collect()
}

/// One exec hook: argv exec'd without a shell, from `/`, within `limit`.
fn exec_hook(source: &Cluster, argv: &[String], limit: Duration) -> util::Run {
    let run = TestCommand::program(source, &argv[0])
        .args(&argv[1..])
        .env("PATH", util::path_with_binaries())
        .current_dir("/")
        .limit(limit)
        .run();
    run.assert_ok(&argv.join(" "));
    run
}

#[test]
fn kubernetes_exec_hooks_run_without_a_shell_within_their_limits() {
    let source = loaded_source(1);
    let labels = cluster::scratch_dir();
    let commands = kubernetes_commands(labels.path());
    assert_eq!(
        commands.len(),
        4,
        "Velero pre and post, Kasten pre and post: {commands:?}"
    );
    // Velero: 30 s each; Kasten (Kanister KubeExec): 20 min.
    let callers = [
        ("velero", Duration::from_secs(30)),
        ("kasten", Duration::from_secs(20 * 60)),
    ];
    for ((caller, limit), hooks) in callers.into_iter().zip(commands.chunks(2)) {
        let (pre, post) = (&hooks[0], &hooks[1]);
        assert!(pre[0] == "pgpre" && post[0] == "pgpost", "{hooks:?}");
        let copies = cluster::scratch_dir();
        let copy = copies.path().join("data");
        let load = source.start_pgbench_load(2, 1);
        exec_hook(&source, pre, limit);
        source.copy_data_dir(&copy);
        source.psql(&format!("INSERT INTO marker VALUES ('{caller}')"));
        let committed = source.pgbench_history_rows();
        let run = exec_hook(&source, post, limit);
        load.stop();
        let label = labels.path().join(caller).join("backup_label");
        assert_eq!(fs::read_to_string(&label).unwrap(), run.stdout);
        prove(&source, &copy, &label, caller, committed);
    }
}

/// `examples/snapshot-hook` run the way `caller` runs its pre or post script: with `phase`
/// as its argument, or (Veeam) through a link named after the phase, without arguments.
fn snapshot_hook(source: &Cluster, links: &Path, phase: &str, by_name: bool) -> TestCommand {
    let command = if by_name {
        let link = links.join(phase);
        if !link.exists() {
            symlink(util::example("snapshot-hook"), &link).unwrap();
        }
        TestCommand::program(source, link).current_dir("/tmp")
    } else {
        TestCommand::example(source, "snapshot-hook")
            .arg(phase)
            .current_dir("/")
    };
    command.env("PATH", util::path_with_binaries())
}

#[test]
fn pre_and_post_script_callers_within_their_limits_and_a_skipped_post_thaw() {
    let source = loaded_source(1);
    let links = cluster::scratch_dir();
    let labels = cluster::scratch_dir();
    // (caller, pre phase, post phase, by the link's name, time limit of each script)
    let callers = [
        ("aws-dlm", "pre-script", "post-script", false, 10),
        ("azure", "pre", "post", false, 30),
        ("netapp", "pre", "post", false, 60),
        ("veeam", "pre-freeze", "post-thaw", true, 600),
    ];
    snapshot_hook(&source, links.path(), "dry-run", false)
        .limit(Duration::from_secs(10))
        .run()
        .assert_ok("AWS DLM's dry-run");
    for (caller, pre, post, by_name, limit) in callers {
        let limit = Duration::from_secs(limit);
        let label_dir = labels.path().join(caller);
        let copies = cluster::scratch_dir();
        let copy = copies.path().join("data");
        let load = source.start_pgbench_load(2, 1);
        snapshot_hook(&source, links.path(), pre, by_name)
            .limit(limit)
            .run()
            .assert_ok(&format!("{caller} {pre}"));
        source.copy_data_dir(&copy);
        source.psql(&format!("INSERT INTO marker VALUES ('{caller}')"));
        let committed = source.pgbench_history_rows();
        let run = snapshot_hook(&source, links.path(), post, by_name)
            .env("LABEL_DIR", &label_dir)
            .limit(limit)
            .run();
        load.stop();
        run.assert_ok(&format!("{caller} {post}"));
        let label = label_dir.join("backup_label");
        assert_eq!(fs::read_to_string(&label).unwrap(), run.stdout);
        prove(&source, &copy, &label, caller, committed);
    }

    // Veeam skips post-thaw when it took no snapshot: the backup ends by itself after
    // backup_timeout, and the next pre-freeze starts a new one.
    snapshot_hook(&source, links.path(), "pre-freeze", true)
        .env("SAFE_BACKUP_BACKUP_TIMEOUT", "2")
        .limit(Duration::from_secs(600))
        .run()
        .assert_ok("veeam pre-freeze, post-thaw skipped");
    util::wait_for("the held backup to end by itself", PROGRAM_LIMIT, || {
        util::backup_state(&source) != "running"
    });
    for phase in ["pre-freeze", "post-thaw"] {
        snapshot_hook(&source, links.path(), phase, true)
            .env("LABEL_DIR", labels.path().join("veeam-next"))
            .limit(Duration::from_secs(600))
            .run()
            .assert_ok(&format!("veeam {phase} after a skipped post-thaw"));
    }
}
