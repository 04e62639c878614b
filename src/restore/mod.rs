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
//! Encrypted sets (age) are verified as ciphertext against `<file>.age.<algo>`, their headers
//! opened with the key before anything is touched, then restored from a decrypting stream
//! ([`decrypt`]): no plaintext is written to disk. Encrypted directory dumps are refused.
//!
//! # Layout
//! - [`set`]: dump sets in a directory, picking one, selecting databases by glob.
//! - [`verify`]: checksum files read back and checked.
//! - [`script`]: globals and createdb.sql as statements, rewritten for an existing target.
//! - [`target`]: what the target holds (roles, databases, objects), SQL per version.
//! - [`plan`]: the ordered steps and their argument vectors; what `--dry-run` prints.
//! - [`error`]: [`RestoreError`], why a restore stops.
//! - [`exec`]: running psql / pg_restore / a decompressor; the seam for decryption.
//! - [`decrypt`]: encrypted files decrypted into memory or streamed into a tool.
//! - [`cli`]: pgback's `--restore` flags, and the run from them to an exit status.

pub mod cli;
pub mod decrypt;
pub mod error;
pub mod exec;
pub mod plan;
pub mod script;
pub mod set;
pub mod target;
pub mod verify;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use decrypt::{DecryptError, Decryption};
pub use error::RestoreError;

use exec::{run_piped, run_tool, Input, ToolError};
use plan::{
    bare_create_database, file_name, load_step, psql_command, quoted_list, CommandSettings,
    DatabaseAction, DatabasePlan, RestorePlan, SqlInput, SqlStep,
};
use set::DumpFormat;

use crate::config::encryption::EncryptionError;
use crate::conn::ConnSettings;
use crate::crypt::DecryptKey;
use crate::dump::tools::{parse_tool_version, tool_path};
use crate::glob::Glob;
use crate::table::{render_table, Align};

/// What to restore, where, and how.
#[derive(Debug, Clone)]
pub struct RestoreSettings {
    /// The backup directory holding the dump sets.
    pub dir: PathBuf,
    /// `--timestamp`: a stamp of the set to restore (any file's); the newest set when `None`.
    pub timestamp: Option<String>,
    /// DBNAME globs ([`crate::glob::Glob`]), parsed first; every database of the set when empty.
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
    /// The key of an encrypted set (`pgback --decrypt`'s), or why there is none: an error
    /// only when the set turns out to be encrypted.
    pub decrypt_key: Result<Arc<DecryptKey>, Arc<EncryptionError>>,
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

/// The text of a globals or createdb.sql file: decrypted in memory when it is encrypted.
fn read_text(
    path: &std::path::Path,
    decryption: Option<&Decryption>,
) -> Result<String, RestoreError> {
    if let Some(text) = decryption.and_then(|d| d.prepared_text(path)) {
        return Ok(text.to_string());
    }
    std::fs::read_to_string(path).map_err(|source| RestoreError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// What is read from the backup directory before the target: the set, the databases chosen,
/// every file verified, and the encrypted files opened with the key.
type ReadSet = (
    set::DumpSet,
    Vec<set::DatabaseDump>,
    Vec<verify::Verified>,
    Option<Decryption>,
);

/// Picks the set, selects, verifies and (for encrypted files) opens. Blocking; touches nothing.
fn read_set(settings: &RestoreSettings) -> Result<ReadSet, RestoreError> {
    let globs = Glob::parse_all(&settings.databases).map_err(set::SetError::from)?;
    let mut set = set::find_set(&settings.dir, settings.timestamp.as_deref())?;
    let mut decryption = match decrypt::needs_key(&set) {
        true => Some(Decryption::new(
            settings.decrypt_key.clone().map_err(RestoreError::Key)?,
        )),
        false => None,
    };
    if let Some(decryption) = &mut decryption {
        decryption.name_databases(&mut set);
    }
    let selected: Vec<set::DatabaseDump> =
        set::select(&set, &globs)?.into_iter().cloned().collect();
    if let Some(db) = selected
        .iter()
        .find(|db| db.encrypted && db.format == DumpFormat::Directory)
    {
        return Err(DecryptError::Directory(db.dump.clone()).into());
    }
    let mut texts: Vec<PathBuf> = set.globals.iter().cloned().collect();
    texts.extend(selected.iter().filter_map(|db| db.createdb.clone()));
    let dumps: Vec<PathBuf> = selected.iter().map(|db| db.dump.clone()).collect();
    let mut files = [texts.as_slice(), dumps.as_slice()].concat();
    files.extend(decrypt::plain_checksum_files(&files));
    let verified = verify::verify_all(&files, settings.require_checksums)?;
    if let Some(decryption) = &mut decryption {
        decryption.prepare(&texts, &dumps)?;
    }
    Ok((set, selected, verified, decryption))
}

/// Builds the plan: set, selection, verification, target state, refusals. Touches nothing.
pub async fn plan_restore(
    settings: &RestoreSettings,
) -> Result<(RestorePlan, Option<Decryption>), RestoreError> {
    let owned = settings.clone();
    let (set, selected, verified, decryption) =
        tokio::task::spawn_blocking(move || read_set(&owned))
            .await
            .map_err(|e| RestoreError::Tool {
                program: "verify".into(),
                reason: format!("internal: {e}"),
            })??;
    let mut notes = Vec::new();
    if decryption.is_some() {
        notes.push("encrypted files are decrypted in memory while they are restored: no plaintext is written to disk".to_string());
    }
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
            (DatabaseAction::Create, Some(file)) if set::is_encrypted_file(file) => SqlStep {
                command: psql_command(&commands, &commands.maintenance_db, None),
                input: SqlInput::Derived {
                    from: file.clone(),
                    script: read_text(file, decryption.as_ref())?,
                    change: "decrypted in memory".into(),
                },
            },
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
                let script = script::createdb_for_existing(&read_text(file, decryption.as_ref())?)
                    .map_err(|source| RestoreError::Createdb {
                        path: file.clone(),
                        source,
                    })?;
                SqlStep {
                    command: psql_command(&commands, &commands.maintenance_db, None),
                    input: SqlInput::Derived {
                        from: file.clone(),
                        script,
                        change: format!(
                            "{}the database exists: settings reset, CREATE DATABASE turned into ALTER DATABASE .. OWNER TO",
                            if set::is_encrypted_file(file) { "decrypted in memory; " } else { "" }
                        ),
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
        let stream = decryption
            .as_ref()
            .and_then(|d| d.stream(&db.dump))
            .cloned();
        let streamed = stream
            .as_ref()
            .and_then(|_| plan::stream_load_step(&commands, &db.name, db.format, clean));
        let load = match streamed {
            Some(load) => {
                if settings.jobs > 1 && !matches!(db.format, DumpFormat::Plain(_)) {
                    notes.push(format!("{:?}: an encrypted dump streams into pg_restore's stdin: one job (pg_restore cannot restore in parallel from a pipe)", db.name));
                }
                load
            }
            None => {
                let (load, note) = load_step(&commands, &db.name, &db.dump, db.format, clean);
                notes.extend(note);
                load
            }
        };
        databases.push(DatabasePlan {
            name: db.name.clone(),
            dump: db.dump.clone(),
            format: db.format,
            action,
            prepare,
            load,
            stream,
        });
    }
    if !refused.is_empty() {
        return Err(RestoreError::Refused { refused });
    }
    let (globals, existing_roles) = match &set.globals {
        Some(file) => {
            let (script, existing) = script::globals_without_roles(
                &read_text(file, decryption.as_ref())?,
                &target.roles,
            );
            let input = if set::is_encrypted_file(file) {
                let change = match existing.is_empty() {
                    true => "decrypted in memory".to_string(),
                    false => format!(
                        "decrypted in memory, without CREATE ROLE for {}",
                        quoted_list(&existing)
                    ),
                };
                SqlInput::Derived {
                    from: file.clone(),
                    script,
                    change,
                }
            } else if existing.is_empty() {
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
    let plan = RestorePlan {
        dir: set.dir.clone(),
        stamp: set.stamp.clone(),
        target: settings.conn.describe(),
        verified,
        globals,
        existing_roles,
        databases,
        unapplied: set.unapplied.clone(),
        notes,
    };
    Ok((plan, decryption))
}

async fn run_sql(step: &SqlStep, conn: &ConnSettings, label: &str) -> Result<(), ToolError> {
    let input = match &step.input {
        SqlInput::File(_) => Input::Null,
        SqlInput::Derived { script, .. } if script.is_empty() => return Ok(()),
        SqlInput::Derived { script, .. } => Input::Bytes(script.clone().into_bytes()),
    };
    run_tool(&step.command, conn, input, label).await
}

async fn restore_database(
    db: &DatabasePlan,
    conn: &ConnSettings,
    key: Option<&Arc<DecryptKey>>,
) -> DatabaseOutcome {
    let started = Instant::now();
    tracing::info!(
        "[{}] {}: {}",
        db.name,
        db.action.name(),
        file_name(&db.dump)
    );
    let result = async {
        run_sql(&db.prepare, conn, &db.name).await?;
        let (input, decrypting) = match (&db.stream, key) {
            (Some(source), Some(key)) => {
                let (input, task) = decrypt::decrypting_input(source.clone(), key.clone());
                (input, Some(task))
            }
            _ => (Input::Null, None),
        };
        let loaded = match &db.load.decompress {
            Some(decompress) => {
                run_piped(decompress, &db.load.command, input, conn, &db.name).await
            }
            None => run_tool(&db.load.command, conn, input, &db.name).await,
        };
        match decrypting {
            Some(task) => decrypt::finish_stream(task, loaded).await,
            None => loaded,
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
        let (plan, decryption) = plan_restore(&settings).await?;
        let key = decryption.as_ref().map(Decryption::key);
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
            databases.push(restore_database(db, &settings.conn, key).await);
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
    use crate::exit::{ExitStatus, Failure};
    use set::SetError;
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
                    stream: None,
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
