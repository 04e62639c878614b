//! safe-backup: PostgreSQL backups that restore.
//!
//! # Layout
//! - [`exit`]: stable exit codes and the one-line error report of every binary.
//! - [`conn`]: libpq conventions (conninfo, URIs, PG* variables, pgpass, services, sslmode) over tokio-postgres.
//! - [`config`]: the TOML configuration, layered defaults < file < environment < command line.
//! - [`server`]: server versions and the version-specific SQL, as pure builders.
//! - [`backup`]: the co-process that holds a non-exclusive backup between `pgpre` and `pgpost`.
//! - [`cli`]: command-line pieces shared by the binaries.
//! - [`dump`]: `pgback`, the logical dump pipeline (pg_back in Rust).
//! - [`drill`]: `pgdrill`, which proves a snapshot restores: clone, recover, amcheck, report.

pub mod backup;
pub mod cli;
pub mod config;
pub mod conn;
pub mod drill;
pub mod dump;
pub mod exit;
pub mod server;
