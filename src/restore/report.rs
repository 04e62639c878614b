//! What a restore prints: the plan (`--dry-run`, and before a run) and, after the run, how
//! each database ended, as a table with what the user should know.

use std::fmt::{self, Write as _};
use std::time::Duration;

use super::exec::ToolError;
use super::filter::TRANSACTION_TIMEOUT_LINE;
use super::plan::{DatabaseAction, RestorePlan, SqlInput, SqlStep};
use crate::checksum::Verified;
use crate::exit::quoted_list;
use crate::files::file_name;
use crate::table::{render_table, Align};

/// How one database ended.
#[derive(Debug)]
pub struct DatabaseOutcome {
    /// The database.
    pub name: String,
    /// What was done to it.
    pub action: DatabaseAction,
    /// How long it took.
    pub duration: Duration,
    /// `None` when it restored.
    pub error: Option<ToolError>,
}

/// The plan and, unless it was a dry run, what came of it.
#[derive(Debug)]
pub struct RestoreReport {
    /// What was (or would be) done.
    pub plan: RestorePlan,
    /// Nothing was changed.
    pub dry_run: bool,
    /// Each database restored or failed, in order (empty on a dry run).
    pub databases: Vec<DatabaseOutcome>,
}

impl RestoreReport {
    /// Databases that failed.
    pub fn failed_databases(&self) -> Vec<String> {
        let failed = |d: &DatabaseOutcome| d.error.as_ref().map(|_| d.name.clone());
        self.databases.iter().filter_map(failed).collect()
    }

    /// Whether every selected database restored (a dry run: whether the plan holds).
    pub fn success(&self) -> bool {
        self.dry_run
            || (self.databases.len() == self.plan.databases.len()
                && self.failed_databases().is_empty())
    }

    /// The final table and what the user should know: existing roles, files not applied,
    /// failures.
    pub fn summary(&self) -> String {
        let mut rows: Vec<Vec<String>> = vec![["database", "action", "duration", "outcome"]
            .map(String::from)
            .to_vec()];
        rows.extend(self.databases.iter().map(|db| {
            vec![
                db.name.escape_debug().to_string(),
                db.action.name().to_string(),
                format!("{:.1}s", db.duration.as_secs_f64()),
                db.error.as_ref().map_or_else(
                    || "ok".to_string(),
                    |e| format!("FAILED: {}", e.to_string().replace('\n', " ")),
                ),
            ]
        }));
        let mut out = render_table(&rows, &[Align::Left, Align::Left, Align::Right]);
        if !self.plan.existing_roles.is_empty() {
            out.push_str(&format!(
                "roles that already existed (not created, attributes set from the dump): {}\n",
                quoted_list(&self.plan.existing_roles)
            ));
        }
        for path in &self.plan.unapplied {
            out.push_str(&format!("not applied: {}\n", path.display()));
        }
        for note in &self.plan.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        let failed = self.failed_databases();
        if !failed.is_empty() {
            out.push_str(&format!("failed databases: {}\n", quoted_list(&failed)));
        }
        out
    }
}

fn write_sql_step(out: &mut String, step: &SqlStep, native: bool) {
    match &step.input {
        SqlInput::Derived { script, .. } if native && script.is_empty() => {}
        SqlInput::File(file) if native => {
            let _ = writeln!(
                out,
                "      run natively (no psql): {}, statement by statement",
                file_name(file)
            );
        }
        SqlInput::Derived { from, change, .. } if native => {
            let _ = writeln!(
                out,
                "      run natively (no psql): {}, statement by statement   # {change}",
                file_name(from)
            );
        }
        SqlInput::File(_) => {
            let _ = writeln!(out, "      $ {}", step.command.shell_line());
        }
        SqlInput::Derived { script, change, .. } if script.is_empty() => {
            let _ = writeln!(out, "      ({change})");
        }
        SqlInput::Derived { from, change, .. } => {
            let _ = writeln!(
                out,
                "      $ {} < {}   # {change}",
                step.command.shell_line(),
                shell_words::quote(&from.display().to_string())
            );
        }
    }
}

impl fmt::Display for RestorePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "restore plan: dump set {} of {} into {}",
            self.stamp,
            self.dir.display(),
            self.target
        );
        let checked: Vec<&Verified> = self
            .verified
            .iter()
            .filter(|v| !v.checksum_files.is_empty())
            .collect();
        if checked.is_empty() {
            let _ = writeln!(
                out,
                "  0. verify: no checksum files in this set: nothing verified"
            );
        } else {
            let _ = writeln!(out, "  0. verify: every file matches its checksum file");
            for v in checked {
                let sums: Vec<String> = v.checksum_files.iter().map(|c| file_name(c)).collect();
                let _ = writeln!(out, "      {} ({})", v.file.display(), sums.join(", "));
            }
        }
        let mut step = 1;
        if let Some(globals) = &self.globals {
            let _ = writeln!(out, "  {step}. globals (roles, tablespaces)");
            if !self.existing_roles.is_empty() {
                let _ = writeln!(
                    out,
                    "      existing roles, not created again: {}",
                    quoted_list(&self.existing_roles)
                );
            }
            write_sql_step(&mut out, globals, self.native_sql);
            step += 1;
        }
        for db in &self.databases {
            let _ = writeln!(
                out,
                "  {step}. database {:?}: {}, {} dump {}",
                db.name,
                db.action.name(),
                db.format.name(),
                db.dump.display()
            );
            if let DatabaseAction::Clean { objects } = &db.action {
                let _ = writeln!(
                    out,
                    "      it holds {objects}: pg_restore --clean drops what the dump holds first"
                );
            }
            write_sql_step(&mut out, &db.prepare, self.native_sql);
            let decrypt = match &db.stream {
                Some(source) => format!(
                    "decrypt {} (in memory{}) | ",
                    shell_words::quote(&source.file.display().to_string()),
                    source
                        .plain_checksum
                        .as_ref()
                        .map(|c| format!(
                            ", plaintext checked against {}",
                            file_name(&c.checksum_file)
                        ))
                        .unwrap_or_default()
                ),
                None => String::new(),
            };
            let filter = match db.load.without_transaction_timeout {
                true => format!("   # without the line {TRANSACTION_TIMEOUT_LINE:?}"),
                false => String::new(),
            };
            match &db.load.producer {
                _ if db.native => {
                    let _ = writeln!(
                        out,
                        "      {decrypt}native load (no psql): {}{} into {}: batches of statements and COPY FROM STDIN",
                        file_name(&db.dump),
                        db.format
                            .plain_method()
                            .map(|m| format!(" (decompressed by pgback: {})", m.as_str()))
                            .unwrap_or_default(),
                        shell_words::quote(&db.name)
                    );
                }
                Some(producer) => {
                    let _ = writeln!(
                        out,
                        "      $ {decrypt}{} | {}{filter}",
                        producer.shell_line(),
                        db.load.command.shell_line()
                    );
                }
                None => {
                    let _ = writeln!(out, "      $ {decrypt}{}", db.load.command.shell_line());
                }
            }
            step += 1;
        }
        if !self.unapplied.is_empty() {
            let _ = writeln!(out, "  not applied (apply by hand if wanted):");
            for path in &self.unapplied {
                let _ = writeln!(out, "      {}", path.display());
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::argv::{load_step, psql_command, CommandSettings};
    use crate::restore::plan::DatabasePlan;
    use crate::restore::set::DumpFormat;
    use std::path::Path;

    fn plan_with(names: &[&str]) -> RestorePlan {
        let settings = CommandSettings {
            bin_directory: String::new(),
            maintenance_db: "postgres".into(),
            jobs: 2,
            pg_restore_version: None,
            server_version: None,
        };
        RestorePlan {
            dir: "/b".into(),
            stamp: "2024-03-05T07:00:00Z".into(),
            target: "host=/tmp port=5432 user=postgres dbname=postgres".into(),
            verified: vec![],
            globals: None,
            existing_roles: vec!["postgres".into()],
            native_sql: false,
            databases: names
                .iter()
                .map(|name| DatabasePlan {
                    name: name.to_string(),
                    dump: format!("/b/{name}.dump").into(),
                    format: DumpFormat::Custom,
                    action: DatabaseAction::Create,
                    prepare: SqlStep {
                        command: psql_command(&settings, "postgres", Some(Path::new("/b/c.sql"))),
                        input: SqlInput::File("/b/c.sql".into()),
                    },
                    load: load_step(
                        &settings,
                        name,
                        Path::new("/b/x.dump"),
                        DumpFormat::Custom,
                        false,
                    )
                    .0,
                    stream: None,
                    native: false,
                })
                .collect(),
            unapplied: vec!["/b/hba_file_2024-03-05T07:00:00Z.out".into()],
            notes: vec![],
        }
    }

    #[test]
    fn summary_names_failures_and_unapplied_files() {
        let plan = plan_with(&["good", "x=y z"]);
        let text = plan.to_string();
        assert!(
            text.contains("database \"x=y z\": create, custom dump /b/x=y z.dump"),
            "{text}"
        );
        assert!(
            text.contains(
                "pg_restore -d 'dbname='\\''x=y z'\\''' -w --exit-on-error -j 2 /b/x.dump"
            ),
            "{text}"
        );
        assert!(text.contains("nothing verified"), "{text}");
        let report = RestoreReport {
            plan,
            dry_run: false,
            databases: vec![
                DatabaseOutcome {
                    name: "good".into(),
                    action: DatabaseAction::Create,
                    duration: Duration::from_millis(1500),
                    error: None,
                },
                DatabaseOutcome {
                    name: "x=y z".into(),
                    action: DatabaseAction::Create,
                    duration: Duration::ZERO,
                    error: Some(ToolError::Child(crate::process::ChildError::Spawn {
                        program: "pg_restore".into(),
                        source: std::io::Error::other("gone"),
                    })),
                },
            ],
        };
        assert!(!report.success());
        let summary = report.summary();
        assert!(
            summary.contains("good      create      1.5s  ok"),
            "{summary}"
        );
        assert!(
            summary.contains("FAILED: cannot run pg_restore: gone"),
            "{summary}"
        );
        assert!(
            summary.contains("not applied: /b/hba_file_2024-03-05T07:00:00Z.out"),
            "{summary}"
        );
        assert!(summary.contains("roles that already existed"), "{summary}");
        assert!(
            summary.ends_with("failed databases: \"x=y z\"\n"),
            "{summary}"
        );
    }
}
