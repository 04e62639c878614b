//! safe-backup: PostgreSQL backups that restore.
//!
//! # Layout
//! In dependency order: each module uses only those above it.
//! - [`exit`]: the exit-code table, `Failure`, the one-line report, and the log (`--log-format`).
//! - [`glob`]: the one glob of the DBNAME patterns; a malformed one is refused (exit 2).
//! - [`shutdown`]: SIGINT and SIGTERM for every binary, through signal-hook.
//! - [`table`]: plain-text tables of the summaries, aligned columns.
//! - [`wal`]: WAL positions (`Lsn`) and segment names, computed without a server.
//! - [`metrics`]: Prometheus textfile-collector metrics of a run, written atomically.
//! - [`pump`]: moving a child's stdout into its sink (hash, encrypt, write) on a blocking thread.
//! - [`server`]: `ServerVersion`, the one version type, and the version-specific SQL, as pure builders.
//! - [`conn`]: libpq conventions (conninfo, URIs, PG* variables, pgpass, services, sslmode) over tokio-postgres.
//! - [`args`]: clap definitions of `pgpre` and `pgpost`, and the connection flags of every binary
//!   (their value types come from `config::values`, which uses nothing of the crate).
//! - [`config`]: the TOML configuration, each section layered defaults < file < environment < command line.
//! - [`backup`]: `pgpre`, the co-process that holds a non-exclusive backup, and `pgpost`.
//! - [`secret`]: secrets that never print, read from the environment or from private files.
//! - [`crypt`]: age encryption of dumps as they stream, and `--decrypt` in place.
//! - [`remote`]: remote storage (S3, B2, GCS, Azure, SFTP): upload, list, download, delete.
//! - [`dump`]: `pgback`, the logical dump pipeline (pg_back in Rust).
//! - [`restore`]: `pgback --restore`, restoring a dump set: verify, globals, createdb, load
//!   (`dump::command` hands `--restore` to `restore::command`).
//! - [`drill`]: `pgdrill`, which proves a snapshot restores: clone, recover, amcheck, report.
//! - [`replication`]: a small physical replication-protocol client (startup, simple query,
//!   BASE_BACKUP, START_REPLICATION) on postgres-protocol, over our own socket.
//! - [`base`]: `pgbase`, the streamed base backup (tar or plain, WAL streamed or fetched).

pub mod args;
pub mod backup;
pub mod base;
pub mod config;
pub mod conn;
pub mod crypt;
pub mod drill;
pub mod dump;
pub mod exit;
pub mod glob;
pub mod metrics;
pub mod process;
pub mod pump;
pub mod remote;
pub mod replication;
pub mod restore;
pub mod secret;
pub mod server;
pub mod shutdown;
pub mod table;
pub mod wal;
