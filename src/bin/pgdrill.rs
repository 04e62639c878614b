//! `pgdrill`: proves that a snapshot or copy restores (see `safe_backup::drill`).

use std::process::ExitCode;

use clap::Parser;
use safe_backup::drill::{run_pgdrill, DrillArgs};

fn main() -> ExitCode {
    run_pgdrill(DrillArgs::parse())
}
