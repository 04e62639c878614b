//! `pgdrill`: proves that a snapshot or copy restores (see `safe_backup::drill`).

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use safe_backup::drill::cli::DrillArgs;

fn main() -> ExitCode {
    let args = DrillArgs::parse();
    let json = args.json;
    let request = match args.into_request() {
        Ok(request) => request,
        Err(error) => error.exit(),
    };
    let report = safe_backup::drill::run(&request);
    let text = if json {
        report.to_json() + "\n"
    } else {
        report.to_text()
    };
    let mut stdout = std::io::stdout().lock();
    let printed = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    if let Some(error) = &report.error {
        eprintln!("pgdrill: {error}");
        if let Some(hint) = &report.hint {
            eprintln!("hint: {hint}");
        }
    }
    if let Err(error) = printed {
        eprintln!("pgdrill: cannot write the report to standard output: {error}");
        if report.exit_code == 0 {
            return safe_backup::exit::ExitStatus::Output.into();
        }
    }
    ExitCode::from(report.exit_code)
}
