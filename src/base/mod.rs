//! `pgbase`: a base backup streamed over the replication protocol (PostgreSQL 10–18), as
//! pg_basebackup takes it: tar files or a data directory, with its WAL streamed from a
//! temporary slot (`-X stream`), fetched (`-X fetch`) or left to the archive (`-X none`).
//!
//! Uses: dump, backup, replication, remote, config, crypt, args, conn, secret, metrics, server,
//! wal, naming, compress, checksum, files, shutdown, values, exit.
//!
//! # Layout
//! In dependency order: each file uses only files above it (tests aside).
//! - `error.rs`: [`BaseError`] with its exit status and hint, the incomplete marker's name.
//! - `command.rs`: [`PgbaseArgs`] (clap) and the validated [`Request`]. Uses error.
//! - `tar.rs`: a push-style tar reader and the header of a WAL segment entry.
//! - `output.rs`: [`TarFiles`] (`-F t`, compressed, hashed, pgback's checksum files, each
//!   final file reported for upload) and [`PlainTree`] (`-F p`, unpacked, tablespaces
//!   relocated by `-T`). Uses error, tar.
//! - `unpack.rs`: a tar backup read back (archives found, decrypted, decompressed, unpacked);
//!   pgdrill's too. Uses error, output.
//! - `offsite.rs`: `--upload` (pgback's upload stage, the remote incomplete marker) and the
//!   purge (pgback's rule). Uses command, error, unpack.
//! - `wal.rs`: `-X stream`: [`WalWriter`] and the streaming loop. Uses error, tar, output.
//! - `run.rs`: one run: the directory, the two connections, the signals, the upload. Uses all
//!   above.
//! - `restore.rs`: `--restore`: download, verify, unpack, recovery files. Uses all above.
//! - `report.rs`: `--json` and `--metrics-file`. Uses run, restore.
//! - this file: [`main`], the binary's body (runtime, logging, the one-line report).

mod command;
mod error;
mod offsite;
mod output;
mod report;
mod restore;
mod run;
mod tar;
mod unpack;
mod wal;

use std::process::ExitCode;

pub use command::{Format, Mode, PgbaseArgs, Request, RestoreRequest, WalMethod};
pub use error::{BaseError, INCOMPLETE_MARKER};
pub use output::{Packing, PlainTree, TarFiles};
pub use restore::{restore, restore_command_line, RestoreSummary};
pub use run::{run, BaseSummary};
pub use unpack::{backup_files, find_archive, tablespace_archives, unpack_archive, unpack_backup};
pub use wal::WalWriter;

use std::time::SystemTime;

use crate::exit::{print_failure, ExitStatus, Failure as _};
use crate::metrics::RunMetrics;

/// `pgbase`'s whole run from parsed flags: exit 0 only when the backup is complete on disk
/// (and, with `--upload`, on the store), or the restore is complete.
pub fn main(args: &PgbaseArgs) -> ExitCode {
    crate::exit::init_logging(args.log.verbose, args.log.log_format);
    let metrics = RunMetrics::new("pgbase", SystemTime::now());
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(BaseError::Internal)
    };
    let result = args.mode().and_then(|mode| match mode {
        Mode::Backup(request) => {
            let settings = request
                .connection
                .resolve(&args.server, "pgbase")
                .map_err(BaseError::from)?;
            let summary = runtime()?.block_on(run(&request, &settings))?;
            tracing::info!(
                start = %summary.start.lsn,
                end = %summary.end.lsn,
                bytes = summary.bytes,
                segments = summary.wal_segments.len(),
                "base backup complete"
            );
            Ok((
                report::backup_json(&summary, &request.dir),
                report::backup_metrics(metrics.clone(), &summary, &request.label),
            ))
        }
        Mode::Restore(request) => {
            let summary = runtime()?.block_on(restore(&request))?;
            tracing::info!(dir = %summary.dir.display(), "restore complete");
            Ok((report::restore_json(&summary), metrics.clone()))
        }
    });
    let metrics_file = args.metrics_file.as_deref();
    match result {
        Ok((json, metrics)) => {
            if args.json {
                println!("{json:#}");
            }
            metrics.write_at_end("pgbase", metrics_file, ExitStatus::Success.code());
            ExitStatus::Success.into()
        }
        Err(error) => {
            let metrics = match &error {
                BaseError::Upload {
                    report: Some(upload),
                    ..
                } => report::upload_metrics(metrics, upload),
                _ => metrics,
            };
            metrics.write_at_end("pgbase", metrics_file, error.exit_status().code());
            print_failure("pgbase", &error).into()
        }
    }
}
