//! `pgpost`: stops the backup held by the co-process and prints `backup_label`.

use std::process::ExitCode;

use clap::Parser;
use safe_backup::args::Pgpost;
use safe_backup::backup::command;

fn main() -> ExitCode {
    command::pgpost(&Pgpost::parse())
}
