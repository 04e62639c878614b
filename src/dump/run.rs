//! The pgback run, in order: the pre hook; pg_dump's probe (with `--native`, only when a
//! refused database falls back to it); the connection, and pg_dump's
//! version against the server's (older: refused before anything is dumped); the selection of
//! databases; on a standby, the replay pause; the server-level files (globals, settings,
//! hba/ident); the databases, `jobs` at a time; the replay resumed; the purge after a success;
//! and the post hook, on every path once the pre hook succeeded.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::catalog::{self, CatalogError};
use super::context::RunContext;
use super::database::dump_database;
use super::encrypt::Encryption;
use super::hooks::{run_hook, HookError, HookKind, HookOutcome};
use super::native::{refused_databases, unsupported_compression, unsupported_settings};
use super::offsite::{self, FinalFiles, Offsite};
use super::output::{self, OutputError};
use super::progress::Progress;
use super::purge::{purge, purge_targets};
use super::report::{DumpError, RunReport};
use super::select::{select_databases, SelectionRules};
use super::server_files::save_server_files;
use super::standby::{self, StandbyError};
use super::tools::check_compression;
use crate::config::DumpConfig;
use crate::conn::{ConnError, ConnSettings};
use crate::exit::{ExitStatus, Failure};
use crate::naming::fixed_backup_dir;
use crate::native::Refusal;
use crate::programs::{OlderThanServer, Tools, UnusableTool};
use crate::server::ServerVersion;

/// A failure that stops the whole run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The pre hook failed: nothing was dumped.
    #[error(transparent)]
    PreHook(HookError),
    /// pg_dump could not be run or is unusable.
    #[error(transparent)]
    Tool(#[from] UnusableTool),
    /// pg_dump is older than the server: found before any dump.
    #[error(transparent)]
    ToolOlderThanServer(#[from] OlderThanServer),
    /// The server could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnError),
    /// A query of the run (not of one database) failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The backup directory cannot be used.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// Replay could not be paused.
    #[error(transparent)]
    Standby(#[from] StandbyError),
    /// SIGINT or SIGTERM.
    #[error("interrupted by a signal")]
    Interrupted,
    /// `--native` with a setting it cannot honour.
    #[error("{0}")]
    NativeSettings(String),
    /// `--native` with a `-Z` level its method does not take (the range named).
    #[error("{0}")]
    NativeCompression(String),
    /// `--native`: databases hold objects the native export cannot reproduce.
    #[error("--native refuses {}", refusal_list(.0))]
    NativeRefused(Vec<(String, Vec<Refusal>)>),
    /// `--native`: a database's inventory could not be read.
    #[error("--native: the inventory of database {0:?} failed: {1}")]
    NativeInventory(String, DumpError),
}

/// `database "b1": trigger public.t (kind not supported); ...`, every refused object named.
fn refusal_list(refused: &[(String, Vec<Refusal>)]) -> String {
    refused
        .iter()
        .map(|(dbname, refusals)| {
            let objects: Vec<String> = refusals.iter().map(Refusal::to_string).collect();
            format!("database {dbname:?}: {}", objects.join("; "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Failure for RunError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            RunError::PreHook(e) => e.exit_status(),
            RunError::Tool(_) => ExitStatus::Usage,
            RunError::ToolOlderThanServer(_) => ExitStatus::Server,
            RunError::Connect(e) => e.exit_status(),
            RunError::Catalog(_) => ExitStatus::Server,
            RunError::Output(_) => ExitStatus::Output,
            RunError::Standby(e) => e.exit_status(),
            RunError::Interrupted => ExitStatus::BackupFailed,
            RunError::NativeSettings(_)
            | RunError::NativeCompression(_)
            | RunError::NativeRefused(_) => ExitStatus::Usage,
            RunError::NativeInventory(..) => ExitStatus::Server,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            RunError::PreHook(e) => e.hint(),
            RunError::Tool(_) => Some(
                "install PostgreSQL's client tools, or point dump.bin_directory (-B) at them"
                    .into(),
            ),
            RunError::ToolOlderThanServer(e) => Some(format!(
                "point -B (dump.bin_directory) at the client tools of PostgreSQL {} or later, \
                 e.g. /usr/lib/postgresql/{}/bin",
                e.major_needed(),
                e.major_needed()
            )),
            RunError::Connect(e) => e.hint(),
            RunError::Standby(e) => e.hint(),
            RunError::NativeRefused(_) => Some(
                "add --fallback-tools to dump these databases with pg_dump, or leave --native off"
                    .into(),
            ),
            RunError::NativeSettings(_) => {
                Some("leave these settings unset with --native, or leave --native off".into())
            }
            RunError::NativeCompression(_) => Some(
                "give -Z a level in the method's range, or the method alone for its default level"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// Everything the run needs.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// `[dump]` with every layer applied.
    pub dump: DumpConfig,
    /// The resolved connection (its dbname is the maintenance database).
    pub conn: ConnSettings,
    /// Where the progress of running dumps goes.
    pub progress: Progress,
    /// `--encrypt`: the key every file is encrypted with.
    pub encryption: Option<Encryption>,
    /// The upload stage (`--upload`), started by the caller; see [`offsite`].
    pub offsite: Option<Offsite>,
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
        encryption,
        offsite,
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
    let result = dump_and_purge(dump, conn, progress, encryption, offsite, shutdown).await;
    if post_hook.is_empty() {
        return result;
    }
    let hook = run_hook(
        HookKind::Post,
        &post_hook,
        &hook_outcome(&result),
        hook_timeout,
    )
    .await;
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

/// What the post hook is told.
fn hook_outcome(result: &Result<RunReport, RunError>) -> HookOutcome {
    match result {
        Ok(report) => HookOutcome {
            success: Some(report.success()),
            files: report.all_files(),
            failed_databases: report.failed_databases(),
        },
        Err(_) => HookOutcome {
            success: Some(false),
            ..Default::default()
        },
    }
}

/// Everything between the hooks.
async fn dump_and_purge(
    dump: DumpConfig,
    conn: ConnSettings,
    progress: Progress,
    encryption: Option<Encryption>,
    offsite: Option<Offsite>,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport, RunError> {
    let encryption = encryption.map(Arc::new);
    let finals = offsite
        .as_ref()
        .map(Offsite::final_files)
        .unwrap_or_default();
    // With --native no client tool is looked for, unless a refused database falls back to
    // pg_dump (below, once the inventories are read).
    let mut tools = match dump.native {
        true => None,
        false => Some(find_tools(&dump).await?),
    };
    // The fixed part of the backup directory (before any `{dbname}`) must be writable up front.
    let fixed = fixed_backup_dir(&dump.backup_directory);
    if !fixed.is_empty() {
        output::ensure_dir(Path::new(fixed))?;
    }
    tracing::info!("connecting: {}", conn.describe());
    let client = Arc::new(conn.connect().await?.client);
    let server = catalog::server_info(&client).await?;
    if let Some(tools) = &tools {
        tools.check_server(server.version)?;
    }
    let listed = catalog::list_databases(&client).await?;
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
        report.warn(format!("database {missing:?} does not exist: skipped"));
    }
    let mut ctx = RunContext::new(dump, conn, None, progress);
    let native = native_databases(&ctx, server.version, &selection.databases, &mut report).await?;
    if tools.is_none() && selection.databases.iter().any(|db| !native.contains(db)) {
        let found = find_tools(&ctx.dump).await?;
        found.check_server(server.version)?;
        tools = Some(found);
    }
    ctx.tools = tools;
    let ctx = Arc::new(ctx);
    let mut paused = false;
    let work = async {
        if server.in_recovery {
            paused = true;
            standby::pause_replay(&client, server.version, ctx.dump.pause_timeout.0).await?;
        }
        // The server-level files go alongside the dumps: the globals file, which opens the dump
        // set, takes its stamp at the first poll, before any dump task runs (they are spawned).
        let mut server_report = RunReport::default();
        let server_files = async {
            if !ctx.dump.dump_only {
                let encryption = encryption.as_deref();
                save_server_files(&ctx, &client, &server, &mut server_report, encryption).await;
                finals.submit(&server_report.server_files);
            }
        };
        let lanes = Lanes {
            native: &native,
            version: server.version,
            encryption: encryption.clone(),
            finals: &finals,
        };
        let databases = dump_databases(&ctx, &client, selection.databases, lanes, &mut report);
        tokio::join!(server_files, databases);
        report.server_files = server_report.server_files;
        report.server_errors.extend(server_report.server_errors);
        report.warnings.extend(server_report.warnings);
        Ok::<(), RunError>(())
    };
    let outcome = tokio::select! {
        result = work => result,
        () = shutdown => Err(RunError::Interrupted),
    };
    if paused {
        if let Err(e) = standby::resume_replay(&client, server.version).await {
            tracing::error!("{e}");
            if outcome.is_ok() {
                report.server_errors.push(e.to_string());
            }
        }
    }
    ctx.remove_partials();
    outcome?;
    let targets = purge_targets(&ctx.dump, report.databases.iter().map(|d| d.name.as_str()));
    // Uploads end (a failure fails the run), then the remote purge after a success.
    offsite::finish(offsite, &ctx.dump, &targets, &ctx.stamps(), &mut report).await;
    if report.success() {
        purge(&ctx.dump, &targets, &ctx.stamps());
    } else {
        tracing::warn!("the run failed: nothing purged");
    }
    Ok(report)
}

/// pg_dump (and pg_dumpall beside it), probed, with every `compress_level` checked against it.
async fn find_tools(dump: &DumpConfig) -> Result<Tools, RunError> {
    let tools = Tools::find(&dump.bin_directory).await?;
    check_compression(&tools, dump)?;
    Ok(tools)
}

/// With `--native`, the databases exported natively: every selected one whose inventory has
/// no refusal, read before anything is written. A refused one fails the run (exit 2, each
/// object named) or, with `--fallback-tools`, is dumped with pg_dump, and the report says so.
async fn native_databases(
    ctx: &RunContext,
    version: ServerVersion,
    databases: &[String],
    report: &mut RunReport,
) -> Result<BTreeSet<String>, RunError> {
    if !ctx.dump.native {
        return Ok(BTreeSet::new());
    }
    if let Some(message) = unsupported_settings(&ctx.dump, databases) {
        return Err(RunError::NativeSettings(message));
    }
    if let Some(message) = unsupported_compression(&ctx.dump, databases) {
        return Err(RunError::NativeCompression(message));
    }
    let refused = refused_databases(ctx, version, databases)
        .await
        .map_err(|(dbname, e)| RunError::NativeInventory(dbname, e))?;
    if !refused.is_empty() && !ctx.dump.fallback_tools {
        return Err(RunError::NativeRefused(refused));
    }
    let mut native: BTreeSet<String> = databases.iter().cloned().collect();
    for (dbname, refusals) in &refused {
        native.remove(dbname);
        report.warn(format!(
            "database {dbname:?} dumped with pg_dump (--fallback-tools): --native refuses {} \
             object(s): {}",
            refusals.len(),
            refusals
                .iter()
                .map(Refusal::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    Ok(native)
}

/// What every database's dump shares: the server's version, the key and where final files go.
struct Lanes<'a> {
    native: &'a BTreeSet<String>,
    version: ServerVersion,
    encryption: Option<Arc<Encryption>>,
    finals: &'a FinalFiles,
}

/// Dumps `databases`, `jobs` at a time, in order, each file queued for upload once final; a
/// dropped future (signal) aborts every dump and kills its pg_dump.
async fn dump_databases(
    ctx: &Arc<RunContext>,
    client: &Arc<tokio_postgres::Client>,
    databases: Vec<String>,
    lanes: Lanes<'_>,
    report: &mut RunReport,
) {
    let semaphore = Arc::new(Semaphore::new(ctx.dump.jobs.max(1) as usize));
    let mut tasks = Vec::new();
    for dbname in databases {
        let semaphore = semaphore.clone();
        let ctx = ctx.clone();
        let client = client.clone();
        let (version, encryption) = (lanes.version, lanes.encryption.clone());
        let native = lanes.native.contains(&dbname);
        let finals = lanes.finals.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let outcome = dump_database(ctx, client, version, dbname, encryption, native).await;
            finals.submit(&outcome.files);
            outcome
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
