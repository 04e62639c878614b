//! `pgpost`: stops the backup held by the co-process and prints `backup_label`.

use std::process::ExitCode;

use clap::Parser;
use safe_backup::args::Pgpost;

fn main() -> ExitCode {
    safe_backup::backup::pgpost(&Pgpost::parse())
}
