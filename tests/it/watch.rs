//! Watching it: `--metrics-file` of every binary after real runs, read back by the real
//! Prometheus parser (python3 `prometheus_client`); `--log-format json` lines that parse as JSON
//! (stderr and the co-process log); `pgpre --list --json`; `backup.log_target = "journal"`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::cluster::{self, Cluster, ClusterOptions};
use crate::util::{run, TestCommand};

/// Every sample of a metrics file as `name{label="value",...}` (labels sorted) -> value,
/// read by `prometheus_client`'s parser. Fails when the file does not parse.
pub(crate) fn parse_metrics(cluster: &Cluster, path: &Path) -> BTreeMap<String, f64> {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families as families
samples = {}
for family in families(open(sys.argv[1], encoding="utf-8").read()):
    assert family.type == "gauge", family
    for s in family.samples:
        labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items()))
        samples["%s{%s}" % (s.name, labels)] = s.value
print(json.dumps(samples))
"#;
    let parsed = TestCommand::program(cluster, "/usr/bin/python3")
        .args(["-c", script])
        .arg(path)
        .run();
    assert_eq!(
        parsed.code, 0,
        "prometheus_client could not parse {} (apt-get install python3-prometheus-client)\n{parsed}",
        path.display()
    );
    serde_json::from_str(&parsed.stdout).unwrap()
}

pub(crate) fn sample(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("{key} not in {samples:#?}"))
}

/// The run-level series every file has: times, duration, outcome.
fn assert_run(samples: &BTreeMap<String, f64>, program: &str, exit_code: u8) {
    let label = format!("{{program={program}}}");
    let start = sample(
        samples,
        &format!("safe_backup_last_run_start_timestamp_seconds{label}"),
    );
    let end = sample(
        samples,
        &format!("safe_backup_last_run_end_timestamp_seconds{label}"),
    );
    let duration = sample(
        samples,
        &format!("safe_backup_last_run_duration_seconds{label}"),
    );
    assert!(start > 1.7e9 && end >= start, "{samples:#?}");
    assert!((end - start - duration).abs() < 0.01, "{samples:#?}");
    assert_eq!(
        sample(samples, &format!("safe_backup_last_run_exit_code{label}")),
        f64::from(exit_code)
    );
    assert_eq!(
        sample(samples, &format!("safe_backup_last_run_success{label}")),
        f64::from(u8::from(exit_code == 0))
    );
}

/// Lines of `text` that start with `{`: each must parse as a JSON object with a level and a
/// message; returns them.
fn json_lines(text: &str) -> Vec<serde_json::Value> {
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    for line in &lines {
        assert!(
            line["level"].is_string()
                && line["message"].is_string()
                && line["timestamp"].is_string(),
            "{line}"
        );
    }
    lines
}

#[test]
fn metrics_files_and_json_logs_of_every_binary() {
    let cluster = Cluster::start(ClusterOptions::default());
    let work = tempfile::tempdir().unwrap();
    let file = |name: &str| work.path().join(name).display().to_string();
    let (pre, post, back, drill) = (
        file("pgpre.prom"),
        file("pgpost.prom"),
        file("pgback.prom"),
        file("pgdrill.prom"),
    );
    let log = file("coprocess.log");

    // The hook pair: pgpre's start LSN; pgpost's LSNs and the time held.
    run(
        &cluster,
        "pgpre",
        &[
            "--fast",
            "-n",
            "vol1",
            "--metrics-file",
            &pre,
            "--log-format",
            "json",
            "--log-file",
            &log,
        ],
    )
    .assert_ok("pgpre");
    std::thread::sleep(Duration::from_millis(1100));
    run(&cluster, "pgpost", &["-n", "vol1", "--metrics-file", &post]).assert_ok("pgpost");
    let samples = parse_metrics(&cluster, Path::new(&pre));
    assert_run(&samples, "pgpre", 0);
    let start_lsn = sample(
        &samples,
        "safe_backup_backup_start_lsn_bytes{name=vol1,program=pgpre}",
    );
    assert!(start_lsn > 0.0);
    assert!(
        !samples.keys().any(|k| k.contains("stop_lsn")),
        "{samples:#?}"
    );

    let samples = parse_metrics(&cluster, Path::new(&post));
    assert_run(&samples, "pgpost", 0);
    let vol1 = "{name=vol1,program=pgpost}";
    assert_eq!(
        sample(
            &samples,
            &format!("safe_backup_backup_start_lsn_bytes{vol1}")
        ),
        start_lsn
    );
    assert!(
        sample(
            &samples,
            &format!("safe_backup_backup_stop_lsn_bytes{vol1}")
        ) > start_lsn
    );
    let held = sample(&samples, &format!("safe_backup_backup_held_seconds{vol1}"));
    assert!((1.0..60.0).contains(&held), "held {held}");
    assert!(sample(&samples, "safe_backup_last_run_bytes{program=pgpost}") > 0.0);
    let row = crate::util::backup_row(&cluster, "extract(epoch from finished_at - started_at)");
    let row_held: f64 = row.trim().parse().unwrap_or_else(|_| panic!("{row}"));
    assert!((row_held - held).abs() < 0.002, "{row_held} vs {held}");

    // The co-process logged JSON lines into its file.
    let coprocess = json_lines(&std::fs::read_to_string(&log).unwrap());
    assert!(
        coprocess
            .iter()
            .any(|l| l["message"].as_str().unwrap().contains("co-process")),
        "{coprocess:?}"
    );

    // A failed run writes its file too: pgpost with nothing to stop exits 5.
    run(&cluster, "pgpost", &["-n", "vol1", "--metrics-file", &post])
        .assert_code(5, "pgpost again");
    let samples = parse_metrics(&cluster, Path::new(&post));
    assert_run(&samples, "pgpost", 5);
    assert!(
        !samples.keys().any(|k| k.contains("safe_backup_backup_")),
        "{samples:#?}"
    );

    // pgback: bytes and one series per database; JSON lines on stderr.
    cluster.psql("CREATE DATABASE \"we\"\"ird\"");
    let dumps = work.path().join("dumps");
    let bindir = cluster::pg_binaries().client_tool("pg_dump");
    let dumped = TestCommand::new(&cluster, "pgback")
        .args([
            "-d",
            &cluster.conninfo_socket(),
            "-b",
            &dumps.display().to_string(),
        ])
        .args(["-B", &bindir.parent().unwrap().display().to_string()])
        .args(["--metrics-file", &back, "--log-format", "json"])
        .limit(Duration::from_secs(120))
        .run();
    dumped.assert_ok("pgback");
    let logged = json_lines(&dumped.stderr);
    assert!(
        logged
            .iter()
            .any(|l| l["level"] == "INFO" && l["message"].as_str().unwrap().contains("dumping")),
        "{dumped}"
    );
    let samples = parse_metrics(&cluster, Path::new(&back));
    assert_run(&samples, "pgback", 0);
    let weird = "{database=we\"ird,program=pgback}";
    assert_eq!(
        sample(&samples, &format!("safe_backup_database_success{weird}")),
        1.0
    );
    let weird_bytes = sample(&samples, &format!("safe_backup_database_bytes{weird}"));
    assert!(weird_bytes > 0.0);
    assert!(sample(&samples, "safe_backup_last_run_bytes{program=pgback}") > weird_bytes);
    assert!(samples
        .contains_key("safe_backup_database_duration_seconds{database=postgres,program=pgback}"));

    // pgdrill: a directory without backup_label is a usage error (2), and says so in its file.
    let empty = tempfile::tempdir().unwrap();
    TestCommand::new(&cluster, "pgdrill")
        .arg(empty.path())
        .args([
            "--wal-archive",
            &cluster.archive_dir().display().to_string(),
        ])
        .args(["--metrics-file", &drill, "--log-format", "json"])
        .run()
        .assert_code(2, "pgdrill");
    assert_run(&parse_metrics(&cluster, Path::new(&drill)), "pgdrill", 2);

    // A metrics file that cannot be written is reported; the run's outcome stands.
    run(
        &cluster,
        "pgpre",
        &["--list", "--metrics-file", "/nonexistent/dir/x.prom"],
    )
    .assert_ok("pgpre --list")
    .assert_stderr("cannot write the metrics file /nonexistent/dir/x.prom");
}

#[test]
fn pgpre_list_json_has_the_running_backups_and_the_history() {
    let cluster = Cluster::start(ClusterOptions::default());
    let list = || {
        let listed = run(&cluster, "pgpre", &["--list", "--json"]);
        listed.assert_ok("pgpre --list --json");
        serde_json::from_str::<serde_json::Value>(&listed.stdout)
            .unwrap_or_else(|e| panic!("{e}\n{listed}"))
    };
    run(&cluster, "pgpre", &["--fast", "-n", "vol1", "-l", "first"]).assert_ok("pgpre vol1");
    run(&cluster, "pgpost", &["-n", "vol1"]).assert_ok("pgpost vol1");
    run(&cluster, "pgpre", &["--fast", "-n", "vol2", "-l", "second"]).assert_ok("pgpre vol2");

    let document = list();
    let running = document["running"].as_array().unwrap();
    assert_eq!(running.len(), 1, "{document:#}");
    assert_eq!(running[0]["name"], "vol2");
    assert_eq!(running[0]["state"], "running");
    assert_eq!(running[0]["holder"], "alive");
    assert_eq!(running[0]["label"], "second");
    let history = document["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{document:#}");
    assert_eq!(history[0]["name"], "vol1");
    assert_eq!(history[0]["state"], "complete");
    assert!(history[0]["stop_lsn"].is_string(), "{document:#}");

    run(&cluster, "pgpost", &["-n", "vol2"]).assert_ok("pgpost vol2");
    let document = list();
    assert_eq!(document["running"], serde_json::json!([]), "{document:#}");
    let names: Vec<&str> = document["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["vol2", "vol1"], "newest first: {document:#}");

    // Without --json: the table.
    let table = run(&cluster, "pgpre", &["--list"]);
    table.assert_ok("pgpre --list");
    assert!(table.stdout.starts_with("name\tstate\t"), "{table}");
    assert!(table.stdout.contains("vol2\tcomplete\t"), "{table}");
    // --json alone is a usage error.
    run(&cluster, "pgpre", &["--json"]).assert_code(2, "pgpre --json");
}

#[test]
fn journal_log_target_needs_a_journald() {
    let cluster = Cluster::start(ClusterOptions::default().without_archive());
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("config.toml");
    std::fs::write(
        &config,
        "[backup]\nlog_target = \"journal\"\nwait_for_archive = false\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let pre = run(&cluster, "pgpre", &["-c", &config, "--fast"]);
    if Path::new("/run/systemd/journal/socket").exists() {
        pre.assert_ok("pgpre logging to the journal");
        run(&cluster, "pgpost", &["-c", &config]).assert_ok("pgpost");
    } else {
        // No journald here: refused before anything started, naming the key.
        pre.assert_code(2, "pgpre without journald")
            .assert_stderr("backup.log_target = \"journal\": cannot reach journald")
            .assert_stderr("hint: ");
        assert!(crate::util::coprocesses(&cluster).is_empty());
        run(&cluster, "pgpost", &["-c", &config]).assert_code(5, "nothing was started");
    }
}
