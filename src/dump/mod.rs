//! `pgback`: pg_back's logical dump pipeline (globals, settings, hba/ident, createdb.sql,
//! per-database pg_dump streamed through checksums, purge, hooks, standby replay pause).
//!
//! # Layout (each file uses only those above it)
//! - [`naming`]: pg_back-compatible file names and stamps.
//! - [`select`]: which databases to dump.
//! - [`acl`]: database `aclitem` parsing.
//! - [`createdb`]: the `<db>_<stamp>.createdb.sql` builder.
//! - [`catalog`]: every catalog query, typed, with its SQL per server version.
//! - [`checksum`]: digests computed while writing, `sha256sum -c` compatible lines.
//! - [`output`]: temp name + fsync + chmod + rename, checksum files.
//! - [`progress`]: spinners on a terminal, periodic log lines otherwise.
//! - [`lock`]: the per-database flock.
//! - [`purge`]: which old backups to delete, deleting them, and what a run purges.
//! - [`hooks`]: pre/post hooks split like a shell, run without one.
//! - [`tools`]: pg_dump/pg_dumpall paths, version probe, argument vectors.
//! - [`standby`]: pausing and resuming WAL replay on a standby.
//! - [`report`]: each database's outcome, the summary table, the wording of a failed run.
//! - [`context`]: what the steps of one run share; running a tool into a backup file.
//! - [`encrypt`]: `--encrypt`: streams into `<file>.age`, directory dumps file by file.
//! - [`database`]: one database's dump and createdb.sql.
//! - [`server_files`]: globals, settings, hba/ident.
//! - [`offsite`]: uploads as files become final, remote purge, `--list-remote`, `--download`.
//! - [`run`]: the whole run, in the README's order.
//! - [`metrics`]: the metrics of a run (`--metrics-file`).
//! - [`secret_flags`]: pg_back's flags that carry a secret, refused with a hint.
//! - [`command`]: pgback's command line, and the one call the binary makes (a dump,
//!   `--decrypt`, or `--restore` through [`crate::restore::command`]).

pub mod acl;
pub mod catalog;
pub mod checksum;
pub mod command;
pub mod context;
pub mod createdb;
pub mod database;
pub mod encrypt;
pub mod hooks;
pub mod lock;
pub mod metrics;
pub mod naming;
pub mod offsite;
pub mod output;
pub mod progress;
pub mod purge;
pub mod report;
pub mod run;
pub mod secret_flags;
pub mod select;
pub mod server_files;
pub mod standby;
pub mod tools;
