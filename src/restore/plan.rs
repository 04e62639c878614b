//! The restore plan: which files, in which order, with which commands, and how it is decided.
//! Built before anything is touched: read the set (pick, select, verify, open the encrypted
//! files), read the target, decide each database's action (refusing non-empty ones without
//! `--clean`), then its createdb step and load, then the globals.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::argv::{
    bare_create_database, load_step, psql_command, stream_load_step, CommandSettings, LoadStep,
};
use super::decrypt::{self, DecryptError, Decryption, EncryptedSource};
use super::error::RestoreError;
use super::exec::ToolCommand;
use super::script;
use super::set::{self, DatabaseDump, DumpFormat, DumpSet};
use super::target::{self, TargetState};
use crate::checksum::{self, Verified};
use crate::compress::Method;
use crate::config::EncryptionError;
use crate::conn::ConnSettings;
use crate::crypt::DecryptKey;
use crate::exit::quoted_list;
use crate::glob::Glob;
use crate::native::NATIVE_GLOBALS_HEADER;
use crate::programs::{probe_version, tool_path};
use crate::server::ServerVersion;

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

/// What happens to a database on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseAction {
    /// It does not exist: created from its createdb.sql.
    Create,
    /// It exists and holds nothing of its own: restored into, owner/ACL/settings applied.
    IntoEmpty,
    /// It holds objects and `--clean` was given: pg_restore drops what the dump holds first.
    Clean {
        /// What it held, e.g. `3 relations`.
        objects: String,
    },
}

impl DatabaseAction {
    /// A short word for plans and summaries.
    pub fn name(&self) -> &'static str {
        match self {
            DatabaseAction::Create => "create",
            DatabaseAction::IntoEmpty => "into existing (empty)",
            DatabaseAction::Clean { .. } => "clean",
        }
    }
}

/// Where an SQL step's script comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlInput {
    /// The file, named in psql's argv.
    File(PathBuf),
    /// A script derived from a file (existing roles or the CREATE left out), fed on stdin.
    Derived {
        /// The file it comes from.
        from: PathBuf,
        script: String,
        /// What was changed, for the plan.
        change: String,
    },
}

/// One psql run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlStep {
    pub command: ToolCommand,
    /// Its script.
    pub input: SqlInput,
}

/// Everything done for one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabasePlan {
    /// The database.
    pub name: String,
    pub dump: PathBuf,
    pub format: DumpFormat,
    /// Create, restore into, or clean.
    pub action: DatabaseAction,
    /// createdb.sql (or its rewrite) run first.
    pub prepare: SqlStep,
    /// The data.
    pub load: LoadStep,
    /// An encrypted dump: decrypted in memory into the load step's stdin.
    pub stream: Option<EncryptedSource>,
    /// A native dump (`pgback --native`; compressed or not, encrypted or not): loaded by
    /// pgback itself (decompressed by it too) instead of the load step's psql.
    pub native: bool,
}

/// The whole restore, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePlan {
    /// The backup directory.
    pub dir: PathBuf,
    /// The set's stamp.
    pub stamp: String,
    /// The target, without any secret (`host=.. port=.. user=.. dbname=..`).
    pub target: String,
    /// The files checked against their checksum files, in order.
    pub verified: Vec<Verified>,
    /// The globals, when the set has them.
    pub globals: Option<SqlStep>,
    /// Roles of the globals that exist on the target: not created again.
    pub existing_roles: Vec<String>,
    /// A native set (`pgback --native`'s globals file, or only native dumps without one): its
    /// globals and createdb.sql are run by pgback itself, statement by statement, no psql.
    pub native_sql: bool,
    /// The databases, in order.
    pub databases: Vec<DatabasePlan>,
    /// `pg_settings`, `hba_file`, `ident_file`: never applied.
    pub unapplied: Vec<PathBuf>,
    /// Things worth knowing (fewer jobs than asked, missing createdb.sql, unverified set).
    pub notes: Vec<String>,
}

/// What is read from the backup directory before the target: the set, the databases chosen,
/// every file verified, and the encrypted files opened with the key.
struct ReadSet {
    set: DumpSet,
    selected: Vec<DatabaseDump>,
    verified: Vec<Verified>,
    decryption: Option<Decryption>,
}

/// Builds the plan: set, selection, verification, target state, refusals. Touches nothing.
pub async fn plan_restore(
    settings: &RestoreSettings,
) -> Result<(RestorePlan, Option<Decryption>), RestoreError> {
    let ReadSet {
        set,
        selected,
        verified,
        decryption,
    } = read_set_off_runtime(settings).await?;
    let mut notes = set_notes(decryption.is_some(), &verified);
    let target = target::read_target(&settings.conn).await?;
    let commands = command_settings(settings, &target, &selected).await?;
    let steps = DatabaseSteps {
        settings,
        commands: &commands,
        decryption: decryption.as_ref(),
    };
    let mut refused = Vec::new();
    let mut databases = Vec::new();
    for db in &selected {
        let action = match database_action(settings, &target, db).await? {
            Ok(action) => action,
            Err(reason) => {
                refused.push((db.name.clone(), reason));
                continue;
            }
        };
        databases.push(steps.plan(db, action, &mut notes)?);
    }
    if !refused.is_empty() {
        return Err(RestoreError::Refused { refused });
    }
    let (globals, existing_roles) = match &set.globals {
        Some(file) => {
            let (step, existing) = globals_step(file, &target, &commands, decryption.as_ref())?;
            (Some(step), existing)
        }
        None => {
            notes
                .push("the set has no globals file (--dump-only): roles must exist already".into());
            (None, Vec::new())
        }
    };
    let native_sql = match &set.globals {
        Some(file) => read_text(file, decryption.as_ref())?.starts_with(NATIVE_GLOBALS_HEADER),
        None => !databases.is_empty() && databases.iter().all(|db| db.native),
    };
    let plan = RestorePlan {
        native_sql,
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

/// [`read_set`] on a blocking thread: it reads and hashes whole files.
async fn read_set_off_runtime(settings: &RestoreSettings) -> Result<ReadSet, RestoreError> {
    let owned = settings.clone();
    tokio::task::spawn_blocking(move || read_set(&owned))
        .await
        .map_err(|e| RestoreError::Tool {
            program: "verify".into(),
            reason: format!("internal: {e}"),
        })?
}

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
    let selected: Vec<DatabaseDump> = set::select(&set, &globs)?.into_iter().cloned().collect();
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
    let verified = checksum::verify_all(&files, settings.require_checksums)?;
    if let Some(decryption) = &mut decryption {
        decryption.prepare(&texts, &dumps)?;
    }
    Ok(ReadSet {
        set,
        selected,
        verified,
        decryption,
    })
}

/// What the user should know about the set as a whole: decryption, and checksums missing.
fn set_notes(decrypting: bool, verified: &[Verified]) -> Vec<String> {
    let mut notes = Vec::new();
    if decrypting {
        notes.push("encrypted files are decrypted in memory while they are restored: no plaintext is written to disk".to_string());
    }
    if verified.iter().all(|v| v.checksum_files.is_empty()) {
        notes.push("the set has no checksum files: nothing could be verified".to_string());
    }
    notes
}

/// The tools and options of the plan's commands; pg_restore's version is probed only when a
/// selected dump needs pg_restore. With the target's version it decides whether pg_restore
/// restores itself or writes a script for psql.
async fn command_settings(
    settings: &RestoreSettings,
    target: &TargetState,
    selected: &[DatabaseDump],
) -> Result<CommandSettings, RestoreError> {
    let pg_restore_version = if selected
        .iter()
        .any(|db| !matches!(db.format, DumpFormat::Plain(_)))
    {
        probe_pg_restore(settings).await?
    } else {
        None
    };
    Ok(CommandSettings {
        bin_directory: settings.bin_directory.clone(),
        maintenance_db: settings.conn.dbname.clone(),
        jobs: settings.jobs,
        pg_restore_version,
        server_version: Some(target.server_version),
    })
}

async fn probe_pg_restore(
    settings: &RestoreSettings,
) -> Result<Option<ServerVersion>, RestoreError> {
    let program = tool_path(&settings.bin_directory, "pg_restore");
    probe_version(&program, "pg_restore")
        .await
        .map(Some)
        .map_err(|e| RestoreError::Tool {
            program: e.program,
            reason: e.reason,
        })
}

/// What happens to `db` on the target, or why it is refused: it holds objects of its own and
/// there is no `--clean`, or its dump is plain SQL, which `--clean` cannot clean.
async fn database_action(
    settings: &RestoreSettings,
    target: &TargetState,
    db: &DatabaseDump,
) -> Result<Result<DatabaseAction, String>, RestoreError> {
    if !target.databases.contains(&db.name) {
        return Ok(Ok(DatabaseAction::Create));
    }
    let objects = target::own_objects(&settings.conn, &db.name, target.server_version).await?;
    if objects.is_empty() {
        return Ok(Ok(DatabaseAction::IntoEmpty));
    }
    let objects = target::describe_objects(&objects);
    Ok(if !settings.clean {
        Err(format!("holds {objects}"))
    } else if matches!(db.format, DumpFormat::Plain(_)) {
        Err(format!(
            "holds {objects} and its dump is plain SQL, which --clean cannot clean"
        ))
    } else {
        Ok(DatabaseAction::Clean { objects })
    })
}

/// What the steps of one database are built from.
struct DatabaseSteps<'a> {
    settings: &'a RestoreSettings,
    commands: &'a CommandSettings,
    decryption: Option<&'a Decryption>,
}

impl DatabaseSteps<'_> {
    /// Everything done for `db`: its createdb step, then its load (streamed when encrypted).
    fn plan(
        &self,
        db: &DatabaseDump,
        action: DatabaseAction,
        notes: &mut Vec<String>,
    ) -> Result<DatabasePlan, RestoreError> {
        let prepare = self.prepare_step(db, &action, notes)?;
        let clean = matches!(action, DatabaseAction::Clean { .. });
        let stream = self.decryption.and_then(|d| d.stream(&db.dump)).cloned();
        let load = self.load(db, stream.is_some(), clean, notes);
        let native = matches!(db.format, DumpFormat::Plain(_))
            && match &stream {
                None => is_native_file(&db.dump, db.format.plain_method()),
                Some(source) => source.native,
            };
        Ok(DatabasePlan {
            native,
            name: db.name.clone(),
            dump: db.dump.clone(),
            format: db.format,
            action,
            prepare,
            load,
            stream,
        })
    }

    /// The psql run before the data: createdb.sql (decrypted in memory when encrypted), a bare
    /// CREATE DATABASE without one, or its rewrite for a database that exists.
    fn prepare_step(
        &self,
        db: &DatabaseDump,
        action: &DatabaseAction,
        notes: &mut Vec<String>,
    ) -> Result<SqlStep, RestoreError> {
        let commands = self.commands;
        let on_stdin = |input: SqlInput| SqlStep {
            command: psql_command(commands, &commands.maintenance_db, None),
            input,
        };
        Ok(match (action, &db.createdb) {
            (DatabaseAction::Create, Some(file)) if set::is_encrypted_file(file) => {
                on_stdin(SqlInput::Derived {
                    from: file.clone(),
                    script: read_text(file, self.decryption)?,
                    change: "decrypted in memory".into(),
                })
            }
            (DatabaseAction::Create, Some(file)) => SqlStep {
                command: psql_command(commands, &commands.maintenance_db, Some(file)),
                input: SqlInput::File(file.clone()),
            },
            (DatabaseAction::Create, None) => {
                notes.push(format!(
                    "{:?} has no createdb.sql: created with the server's defaults, owned by {:?}",
                    db.name, self.settings.conn.user
                ));
                on_stdin(SqlInput::Derived {
                    from: db.dump.clone(),
                    script: bare_create_database(&db.name),
                    change: "CREATE DATABASE .. TEMPLATE template0 (no createdb.sql)".into(),
                })
            }
            (_, Some(file)) => {
                let script = script::createdb_for_existing(&read_text(file, self.decryption)?)
                    .map_err(|source| RestoreError::Createdb {
                        path: file.clone(),
                        source,
                    })?;
                on_stdin(SqlInput::Derived {
                    from: file.clone(),
                    script,
                    change: format!(
                        "{}the database exists: settings reset, CREATE DATABASE turned into ALTER DATABASE .. OWNER TO",
                        if set::is_encrypted_file(file) { "decrypted in memory; " } else { "" }
                    ),
                })
            }
            (_, None) => on_stdin(SqlInput::Derived {
                from: db.dump.clone(),
                script: String::new(),
                change: "no createdb.sql: owner, ACL and settings left as they are".into(),
            }),
        })
    }

    /// The data: from a decrypting stream (one pg_restore job) or from the file.
    fn load(
        &self,
        db: &DatabaseDump,
        streamed: bool,
        clean: bool,
        notes: &mut Vec<String>,
    ) -> LoadStep {
        let commands = self.commands;
        let stream = streamed
            .then(|| stream_load_step(commands, &db.name, db.format, clean))
            .flatten();
        match stream {
            Some((load, note)) => {
                if self.settings.jobs > 1 && !matches!(db.format, DumpFormat::Plain(_)) {
                    notes.push(format!("{:?}: an encrypted dump streams into pg_restore's stdin: one job (pg_restore cannot restore in parallel from a pipe)", db.name));
                }
                notes.extend(note);
                load
            }
            None => {
                let (load, note) = load_step(commands, &db.name, &db.dump, db.format, clean);
                notes.extend(note);
                load
            }
        }
    }
}

/// Whether `path`, decompressed with `compression`, opens with a native dump's header line.
fn is_native_file(path: &Path, compression: Option<Method>) -> bool {
    std::fs::File::open(path)
        .is_ok_and(|file| decrypt::opens_native_dump(std::io::BufReader::new(file), compression))
}

/// The globals step: the file as it is, or without CREATE ROLE for the roles that exist
/// (and decrypted in memory when encrypted); also returns those roles.
fn globals_step(
    file: &Path,
    target: &TargetState,
    commands: &CommandSettings,
    decryption: Option<&Decryption>,
) -> Result<(SqlStep, Vec<String>), RestoreError> {
    let (script, existing) =
        script::globals_without_roles(&read_text(file, decryption)?, &target.roles);
    let input = if set::is_encrypted_file(file) {
        let change = match existing.is_empty() {
            true => "decrypted in memory".to_string(),
            false => format!(
                "decrypted in memory, without CREATE ROLE for {}",
                quoted_list(&existing)
            ),
        };
        SqlInput::Derived {
            from: file.to_path_buf(),
            script,
            change,
        }
    } else if existing.is_empty() {
        SqlInput::File(file.to_path_buf())
    } else {
        SqlInput::Derived {
            from: file.to_path_buf(),
            script,
            change: format!("without CREATE ROLE for {}", quoted_list(&existing)),
        }
    };
    let path = match &input {
        SqlInput::File(file) => Some(file.as_path()),
        SqlInput::Derived { .. } => None,
    };
    let step = SqlStep {
        command: psql_command(commands, &commands.maintenance_db, path),
        input,
    };
    Ok((step, existing))
}

/// The text of a globals or createdb.sql file: decrypted in memory when it is encrypted.
fn read_text(path: &Path, decryption: Option<&Decryption>) -> Result<String, RestoreError> {
    if let Some(text) = decryption.and_then(|d| d.prepared_text(path)) {
        return Ok(text.to_string());
    }
    std::fs::read_to_string(path).map_err(|source| RestoreError::Read {
        path: path.to_path_buf(),
        source,
    })
}
