//! `pgpre` and `pgpost` from parsed flags to exit code: the one call each binary makes.

use std::process::ExitCode;

use super::{exec, list, post, report, runtime, spawn, BackupOptions};
use crate::cli::{Pgpost, Pgpre};
use crate::config::{Config, DEFAULT_CONFIG};
use crate::exit::{fail, init_logging};

/// `pgpre`: lists the backups, or forks the co-process and prints the start LSN.
///
/// Must run before any thread or tokio runtime exists (it forks).
pub fn pgpre(cli: &Pgpre) -> ExitCode {
    if cli.common.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    let resolved = Config::for_hooks(&cli.common, Some(&cli.start), None, "pgpre co-process");
    let (config, settings) = match resolved {
        Ok(resolved) => resolved,
        Err(error) => return fail("pgpre", &error),
    };
    let mut options = BackupOptions::from_config(&config.backup, cli.common.verbose);
    if cli.exec {
        return pgpre_exec(cli, &settings, &options);
    }
    let result = if cli.list {
        runtime()
            .and_then(|runtime| runtime.block_on(list::list_backups(&settings, &options)))
            .map(|text| print!("{text}"))
    } else {
        // The co-process runs in "/": make the log path absolute first.
        if let Some(log_file) = options.log_file.as_mut() {
            if let Ok(absolute) = std::path::absolute(&*log_file) {
                *log_file = absolute;
            }
        }
        // No thread or runtime may exist before this fork.
        spawn::start_detached(settings, options).map(|started| report::print_start(&started))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail("pgpre", &error),
    }
}

/// `pgpre --exec -- CMD`: start, run CMD, stop, in this process; prints what pgpost prints.
fn pgpre_exec(
    cli: &Pgpre,
    settings: &crate::conn::ConnSettings,
    options: &BackupOptions,
) -> ExitCode {
    init_logging(cli.common.verbose);
    let request = exec::ExecRequest {
        command: cli.command.clone(),
        output_dir: cli.output_dir.clone(),
    };
    let mut progress = |line: &str| eprintln!("pgpre: {line}");
    let result = runtime().and_then(|runtime| {
        let completed = runtime.block_on(exec::run(settings, options, &request, &mut progress))?;
        report::print_completed(&completed, cli.json)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail("pgpre", &error),
    }
}

/// `pgpost`: stops the backup (or fetches the last one), writes the files, prints the result.
pub fn pgpost(cli: &Pgpost) -> ExitCode {
    if cli.common.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    init_logging(cli.common.verbose);
    let resolved = Config::for_hooks(&cli.common, None, Some(&cli.stop), "pgpost");
    let (config, settings) = match resolved {
        Ok(resolved) => resolved,
        Err(error) => return fail("pgpost", &error),
    };
    let options = BackupOptions::from_config(&config.backup, cli.common.verbose);
    let request = post::PostRequest {
        output_dir: cli.output_dir.clone(),
        fetch: cli.fetch,
    };
    let mut progress = |line: &str| eprintln!("pgpost: {line}");
    let result = runtime().and_then(|runtime| {
        let completed =
            runtime.block_on(post::finish(&settings, &options, &request, &mut progress))?;
        report::print_completed(&completed, cli.json)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail("pgpost", &error),
    }
}
