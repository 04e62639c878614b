//! Encrypted sets (`--encrypt`), decrypted on the fly: the small files (globals, createdb.sql,
//! the plaintext checksum lists `<file>.<algo>.age`) into memory, each dump as a stream copied
//! from a blocking thread into the stdin of pg_restore or psql ([`Input::Stream`]). No plaintext
//! byte is written to disk. A compressed native dump (`.sql.gz[.age]`...) is decompressed on
//! the same thread for the native load, encrypted or not: no decompressing program runs.
//!
//! Before anything is touched, every encrypted file of the restore has its header opened with
//! the key (a wrong key stops the restore there), and the small files are checked against their
//! plaintext checksums. A dump's plaintext checksum is computed while it streams and compared
//! at its end.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use super::exec::{Input, ToolError};
use super::set::{is_encrypted_file, DumpSet};
use crate::checksum::Hasher;
use crate::checksum::{parse_checksum_line, VerifyError, ALGORITHMS};
use crate::compress::{decompressing_reader, Method};
use crate::crypt::{decrypted_path, encrypted_plain_checksum_path};
use crate::crypt::{open_decryptor, payload_error, CryptError, DecryptKey};
use crate::exit::{ExitStatus, Failure};
use crate::files::file_name;
use crate::pump::BATCH_BYTES;
use crate::values::ChecksumAlgorithm;

/// The plaintext's checksum of an encrypted file, from its decrypted `<file>.<algo>.age`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainChecksum {
    pub algorithm: ChecksumAlgorithm,
    /// The digest in hex.
    pub hex: String,
    /// `<file>.<algo>.age`.
    pub checksum_file: PathBuf,
}

/// An encrypted dump restored from a decrypting stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedSource {
    /// `<file>.age`.
    pub file: PathBuf,
    /// Checked at the end of the stream, when the set has one.
    pub plain_checksum: Option<PlainChecksum>,
    /// Its plaintext opens with a native dump's header line (`pgback --native`).
    pub native: bool,
}

/// Whether the plaintext of `plain`, decompressed with `compression`, opens with a native
/// dump's header line (read up to its first newline, at most a few hundred bytes). A read
/// error says no: the stream reports it.
pub fn opens_native_dump(plain: impl Read, compression: Option<Method>) -> bool {
    let Ok(mut plain) = decompressing_reader(compression, plain) else {
        return false;
    };
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while head.len() < 256 && !head.ends_with(b"\n") {
        match plain.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            _ => break,
        }
    }
    crate::native::is_native_dump(&String::from_utf8_lossy(&head))
}

/// An encrypted file that cannot be used: nothing was restored.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    /// The key does not open it, or it is damaged.
    #[error(transparent)]
    Crypt(#[from] CryptError),
    /// Its plaintext does not match `<file>.<algo>.age`.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A directory dump, whose files pg_restore needs by name.
    #[error("{} is an encrypted directory dump: pg_restore reads its files by name, and restore writes no plaintext to disk", .0.display())]
    Directory(PathBuf),
}

impl Failure for DecryptError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            DecryptError::Crypt(e) => e.exit_status(),
            DecryptError::Verify(_) => ExitStatus::BackupFailed,
            DecryptError::Directory(_) => ExitStatus::Usage,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            DecryptError::Crypt(e) => e.hint(),
            DecryptError::Verify(_) => {
                Some("the file changed since it was written: restore another set (--timestamp)".into())
            }
            DecryptError::Directory(dir) => Some(format!(
                "decrypt it in place first (pgback --decrypt -b DIR {:?} with the same key), then restore; or leave it out with DBNAME globs",
                file_name(dir)
            )),
        }
    }
}

/// Whether the set holds an encrypted file the restore would use (a key is then needed).
pub fn needs_key(set: &DumpSet) -> bool {
    set.globals.iter().any(|g| is_encrypted_file(g))
        || set
            .databases
            .iter()
            .any(|db| db.encrypted || db.createdb.as_deref().is_some_and(is_encrypted_file))
}

/// The plaintext checksum lists `<file>.<algo>.age` of the encrypted `files` that exist: they
/// are verified and used like the files themselves.
pub fn plain_checksum_files(files: &[PathBuf]) -> Vec<PathBuf> {
    files
        .iter()
        .filter(|f| is_encrypted_file(f))
        .filter_map(|f| decrypted_path(f))
        .flat_map(|plain| {
            ALGORITHMS
                .iter()
                .map(move |&algorithm| encrypted_plain_checksum_path(&plain, algorithm))
        })
        .filter(|path| path.is_file())
        .collect()
}

fn read_error(path: &Path) -> impl FnOnce(io::Error) -> CryptError + '_ {
    move |source| CryptError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// The plaintext of a small encrypted file, in memory. Blocking.
fn decrypt_to_string(path: &Path, key: &DecryptKey) -> Result<String, CryptError> {
    let file = File::open(path).map_err(read_error(path))?;
    let mut reader = open_decryptor(file, path, key)?;
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| payload_error(path, e))?;
    String::from_utf8(bytes).map_err(|_| CryptError::Damaged {
        path: path.to_path_buf(),
        detail: "its plaintext is not UTF-8 text".into(),
    })
}

/// The key and what was decrypted with it, by encrypted path.
#[derive(Debug)]
pub struct Decryption {
    key: Arc<DecryptKey>,
    texts: HashMap<PathBuf, String>,
    streams: HashMap<PathBuf, EncryptedSource>,
}

impl Decryption {
    /// Nothing decrypted yet.
    pub fn new(key: Arc<DecryptKey>) -> Decryption {
        Decryption {
            key,
            texts: HashMap::new(),
            streams: HashMap::new(),
        }
    }

    /// The key, for the streams.
    pub fn key(&self) -> &Arc<DecryptKey> {
        &self.key
    }

    fn text(&mut self, path: &Path) -> Result<&str, CryptError> {
        if !self.texts.contains_key(path) {
            let text = decrypt_to_string(path, &self.key)?;
            self.texts.insert(path.to_path_buf(), text);
        }
        Ok(self.texts.get(path).map(String::as_str).unwrap_or_default())
    }

    /// The plaintext of a small file prepared by [`Decryption::prepare`].
    pub fn prepared_text(&self, path: &Path) -> Option<&str> {
        self.texts.get(path).map(String::as_str)
    }

    /// The stream of a dump prepared by [`Decryption::prepare`].
    pub fn stream(&self, dump: &Path) -> Option<&EncryptedSource> {
        self.streams.get(dump)
    }

    /// Reads the real database names from encrypted createdb.sql files (best effort: a file
    /// that does not decrypt keeps the name of its file, and fails in [`Decryption::prepare`]).
    pub fn name_databases(&mut self, set: &mut DumpSet) {
        for db in &mut set.databases {
            let Some(createdb) = db.createdb.as_deref().filter(|p| is_encrypted_file(p)) else {
                continue;
            };
            let createdb = createdb.to_path_buf();
            if let Some(name) = self
                .text(&createdb)
                .ok()
                .and_then(super::script::createdb_database_name)
            {
                db.name = name;
            }
        }
    }

    /// The plaintext checksum of the encrypted `file`, when the set has one.
    fn plain_checksum(&mut self, file: &Path) -> Result<Option<PlainChecksum>, DecryptError> {
        let Some(plain) = decrypted_path(file) else {
            return Ok(None);
        };
        let name = file_name(&plain);
        for &algorithm in &ALGORITHMS {
            let checksum_file = encrypted_plain_checksum_path(&plain, algorithm);
            if !checksum_file.is_file() {
                continue;
            }
            let line = self
                .text(&checksum_file)?
                .lines()
                .filter_map(parse_checksum_line)
                .find(|line| line.path.rsplit('/').next() == Some(name.as_str()));
            let Some(line) = line else {
                return Err(VerifyError::Unlisted {
                    file: plain,
                    checksum_file,
                }
                .into());
            };
            return Ok(Some(PlainChecksum {
                algorithm,
                hex: line.hex,
                checksum_file,
            }));
        }
        Ok(None)
    }

    /// Before anything is touched: decrypts the small files (`texts`: globals, createdb.sql)
    /// into memory and checks them against their plaintext checksums, opens the header of each
    /// encrypted dump with the key, and reads each one's plaintext checksum. Blocking.
    pub fn prepare(&mut self, texts: &[PathBuf], dumps: &[PathBuf]) -> Result<(), DecryptError> {
        for file in texts.iter().filter(|f| is_encrypted_file(f)) {
            let expected = self.plain_checksum(file)?;
            let text = self.text(file)?;
            if let Some(expected) = expected {
                let mut hasher = Hasher::new(expected.algorithm);
                if let Some(hasher) = &mut hasher {
                    hasher.update(text.as_bytes());
                }
                if hasher.map(Hasher::finish_hex) != Some(expected.hex) {
                    return Err(VerifyError::Mismatch {
                        file: file.clone(),
                        checksum_file: expected.checksum_file,
                    }
                    .into());
                }
            }
        }
        for dump in dumps.iter().filter(|f| is_encrypted_file(f)) {
            let opened = File::open(dump).map_err(read_error(dump))?;
            let plain = open_decryptor(opened, dump, &self.key)?;
            let compression =
                decrypted_path(dump).and_then(|p| Method::of_file_name(&p.to_string_lossy()));
            let native = opens_native_dump(plain, compression);
            let plain_checksum = self.plain_checksum(dump)?;
            self.streams.insert(
                dump.clone(),
                EncryptedSource {
                    file: dump.clone(),
                    plain_checksum,
                    native,
                },
            );
        }
        Ok(())
    }
}

/// A stream's bytes as read from its file (after decryption), hashed on the way; `failed`
/// tells a read error of its own from one of the decompressor reading it.
struct HashingReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    failed: bool,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|e| {
            self.failed = e.kind() != io::ErrorKind::Interrupted;
        })?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// How a stream's file is read and what its errors mean.
struct StreamFile<'a> {
    path: &'a Path,
    /// Its bytes are decompressed with this, for the native load.
    decompress: Option<Method>,
    /// A read error of the file itself (decryption's, or the disk's).
    read_error: fn(&Path, io::Error) -> ToolError,
}

/// Copies `raw` (decompressed as `file` says) into `writer` from a blocking thread, then reads
/// the rest of `raw` (after a tool that stopped reading early, or bytes after the compressed
/// stream) so that it is all hashed; gives back the hasher.
fn pump_stream(
    raw: impl Read,
    hasher: Option<Hasher>,
    file: &StreamFile<'_>,
    mut writer: tokio::io::DuplexStream,
    handle: &tokio::runtime::Handle,
) -> Result<Option<Hasher>, ToolError> {
    let mut raw = HashingReader {
        inner: raw,
        hasher,
        failed: false,
    };
    let decompress_error = |method: Method, e: io::Error| {
        ToolError::Native(format!(
            "{}: decompressing ({}): {e}",
            file.path.display(),
            method.as_str()
        ))
    };
    let copied = (|| {
        let mut plain = decompressing_reader(file.decompress, &mut raw)?;
        let mut buf = vec![0u8; BATCH_BYTES];
        loop {
            let n = match plain.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if handle.block_on(writer.write_all(&buf[..n])).is_err() {
                return Ok(());
            }
        }
    })();
    match (copied, file.decompress) {
        (Err(e), Some(method)) if !raw.failed => return Err(decompress_error(method, e)),
        (Err(e), _) => return Err((file.read_error)(file.path, e)),
        (Ok(()), _) => {}
    }
    // End of file for the tool.
    drop(writer);
    io::copy(&mut raw, &mut io::sink()).map_err(|e| (file.read_error)(file.path, e))?;
    Ok(raw.hasher)
}

/// Decrypts `source` on a blocking thread into the returned [`Input::Stream`], computing the
/// plaintext checksum on the way (and decompressing it with `decompress`, for the native
/// load). The task ends with the decryption's outcome: a damaged file, or a plaintext that
/// does not match its checksum. A tool that stops reading early does not stop the
/// decryption: the rest is read (not sent) so that the whole file is still checked.
pub fn decrypting_input(
    source: EncryptedSource,
    key: Arc<DecryptKey>,
    decompress: Option<Method>,
) -> (Input, tokio::task::JoinHandle<Result<(), ToolError>>) {
    let (writer, reader) = tokio::io::duplex(BATCH_BYTES);
    let handle = tokio::runtime::Handle::current();
    let task = tokio::task::spawn_blocking(move || {
        let path = source.file.as_path();
        let opened = File::open(path).map_err(read_error(path))?;
        let plain = open_decryptor(opened, path, &key)?;
        let hasher = source
            .plain_checksum
            .as_ref()
            .and_then(|c| Hasher::new(c.algorithm));
        let file = StreamFile {
            path,
            decompress,
            read_error: |path, e| payload_error(path, e).into(),
        };
        let hasher = pump_stream(plain, hasher, &file, writer, &handle)?;
        if let (Some(hasher), Some(expected)) = (hasher, source.plain_checksum) {
            if hasher.finish_hex() != expected.hex {
                return Err(ToolError::PlainMismatch {
                    file: source.file,
                    checksum_file: expected.checksum_file,
                });
            }
        }
        Ok(())
    });
    (Input::Stream(Box::new(reader)), task)
}

/// The unencrypted compressed native dump `path`, decompressed with `method` on a blocking
/// thread into the returned [`Input::Stream`] (its checksum was verified before).
pub fn decompressing_input(
    path: PathBuf,
    method: Method,
) -> (Input, tokio::task::JoinHandle<Result<(), ToolError>>) {
    let (writer, reader) = tokio::io::duplex(BATCH_BYTES);
    let handle = tokio::runtime::Handle::current();
    let task = tokio::task::spawn_blocking(move || {
        let file = StreamFile {
            path: &path,
            decompress: Some(method),
            read_error: |path, e| ToolError::Native(format!("{}: {e}", path.display())),
        };
        let opened = File::open(&path).map_err(|e| (file.read_error)(&path, e))?;
        pump_stream(opened, None, &file, writer, &handle).map(drop)
    });
    (Input::Stream(Box::new(reader)), task)
}

/// Awaits the decryption of a stream after its tool ended: its failure comes first (the tool's
/// own is then most likely a consequence).
pub async fn finish_stream(
    task: tokio::task::JoinHandle<Result<(), ToolError>>,
    tool: Result<(), ToolError>,
) -> Result<(), ToolError> {
    let decrypted = task.await.unwrap_or_else(|e| {
        Err(ToolError::Feed {
            program: "decrypt".into(),
            source: io::Error::other(e.to_string()),
        })
    });
    decrypted.and(tool)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{ConnParams, ConnSettings, Environment};
    use crate::crypt::{encrypt_to_vec, EncryptKey};
    use crate::restore::exec::{run_tool, ToolCommand};
    use crate::secret::Secret;

    fn conn() -> ConnSettings {
        let params = ConnParams::parse("host=/nonexistent user=nobody dbname=none").unwrap();
        ConnSettings::resolve(&params, &Environment::default()).unwrap()
    }

    fn sha256(bytes: &[u8]) -> String {
        let mut hasher = Hasher::new(ChecksumAlgorithm::Sha256).unwrap();
        hasher.update(bytes);
        hasher.finish_hex()
    }

    /// Streams `source` into `sh -c "$script"`; the tool's and the decryption's outcome.
    async fn stream_into(
        source: EncryptedSource,
        key: &Arc<DecryptKey>,
        script: &str,
    ) -> Result<(), ToolError> {
        let (input, task) = decrypting_input(source, key.clone(), None);
        let tool = ToolCommand::new("sh".into(), vec!["-c".into(), script.into()]);
        let ran = run_tool(&tool, &conn(), input, "test").await;
        finish_stream(task, ran).await
    }

    #[tokio::test]
    async fn native_streams_are_decompressed_by_pgback_checked_as_compressed() {
        use crate::compress::CompressingReader;
        let tmp = tempfile::tempdir().unwrap();
        let plain: Vec<u8> = (0..300_000u32).map(|i| (i % 97) as u8).collect();
        let mut packed = Vec::new();
        CompressingReader::new(&plain[..], Method::Zstd, None)
            .unwrap()
            .read_to_end(&mut packed)
            .unwrap();
        let file = tmp.path().join("a_s.sql.zst");
        std::fs::write(&file, &packed).unwrap();
        let out = tmp.path().join("out");
        let cat = ToolCommand::new(
            "sh".into(),
            vec!["-c".into(), format!("cat > '{}'", out.display())],
        );
        let (input, task) = decompressing_input(file.clone(), Method::Zstd);
        let ran = run_tool(&cat, &conn(), input, "test").await;
        finish_stream(task, ran).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), plain);
        // Encrypted: the checksum is of the compressed bytes, the tool reads the plain ones.
        let identity = crate::crypt::new_x25519_identity();
        let encrypt = EncryptKey::recipients(&[identity.to_public().to_string()]).unwrap();
        let sealed = tmp.path().join("a_s.sql.zst.age");
        std::fs::write(&sealed, encrypt_to_vec(&encrypt, &packed).unwrap()).unwrap();
        let secret = age::secrecy::ExposeSecret::expose_secret(&identity.to_string()).to_string();
        let key =
            Arc::new(DecryptKey::from_identity_text(&Secret::new(secret), Path::new("k")).unwrap());
        let mut decryption = Decryption::new(key.clone());
        decryption
            .prepare(&[], std::slice::from_ref(&sealed))
            .unwrap();
        let mut source = decryption.stream(&sealed).unwrap().clone();
        assert!(!source.native, "zstd bytes of no native header");
        source.plain_checksum = Some(PlainChecksum {
            algorithm: ChecksumAlgorithm::Sha256,
            hex: sha256(&packed),
            checksum_file: tmp.path().join("a_s.sql.zst.sha256.age"),
        });
        let (input, task) = decrypting_input(source.clone(), key.clone(), Some(Method::Zstd));
        std::fs::remove_file(&out).unwrap();
        let ran = run_tool(&cat, &conn(), input, "test").await;
        finish_stream(task, ran).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), plain);
        // A tool that stops at once: the rest is still read and checked.
        let stop = ToolCommand::new("sh".into(), vec!["-c".into(), "exit 0".into()]);
        let (input, task) = decrypting_input(source, key, Some(Method::Zstd));
        let ran = run_tool(&stop, &conn(), input, "test").await;
        finish_stream(task, ran).await.unwrap();
        // Damaged compressed bytes: a decompression error naming the file, not a decryption one.
        packed.truncate(packed.len() / 2);
        packed.extend_from_slice(&[0x55; 64]);
        std::fs::write(&file, &packed).unwrap();
        let (input, task) = decompressing_input(file.clone(), Method::Zstd);
        let ran = run_tool(&cat, &conn(), input, "test").await;
        let error = finish_stream(task, ran).await.unwrap_err().to_string();
        assert!(
            error.contains("a_s.sql.zst: decompressing (zstd)"),
            "{error}"
        );
        // A native header is seen through the compression.
        let header = b"-- pgback native dump, format 1, marker 0a1b\nSET x = 1;\n";
        let mut head = Vec::new();
        CompressingReader::new(&header[..], Method::Gzip, None)
            .unwrap()
            .read_to_end(&mut head)
            .unwrap();
        assert!(opens_native_dump(&head[..], Some(Method::Gzip)));
        assert!(!opens_native_dump(&head[..], None));
        assert!(!opens_native_dump(&head[..], Some(Method::Zstd)));
    }

    #[tokio::test]
    async fn streams_decrypt_and_check_the_plaintext_checksum() {
        let tmp = tempfile::tempdir().unwrap();
        let plain: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let identity = crate::crypt::new_x25519_identity();
        let encrypt = EncryptKey::recipients(&[identity.to_public().to_string()]).unwrap();
        let file = tmp.path().join("a_s.dump.age");
        std::fs::write(&file, encrypt_to_vec(&encrypt, &plain).unwrap()).unwrap();
        let secret = age::secrecy::ExposeSecret::expose_secret(&identity.to_string()).to_string();
        let key =
            Arc::new(DecryptKey::from_identity_text(&Secret::new(secret), Path::new("k")).unwrap());
        let source = |hex: &str| EncryptedSource {
            native: false,
            file: file.clone(),
            plain_checksum: Some(PlainChecksum {
                algorithm: ChecksumAlgorithm::Sha256,
                hex: hex.into(),
                checksum_file: tmp.path().join("a_s.dump.sha256.age"),
            }),
        };
        let out = tmp.path().join("out");
        let script = format!("cat > '{}'", out.display());
        stream_into(source(&sha256(&plain)), &key, &script)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), plain);
        // A tool that stops reading at once: the whole file is still checked.
        let error = stream_into(source(&"0".repeat(64)), &key, "exit 0")
            .await
            .unwrap_err();
        assert!(matches!(error, ToolError::PlainMismatch { .. }), "{error}");
        // A truncated file fails the stream, whatever the tool says.
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() - 100]).unwrap();
        let error = stream_into(source(&sha256(&plain)), &key, "cat > /dev/null")
            .await
            .unwrap_err();
        assert!(
            matches!(error, ToolError::Decrypt(CryptError::Damaged { .. })),
            "{error}"
        );
        // The wrong key, at once.
        let other = crate::crypt::new_x25519_identity();
        let secret = age::secrecy::ExposeSecret::expose_secret(&other.to_string()).to_string();
        let wrong = DecryptKey::from_identity_text(&Secret::new(secret), Path::new("k")).unwrap();
        let mut decryption = Decryption::new(Arc::new(wrong));
        let error = decryption
            .prepare(&[], std::slice::from_ref(&file))
            .unwrap_err();
        assert!(
            matches!(error, DecryptError::Crypt(CryptError::WrongKey { .. })),
            "{error}"
        );
    }
}
