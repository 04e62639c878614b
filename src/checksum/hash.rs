//! Checksums computed while the bytes are written (never by re-reading a finished file, except
//! for directory dumps, whose files pg_dump writes itself), and checksum files that
//! `sha256sum -c` (and sha1sum, ...) accepts.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha1::Digest as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::files::{temp_path, write_atomically, FileOptions};
use crate::values::ChecksumAlgorithm;

/// A running digest of one of the supported algorithms.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-1.
    Sha1(sha1::Sha1),
    /// SHA-224.
    Sha224(sha2::Sha224),
    /// SHA-256.
    Sha256(sha2::Sha256),
    /// SHA-384.
    Sha384(sha2::Sha384),
    /// SHA-512.
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A fresh digest, or `None` for `none`.
    pub fn new(algorithm: ChecksumAlgorithm) -> Option<Hasher> {
        Some(match algorithm {
            ChecksumAlgorithm::None => return None,
            ChecksumAlgorithm::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            ChecksumAlgorithm::Sha224 => Hasher::Sha224(sha2::Sha224::new()),
            ChecksumAlgorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            ChecksumAlgorithm::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            ChecksumAlgorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        })
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(bytes),
            Hasher::Sha224(h) => h.update(bytes),
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha384(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest in lowercase hex.
    pub fn finish_hex(self) -> String {
        match self {
            Hasher::Sha1(h) => hex::encode(h.finalize()),
            Hasher::Sha224(h) => hex::encode(h.finalize()),
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha384(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// A writer that hashes what passes through it.
pub struct ChecksumWriter<W> {
    inner: W,
    hasher: Option<Hasher>,
    written: u64,
}

impl<W: Write> ChecksumWriter<W> {
    /// Wraps `inner`; with `ChecksumAlgorithm::None` it only counts bytes.
    pub fn new(inner: W, algorithm: ChecksumAlgorithm) -> Self {
        ChecksumWriter {
            inner,
            hasher: Hasher::new(algorithm),
            written: 0,
        }
    }

    /// The inner writer, the hex digest (if any) and the byte count.
    pub fn finish(self) -> (W, Option<String>, u64) {
        (
            self.inner,
            self.hasher.map(Hasher::finish_hex),
            self.written,
        )
    }
}

impl<W: Write> Write for ChecksumWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Copies `reader` into `writer`, hashing on the way; returns the digest (if any) and the byte
/// count. `on_progress` sees the running byte count after each chunk.
pub async fn copy_hashed<R, W>(
    reader: &mut R,
    writer: &mut W,
    algorithm: ChecksumAlgorithm,
    mut on_progress: impl FnMut(u64),
) -> io::Result<(Option<String>, u64)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut hasher = Hasher::new(algorithm);
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if let Some(hasher) = &mut hasher {
            hasher.update(&buf[..n]);
        }
        writer.write_all(&buf[..n]).await?;
        total += n as u64;
        on_progress(total);
    }
    writer.flush().await?;
    Ok((hasher.map(Hasher::finish_hex), total))
}

/// Hashes a finished file (directory dumps only: pg_dump writes those files itself).
pub fn hash_file(path: &Path, algorithm: ChecksumAlgorithm) -> io::Result<Option<String>> {
    let Some(hasher) = Hasher::new(algorithm) else {
        return Ok(None);
    };
    let mut writer = ChecksumWriter {
        inner: io::sink(),
        hasher: Some(hasher),
        written: 0,
    };
    // Stoppable: a SIGINT or SIGTERM ends the hashing of a large file (see shutdown).
    let mut file = crate::shutdown::Stoppable::new(std::fs::File::open(path)?);
    io::copy(&mut file, &mut writer)?;
    Ok(writer.finish().1)
}

/// One line of a checksum file, as GNU coreutils writes it: `<hex>  <path>`; a path holding a
/// backslash, a newline or a carriage return is escaped and the line starts with `\`, which
/// `sha256sum -c` understands.
pub fn checksum_line(hex: &str, path: &str) -> String {
    if path.contains(['\\', '\n', '\r']) {
        let escaped = path
            .replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('\r', "\\r");
        format!("\\{hex}  {escaped}\n")
    } else {
        format!("{hex}  {path}\n")
    }
}

/// Writes the checksum file `<path>.<algo>` holding `lines` (through a temporary name, so it
/// is never half-written) and returns its path. Names inside are relative to the checksum
/// file's directory: `cd <dir> && sha256sum -c <file>.sha256`.
pub fn write_checksum_file(
    path: &Path,
    algorithm: ChecksumAlgorithm,
    lines: &str,
    options: FileOptions,
) -> Result<PathBuf, (PathBuf, io::Error)> {
    let mut name = path.as_os_str().to_os_string();
    name.push(".");
    name.push(algorithm.name());
    let checksum_path = PathBuf::from(name);
    match write_atomically(
        &checksum_path,
        &temp_path(&checksum_path),
        lines.as_bytes(),
        options,
    ) {
        Ok(()) => Ok(checksum_path),
        Err(error) => Err((checksum_path, error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: [(ChecksumAlgorithm, &str); 5] = [
        (ChecksumAlgorithm::Sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
        (ChecksumAlgorithm::Sha224, "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"),
        (ChecksumAlgorithm::Sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (
            ChecksumAlgorithm::Sha384,
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7",
        ),
        (
            ChecksumAlgorithm::Sha512,
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        ),
    ];

    #[test]
    fn known_digests_while_writing() {
        for (algorithm, expected) in ABC {
            let mut writer = ChecksumWriter::new(Vec::new(), algorithm);
            writer.write_all(b"a").unwrap();
            writer.write_all(b"bc").unwrap();
            let (bytes, digest, count) = writer.finish();
            assert_eq!(bytes, b"abc");
            assert_eq!(digest.as_deref(), Some(expected), "{algorithm}");
            assert_eq!(count, 3);
        }
        let (_, digest, count) = ChecksumWriter::new(io::sink(), ChecksumAlgorithm::None).finish();
        assert_eq!((digest, count), (None, 0));
    }

    #[tokio::test]
    async fn streaming_copy_matches_hashing_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let path = tmp.path().join("out");
        let mut file = tokio::fs::File::create(&path).await.unwrap();
        let mut seen = 0;
        let (digest, n) = copy_hashed(&mut &data[..], &mut file, ChecksumAlgorithm::Sha256, |t| {
            seen = t
        })
        .await
        .unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(seen, n);
        assert_eq!(digest, hash_file(&path, ChecksumAlgorithm::Sha256).unwrap());
    }

    #[test]
    fn lines_like_coreutils() {
        assert_eq!(checksum_line("ab", "x y.dump"), "ab  x y.dump\n");
        assert_eq!(checksum_line("ab", "a\nb\\c"), "\\ab  a\\nb\\\\c\n");
    }

    #[test]
    fn sha256sum_accepts_our_lines() {
        let status = std::process::Command::new("sha256sum")
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("running sha256sum: {e}; install coreutils"));
        assert!(status.status.success());
        let tmp = tempfile::tempdir().unwrap();
        let mut list = String::new();
        for name in [
            "plain.dump",
            "x=y z.dump",
            "név\nline.dump",
            "back\\slash.dump",
        ] {
            let path = tmp.path().join(name);
            std::fs::write(&path, name.as_bytes()).unwrap();
            let hex = hash_file(&path, ChecksumAlgorithm::Sha256)
                .unwrap()
                .unwrap();
            list.push_str(&checksum_line(&hex, name));
        }
        std::fs::write(tmp.path().join("list.sha256"), list).unwrap();
        let out = std::process::Command::new("sha256sum")
            .args(["-c", "list.sha256"])
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
