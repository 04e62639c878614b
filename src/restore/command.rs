//! `pgback --restore DIR [DBNAME globs]`: its flags, and the run from them to an exit status
//! (the summary or the `--dry-run` plan printed, the metrics of each database kept).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{restore, RestoreReport, RestoreSettings};
use crate::args::ServerArgs;
use crate::config::DumpFlags;
use crate::config::EncryptionError;
use crate::config::{Config, SetupError};
use crate::exit::{print_failure, ExitStatus};
use crate::metrics::{DatabaseMetrics, RunMetrics};
use crate::secret::Secret;

/// pgback's restore flags. With `--restore`, the DBNAME arguments are globs selecting the
/// databases of the set, `-j` is pg_restore's jobs and `-B` where psql and pg_restore are.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RestoreFlags {
    /// Restore the newest dump set of DIR into the server instead of dumping (DBNAME
    /// arguments: globs selecting databases; -j N: pg_restore jobs; -B: psql, pg_restore)
    #[arg(long, value_name = "DIR")]
    pub restore: Option<PathBuf>,
    /// With --restore: the set holding this stamp (of any of its files), not the newest
    #[arg(long, value_name = "STAMP", requires = "restore")]
    pub timestamp: Option<String>,
    /// With --restore: restore into databases that hold objects (pg_restore --clean
    /// --if-exists) instead of refusing them
    #[arg(long, requires = "restore")]
    pub clean: bool,
    /// With --restore: verify, read the target, print the plan; change nothing
    #[arg(long, requires = "restore")]
    pub dry_run: bool,
    /// With --restore: refuse a set without checksum files (by default it is restored
    /// unverified, with a note)
    #[arg(long, requires = "restore")]
    pub require_checksums: bool,
}

impl RestoreFlags {
    /// The settings of a restore from `dir`: the target from the connection flags and
    /// `[connection]`, `-B` over `dump.bin_directory`, the DBNAME globs, `-j`, and the key of
    /// an encrypted set as `--decrypt` finds it (`--cipher-identity`, `cipher_private_key`,
    /// the passphrase of `PGBK_CIPHER_PASS` read by the caller, or `cipher_pass`).
    pub fn settings(
        &self,
        dir: &Path,
        config: Option<&Path>,
        server: &ServerArgs,
        dump: &DumpFlags,
        passphrase: Option<&Secret>,
    ) -> Result<RestoreSettings, SetupError> {
        let (config, path) = Config::load(config)?;
        let conn = config.connection.resolve(server, "pgback")?;
        let layered = config.dump.layered(dump)?;
        let encryption = &layered.encryption;
        let decrypt_key = encryption
            .check_file(path.as_deref())
            .map_err(EncryptionError::from)
            .and_then(|()| encryption.decrypt_key(passphrase, path.as_deref()))
            .map_err(|error| match error {
                EncryptionError::NoKey { what, .. } => EncryptionError::NoKey {
                    action: "--restore",
                    what,
                },
                other => other,
            })
            .map(Arc::new)
            .map_err(Arc::new);
        Ok(RestoreSettings {
            dir: dir.to_path_buf(),
            timestamp: self.timestamp.clone(),
            databases: dump.include_dbs.clone(),
            clean: self.clean,
            dry_run: self.dry_run,
            jobs: dump.jobs.unwrap_or(1),
            bin_directory: layered.bin_directory,
            require_checksums: self.require_checksums,
            conn,
            decrypt_key,
        })
    }
}

/// Runs the restore until done or `shutdown`; prints the plan (`--dry-run`, on stdout) or
/// the summary (stderr) and, for a failure, one line naming it. Returns the run's metrics
/// (one series per database) and its exit status: success only when every selected
/// database restored.
pub fn run_restore(
    runtime: &tokio::runtime::Runtime,
    settings: Result<RestoreSettings, SetupError>,
    shutdown: impl Future<Output = ()>,
    metrics: RunMetrics,
) -> (RunMetrics, ExitStatus) {
    let settings = match settings {
        Ok(settings) => settings,
        Err(error) => return (metrics, print_failure("pgback", &error)),
    };
    match runtime.block_on(restore(settings, shutdown)) {
        Ok(report) if report.dry_run => {
            print!("{}", report.plan);
            (metrics, ExitStatus::Success)
        }
        Ok(report) => {
            eprint!("{}", report.summary());
            let metrics = database_metrics(metrics, &report);
            if report.success() {
                (metrics, ExitStatus::Success)
            } else {
                let failed = crate::exit::quoted_list(&report.failed_databases());
                eprintln!("pgback: restore failed for {failed}");
                (metrics, ExitStatus::BackupFailed)
            }
        }
        Err(error) => (metrics, print_failure("pgback", &error)),
    }
}

/// One series per database restored (bytes: the dump files' sizes are not counted, 0).
fn database_metrics(metrics: RunMetrics, report: &RestoreReport) -> RunMetrics {
    report.databases.iter().fold(metrics, |metrics, db| {
        metrics.database(DatabaseMetrics {
            database: db.name.clone(),
            success: db.error.is_none(),
            bytes: 0,
            duration: db.duration,
        })
    })
}
