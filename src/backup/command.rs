//! `pgpre` and `pgpost` from parsed flags to exit code: the one call each binary makes.

use std::process::ExitCode;

use super::metrics::{backup_metrics, bytes_of, completed_metrics, status_of};
use super::{coprocess_log, exec, list, post, report, runtime, spawn, BackupOptions};
use crate::args::{Pgpost, Pgpre};
use crate::config::{Config, DEFAULT_CONFIG};
use crate::exit::{fail, init_logging, Failure as _};
use crate::metrics::RunMetrics;

/// `pgpre`: lists the backups, or forks the co-process and prints the start LSN.
///
/// Must run before any thread or tokio runtime exists (it forks).
pub fn pgpre(cli: &Pgpre) -> ExitCode {
    if cli.common.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    let mut metrics = RunMetrics::new("pgpre", std::time::SystemTime::now()).bytes(0);
    let metrics_file = cli.common.metrics_file.as_deref();
    let resolved = Config::for_hooks(&cli.common, Some(&cli.start), None, "pgpre co-process");
    let (config, settings) = match resolved {
        Ok(resolved) => resolved,
        Err(error) => {
            metrics.write_at_end("pgpre", metrics_file, error.exit_status().code());
            return fail("pgpre", &error);
        }
    };
    let mut options = BackupOptions::from_config(&config.backup, cli.common.log.verbose);
    options.log_format = cli.common.log.log_format;
    match config.primary_settings("pgpre co-process") {
        Ok(primary) => options.primary = primary,
        Err(error) => {
            metrics.write_at_end("pgpre", metrics_file, error.exit_status().code());
            return fail("pgpre", &error);
        }
    }
    if cli.exec {
        return pgpre_exec(cli, &settings, &options);
    }
    let result = if cli.list {
        runtime()
            .and_then(|runtime| runtime.block_on(list::list_backups(&settings, &options, cli.json)))
            .map(|text| print!("{text}"))
    } else {
        // The co-process runs in "/": make the log path absolute first.
        if let Some(log_file) = options.log_file.as_mut() {
            if let Ok(absolute) = std::path::absolute(&*log_file) {
                *log_file = absolute;
            }
        }
        // No thread or runtime may exist before this fork.
        let name = options.table.name().to_string();
        let started = coprocess_log::check_log_target(&options)
            .and_then(|()| spawn::start_detached(settings, options));
        if let Ok(started) = &started {
            let lsn = Some(started.start_lsn.as_str());
            metrics = metrics.backup(backup_metrics(&name, lsn, None, None));
        }
        started.map(|started| report::print_start(&started))
    };
    metrics.write_at_end("pgpre", metrics_file, status_of(&result).code());
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
    init_logging(cli.common.log.verbose, cli.common.log.log_format);
    let request = exec::ExecRequest {
        command: cli.command.clone(),
        output_dir: cli.output_dir.clone(),
    };
    let mut progress = |line: &str| eprintln!("pgpre: {line}");
    let result = runtime().and_then(|runtime| {
        let mut completed =
            runtime.block_on(exec::run(settings, options, &request, &mut progress))?;
        deliver(
            &runtime,
            settings,
            options,
            &mut completed,
            cli.json,
            &mut progress,
        )
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail("pgpre", &error),
    }
}

/// Hands out a complete backup: `backup_label` on stdout first (before any wait), then the
/// archive check; `--json` is printed after the check, so that it carries the result.
fn deliver(
    runtime: &tokio::runtime::Runtime,
    settings: &crate::conn::ConnSettings,
    options: &BackupOptions,
    completed: &mut post::Completed,
    as_json: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<(), crate::backup::BackupError> {
    if !as_json {
        report::print_completed(completed, false)?;
    }
    let checked = runtime.block_on(post::check_archive(settings, options, completed, progress));
    if as_json {
        report::print_completed(completed, true)?;
    }
    checked
}

/// `pgpost`: stops the backup (or fetches the last one), writes the files, prints the result.
pub fn pgpost(cli: &Pgpost) -> ExitCode {
    if cli.common.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    init_logging(cli.common.log.verbose, cli.common.log.log_format);
    let mut metrics = RunMetrics::new("pgpost", std::time::SystemTime::now());
    let metrics_file = cli.common.metrics_file.as_deref();
    let resolved = Config::for_hooks(&cli.common, None, Some(&cli.stop), "pgpost");
    let (config, settings) = match resolved {
        Ok(resolved) => resolved,
        Err(error) => {
            metrics.write_at_end("pgpost", metrics_file, error.exit_status().code());
            return fail("pgpost", &error);
        }
    };
    let mut options = BackupOptions::from_config(&config.backup, cli.common.log.verbose);
    match config.primary_settings("pgpost") {
        Ok(primary) => options.primary = primary,
        Err(error) => {
            metrics.write_at_end("pgpost", metrics_file, error.exit_status().code());
            return fail("pgpost", &error);
        }
    }
    let request = post::PostRequest {
        output_dir: cli.output_dir.clone(),
        fetch: cli.fetch,
    };
    let mut progress = |line: &str| eprintln!("pgpost: {line}");
    let result = runtime().and_then(|runtime| {
        let mut completed =
            runtime.block_on(post::finish(&settings, &options, &request, &mut progress))?;
        let delivered = deliver(
            &runtime,
            &settings,
            &options,
            &mut completed,
            cli.json,
            &mut progress,
        );
        Ok((completed, delivered))
    });
    let result = match result {
        Ok((completed, printed)) => {
            metrics = metrics
                .bytes(bytes_of(&completed))
                .backup(completed_metrics(&completed));
            printed
        }
        Err(error) => Err(error),
    };
    metrics.write_at_end("pgpost", metrics_file, status_of(&result).code());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail("pgpost", &error),
    }
}
