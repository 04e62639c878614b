//! Why a key could not be used or a file could not be encrypted or decrypted: [`CryptError`].

use std::path::PathBuf;

use crate::exit::{ExitStatus, Failure};
use crate::glob::GlobError;
use crate::secret::SecretError;

/// A key could not be used, or a file could not be encrypted or decrypted. No variant holds a
/// passphrase or a private key.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    /// An empty passphrase.
    #[error("the encryption passphrase is empty")]
    EmptyPassphrase,
    /// No public key was given.
    #[error("no age recipient (public key) given")]
    NoRecipient,
    /// A public key that does not parse.
    #[error("recipient {position}{} is not an age public key: {reason}", shown.as_deref().unwrap_or(""))]
    BadRecipient {
        /// Its position in the list, from 1.
        position: usize,
        /// The value, quoted, when it looks like a public key (never a private one).
        shown: Option<String>,
        /// What is wrong with it.
        reason: String,
    },
    /// A line of an identity file that is not an identity.
    #[error("{}: line {line} is not an age identity (AGE-SECRET-KEY-1...)", origin.display())]
    BadIdentity {
        /// The file (or configuration key) the identities came from.
        origin: PathBuf,
        /// The line, from 1.
        line: usize,
    },
    /// An identity file without identities.
    #[error("{} holds no age identity (AGE-SECRET-KEY-1...)", origin.display())]
    NoIdentity {
        /// The file (or configuration key).
        origin: PathBuf,
    },
    /// Reading a key file failed, or it is readable by others.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The passphrase does not open the file.
    #[error("cannot decrypt {}: wrong passphrase", path.display())]
    WrongPassphrase {
        /// The `.age` file.
        path: PathBuf,
    },
    /// None of the identities is one of the file's recipients.
    #[error("cannot decrypt {}: it was encrypted to other keys than the identities given", path.display())]
    WrongKey {
        /// The `.age` file.
        path: PathBuf,
    },
    /// A passphrase-encrypted file and identities to decrypt it.
    #[error("cannot decrypt {}: it was encrypted with a passphrase, not to a public key", path.display())]
    NeedsPassphrase {
        /// The `.age` file.
        path: PathBuf,
    },
    /// A file encrypted to public keys and a passphrase to decrypt it.
    #[error("cannot decrypt {}: it was encrypted to public keys, not with a passphrase", path.display())]
    NeedsIdentity {
        /// The `.age` file.
        path: PathBuf,
    },
    /// Not an age file (or a version this library does not know).
    #[error("cannot decrypt {}: not an age file, or its header is damaged", path.display())]
    NotAge {
        /// The file.
        path: PathBuf,
    },
    /// Authentication failed: the file was cut short or modified.
    #[error("cannot decrypt {}: the file is truncated or was modified ({detail})", path.display())]
    Damaged {
        /// The `.age` file.
        path: PathBuf,
        /// What age noticed.
        detail: String,
    },
    /// A passphrase file whose scrypt cost is above what we accept.
    #[error("cannot decrypt {}: its passphrase work factor 2^{required} is above the limit 2^{limit}", path.display())]
    ExcessiveWork {
        /// The `.age` file.
        path: PathBuf,
        /// Its work factor.
        required: u8,
        /// [`keys::SCRYPT_MAX_WORK_FACTOR`].
        limit: u8,
    },
    /// A name that does not end in `.age` was given to decrypt.
    #[error("cannot decrypt {}: its name does not end in .age", path.display())]
    NotAgeName {
        /// The file.
        path: PathBuf,
    },
    /// A `--decrypt` glob that does not parse.
    #[error(transparent)]
    BadGlob(#[from] GlobError),
    /// Reading a file or directory failed.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing, renaming or removing a file failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Failure for CryptError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            CryptError::EmptyPassphrase
            | CryptError::NoRecipient
            | CryptError::BadRecipient { .. }
            | CryptError::BadIdentity { .. }
            | CryptError::NoIdentity { .. }
            | CryptError::NotAgeName { .. } => ExitStatus::Usage,
            CryptError::Secret(e) => e.exit_status(),
            CryptError::BadGlob(e) => e.exit_status(),
            CryptError::Write { .. } => ExitStatus::Output,
            _ => ExitStatus::BackupFailed,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            CryptError::Secret(e) => e.hint(),
            CryptError::BadGlob(e) => e.hint(),
            CryptError::EmptyPassphrase => {
                Some("set the passphrase in PGBK_CIPHER_PASS (or cipher_pass in the configuration file)".into())
            }
            CryptError::BadRecipient { .. } | CryptError::NoRecipient => Some(
                "a recipient is an age public key (age1...), as age-keygen prints it".into(),
            ),
            CryptError::WrongPassphrase { .. } | CryptError::NeedsPassphrase { .. } => {
                Some("give the passphrase the files were encrypted with in PGBK_CIPHER_PASS".into())
            }
            CryptError::WrongKey { .. } | CryptError::NeedsIdentity { .. } => Some(
                "give the identity file (AGE-SECRET-KEY-1...) whose public key the files were encrypted to"
                    .into(),
            ),
            CryptError::Damaged { .. } => Some(
                "check it against its .age.<algo> checksum file (sha256sum -c), and copy or \
                 download it again"
                    .into(),
            ),
            _ => None,
        }
    }
}
