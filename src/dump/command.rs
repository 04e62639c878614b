//! pgback's command line and the one call its binary makes: refuse a secret given as a flag,
//! print the documented defaults, convert a pg_back.conf, decrypt in place (`--decrypt`), list
//! or download a remote store (`--list-remote`, `--download`), run the dumps (uploading with
//! `--upload`) or restore a set (`--restore`); then word the outcome, write the metrics file and
//! map the outcome to an exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::encrypt::Encryption;
use super::offsite::{self, Offsite};
use super::progress::Progress;
use super::run::{run, RunSettings};
use super::secret_flags::SecretFlags;
use crate::args::ServerArgs;
use crate::config::convert_pg_back_config;
use crate::config::SetupError;
use crate::config::StoreKind;
use crate::config::{take_passphrase_from_env, EncryptionError};
use crate::config::{Config, ConfigError, ConnectionConfig, DEFAULT_CONFIG};
use crate::config::{DumpConfig, DumpFlags};
use crate::crypt::{decrypt_files, find_encrypted, CryptError, DecryptKey};
use crate::exit::{fail, init_logging_with, print_failure, LogFormat};
use crate::exit::{report, ExitStatus, Failure};
use crate::metrics::RunMetrics;
use crate::restore::{run_restore, RestoreFlags};
use crate::secret::{Secret, SecretError};

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
    /// Decrypt the .age files of the backup directory in place instead of dumping, -j at a
    /// time; DBNAMEs become globs selecting the files. With --download: what it fetched
    #[arg(long)]
    decrypt: bool,
    /// What overrides `[dump]`.
    #[command(flatten)]
    dump: DumpFlags,
    /// `--restore DIR` and its flags.
    #[command(flatten)]
    restore: RestoreFlags,
    /// Write the Prometheus metrics of this run (textfile-collector format: times, outcome,
    /// bytes, one series per database) to FILE when it ends, failed or not; replaced atomically
    #[arg(long, env = "PGBACK_METRICS_FILE", value_name = "FILE")]
    metrics_file: Option<PathBuf>,
    /// Log lines as text or json (one object per line)
    #[arg(
        long,
        env = "PGBACK_LOG_FORMAT",
        value_name = "FORMAT",
        value_enum,
        default_value_t
    )]
    log_format: LogFormat,
    /// Secrets given as flags, refused.
    #[command(flatten)]
    secrets: SecretFlags,
    /// More output (-v: debug)
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

/// What a run does with a remote store instead of dumping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RemoteMode {
    /// `--list-remote`.
    List,
    /// `--download` (then `--decrypt` of what it fetched).
    Download,
}

impl RemoteMode {
    /// `list_remote` or `download` of `dump` (flags, variables or the file).
    fn of(dump: &DumpConfig) -> Option<RemoteMode> {
        match (dump.remote.list_remote, dump.remote.download) {
            (StoreKind::None, StoreKind::None) => None,
            (StoreKind::None, _) => Some(RemoteMode::Download),
            _ => Some(RemoteMode::List),
        }
    }
}

/// The settings of a run or of `--decrypt` could not be built.
#[derive(Debug, thiserror::Error)]
enum StartError {
    /// The configuration or the connection.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The keys.
    #[error(transparent)]
    Encryption(#[from] EncryptionError),
    /// A secret of `[dump.remote]` in a file others can read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// `--decrypt` needs one directory.
    #[error("--decrypt needs a backup directory without {{dbname}}: {0}")]
    DecryptDirectory(String),
}

impl From<ConfigError> for StartError {
    fn from(error: ConfigError) -> StartError {
        StartError::Setup(error.into())
    }
}

impl Failure for StartError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            StartError::Setup(e) => e.exit_status(),
            StartError::Encryption(e) => e.exit_status(),
            StartError::Secret(e) => e.exit_status(),
            StartError::DecryptDirectory(_) => ExitStatus::Usage,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            StartError::Setup(e) => e.hint(),
            StartError::Encryption(e) => e.hint(),
            StartError::Secret(e) => e.hint(),
            StartError::DecryptDirectory(_) => Some("give the directory with -b DIR".into()),
        }
    }
}

/// `[dump]` with every layer applied, `[connection]`, and the configuration file's path.
type Loaded = (DumpConfig, ConnectionConfig, Option<PathBuf>);

impl PgbackArgs {
    /// `[dump]` with every layer applied; a file holding a secret must not be readable by others.
    /// Also returns `[connection]` and the file's path. Read once per run, by [`run_pgback`].
    fn load(&self) -> Result<Loaded, StartError> {
        let (config, path) = Config::load(self.config.as_deref())?;
        let dump = config.dump.layered(&self.dump)?;
        dump.check_secret_files(path.as_deref())?;
        Ok((dump, config.connection, path))
    }

    /// The loaded `[dump]` and `[connection]` with the encryption key: a run's settings.
    fn settings(
        &self,
        loaded: Result<Loaded, StartError>,
        progress: Progress,
        passphrase: Option<&Secret>,
    ) -> Result<RunSettings, StartError> {
        let (dump, connection, _) = loaded?;
        let encryption = dump
            .encryption
            .encrypt_key(passphrase)?
            .map(|key| Encryption {
                key,
                keep_src: dump.encryption.encrypt_keep_src,
            });
        let conn = connection.resolve(&self.server, "pgback")?;
        Ok(RunSettings {
            dump,
            conn,
            progress,
            encryption,
            offsite: None,
        })
    }
}

/// Does what the command line asks; prints the summary and, for a failure, one line naming
/// what failed (and a `hint:` where the user can act).
pub fn run_pgback(args: PgbackArgs) -> ExitCode {
    if let Some(refused) = args.secrets.refusal() {
        return fail("pgback", &refused);
    }
    // Read and removed before any thread starts: no child inherits it.
    let passphrase = match take_passphrase_from_env() {
        Ok(passphrase) => passphrase,
        Err(error) => return fail("pgback", &error),
    };
    if args.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    if let Some(path) = &args.convert_pg_back_config {
        return convert(path);
    }
    let progress = Progress::for_stderr();
    init_logging_with(args.verbose + 1, args.log_format, progress.log_writer());
    // A configuration that cannot be read is reported by the path that needs it (--restore
    // reads its own).
    let loaded = args.load();
    let remote = loaded
        .as_ref()
        .ok()
        .and_then(|(dump, _, _)| RemoteMode::of(dump));
    if args.decrypt && remote != Some(RemoteMode::Download) {
        return decrypt(&args, loaded, passphrase.as_ref());
    }
    let metrics = RunMetrics::new("pgback", std::time::SystemTime::now());
    let runtime = match crate::process::runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("pgback: cannot start the async runtime: {error}");
            let status = ExitStatus::Internal;
            metrics.write_at_end("pgback", args.metrics_file.as_deref(), status.code());
            return status.into();
        }
    };
    let (metrics, status) = match &args.restore.restore {
        Some(dir) => {
            let restore = &args.restore;
            let settings = restore.settings(
                dir,
                args.config.as_deref(),
                &args.server,
                &args.dump,
                passphrase.as_ref(),
            );
            run_restore(&runtime, settings, shutdown_signal(), metrics)
        }
        None => match remote {
            Some(_) => (
                metrics,
                list_or_download(&args, loaded, &runtime, passphrase.as_ref()),
            ),
            None => {
                let settings = args.settings(loaded, progress, passphrase.as_ref());
                dump(settings, &runtime, metrics)
            }
        },
    };
    metrics.write_at_end("pgback", args.metrics_file.as_deref(), status.code());
    status.into()
}

/// The dumps: the summary table, and for a failure one line naming it.
fn dump(
    settings: Result<RunSettings, StartError>,
    runtime: &tokio::runtime::Runtime,
    metrics: RunMetrics,
) -> (RunMetrics, ExitStatus) {
    let mut settings = match settings {
        Ok(settings) => settings,
        Err(error) => return (metrics, print_failure("pgback", &error)),
    };
    settings.offsite = match runtime.block_on(Offsite::start(&settings.dump)) {
        Ok(offsite) => offsite,
        Err(error) => return (metrics, print_failure("pgback", &error)),
    };
    match runtime.block_on(run(settings, shutdown_signal())) {
        Ok(report) => {
            eprint!("{}", report.summary_table());
            let metrics = super::metrics::run_metrics(metrics, &report);
            match report.failure_line() {
                None => (metrics, ExitStatus::Success),
                Some(line) => {
                    eprintln!("pgback: {line}");
                    (metrics, ExitStatus::BackupFailed)
                }
            }
        }
        Err(error) => (metrics, print_failure("pgback", &error)),
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

/// `--list-remote` (the names on stdout) or `--download` (then `--decrypt` of what it fetched)
/// instead of dumping.
fn list_or_download(
    args: &PgbackArgs,
    loaded: Result<Loaded, StartError>,
    runtime: &tokio::runtime::Runtime,
    passphrase: Option<&Secret>,
) -> ExitStatus {
    let (dump, _, path) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return print_failure("pgback", &error),
    };
    if dump.remote.list_remote != StoreKind::None {
        return match runtime.block_on(offsite::list_remote(&dump)) {
            Ok(names) => {
                for name in names {
                    println!("{name}");
                }
                ExitStatus::Success
            }
            Err(error) => print_failure("pgback", &error),
        };
    }
    // The key first: a download that cannot be decrypted fails before fetching anything.
    let key = match args.decrypt {
        true => match dump.encryption.decrypt_key(passphrase, path.as_deref()) {
            Ok(key) => Some(key),
            Err(error) => return print_failure("pgback", &StartError::from(error)),
        },
        false => None,
    };
    let fetched = match runtime.block_on(offsite::download(&dump)) {
        Ok(fetched) => fetched,
        Err(error) => return print_failure("pgback", &error),
    };
    eprintln!("pgback: {} file(s) downloaded and verified", fetched.len());
    let Some(key) = key else {
        return ExitStatus::Success;
    };
    let encrypted: Vec<PathBuf> = fetched
        .into_iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "age"))
        .collect();
    decrypted(&encrypted, &key, dump.jobs as usize)
}

/// `--decrypt [GLOBS]`: decrypts the matching `.age` files of the backup directory in place,
/// `-j` at a time. Each file that cannot be decrypted gets one line, and no output file.
fn decrypt(
    args: &PgbackArgs,
    loaded: Result<Loaded, StartError>,
    passphrase: Option<&Secret>,
) -> ExitCode {
    let prepared = (move || {
        if args.dump.encryption.encrypt == Some(true) {
            return Err(StartError::from(EncryptionError::EncryptAndDecrypt));
        }
        let (dump, _, path) = loaded?;
        let key = dump.encryption.decrypt_key(passphrase, path.as_deref())?;
        if dump
            .backup_directory
            .contains(crate::naming::DBNAME_PLACEHOLDER)
        {
            return Err(StartError::DecryptDirectory(dump.backup_directory));
        }
        Ok((dump, key))
    })();
    let (dump, key) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => return fail("pgback", &error),
    };
    let dir = Path::new(&dump.backup_directory);
    let files = match find_encrypted(dir, &dump.include_dbs) {
        Ok(files) => files,
        Err(error) => return fail("pgback", &error),
    };
    if files.is_empty() {
        tracing::warn!(
            "no file to decrypt in {}: maybe add a wildcard (*) to the patterns?",
            dir.display()
        );
    }
    decrypted(&files, &key, dump.jobs as usize).into()
}

/// Decrypts `files` in place, `jobs` at a time: one line per failure, each hint once.
fn decrypted(files: &[PathBuf], key: &DecryptKey, jobs: usize) -> ExitStatus {
    let decrypted = decrypt_files(files, key, jobs);
    tracing::info!("{} files decrypted", decrypted.decrypted.len());
    let mut hints: Vec<String> = Vec::new();
    for failure in &decrypted.failures {
        eprintln!("{}", report("pgback", failure, None));
        if let Some(hint) = failure.hint().filter(|h| !hints.contains(h)) {
            hints.push(hint);
        }
    }
    for hint in hints {
        eprintln!("hint: {hint}");
    }
    match decrypted.failures.first() {
        None => ExitStatus::Success,
        Some(failure) => CryptError::exit_status(failure),
    }
}

/// Resolves on SIGINT or SIGTERM (never, when they cannot be caught), saying so in the log.
async fn shutdown_signal() {
    let signal = crate::shutdown::shutdown_signal().await;
    tracing::warn!("{signal} received: stopping the run");
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
