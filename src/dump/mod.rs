//! `pgback`: pg_back's logical dump pipeline (globals, settings, hba/ident, createdb.sql,
//! per-database pg_dump streamed through checksums, purge, hooks, standby replay pause).
//!
//! Uses: restore, native, remote, config, crypt, args, programs, conn, secret, metrics, pump, process,
//! server, naming, compress, checksum, files, glob, table, shutdown, values, exit.
//!
//! # Layout (each file uses only those above it)
//! - `select`: which databases to dump.
//! - `acl`: database `aclitem` parsing.
//! - `createdb`: the `<db>_<stamp>.createdb.sql` builder.
//! - `catalog`: every catalog query, typed, with its SQL per server version.
//! - `globals`: `--native`'s globals file (roles, memberships, tablespaces) without pg_dumpall.
//! - `output`: temp name + fsync + chmod + rename, checksum files.
//! - `progress`: spinners on a terminal, periodic log lines otherwise.
//! - `lock`: the per-database flock.
//! - `purge`: which old backups to delete, deleting them, and what a run purges.
//! - `hooks`: pre/post hooks split like a shell, run without one.
//! - `tools`: pg_dump's and pg_dumpall's argument vectors.
//! - `standby`: pausing and resuming WAL replay on a standby.
//! - `report`: each database's outcome, the summary table, the wording of a failed run.
//! - `context`: what the steps of one run share; running a tool into a backup file.
//! - `encrypt`: `--encrypt`: streams into `<file>.age`, directory dumps file by file.
//! - `native`: `--native`: the refusals read before the run, a database exported by
//!   [`crate::native`] into the pipeline.
//! - `database`: one database's dump and createdb.sql.
//! - `server_files`: globals, settings, hba/ident.
//! - `offsite`: uploads as files become final, remote purge, `--list-remote`, `--download`.
//! - `run`: the whole run, in the README's order.
//! - `metrics`: the metrics of a run (`--metrics-file`).
//! - `secret_flags`: pg_back's flags that carry a secret, refused with a hint.
//! - `command`: pgback's command line, and the one call the binary makes (a dump,
//!   `--decrypt`, or `--restore` through [`crate::restore::command`]).

mod acl;
mod catalog;
mod command;
mod context;
mod createdb;
mod database;
mod encrypt;
mod globals;
mod hooks;
mod lock;
mod metrics;
mod native;
mod offsite;
mod output;
mod progress;
mod purge;
mod report;
mod run;
mod secret_flags;
mod select;
mod server_files;
mod standby;
mod tools;

pub use secret_flags::SECRET_FLAGS;

pub use command::{run_pgback, PgbackArgs};
pub use metrics::run_metrics;
pub use offsite::{finish as finish_offsite, open_store, FinalFiles, Offsite};
pub use output::WrittenFile;
pub use purge::{select_purge, BackupGroup};
pub use report::{RunReport, UploadReport};
