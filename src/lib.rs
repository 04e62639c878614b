//! safe-backup: PostgreSQL backups that restore.
//!
//! # Layout
//! The one ordered list of modules, in dependency order: each module uses only those below it
//! (`scripts/check-layout` fails on an edge up the list or a cycle). The pipelines are at the
//! top, the leaves every layer may use at the bottom.
//! - [`drill`]: `pgdrill`, which proves a snapshot restores: clone, recover, amcheck, report.
//! - [`base`]: `pgbase`, the streamed base backup (tar or plain, WAL streamed or fetched).
//! - [`dump`]: `pgback`, the logical dump pipeline (pg_back in Rust); `--restore` goes on below.
//! - [`restore`]: `pgback --restore`, restoring a dump set: verify, globals, createdb, load.
//! - [`native`]: `pgback --native`: the export without client programs, and its refusals.
//! - [`backup`]: `pgpre`, the co-process that holds a non-exclusive backup, and `pgpost`.
//! - [`replication`]: a small physical replication-protocol client (startup, simple query,
//!   BASE_BACKUP, START_REPLICATION).
//! - [`remote`]: remote storage (S3, B2, GCS, Azure, SFTP): upload, list, download, delete.
//! - [`config`]: the TOML configuration, each section layered defaults < file < env < flags.
//! - [`crypt`]: age encryption of dumps as they stream, and `--decrypt` in place.
//! - [`args`]: clap definitions of `pgpre` and `pgpost`, and the connection flags of every binary.
//! - [`programs`]: PostgreSQL's client programs (pg_dump, psql...): where they are, their version.
//! - [`conn`]: libpq conventions (conninfo, URIs, PG*, pgpass, services, sslmode), tokio-postgres.
//! - [`secret`]: secrets that never print, read from the environment or from private files.
//! - [`metrics`]: Prometheus textfile-collector metrics of a run, written atomically.
//! - [`pump`]: moving a child's stdout into its sink (hash, encrypt, write) on a blocking thread.
//! - [`process`]: child processes with their last stderr lines kept, and the async runtime.
//! - [`server`]: `ServerVersion` and its one reader; the version-specific SQL, as pure builders.
//! - [`wal`]: WAL positions (`Lsn`) and segment names, computed without a server.
//! - [`naming`]: a dump set's pg_back-compatible file names and stamps.
//! - [`compress`]: gzip, lz4 and zstd: the `-Z` parser, the compressing writer and reader, and
//!   the one decompressing reader.
//! - [`checksum`]: checksums computed while writing, and checksum files verified.
//! - [`files`]: atomic writes, private directories, temporary names, `fsync_dir`, `file_name`.
//! - [`glob`]: the one glob of the DBNAME patterns; a malformed one is refused (exit 2).
//! - [`table`]: plain-text tables of the summaries, aligned columns.
//! - [`shutdown`]: SIGINT and SIGTERM for every binary, through signal-hook.
//! - [`values`]: the typed values of settings and flags (format, compression...), parsed strictly.
//! - [`exit`]: the exit-code table, `Failure`, the one-line report, the log (`--log-format`).

pub mod drill;
pub mod base;
pub mod dump;
pub mod restore;
pub mod native;
pub mod backup;
pub mod replication;
pub mod remote;
pub mod config;
pub mod crypt;
pub mod args;
pub mod programs;
pub mod conn;
pub mod secret;
pub mod metrics;
pub mod pump;
pub mod process;
pub mod server;
pub mod wal;
pub mod naming;
pub mod compress;
pub mod checksum;
pub mod files;
pub mod glob;
pub mod table;
pub mod shutdown;
pub mod values;
pub mod exit;
