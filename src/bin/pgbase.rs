//! `pgbase`: a streamed base backup over the replication protocol (see `safe_backup::base`).

use std::process::ExitCode;

use clap::Parser as _;
use safe_backup::base::PgbaseArgs;

fn main() -> ExitCode {
    safe_backup::base::main(&PgbaseArgs::parse())
}
