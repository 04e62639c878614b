//! What a run reports: each database's outcome, the server-level files, warnings, the summary
//! table, and the one line that words a failed run.

use std::time::Duration;

use super::lock::LockError;
use super::output::{OutputError, WrittenFile};
use super::progress::human_bytes;
use crate::exit::quoted_list;
use crate::process::ChildError;
use crate::table::{render_table, Align};

/// Why one database (or one server-level file) failed.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The database's lock is held by another run, or could not be taken.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// pg_dump or pg_dumpall could not be run or failed; its last stderr lines are kept.
    #[error(transparent)]
    Tool(#[from] ChildError),
    /// Writing the result failed.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// Reading the catalog for createdb.sql failed.
    #[error("createdb.sql: {0}")]
    Catalog(String),
    /// The native export (`--native`) failed or refused the database.
    #[error("native export: {0}")]
    Native(String),
}

/// The outcome of one database.
#[derive(Debug)]
pub struct DatabaseOutcome {
    /// The database.
    pub name: String,
    /// Files written for it.
    pub files: Vec<WrittenFile>,
    /// How long it took.
    pub duration: Duration,
    /// `None` on success.
    pub error: Option<DumpError>,
}

/// What a finished run reports.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Each database, in the order chosen.
    pub databases: Vec<DatabaseOutcome>,
    /// Server-level files (globals, settings, hba, ident).
    pub server_files: Vec<WrittenFile>,
    /// Server-level files that failed to be written (they fail the run).
    pub server_errors: Vec<String>,
    /// What could not be read and was skipped (not a failure).
    pub warnings: Vec<String>,
    /// The post hook's failure, if any.
    pub post_hook_error: Option<String>,
    /// What `--upload` sent, once its uploads have ended.
    pub upload: Option<UploadReport>,
}

/// The upload stage of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadReport {
    /// The store (`s3`, `b2`, `gcs`, `azure`, `sftp`).
    pub store: String,
    /// Files confirmed uploaded.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Files that did not arrive (each also a failure of the run).
    pub failed: usize,
    /// From the start of the upload stage to its last confirmation.
    pub duration: Duration,
}

impl RunReport {
    /// Records a warning (something skipped, not a failure) and logs it.
    pub fn warn(&mut self, warning: String) {
        tracing::warn!("{warning}");
        self.warnings.push(warning);
    }

    /// Names of the databases that failed.
    pub fn failed_databases(&self) -> Vec<String> {
        self.databases
            .iter()
            .filter(|d| d.error.is_some())
            .map(|d| d.name.clone())
            .collect()
    }

    /// Whether everything asked for was done.
    pub fn success(&self) -> bool {
        self.failed_databases().is_empty()
            && self.server_errors.is_empty()
            && self.post_hook_error.is_none()
    }

    /// Every file written, checksum files included.
    pub fn all_files(&self) -> Vec<String> {
        let mut files = Vec::new();
        for file in self
            .server_files
            .iter()
            .chain(self.databases.iter().flat_map(|d| d.files.iter()))
        {
            files.push(file.path.display().to_string());
            if let Some(sum) = &file.checksum_path {
                files.push(sum.display().to_string());
            }
        }
        files
    }

    /// The final table: database, size, duration, outcome.
    pub fn summary_table(&self) -> String {
        let mut rows = vec![["database", "size", "duration", "outcome"]
            .map(String::from)
            .to_vec()];
        rows.extend(self.databases.iter().map(|db| {
            let bytes: u64 = db.files.iter().map(|f| f.bytes).sum();
            vec![
                db.name.escape_debug().to_string(),
                human_bytes(bytes),
                format!("{:.1}s", db.duration.as_secs_f64()),
                match &db.error {
                    None => "ok".into(),
                    Some(e) => format!("FAILED: {}", e.to_string().replace('\n', " ")),
                },
            ]
        }));
        let mut out = render_table(&rows, &[Align::Left, Align::Right, Align::Right]);
        let failed = self.failed_databases();
        if !failed.is_empty() {
            out.push_str(&format!("failed databases: {}\n", quoted_list(&failed)));
        }
        out
    }

    /// The run's outcome in one line when it failed (`backup failed: ...; nothing was purged`);
    /// `None` when it succeeded.
    pub fn failure_line(&self) -> Option<String> {
        if self.success() {
            return None;
        }
        let failed = self.failed_databases();
        let mut what = Vec::new();
        if !failed.is_empty() {
            what.push(format!(
                "{} database(s) failed: {}",
                failed.len(),
                quoted_list(&failed)
            ));
        }
        what.extend(self.server_errors.iter().cloned());
        what.extend(self.post_hook_error.iter().cloned());
        Some(format!(
            "backup failed: {}; nothing was purged",
            what.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_the_failed_databases() {
        let report = RunReport {
            databases: vec![
                DatabaseOutcome {
                    name: "good".into(),
                    files: vec![WrittenFile {
                        path: "/b/good_s.dump".into(),
                        checksum_path: Some("/b/good_s.dump.sha256".into()),
                        bytes: 2048,
                    }],
                    duration: Duration::from_millis(1500),
                    error: None,
                },
                DatabaseOutcome {
                    name: "x=y z".into(),
                    files: vec![],
                    duration: Duration::ZERO,
                    error: Some(LockError::Held("/b/x=y z.lock".into()).into()),
                },
            ],
            ..Default::default()
        };
        assert!(!report.success());
        assert_eq!(report.failed_databases(), ["x=y z"]);
        assert_eq!(
            report.all_files(),
            ["/b/good_s.dump", "/b/good_s.dump.sha256"]
        );
        let table = report.summary_table();
        assert!(table.contains("good"), "{table}");
        assert!(
            table.contains("2.0 KiB") && table.contains("1.5s") && table.contains("ok"),
            "{table}"
        );
        assert!(table.contains("FAILED: /b/x=y z.lock is locked"), "{table}");
        assert!(table.ends_with("failed databases: \"x=y z\"\n"), "{table}");
        assert_eq!(human_bytes(10), "10 B");
    }

    #[test]
    fn the_failure_line_names_everything_that_failed() {
        let mut report = RunReport::default();
        assert_eq!(report.failure_line(), None);
        report.server_errors.push("pg_globals: boom".into());
        report.post_hook_error = Some("post-backup hook: \"x\" failed".into());
        report.databases.push(DatabaseOutcome {
            name: "a".into(),
            files: vec![],
            duration: Duration::ZERO,
            error: Some(DumpError::Catalog("gone".into())),
        });
        assert_eq!(
            report.failure_line().unwrap(),
            "backup failed: 1 database(s) failed: \"a\"; pg_globals: boom; \
             post-backup hook: \"x\" failed; nothing was purged"
        );
    }
}
