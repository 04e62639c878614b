//! Where the co-process logs (`backup.log_target`, `--log-format`): the journal checked before
//! pgpre forks, and the co-process's logger.

use super::error::BackupError;
use super::BackupOptions;
use crate::config::LogTarget;
use crate::exit::ExitStatus;

/// pgpre: refuses `backup.log_target = "journal"` before the fork when no journald listens,
/// so the co-process never runs without a log.
pub fn check_log_target(options: &BackupOptions) -> Result<(), BackupError> {
    if options.log_target != LogTarget::Journal {
        return Ok(());
    }
    tracing_journald::layer()
        .map(drop)
        .map_err(|error| BackupError::Reported {
            message: format!(
                "backup.log_target = \"journal\": cannot reach journald \
                 (/run/systemd/journal/socket): {error}"
            ),
            hint: Some("run pgpre under systemd, or set backup.log_target = \"file\"".into()),
            status: ExitStatus::Usage,
        })
}

/// The co-process's logger: its log file (stderr, with times) in `--log-format`, or the
/// journal.
pub fn init_coprocess_log(options: &BackupOptions) {
    let journal = options.log_target == LogTarget::Journal
        && crate::exit::init_journal_logger(options.log_level).is_ok();
    if !journal {
        crate::exit::init_logger(options.log_level, options.log_format, std::io::stderr, true);
    }
}
