//! `pgbase`: a base backup streamed over the replication protocol (PostgreSQL 10–18), as
//! pg_basebackup takes it: tar files or a data directory, with its WAL streamed from a
//! temporary slot (`-X stream`), fetched (`-X fetch`) or left to the archive (`-X none`).
//!
//! Uses: backup, replication, config, crypt, args, conn, server, wal, checksum, files, shutdown, values, exit.
//!
//! # Layout
//! In dependency order: each file uses only files above it (tests aside).
//! - `error.rs`: [`BaseError`] with its exit status and hint, the incomplete marker's name.
//! - `compress.rs`: the `-Z` parser and the compressing writer.
//! - `command.rs`: [`PgbaseArgs`] (clap) and the validated [`Request`]. Uses error, compress.
//! - `tar.rs`: a push-style tar reader and the header of a WAL segment entry.
//! - `output.rs`: [`TarFiles`] (`-F t`, compressed, hashed, pgback's checksum files) and
//!   [`PlainTree`] (`-F p`, unpacked, tablespaces relocated by `-T`). Uses error, compress, tar.
//! - `wal.rs`: `-X stream`: [`WalWriter`] and the streaming loop. Uses error, tar, output.
//! - `run.rs`: one run: the directory, the two connections, the signals. Uses all above.
//! - this file: [`main`], the binary's body (runtime, logging, the one-line report).

mod command;
mod compress;
mod error;
mod output;
mod run;
mod tar;
mod wal;

use std::process::ExitCode;

pub use command::{Format, PgbaseArgs, Request, WalMethod};
pub use compress::{parse_compression, Compression, Compressor, Method, Side};
pub use error::{BaseError, INCOMPLETE_MARKER};
pub use output::{Packing, PlainTree, TarFiles};
pub use run::{run, BaseSummary};
pub use wal::WalWriter;

use crate::config::ConnectionConfig;
use crate::exit::{print_failure, ExitStatus};

/// `pgbase`'s whole run from parsed flags: exit 0 only when the backup is complete on disk.
pub fn main(args: &PgbaseArgs) -> ExitCode {
    crate::exit::init_logging(args.log.verbose, args.log.log_format);
    let result = args.request().and_then(|request| {
        let settings = ConnectionConfig::default()
            .resolve(&args.server, "pgbase")
            .map_err(BaseError::from)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(BaseError::Internal)?;
        runtime.block_on(run(&request, &settings))
    });
    match result {
        Ok(summary) => {
            tracing::info!(
                start = %summary.start.lsn,
                end = %summary.end.lsn,
                bytes = summary.bytes,
                segments = summary.wal_segments.len(),
                "base backup complete"
            );
            ExitStatus::Success.into()
        }
        Err(error) => print_failure("pgbase", &error).into(),
    }
}
