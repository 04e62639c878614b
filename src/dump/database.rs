//! One database's dump: take its lock, run pg_dump (or with `--native` the native export) into `<db>_<stamp>.<ext>` (streamed through
//! the checksum, and the encryptor with `--encrypt`), then write its `createdb.sql`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::catalog;
use super::context::{RunContext, ToolOutput};
use super::createdb::createdb_script;
use super::encrypt::{run_tool, write_small, Encryption};
use super::lock::lock_database;
use super::native::{dump_native, native_compression};
use super::output::{self, WrittenFile};
use super::report::{DatabaseOutcome, DumpError};
use super::tools::pg_dump_args;
use crate::config::DatabaseDumpSettings;
use crate::files::temp_path;
use crate::naming::{backup_dir, dump_extension, dump_path, lock_path};
use crate::process::ChildName;
use crate::server::ServerVersion;
use crate::values::{ChecksumAlgorithm, Format};

/// Dumps `dbname`; the outcome says what was written and whether it failed.
pub async fn dump_database(
    ctx: Arc<RunContext>,
    client: Arc<tokio_postgres::Client>,
    server_version: ServerVersion,
    dbname: String,
    encryption: Option<Arc<Encryption>>,
    native: bool,
) -> DatabaseOutcome {
    let started = Instant::now();
    let mut files = Vec::new();
    let encryption = encryption.as_deref();
    let result = dump_files(
        &ctx,
        &client,
        server_version,
        &dbname,
        encryption,
        native,
        &mut files,
    )
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

async fn dump_files(
    ctx: &RunContext,
    client: &tokio_postgres::Client,
    server_version: ServerVersion,
    dbname: &str,
    encryption: Option<&Encryption>,
    native: bool,
    files: &mut Vec<WrittenFile>,
) -> Result<(), DumpError> {
    let settings = ctx.dump.for_database(dbname);
    let base = Path::new(&ctx.dump.backup_directory);
    output::ensure_dir(&backup_dir(base, dbname))?;
    let _lock = lock_database(&lock_path(base, dbname))?;
    if settings.format != Format::Directory && settings.parallel_backup_jobs > 1 {
        tracing::warn!(
            "[{dbname}] parallel_backup_jobs applies to the directory format only: ignored"
        );
    }
    let stamp = ctx.stamp();
    if native {
        let ext = dump_extension(Format::Plain, &settings.compress_level);
        let path = dump_path(base, dbname, &stamp, &ext);
        let checksum = settings.checksum_algorithm;
        let compression =
            native_compression(&settings.compress_level).map_err(DumpError::Native)?;
        let native = dump_native(
            ctx,
            encryption,
            server_version,
            dbname,
            &path,
            checksum,
            compression,
        );
        files.extend(native.await?);
    } else {
        dump_with_pg_dump(ctx, &settings, &stamp, encryption, dbname, files).await?;
    }
    if !ctx.dump.dump_only {
        let createdb = createdb_file(
            ctx,
            client,
            server_version,
            dbname,
            &stamp,
            settings.checksum_algorithm,
            encryption,
        );
        files.extend(createdb.await?);
    }
    Ok(())
}

/// `<db>_<stamp>.<ext>` written by pg_dump.
async fn dump_with_pg_dump(
    ctx: &RunContext,
    settings: &DatabaseDumpSettings,
    stamp: &str,
    encryption: Option<&Encryption>,
    dbname: &str,
    files: &mut Vec<WrittenFile>,
) -> Result<(), DumpError> {
    let base = Path::new(&ctx.dump.backup_directory);
    let ext = dump_extension(settings.format, &settings.compress_level);
    let path = dump_path(base, dbname, stamp, &ext);
    let directory = settings.format == Format::Directory;
    let temp = temp_path(&path);
    let tools = ctx.tools()?;
    let args = pg_dump_args(settings, tools.version, directory.then_some(temp.as_path()));
    let mut command = ctx.command(&tools.pg_dump, dbname, settings.user.as_deref());
    command.args(&args);
    tracing::info!("[{dbname}] dumping to {}", path.display());
    let name = ChildName {
        program: "pg_dump",
        label: dbname,
    };
    let out = ToolOutput {
        path: &path,
        checksum: settings.checksum_algorithm,
        directory,
    };
    let jobs = settings.parallel_backup_jobs;
    files.extend(run_tool(ctx, encryption, command, name, out, jobs).await?);
    Ok(())
}

/// `<db>_<stamp>.createdb.sql`, from the catalog.
async fn createdb_file(
    ctx: &RunContext,
    client: &tokio_postgres::Client,
    server_version: ServerVersion,
    dbname: &str,
    stamp: &str,
    checksum: ChecksumAlgorithm,
    encryption: Option<&Encryption>,
) -> Result<Vec<WrittenFile>, DumpError> {
    let catalog_error = |e: tokio_postgres::Error| DumpError::Catalog(e.to_string());
    let definition = catalog::database_definition(client, server_version, dbname)
        .await
        .map_err(catalog_error)?;
    let settings = catalog::database_settings(client, dbname)
        .await
        .map_err(catalog_error)?;
    let script =
        createdb_script(&definition, &settings).map_err(|e| DumpError::Catalog(e.to_string()))?;
    let path = dump_path(
        Path::new(&ctx.dump.backup_directory),
        dbname,
        stamp,
        "createdb.sql",
    );
    Ok(write_small(ctx, encryption, &path, script.as_bytes(), checksum).await?)
}
