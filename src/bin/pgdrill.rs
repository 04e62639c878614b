//! `pgdrill`: proves that a snapshot or copy restores (see `safe_backup::drill`).

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use safe_backup::drill::DrillArgs;
use safe_backup::metrics::RunMetrics;

fn main() -> ExitCode {
    let args = DrillArgs::parse();
    let json = args.json;
    let metrics_file = args.metrics_file.clone();
    safe_backup::exit::init_logging(0, args.log_format);
    let metrics = RunMetrics::new("pgdrill", std::time::SystemTime::now());
    let request = match args.into_request() {
        Ok(request) => request,
        Err(error) => error.exit(),
    };
    let report = safe_backup::drill::run(&request);
    let metrics_at_end = |code: u8| metrics.write_at_end("pgdrill", metrics_file.as_deref(), code);
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
            let status = safe_backup::exit::ExitStatus::Output;
            metrics_at_end(status.code());
            return status.into();
        }
    }
    metrics_at_end(report.exit_code);
    ExitCode::from(report.exit_code)
}
