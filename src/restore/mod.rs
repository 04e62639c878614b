//! `pgback --restore DIR [DBNAME globs]`: restoring a dump set into the target server.
//!
//! Uses: native, config, crypt, args, programs, conn, secret, metrics, pump, process, server, naming,
//! compress, checksum, files, glob, table, values, exit.
//!
//! In order: pick the set (the newest, or `--timestamp`), select databases by globs, verify
//! every selected file against its checksum file (nothing is touched when one does not match),
//! read the target (roles, databases, whether an existing database holds objects of its own),
//! refuse non-empty databases unless `--clean`, then run the globals with psql (roles that
//! exist are not created again, only reported), and for each database its createdb.sql (or
//! its rewrite for a database that exists) and `pg_restore -j N` or psql (pg_restore 17+ into
//! a server before 17: `pg_restore -f -` into psql, without `SET transaction_timeout`).
//! `pg_settings`, `hba_file` and `ident_file` are never applied; the summary names them.
//! `--dry-run` stops after the plan. A native dump (`pgback --native`; `.sql.gz`, `.sql.lz4` or
//! `.sql.zst` decompressed by pgback, with no decompressing program; when encrypted, from the
//! decrypting stream) is loaded by pgback itself: no psql for its statements and rows; and a
//! native set's globals and createdb.sql are run by pgback itself, statement by statement.
//!
//! Encrypted sets (age) are verified as ciphertext against `<file>.age.<algo>`, their headers
//! opened with the key before anything is touched, then restored from a decrypting stream
//! (`decrypt`): no plaintext is written to disk. Encrypted directory dumps are refused.
//!
//! # Layout
//! - `set`: dump sets in a directory, picking one, selecting databases by glob.
//! - `script`: globals and createdb.sql as statements, rewritten for an existing target.
//! - `target`: what the target holds (roles, databases, objects), SQL per version.
//! - `argv`: the argument vectors of psql, pg_restore and the decompressors.
//! - `plan`: the ordered steps, and deciding them before anything is touched.
//! - `error`: [`RestoreError`], why a restore stops.
//! - `filter`: the line filter that leaves pg_restore 17+'s `SET transaction_timeout` out.
//! - `exec`: running psql / pg_restore / a decompressor; the seam for decryption.
//! - `decrypt`: encrypted files decrypted into memory or streamed into a tool.
//! - `run`: the plan run, globals first, then database by database.
//! - `report`: the plan as `--dry-run` prints it, and the summary of a run.
//! - `command`: pgback's `--restore` flags, and the run from them to an exit status.

mod argv;
mod command;
mod decrypt;
mod error;
mod exec;
mod filter;
mod plan;
mod report;
mod run;
mod script;
mod set;
mod target;

pub use command::{run_restore, RestoreFlags};

pub use error::RestoreError;
pub use plan::{plan_restore, DatabaseAction, RestoreSettings};
pub use report::{DatabaseOutcome, RestoreReport};
pub use run::restore;
