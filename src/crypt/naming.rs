//! pg_back's names for encrypted files and their checksums: `<file>.age`, `<file>.age.<algo>`
//! (the encrypted file's checksum) and `<file>.<algo>.age` (the plaintext's checksum, encrypted).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::values::ChecksumAlgorithm;

/// The extension of an encrypted file.
pub const AGE_EXTENSION: &str = "age";

/// `path` with `.suffix` appended to its whole name (not replacing an extension).
fn append(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// `<file>.age`: the encrypted file (for a directory dump, each file inside gets `.age`).
pub fn encrypted_path(path: &Path) -> PathBuf {
    append(path, AGE_EXTENSION)
}

/// `<file>.<algo>`: a checksum file, as `sha256sum -c` reads it.
pub fn checksum_path(path: &Path, algorithm: ChecksumAlgorithm) -> PathBuf {
    append(path, algorithm.name())
}

/// `<file>.age.<algo>`: the checksum file of the encrypted file (for a directory dump, one
/// line per encrypted file inside).
pub fn encrypted_checksum_path(path: &Path, algorithm: ChecksumAlgorithm) -> PathBuf {
    checksum_path(&encrypted_path(path), algorithm)
}

/// `<file>.<algo>.age`: the plaintext's checksum file, stored encrypted. Its own checksum is
/// `<file>.<algo>.age.<algo>`, i.e. [`encrypted_checksum_path`] of [`checksum_path`].
pub fn encrypted_plain_checksum_path(path: &Path, algorithm: ChecksumAlgorithm) -> PathBuf {
    encrypted_path(&checksum_path(path, algorithm))
}

/// What `path` decrypts to: its name without `.age`; `None` when it does not end in `.age`
/// (or is nothing but `.age`).
pub fn decrypted_path(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".age")?;
    if stem.is_empty() {
        return None;
    }
    Some(path.with_file_name(stem))
}

/// Whether a file name is an encrypted file's.
pub fn is_encrypted_name(name: &OsStr) -> bool {
    name.to_str()
        .and_then(|n| n.strip_suffix(".age"))
        .is_some_and(|stem| !stem.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_pg_back_writes_them() {
        let dump = Path::new("/b/db_2026-01-02T03:04:05Z.dump");
        let sha = ChecksumAlgorithm::Sha256;
        let cases = [
            (encrypted_path(dump), "/b/db_2026-01-02T03:04:05Z.dump.age"),
            (
                checksum_path(dump, sha),
                "/b/db_2026-01-02T03:04:05Z.dump.sha256",
            ),
            (
                encrypted_checksum_path(dump, sha),
                "/b/db_2026-01-02T03:04:05Z.dump.age.sha256",
            ),
            (
                encrypted_plain_checksum_path(dump, sha),
                "/b/db_2026-01-02T03:04:05Z.dump.sha256.age",
            ),
            (
                encrypted_checksum_path(&checksum_path(dump, sha), sha),
                "/b/db_2026-01-02T03:04:05Z.dump.sha256.age.sha256",
            ),
            (
                encrypted_path(Path::new("db_x.d/toc.dat")),
                "db_x.d/toc.dat.age",
            ),
            (
                encrypted_checksum_path(Path::new("db_x.d"), ChecksumAlgorithm::Sha512),
                "db_x.d.age.sha512",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, Path::new(want));
        }
    }

    #[test]
    fn decrypted_names() {
        let cases = [
            ("/b/db.dump.age", Some("/b/db.dump")),
            ("db.dump.sha256.age", Some("db.dump.sha256")),
            ("db_x.d/toc.dat.age", Some("db_x.d/toc.dat")),
            ("db.dump.age.sha256", None),
            ("db.dump", None),
            ("/b/.age", None),
            ("db.dump.age.partial", None),
        ];
        for (path, want) in cases {
            assert_eq!(
                decrypted_path(Path::new(path)),
                want.map(PathBuf::from),
                "{path}"
            );
            assert_eq!(
                is_encrypted_name(Path::new(path).file_name().unwrap()),
                want.is_some(),
                "{path}"
            );
        }
    }
}
