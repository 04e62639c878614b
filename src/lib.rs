//! safe-backup: PostgreSQL backups that restore.
//!
//! # Layout
//! - [`exit`]: stable exit codes and the one-line error report of every binary.
//! - [`conn`]: libpq conventions (conninfo, URIs, PG* variables, pgpass, services, sslmode) over tokio-postgres.
//! - [`config`]: the TOML configuration, layered defaults < file < environment < command line.
//! - [`server`]: server versions and the version-specific SQL, as pure builders.
//! - [`backup`]: the co-process that holds a non-exclusive backup between `pgpre` and `pgpost`.
//! - [`cli`]: command-line pieces shared by the binaries.
//! - [`secret`]: secrets that never print, read from the environment or from private files.
//! - [`dump`]: `pgback`, the logical dump pipeline (pg_back in Rust).
//! - [`remote`]: remote storage (S3, B2, GCS, Azure, SFTP): upload, list, download, delete.

pub mod backup;
pub mod cli;
pub mod config;
pub mod conn;
pub mod dump;
pub mod exit;
pub mod remote;
pub mod secret;
pub mod server;
