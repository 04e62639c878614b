//! Streaming encryption: a dump's bytes are hashed, optionally kept in plaintext
//! (`--encrypt-keep-src`), encrypted in age's 64 KiB chunks and hashed again on their way to
//! `<file>.age`, with no plaintext on disk and a few MiB of memory per stream.
//!
//! [`EncryptSink`] is the synchronous core. [`encrypt_stream`] feeds one from a blocking reader
//! (pg_dump's stdout) through [`crate::pump`]: one blocking thread reads 1 MiB batches, hashes,
//! encrypts and writes them.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use super::keys::EncryptKey;
use crate::config::values::ChecksumAlgorithm;
use crate::dump::checksum::{ChecksumWriter, Hasher};
use crate::pump::{blocking, pump, BatchSink, Source, BATCH_BYTES};

/// One stream, encrypted and written.
#[derive(Debug)]
pub struct EncryptedStream {
    /// `<file>.age`, flushed and fsynced.
    pub age_file: File,
    /// The plaintext copy (`--encrypt-keep-src`), flushed and fsynced.
    pub plain_file: Option<File>,
    /// The plaintext's digest in hex (for `<file>.<algo>`, stored as `<file>.<algo>.age`).
    pub plain_digest: Option<String>,
    /// The encrypted file's digest in hex (for `<file>.age.<algo>`).
    pub age_digest: Option<String>,
    /// Plaintext bytes.
    pub plain_bytes: u64,
    /// Encrypted bytes (header and tags included): the size of `<file>.age`.
    pub age_bytes: u64,
}

/// The synchronous core: feed it plaintext with [`EncryptSink::write_all`], then
/// [`EncryptSink::finish`]. Blocking (file writes; with a passphrase, scrypt in `new`).
pub struct EncryptSink {
    plain_hasher: Option<Hasher>,
    plain_bytes: u64,
    plain_file: Option<File>,
    age: age::stream::StreamWriter<ChecksumWriter<BufWriter<File>>>,
}

impl EncryptSink {
    /// Starts `age_file` (writes the age header: with a passphrase this runs scrypt, about a
    /// second of CPU and 256 MiB). `plain_file` receives the plaintext too, when given.
    pub fn new(
        key: &EncryptKey,
        age_file: File,
        plain_file: Option<File>,
        algorithm: ChecksumAlgorithm,
    ) -> io::Result<EncryptSink> {
        let encryptor = key.encryptor().map_err(io::Error::other)?;
        let out = ChecksumWriter::new(BufWriter::with_capacity(BATCH_BYTES, age_file), algorithm);
        Ok(EncryptSink {
            plain_hasher: Hasher::new(algorithm),
            plain_bytes: 0,
            plain_file,
            age: encryptor.wrap_output(out)?,
        })
    }

    /// Hashes, copies (keep-src) and encrypts `plain`.
    pub fn write_all(&mut self, plain: &[u8]) -> io::Result<()> {
        if let Some(hasher) = &mut self.plain_hasher {
            hasher.update(plain);
        }
        if let Some(file) = &mut self.plain_file {
            file.write_all(plain)?;
        }
        self.age.write_all(plain)?;
        self.plain_bytes += plain.len() as u64;
        Ok(())
    }

    /// Writes age's last chunk, flushes and fsyncs both files.
    pub fn finish(self) -> io::Result<EncryptedStream> {
        let (buffered, age_digest, age_bytes) = self.age.finish()?.finish();
        let age_file = buffered
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        age_file.sync_all()?;
        if let Some(file) = &self.plain_file {
            file.sync_all()?;
        }
        Ok(EncryptedStream {
            age_file,
            plain_file: self.plain_file,
            plain_digest: self.plain_hasher.map(Hasher::finish_hex),
            age_digest,
            plain_bytes: self.plain_bytes,
            age_bytes,
        })
    }
}

impl BatchSink for EncryptSink {
    fn write_batch(&mut self, batch: &[u8]) -> io::Result<()> {
        self.write_all(batch)
    }
}

/// Streams `reader` into `age_file` (and `plain_file` with keep-src): see [`EncryptSink`].
/// `on_progress` sees the running plaintext byte count. The files are returned fsynced; the
/// caller renames them into place and writes the checksum files. If this fails or the future
/// is dropped, the files are left unfinished for the caller to remove.
pub async fn encrypt_stream(
    reader: Source,
    key: &EncryptKey,
    age_file: File,
    plain_file: Option<File>,
    algorithm: ChecksumAlgorithm,
    on_progress: impl FnMut(u64),
) -> io::Result<EncryptedStream> {
    let key = key.clone();
    // The age header: with a passphrase this runs scrypt, off the runtime's thread.
    let sink = blocking(move || EncryptSink::new(&key, age_file, plain_file, algorithm)).await?;
    let (sink, _) = pump(reader, sink, on_progress).await?;
    blocking(move || sink.finish()).await
}

/// Encrypts a small file held in memory (a checksum file, `createdb.sql`) into the bytes of
/// an age file. Blocking: with a passphrase this runs scrypt.
pub fn encrypt_to_vec(key: &EncryptKey, plain: &[u8]) -> io::Result<Vec<u8>> {
    let encryptor = key.encryptor().map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(plain.len() + 256);
    let mut writer = encryptor.wrap_output(&mut out)?;
    writer.write_all(plain)?;
    writer.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::checksum::hash_file;
    use crate::secret::Secret;
    use std::io::Read;
    use std::path::PathBuf;

    fn recipient_pair() -> (EncryptKey, age::x25519::Identity) {
        let identity = crate::crypt::keys::new_x25519_identity();
        let key = EncryptKey::Recipients(vec![identity.to_public()]);
        (key, identity)
    }

    fn decrypt(bytes: &[u8], identity: &dyn age::Identity) -> Vec<u8> {
        let decryptor = age::Decryptor::new(bytes).unwrap();
        let mut reader = decryptor.decrypt(std::iter::once(identity)).unwrap();
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        out
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn stream_keeps_plaintext_and_checksums_both() {
        let tmp = tempfile::tempdir().unwrap();
        let (key, identity) = recipient_pair();
        // Not a multiple of the batch or of age's chunk, and more than one batch.
        let plain = data(3 * BATCH_BYTES + 12_345);
        let age_path = tmp.path().join("x.dump.age");
        let plain_path = tmp.path().join("x.dump");
        let mut last = 0;
        let done = encrypt_stream(
            Source::bytes(plain.clone()),
            &key,
            File::create(&age_path).unwrap(),
            Some(File::create(&plain_path).unwrap()),
            ChecksumAlgorithm::Sha256,
            |n| last = n,
        )
        .await
        .unwrap();
        assert_eq!(last, plain.len() as u64);
        assert_eq!(done.plain_bytes, plain.len() as u64);
        let encrypted = std::fs::read(&age_path).unwrap();
        assert_eq!(done.age_bytes, encrypted.len() as u64);
        assert_eq!(std::fs::read(&plain_path).unwrap(), plain);
        assert_eq!(
            done.plain_digest,
            hash_file(&plain_path, ChecksumAlgorithm::Sha256).unwrap()
        );
        assert_eq!(
            done.age_digest,
            hash_file(&age_path, ChecksumAlgorithm::Sha256).unwrap()
        );
        assert_eq!(decrypt(&encrypted, &identity), plain);
    }

    #[test]
    fn the_stream_future_can_be_spawned() {
        fn assert_send<T: Send>(_: &T) {}
        let (key, _) = recipient_pair();
        let file = File::options().write(true).open("/dev/null").unwrap();
        let future = encrypt_stream(
            Source::bytes(Vec::new()),
            &key,
            file,
            None,
            ChecksumAlgorithm::None,
            |_| {},
        );
        assert_send(&future);
    }

    #[tokio::test]
    async fn empty_and_exact_batch_streams() {
        let tmp = tempfile::tempdir().unwrap();
        let (key, identity) = recipient_pair();
        for len in [0, BATCH_BYTES, 64 * 1024] {
            let plain = data(len);
            let path = tmp.path().join(format!("{len}.age"));
            let done = encrypt_stream(
                Source::bytes(plain.clone()),
                &key,
                File::create(&path).unwrap(),
                None,
                ChecksumAlgorithm::None,
                |_| {},
            )
            .await
            .unwrap();
            assert_eq!((done.plain_digest, done.age_digest), (None, None));
            assert_eq!(decrypt(&std::fs::read(&path).unwrap(), &identity), plain);
        }
    }

    /// A reader that fails after some bytes, as a broken pipe would.
    struct FailingReader(usize);

    impl Read for FailingReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("pipe broke"));
            }
            let n = self.0.min(buf.len()).min(10_000);
            buf[..n].fill(b'x');
            self.0 -= n;
            Ok(n)
        }
    }

    #[tokio::test]
    async fn a_read_error_is_reported_and_the_file_not_finished() {
        let tmp = tempfile::tempdir().unwrap();
        let (key, identity) = recipient_pair();
        let path = tmp.path().join("broken.age");
        let error = encrypt_stream(
            Source::Reader(Box::new(FailingReader(2 * BATCH_BYTES + 5))),
            &key,
            File::create(&path).unwrap(),
            None,
            ChecksumAlgorithm::Sha1,
            |_| {},
        )
        .await
        .unwrap_err();
        assert_eq!(error.to_string(), "pipe broke");
        // What reached the disk is not a complete age file.
        let partial = std::fs::read(&path).unwrap();
        let decryptor = age::Decryptor::new(&partial[..]).unwrap();
        let mut reader = decryptor
            .decrypt(std::iter::once(&identity as &dyn age::Identity))
            .unwrap();
        assert!(reader.read_to_end(&mut Vec::new()).is_err());
    }

    #[test]
    fn small_files_in_memory_with_a_passphrase() {
        let key = EncryptKey::passphrase(Secret::new("correct horse".into())).unwrap();
        let encrypted = encrypt_to_vec(&key, b"abc  db.dump\n").unwrap();
        let header = String::from_utf8_lossy(&encrypted[..80]).into_owned();
        let stanza = header.lines().nth(1).unwrap();
        assert!(
            stanza.starts_with("-> scrypt ") && stanza.ends_with(" 18"),
            "{header}"
        );
        let key =
            crate::crypt::DecryptKey::passphrase(&Secret::new("correct horse".into())).unwrap();
        let crate::crypt::DecryptKey::Passphrase(identity) = key else {
            unreachable!()
        };
        assert_eq!(decrypt(&encrypted, &identity), b"abc  db.dump\n");
    }

    /// CPU seconds (user + system) of the whole process so far.
    fn cpu_seconds() -> f64 {
        use nix::sys::resource::{getrusage, UsageWho};
        let usage = getrusage(UsageWho::RUSAGE_SELF).unwrap();
        let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        secs(usage.user_time()) + secs(usage.system_time())
    }

    /// Throughput figures, not a timed test: `SAFE_BACKUP_BENCH_DIR=/dev/shm cargo test
    /// --release --lib crypt_throughput -- --ignored --nocapture`. Prints MB per wall second
    /// and per CPU second (this machine is shared: wall time varies with the load).
    #[test]
    #[ignore = "prints throughput figures; run in release"]
    fn crypt_throughput() {
        let base = std::env::var_os("SAFE_BACKUP_BENCH_DIR").map(PathBuf::from);
        let tmp = tempfile::tempdir_in(base.unwrap_or_else(std::env::temp_dir)).unwrap();
        let plain = data(256 * 1024 * 1024);
        let mb = plain.len() as f64 / 1e6;
        let (key, _) = recipient_pair();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let time = |label: &str, work: &mut dyn FnMut()| {
            let (wall, cpu) = (std::time::Instant::now(), cpu_seconds());
            work();
            println!(
                "{label}: {:.0} MB/s wall, {:.0} MB per CPU second",
                mb / wall.elapsed().as_secs_f64(),
                mb / (cpu_seconds() - cpu)
            );
        };
        for _ in 0..2 {
            time(
                "stream to a file, sha256 (today's copy_hashed)",
                &mut || {
                    runtime.block_on(async {
                        let path = tmp.path().join("plain");
                        let mut file = tokio::fs::File::create(path).await.unwrap();
                        crate::dump::checksum::copy_hashed(
                            &mut &plain[..],
                            &mut file,
                            ChecksumAlgorithm::Sha256,
                            |_| {},
                        )
                        .await
                        .unwrap();
                        file.sync_all().await.unwrap();
                    })
                },
            );
            time("encrypt_stream to .age, sha256 of both", &mut || {
                let file = File::create(tmp.path().join("x.age")).unwrap();
                runtime
                    .block_on(encrypt_stream(
                        Source::bytes(plain.clone()),
                        &key,
                        file,
                        None,
                        ChecksumAlgorithm::Sha256,
                        |_| {},
                    ))
                    .unwrap();
            });
            time("encrypt_stream with keep-src", &mut || {
                let file = File::create(tmp.path().join("y.age")).unwrap();
                let keep = File::create(tmp.path().join("y")).unwrap();
                runtime
                    .block_on(encrypt_stream(
                        Source::bytes(plain.clone()),
                        &key,
                        file,
                        Some(keep),
                        ChecksumAlgorithm::Sha256,
                        |_| {},
                    ))
                    .unwrap();
            });
        }
        time("sha256 alone", &mut || {
            let mut hasher = Hasher::new(ChecksumAlgorithm::Sha256).unwrap();
            for part in plain.chunks(BATCH_BYTES) {
                hasher.update(part);
            }
            hasher.finish_hex();
        });
        time("age alone, to a sink", &mut || {
            let mut out = key.encryptor().unwrap().wrap_output(io::sink()).unwrap();
            for part in plain.chunks(BATCH_BYTES) {
                out.write_all(part).unwrap();
            }
            out.finish().unwrap();
        });
        let (wall, cpu) = (std::time::Instant::now(), cpu_seconds());
        let passphrase = EncryptKey::passphrase(Secret::new("pw".into())).unwrap();
        encrypt_to_vec(&passphrase, b"x").unwrap();
        println!(
            "scrypt 2^18 header: {:.2} s wall, {:.2} s CPU",
            wall.elapsed().as_secs_f64(),
            cpu_seconds() - cpu
        );
    }
}
