//! Prometheus metrics in the textfile-collector format (node_exporter's
//! `--collector.textfile.directory`): the last run of a binary (start, end, duration, outcome,
//! bytes), pgback's databases (label `database`), the hook pair's backup (start and stop LSN,
//! how long backup mode was held) and upload results. A binary builds a [`RunMetrics`] as it
//! runs and writes it at the end; the file is replaced atomically (temporary name, fsync,
//! rename), so the collector never reads half of it.
//!
//! Every family is prefixed `safe_backup_` and labelled with `program` (`pgback`, `pgpre`,
//! `pgpost`, ...), so one textfile directory can hold each binary's file side by side.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::exit::ExitStatus;

/// The prefix of every metric name.
pub const PREFIX: &str = "safe_backup";

/// The mode of the metrics file: node_exporter runs as another user and must read it; it
/// holds no secret (database and backup names only).
pub const FILE_MODE: u32 = 0o644;

/// One database of a pgback run (or restore).
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseMetrics {
    /// The database name (any characters; escaped in the file).
    pub database: String,
    /// Whether it was dumped (restored).
    pub success: bool,
    /// Bytes written (all files of the database).
    pub bytes: u64,
    /// How long it took.
    pub duration: Duration,
}

/// The backup the hook pair held.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupMetrics {
    /// The backup's name (`pgpre --name`, `default` otherwise).
    pub name: String,
    /// Where backup mode started (`pg_backup_start`'s LSN), as a byte position.
    pub start_lsn: Option<u64>,
    /// Where it stopped.
    pub stop_lsn: Option<u64>,
    /// How long backup mode was held (start to stop).
    pub held: Option<Duration>,
    /// The archive check: `passed`, `failed`, `unchecked` or `off` (the state row's
    /// `wal_archived`); none before the stop.
    pub wal_archived: Option<String>,
}

/// One upload of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadMetrics {
    /// Where to (`s3`, `sftp`, ... or a bucket/host name).
    pub target: String,
    /// Whether every file arrived.
    pub success: bool,
    /// Bytes sent.
    pub bytes: u64,
    /// How long it took.
    pub duration: Duration,
}

/// Writing the metrics file failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the metrics file {path}: {source}")]
pub struct MetricsError {
    /// The metrics file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

impl crate::exit::Failure for MetricsError {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Output
    }
}

/// The metrics of one run, built while it runs and written at its end.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct RunMetrics {
    program: String,
    started: SystemTime,
    ended: Option<SystemTime>,
    exit_code: Option<u8>,
    bytes: Option<u64>,
    databases: Vec<DatabaseMetrics>,
    backups: Vec<BackupMetrics>,
    uploads: Vec<UploadMetrics>,
}

impl RunMetrics {
    /// A run of `program` that started at `started`.
    pub fn new(program: &str, started: SystemTime) -> RunMetrics {
        RunMetrics {
            program: program.to_string(),
            started,
            ended: None,
            exit_code: None,
            bytes: None,
            databases: Vec::new(),
            backups: Vec::new(),
            uploads: Vec::new(),
        }
    }

    /// Bytes the run wrote in all.
    pub fn bytes(mut self, bytes: u64) -> RunMetrics {
        self.bytes = Some(bytes);
        self
    }

    /// One database's result.
    pub fn database(mut self, database: DatabaseMetrics) -> RunMetrics {
        self.databases.push(database);
        self
    }

    /// The backup held by the hook pair.
    pub fn backup(mut self, backup: BackupMetrics) -> RunMetrics {
        self.backups.push(backup);
        self
    }

    /// One upload's result.
    pub fn upload(mut self, upload: UploadMetrics) -> RunMetrics {
        self.uploads.push(upload);
        self
    }

    /// The run ended at `ended` with `status` (success is exit code 0).
    pub fn finish(self, ended: SystemTime, status: ExitStatus) -> RunMetrics {
        self.finish_code(ended, status.code())
    }

    /// The run ended at `ended` with the exit code `code` (pgdrill's codes beyond
    /// [`ExitStatus`] included).
    pub fn finish_code(mut self, ended: SystemTime, code: u8) -> RunMetrics {
        self.ended = Some(ended);
        self.exit_code = Some(code);
        self
    }

    /// The end of a binary's run: ends the metrics now with `code` and writes them to `path`
    /// when `--metrics-file` gave one. A failure to write is reported on stderr as
    /// `program: ...` and does not change the run's exit code: the backup is what counts.
    pub fn write_at_end(self, program: &str, path: Option<&Path>, code: u8) {
        let Some(path) = path else { return };
        if let Err(error) = self.finish_code(SystemTime::now(), code).write(path) {
            eprintln!("{}", crate::exit::report(program, &error, None));
        }
    }

    /// The text of the metrics file: the run's families, then those of pgback's databases,
    /// the hook pair's backup and pgback's uploads (families without samples are left out).
    pub fn render(&self) -> String {
        let mut text = Exposition::new(&self.program);
        self.render_run(&mut text);
        self.render_databases(&mut text);
        self.render_backups(&mut text);
        self.render_uploads(&mut text);
        text.out
    }

    /// Every program's facts, pgdrill's all of them: when the run started and ended, how it
    /// ended, what it wrote.
    fn render_run(&self, text: &mut Exposition<'_>) {
        text.run(
            "last_run_start_timestamp_seconds",
            "When the last run started, seconds since the Unix epoch.",
            Some(seconds(since_epoch(self.started))),
        );
        text.run(
            "last_run_end_timestamp_seconds",
            "When the last run ended, seconds since the Unix epoch.",
            self.ended.map(|t| seconds(since_epoch(t))),
        );
        text.run(
            "last_run_duration_seconds",
            "How long the last run took.",
            self.ended
                .map(|t| seconds(t.duration_since(self.started).unwrap_or_default())),
        );
        text.run(
            "last_run_success",
            "1 when the last run succeeded (exit code 0), else 0.",
            self.exit_code.map(|c| u8::from(c == 0).to_string()),
        );
        text.run(
            "last_run_exit_code",
            "The exit code of the last run (see the README's exit codes).",
            self.exit_code.map(|c| c.to_string()),
        );
        text.run(
            "last_run_bytes",
            "Bytes the last run wrote.",
            self.bytes.map(|b| b.to_string()),
        );
    }

    /// pgback's databases (dumped or restored), labelled `database`.
    fn render_databases(&self, text: &mut Exposition<'_>) {
        let dbs = &self.databases;
        text.per(
            "database_success",
            "1 when the database was done in the last run, else 0.",
            "database",
            dbs.iter()
                .map(|d| (d.database.as_str(), u8::from(d.success).to_string()))
                .collect(),
        );
        text.per(
            "database_bytes",
            "Bytes written for the database in the last run.",
            "database",
            dbs.iter()
                .map(|d| (d.database.as_str(), d.bytes.to_string()))
                .collect(),
        );
        text.per(
            "database_duration_seconds",
            "How long the database took in the last run.",
            "database",
            dbs.iter()
                .map(|d| (d.database.as_str(), seconds(d.duration)))
                .collect(),
        );
    }

    /// The hook pair's backup, labelled `name`: its LSNs and how long backup mode was held.
    fn render_backups(&self, text: &mut Exposition<'_>) {
        let backups = &self.backups;
        text.per(
            "backup_start_lsn_bytes",
            "The WAL position where backup mode started, as a byte position.",
            "name",
            backups
                .iter()
                .filter_map(|b| Some((b.name.as_str(), b.start_lsn?.to_string())))
                .collect(),
        );
        text.per(
            "backup_stop_lsn_bytes",
            "The WAL position where backup mode stopped, as a byte position.",
            "name",
            backups
                .iter()
                .filter_map(|b| Some((b.name.as_str(), b.stop_lsn?.to_string())))
                .collect(),
        );
        text.per(
            "backup_held_seconds",
            "How long backup mode was held, start to stop.",
            "name",
            backups
                .iter()
                .filter_map(|b| Some((b.name.as_str(), seconds(b.held?))))
                .collect(),
        );
        text.family(
            "wal_archived",
            "1 when the archive check found every WAL segment the backup needs, else 0; the \
             check label says passed, failed, unchecked or off.",
            backups
                .iter()
                .filter_map(|b| {
                    let check = b.wal_archived.as_deref()?;
                    let labels = vec![("name", b.name.as_str()), ("check", check)];
                    Some((labels, u8::from(check == "passed").to_string()))
                })
                .collect(),
        );
    }

    /// pgback's uploads (`--upload`), labelled `target`.
    fn render_uploads(&self, text: &mut Exposition<'_>) {
        let uploads = &self.uploads;
        text.per(
            "upload_success",
            "1 when the upload of the last run succeeded, else 0.",
            "target",
            uploads
                .iter()
                .map(|u| (u.target.as_str(), u8::from(u.success).to_string()))
                .collect(),
        );
        text.per(
            "upload_bytes",
            "Bytes the last run uploaded.",
            "target",
            uploads
                .iter()
                .map(|u| (u.target.as_str(), u.bytes.to_string()))
                .collect(),
        );
        text.per(
            "upload_duration_seconds",
            "How long the upload of the last run took.",
            "target",
            uploads
                .iter()
                .map(|u| (u.target.as_str(), seconds(u.duration)))
                .collect(),
        );
    }

    /// Replaces `path` with [`RunMetrics::render`] atomically: a temporary file beside it (not
    /// ending in `.prom`, so the collector skips it), fsync, mode [`FILE_MODE`], rename, fsync
    /// of the directory.
    pub fn write(&self, path: &Path) -> Result<(), MetricsError> {
        write_atomically(path, self.render().as_bytes()).map_err(|source| MetricsError {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// The exposition text being written, family by family; every sample is labelled with the
/// program.
struct Exposition<'a> {
    program: &'a str,
    out: String,
}

impl<'a> Exposition<'a> {
    fn new(program: &'a str) -> Exposition<'a> {
        Exposition {
            program,
            out: String::new(),
        }
    }

    /// A family of the run: one sample, labelled with the program only; none when `None`.
    fn run(&mut self, name: &str, help: &str, value: Option<String>) {
        let samples = value.map(|v| (Vec::new(), v)).into_iter().collect();
        self.family(name, help, samples);
    }

    /// A family with one sample per row, labelled `key = <the row's label>`.
    fn per(&mut self, name: &str, help: &str, key: &str, rows: Vec<(&str, String)>) {
        let samples = rows
            .into_iter()
            .map(|(label, value)| (vec![(key, label)], value))
            .collect();
        self.family(name, help, samples);
    }

    /// `# HELP`, `# TYPE .. gauge` and the samples; nothing when there are none.
    fn family(&mut self, name: &str, help: &str, samples: Vec<(Vec<(&str, &str)>, String)>) {
        if samples.is_empty() {
            return;
        }
        let out = &mut self.out;
        let _ = writeln!(out, "# HELP {PREFIX}_{name} {}", escape_help(help));
        let _ = writeln!(out, "# TYPE {PREFIX}_{name} gauge");
        for (labels, value) in samples {
            let labels: Vec<String> = [("program", self.program)]
                .into_iter()
                .chain(labels)
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
                .collect();
            let _ = writeln!(out, "{PREFIX}_{name}{{{}}} {value}", labels.join(","));
        }
    }
}

fn since_epoch(time: SystemTime) -> Duration {
    time.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Seconds with millisecond precision: `12.345`.
fn seconds(duration: Duration) -> String {
    format!("{:.3}", duration.as_secs_f64())
}

/// A label value as the exposition format wants it: `\`, `"` and newline escaped.
pub fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A HELP text: `\` and newline escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut temp = path.as_os_str().to_os_string();
    temp.push(format!(".{}.tmp", std::process::id()));
    let options = crate::files::FileOptions {
        mode: Some(FILE_MODE),
        adopt_dir_owner: false,
    };
    crate::files::write_atomically(path, Path::new(&temp), bytes, options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// family, type, sample name, labels, value: one sample as the parser read it.
    type ParsedSample = (String, String, String, BTreeMap<String, String>, f64);

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    fn pgback_run() -> RunMetrics {
        RunMetrics::new("pgback", at(1_700_000_000, 250))
            .database(DatabaseMetrics {
                database: "b1".into(),
                success: true,
                bytes: 2048,
                duration: Duration::from_millis(1500),
            })
            .database(DatabaseMetrics {
                database: "we\"ird\\name\nnév".into(),
                success: false,
                bytes: 0,
                duration: Duration::from_millis(20),
            })
            .upload(UploadMetrics {
                target: "s3".into(),
                success: true,
                bytes: 2048,
                duration: Duration::from_secs(2),
            })
            .bytes(4096)
            .finish(at(1_700_000_042, 750), ExitStatus::BackupFailed)
    }

    #[test]
    fn exposition_text() {
        let text = pgback_run().render();
        for line in [
            "# TYPE safe_backup_last_run_start_timestamp_seconds gauge",
            "safe_backup_last_run_start_timestamp_seconds{program=\"pgback\"} 1700000000.250",
            "safe_backup_last_run_duration_seconds{program=\"pgback\"} 42.500",
            "safe_backup_last_run_success{program=\"pgback\"} 0",
            "safe_backup_last_run_exit_code{program=\"pgback\"} 1",
            "safe_backup_last_run_bytes{program=\"pgback\"} 4096",
            "safe_backup_database_success{program=\"pgback\",database=\"we\\\"ird\\\\name\\nnév\"} 0",
            "safe_backup_upload_bytes{program=\"pgback\",target=\"s3\"} 2048",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(!text.contains("backup_start_lsn"), "{text}");
        assert!(text.ends_with('\n'));
        // A run still going has no end, duration or outcome.
        let running = RunMetrics::new("pgpre", at(5, 0)).render();
        assert!(running.contains("last_run_start_timestamp_seconds"));
        assert!(!running.contains("last_run_end") && !running.contains("success"));
    }

    #[test]
    fn written_atomically_with_its_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("pgback.prom");
        std::fs::write(&path, "old").unwrap();
        pgback_run().write(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            pgback_run().render()
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE);
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
        let error = pgback_run()
            .write(&tmp.path().join("missing/dir/x.prom"))
            .unwrap_err();
        assert!(error.to_string().contains("missing/dir/x.prom"), "{error}");
    }

    /// A Python interpreter with `prometheus_client` (Debian's `python3-prometheus-client`,
    /// installed by scripts/test); the test fails with that hint when there is none.
    fn python_with_parser() -> &'static str {
        for python in ["/usr/bin/python3", "python3"] {
            let found = std::process::Command::new(python)
                .args(["-c", "import prometheus_client"])
                .output()
                .is_ok_and(|o| o.status.success());
            if found {
                return python;
            }
        }
        panic!(
            "no python3 with prometheus_client: run scripts/test, or \
             apt-get install python3-prometheus-client"
        );
    }

    /// The real Prometheus parser reads the file back: every sample, label and value.
    #[test]
    fn prometheus_client_parses_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("pgback.prom");
        pgback_run()
            .backup(BackupMetrics {
                name: "vol\"1".into(),
                start_lsn: Some(0x16_B374_D848),
                stop_lsn: Some(0x16_B500_0000),
                held: Some(Duration::from_millis(61_500)),
                wal_archived: Some("failed".into()),
            })
            .write(&path)
            .unwrap();
        let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(open(sys.argv[1], encoding="utf-8").read()):
    for sample in family.samples:
        out.append([family.name, family.type, sample.name, sample.labels, sample.value])
print(json.dumps(out))
"#;
        let output = std::process::Command::new(python_with_parser())
            .args(["-c", script])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let parsed: Vec<ParsedSample> = serde_json::from_slice(&output.stdout).unwrap();
        let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
            let labels: BTreeMap<String, String> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            parsed
                .iter()
                .find(|(_, _, sample, l, _)| sample == name && *l == labels)
                .unwrap_or_else(|| panic!("{name} {labels:?} not in {parsed:?}"))
                .4
        };
        let run = [("program", "pgback")];
        assert_eq!(
            value("safe_backup_last_run_start_timestamp_seconds", &run),
            1_700_000_000.25
        );
        assert_eq!(
            value("safe_backup_last_run_end_timestamp_seconds", &run),
            1_700_000_042.75
        );
        assert_eq!(value("safe_backup_last_run_duration_seconds", &run), 42.5);
        assert_eq!(value("safe_backup_last_run_success", &run), 0.0);
        assert_eq!(value("safe_backup_last_run_exit_code", &run), 1.0);
        assert_eq!(value("safe_backup_last_run_bytes", &run), 4096.0);
        let b1 = [("program", "pgback"), ("database", "b1")];
        assert_eq!(value("safe_backup_database_success", &b1), 1.0);
        assert_eq!(value("safe_backup_database_bytes", &b1), 2048.0);
        assert_eq!(value("safe_backup_database_duration_seconds", &b1), 1.5);
        let odd = [("program", "pgback"), ("database", "we\"ird\\name\nnév")];
        assert_eq!(value("safe_backup_database_success", &odd), 0.0);
        let vol = [("program", "pgback"), ("name", "vol\"1")];
        assert_eq!(
            value("safe_backup_backup_start_lsn_bytes", &vol),
            0x16_B374_D848_u64 as f64
        );
        assert_eq!(
            value("safe_backup_backup_stop_lsn_bytes", &vol),
            0x16_B500_0000_u64 as f64
        );
        assert_eq!(value("safe_backup_backup_held_seconds", &vol), 61.5);
        let check = [
            ("program", "pgback"),
            ("name", "vol\"1"),
            ("check", "failed"),
        ];
        assert_eq!(value("safe_backup_wal_archived", &check), 0.0);
        let s3 = [("program", "pgback"), ("target", "s3")];
        assert_eq!(value("safe_backup_upload_success", &s3), 1.0);
        assert_eq!(value("safe_backup_upload_duration_seconds", &s3), 2.0);
        assert!(parsed.iter().all(|(_, kind, ..)| kind == "gauge"));
        assert_eq!(parsed.len(), 19);
    }
}
