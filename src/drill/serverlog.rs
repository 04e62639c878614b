//! Reading the throwaway server's log (`lc_messages = C`): when it is ready, where it became
//! consistent, and why recovery failed (which WAL was missing), as pure functions.

use super::label::{BackupLabel, Lsn};

/// What a successful recovery wrote into the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryFacts {
    /// `consistent recovery state reached at X/Y`.
    pub consistent_at: Option<Lsn>,
    /// `selected new timeline ID: N` (the promotion).
    pub new_timeline: Option<u32>,
}

/// The message of a log line after its level, e.g. `LOG:  redo starts at 0/2000028`.
fn message<'a>(line: &'a str, level: &str) -> Option<&'a str> {
    let marker = format!("{level}:  ");
    line.find(&marker).map(|at| &line[at + marker.len()..])
}

/// The postmaster has finished recovery and promotion and accepts connections.
pub fn is_ready(log: &str) -> bool {
    log.lines().any(|line| {
        message(line, "LOG")
            .is_some_and(|m| m.starts_with("database system is ready to accept connections"))
    })
}

/// The consistent LSN and the new timeline, from a recovery that finished.
pub fn recovery_facts(log: &str) -> RecoveryFacts {
    let mut facts = RecoveryFacts::default();
    for line in log.lines() {
        let Some(m) = message(line, "LOG") else {
            continue;
        };
        if let Some(rest) = m.strip_prefix("consistent recovery state reached at ") {
            facts.consistent_at = Lsn::find_all(rest).first().copied();
        } else if let Some(rest) = m.strip_prefix("selected new timeline ID: ") {
            facts.new_timeline = rest.trim().parse().ok();
        }
    }
    facts
}

/// Why the server did not get to consistency, read from its log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryFailure {
    /// Replay ran out of WAL before the end of the backup.
    MissingWal {
        /// The server's FATAL message.
        fatal: String,
        /// The segment that is missing or incomplete.
        segment: String,
        /// Where the WAL ended, when the log says.
        wal_end: Option<Lsn>,
    },
    /// Anything else: the FATAL or PANIC message (with its HINT), or the last lines.
    Other {
        /// The server's own words.
        fatal: String,
    },
}

/// FATAL messages that mean "the WAL needed to reach consistency is not there".
const MISSING_WAL: [&str; 6] = [
    "WAL ends before end of online backup",
    "WAL ends before consistent recovery point",
    "recovery ended before configured recovery target was reached",
    "could not locate required checkpoint record",
    "could not find redo location referenced by checkpoint record",
    "requested recovery stop point is before consistent recovery point",
];

/// LOG messages with which the WAL reader says where the WAL ended.
const WAL_END: [&str; 10] = [
    "invalid record length",
    "incorrect prev-link",
    "invalid magic number",
    "unexpected pageaddr",
    "invalid resource manager ID",
    "too long",
    "incorrect resource manager data checksum",
    "contrecord",
    "invalid info bits",
    "out-of-sequence timeline",
];

/// FATALs a backend writes for a client, which are not about recovery.
const CLIENT_FATALS: [&str; 3] = [
    "the database system is",
    "terminating connection",
    "role \"",
];

/// Explains a server that exited before it was ready: the first FATAL or PANIC of recovery,
/// and for missing WAL the segment, from the WAL reader's last complaint (or the backup's
/// checkpoint when even that could not be found).
pub fn recovery_failure(log: &str, label: &BackupLabel) -> RecoveryFailure {
    let lines: Vec<&str> = log.lines().collect();
    let fatal_at = lines.iter().position(|line| {
        ["FATAL", "PANIC"].iter().any(|level| {
            message(line, level).is_some_and(|m| !CLIENT_FATALS.iter().any(|c| m.starts_with(c)))
        })
    });
    let Some(fatal_at) = fatal_at else {
        let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
        return RecoveryFailure::Other {
            fatal: if tail.is_empty() {
                "the server exited without writing a log".to_string()
            } else {
                format!("the server exited; its log ends: {tail}")
            },
        };
    };
    let fatal_line = lines[fatal_at];
    let fatal = message(fatal_line, "FATAL")
        .or_else(|| message(fatal_line, "PANIC"))
        .unwrap_or(fatal_line)
        .trim()
        .to_string();
    let hint = lines
        .get(fatal_at + 1)
        .and_then(|line| message(line, "HINT"))
        .map(|hint| format!(" ({})", hint.trim()))
        .unwrap_or_default();
    if !MISSING_WAL.iter().any(|m| fatal.starts_with(m)) {
        return RecoveryFailure::Other {
            fatal: format!("{fatal}{hint}"),
        };
    }
    let wal_end_line = lines[..fatal_at].iter().rev().find_map(|line| {
        message(line, "LOG").filter(|m| WAL_END.iter().any(|needle| m.contains(needle)))
    });
    let (segment, wal_end) = match wal_end_line {
        Some(m) => {
            let named = m
                .split(|c: char| !c.is_ascii_hexdigit())
                .find(|word| word.len() == 24)
                .map(str::to_string);
            let lsn = Lsn::find_all(m).last().copied();
            let segment = named
                .or_else(|| lsn.map(|lsn| label.segment_name(lsn)))
                .unwrap_or_else(|| label.start_file.clone());
            (segment, lsn)
        }
        None if fatal.contains("checkpoint") => (label.segment_name(label.checkpoint), None),
        None => (label.start_file.clone(), None),
    };
    RecoveryFailure::MissingWal {
        fatal: format!("{fatal}{hint}"),
        segment,
        wal_end,
    }
}

/// The last `count` lines of the log that say something (for reports of failures).
pub fn tail(log: &str, count: usize) -> Vec<String> {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(count)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label() -> BackupLabel {
        BackupLabel::parse(
            "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
             CHECKPOINT LOCATION: 0/2000060\n",
        )
        .unwrap()
    }

    const EMPTY_ARCHIVE_15: &str = "\
2026-11-21 20:28:40.519 UTC [31201] LOG:  starting backup recovery with redo LSN 0/2000028, checkpoint LSN 0/2000060, on timeline ID 1
cp: cannot stat '/tmp/drx/empty/000000010000000000000002': No such file or directory
2026-11-21 20:28:40.542 UTC [31201] LOG:  redo starts at 0/2000028
2026-11-21 20:28:40.542 UTC [31201] LOG:  invalid record length at 0/20000D8: wanted 24, got 0
2026-11-21 20:28:40.542 UTC [31201] LOG:  redo done at 0/2000060 system usage: CPU: user: 0.00 s
2026-11-21 20:28:40.542 UTC [31201] FATAL:  recovery ended before configured recovery target was reached
2026-11-21 20:28:40.546 UTC [31155] LOG:  startup process (PID 31201) exited with exit code 1
";

    #[test]
    fn missing_wal_names_the_segment_where_the_wal_ended() {
        assert_eq!(
            recovery_failure(EMPTY_ARCHIVE_15, &label()),
            RecoveryFailure::MissingWal {
                fatal: "recovery ended before configured recovery target was reached".into(),
                segment: "000000010000000000000002".into(),
                wal_end: Some(Lsn(0x20000D8)),
            }
        );
        let pg10 = "\
x [4473] LOG:  invalid record length at 0/30000D0: wanted 24, got 0
x [4473] LOG:  redo done at 0/2000060
x [4473] FATAL:  WAL ends before end of online backup
x [4473] HINT:  All WAL generated while online backup was taken must be available at recovery.
";
        let RecoveryFailure::MissingWal { fatal, segment, .. } = recovery_failure(pg10, &label())
        else {
            panic!("not missing WAL");
        };
        assert_eq!(segment, "000000010000000000000003");
        assert!(
            fatal.ends_with("must be available at recovery.)"),
            "{fatal}"
        );
    }

    #[test]
    fn a_segment_named_by_the_reader_wins_and_a_missing_checkpoint_names_its_segment() {
        let log = "x LOG:  invalid magic number 0000 in WAL segment 000000010000000000000005, LSN 0/5000000, offset 0\n\
                   x FATAL:  WAL ends before end of online backup\n";
        let RecoveryFailure::MissingWal { segment, .. } = recovery_failure(log, &label()) else {
            panic!("not missing WAL");
        };
        assert_eq!(segment, "000000010000000000000005");
        let log = "x FATAL:  could not locate required checkpoint record\n";
        let RecoveryFailure::MissingWal { segment, .. } = recovery_failure(log, &label()) else {
            panic!("not missing WAL");
        };
        assert_eq!(segment, "000000010000000000000002");
    }

    #[test]
    fn other_failures_and_client_fatals() {
        let log = "x FATAL:  the database system is starting up\n\
                   x FATAL:  could not load library \"/x/timescaledb.so\"\n";
        assert_eq!(
            recovery_failure(log, &label()),
            RecoveryFailure::Other {
                fatal: "could not load library \"/x/timescaledb.so\"".into()
            }
        );
        let RecoveryFailure::Other { fatal } = recovery_failure("", &label()) else {
            panic!("no log is not missing WAL");
        };
        assert!(fatal.contains("without writing a log"));
    }

    #[test]
    fn ready_and_facts() {
        let log = "\
x [1] LOG:  consistent recovery state reached at 0/20010D0
x [1] LOG:  selected new timeline ID: 2
x [2] LOG:  database system is ready to accept connections
";
        assert!(is_ready(log));
        assert!(!is_ready(
            "x LOG:  database system is ready to accept read-only connections\n"
        ));
        assert_eq!(
            recovery_facts(log),
            RecoveryFacts {
                consistent_at: Some(Lsn(0x20010D0)),
                new_timeline: Some(2),
            }
        );
        assert_eq!(tail("a\n\nb\nc\n", 2), vec!["b", "c"]);
    }
}
