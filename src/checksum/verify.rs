//! Checking a dump set against its checksum files before anything is restored: every file of a
//! directory dump listed and matching, nothing missing, nothing extra. Reads both pgback's
//! lines (`<hex>  <name>`, relative) and pg_back's (`<hex>  <path>` as it was given, and
//! `<hex> *<path>` inside directory dumps), with coreutils' `\` escaping.

use std::path::{Path, PathBuf};

use super::hash::hash_file;
use crate::files::file_name;
use crate::values::ChecksumAlgorithm;

/// Algorithms whose checksum files are looked for, strongest first.
pub const ALGORITHMS: [ChecksumAlgorithm; 5] = [
    ChecksumAlgorithm::Sha512,
    ChecksumAlgorithm::Sha384,
    ChecksumAlgorithm::Sha256,
    ChecksumAlgorithm::Sha224,
    ChecksumAlgorithm::Sha1,
];

/// Why a file of the set is not what was written.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The digest differs.
    #[error("{file} does not match its checksum in {checksum_file}")]
    Mismatch {
        file: PathBuf,
        checksum_file: PathBuf,
    },
    /// A file the checksum file lists is gone, or the dump itself is.
    #[error("{file} is missing{}", checksum_file.as_ref().map(|c| format!(" (listed in {})", c.display())).unwrap_or_default())]
    Missing {
        file: PathBuf,
        /// The checksum file listing it, if any.
        checksum_file: Option<PathBuf>,
    },
    /// The set has checksum files, but not for this one (or checksums are required).
    #[error("{0} has no checksum file (<file>.sha1 .. .sha512)")]
    NoChecksum(PathBuf),
    /// A file inside a directory dump that its checksum file does not list.
    #[error("{file} is not listed in {checksum_file}")]
    Unlisted {
        file: PathBuf,
        checksum_file: PathBuf,
    },
    /// A checksum file line that cannot be read.
    #[error("{checksum_file}:{line}: not a checksum line (<hex>  <file>)")]
    Malformed {
        checksum_file: PathBuf,
        /// The 1-based line number.
        line: usize,
    },
    /// Reading failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What was checked for one file of the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The file (or dump directory).
    pub file: PathBuf,
    /// The checksum files it matched; empty when it has none.
    pub checksum_files: Vec<PathBuf>,
}

/// One line of a checksum file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumLine {
    /// Lowercase hex digest.
    pub hex: String,
    /// The path as written (unescaped).
    pub path: String,
}

/// Reads `<hex>  <path>` or `<hex> *<path>`; a leading `\` means the path is escaped
/// (`\\`, `\n`, `\r`), as coreutils writes names holding those.
pub fn parse_checksum_line(line: &str) -> Option<ChecksumLine> {
    let (escaped, line) = match line.strip_prefix('\\') {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let (hex, rest) = line.split_once(' ')?;
    let path = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('*'))?;
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) || path.is_empty() {
        return None;
    }
    let path = if escaped {
        let mut out = String::new();
        let mut chars = path.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next()? {
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    '\\' => out.push('\\'),
                    _ => return None,
                }
            } else {
                out.push(c);
            }
        }
        out
    } else {
        path.to_string()
    };
    Some(ChecksumLine {
        hex: hex.to_ascii_lowercase(),
        path,
    })
}

/// The checksum files beside `file`: `<file>.<algo>` for every algorithm that has one.
pub fn checksum_files(file: &Path) -> Vec<(ChecksumAlgorithm, PathBuf)> {
    ALGORITHMS
        .iter()
        .filter_map(|&algorithm| {
            let mut name = file.as_os_str().to_os_string();
            name.push(".");
            name.push(algorithm.name());
            let path = PathBuf::from(name);
            path.is_file().then_some((algorithm, path))
        })
        .collect()
}

fn read_lines(checksum_file: &Path) -> Result<Vec<ChecksumLine>, VerifyError> {
    let text = std::fs::read_to_string(checksum_file).map_err(|source| VerifyError::Read {
        path: checksum_file.to_path_buf(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            parse_checksum_line(line).ok_or(VerifyError::Malformed {
                checksum_file: checksum_file.to_path_buf(),
                line: index + 1,
            })
        })
        .collect()
}

fn digest(path: &Path, algorithm: ChecksumAlgorithm) -> Result<String, VerifyError> {
    hash_file(path, algorithm)
        .map_err(|source| VerifyError::Read {
            path: path.to_path_buf(),
            source,
        })
        .map(Option::unwrap_or_default)
}

/// The last `n` components of a listed path, joined with `/`.
fn tail(path: &str, n: usize) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    parts[parts.len().saturating_sub(n)..].join("/")
}

/// Checks one regular file against one checksum file.
fn verify_regular(
    file: &Path,
    algorithm: ChecksumAlgorithm,
    checksum_file: &Path,
) -> Result<(), VerifyError> {
    let lines = read_lines(checksum_file)?;
    let name = file_name(file);
    let line = lines
        .iter()
        .find(|l| tail(&l.path, 1) == name)
        .ok_or_else(|| VerifyError::Unlisted {
            file: file.to_path_buf(),
            checksum_file: checksum_file.to_path_buf(),
        })?;
    if digest(file, algorithm)? != line.hex {
        return Err(VerifyError::Mismatch {
            file: file.to_path_buf(),
            checksum_file: checksum_file.to_path_buf(),
        });
    }
    Ok(())
}

/// Checks a directory dump: every listed file exists and matches, every file is listed.
fn verify_directory(
    dir: &Path,
    algorithm: ChecksumAlgorithm,
    checksum_file: &Path,
) -> Result<(), VerifyError> {
    let lines = read_lines(checksum_file)?;
    let mut listed = std::collections::BTreeSet::new();
    for line in &lines {
        let inside = tail(&line.path, 1);
        let file = dir.join(&inside);
        if !file.is_file() {
            return Err(VerifyError::Missing {
                file,
                checksum_file: Some(checksum_file.to_path_buf()),
            });
        }
        if digest(&file, algorithm)? != line.hex {
            return Err(VerifyError::Mismatch {
                file,
                checksum_file: checksum_file.to_path_buf(),
            });
        }
        listed.insert(inside);
    }
    let read = |source| VerifyError::Read {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read)? {
        let entry = entry.map_err(read)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !listed.contains(&name) {
            return Err(VerifyError::Unlisted {
                file: entry.path(),
                checksum_file: checksum_file.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Checks `file` (a dump directory when it is one) against every checksum file beside it.
/// `Ok` with no checksum files when it has none; the caller decides whether that is allowed.
pub fn verify_file(file: &Path) -> Result<Verified, VerifyError> {
    let meta = std::fs::metadata(file).map_err(|_| VerifyError::Missing {
        file: file.to_path_buf(),
        checksum_file: None,
    })?;
    let mut checked = Vec::new();
    for (algorithm, checksum_file) in checksum_files(file) {
        if meta.is_dir() {
            verify_directory(file, algorithm, &checksum_file)?;
        } else {
            verify_regular(file, algorithm, &checksum_file)?;
        }
        checked.push(checksum_file);
    }
    Ok(Verified {
        file: file.to_path_buf(),
        checksum_files: checked,
    })
}

/// Checks every file of a restore, in order. When any of them has a checksum file (or
/// `require` is set) every one must have one.
pub fn verify_all(files: &[PathBuf], require: bool) -> Result<Vec<Verified>, VerifyError> {
    let mut verified = Vec::new();
    for file in files {
        verified.push(verify_file(file)?);
    }
    let any = verified.iter().any(|v| !v.checksum_files.is_empty());
    if any || require {
        if let Some(unchecked) = verified.iter().find(|v| v.checksum_files.is_empty()) {
            return Err(VerifyError::NoChecksum(unchecked.file.clone()));
        }
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::checksum_line;

    fn sha256(path: &Path) -> String {
        hash_file(path, ChecksumAlgorithm::Sha256).unwrap().unwrap()
    }

    #[test]
    fn lines_of_pgback_pg_back_and_coreutils() {
        let hex = "ab".repeat(32);
        for (line, path) in [
            (format!("{hex}  x=y z_s.dump"), "x=y z_s.dump"),
            (
                format!("{hex} */var/b/db_s.d/toc.dat"),
                "/var/b/db_s.d/toc.dat",
            ),
            (format!("\\{hex}  a\\nb\\\\c"), "a\nb\\c"),
        ] {
            let parsed = parse_checksum_line(&line).unwrap();
            assert_eq!(
                (parsed.hex.as_str(), parsed.path.as_str()),
                (hex.as_str(), path)
            );
        }
        let escaped = checksum_line(&hex, "név\nx");
        assert_eq!(
            parse_checksum_line(escaped.trim_end_matches('\n'))
                .unwrap()
                .path,
            "név\nx"
        );
        for bad in ["", "zz  file", "abc", "abc file", "\\abc  a\\qb"] {
            assert_eq!(parse_checksum_line(bad), None, "{bad:?}");
        }
        assert_eq!(tail("/var/b/db_s.d/toc.dat", 1), "toc.dat");
        assert_eq!(tail("db.dump", 1), "db.dump");
    }

    #[test]
    fn files_and_directories_verify_or_name_the_culprit() {
        let tmp = tempfile::tempdir().unwrap();
        let dump = tmp.path().join("a_s.dump");
        std::fs::write(&dump, b"dump bytes").unwrap();
        std::fs::write(
            tmp.path().join("a_s.dump.sha256"),
            checksum_line(&sha256(&dump), "a_s.dump"),
        )
        .unwrap();
        let verified = verify_file(&dump).unwrap();
        assert_eq!(
            verified.checksum_files,
            [tmp.path().join("a_s.dump.sha256")]
        );

        // A directory dump listed the pg_back way (absolute paths elsewhere, `*`).
        let dir = tmp.path().join("b_s.d");
        std::fs::create_dir(&dir).unwrap();
        let mut list = String::new();
        for name in ["toc.dat", "3001.dat.gz"] {
            std::fs::write(dir.join(name), name).unwrap();
            list.push_str(&format!(
                "{} */old/place/b_s.d/{name}\n",
                sha256(&dir.join(name))
            ));
        }
        std::fs::write(tmp.path().join("b_s.d.sha256"), &list).unwrap();
        verify_all(&[dump.clone(), dir.clone()], true).unwrap();

        // Extra file, missing file, changed byte.
        std::fs::write(dir.join("3002.dat.gz"), b"x").unwrap();
        assert!(
            matches!(verify_file(&dir), Err(VerifyError::Unlisted { file, .. }) if file.ends_with("3002.dat.gz"))
        );
        std::fs::remove_file(dir.join("3002.dat.gz")).unwrap();
        std::fs::remove_file(dir.join("toc.dat")).unwrap();
        assert!(
            matches!(verify_file(&dir), Err(VerifyError::Missing { file, .. }) if file.ends_with("toc.dat"))
        );
        std::fs::write(&dump, b"dump bytez").unwrap();
        let err = verify_all(std::slice::from_ref(&dump), false).unwrap_err();
        assert!(
            matches!(&err, VerifyError::Mismatch { file, .. } if file == &dump),
            "{err}"
        );

        // Without any checksum file: allowed unless required; mixed: refused.
        let plain = tmp.path().join("c_s.sql");
        std::fs::write(&plain, b"select 1;").unwrap();
        assert!(verify_all(std::slice::from_ref(&plain), false).unwrap()[0]
            .checksum_files
            .is_empty());
        assert!(matches!(
            verify_all(std::slice::from_ref(&plain), true),
            Err(VerifyError::NoChecksum(_))
        ));
        std::fs::write(&dump, b"dump bytes").unwrap();
        assert!(matches!(
            verify_all(&[dump, plain.clone()], false),
            Err(VerifyError::NoChecksum(p)) if p == plain
        ));
        assert!(matches!(
            verify_file(&tmp.path().join("gone.dump")),
            Err(VerifyError::Missing { .. })
        ));
    }
}
