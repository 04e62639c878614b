//! Stable exit codes and the one-line error report every binary prints.
//!
//! Every library error type implements [`Failure`], so a binary can map any
//! failure to an exit code and an optional `hint:` line without matching on
//! message text.

use std::fmt::Write as _;

/// The documented, stable exit codes of `pgpre`, `pgpost` and `pgback`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitStatus {
    /// Everything asked for was done.
    Success = 0,
    /// The backup ran and failed (a `failed` row, a failed dump, a dead co-process).
    BackupFailed = 1,
    /// Bad command line, configuration file or connection string.
    Usage = 2,
    /// The server could not be reached or refused the login.
    Connection = 3,
    /// The server is reachable but not usable: missing privilege, `wal_level=minimal`,
    /// a standby, an unsupported version.
    Server = 4,
    /// `pgpost`: there is no backup to stop.
    NoBackup = 5,
    /// A configured wait ran out.
    Timeout = 6,
    /// Writing a result file failed (disk full, read-only, refused directory).
    Output = 7,
    /// A bug or an unexpected system failure.
    Internal = 70,
}

impl ExitStatus {
    /// The numeric process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status.code())
    }
}

/// What a library error tells the binary that reports it.
pub trait Failure: std::error::Error {
    /// The exit code this failure maps to.
    fn exit_status(&self) -> ExitStatus;
    /// A line telling the user what they can do about it, when they can.
    fn hint(&self) -> Option<String> {
        None
    }
}

/// Formats `program: message` (the whole `source()` chain on one line) and,
/// when there is one, `hint: ...` on a second line.
pub fn report(
    program: &str,
    error: &(dyn std::error::Error + 'static),
    hint: Option<&str>,
) -> String {
    let mut line = format!("{program}: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // thiserror messages often embed their source already; don't repeat it.
        if !line.contains(&text) {
            let _ = write!(line, ": {text}");
        }
        source = cause.source();
    }
    let mut out = line.replace('\n', " ");
    if let Some(hint) = hint {
        let _ = write!(out, "\nhint: {hint}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn report_joins_the_source_chain_on_one_line() {
        let error = Outer(std::io::Error::other("inner\ndetail"));
        assert_eq!(report("pgpre", &error, None), "pgpre: outer: inner detail");
        assert_eq!(
            report("pgpre", &error, Some("do this")),
            "pgpre: outer: inner detail\nhint: do this"
        );
    }

    #[test]
    fn exit_codes_are_stable() {
        assert_eq!(ExitStatus::BackupFailed.code(), 1);
        assert_eq!(ExitStatus::Usage.code(), 2);
        assert_eq!(ExitStatus::NoBackup.code(), 5);
        assert_eq!(ExitStatus::Internal.code(), 70);
    }
}
