//! The pgback run: pre hook, pg_dump probe, connection, server-level files, selection, standby
//! pause, concurrent per-database dumps streamed through checksums, resume, purge, post hook,
//! and the summary.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Semaphore;

use super::createdb::{createdb_script, DatabaseDefinition, RoleSettings};
use super::hooks::{run_hook, HookError, HookKind, HookOutcome};
use super::naming::{self, backup_dir, dump_extension, dump_path, lock_path};
use super::output::{self, OutputError, WrittenFile};
use super::progress::Progress;
use super::purge::purge_dir;
use super::select::{select_databases, ListedDatabase, SelectionRules};
use super::sql;
use super::standby::{self, StandbyError};
use super::tools::{self, pg_dump_args, pg_dumpall_args, tool_path, ToolVersion, MIN_PG_DUMP};
use crate::config::dump::DumpConfig;
use crate::config::values::{ChecksumAlgorithm, Format};
use crate::conn::{ConnError, ConnSettings, LIBPQ_ENV_VARS};
use crate::exit::{ExitStatus, Failure};

/// A failure that stops the whole run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The pre hook failed: nothing was dumped.
    #[error(transparent)]
    PreHook(HookError),
    /// pg_dump could not be run or is unusable.
    #[error("cannot use {program}: {reason}")]
    Tool {
        /// The program.
        program: PathBuf,
        /// Why.
        reason: String,
    },
    /// The server could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnError),
    /// A query of the run (not of one database) failed.
    #[error("{what}: {source}")]
    Query {
        /// What was being read.
        what: &'static str,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The backup directory cannot be used.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// Replay could not be paused.
    #[error(transparent)]
    Standby(#[from] StandbyError),
    /// SIGINT or SIGTERM.
    #[error("interrupted by a signal")]
    Interrupted,
}

impl Failure for RunError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            RunError::PreHook(e) => e.exit_status(),
            RunError::Tool { .. } => ExitStatus::Usage,
            RunError::Connect(e) => e.exit_status(),
            RunError::Query { .. } => ExitStatus::Server,
            RunError::Output(_) => ExitStatus::Output,
            RunError::Standby(e) => e.exit_status(),
            RunError::Interrupted => ExitStatus::BackupFailed,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            RunError::PreHook(e) => e.hint(),
            RunError::Tool { .. } => Some(
                "install PostgreSQL's client tools, or point dump.bin_directory (-B) at them"
                    .into(),
            ),
            RunError::Connect(e) => e.hint(),
            RunError::Standby(e) => e.hint(),
            _ => None,
        }
    }
}

/// Why one database (or one server-level file) failed.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// Another pgback holds `<db>.lock`.
    #[error("{0} is locked by another pgback run")]
    Locked(PathBuf),
    /// The lock file could not be opened.
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The tool could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The tool failed; its last stderr lines are kept.
    #[error("{program} failed ({status}){}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    Tool {
        /// The program.
        program: String,
        /// How it ended.
        status: std::process::ExitStatus,
        /// Its last stderr lines.
        stderr: String,
    },
    /// Writing the result failed.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// Reading the catalog for createdb.sql failed.
    #[error("createdb.sql: {0}")]
    Catalog(String),
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
}

impl RunReport {
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
        let mut rows = vec![[
            "database".to_string(),
            "size".into(),
            "duration".into(),
            "outcome".into(),
        ]];
        for db in &self.databases {
            let bytes: u64 = db.files.iter().map(|f| f.bytes).sum();
            rows.push([
                db.name.escape_debug().to_string(),
                human_bytes(bytes),
                format!("{:.1}s", db.duration.as_secs_f64()),
                match &db.error {
                    None => "ok".into(),
                    Some(e) => format!("FAILED: {}", e.to_string().replace('\n', " ")),
                },
            ]);
        }
        let widths: Vec<usize> = (0..3)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &rows {
            out.push_str(&format!(
                "{:<w0$}  {:>w1$}  {:>w2$}  {}\n",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            ));
        }
        let failed = self.failed_databases();
        if !failed.is_empty() {
            out.push_str(&format!(
                "failed databases: {}\n",
                failed
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        out
    }
}

/// `1.5 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    let mut value = bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if value < 1024.0 || unit == "TiB" {
            return if unit == "B" {
                format!("{bytes} B")
            } else {
                format!("{value:.1} {unit}")
            };
        }
        value /= 1024.0;
    }
    format!("{bytes} B")
}

/// Everything the run needs.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// `[dump]` with flags applied.
    pub dump: DumpConfig,
    /// The resolved connection (its dbname is the maintenance database).
    pub conn: ConnSettings,
    /// Where the progress of running dumps goes.
    pub progress: Progress,
}

struct Context {
    dump: DumpConfig,
    conn: ConnSettings,
    pg_dump: PathBuf,
    pg_dumpall: PathBuf,
    version: ToolVersion,
    run_stamp: String,
    stamps: Mutex<BTreeSet<String>>,
    partials: Mutex<BTreeSet<PathBuf>>,
    progress: Progress,
}

impl Context {
    fn stamp(&self) -> String {
        let stamp = if self.dump.uniform_timestamp {
            self.run_stamp.clone()
        } else {
            naming::format_stamp(self.dump.timestamp_format, &naming::now())
        };
        if let Ok(mut stamps) = self.stamps.lock() {
            stamps.insert(stamp.clone());
        }
        stamp
    }

    fn track(&self, path: &Path, active: bool) {
        if let Ok(mut partials) = self.partials.lock() {
            if active {
                partials.insert(path.to_path_buf());
            } else {
                partials.remove(path);
            }
        }
    }

    fn command(&self, program: &Path, dbname: &str, user: Option<&str>) -> tokio::process::Command {
        let mut settings = self.conn.clone();
        settings.dbname = dbname.to_string();
        if let Some(user) = user {
            settings.user = user.to_string();
        }
        let mut command = tokio::process::Command::new(program);
        for var in LIBPQ_ENV_VARS {
            command.env_remove(var);
        }
        command
            .envs(settings.libpq_env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }
}

/// Probes `pg_dump --version`.
pub async fn probe_pg_dump(program: &Path) -> Result<ToolVersion, RunError> {
    let fail = |reason: String| RunError::Tool {
        program: program.to_path_buf(),
        reason,
    };
    let output = tokio::process::Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !output.status.success() {
        return Err(fail(format!("--version failed ({})", output.status)));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let version = tools::parse_tool_version(&text)
        .ok_or_else(|| fail(format!("unreadable version {:?}", text.trim())))?;
    if version < MIN_PG_DUMP {
        return Err(fail(format!(
            "version {version} is older than {MIN_PG_DUMP}"
        )));
    }
    Ok(version)
}

/// Runs a tool writing to stdout into `path` (streamed through the checksum), logging its
/// stderr as `[label] line` and keeping the last lines for the error.
async fn run_to_file(
    ctx: &Context,
    mut command: tokio::process::Command,
    program: &str,
    label: &str,
    path: &Path,
    checksum: ChecksumAlgorithm,
    directory: bool,
) -> Result<Option<WrittenFile>, DumpError> {
    output::remove_partial(path);
    ctx.track(path, true);
    let mut child = command.spawn().map_err(|source| DumpError::Spawn {
        program: program.to_string(),
        source,
    })?;
    let stderr = child.stderr.take();
    let keep_stderr = async {
        let mut kept: Vec<String> = Vec::new();
        if let Some(err) = stderr {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::warn!("[{label}] {line}");
                kept.push(line);
                if kept.len() > 20 {
                    kept.remove(0);
                }
            }
        }
        kept.join("\n")
    };
    let stdout = child.stdout.take();
    let label_owned = label.to_string();
    let write = async {
        if directory {
            return Ok(None);
        }
        let Some(mut stdout) = stdout else {
            return Ok(None);
        };
        let mut progress = ctx.progress.start(&label_owned);
        output::write_streamed(
            path,
            &mut stdout,
            checksum,
            ctx.dump.backup_file_mode,
            |total| progress.update(total),
        )
        .await
        .map(Some)
    };
    let (written, stderr, status) = tokio::join!(write, keep_stderr, child.wait());
    let status = status.map_err(|source| DumpError::Spawn {
        program: program.to_string(),
        source,
    })?;
    let written = match written {
        Ok(written) => written,
        Err(e) => {
            // Writing failed (disk full...): pg_dump then failed on the closed pipe, which is
            // not the cause worth reporting. The temporary file is gone already.
            output::remove_partial(path);
            ctx.track(path, false);
            return Err(e.into());
        }
    };
    if !status.success() {
        // The streamed file was renamed already when stdout ended: a failed dump must not stay.
        if let Some(file) = &written {
            let _ = std::fs::remove_file(&file.path);
            if let Some(sum) = &file.checksum_path {
                let _ = std::fs::remove_file(sum);
            }
        }
        output::remove_partial(path);
        ctx.track(path, false);
        return Err(DumpError::Tool {
            program: program.to_string(),
            status,
            stderr,
        });
    }
    let result = if directory {
        let path = path.to_path_buf();
        let mode = ctx.dump.backup_file_mode;
        tokio::task::spawn_blocking(move || output::finish_directory(&path, checksum, mode))
            .await
            .map_err(|e| DumpError::Catalog(format!("internal: {e}")))?
            .map(Some)
            .map_err(DumpError::from)
    } else {
        Ok(written)
    };
    ctx.track(path, false);
    result
}

fn lock_database(path: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, DumpError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|source| DumpError::Lock {
            path: path.to_path_buf(),
            source,
        })?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
        |(_, errno)| {
            if errno == nix::errno::Errno::EWOULDBLOCK {
                DumpError::Locked(path.to_path_buf())
            } else {
                DumpError::Lock {
                    path: path.to_path_buf(),
                    source: errno.into(),
                }
            }
        },
    )
}

async fn createdb_file(
    ctx: &Context,
    client: &tokio_postgres::Client,
    server_version: i32,
    dbname: &str,
    stamp: &str,
    checksum: ChecksumAlgorithm,
) -> Result<WrittenFile, DumpError> {
    let catalog = |e: tokio_postgres::Error| DumpError::Catalog(e.to_string());
    let row = client
        .query_one(&sql::database_definition_query(server_version), &[&dbname])
        .await
        .map_err(catalog)?;
    let def = DatabaseDefinition {
        name: dbname.to_string(),
        owner: row.try_get(0).map_err(catalog)?,
        encoding: row.try_get(1).map_err(catalog)?,
        collate: row.try_get(2).map_err(catalog)?,
        ctype: row.try_get(3).map_err(catalog)?,
        locale_provider: row.try_get(4).map_err(catalog)?,
        provider_locale: row.try_get(5).map_err(catalog)?,
        icu_rules: row.try_get(6).map_err(catalog)?,
        is_template: row.try_get(7).map_err(catalog)?,
        acl: row.try_get(8).map_err(catalog)?,
        connection_limit: row.try_get(9).map_err(catalog)?,
        tablespace: row.try_get(10).map_err(catalog)?,
    };
    let mut settings = Vec::new();
    for row in client
        .query(sql::DATABASE_SETTINGS, &[&dbname])
        .await
        .map_err(catalog)?
    {
        settings.push(RoleSettings {
            role: row.try_get(0).map_err(catalog)?,
            settings: row
                .try_get::<_, Option<Vec<String>>>(1)
                .map_err(catalog)?
                .unwrap_or_default(),
        });
    }
    let script = createdb_script(&def, &settings).map_err(|e| DumpError::Catalog(e.to_string()))?;
    let path = dump_path(
        Path::new(&ctx.dump.backup_directory),
        dbname,
        stamp,
        "createdb.sql",
    );
    Ok(output::write_bytes(
        &path,
        script.as_bytes(),
        checksum,
        ctx.dump.backup_file_mode,
    )
    .await?)
}

async fn dump_database(
    ctx: Arc<Context>,
    client: Arc<tokio_postgres::Client>,
    server_version: i32,
    dbname: String,
) -> DatabaseOutcome {
    let started = Instant::now();
    let mut files = Vec::new();
    let result: Result<(), DumpError> = async {
        let settings = ctx.dump.for_database(&dbname);
        let base = Path::new(&ctx.dump.backup_directory);
        output::ensure_dir(&backup_dir(base, &dbname))?;
        let _lock = lock_database(&lock_path(base, &dbname))?;
        if settings.format != Format::Directory && settings.parallel_backup_jobs > 1 {
            tracing::warn!(
                "[{dbname}] parallel_backup_jobs applies to the directory format only: ignored"
            );
        }
        let stamp = ctx.stamp();
        let ext = dump_extension(settings.format, &settings.compress_level);
        let path = dump_path(base, &dbname, &stamp, &ext);
        let directory = settings.format == Format::Directory;
        let temp = naming::temp_path(&path);
        let args = pg_dump_args(&settings, ctx.version, directory.then_some(temp.as_path()));
        let mut command = ctx.command(&ctx.pg_dump, &dbname, settings.user.as_deref());
        command.args(&args);
        tracing::info!("[{dbname}] dumping to {}", path.display());
        if let Some(file) = run_to_file(
            &ctx,
            command,
            "pg_dump",
            &dbname,
            &path,
            settings.checksum_algorithm,
            directory,
        )
        .await?
        {
            files.push(file);
        }
        if !ctx.dump.dump_only {
            files.push(
                createdb_file(
                    &ctx,
                    &client,
                    server_version,
                    &dbname,
                    &stamp,
                    settings.checksum_algorithm,
                )
                .await?,
            );
        }
        Ok(())
    }
    .await;
    let duration = started.elapsed();
    match &result {
        Ok(()) => tracing::info!("[{dbname}] done in {:.1}s", duration.as_secs_f64()),
        Err(e) => tracing::error!("[{dbname}] failed: {e}"),
    }
    DatabaseOutcome {
        name: dbname,
        files,
        duration,
        error: result.err(),
    }
}

/// Server-level files: globals, settings, hba, ident. What cannot be read is a warning; what
/// cannot be written is an error.
async fn server_files(
    ctx: &Context,
    client: &tokio_postgres::Client,
    version: i32,
    superuser: bool,
    report: &mut RunReport,
) {
    let base = Path::new(&ctx.dump.backup_directory);
    let checksum = ctx.dump.checksum_algorithm;
    // Globals.
    let stamp = ctx.stamp();
    let path = dump_path(base, "pg_globals", &stamp, "sql");
    let no_passwords = !superuser || !ctx.dump.with_role_passwords;
    let mut command = ctx.command(&ctx.pg_dumpall, &ctx.conn.dbname, None);
    command.args(pg_dumpall_args(&ctx.conn.dbname, no_passwords, ctx.version));
    let result = async {
        output::ensure_dir(&backup_dir(base, "pg_globals"))?;
        run_to_file(
            ctx,
            command,
            "pg_dumpall",
            "pg_globals",
            &path,
            checksum,
            false,
        )
        .await
    }
    .await;
    match result {
        Ok(Some(file)) => report.server_files.push(file),
        Ok(None) => {}
        Err(e) => {
            tracing::error!("[pg_globals] {e}");
            report.server_errors.push(format!("pg_globals: {e}"));
        }
    }
    // Settings from the configuration files.
    let mut texts: Vec<(&str, Result<String, String>)> = Vec::new();
    if let Some(query) = sql::file_settings_query(version) {
        let text = client
            .query(query, &[])
            .await
            .map_err(|e| e.to_string())
            .map(|rows| {
                rows.iter()
                    .filter_map(|row| {
                        let name: String = row.try_get(0).ok()?;
                        let value: Option<String> = row.try_get(1).ok()?;
                        Some(format!(
                            "{name} = {}\n",
                            sql::quote_literal(&value.unwrap_or_default())
                        ))
                    })
                    .collect::<String>()
            });
        texts.push(("pg_settings", text));
    }
    for (prefix, setting) in [("hba_file", "hba_file"), ("ident_file", "ident_file")] {
        let text = client
            .query_one(&sql::read_config_file_query(setting), &[])
            .await
            .map_err(|e| e.to_string())
            .and_then(|row| {
                let file: String = row.try_get(0).map_err(|e| e.to_string())?;
                let contents: Option<String> = row.try_get(1).map_err(|e| e.to_string())?;
                Ok(format!("# path: {file}\n{}", contents.unwrap_or_default()))
            });
        texts.push((prefix, text));
    }
    for (prefix, text) in texts {
        match text {
            Ok(text) => {
                let path = dump_path(base, prefix, &ctx.stamp(), "out");
                let written = async {
                    output::ensure_dir(&backup_dir(base, prefix))?;
                    output::write_bytes(&path, text.as_bytes(), checksum, ctx.dump.backup_file_mode)
                        .await
                }
                .await;
                match written {
                    Ok(file) => report.server_files.push(file),
                    Err(e) => report.server_errors.push(format!("{prefix}: {e}")),
                }
            }
            Err(e) => {
                let warning = format!("{prefix} not saved: {e}");
                tracing::warn!("{warning}");
                report.warnings.push(warning);
            }
        }
    }
}

async fn dump_all(
    ctx: Arc<Context>,
    client: Arc<tokio_postgres::Client>,
    version: i32,
    superuser: bool,
    databases: Vec<String>,
    report: &mut RunReport,
) {
    if !ctx.dump.dump_only {
        server_files(&ctx, &client, version, superuser, report).await;
    }
    let semaphore = Arc::new(Semaphore::new(ctx.dump.jobs.max(1) as usize));
    let mut tasks = Vec::new();
    for dbname in databases {
        let semaphore = semaphore.clone();
        let ctx = ctx.clone();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            dump_database(ctx, client, version, dbname).await
        }));
    }
    // Abort every task if this future is dropped (signal): their children are killed on drop.
    struct AbortOnDrop(Vec<tokio::task::AbortHandle>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            for handle in &self.0 {
                handle.abort();
            }
        }
    }
    let _guard = AbortOnDrop(tasks.iter().map(|t| t.abort_handle()).collect());
    for task in tasks {
        match task.await {
            Ok(outcome) => report.databases.push(outcome),
            Err(e) => report
                .server_errors
                .push(format!("internal: a dump task ended: {e}")),
        }
    }
}

fn purge(ctx: &Context, report: &RunReport) {
    let base = Path::new(&ctx.dump.backup_directory);
    let protected: Vec<String> = ctx
        .stamps
        .lock()
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default();
    let mut targets: Vec<(
        String,
        crate::config::values::Keep,
        crate::config::values::PurgeInterval,
    )> = report
        .databases
        .iter()
        .map(|d| {
            let s = ctx.dump.for_database(&d.name);
            (d.name.clone(), s.purge_min_keep, s.purge_older_than)
        })
        .collect();
    if !ctx.dump.dump_only {
        for prefix in ["pg_globals", "pg_settings", "hba_file", "ident_file"] {
            targets.push((
                prefix.to_string(),
                ctx.dump.purge_min_keep,
                ctx.dump.purge_older_than,
            ));
        }
    }
    for (name, keep, interval) in targets {
        let limit =
            naming::now() - chrono::Duration::from_std(interval.0).unwrap_or(chrono::Duration::MAX);
        let dir = backup_dir(base, &name);
        match purge_dir(&dir, &name, keep, limit, &protected) {
            Ok(removed) => {
                for path in removed {
                    tracing::info!("purged {}", path.display());
                }
            }
            Err(errors) => {
                for e in errors {
                    tracing::warn!("{e}");
                }
            }
        }
    }
}

/// The part of `backup_directory` before the directory holding `{dbname}`: `/b/{dbname}/x` ->
/// `/b`; the whole path when there is no placeholder.
pub fn fixed_backup_dir(backup_directory: &str) -> &str {
    match backup_directory.find(naming::DBNAME_PLACEHOLDER) {
        Some(at) => backup_directory[..at]
            .rfind('/')
            .map_or("", |slash| &backup_directory[..slash.max(1)]),
        None => backup_directory,
    }
}

/// Runs pgback until done or until `shutdown` resolves (SIGINT/SIGTERM). Replay is resumed and
/// the post hook run on every path after the pre hook succeeded.
pub async fn run(
    settings: RunSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport, RunError> {
    let RunSettings {
        dump,
        conn,
        progress,
    } = settings;
    let hook_timeout = dump.hook_timeout.0;
    if !dump.pre_backup_hook.is_empty() {
        run_hook(
            HookKind::Pre,
            &dump.pre_backup_hook,
            &HookOutcome::default(),
            hook_timeout,
        )
        .await
        .map_err(RunError::PreHook)?;
    }
    let post_hook = dump.post_backup_hook.clone();
    let result = run_after_pre_hook(dump, conn, progress, shutdown).await;
    if post_hook.is_empty() {
        return result;
    }
    let outcome = match &result {
        Ok(report) => HookOutcome {
            success: Some(report.success()),
            files: report.all_files(),
            failed_databases: report.failed_databases(),
        },
        Err(_) => HookOutcome {
            success: Some(false),
            ..Default::default()
        },
    };
    let hook = run_hook(HookKind::Post, &post_hook, &outcome, hook_timeout).await;
    match (result, hook) {
        (Ok(mut report), Err(e)) => {
            tracing::error!("{e}");
            report.post_hook_error = Some(e.to_string());
            Ok(report)
        }
        (Err(e), Err(hook)) => {
            tracing::error!("{hook}");
            Err(e)
        }
        (result, Ok(())) => result,
    }
}

async fn run_after_pre_hook(
    dump: DumpConfig,
    conn: ConnSettings,
    progress: Progress,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport, RunError> {
    let pg_dump = tool_path(&dump.bin_directory, "pg_dump");
    let pg_dumpall = tool_path(&dump.bin_directory, "pg_dumpall");
    let version = probe_pg_dump(&pg_dump).await?;
    tracing::info!("pg_dump {version} at {}", pg_dump.display());
    // The fixed part of the backup directory (before any `{dbname}`) must be writable up front.
    let fixed = fixed_backup_dir(&dump.backup_directory);
    if !fixed.is_empty() {
        output::ensure_dir(Path::new(fixed))?;
    }
    tracing::info!("connecting: {}", conn.describe());
    let session = conn.connect().await?;
    let client = Arc::new(session.client);
    let info = client
        .query_one(sql::SERVER_INFO, &[])
        .await
        .map_err(|source| RunError::Query {
            what: "reading the server version",
            source,
        })?;
    let server_version: i32 = info.try_get(0).map_err(|source| RunError::Query {
        what: "server version",
        source,
    })?;
    let superuser: bool = info.try_get(1).map_err(|source| RunError::Query {
        what: "superuser",
        source,
    })?;
    let in_recovery: bool = info.try_get(2).map_err(|source| RunError::Query {
        what: "recovery state",
        source,
    })?;
    let listed: Vec<ListedDatabase> = client
        .query(sql::LIST_DATABASES, &[])
        .await
        .map_err(|source| RunError::Query {
            what: "listing databases",
            source,
        })?
        .iter()
        .map(|row| {
            Ok(ListedDatabase {
                name: row.try_get(0)?,
                is_template: row.try_get(1)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(|source| RunError::Query {
            what: "listing databases",
            source,
        })?;
    let selection = select_databases(
        &listed,
        &SelectionRules {
            include: dump.include_dbs.clone(),
            exclude: dump.exclude_dbs.clone(),
            with_templates: dump.with_templates,
        },
    );
    let mut report = RunReport::default();
    for missing in &selection.missing {
        let warning = format!("database {missing:?} does not exist: skipped");
        tracing::warn!("{warning}");
        report.warnings.push(warning);
    }
    let ctx = Arc::new(Context {
        run_stamp: naming::format_stamp(dump.timestamp_format, &naming::now()),
        dump,
        conn,
        pg_dump,
        pg_dumpall,
        version,
        stamps: Mutex::new(BTreeSet::new()),
        partials: Mutex::new(BTreeSet::new()),
        progress,
    });
    let mut paused = false;
    let work = async {
        if in_recovery {
            paused = true;
            standby::pause_replay(&client, server_version, ctx.dump.pause_timeout.0).await?;
        }
        dump_all(
            ctx.clone(),
            client.clone(),
            server_version,
            superuser,
            selection.databases,
            &mut report,
        )
        .await;
        Ok::<(), RunError>(())
    };
    let outcome = tokio::select! {
        result = work => result,
        () = shutdown => Err(RunError::Interrupted),
    };
    if paused {
        if let Err(e) = standby::resume_replay(&client, server_version).await {
            tracing::error!("{e}");
            if outcome.is_ok() {
                report.server_errors.push(e.to_string());
            }
        }
    }
    if let Ok(partials) = ctx.partials.lock() {
        for path in partials.iter() {
            output::remove_partial(path);
        }
    }
    outcome?;
    if report.success() {
        purge(&ctx, &report);
    } else {
        tracing::warn!("the run failed: nothing purged");
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_part_of_the_backup_directory() {
        assert_eq!(fixed_backup_dir("/b/{dbname}/x"), "/b");
        assert_eq!(fixed_backup_dir("/b/x"), "/b/x");
        assert_eq!(fixed_backup_dir("/{dbname}"), "/");
        assert_eq!(fixed_backup_dir("{dbname}/x"), "");
        assert_eq!(fixed_backup_dir("/b/db_{dbname}"), "/b");
    }

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
                    error: Some(DumpError::Locked("/b/x=y z.lock".into())),
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
}
