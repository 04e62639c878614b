//! The drill's report: what was recovered, where it became consistent, what every check found
//! and how long each phase took, printed as text or as one JSON document.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use super::checks::{DatabaseCheck, ExecRun, SqlCheck};
use super::clone::CloneMethod;

/// The `backup_label` the clone was recovered with.
#[derive(Clone, Debug, Serialize)]
pub struct LabelSummary {
    /// Where it was read.
    pub path: PathBuf,
    /// Its `LABEL` line.
    pub label: Option<String>,
    /// `START WAL LOCATION`.
    pub start_lsn: String,
    /// The WAL file of the start.
    pub start_wal_file: String,
    /// `CHECKPOINT LOCATION`.
    pub checkpoint_lsn: String,
    /// `START TIME`.
    pub start_time: Option<String>,
}

/// Seconds spent in each phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    /// Making the clone and writing its files.
    pub clone: f64,
    /// From starting the server to recovered and promoted.
    pub recovery: f64,
    /// amcheck, `--sql`, `--exec`.
    pub checks: f64,
    /// Stopping the server and removing the clone.
    pub cleanup: f64,
    /// The whole drill.
    pub total: f64,
}

/// Everything a drill found out; `exit_code` 0 only when the clone was consistent and every
/// check was clean.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// The data directory drilled (never written).
    pub data_dir: PathBuf,
    /// The major version from `PG_VERSION`.
    pub major: Option<u32>,
    /// The server that recovered it, e.g. `15.18`.
    pub postgres: Option<String>,
    /// How the clone was made.
    pub clone: Option<CloneMethod>,
    /// The label used.
    pub backup_label: Option<LabelSummary>,
    /// The clone reached a consistent state and was promoted.
    pub consistent: bool,
    /// Where it became consistent.
    pub consistent_lsn: Option<String>,
    /// The timeline it was promoted to.
    pub timeline: Option<u32>,
    /// Seconds from server start to promoted.
    pub recovery_seconds: Option<f64>,
    /// amcheck, per database.
    pub databases: Vec<DatabaseCheck>,
    /// The `--sql` checks.
    pub sql: Vec<SqlCheck>,
    /// The `--exec` command.
    pub exec: Option<ExecRun>,
    /// Every problem found by the checks, one line each.
    pub findings: Vec<String>,
    /// What pgdrill did that the user may want to know (links copied, live tablespaces read).
    pub notes: Vec<String>,
    /// Phase times.
    pub seconds: Timings,
    /// Where the clone was kept (`--keep`).
    pub kept: Option<PathBuf>,
    /// The end of the server log, when recovery failed.
    pub server_log_tail: Vec<String>,
    /// The documented exit code.
    pub exit_code: u8,
    /// Why the drill failed.
    pub error: Option<String>,
    /// What the user can do about it.
    pub hint: Option<String>,
}

impl Report {
    /// Collects the findings of every check into `findings`; returns how many checks failed.
    pub fn collect_findings(&mut self) -> usize {
        let mut failed = 0;
        for database in &self.databases {
            if !database.findings.is_empty() {
                failed += 1;
            }
            for finding in &database.findings {
                self.findings
                    .push(format!("amcheck {}: {finding}", database.name));
            }
        }
        for check in self.sql.iter().filter(|check| !check.passed) {
            failed += 1;
            self.findings.push(format!(
                "sql {:?} in {}: {}",
                check.query, check.database, check.result
            ));
        }
        if let Some(exec) = self.exec.as_ref().filter(|exec| !exec.passed) {
            failed += 1;
            let how = match (&exec.error, exec.exit_code, exec.signal) {
                (Some(error), _, _) => error.clone(),
                (None, Some(code), _) => format!("exit code {code}"),
                (None, None, Some(signal)) => format!("killed by signal {signal}"),
                _ => "failed".to_string(),
            };
            self.findings
                .push(format!("exec {}: {how}", exec.command.join(" ")));
        }
        failed
    }

    /// The report as one JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|error| format!("{{\"error\": \"report: {error}\"}}"))
    }

    /// The report as text, a line per fact.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let verdict = if self.exit_code == 0 {
            "PROVEN"
        } else {
            "FAILED"
        };
        let _ = writeln!(out, "pgdrill: {verdict} {}", self.data_dir.display());
        let mut line = |key: &str, value: String| {
            let _ = writeln!(out, "  {key:<10} {value}");
        };
        if let Some(label) = &self.backup_label {
            line(
                "backup",
                format!(
                    "{}start {} ({}), checkpoint {}, label from {}",
                    label
                        .label
                        .as_ref()
                        .map(|l| format!("{l:?}: "))
                        .unwrap_or_default(),
                    label.start_lsn,
                    label.start_wal_file,
                    label.checkpoint_lsn,
                    label.path.display()
                ),
            );
        }
        if let Some(postgres) = &self.postgres {
            let clone = self.clone.map(CloneMethod::as_str).unwrap_or("none");
            line("server", format!("PostgreSQL {postgres}, clone by {clone}"));
        }
        match (&self.consistent_lsn, self.recovery_seconds) {
            (Some(lsn), Some(seconds)) if self.consistent => line(
                "recovery",
                format!(
                    "consistent at {lsn} after {seconds:.2} s{}",
                    self.timeline
                        .map(|t| format!(", promoted to timeline {t}"))
                        .unwrap_or_default()
                ),
            ),
            _ => line("recovery", "not consistent".to_string()),
        }
        for database in &self.databases {
            let result = if database.findings.is_empty() {
                "clean".to_string()
            } else {
                format!("{} finding(s)", database.findings.len())
            };
            let indexes = database
                .indexes_checked
                .map(|n| format!(", {n} indexes"))
                .unwrap_or_default();
            line(
                "amcheck",
                format!("{}: {result} ({}{indexes})", database.name, database.method),
            );
        }
        for check in &self.sql {
            line("sql", format!("{}: {}", check.query, check.result));
        }
        if let Some(exec) = &self.exec {
            let how = match (exec.exit_code, &exec.error) {
                (_, Some(error)) => error.clone(),
                (Some(code), None) => format!("exit {code}"),
                (None, None) => format!("signal {}", exec.signal.unwrap_or_default()),
            };
            line(
                "exec",
                format!(
                    "{}: {how} after {:.2} s",
                    exec.command.join(" "),
                    exec.seconds
                ),
            );
        }
        for finding in &self.findings {
            line("finding", finding.clone());
        }
        for note in &self.notes {
            line("note", note.clone());
        }
        let s = &self.seconds;
        line(
            "time",
            format!(
                "clone {:.2} s, recovery {:.2} s, checks {:.2} s, cleanup {:.2} s, total {:.2} s",
                s.clone, s.recovery, s.checks, s.cleanup, s.total
            ),
        );
        if let Some(kept) = &self.kept {
            line("kept", kept.display().to_string());
        }
        for log_line in &self.server_log_tail {
            line("log", log_line.clone());
        }
        out
    }
}
