//! `--native`: each database exported by [`crate::native`] instead of pg_dump, into
//! `<db>_<stamp>.sql` through the same checksum, encryption and upload stages. Before anything
//! is written, every selected database's inventory is read: a database holding an object the
//! export cannot reproduce is refused, or with `--fallback-tools` dumped with pg_dump.

use std::path::Path;

use super::context::RunContext;
use super::encrypt::Encryption;
use super::output::{self, WrittenFile};
use super::report::DumpError;
use crate::config::DumpConfig;
use crate::conn::Session;
use crate::native::{self, NativeError, Refusal};
use crate::pump::Source;
use crate::server::ServerVersion;
use crate::values::ChecksumAlgorithm;

/// What `--native` cannot honour in the settings of `databases`: it writes whole databases,
/// uncompressed, and takes no pg_dump options. `None` when all is well.
pub fn unsupported_settings(dump: &DumpConfig, databases: &[String]) -> Option<String> {
    for dbname in databases {
        let settings = dump.for_database(dbname);
        let mut unsupported = Vec::new();
        if settings.compress_level.plain_suffix().is_some() {
            unsupported.push("compression (-Z)");
        }
        if !(settings.schemas.is_empty()
            && settings.exclude_schemas.is_empty()
            && settings.tables.is_empty()
            && settings.exclude_tables.is_empty())
        {
            unsupported.push("schema or table selection");
        }
        if !settings.pg_dump_options.is_empty() {
            unsupported.push("pg_dump_options");
        }
        if !unsupported.is_empty() {
            return Some(format!(
                "--native does not support {} (database {dbname:?})",
                unsupported.join(", ")
            ));
        }
    }
    None
}

/// A session on `dbname`, as the run's user or the database's own.
async fn connect(ctx: &RunContext, dbname: &str) -> Result<Session, DumpError> {
    let mut settings = ctx.conn.clone();
    settings.dbname = dbname.to_string();
    if let Some(user) = ctx.dump.for_database(dbname).user {
        settings.user = user;
    }
    settings
        .connect()
        .await
        .map_err(|e| DumpError::Native(format!("connecting: {e}")))
}

fn native_error(error: NativeError) -> DumpError {
    DumpError::Native(error.to_string())
}

/// The refusals of each database that has some, read in a snapshot before anything is written.
pub async fn refused_databases(
    ctx: &RunContext,
    version: ServerVersion,
    databases: &[String],
) -> Result<Vec<(String, Vec<Refusal>)>, (String, DumpError)> {
    let mut refused = Vec::new();
    for dbname in databases {
        let at = |e| (dbname.clone(), e);
        let session = connect(ctx, dbname).await.map_err(at)?;
        let snapshot = native::open(&session.client, version, false)
            .await
            .map_err(|e| at(native_error(e)))?;
        tracing::info!(
            "[{dbname}] native inventory: {} object(s) reproduced, {} refused",
            snapshot.inventory.objects.len(),
            snapshot.inventory.refusals.len()
        );
        if !snapshot.inventory.refusals.is_empty() {
            refused.push((dbname.clone(), snapshot.inventory.refusals.clone()));
        }
    }
    Ok(refused)
}

/// Exports `dbname` into `path` (and its checksum, encrypted when asked). The file gets its
/// final name only once the export is complete; a refusal found in the export's own snapshot
/// (an object created since the inventory) fails the database and writes nothing.
pub async fn dump_native(
    ctx: &RunContext,
    encryption: Option<&Encryption>,
    version: ServerVersion,
    dbname: &str,
    path: &Path,
    checksum: ChecksumAlgorithm,
) -> Result<Vec<WrittenFile>, DumpError> {
    let session = connect(ctx, dbname).await?;
    let snapshot = native::open(&session.client, version, true)
        .await
        .map_err(native_error)?;
    tracing::info!(
        "[{dbname}] exporting natively to {} (snapshot {})",
        path.display(),
        snapshot.snapshot_id
    );
    let (writer, reader) = native::sql_stream();
    let source = Source::Reader(Box::new(reader));
    let export = native::export(&snapshot, dbname, writer);
    let mode = ctx.dump.backup_file_mode;
    let mut progress = ctx.progress().start(dbname);
    output::remove_partial(path);
    ctx.track(path, true);
    let result = async {
        match encryption {
            None => {
                let write = output::write_streamed(path, source, checksum, mode, |total| {
                    progress.update(total)
                });
                let (exported, written) = tokio::join!(export, write);
                // A failed export fails the reader too: its own error is the one worth reporting.
                exported.map_err(native_error)?;
                Ok(vec![written?])
            }
            Some(encryption) => {
                let write =
                    encryption.stream(source, path, checksum, mode, |total| progress.update(total));
                let (exported, pending) = tokio::join!(export, write);
                exported.map_err(native_error)?;
                Ok(encryption.commit(pending?, path, checksum, mode).await?)
            }
        }
    }
    .await;
    ctx.track(path, false);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::Compression;

    #[test]
    fn compression_and_selections_are_refused_with_native() {
        let mut dump = DumpConfig::default();
        let dbs = vec!["b1".to_string()];
        assert_eq!(unsupported_settings(&dump, &dbs), None);
        dump.compress_level = Compression::Level(5);
        assert_eq!(
            unsupported_settings(&dump, &dbs).as_deref(),
            Some("--native does not support compression (-Z) (database \"b1\")")
        );
        dump.compress_level = Compression::Level(0);
        dump.pg_dump_options = "--no-owner".into();
        assert!(unsupported_settings(&dump, &dbs)
            .unwrap_or_default()
            .contains("pg_dump_options"));
    }
}
