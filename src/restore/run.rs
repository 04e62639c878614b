//! Running a restore plan: the globals, then each database's createdb step and its load
//! (pg_restore or psql, behind a decompressor, `pg_restore -f -` or a decrypting stream), until
//! done or interrupted.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use super::decrypt::{self, Decryption};
use super::error::RestoreError;
use super::exec::{run_piped, run_tool, Input, ToolError};
use super::filter::TransactionTimeoutFilter;
use super::plan::{plan_restore, DatabasePlan, RestoreSettings, SqlInput, SqlStep};
use super::report::{DatabaseOutcome, RestoreReport};
use super::script::{split_script, Piece};
use crate::conn::ConnSettings;
use crate::crypt::DecryptKey;
use crate::files::file_name;

/// The stdin of psql for a plain dump read through `filter`: the decrypting stream, or the
/// dump file itself.
async fn filtered_script(
    input: Input,
    dump: &std::path::Path,
    filter: TransactionTimeoutFilter,
) -> Result<Input, ToolError> {
    match input {
        Input::Stream(reader) => Ok(Input::Filtered(reader, filter)),
        Input::Null => match tokio::fs::File::open(dump).await {
            Ok(file) => Ok(Input::Filtered(Box::new(file), filter)),
            Err(source) => Err(ToolError::Feed {
                program: format!("psql (reading {})", dump.display()),
                source,
            }),
        },
        other => Ok(other),
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
        let sql = SqlRunner {
            conn: &settings.conn,
            native: plan.native_sql,
        };
        if let Some(globals) = &plan.globals {
            run_globals(globals, sql).await?;
        }
        let mut databases = Vec::new();
        for db in &plan.databases {
            databases.push(restore_database(db, sql, key).await);
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

/// How the SQL steps (globals, createdb.sql) run: psql, or pgback itself for a native set.
#[derive(Clone, Copy)]
struct SqlRunner<'a> {
    conn: &'a ConnSettings,
    native: bool,
}

/// The globals (roles, tablespaces): their failure stops the restore.
async fn run_globals(globals: &SqlStep, sql: SqlRunner<'_>) -> Result<(), RestoreError> {
    let file = match &globals.input {
        SqlInput::File(file) | SqlInput::Derived { from: file, .. } => file.clone(),
    };
    tracing::info!("[globals] {}", file_name(&file));
    run_sql(globals, sql, "globals")
        .await
        .map_err(|source| RestoreError::Globals { file, source })
}

/// One psql run: the file named in argv, or the derived script on stdin (none when empty);
/// for a native set, the same script run by pgback itself.
async fn run_sql(step: &SqlStep, sql: SqlRunner<'_>, label: &str) -> Result<(), ToolError> {
    let input = match &step.input {
        SqlInput::Derived { script, .. } if script.is_empty() => return Ok(()),
        _ if sql.native => return run_sql_natively(step, sql.conn, label).await,
        SqlInput::File(_) => Input::Null,
        SqlInput::Derived { script, .. } => Input::Bytes(script.clone().into_bytes()),
    };
    run_tool(&step.command, sql.conn, input, label).await
}

/// A native set's globals or createdb.sql run through one session of pgback's own on the
/// maintenance database, each statement a simple query of its own, stopping at the first
/// error (as `psql -v ON_ERROR_STOP=1` does). A psql meta-command is refused.
async fn run_sql_natively(
    step: &SqlStep,
    conn: &ConnSettings,
    label: &str,
) -> Result<(), ToolError> {
    let text = match &step.input {
        SqlInput::File(file) => tokio::fs::read_to_string(file)
            .await
            .map_err(|e| ToolError::Native(format!("{}: {e}", file.display())))?,
        SqlInput::Derived { script, .. } => script.clone(),
    };
    let session = conn
        .connect()
        .await
        .map_err(|e| ToolError::Native(e.to_string()))?;
    let mut statements = 0;
    for piece in split_script(&text) {
        match piece {
            Piece::Statement(statement) => {
                crate::native::run_statement(&session.client, statement)
                    .await
                    .map_err(|e| ToolError::Native(e.to_string()))?;
                statements += 1;
            }
            Piece::Meta(meta) => {
                return Err(ToolError::Native(format!(
                    "a psql meta-command in a native script: {}",
                    meta.trim()
                )))
            }
            Piece::Gap(_) => {}
        }
    }
    tracing::info!("[{label}] {statements} statement(s) run natively (no psql)");
    Ok(())
}

/// The native load of a native dump into `db`, through one session of pgback's own: from
/// the decrypting or decompressing stream `input`, else from the file.
async fn load_native(
    db: &DatabasePlan,
    conn: &ConnSettings,
    input: Input,
) -> Result<(), ToolError> {
    let mut settings = conn.clone();
    settings.dbname = db.name.clone();
    let session = settings
        .connect()
        .await
        .map_err(|e| ToolError::Native(e.to_string()))?;
    let reader: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match input {
        Input::Stream(reader) => reader,
        _ => Box::new(
            tokio::fs::File::open(&db.dump)
                .await
                .map_err(|e| ToolError::Native(format!("{}: {e}", db.dump.display())))?,
        ),
    };
    let summary = crate::native::load(
        &session.client,
        tokio::io::BufReader::with_capacity(1024 * 1024, reader),
    )
    .await
    .map_err(|e| ToolError::Native(e.to_string()))?;
    tracing::info!(
        "[{}] loaded natively: {} batches of statements, {} rows into {} tables",
        db.name,
        summary.batches,
        summary.rows,
        summary.tables
    );
    Ok(())
}

/// One database: its createdb step, then its load (from a decrypting stream when
/// encrypted); how it ended, failed or not.
async fn restore_database(
    db: &DatabasePlan,
    sql: SqlRunner<'_>,
    key: Option<&Arc<DecryptKey>>,
) -> DatabaseOutcome {
    let conn = sql.conn;
    let started = Instant::now();
    tracing::info!(
        "[{}] {}: {}",
        db.name,
        db.action.name(),
        file_name(&db.dump)
    );
    let result = async {
        run_sql(&db.prepare, sql, &db.name).await?;
        // pgback decompresses a native dump itself; pg_dump's go through the program.
        let decompress = db.format.plain_method().filter(|_| db.native);
        let (input, decrypting) = match (&db.stream, key, decompress) {
            (Some(source), Some(key), _) => {
                let (input, task) =
                    decrypt::decrypting_input(source.clone(), key.clone(), decompress);
                (input, Some(task))
            }
            (None, _, Some(method)) => {
                let (input, task) = decrypt::decompressing_input(db.dump.clone(), method);
                (input, Some(task))
            }
            _ => (Input::Null, None),
        };
        let filter = db
            .load
            .without_transaction_timeout
            .then(TransactionTimeoutFilter::new);
        let loaded = match (&db.load.producer, filter) {
            _ if db.native => load_native(db, conn, input).await,
            (Some(producer), filter) => {
                run_piped(producer, &db.load.command, input, filter, conn, &db.name).await
            }
            (None, Some(filter)) => match filtered_script(input, &db.dump, filter).await {
                Ok(input) => run_tool(&db.load.command, conn, input, &db.name).await,
                Err(error) => Err(error),
            },
            (None, None) => run_tool(&db.load.command, conn, input, &db.name).await,
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
