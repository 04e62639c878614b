//! Secrets (passphrases, private keys, passwords): a type that never prints its value and is
//! wiped from memory when dropped, read from environment variables or from files that no other
//! user can read, plus the rule that a configuration file holding one is not world-readable.

use std::fmt;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::exit::{ExitStatus, Failure};

/// A key or identity file larger than this is not one (and is not read into memory).
const KEY_FILE_LIMIT: u64 = 64 * 1024;

/// Permission bits a key file must not have: any access by group or others (as ssh and libpq's
/// `.pgpass` rule have it).
const KEY_FILE_FORBIDDEN: u32 = 0o077;

/// Permission bits a configuration file holding a secret must not have: read by others.
const CONFIG_FORBIDDEN: u32 = 0o004;

/// A secret value. `Debug` and `Display` print `[redacted]`; the bytes are zeroed on drop.
/// Reach the value only through [`Secret::expose`], so every use can be found with grep.
#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value (the `String` is moved, not copied).
    pub fn new(value: String) -> Secret {
        Secret(Zeroizing::new(value))
    }

    /// The value. Never format it into a message, a log line or an argument vector.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of the environment variable `var`; `None` when it is unset or empty (an empty
    /// passphrase or password is never meant).
    pub fn from_env(var: &str) -> Result<Option<Secret>, SecretError> {
        let Some(value) = std::env::var_os(var) else {
            return Ok(None);
        };
        let value = value.into_string().map_err(|raw| {
            drop(Zeroizing::new(raw.into_encoded_bytes()));
            SecretError::NotUnicode {
                var: var.to_string(),
            }
        })?;
        let secret = Secret::new(value);
        Ok((!secret.is_empty()).then_some(secret))
    }

    /// Reads a key or identity file, refusing one that group or others can access.
    pub fn from_key_file(path: &Path) -> Result<Secret, SecretError> {
        read_key_file(path)
    }
}

/// Equal values (for settings compared in tests; not constant-time).
impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.expose() == other.expose()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

/// Reading or checking a secret failed. No variant holds the secret itself.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable holds bytes that are not UTF-8.
    #[error("environment variable {var} is not valid UTF-8")]
    NotUnicode {
        /// The variable's name.
        var: String,
    },
    /// The file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A directory, a device or a pipe where a key file was expected.
    #[error("{} is not a regular file", path.display())]
    NotAFile {
        /// The path given.
        path: PathBuf,
    },
    /// Too large to be a key file.
    #[error("{} is larger than {KEY_FILE_LIMIT} bytes: not a key file", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Not text.
    #[error("{} is not a text file (UTF-8)", path.display())]
    NotText {
        /// The file.
        path: PathBuf,
    },
    /// A key file that group or others can access.
    #[error(
        "{} is accessible by group or others (mode {mode:04o}): a private key must be readable by its owner only",
        path.display()
    )]
    KeyFileExposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A configuration file that holds a secret and that others can read.
    #[error(
        "{} holds a secret ({key}) but is readable by others (mode {mode:04o})",
        path.display()
    )]
    ConfigExposed {
        /// The configuration file.
        path: PathBuf,
        /// The key holding the secret, e.g. `dump.cipher_pass`.
        key: String,
        /// Its permission bits.
        mode: u32,
    },
}

impl Failure for SecretError {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Usage
    }

    fn hint(&self) -> Option<String> {
        match self {
            SecretError::KeyFileExposed { path, .. } => Some(format!("chmod 600 {}", quote(path))),
            SecretError::ConfigExposed { path, .. } => Some(format!("chmod o-r {}", quote(path))),
            _ => None,
        }
    }
}

fn quote(path: &Path) -> String {
    shell_words::quote(&path.to_string_lossy()).into_owned()
}

/// The permission bits of `mode` that `forbidden` names, or `None` when there are none.
fn exposed(mode: u32, forbidden: u32) -> Option<u32> {
    (mode & forbidden != 0).then_some(mode & 0o7777)
}

/// Reads a key or identity file (an `AGE-SECRET-KEY-1...` identity, an SSH private key, a
/// service-account JSON). Refuses a file that group or others can access, checked on the opened
/// file so that it cannot be swapped between the check and the read.
pub fn read_key_file(path: &Path) -> Result<Secret, SecretError> {
    let read_error = |source| SecretError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(SecretError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    if let Some(mode) = exposed(meta.permissions().mode(), KEY_FILE_FORBIDDEN) {
        return Err(SecretError::KeyFileExposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.len() > KEY_FILE_LIMIT {
        return Err(SecretError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    // Capacity for the whole file up front, so that no reallocation leaves a copy behind.
    let mut bytes = Zeroizing::new(Vec::with_capacity(KEY_FILE_LIMIT as usize + 1));
    file.take(KEY_FILE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > KEY_FILE_LIMIT {
        return Err(SecretError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let bytes = std::mem::take(&mut *bytes);
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Secret::new(text)),
        Err(e) => {
            drop(Zeroizing::new(e.into_bytes()));
            Err(SecretError::NotText {
                path: path.to_path_buf(),
            })
        }
    }
}

/// Checks that the configuration file `path`, which holds the secret `key` (for example
/// `dump.cipher_pass`), is not readable by others.
pub fn check_config_file(path: &Path, key: &str) -> Result<(), SecretError> {
    let meta = std::fs::metadata(path).map_err(|source| SecretError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    check_config_mode(path, key, meta.permissions().mode())
}

/// [`check_config_file`] on permission bits already read (from the opened file's metadata).
pub fn check_config_mode(path: &Path, key: &str, mode: u32) -> Result<(), SecretError> {
    match exposed(mode, CONFIG_FORBIDDEN) {
        Some(mode) => Err(SecretError::ConfigExposed {
            path: path.to_path_buf(),
            key: key.to_string(),
            mode,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::report;

    fn file_with_mode(dir: &Path, name: &str, text: &[u8], mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn never_prints_the_value() {
        let secret = Secret::new("hunter2".into());
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some([redacted])");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn deserializes_from_toml_without_showing() {
        #[derive(serde::Deserialize, Debug)]
        struct Section {
            cipher_pass: Secret,
        }
        let section: Section = toml::from_str("cipher_pass = 's3cr3t'").unwrap();
        assert_eq!(section.cipher_pass.expose(), "s3cr3t");
        assert!(!format!("{section:?}").contains("s3cr3t"));
    }

    #[test]
    fn environment_unset_empty_set() {
        // Unique names: tests run in parallel within one process.
        std::env::set_var("SAFE_BACKUP_TEST_SECRET_SET", "pw word");
        std::env::set_var("SAFE_BACKUP_TEST_SECRET_EMPTY", "");
        let set = Secret::from_env("SAFE_BACKUP_TEST_SECRET_SET").unwrap();
        assert_eq!(set.unwrap().expose(), "pw word");
        assert!(Secret::from_env("SAFE_BACKUP_TEST_SECRET_EMPTY")
            .unwrap()
            .is_none());
        assert!(Secret::from_env("SAFE_BACKUP_TEST_SECRET_UNSET")
            .unwrap()
            .is_none());
    }

    #[test]
    fn environment_not_unicode() {
        use std::os::unix::ffi::OsStrExt;
        let raw = std::ffi::OsStr::from_bytes(b"pw\xff");
        std::env::set_var("SAFE_BACKUP_TEST_SECRET_BINARY", raw);
        let error = Secret::from_env("SAFE_BACKUP_TEST_SECRET_BINARY").unwrap_err();
        assert_eq!(
            error.to_string(),
            "environment variable SAFE_BACKUP_TEST_SECRET_BINARY is not valid UTF-8"
        );
    }

    #[test]
    fn key_file_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let key = "AGE-SECRET-KEY-1QQQ\n";
        for mode in [0o600, 0o400, 0o700] {
            let path = file_with_mode(tmp.path(), &format!("k{mode:o}"), key.as_bytes(), mode);
            assert_eq!(read_key_file(&path).unwrap().expose(), key, "{mode:o}");
        }
        for mode in [0o640, 0o604, 0o644, 0o660, 0o620, 0o601] {
            let path = file_with_mode(tmp.path(), &format!("k{mode:o}"), key.as_bytes(), mode);
            let error = read_key_file(&path).unwrap_err();
            assert!(
                matches!(error, SecretError::KeyFileExposed { mode: m, .. } if m == mode),
                "{mode:o}: {error}"
            );
            let text = report("pgback", &error, error.hint().as_deref());
            assert!(!text.contains("AGE-SECRET"), "{text}");
            assert_eq!(
                text,
                format!(
                    "pgback: {} is accessible by group or others (mode {mode:04o}): a private key \
                     must be readable by its owner only\nhint: chmod 600 {}",
                    path.display(),
                    path.display()
                )
            );
            assert_eq!(error.exit_status(), ExitStatus::Usage);
        }
    }

    #[test]
    fn key_file_hint_quotes_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let path = file_with_mode(tmp.path(), "my key", b"k", 0o644);
        let hint = read_key_file(&path).unwrap_err().hint().unwrap();
        assert_eq!(hint, format!("chmod 600 '{}'", path.display()));
    }

    #[test]
    fn key_file_refusals() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = read_key_file(&tmp.path().join("absent")).unwrap_err();
        assert!(matches!(missing, SecretError::Read { .. }), "{missing}");
        assert!(missing.to_string().contains("absent"));
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let dir = read_key_file(tmp.path()).unwrap_err();
        assert!(matches!(dir, SecretError::NotAFile { .. }), "{dir}");
        let big = file_with_mode(tmp.path(), "big", &vec![b'k'; 70_000], 0o600);
        assert!(matches!(
            read_key_file(&big).unwrap_err(),
            SecretError::TooLarge { .. }
        ));
        let binary = file_with_mode(tmp.path(), "bin", b"k\xff\xfe", 0o600);
        assert!(matches!(
            read_key_file(&binary).unwrap_err(),
            SecretError::NotText { .. }
        ));
    }

    #[test]
    fn config_file_readable_by_others_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o640, 0o660, 0o400] {
            let path = file_with_mode(tmp.path(), "ok.toml", b"", mode);
            check_config_file(&path, "dump.cipher_pass").unwrap();
        }
        for mode in [0o644, 0o604, 0o666] {
            let path = file_with_mode(tmp.path(), "open.toml", b"cipher_pass = 'x'", mode);
            let error = check_config_file(&path, "dump.cipher_pass").unwrap_err();
            assert_eq!(
                error.to_string(),
                format!(
                    "{} holds a secret (dump.cipher_pass) but is readable by others (mode {mode:04o})",
                    path.display()
                )
            );
            assert_eq!(
                error.hint().unwrap(),
                format!("chmod o-r {}", path.display())
            );
        }
        assert!(check_config_mode(Path::new("c"), "k", 0o100640).is_ok());
        assert!(check_config_mode(Path::new("c"), "k", 0o100644).is_err());
    }
}
