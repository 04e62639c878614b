//! `pgback`: pg_back's logical dump pipeline (globals, settings, hba/ident, createdb.sql,
//! per-database pg_dump streamed through checksums, purge, hooks, standby replay pause).
//!
//! # Layout
//! - [`naming`]: pg_back-compatible file names and stamps.
//! - [`select`]: which databases to dump.
//! - [`acl`]: database `aclitem` parsing.
//! - [`sql`]: quoting and the catalog queries, per server version.
//! - [`createdb`]: the `<db>_<stamp>.createdb.sql` builder.
//! - [`checksum`]: digests computed while writing, `sha256sum -c` compatible lines.
//! - [`purge`]: which old backups to delete, and deleting them.
//! - [`hooks`]: pre/post hooks split like a shell, run without one.
//! - [`tools`]: pg_dump/pg_dumpall paths, version probe parsing, argument vectors.
//! - [`output`]: temp name + fsync + chmod + rename, checksum files.
//! - [`progress`]: spinners on a terminal, periodic log lines otherwise.
//! - [`standby`]: pausing and resuming WAL replay on a standby.
//! - [`runner`]: the whole run, its errors, report and summary table.

pub mod acl;
pub mod checksum;
pub mod createdb;
pub mod hooks;
pub mod naming;
pub mod output;
pub mod progress;
pub mod purge;
pub mod runner;
pub mod select;
pub mod sql;
pub mod standby;
pub mod tools;
