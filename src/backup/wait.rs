//! Waiting on the state table: what wakes a wait loop (a NOTIFY, a notice, a closed session),
//! the slow re-read of the row, and deadlines.
//!
//! The co-process's wait for `done` ([`super::hold`]) and pgpost's wait for the outcome
//! ([`super::post`]) are generic over [`Watch`], so their unit tests run them against a script
//! under a paused clock instead of a server.

use tokio::time::{sleep_until, Instant};
use tokio_postgres::Client;

use super::table::{self, BackupRow, ReadError, StateTable};
use crate::conn::{Session, SessionEvent};

/// What woke a wait loop.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Wake {
    /// A NOTIFY on the table's channel: the row may have changed.
    Changed,
    /// A notice from the server, worth a log line.
    Notice(String),
    /// The session ended, with the error text if it ended in one.
    Closed(Option<String>),
}

/// Where a wait loop's wake-ups and rows come from: a [`Session`] on the state table in
/// production ([`SessionWatch`]), a script in tests.
pub(crate) trait Watch {
    /// The next wake-up. Cancel-safe: a wake-up is never lost to a `select!`.
    async fn wake(&mut self) -> Wake;
    /// Reads the row again.
    async fn read_row(&mut self) -> Result<Option<BackupRow>, ReadError>;
    /// Why a stop is still waiting: the archiver's last failure, if it is failing.
    async fn archive_status(&mut self) -> String;
}

/// A [`Watch`] over a session that `LISTEN`s on the table's channel.
pub(crate) struct SessionWatch<'a> {
    /// The session: its events and its client.
    pub session: &'a mut Session,
    /// The table and row it reads.
    pub table: &'a StateTable,
}

impl Watch for SessionWatch<'_> {
    async fn wake(&mut self) -> Wake {
        match self.session.events.recv().await {
            Some(SessionEvent::Notification(_)) => Wake::Changed,
            Some(SessionEvent::Notice(notice)) => Wake::Notice(notice.message().to_string()),
            Some(SessionEvent::Closed(reason)) => Wake::Closed(reason),
            None => Wake::Closed(None),
        }
    }

    async fn read_row(&mut self) -> Result<Option<BackupRow>, ReadError> {
        table::read_row(&self.session.client, self.table).await
    }

    async fn archive_status(&mut self) -> String {
        archive_wait_message(&self.session.client).await
    }
}

/// Sleeps until `deadline`, or forever without one.
pub(crate) async fn sleep_until_option(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn archive_wait_message(client: &Client) -> String {
    let failure = client
        .query_opt(
            "SELECT last_failed_wal, last_failed_time::text AS last_failed_time \
             FROM pg_stat_archiver \
             WHERE last_failed_time IS NOT NULL \
               AND last_failed_time > coalesce(last_archived_time, '-infinity')",
            &[],
        )
        .await;
    match failure {
        Ok(Some(row)) => {
            let text = |column| {
                row.try_get::<_, Option<String>>(column)
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            };
            format!(
                "waiting for WAL archiving: the archiver is failing (last failure: {} at {})",
                text("last_failed_wal"),
                text("last_failed_time")
            )
        }
        _ => "waiting for WAL archiving to finish".to_string(),
    }
}

/// A scripted [`Watch`] for the wait loops' unit tests (run under `tokio::time::pause()`).
#[cfg(test)]
pub(crate) mod script {
    use std::collections::VecDeque;
    use std::time::Duration;

    use tokio::time::{sleep, sleep_until, Instant};

    use super::{Wake, Watch};
    use crate::backup::table::{BackupRow, BackupState, InvalidRow, ReadError, RowProblem};

    /// What a read returns from some time on.
    #[allow(clippy::large_enum_variant)] // A handful per test.
    #[derive(Clone, Debug)]
    pub(crate) enum Step {
        /// This row (none: deleted).
        Row(Option<BackupRow>),
        /// A row that does not decode.
        Invalid(RowProblem),
    }

    /// Rows by time, wake-ups at given times, and a log of when reads started.
    pub(crate) struct Script {
        start: Instant,
        steps: Vec<(Duration, Step)>,
        wakes: VecDeque<(Duration, Wake)>,
        read_takes: Duration,
        /// When each read started, from the script's start.
        pub reads: Vec<Duration>,
    }

    /// A row of the holder with pid 42, in `state`.
    pub(crate) fn row(state: BackupState) -> BackupRow {
        BackupRow {
            name: "default".into(),
            state,
            pid: Some(42),
            backend_start: Some("2024-01-01 00:00:00+00".into()),
            label: Some("scripted".into()),
            start_lsn: Some("0/2000028".into()),
            stop_lsn: None,
            started_at: None,
            finished_at: None,
            backup_label: None,
            tablespace_map: None,
            error: None,
            wal_archived: None,
            holder_alive: true,
            holder_query: None,
        }
    }

    impl Script {
        /// Reads return `first` until a later step applies.
        pub(crate) fn new(first: BackupRow) -> Script {
            Script {
                start: Instant::now(),
                steps: vec![(Duration::ZERO, Step::Row(Some(first)))],
                wakes: VecDeque::new(),
                read_takes: Duration::ZERO,
                reads: Vec::new(),
            }
        }

        /// From `secs` on, reads return `step`.
        pub(crate) fn then(mut self, secs: u64, step: Step) -> Script {
            self.steps.push((Duration::from_secs(secs), step));
            self
        }

        /// A NOTIFY arrives at `secs`.
        pub(crate) fn notify_at(mut self, secs: u64) -> Script {
            self.wakes
                .push_back((Duration::from_secs(secs), Wake::Changed));
            self
        }

        /// Every read takes `secs`.
        pub(crate) fn reads_take(mut self, secs: u64) -> Script {
            self.read_takes = Duration::from_secs(secs);
            self
        }

        /// Time since the script started.
        pub(crate) fn elapsed(&self) -> Duration {
            self.start.elapsed()
        }

        /// Read start times in whole seconds.
        pub(crate) fn read_secs(&self) -> Vec<u64> {
            self.reads.iter().map(Duration::as_secs).collect()
        }
    }

    impl Watch for Script {
        async fn wake(&mut self) -> Wake {
            let Some((at, _)) = self.wakes.front() else {
                return std::future::pending().await;
            };
            sleep_until(self.start + *at).await;
            self.wakes
                .pop_front()
                .map_or(Wake::Changed, |(_, wake)| wake)
        }

        async fn read_row(&mut self) -> Result<Option<BackupRow>, ReadError> {
            let now = self.elapsed();
            self.reads.push(now);
            let step = self
                .steps
                .iter()
                .rev()
                .find(|(from, _)| *from <= now)
                .map(|(_, step)| step.clone());
            sleep(self.read_takes).await;
            match step {
                Some(Step::Row(row)) => Ok(row),
                Some(Step::Invalid(problem)) => Err(ReadError::Invalid(InvalidRow {
                    table: "backup".into(),
                    name: "default".into(),
                    problem,
                })),
                None => Ok(None),
            }
        }

        async fn archive_status(&mut self) -> String {
            "waiting for WAL archiving to finish".into()
        }
    }
}
