//! The keys of `--encrypt` and `--decrypt`: a passphrase (age's scrypt recipient) or X25519
//! recipients `age1...` to encrypt; the passphrase or `AGE-SECRET-KEY-1...` identities to decrypt.

use std::fmt;
use std::path::{Path, PathBuf};

use age::secrecy::SecretString;

use super::error::CryptError;
use crate::secret::Secret;

/// scrypt's work factor `log2(N)` for passphrase encryption: age's and pg_back's (Go age)
/// default, about 0.5-1 s and 256 MiB per file. Fixed rather than calibrated to the machine (as
/// rage does), so that cost and memory are known in advance.
pub const SCRYPT_WORK_FACTOR: u8 = 18;

/// The highest scrypt work factor accepted when decrypting: the age CLI's limit (2^22 takes
/// about 4 GiB and 15 s), which bounds what a hostile file can make us spend.
pub const SCRYPT_MAX_WORK_FACTOR: u8 = 22;

/// An X25519 public key (`age1...`). age 0.13 deprecates X25519 in favour of post-quantum
/// keys, but pg_back writes and reads X25519 keys, so they stay: this is the one allowed name.
#[allow(deprecated)]
pub type X25519Recipient = age::x25519::Recipient;

/// What files are encrypted with.
#[derive(Clone)]
pub enum EncryptKey {
    /// A passphrase (`PGBK_CIPHER_PASS`, `cipher_pass`), stretched with scrypt for each file.
    Passphrase(Secret),
    /// One or more X25519 public keys (`cipher_public_key`); any matching identity decrypts.
    Recipients(Vec<X25519Recipient>),
}

impl fmt::Debug for EncryptKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncryptKey::Passphrase(_) => f.write_str("Passphrase([redacted])"),
            EncryptKey::Recipients(list) => f.debug_tuple("Recipients").field(list).finish(),
        }
    }
}

impl EncryptKey {
    /// Encrypts with a passphrase; an empty one is refused.
    pub fn passphrase(passphrase: Secret) -> Result<EncryptKey, CryptError> {
        if passphrase.is_empty() {
            return Err(CryptError::EmptyPassphrase);
        }
        Ok(EncryptKey::Passphrase(passphrase))
    }

    /// Encrypts to public keys, each `age1...` as `age-keygen` prints it (surrounding blanks
    /// ignored). At least one is needed.
    pub fn recipients<S: AsRef<str>>(keys: &[S]) -> Result<EncryptKey, CryptError> {
        let mut recipients = Vec::with_capacity(keys.len());
        for (index, key) in keys.iter().enumerate() {
            let key = key.as_ref().trim();
            let recipient = key.parse::<X25519Recipient>().map_err(|reason| {
                CryptError::BadRecipient {
                    position: index + 1,
                    // Only what looks like a public key is shown: a private key pasted in the
                    // wrong place must not reach the error.
                    shown: key.starts_with("age1").then(|| format!(" {key:?}")),
                    reason: reason.to_string(),
                }
            })?;
            recipients.push(recipient);
        }
        if recipients.is_empty() {
            return Err(CryptError::NoRecipient);
        }
        Ok(EncryptKey::Recipients(recipients))
    }

    /// [`EncryptKey::recipients`] from one string holding keys separated by commas or blanks
    /// (`cipher_public_key = "age1..., age1..."`).
    pub fn parse_recipients(text: &str) -> Result<EncryptKey, CryptError> {
        let keys: Vec<&str> = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|k| !k.is_empty())
            .collect();
        EncryptKey::recipients(&keys)
    }

    /// A fresh age encryptor (a new file key). With a passphrase this runs scrypt: call it
    /// off the async runtime.
    pub(crate) fn encryptor(&self) -> Result<age::Encryptor, age::EncryptError> {
        match self {
            EncryptKey::Passphrase(passphrase) => {
                let mut recipient =
                    age::scrypt::Recipient::new(SecretString::from(passphrase.expose().to_owned()));
                recipient.set_work_factor(SCRYPT_WORK_FACTOR);
                age::Encryptor::with_recipients(std::iter::once(&recipient as _))
            }
            EncryptKey::Recipients(recipients) => {
                age::Encryptor::with_recipients(recipients.iter().map(|r| r as _))
            }
        }
    }
}

/// What files are decrypted with. Built once, shared by the decrypting threads.
pub enum DecryptKey {
    /// The passphrase the files were encrypted with.
    Passphrase(age::scrypt::Identity),
    /// X25519 identities; a file decrypts when one of them matches one of its recipients.
    Identities(Vec<age::x25519::Identity>),
}

impl fmt::Debug for DecryptKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecryptKey::Passphrase(_) => f.write_str("Passphrase([redacted])"),
            DecryptKey::Identities(list) => write!(f, "Identities({} [redacted])", list.len()),
        }
    }
}

impl DecryptKey {
    /// Decrypts with a passphrase; an empty one is refused.
    pub fn passphrase(passphrase: &Secret) -> Result<DecryptKey, CryptError> {
        if passphrase.is_empty() {
            return Err(CryptError::EmptyPassphrase);
        }
        let mut identity =
            age::scrypt::Identity::new(SecretString::from(passphrase.expose().to_owned()));
        identity.set_max_work_factor(SCRYPT_MAX_WORK_FACTOR);
        Ok(DecryptKey::Passphrase(identity))
    }

    /// Reads identities from a file `age-keygen` wrote (`AGE-SECRET-KEY-1...` lines, `#`
    /// comments, blank lines). The file must not be accessible by group or others.
    pub fn from_identity_file(path: &Path) -> Result<DecryptKey, CryptError> {
        let text = Secret::from_key_file(path)?;
        DecryptKey::from_identity_text(&text, path)
    }

    /// Parses identities held in memory (`cipher_private_key` in a configuration file that
    /// others cannot read); `origin` names where they came from in errors, which never show
    /// the text.
    pub fn from_identity_text(text: &Secret, origin: &Path) -> Result<DecryptKey, CryptError> {
        let mut identities = Vec::new();
        for (index, line) in text.expose().lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let identity =
                line.parse::<age::x25519::Identity>()
                    .map_err(|_| CryptError::BadIdentity {
                        origin: origin.to_path_buf(),
                        line: index + 1,
                    })?;
            identities.push(identity);
        }
        if identities.is_empty() {
            return Err(CryptError::NoIdentity {
                origin: origin.to_path_buf(),
            });
        }
        Ok(DecryptKey::Identities(identities))
    }

    /// The identities as age's decryptor takes them.
    pub(crate) fn identities(&self) -> Vec<&dyn age::Identity> {
        match self {
            DecryptKey::Passphrase(identity) => vec![identity as &dyn age::Identity],
            DecryptKey::Identities(list) => list.iter().map(|i| i as &dyn age::Identity).collect(),
        }
    }

    /// Whether this is a passphrase.
    pub(crate) fn is_passphrase(&self) -> bool {
        matches!(self, DecryptKey::Passphrase(_))
    }
}

/// The origin [`DecryptKey::from_identity_text`] names for a configuration key.
pub fn config_origin(config_file: &Path, key: &str) -> PathBuf {
    PathBuf::from(format!("{} ({key})", config_file.display()))
}

/// A new X25519 identity, as pg_back's users make them with age-keygen (tests only).
#[cfg(test)]
#[allow(deprecated)]
pub(crate) fn new_x25519_identity() -> age::x25519::Identity {
    age::x25519::Identity::generate()
}

#[cfg(test)]
mod tests {
    use super::*;

    use age::secrecy::ExposeSecret;

    /// A fresh identity and its public key, as text.
    fn key_pair() -> (String, String) {
        let identity = new_x25519_identity();
        let secret = identity.to_string().expose_secret().to_string();
        (secret, identity.to_public().to_string())
    }

    #[test]
    fn recipients_parse_and_name_the_bad_one() {
        let (identity, public) = key_pair();
        let key = EncryptKey::parse_recipients(&format!(" {public},\n{public} ")).unwrap();
        assert!(matches!(&key, EncryptKey::Recipients(list) if list.len() == 2));
        let error = EncryptKey::recipients(&["age1nope"]).unwrap_err();
        assert!(error.to_string().contains("\"age1nope\""), "{error}");
        assert!(matches!(
            EncryptKey::parse_recipients(" , ").unwrap_err(),
            CryptError::NoRecipient
        ));
        // A private key given as a public one is refused, and not echoed.
        let error = EncryptKey::recipients(&[&identity]).unwrap_err();
        assert!(!error.to_string().contains(&identity[20..]), "{error}");
    }

    #[test]
    fn empty_passphrases_are_refused() {
        assert!(matches!(
            EncryptKey::passphrase(Secret::default()).unwrap_err(),
            CryptError::EmptyPassphrase
        ));
        assert!(DecryptKey::passphrase(&Secret::default()).is_err());
        let key = EncryptKey::passphrase(Secret::new("pw".into())).unwrap();
        assert_eq!(format!("{key:?}"), "Passphrase([redacted])");
    }

    #[test]
    fn identity_text_with_comments() {
        let (identity, public) = key_pair();
        let text = Secret::new(format!(
            "# created: 2026-01-01\n# public key: {public}\n\n{identity}\n"
        ));
        let key = DecryptKey::from_identity_text(&text, Path::new("keys.txt")).unwrap();
        assert_eq!(format!("{key:?}"), "Identities(1 [redacted])");
        let bad = Secret::new(format!("{identity}\nAGE-SECRET-KEY-1SECRETBUTBROKEN\n"));
        let error = DecryptKey::from_identity_text(&bad, Path::new("keys.txt")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "keys.txt: line 2 is not an age identity (AGE-SECRET-KEY-1...)"
        );
        let none = Secret::new("# nothing\n".into());
        assert!(matches!(
            DecryptKey::from_identity_text(&none, Path::new("k")).unwrap_err(),
            CryptError::NoIdentity { .. }
        ));
        assert_eq!(
            config_origin(Path::new("/etc/c.toml"), "dump.cipher_private_key"),
            Path::new("/etc/c.toml (dump.cipher_private_key)")
        );
    }
}
