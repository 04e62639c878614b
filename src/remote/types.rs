//! What the backends share: transfer tuning, remote entries, finished uploads, a backend's
//! failure before the store names the file ([`Fault`]), and retry backoff.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::error::CauseKind;

/// How transfers are cut up and retried. The defaults suit real clouds; tests make parts small
/// and retries short.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// Bytes per multipart part (S3, B2), block (Azure), chunk (GCS, a multiple of 256 KiB) or
    /// SFTP read/write buffer. Memory per upload is at most `part_size * (part_concurrency + 1)`
    /// (15 MiB with the defaults: 5 MiB is S3's smallest part and 20 GCS granules). S3 and B2
    /// grow it for files over 9,000 parts (45 GiB), as S3 allows 10,000 parts per object.
    pub part_size: usize,
    /// Parts of one file in flight at once (B2: `b2_concurrent_connections`).
    pub part_concurrency: usize,
    /// Retries of one failed request (a part, a chunk) or SFTP transfer, with backoff.
    pub max_retries: usize,
    /// First backoff; doubled on each retry up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
    /// No retry starts later than this after the first attempt of a request.
    pub retry_timeout: Duration,
    /// Limit for establishing a connection (TCP, TLS, SSH handshake and login).
    pub connect_timeout: Duration,
    /// Limit for one request (a part going up, a listing page).
    pub request_timeout: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            part_size: 5 * 1024 * 1024,
            part_concurrency: 2,
            max_retries: 5,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(15),
            retry_timeout: Duration::from_secs(180),
            connect_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(300),
        }
    }
}

/// One remote file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteEntry {
    /// Its name relative to the upload prefix (the local path relative to the backup directory).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was last written, as the store reports it.
    pub modified: DateTime<Utc>,
}

/// A finished upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploaded {
    /// Bytes sent.
    pub bytes: u64,
    /// The remote name, with the prefix (for messages).
    pub location: String,
}

/// A backend's failure before [`super::RemoteStore`] names the file and scrubs it.
#[derive(Debug)]
pub(crate) struct Fault {
    pub(crate) kind: CauseKind,
    pub(crate) text: String,
    pub(crate) hint: Option<String>,
}

impl Fault {
    pub(crate) fn new(kind: CauseKind, text: impl std::fmt::Display) -> Fault {
        Fault {
            kind,
            text: text.to_string(),
            hint: None,
        }
    }

    pub(crate) fn local(what: &str, path: &Path, e: std::io::Error) -> Fault {
        Fault::new(
            CauseKind::LocalFile,
            format!("{what} {}: {e}", path.display()),
        )
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Fault {
        self.hint = Some(hint.into());
        self
    }
}

/// Delays between retries: doubling from [`Tuning::initial_backoff`] up to
/// [`Tuning::max_backoff`], at most [`Tuning::max_retries`] of them, none starting after
/// [`Tuning::retry_timeout`].
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
    left: usize,
    deadline: std::time::Instant,
}

impl Backoff {
    pub(crate) fn new(tuning: &Tuning) -> Backoff {
        Backoff {
            next: tuning.initial_backoff,
            max: tuning.max_backoff,
            left: tuning.max_retries,
            deadline: std::time::Instant::now() + tuning.retry_timeout,
        }
    }

    /// Sleeps before the next attempt; `false` when no attempt is left.
    pub(crate) async fn wait(&mut self) -> bool {
        if self.left == 0 || std::time::Instant::now() + self.next > self.deadline {
            return false;
        }
        self.left -= 1;
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.max);
        true
    }
}
