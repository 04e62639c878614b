//! `pgback --restore DIR [DBNAME globs]`: restoring a dump set into the target server.
//!
//! In order: pick the set (the newest, or `--timestamp`), select databases by globs, verify
//! every selected file against its checksum file (nothing is touched when one does not match),
//! read the target (roles, databases, whether an existing database holds objects of its own),
//! refuse non-empty databases unless `--clean`, then run the globals with psql (roles that
//! exist are not created again, only reported), and for each database its createdb.sql (or
//! its rewrite for a database that exists) and `pg_restore -j N` or psql. `pg_settings`,
//! `hba_file` and `ident_file` are never applied; the summary names them. `--dry-run` stops
//! after the plan.
//!
//! Encrypted sets (age) are refused for now ([`set::SetError::Encrypted`]). The seam for them:
//! verify the ciphertext against its checksum file, then restore from a decrypting
//! `AsyncRead` passed as [`exec::Input::Stream`] to the command of
//! [`plan::stream_load_step`] (and to psql for the globals and createdb.sql as
//! [`exec::Input::Stream`] too), so that no plaintext is written to disk.
//!
//! # Layout
//! - [`set`]: dump sets in a directory, picking one, selecting databases by glob.
//! - [`verify`]: checksum files read back and checked.
//! - [`script`]: globals and createdb.sql as statements, rewritten for an existing target.
//! - [`target`]: what the target holds (roles, databases, objects), SQL per version.
//! - [`plan`]: the ordered steps and their argument vectors; what `--dry-run` prints.
//! - [`exec`]: running psql / pg_restore / a decompressor; the seam for decryption.
//! - [`cli`]: pgback's `--restore` flags, and the run from them to an exit status.

pub mod cli;
pub mod exec;
pub mod plan;
pub mod script;
pub mod set;
pub mod target;
pub mod verify;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use exec::{run_piped, run_tool, Input, ToolError};
use plan::{
    bare_create_database, file_name, load_step, psql_command, quoted_list, CommandSettings,
    DatabaseAction, DatabasePlan, RestorePlan, SqlInput, SqlStep,
};
use set::{DumpFormat, SetError};
use target::TargetError;
use verify::VerifyError;

use crate::conn::ConnSettings;
use crate::dump::tools::{parse_tool_version, tool_path};
use crate::exit::{ExitStatus, Failure};

/// What to restore, where, and how.
#[derive(Debug, Clone)]
pub struct RestoreSettings {
    /// The backup directory holding the dump sets.
    pub dir: PathBuf,
    /// `--timestamp`: a stamp of the set to restore (any file's); the newest set when `None`.
    pub timestamp: Option<String>,
    /// DBNAME globs (`*`, `?`, `[..]`); every database of the set when empty.
    pub databases: Vec<String>,
    /// `--clean`: restore into databases that hold objects, dropping what the dump holds first.
    pub clean: bool,
    /// `--dry-run`: print the plan, change nothing.
    pub dry_run: bool,
    /// `pg_restore -j` for the custom and directory formats.
    pub jobs: u32,
    /// Where psql and pg_restore are (`""`: on PATH), like `dump.bin_directory`.
    pub bin_directory: String,
    /// Refuse a set without checksum files (by default such a set is restored unverified,
    /// with a note; a set with some checksum files must have them for every file).
    pub require_checksums: bool,
    /// The target; its dbname is the maintenance database.
    pub conn: ConnSettings,
}

/// A failure that stops the restore. Everything before the globals leaves the server untouched.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// No set, a bad stamp, a glob matching nothing.
    #[error(transparent)]
    Set(#[from] SetError),
    /// A file does not match its checksum, or is missing: nothing was touched.
    #[error("{0}: nothing was restored")]
    Verify(#[from] VerifyError),
    /// The target could not be read.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// Databases that hold objects, without `--clean`: nothing was touched.
    #[error("{}: nothing was restored", refused.iter().map(|(db, why)| format!("database {db:?} {why}")).collect::<Vec<_>>().join("; "))]
    Refused {
        /// Each database and why.
        refused: Vec<(String, String)>,
    },
    /// A file of the set could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A createdb.sql that cannot be applied to an existing database.
    #[error("{path}: {source}")]
    Createdb {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: script::UnexpectedCreatedb,
    },
    /// pg_restore could not be run.
    #[error("cannot use {program}: {reason}")]
    Tool {
        /// The program.
        program: PathBuf,
        /// Why.
        reason: String,
    },
    /// The globals failed: no database was restored.
    #[error("globals {file}: {source}; no database was restored")]
    Globals {
        /// The globals file.
        file: PathBuf,
        /// psql's failure.
        #[source]
        source: ToolError,
    },
    /// SIGINT or SIGTERM.
    #[error("interrupted by a signal")]
    Interrupted,
}

impl Failure for RestoreError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            RestoreError::Set(SetError::Read { .. }) | RestoreError::Read { .. } => {
                ExitStatus::Output
            }
            RestoreError::Set(_) | RestoreError::Tool { .. } => ExitStatus::Usage,
            RestoreError::Target(TargetError::Connect(e)) => e.exit_status(),
            RestoreError::Target(TargetError::Query { .. }) => ExitStatus::Server,
            RestoreError::Verify(_)
            | RestoreError::Refused { .. }
            | RestoreError::Createdb { .. }
            | RestoreError::Globals { .. }
            | RestoreError::Interrupted => ExitStatus::BackupFailed,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            RestoreError::Set(SetError::NoMatch { .. }) => {
                Some("globs match database names as written in createdb.sql; quote them for the shell".into())
            }
            RestoreError::Set(SetError::NoSuchStamp { .. }) => {
                Some("--timestamp takes a stamp from a file name of the set, e.g. of pg_globals_<stamp>.sql".into())
            }
            RestoreError::Set(SetError::Encrypted(_)) => {
                Some("decrypt the set first (age -d), then restore the plaintext copy".into())
            }
            RestoreError::Verify(VerifyError::NoChecksum(_)) => Some(
                "restore a set written with checksum_algorithm, or restore this file by hand".into(),
            ),
            RestoreError::Verify(_) => Some(
                "the file changed since it was written: restore another set (--timestamp)".into(),
            ),
            RestoreError::Refused { .. } => Some(
                "--clean restores into them anyway (pg_restore --clean --if-exists), or leave them out with DBNAME globs"
                    .into(),
            ),
            RestoreError::Target(TargetError::Connect(e)) => e.hint(),
            RestoreError::Tool { .. } => Some(
                "install PostgreSQL's client tools, or point dump.bin_directory (-B) at them".into(),
            ),
            _ => None,
        }
    }
}

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

/// How a table column is padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text columns.
    Left,
    /// Numbers and durations.
    Right,
}

/// Rows as aligned columns two spaces apart; the last column is never padded, columns beyond
/// `aligns` are left-aligned.
pub fn render_table(rows: &[Vec<String>], aligns: &[Align]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width = |column: usize| {
        rows.iter()
            .filter_map(|row| row.get(column))
            .map(|cell| cell.chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..columns).map(width).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(column, cell)| {
                let pad = widths[column].saturating_sub(cell.chars().count());
                if column + 1 == row.len() {
                    cell.clone()
                } else if aligns.get(column) == Some(&Align::Right) {
                    format!("{}{cell}", " ".repeat(pad))
                } else {
                    format!("{cell}{}", " ".repeat(pad))
                }
            })
            .collect();
        out.push_str(&cells.join("  "));
        out.push('\n');
    }
    out
}

async fn probe_pg_restore(
    settings: &RestoreSettings,
) -> Result<Option<crate::dump::tools::ToolVersion>, RestoreError> {
    let program = tool_path(&settings.bin_directory, "pg_restore");
    let fail = |reason: String| RestoreError::Tool {
        program: program.clone(),
        reason,
    };
    let text = exec::tool_version(&program)
        .await
        .map_err(|e| fail(e.to_string()))?;
    parse_tool_version(&text)
        .map(Some)
        .ok_or_else(|| fail(format!("unreadable version {:?}", text.trim())))
}

fn read_text(path: &std::path::Path) -> Result<String, RestoreError> {
    std::fs::read_to_string(path).map_err(|source| RestoreError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Builds the plan: set, selection, verification, target state, refusals. Touches nothing.
pub async fn plan_restore(settings: &RestoreSettings) -> Result<RestorePlan, RestoreError> {
    let set = set::find_set(&settings.dir, settings.timestamp.as_deref())?;
    let selected: Vec<set::DatabaseDump> = set::select(&set, &settings.databases)?
        .into_iter()
        .cloned()
        .collect();
    let mut files: Vec<PathBuf> = set.globals.iter().cloned().collect();
    for db in &selected {
        files.extend(db.createdb.iter().cloned());
        files.push(db.dump.clone());
    }
    let require = settings.require_checksums;
    let verified = tokio::task::spawn_blocking(move || verify::verify_all(&files, require))
        .await
        .map_err(|e| RestoreError::Tool {
            program: "verify".into(),
            reason: format!("internal: {e}"),
        })??;
    let mut notes = Vec::new();
    if verified.iter().all(|v| v.checksum_files.is_empty()) {
        notes.push("the set has no checksum files: nothing could be verified".to_string());
    }
    let target = target::read_target(&settings.conn).await?;
    let pg_restore_version = if selected
        .iter()
        .any(|db| !matches!(db.format, DumpFormat::Plain(_)))
    {
        probe_pg_restore(settings).await?
    } else {
        None
    };
    let commands = CommandSettings {
        bin_directory: settings.bin_directory.clone(),
        maintenance_db: settings.conn.dbname.clone(),
        jobs: settings.jobs,
        pg_restore_version,
    };
    let mut refused = Vec::new();
    let mut databases = Vec::new();
    for db in &selected {
        let action = if !target.databases.contains(&db.name) {
            DatabaseAction::Create
        } else {
            let objects =
                target::own_objects(&settings.conn, &db.name, target.server_version_num).await?;
            if objects.is_empty() {
                DatabaseAction::IntoEmpty
            } else {
                let objects = target::describe_objects(&objects);
                if !settings.clean {
                    refused.push((db.name.clone(), format!("holds {objects}")));
                    continue;
                }
                if matches!(db.format, DumpFormat::Plain(_)) {
                    refused.push((
                        db.name.clone(),
                        format!(
                            "holds {objects} and its dump is plain SQL, which --clean cannot clean"
                        ),
                    ));
                    continue;
                }
                DatabaseAction::Clean { objects }
            }
        };
        let prepare = match (&action, &db.createdb) {
            (DatabaseAction::Create, Some(file)) => SqlStep {
                command: psql_command(&commands, &commands.maintenance_db, Some(file)),
                input: SqlInput::File(file.clone()),
            },
            (DatabaseAction::Create, None) => {
                notes.push(format!(
                    "{:?} has no createdb.sql: created with the server's defaults, owned by {:?}",
                    db.name, settings.conn.user
                ));
                SqlStep {
                    command: psql_command(&commands, &commands.maintenance_db, None),
                    input: SqlInput::Derived {
                        from: db.dump.clone(),
                        script: bare_create_database(&db.name),
                        change: "CREATE DATABASE .. TEMPLATE template0 (no createdb.sql)".into(),
                    },
                }
            }
            (_, Some(file)) => {
                let script =
                    script::createdb_for_existing(&read_text(file)?).map_err(|source| {
                        RestoreError::Createdb {
                            path: file.clone(),
                            source,
                        }
                    })?;
                SqlStep {
                    command: psql_command(&commands, &commands.maintenance_db, None),
                    input: SqlInput::Derived {
                        from: file.clone(),
                        script,
                        change: "the database exists: settings reset, CREATE DATABASE turned into ALTER DATABASE .. OWNER TO".into(),
                    },
                }
            }
            (_, None) => SqlStep {
                command: psql_command(&commands, &commands.maintenance_db, None),
                input: SqlInput::Derived {
                    from: db.dump.clone(),
                    script: String::new(),
                    change: "no createdb.sql: owner, ACL and settings left as they are".into(),
                },
            },
        };
        let clean = matches!(action, DatabaseAction::Clean { .. });
        let (load, note) = load_step(&commands, &db.name, &db.dump, db.format, clean);
        notes.extend(note);
        databases.push(DatabasePlan {
            name: db.name.clone(),
            dump: db.dump.clone(),
            format: db.format,
            action,
            prepare,
            load,
        });
    }
    if !refused.is_empty() {
        return Err(RestoreError::Refused { refused });
    }
    let (globals, existing_roles) = match &set.globals {
        Some(file) => {
            let (script, existing) =
                script::globals_without_roles(&read_text(file)?, &target.roles);
            let input = if existing.is_empty() {
                SqlInput::File(file.clone())
            } else {
                SqlInput::Derived {
                    from: file.clone(),
                    script,
                    change: format!("without CREATE ROLE for {}", quoted_list(&existing)),
                }
            };
            let path = match &input {
                SqlInput::File(file) => Some(file.as_path()),
                SqlInput::Derived { .. } => None,
            };
            let step = SqlStep {
                command: psql_command(&commands, &commands.maintenance_db, path),
                input,
            };
            (Some(step), existing)
        }
        None => {
            notes
                .push("the set has no globals file (--dump-only): roles must exist already".into());
            (None, Vec::new())
        }
    };
    Ok(RestorePlan {
        dir: set.dir.clone(),
        stamp: set.stamp.clone(),
        target: settings.conn.describe(),
        verified,
        globals,
        existing_roles,
        databases,
        unapplied: set.unapplied.clone(),
        notes,
    })
}

async fn run_sql(step: &SqlStep, conn: &ConnSettings, label: &str) -> Result<(), ToolError> {
    let input = match &step.input {
        SqlInput::File(_) => Input::Null,
        SqlInput::Derived { script, .. } if script.is_empty() => return Ok(()),
        SqlInput::Derived { script, .. } => Input::Bytes(script.clone().into_bytes()),
    };
    run_tool(&step.command, conn, input, label).await
}

async fn restore_database(db: &DatabasePlan, conn: &ConnSettings) -> DatabaseOutcome {
    let started = Instant::now();
    tracing::info!(
        "[{}] {}: {}",
        db.name,
        db.action.name(),
        file_name(&db.dump)
    );
    let result = async {
        run_sql(&db.prepare, conn, &db.name).await?;
        match &db.load.decompress {
            Some(decompress) => {
                run_piped(decompress, &db.load.command, Input::Null, conn, &db.name).await
            }
            None => run_tool(&db.load.command, conn, Input::Null, &db.name).await,
        }
    }
    .await;
    let duration = started.elapsed();
    match &result {
        Ok(()) => tracing::info!("[{}] restored in {:.1}s", db.name, duration.as_secs_f64()),
        Err(e) => tracing::error!("[{}] failed: {e}", db.name),
    }
    DatabaseOutcome {
        name: db.name.clone(),
        action: db.action.clone(),
        duration,
        error: result.err(),
    }
}

/// Restores a dump set until done or until `shutdown` resolves (SIGINT/SIGTERM; the running
/// tool is killed). Databases are restored one after the other, each with `jobs` pg_restore
/// jobs; a failed database does not stop the next one, a failed globals step stops all.
pub async fn restore(
    settings: RestoreSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<RestoreReport, RestoreError> {
    let work = async {
        let plan = plan_restore(&settings).await?;
        if settings.dry_run {
            return Ok(RestoreReport {
                plan,
                dry_run: true,
                databases: Vec::new(),
            });
        }
        if let Some(globals) = &plan.globals {
            let file = match &globals.input {
                SqlInput::File(file) | SqlInput::Derived { from: file, .. } => file.clone(),
            };
            tracing::info!("[globals] {}", file_name(&file));
            run_sql(globals, &settings.conn, "globals")
                .await
                .map_err(|source| RestoreError::Globals { file, source })?;
        }
        let mut databases = Vec::new();
        for db in &plan.databases {
            databases.push(restore_database(db, &settings.conn).await);
        }
        Ok(RestoreReport {
            plan,
            dry_run: false,
            databases,
        })
    };
    tokio::select! {
        result = work => result,
        () = shutdown => Err(RestoreError::Interrupted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn plan_with(names: &[&str]) -> RestorePlan {
        let settings = CommandSettings {
            bin_directory: String::new(),
            maintenance_db: "postgres".into(),
            jobs: 2,
            pg_restore_version: None,
        };
        RestorePlan {
            dir: "/b".into(),
            stamp: "2024-03-05T07:00:00Z".into(),
            target: "host=/tmp port=5432 user=postgres dbname=postgres".into(),
            verified: vec![],
            globals: None,
            existing_roles: vec!["postgres".into()],
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

    #[test]
    fn exit_statuses() {
        let refused = RestoreError::Refused {
            refused: vec![("b1".into(), "holds 4 relations".into())],
        };
        assert_eq!(refused.exit_status(), ExitStatus::BackupFailed);
        assert_eq!(
            refused.to_string(),
            "database \"b1\" holds 4 relations: nothing was restored"
        );
        assert!(refused.hint().unwrap().contains("--clean"));
        let no_set = RestoreError::Set(SetError::BadStamp("x".into()));
        assert_eq!(no_set.exit_status(), ExitStatus::Usage);
    }
}
