//! `pgback --native`: a logical export of a database with no client program, and its refusal
//! of what it cannot reproduce. The dump pipeline (`dump`) streams the export into its usual
//! file, checksum, encryption and upload; the restore (`restore`) recognises a native set.
//!
//! Uses: server.
//!
//! # Layout (each file uses only those above it)
//! - `inventory`: every object of the catalogs, classified as exported or refused.
//! - `ddl`: the SQL text, built without a server (preamble, CREATE, privileges, COPY framing).
//! - `output`: the export's bytes, over a bounded channel, to the pipeline's reader.
//! - `error`: what fails.
//! - `objects`: the typed catalog reads of the exported objects.
//! - `extensions`: `CREATE EXTENSION` (never their members), in the order they require.
//! - `table_extras`: unlogged tables, column privileges, triggers' states.
//! - `column_props`: columns' statistics targets, storage, compression and options.
//! - `table_marks`: replica identities, CLUSTER marks, rules' states.
//! - `public_schema`: what differs in the `public` schema from initdb's (owner, comment, ACL).
//! - `types`: collations; domains, composite and range types (in `pg_depend` order).
//! - `partitions`: partitioned tables, partitions and inheritance: their tables, attachments,
//!   inherited constraints, clones, and which rows are copied.
//! - `session`: the snapshot session (pg_dump's settings, `REPEATABLE READ READ ONLY`, locks).
//! - `worker`: the data worker, a second session in the exported snapshot, copying the rows.
//! - `extension_data`: the rows of extensions' configuration tables (their condition applied)
//!   and their configuration sequences' state.
//! - `member_privileges`: privileges changed on extensions' members (against `pg_init_privs`).
//! - `large_objects`: large objects' data (`lo_get` in chunks), owners, privileges, comments.
//! - `routines`: procedures and aggregates (`CREATE AGGREGATE` built from `pg_aggregate`).
//! - `behaviour`: row-level security (flags, policies) and rules, after the data; default
//!   privileges, last.
//! - `statistics`: extended statistics (`CREATE STATISTICS`), target, comment, owner.
//! - `publications`: publications, their tables (column lists, row filters) and schemas.
//! - `event_triggers`: event triggers, last (state, comment, owner).
//! - `post_data`: the definitions after the data, read while the worker copies the rows.
//! - `export`: one database's SQL, in pg_dump's order, data streamed with COPY.
//! - `load`: the native restore of such a file: batches of statements, COPY FROM STDIN.

mod behaviour;
mod column_props;
mod ddl;
mod error;
mod event_triggers;
mod export;
mod extension_data;
mod extensions;
mod inventory;
mod large_objects;
mod member_privileges;
mod load;
mod objects;
mod output;
mod routines;
mod partitions;
mod post_data;
mod statistics;
mod public_schema;
mod publications;
mod session;
mod table_extras;
mod table_marks;
mod types;
mod worker;

pub use ddl::{NATIVE_GLOBALS_HEADER, NATIVE_HEADER};
pub use error::NativeError;
pub use export::{export, ExportSummary};
pub use inventory::{Inventory, Refusal, SUPPORTED_KINDS};
pub use load::{is_native_dump, load, run_statement, LoadSummary};
pub use output::{sql_stream, ChunkReader, SqlWriter};
pub use session::{open, Snapshot};
pub use worker::Worker;
