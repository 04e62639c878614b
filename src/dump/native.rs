//! `--native`: each database exported by [`crate::native`] instead of pg_dump, into
//! `<db>_<stamp>.sql` (`.sql.gz`, `.sql.lz4`, `.sql.zst` with `-Z`, compressed on the pipeline's
//! blocking thread while the export reads the next rows) through the same checksum, encryption
//! and upload stages. Before anything is written, every selected database's inventory is read:
//! a database holding an object the export cannot reproduce is refused, or with
//! `--fallback-tools` dumped with pg_dump.

use std::path::Path;

use super::context::RunContext;
use super::encrypt::Encryption;
use super::output::{self, WrittenFile};
use super::report::DumpError;
use crate::compress::{parse_compression, CompressingReader, Method};
use crate::config::DumpConfig;
use crate::conn::Session;
use crate::native::{self, NativeError, Refusal};
use crate::pump::Source;
use crate::server::ServerVersion;
use crate::values::{ChecksumAlgorithm, Compression};

/// How a native dump is compressed: the method and its level (`None`: the method's default).
pub type NativeCompression = Option<(Method, Option<i32>)>;

/// The compression `-Z` asks of a native dump (`None` for none), as its file name says it
/// (see [`crate::naming::dump_extension`]); a level the method does not take is refused, the
/// range named.
pub fn native_compression(compression: &Compression) -> Result<NativeCompression, String> {
    if compression.plain_suffix().is_none() {
        return Ok(None);
    }
    let spec = compression.pg_dump_arg().unwrap_or_default();
    if spec.starts_with("lz4:") {
        return Err(format!(
            "invalid -Z \"{spec}\": --native writes lz4 at its one (fast) level: give -Z lz4 without a level"
        ));
    }
    Ok(parse_compression(&spec)?.map(|parsed| (parsed.method, parsed.level)))
}

/// The first `-Z` of `databases` that `--native` cannot honour, with the database named.
pub fn unsupported_compression(dump: &DumpConfig, databases: &[String]) -> Option<String> {
    databases.iter().find_map(|dbname| {
        native_compression(&dump.for_database(dbname).compress_level)
            .err()
            .map(|reason| format!("--native: {reason} (database {dbname:?})"))
    })
}

/// What `--native` cannot honour in the settings of `databases`: it writes whole databases
/// and takes no pg_dump options. `None` when all is well.
pub fn unsupported_settings(dump: &DumpConfig, databases: &[String]) -> Option<String> {
    for dbname in databases {
        let settings = dump.for_database(dbname);
        let mut unsupported = Vec::new();
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

/// Exports `dbname` into `path`, compressed with `compression` (and its checksum, encrypted
/// when asked: both of the compressed bytes, as for pg_dump's files). The file gets its
/// final name only once the export is complete; a refusal found in the export's own snapshot
/// (an object created since the inventory) fails the database and writes nothing.
pub async fn dump_native(
    ctx: &RunContext,
    encryption: Option<&Encryption>,
    version: ServerVersion,
    dbname: &str,
    path: &Path,
    checksum: ChecksumAlgorithm,
    compression: NativeCompression,
) -> Result<Vec<WrittenFile>, DumpError> {
    // Two sessions: the main one exports its snapshot, the data worker imports it.
    let (session, worker_session) = tokio::try_join!(connect(ctx, dbname), async {
        connect(ctx, dbname).await.map_err(|e| match e {
            DumpError::Native(e) => DumpError::Native(format!("the data worker {e}")),
            other => other,
        })
    })?;
    let snapshot = native::open(&session.client, version, true)
        .await
        .map_err(native_error)?;
    let worker = native::Worker::open(&worker_session.client, &snapshot)
        .await
        .map_err(native_error)?;
    tracing::info!(
        "[{dbname}] exporting natively to {} (snapshot {}, shared with the data worker)",
        path.display(),
        snapshot.snapshot_id
    );
    let (writer, reader) = native::sql_stream();
    let source = match compression {
        None => Source::Reader(Box::new(reader)),
        Some((method, level)) => Source::Reader(Box::new(
            CompressingReader::new(reader, method, level)
                .map_err(|e| DumpError::Native(format!("starting {}: {e}", method.as_str())))?,
        )),
    };
    let export = native::export(&snapshot, &worker, dbname, writer);
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
    fn selections_are_refused_with_native() {
        let mut dump = DumpConfig::default();
        let dbs = vec!["b1".to_string()];
        assert_eq!(unsupported_settings(&dump, &dbs), None);
        dump.compress_level = Compression::Level(5);
        assert_eq!(unsupported_settings(&dump, &dbs), None);
        dump.pg_dump_options = "--no-owner".into();
        assert!(unsupported_settings(&dump, &dbs)
            .unwrap_or_default()
            .contains("pg_dump_options"));
    }

    #[test]
    fn compression_follows_the_file_name_and_refuses_levels_out_of_range() {
        let parsed = |spec: &str| native_compression(&spec.parse::<Compression>().unwrap());
        assert_eq!(parsed("-1"), Ok(None));
        assert_eq!(parsed("0"), Ok(None));
        assert_eq!(parsed("none"), Ok(None));
        assert_eq!(parsed("gzip:0"), Ok(None));
        assert_eq!(parsed("5"), Ok(Some((Method::Gzip, Some(5)))));
        assert_eq!(parsed("gzip"), Ok(Some((Method::Gzip, None))));
        assert_eq!(parsed("gzip:level=1"), Ok(Some((Method::Gzip, Some(1)))));
        assert_eq!(parsed("lz4"), Ok(Some((Method::Lz4, None))));
        assert_eq!(parsed("zstd:3"), Ok(Some((Method::Zstd, Some(3)))));
        assert_eq!(
            parsed("zstd:23").unwrap_err(),
            "invalid -Z \"zstd:23\": zstd levels are 1 to 22"
        );
        assert!(parsed("lz4:3").unwrap_err().contains("without a level"));
        assert!(parsed("zstd:long").is_err());
        let mut dump = DumpConfig::default();
        let dbs = vec!["b1".to_string()];
        dump.compress_level = "zstd:3".parse().unwrap();
        assert_eq!(unsupported_compression(&dump, &dbs), None);
        dump.compress_level = "gzip:10".parse().unwrap();
        assert_eq!(
            unsupported_compression(&dump, &dbs).as_deref(),
            Some("--native: invalid -Z \"gzip:10\": gzip levels are 1 to 9 (database \"b1\")")
        );
    }
}
