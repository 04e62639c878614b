//! pgback's command line and the one call its binary makes: print the documented defaults,
//! convert a pg_back.conf, or run the dumps; then word the outcome and map it to an exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::offsite::{self, Offsite};
use super::progress::Progress;
use super::run::{run, RunSettings};
use crate::cli::ServerArgs;
use crate::config::dump::DumpFlags;
use crate::config::pg_back::convert_pg_back_config;
use crate::config::remote::StoreKind;
use crate::config::SetupError;
use crate::config::{Config, ConfigError, DEFAULT_CONFIG};
use crate::exit::ExitStatus;
use crate::exit::{fail, init_logging_with};

/// Dump every database (or the ones named) with pg_dump, plus the globals, settings, hba/ident
/// files and a createdb.sql per database; checksum while writing; purge old backups.
#[derive(clap::Parser, Debug)]
#[command(
    name = "pgback",
    version,
    disable_help_flag = true,
    after_help = crate::exit::exit_codes_help()
)]
pub struct PgbackArgs {
    /// Config file [default: /etc/safe-backup/config.toml when it exists]
    #[arg(short = 'c', long, env = "SAFE_BACKUP_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the documented defaults and exit
    #[arg(long)]
    print_default_config: bool,
    /// Print the TOML equivalent of a pg_back.conf and exit
    #[arg(long, value_name = "PG_BACK_CONF")]
    convert_pg_back_config: Option<PathBuf>,
    /// How to reach the server: -d CONNINFO, -h, -p, -U (libpq conventions)
    #[command(flatten)]
    server: ServerArgs,
    /// What overrides `[dump]`.
    #[command(flatten)]
    dump: DumpFlags,
    /// More output (-v: debug)
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

impl PgbackArgs {
    /// `[dump]` with every layer applied, and the connection.
    fn settings(&self, progress: Progress) -> Result<RunSettings, SetupError> {
        let (config, _path) = Config::load(self.config.as_deref())?;
        let dump = config.dump.layered(&self.dump)?;
        let conn = config.connection.resolve(&self.server, "pgback")?;
        Ok(RunSettings {
            dump,
            conn,
            progress,
            offsite: None,
        })
    }
}

/// Does what the command line asks; prints the summary and, for a failure, one line naming
/// what failed (and a `hint:` where the user can act).
pub fn run_pgback(args: PgbackArgs) -> ExitCode {
    if args.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    if let Some(path) = &args.convert_pg_back_config {
        return convert(path);
    }
    let progress = Progress::for_stderr();
    init_logging_with(args.verbose + 1, progress.log_writer());
    let mut settings = match args.settings(progress) {
        Ok(settings) => settings,
        Err(error) => return fail("pgback", &error),
    };
    let runtime = match crate::process::runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("pgback: cannot start the async runtime: {error}");
            return ExitStatus::Internal.into();
        }
    };
    let remote = &settings.dump.remote;
    if remote.list_remote != StoreKind::None || remote.download != StoreKind::None {
        return runtime.block_on(fetch_or_list(&settings));
    }
    settings.offsite = match runtime.block_on(Offsite::start(&settings.dump)) {
        Ok(offsite) => offsite,
        Err(error) => return fail("pgback", &error),
    };
    match runtime.block_on(run(settings, shutdown_signal())) {
        Ok(report) => {
            eprint!("{}", report.summary_table());
            match report.failure_line() {
                None => ExitStatus::Success.into(),
                Some(line) => {
                    eprintln!("pgback: {line}");
                    ExitStatus::BackupFailed.into()
                }
            }
        }
        Err(error) => fail("pgback", &error),
    }
}

/// `--list-remote` (the names on stdout) or `--download` instead of dumping.
async fn fetch_or_list(settings: &RunSettings) -> ExitCode {
    if settings.dump.remote.list_remote != StoreKind::None {
        return match offsite::list_remote(&settings.dump).await {
            Ok(names) => {
                for name in names {
                    println!("{name}");
                }
                ExitStatus::Success.into()
            }
            Err(error) => fail("pgback", &error),
        };
    }
    match offsite::download(&settings.dump).await {
        Ok(files) => {
            eprintln!("pgback: {} file(s) downloaded and verified", files.len());
            ExitStatus::Success.into()
        }
        Err(error) => fail("pgback", &error),
    }
}

/// `--convert-pg-back-config`: prints the TOML.
fn convert(path: &Path) -> ExitCode {
    let converted = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })
        .and_then(|text| convert_pg_back_config(&text, path));
    match converted {
        Ok(toml) => {
            print!("{toml}");
            ExitCode::SUCCESS
        }
        Err(error) => fail("pgback", &error),
    }
}

/// Resolves on SIGINT or SIGTERM (never, when they cannot be caught).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
    tracing::warn!("signal received: stopping the dumps");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed_and_names_the_variables() {
        PgbackArgs::command().debug_assert();
        let help = PgbackArgs::command().render_long_help().to_string();
        for variable in [
            "PGBACK_FORMAT",
            "PGBACK_WITH_TEMPLATES",
            "PGBACK_POST_BACKUP_HOOK",
        ] {
            assert!(help.contains(variable), "{variable}: {help}");
        }
    }
}
