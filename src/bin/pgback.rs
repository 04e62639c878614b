//! `pgback`: pg_back's logical dump pipeline: globals, settings, hba/ident, createdb.sql and one
//! pg_dump per database, streamed through checksums, then purge.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use safe_backup::cli::ServerArgs;
use safe_backup::config::dump::{convert_pg_back_config, DumpFlags};
use safe_backup::config::values::{
    ChecksumAlgorithm, Compression, FileMode, Format, Keep, PurgeInterval, Seconds,
};
use safe_backup::config::{Config, ConfigError, SetupError, DEFAULT_CONFIG};
use safe_backup::dump::progress::Progress;
use safe_backup::dump::runner::{run, RunError, RunSettings};
use safe_backup::exit::{fail, init_logging_with, ExitStatus};

/// Dump every database (or the ones named) with pg_dump, plus the globals, settings, hba/ident
/// files and a createdb.sql per database; checksum while writing; purge old backups.
///
/// Exit codes: 0 success, 1 a database, server file or hook failed (the summary names them;
/// nothing is purged), 2 usage/config, 3 connection, 4 server, 6 timeout (replay pause),
/// 7 backup directory, 70 internal.
#[derive(Parser, Debug)]
#[command(name = "pgback", version, disable_help_flag = true)]
struct Cli {
    /// Databases to dump, in this order (default: all) [config: dump.include_dbs]
    #[arg(value_name = "DBNAME")]
    dbnames: Vec<String>,
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
    /// Directory of pg_dump and pg_dumpall [config: dump.bin_directory]
    #[arg(short = 'B', long, value_name = "DIR")]
    bin_directory: Option<String>,
    /// Where files go; may hold {dbname} [config: dump.backup_directory]
    #[arg(short = 'b', long, value_name = "DIR")]
    backup_directory: Option<String>,
    /// Mode of the files, octal; negative = no chmod [config: dump.backup_file_mode]
    #[arg(short = 'm', long, value_name = "MODE", allow_hyphen_values = true)]
    backup_file_mode: Option<FileMode>,
    /// plain|p, custom|c, tar|t, directory|d [config: dump.format]
    #[arg(short = 'F', long, value_name = "FORMAT")]
    format: Option<Format>,
    /// pg_dump -j for the directory format [config: dump.parallel_backup_jobs]
    #[arg(short = 'J', long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    parallel_backup_jobs: Option<u32>,
    /// -1..9, or gzip|lz4|zstd|none[:level] [config: dump.compress_level]
    #[arg(
        short = 'Z',
        long = "compress",
        value_name = "LEVEL",
        allow_hyphen_values = true
    )]
    compress: Option<Compression>,
    /// Databases dumped at once [config: dump.jobs]
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    jobs: Option<u32>,
    /// none, sha1, sha224, sha256, sha384, sha512 [config: dump.checksum_algorithm]
    #[arg(short = 'S', long = "checksum-algo", value_name = "ALGO")]
    checksum_algo: Option<ChecksumAlgorithm>,
    /// Purge backups older than DAYS, or a duration like 12h [config: dump.purge_older_than]
    #[arg(short = 'P', long, value_name = "DAYS")]
    purge_older_than: Option<PurgeInterval>,
    /// Newest backups always kept; `all` = no purge [config: dump.purge_min_keep]
    #[arg(short = 'K', long, value_name = "N", allow_hyphen_values = true)]
    purge_min_keep: Option<Keep>,
    /// Databases never dumped, comma-separated [config: dump.exclude_dbs]
    #[arg(short = 'D', long, value_name = "LIST", value_delimiter = ',')]
    exclude_dbs: Option<Vec<String>>,
    /// Dump templates too (never template0) [config: dump.with_templates]
    #[arg(short = 't', long, overrides_with = "without_templates")]
    with_templates: bool,
    /// Do not dump templates
    #[arg(long)]
    without_templates: bool,
    /// Only the databases: no globals, settings, hba/ident, createdb.sql [config: dump.dump_only]
    #[arg(long)]
    dump_only: bool,
    /// Keep role passwords in the globals (superuser only) [config: dump.with_role_passwords]
    #[arg(long, overrides_with = "without_role_passwords")]
    with_role_passwords: bool,
    /// Leave role passwords out of the globals
    #[arg(long)]
    without_role_passwords: bool,
    /// One stamp (the run's start) for every file [config: dump.uniform_timestamp]
    #[arg(long)]
    uniform_timestamp: bool,
    /// How long to wait for replay to pause on a standby, seconds [config: dump.pause_timeout]
    #[arg(short = 'T', long, value_name = "SECONDS")]
    pause_timeout: Option<Seconds>,
    /// Command run first (split like a shell, run without one) [config: dump.pre_backup_hook]
    #[arg(long, value_name = "COMMAND")]
    pre_backup_hook: Option<String>,
    /// Command run last, on every path after the pre hook [config: dump.post_backup_hook]
    #[arg(long, value_name = "COMMAND")]
    post_backup_hook: Option<String>,
    /// More output (-v: debug)
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

impl Cli {
    fn flags(&self) -> DumpFlags {
        let either = |yes: bool, no: bool| match (yes, no) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        DumpFlags {
            bin_directory: self.bin_directory.clone(),
            backup_directory: self.backup_directory.clone(),
            backup_file_mode: self.backup_file_mode,
            include_dbs: self.dbnames.clone(),
            exclude_dbs: self.exclude_dbs.clone(),
            with_templates: either(self.with_templates, self.without_templates),
            dump_only: self.dump_only.then_some(true),
            with_role_passwords: either(self.with_role_passwords, self.without_role_passwords),
            uniform_timestamp: self.uniform_timestamp.then_some(true),
            format: self.format,
            parallel_backup_jobs: self.parallel_backup_jobs,
            compress_level: self.compress.clone(),
            jobs: self.jobs,
            pause_timeout: self.pause_timeout,
            purge_older_than: self.purge_older_than,
            purge_min_keep: self.purge_min_keep,
            checksum_algorithm: self.checksum_algo,
            pre_backup_hook: self.pre_backup_hook.clone(),
            post_backup_hook: self.post_backup_hook.clone(),
        }
    }

    /// `[dump]` of the config file with the flags applied, and the connection.
    fn settings(&self, progress: Progress) -> Result<RunSettings, SetupError> {
        let (config, _path) = Config::load(self.config.as_deref())?;
        let mut dump = config.dump;
        dump.apply_flags(&self.flags());
        dump.validate("command line")?;
        let conn = config.connection.resolve(&self.server, "pgback")?;
        Ok(RunSettings {
            dump,
            conn,
            progress,
        })
    }
}

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    if let Some(path) = &cli.convert_pg_back_config {
        let converted = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })
            .and_then(|text| convert_pg_back_config(&text, path));
        return match converted {
            Ok(toml) => {
                print!("{toml}");
                ExitCode::SUCCESS
            }
            Err(error) => fail("pgback", &error),
        };
    }
    let progress = Progress::for_stderr();
    init_logging_with(cli.verbose + 1, progress.log_writer());
    let settings = match cli.settings(progress) {
        Ok(settings) => settings,
        Err(error) => return fail("pgback", &error),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("pgback: cannot start the async runtime: {error}");
            return ExitStatus::Internal.into();
        }
    };
    let result: Result<_, RunError> = runtime.block_on(run(settings, shutdown_signal()));
    match result {
        Ok(outcome) => {
            eprint!("{}", outcome.summary_table());
            if outcome.success() {
                ExitStatus::Success.into()
            } else {
                let failed = outcome.failed_databases();
                let mut what = Vec::new();
                if !failed.is_empty() {
                    what.push(format!(
                        "{} database(s) failed: {}",
                        failed.len(),
                        failed
                            .iter()
                            .map(|n| format!("{n:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                what.extend(outcome.server_errors.iter().cloned());
                what.extend(outcome.post_hook_error.iter().cloned());
                eprintln!(
                    "pgback: backup failed: {}; nothing was purged",
                    what.join("; ")
                );
                ExitStatus::BackupFailed.into()
            }
        }
        Err(error) => fail("pgback", &error),
    }
}
