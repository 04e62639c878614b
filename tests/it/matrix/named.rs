//! Named concurrent backups: one row per name, each pgpost ends only its own, and the bash original's table upgraded in place.

use std::time::Duration;

use crate::cluster::{Cluster, ClusterOptions};
use crate::util::{backup_row, coprocesses, run, wait_for, TestCommand};

#[test]
fn two_names_run_at_once_and_each_pgpost_ends_only_its_own() {
    let cluster = Cluster::start(ClusterOptions::default());
    run(
        &cluster,
        "pgpre",
        &["--fast", "--name", "vol1", "-l", "first volume"],
    )
    .assert_ok("pgpre vol1");
    run(
        &cluster,
        "pgpre",
        &["--fast", "--name", "vol2", "-l", "second volume"],
    )
    .assert_ok("pgpre vol2");
    assert_eq!(coprocesses(&cluster).len(), 2);
    assert_eq!(
        cluster.psql("SELECT string_agg(name || ' ' || state, ',' ORDER BY name) FROM backup"),
        "vol1 running,vol2 running"
    );
    let list = run(&cluster, "pgpre", &["--list"]);
    list.assert_ok("pgpre --list");
    assert!(list.stdout.contains("vol1\trunning\talive\t"), "{list:#?}");
    assert!(list.stdout.contains("vol2\trunning\talive\t"), "{list:#?}");
    let post = run(&cluster, "pgpost", &["--name", "vol1"]);
    post.assert_ok("pgpost vol1");
    assert!(post.stdout.contains("LABEL: first volume\n"), "{post:#?}");
    assert_eq!(
        cluster.psql("SELECT state FROM backup WHERE name = 'vol2'"),
        "running"
    );
    run(&cluster, "pgpost", &["--name", "vol1"]).assert_code(5, "vol1 is already complete");
    run(&cluster, "pgpost", &[]).assert_code(5, "no default backup");
    let post = run(&cluster, "pgpost", &["--name", "vol2"]);
    post.assert_ok("pgpost vol2");
    assert!(post.stdout.contains("LABEL: second volume\n"));
    assert_eq!(
        cluster
            .psql("SELECT string_agg(name || ' ' || state, ',' ORDER BY name) FROM backup_history"),
        "vol1 complete,vol2 complete"
    );
    run(&cluster, "pgpre", &["--name", "no spaces"]).assert_code(2, "bad name");
}

#[test]
fn the_bash_originals_table_is_upgraded_without_losing_its_row() {
    let cluster = Cluster::start(ClusterOptions::default());
    // Exactly what safe-backup's pgpre.sh creates, with a finished backup in it.
    cluster.psql(
        "CREATE TYPE backup_state AS ENUM ('running', 'done', 'complete', 'failed'); \
         CREATE TABLE backup (id integer PRIMARY KEY DEFAULT 1, state backup_state NOT NULL, \
           pid integer, backup_label text, tablespace_map text); \
         CREATE UNIQUE INDEX ON backup ((1)); \
         INSERT INTO backup (state, pid, backup_label) VALUES ('complete', 42, 'START WAL LOCATION: bash');",
    );
    run(&cluster, "pgpost", &[])
        .assert_code(5, "pgpost on the bash table")
        .assert_stderr("made by safe-backup's pgpre.sh");
    run(&cluster, "pgpre", &["--fast", "--name", "nightly"]).assert_ok("pgpre upgrades");
    assert_eq!(
        cluster.psql("SELECT id || ' ' || name || ' ' || state || ' ' || backup_label FROM backup WHERE id = 1"),
        "1 default complete START WAL LOCATION: bash"
    );
    assert_eq!(
        cluster.psql("SELECT id FROM backup WHERE name = 'nightly'"),
        "2"
    );
    run(&cluster, "pgpost", &["--name", "nightly"]).assert_ok("pgpost nightly");
    // The default name now works on the upgraded table too.
    run(&cluster, "pgpre", &["--fast"]).assert_ok("pgpre default");
    run(&cluster, "pgpost", &[]).assert_ok("pgpost default");
    assert_eq!(
        cluster.psql("SELECT id FROM backup WHERE name = 'default'"),
        "1"
    );
}

#[test]
fn twenty_pgpre_at_once_leave_exactly_one_running_backup() {
    let cluster = Cluster::start(ClusterOptions::default());
    let handles: Vec<_> = (0..20)
        .map(|index| {
            let command = TestCommand::new(&cluster, "pgpre")
                .args(["--fast", "-l", &format!("call {index}")])
                .limit(Duration::from_secs(120));
            std::thread::spawn(move || command.run())
        })
        .collect();
    let runs: Vec<_> = handles
        .into_iter()
        .map(|handle| handle.join().unwrap())
        .collect();
    for run in &runs {
        // Every call either started a backup (later superseded) or failed clearly.
        assert!(
            run.code == 0 || (run.stderr.starts_with("pgpre: ") && run.stderr.lines().count() <= 2),
            "{run:#?}"
        );
    }
    let started = runs.iter().filter(|run| run.code == 0).count();
    let failures: Vec<&str> = runs
        .iter()
        .filter(|run| run.code != 0)
        .map(|run| run.stderr.as_str())
        .collect();
    assert!(started >= 1, "{runs:#?}");
    assert_eq!(
        cluster.psql("SELECT count(*) FROM backup WHERE state = 'running'"),
        "1"
    );
    // Every backup that got as far as its start LSN was superseded by the next,
    // but the one still running; no started backup is left unaccounted for.
    assert_eq!(
        cluster.psql(
            "SELECT count(*) FILTER (WHERE error LIKE 'superseded%') = count(*) \
             FROM backup_history WHERE start_lsn IS NOT NULL"
        ),
        "t",
        "history: {}\nfailed calls: {failures:#?}",
        cluster.psql("SELECT label || ': ' || coalesce(error, '') FROM backup_history")
    );
    let superseded: usize = cluster
        .psql("SELECT count(*) FROM backup_history WHERE error LIKE 'superseded%'")
        .parse()
        .unwrap();
    assert!(
        superseded + 1 >= started,
        "{started} pgpre calls succeeded but only {superseded} backups were superseded; \
         failed calls: {failures:#?}"
    );
    wait_for(
        "superseded co-processes to exit",
        Duration::from_secs(30),
        || coprocesses(&cluster).len() == 1,
    );
    let label = backup_row(&cluster, "label");
    let post = run(&cluster, "pgpost", &[]);
    post.assert_ok("pgpost");
    assert!(post.stdout.contains(&format!("LABEL: {label}\n")));
}
