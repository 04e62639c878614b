//! Typed remote-storage errors: each names the operation, the local file and the remote
//! location, and carries the cause as text that has been scrubbed of every secret the store
//! knows (no `source()` chain leads back to an unscrubbed library error).

use std::fmt;
use std::path::PathBuf;

use crate::config::StoreKind;
use crate::exit::{ExitStatus, Failure};
use crate::secret::{Secret, SecretError};

/// What kind of failure a [`Cause`] is, for exit codes and hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CauseKind {
    /// Nothing answered, or the connection broke.
    Unreachable,
    /// The server refused the credentials or the access.
    Refused,
    /// The remote object or directory does not exist.
    NotFound,
    /// Reading or writing the local file failed.
    LocalFile,
    /// The SSH host key is not in `known_hosts`.
    UnknownHost,
    /// The SSH host key differs from the one in `known_hosts`.
    HostKeyChanged,
    /// The server answered with an error.
    Server,
}

/// Why an operation failed: scrubbed, one-line text, and what the user can do about it.
#[derive(Debug, Clone)]
pub struct Cause {
    /// The kind of failure.
    pub kind: CauseKind,
    /// The message, free of secrets.
    pub text: String,
    /// A `hint:` line, when the user can act.
    pub hint: Option<String>,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A remote storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The settings for the store are incomplete or contradictory.
    #[error("{store}: {problem}")]
    Settings {
        /// The store being set up.
        store: StoreKind,
        /// What is wrong, naming the key.
        problem: String,
        /// Where to fix it.
        hint: Option<String>,
    },
    /// A secret could not be read (unreadable or exposed key file, non-UTF-8 variable).
    #[error("{store}: {source}")]
    Secret {
        /// The store being set up.
        store: StoreKind,
        /// Why.
        #[source]
        source: SecretError,
    },
    /// Connecting or logging in failed.
    #[error("connecting to {location} failed: {cause}")]
    Connect {
        /// The server, e.g. `sftp://backup@host:22`.
        location: String,
        /// Why.
        cause: Cause,
    },
    /// A file did not reach the store.
    #[error("upload of {} to {location} failed: {cause}", file.display())]
    Upload {
        /// The local file.
        file: PathBuf,
        /// Where it was going, e.g. `s3://bucket/prefix/db_2024.dump`.
        location: String,
        /// Why.
        cause: Cause,
    },
    /// A remote file could not be fetched.
    #[error("download of {location} into {} failed: {cause}", file.display())]
    Download {
        /// The remote file.
        location: String,
        /// The local file it was going to.
        file: PathBuf,
        /// Why.
        cause: Cause,
    },
    /// The store could not be listed.
    #[error("listing {location} failed: {cause}")]
    List {
        /// What was listed.
        location: String,
        /// Why.
        cause: Cause,
    },
    /// A remote file could not be removed.
    #[error("deleting {location} failed: {cause}")]
    Delete {
        /// The remote file.
        location: String,
        /// Why.
        cause: Cause,
    },
    /// A remote name that cannot be used (absolute, `..`, empty segments, control characters).
    #[error("invalid remote name {key:?}: {problem}")]
    Key {
        /// The name given.
        key: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

impl RemoteError {
    /// The cause of a failed operation, if this is one.
    pub fn cause(&self) -> Option<&Cause> {
        match self {
            RemoteError::Connect { cause, .. }
            | RemoteError::Upload { cause, .. }
            | RemoteError::Download { cause, .. }
            | RemoteError::List { cause, .. }
            | RemoteError::Delete { cause, .. } => Some(cause),
            _ => None,
        }
    }
}

impl Failure for RemoteError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            RemoteError::Settings { .. } | RemoteError::Secret { .. } | RemoteError::Key { .. } => {
                ExitStatus::Usage
            }
            // A run whose files did not leave the machine has failed.
            _ => ExitStatus::BackupFailed,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            RemoteError::Settings { hint, .. } => hint.clone(),
            RemoteError::Secret { source, .. } => source.hint(),
            _ => self.cause().and_then(|c| c.hint.clone()),
        }
    }
}

/// Replaces every known secret in library error text, so that nothing the store was given can
/// reach a message, and keeps the text on one line of bounded length.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<Secret>,
}

/// Longest cause text kept (server error bodies can be long XML).
const CAUSE_LIMIT: usize = 600;

impl Redactor {
    /// Remembers `secret` for scrubbing. Very short values are skipped: they would blank out
    /// ordinary words, and no real secret is that short.
    pub fn add(&mut self, secret: &Secret) {
        if secret.expose().len() >= 4 {
            self.secrets.push(secret.clone());
        }
    }

    /// `text` with every secret replaced by `[redacted]`, on one line, at most
    /// [`CAUSE_LIMIT`] characters.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for secret in &self.secrets {
            out = out.replace(secret.expose(), "[redacted]");
            // Percent-encoded in URLs (SAS tokens, passwords in user info).
            let encoded = percent_encoding::utf8_percent_encode(
                secret.expose(),
                percent_encoding::NON_ALPHANUMERIC,
            )
            .to_string();
            out = out.replace(&encoded, "[redacted]");
        }
        if out.chars().count() > CAUSE_LIMIT {
            out = out.chars().take(CAUSE_LIMIT).collect::<String>() + "...";
        }
        out
    }

    /// A [`Cause`] from library error text.
    pub fn cause(&self, kind: CauseKind, text: &dyn fmt::Display, hint: Option<String>) -> Cause {
        Cause {
            kind,
            text: self.scrub(&text.to_string()),
            hint,
        }
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_plain_and_encoded_secrets() {
        let mut redactor = Redactor::default();
        redactor.add(&Secret::new("s3cr/t+key==".into()));
        redactor.add(&Secret::new("ab".into()));
        let text = "GET http://h/?sig=s3cr%2Ft%2Bkey%3D%3D failed\nkey s3cr/t+key== ab";
        let out = redactor.scrub(text);
        assert!(!out.contains("s3cr"), "{out}");
        assert!(!out.contains('\n'));
        assert!(out.ends_with("[redacted] ab"), "{out}");
    }

    #[test]
    fn long_causes_are_cut() {
        let out = Redactor::default().scrub(&"x".repeat(5000));
        assert_eq!(out.chars().count(), CAUSE_LIMIT + 3);
    }
}
