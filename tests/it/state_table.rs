//! The state table as someone else may leave it (NULLs, unknown states, no backup_label), and
//! what -v does to the co-process's log.

use std::time::Duration;

use crate::cluster::{scratch_dir, Cluster, ClusterOptions};
use crate::util::{coprocesses, run, wait_for, Run, TestCommand};

/// A finished backup of the default name, so the table exists with a `complete` row.
fn cluster_with_a_complete_backup() -> Cluster {
    let cluster = Cluster::start(ClusterOptions::default());
    run(&cluster, "pgpre", &["--fast", "-l", "by hand"]).assert_ok("pgpre");
    run(&cluster, "pgpost", &[]).assert_ok("pgpost");
    cluster
}

fn assert_names(run: &Run, what: &str, needles: &[&str]) {
    for needle in needles {
        run.assert_stderr(needle);
    }
    assert_eq!(
        run.stderr.lines().count(),
        2,
        "{what}: one line + hint\n{run:#?}"
    );
}

#[test]
fn an_unknown_state_is_an_error_naming_it() {
    let cluster = cluster_with_a_complete_backup();
    // A newer tool (or a person) added a state this one does not know.
    cluster.psql("ALTER TYPE backup_state ADD VALUE 'paused'");
    cluster.psql("UPDATE backup SET state = 'paused'");
    let post = run(&cluster, "pgpost", &[]);
    post.assert_code(1, "pgpost on an unknown state");
    assert_names(&post, "pgpost", &["unknown state \"paused\"", "hint: "]);
    let list = run(&cluster, "pgpre", &["--list"]);
    list.assert_code(1, "pgpre --list on an unknown state");
    list.assert_stderr("unknown state \"paused\"");
    // pgpre does not take over a row it cannot read, and leaves it as it is.
    run(&cluster, "pgpre", &["--fast"])
        .assert_code(1, "pgpre on an unknown state")
        .assert_stderr("unknown state \"paused\"");
    assert_eq!(cluster.psql("SELECT state FROM backup"), "paused");
    assert!(coprocesses(&cluster).is_empty());
}

#[test]
fn a_null_state_is_an_error_naming_the_column() {
    let cluster = cluster_with_a_complete_backup();
    cluster.psql("ALTER TABLE backup ALTER COLUMN state DROP NOT NULL");
    cluster.psql("UPDATE backup SET state = NULL");
    let post = run(&cluster, "pgpost", &[]);
    post.assert_code(1, "pgpost on a NULL state");
    assert_names(&post, "pgpost", &["column state is NULL"]);
    run(&cluster, "pgpre", &["--list"])
        .assert_code(1, "pgpre --list on a NULL state")
        .assert_stderr("column state is NULL");
}

#[test]
fn a_complete_row_without_backup_label_is_an_error() {
    let cluster = cluster_with_a_complete_backup();
    cluster.psql("UPDATE backup SET backup_label = NULL");
    for args in [&["--fetch"][..], &["--fetch", "--json"]] {
        let post = run(&cluster, "pgpost", args);
        post.assert_code(1, "pgpost --fetch without backup_label");
        assert_eq!(post.stdout, "", "nothing printed: {post:#?}");
        assert_names(&post, "pgpost --fetch", &["backup_label is NULL"]);
    }
}

#[test]
fn verbose_reaches_the_coprocess_log() {
    let cluster = Cluster::start(ClusterOptions::default());
    let logs = scratch_dir();
    let mut levels = Vec::new();
    for (run_number, verbose) in [&[][..], &["-v"], &["-vv"]].into_iter().enumerate() {
        let log_file = logs.path().join(format!("coprocess{run_number}.log"));
        // Over TCP with a password, which no log level may show.
        TestCommand::new(&cluster, "pgpre")
            .env("PGHOST", "127.0.0.1")
            .env("PGPASSWORD", cluster.password())
            .args(["--fast", "--log-file", log_file.to_str().unwrap()])
            .args(verbose)
            .run()
            .assert_ok("pgpre");
        run(&cluster, "pgpost", &[]).assert_ok("pgpost");
        wait_for("the co-process to exit", Duration::from_secs(10), || {
            coprocesses(&cluster).is_empty()
        });
        let log = std::fs::read_to_string(&log_file).expect("co-process log");
        assert!(log.contains(" INFO "), "{log}");
        assert!(!log.contains(cluster.password()), "{log}");
        levels.push((log.contains(" DEBUG "), log.contains(" TRACE ")));
    }
    assert_eq!(
        levels,
        [(false, false), (true, false), (true, true)],
        "-v adds debug lines to the co-process log, -vv trace lines"
    );
}
