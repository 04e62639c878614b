//! Exit codes (the one table), the one-line error report, and the stderr log of every binary.
//!
//! Every library error type implements [`Failure`], so a binary can map any failure to an exit
//! code and an optional `hint:` line without matching on message text. [`EXIT_CODES`] is the
//! only list of the codes: `--help` renders it ([`exit_codes_help`]) and a test holds the
//! README's table to it.

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
    /// `pgdrill`: the clone did not recover to a consistent state.
    NotRecovered = 8,
    /// `pgpre --exec`: the command failed, was killed or timed out; the backup was failed.
    CommandFailed = 9,
    /// The backup stopped and its files are stored, but its WAL is not in the archive.
    WalNotArchived = 10,
    /// A bug or an unexpected system failure.
    Internal = 70,
}

/// One exit code as the user reads it.
#[derive(Clone, Copy, Debug)]
pub struct ExitCodeDoc {
    pub status: ExitStatus,
    /// What it means, as the README and `--help` say it.
    pub meaning: &'static str,
}

/// Every exit code with its meaning, in order: the one table behind `--help` and the README.
pub const EXIT_CODES: [ExitCodeDoc; 12] = [
    ExitCodeDoc {
        status: ExitStatus::Success,
        meaning: "success: pgpre's backup is running, pgpost's backup is complete, pgback dumped everything, pgdrill proved the snapshot (consistent, every check clean)",
    },
    ExitCodeDoc {
        status: ExitStatus::BackupFailed,
        meaning: "the backup failed: the row says `failed`, the co-process died or the stop failed; for pgback a database, a server-level file or a hook failed, or a signal stopped the run (nothing purged); for pgdrill the clone recovered but a check failed (amcheck, `--sql`, `--exec`); for pgbase the server reported an error during the backup, the stream broke off, the server went away (stopped, crashed, or silent past the TCP keepalives), or SIGINT/SIGTERM stopped it (the partial backup removed unless `--no-clean`); for pgbase also a store that could not be reached or refused, a file that did not upload (the local backup stays), `--restore` refusing a backup (`pgbase.incomplete`, a checksum mismatch, an archive that cannot be decrypted or unpacked) or stopped by SIGINT/SIGTERM (what it wrote removed); for pgdrill also a tar backup whose checksum file does not match, that cannot be decrypted or unpacked, or whose tablespace archives do not match its tablespaces",
    },
    ExitCodeDoc {
        status: ExitStatus::Usage,
        meaning: "bad command line, configuration file or connection string; for pgback also an unusable `pg_dump` (the hint names `-B`), `--native` on a database that holds objects the native export cannot reproduce (each named) or with a schema/table selection or `pg_dump_options`; a DBNAME glob that does not parse (`--download`, `--list-remote`, `--decrypt`, `--restore`); for pgdrill also no `backup_label`, not a data directory, a bad label or map, a `-T` that maps nothing; for pgbase a non-empty `-D` or `-T` target, a `-T` that maps no tablespace, `-Z server-...` against a server older than 15 (hint: `-Z client-METHOD`), `-Z`/`--encrypt`/`--upload` with `-F p`, `--encrypt` without a key, the archive-check flags in a backup without `-X none`, bad store settings, `--recovery-signal` without `--restore-command` on 10 and 11; for pgdrill also an unreadable `--cipher-identity`",
    },
    ExitCodeDoc {
        status: ExitStatus::Connection,
        meaning: "the server could not be reached or refused the login (for pgbase also: no `replication` line in pg_hba.conf, the hint names it; `channel_binding=require`)",
    },
    ExitCodeDoc {
        status: ExitStatus::Server,
        meaning: "the server is not usable: missing privilege, `wal_level=minimal`, archiving off (unless `--archive-check=none`), version < 9.6, a `--primary` that is not the standby's primary or does not archive; for pgback a server query of the run failed (version, database list, pausing replay, `--native`'s inventory) or `pg_dump` is older than the server (the hint names `-B` and the major needed); for pgdrill this machine cannot run the drill (no `postgres` of that major, no `pg_amcheck` for 14+, no clone method, no role to connect as); for pgbase a role without REPLICATION, a server older than 10, `-X none` with archiving off; for pgdrill also, as root, a tar backup directory owned by root",
    },
    ExitCodeDoc {
        status: ExitStatus::NoBackup,
        meaning: "pgpost: no backup in progress (no table, empty table, last backup already finished)",
    },
    ExitCodeDoc {
        status: ExitStatus::Timeout,
        meaning: "a timeout ran out: pgpre's start, pgpost's stop, pgback's standby replay pause (`pause_timeout`), pgdrill's `--timeout` before consistency",
    },
    ExitCodeDoc {
        status: ExitStatus::Output,
        meaning: "an output file or directory could not be written, or is the live data directory; for pgback the backup directory (its part before `{dbname}`) cannot be created; for pgdrill the work directory; for pgbase a file of the backup (a full disk: `No space left on device`, with a hint)",
    },
    ExitCodeDoc {
        status: ExitStatus::NotRecovered,
        meaning: "pgdrill: the clone did not recover: missing WAL (the message names the segment), a label from another backup, the server stopped with an error",
    },
    ExitCodeDoc {
        status: ExitStatus::CommandFailed,
        meaning: "pgpre --exec: the command failed, was killed (also by SIGINT/SIGTERM passed on from pgpre) or outlasted `backup_timeout`; the backup is `failed` and backup mode has ended",
    },
    ExitCodeDoc {
        status: ExitStatus::WalNotArchived,
        meaning: "pgpost, pgpre --exec, pgbase -X none: the backup stopped and its files are stored (state table, stdout, `--output-dir`; pgbase keeps the backup, marked `pgbase.incomplete`), but a WAL segment it needs is not in the archive within `--archive-timeout`, or the check lost its session (the message names it); the backup becomes usable once that WAL is archived",
    },
    ExitCodeDoc {
        status: ExitStatus::Internal,
        meaning: "internal error",
    },
];

impl ExitStatus {
    /// The numeric process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The status with this numeric code, if it is one of [`EXIT_CODES`].
    pub fn from_code(code: u8) -> Option<ExitStatus> {
        EXIT_CODES
            .iter()
            .map(|doc| doc.status)
            .find(|status| status.code() == code)
    }
}

/// The exit-code table as `--help` shows it (clap's `after_help` of every binary).
pub fn exit_codes_help() -> String {
    let mut text = String::from("Exit codes (the same for every binary):\n");
    for doc in EXIT_CODES {
        let meaning = doc.meaning.replace('`', "");
        let _ = writeln!(text, "  {:>2}  {meaning}", doc.status.code());
    }
    text
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

/// `"a", "b"`: names as they appear in messages.
pub fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints a failure as one line (`program: message`) plus `hint:`, returns its exit code.
pub fn fail<E: Failure + 'static>(program: &str, error: &E) -> std::process::ExitCode {
    print_failure(program, error).into()
}

/// [`fail`] for a caller that still has work to do with the status (the metrics file).
pub fn print_failure(program: &str, error: &(dyn Failure + 'static)) -> ExitStatus {
    eprintln!("{}", report(program, error, error.hint().as_deref()));
    error.exit_status()
}

/// The log level of `-v` counts: warnings by default, `-v` info, `-vv` debug.
pub fn log_level(verbose: u8) -> tracing::Level {
    match verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    }
}

/// How log lines look (`--log-format`): `text` for people, `json` (one object per line:
/// `timestamp`, `level`, `message` and the event's fields) for log collectors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `LEVEL message`, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the stderr logger at [`log_level`].
pub fn init_logging(verbose: u8, format: LogFormat) {
    init_logging_with(verbose, format, std::io::stderr);
}

/// [`init_logging`] through `writer` (pgback: one that does not tear its progress spinners).
pub fn init_logging_with<W>(verbose: u8, format: LogFormat, writer: W)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    init_logger(log_level(verbose), format, writer, false);
}

/// The logger of every binary and of pgpre's co-process: `level` and above, in `format`, to
/// `writer`. Text lines carry the time only when `timed` (the co-process's log file); JSON
/// lines always do.
pub fn init_logger<W>(level: tracing::Level, format: LogFormat, writer: W, timed: bool)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_max_level(level)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => {
            let builder = builder.with_ansi(std::io::stderr().is_terminal());
            if timed {
                builder.try_init()
            } else {
                builder.without_time().try_init()
            }
        }
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// The journald logger of pgpre's co-process (`backup.log_target = "journal"`): `level` and
/// above, with the journal's own fields (`PRIORITY`, `SYSLOG_IDENTIFIER=pgpre`). Fails when no
/// journald listens on its socket.
pub fn init_journal_logger(level: tracing::Level) -> std::io::Result<()> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::Layer as _;
    let journal = tracing_journald::layer()?.with_syslog_identifier("pgpre".into());
    let filter = tracing_subscriber::filter::LevelFilter::from_level(level);
    let subscriber = tracing_subscriber::registry().with(journal.with_filter(filter));
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(())
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
        for doc in EXIT_CODES {
            assert_eq!(ExitStatus::from_code(doc.status.code()), Some(doc.status));
        }
        assert_eq!(ExitStatus::NotRecovered.code(), 8);
        assert_eq!(ExitStatus::WalNotArchived.code(), 10);
        assert_eq!(ExitStatus::from_code(60), None);
    }

    /// The README's exit-code table lists exactly [`EXIT_CODES`], in order, with their meanings.
    #[test]
    fn readme_lists_the_same_exit_codes() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("\n## Exit codes")
            .nth(1)
            .expect("README has an \"Exit codes\" section");
        let rows: Vec<(u8, &str)> = section
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .filter_map(|line| {
                let mut cells = line.trim_matches('|').split('|').map(str::trim);
                let code = cells.next()?.parse().ok()?;
                Some((code, cells.next()?))
            })
            .collect();
        let table: Vec<(u8, &str)> = EXIT_CODES
            .iter()
            .map(|doc| (doc.status.code(), doc.meaning))
            .collect();
        assert_eq!(rows, table);
    }

    #[test]
    fn help_lists_every_code() {
        let help = exit_codes_help();
        assert_eq!(help.lines().count(), EXIT_CODES.len() + 1);
        assert!(
            help.contains("\n   5  pgpost: no backup in progress"),
            "{help}"
        );
        assert!(help.contains("\n  70  internal error\n"), "{help}");
        assert!(!help.contains('`'), "{help}");
    }
}
