//! `pgpost`: stops the backup held by the co-process and prints `backup_label`.

use std::process::ExitCode;

use clap::Parser;
use safe_backup::backup::command;
use safe_backup::cli::Pgpost;

fn main() -> ExitCode {
    command::pgpost(&Pgpost::parse())
}
