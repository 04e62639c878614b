//! `pgback`: pg_back's logical dump pipeline: globals, settings, hba/ident, createdb.sql and one
//! pg_dump per database, streamed through checksums, then purge.

use std::process::ExitCode;

use clap::Parser;
use safe_backup::dump::command::{run_pgback, PgbackArgs};

fn main() -> ExitCode {
    run_pgback(PgbackArgs::parse())
}
