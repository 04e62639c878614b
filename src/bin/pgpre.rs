//! `pgpre`: starts a non-exclusive backup held by a detached co-process and prints the start LSN.

use std::process::ExitCode;

use clap::Parser;
use safe_backup::args::Pgpre;

fn main() -> ExitCode {
    // No thread or runtime may exist before pgpre forks the co-process.
    safe_backup::backup::pgpre(&Pgpre::parse())
}
