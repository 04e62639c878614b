//! Encrypted backup files (`--encrypt`). pg_dump's stdout (plain, custom, tar), pg_dumpall's
//! and the small files written from memory (settings, hba, ident, createdb.sql) flow through
//! the checksum and the age encryptor straight into `<file>.age`: no plaintext byte touches
//! the disk, unless `--encrypt-keep-src` asks for `<file>` too, written from the same stream.
//! A directory dump is the exception: pg_dump writes its files itself, so each is encrypted
//! once pg_dump has finished and its plaintext removed at once.
//!
//! Checksums as pg_back names them: `<file>.age.<algo>` of the encrypted file, and the
//! plaintext's `<file>.<algo>`, computed on the stream and stored encrypted as
//! `<file>.<algo>.age` (with its own `<file>.<algo>.age.<algo>`).

use std::io;
use std::path::Path;

use tokio::process::{ChildStdout, Command};

use super::context::{RunContext, ToolOutput};
use super::output::{self, OutputError, WrittenFile};
use super::report::DumpError;
use crate::checksum::checksum_line;
use crate::crypt::{
    checksum_path, encrypted_checksum_path, encrypted_path, encrypted_plain_checksum_path,
};
use crate::crypt::{encrypt_directory, encrypt_stream, encrypt_to_vec, CryptError, EncryptKey};
use crate::files::{file_name, temp_path, AtomicFile, FileOptions};
use crate::process::{run_child, ChildName};
use crate::pump::Source;
use crate::values::{ChecksumAlgorithm, FileMode};

/// How a run encrypts: built once from `[dump.encryption]`.
#[derive(Debug, Clone)]
pub struct Encryption {
    /// The passphrase or the recipients.
    pub key: EncryptKey,
    /// Keep the plaintext beside the encrypted files.
    pub keep_src: bool,
}

/// A stream encrypted into temporary files, not yet under its final names.
pub(super) struct Pending {
    age: AtomicFile,
    plain: Option<AtomicFile>,
    plain_digest: Option<String>,
    age_digest: Option<String>,
    plain_bytes: u64,
    age_bytes: u64,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> OutputError + '_ {
    move |source| OutputError {
        path: path.to_path_buf(),
        source,
    }
}

fn options(mode: FileMode) -> FileOptions {
    FileOptions {
        mode: mode.bits(),
        adopt_dir_owner: false,
    }
}

/// Whatever the file of a library error is, as an [`OutputError`] of the run.
fn output_error(error: CryptError, fallback: &Path) -> OutputError {
    match error {
        CryptError::Write { path, source } | CryptError::Read { path, source } => {
            OutputError { path, source }
        }
        other => OutputError {
            path: fallback.to_path_buf(),
            source: io::Error::other(other.to_string()),
        },
    }
}

impl Encryption {
    /// Encrypts `reader` into `temp(<path>.age)` (and `temp(<path>)` with keep-src).
    pub(super) async fn stream(
        &self,
        reader: Source,
        path: &Path,
        algorithm: ChecksumAlgorithm,
        mode: FileMode,
        on_progress: impl FnMut(u64),
    ) -> Result<Pending, OutputError> {
        let age_path = encrypted_path(path);
        let age = AtomicFile::create(&age_path, &temp_path(&age_path), options(mode))
            .map_err(at(&age_path))?;
        let plain = match self.keep_src {
            true => {
                Some(AtomicFile::create(path, &temp_path(path), options(mode)).map_err(at(path))?)
            }
            false => None,
        };
        let age_file = age.file().try_clone().map_err(at(&age_path))?;
        let plain_file = match &plain {
            Some(file) => Some(file.file().try_clone().map_err(at(path))?),
            None => None,
        };
        let done = encrypt_stream(
            reader,
            &self.key,
            age_file,
            plain_file,
            algorithm,
            on_progress,
        )
        .await
        .map_err(at(&age_path))?;
        Ok(Pending {
            age,
            plain,
            plain_digest: done.plain_digest,
            age_digest: done.age_digest,
            plain_bytes: done.plain_bytes,
            age_bytes: done.age_bytes,
        })
    }

    /// Puts a complete stream under its final names, then writes its checksum files.
    pub(super) async fn commit(
        &self,
        pending: Pending,
        path: &Path,
        algorithm: ChecksumAlgorithm,
        mode: FileMode,
    ) -> Result<Vec<WrittenFile>, OutputError> {
        let age_path = encrypted_path(path);
        pending.age.commit().map_err(at(&age_path))?;
        if let Some(plain) = pending.plain {
            plain.commit().map_err(at(path))?;
        }
        let age_line = pending
            .age_digest
            .map(|hex| checksum_line(&hex, &file_name(&age_path)));
        let plain_line = pending
            .plain_digest
            .map(|hex| checksum_line(&hex, &file_name(path)));
        let mut written = self
            .checksums(path, algorithm, mode, age_line, plain_line)
            .await?;
        written[0].bytes = pending.age_bytes;
        if self.keep_src {
            written[1].bytes = pending.plain_bytes;
        }
        Ok(written)
    }

    /// The checksum files of `path` (a file or a dump directory) from their lines; returns the
    /// encrypted entry first, then the plaintext one (keep-src), then `<path>.<algo>.age`.
    async fn checksums(
        &self,
        path: &Path,
        algorithm: ChecksumAlgorithm,
        mode: FileMode,
        age_lines: Option<String>,
        plain_lines: Option<String>,
    ) -> Result<Vec<WrittenFile>, OutputError> {
        let none = ChecksumAlgorithm::None;
        let mut encrypted = WrittenFile {
            path: encrypted_path(path),
            checksum_path: None,
            bytes: 0,
        };
        let mut plain = WrittenFile {
            path: path.to_path_buf(),
            checksum_path: None,
            bytes: 0,
        };
        let mut sums = None;
        if let (Some(age_lines), Some(plain_lines)) = (age_lines, plain_lines) {
            let age_sum = encrypted_checksum_path(path, algorithm);
            output::write_bytes(&age_sum, age_lines.as_bytes(), none, mode).await?;
            encrypted.checksum_path = Some(age_sum);
            let sealed_path = encrypted_plain_checksum_path(path, algorithm);
            let key = self.key.clone();
            let lines = plain_lines.clone();
            // With a passphrase this runs scrypt: off the runtime's threads.
            let sealed =
                tokio::task::spawn_blocking(move || encrypt_to_vec(&key, lines.as_bytes()))
                    .await
                    .map_err(|e| io::Error::other(e.to_string()))
                    .and_then(|sealed| sealed)
                    .map_err(at(&sealed_path))?;
            sums = Some(output::write_bytes(&sealed_path, &sealed, algorithm, mode).await?);
            if self.keep_src {
                let plain_sum = checksum_path(path, algorithm);
                output::write_bytes(&plain_sum, plain_lines.as_bytes(), none, mode).await?;
                plain.checksum_path = Some(plain_sum);
            }
        }
        let mut written = vec![encrypted];
        if self.keep_src {
            written.push(plain);
        }
        written.extend(sums);
        Ok(written)
    }

    /// Writes a small file held in memory (settings, hba, ident, createdb.sql) encrypted.
    pub async fn write_bytes(
        &self,
        path: &Path,
        bytes: &[u8],
        algorithm: ChecksumAlgorithm,
        mode: FileMode,
    ) -> Result<Vec<WrittenFile>, OutputError> {
        remove_partials(path);
        let reader = Source::bytes(bytes.to_vec());
        let pending = self.stream(reader, path, algorithm, mode, |_| {}).await?;
        self.commit(pending, path, algorithm, mode).await
    }

    /// Runs a tool whose output becomes `out.path`, encrypted (see the module's doc); stderr
    /// lines are logged as `[label] line`. The files get their final names only once the tool
    /// has succeeded; on failure nothing stays under a final or a temporary name.
    pub async fn run_tool(
        &self,
        ctx: &RunContext,
        command: Command,
        name: ChildName<'_>,
        out: ToolOutput<'_>,
        jobs: u32,
    ) -> Result<Vec<WrittenFile>, DumpError> {
        remove_partials(out.path);
        if out.directory {
            let result = self.run_directory(ctx, command, name, out, jobs).await;
            if result.is_err() {
                output::remove_partial(out.path);
            }
            return result;
        }
        let mode = ctx.dump.backup_file_mode;
        let write = |stdout: ChildStdout| async move {
            let stdout = Source::child_stdout(stdout).map_err(at(out.path))?;
            let mut progress = ctx.progress().start(name.label);
            self.stream(stdout, out.path, out.checksum, mode, |total| {
                progress.update(total)
            })
            .await
        };
        let (pending, ended) = run_child(command, name, None, write).await?.into_parts();
        // A failed write (disk full) makes the tool fail on the closed pipe: not the cause.
        let pending = pending?;
        ended?;
        Ok(self.commit(pending, out.path, out.checksum, mode).await?)
    }

    /// `-Fd`: pg_dump writes into `temp(<path>)`; each file is then encrypted (its plaintext
    /// removed as soon as its `.age` is on disk), and the directory renamed into place.
    async fn run_directory(
        &self,
        ctx: &RunContext,
        command: Command,
        name: ChildName<'_>,
        out: ToolOutput<'_>,
        jobs: u32,
    ) -> Result<Vec<WrittenFile>, DumpError> {
        run_child(command, name, None, |_| async {})
            .await?
            .success()?;
        let (path, algorithm, mode) = (
            out.path.to_path_buf(),
            out.checksum,
            ctx.dump.backup_file_mode,
        );
        let key = self.key.clone();
        let keep_src = self.keep_src;
        let blocking = move || {
            let tmp = temp_path(&path);
            let entries =
                encrypt_directory(&tmp, &key, algorithm, mode.bits(), keep_src, jobs as usize)
                    .map_err(|e| output_error(e, &tmp))?;
            output::finish_directory(&path, ChecksumAlgorithm::None, mode)?;
            Ok::<_, OutputError>(entries)
        };
        let entries = tokio::task::spawn_blocking(blocking)
            .await
            .map_err(|e| DumpError::Catalog(format!("internal: {e}")))??;
        let dir = file_name(out.path);
        let lines = |digest: fn(&crate::crypt::EncryptedEntry) -> Option<(&str, &Path)>| {
            entries
                .iter()
                .map(|entry| {
                    digest(entry).map(|(hex, file)| {
                        checksum_line(hex, &format!("{dir}/{}", file_name(file)))
                    })
                })
                .collect::<Option<String>>()
        };
        let age_lines = lines(|e| Some((e.age_digest.as_deref()?, &e.age_path)));
        let plain_lines = lines(|e| Some((e.plain_digest.as_deref()?, &e.plain_path)));
        let (age_lines, plain_lines) = match out.checksum {
            ChecksumAlgorithm::None => (None, None),
            _ => (age_lines, plain_lines),
        };
        let mut written = self
            .checksums(out.path, out.checksum, mode, age_lines, plain_lines)
            .await?;
        // The directory keeps its name; its files carry `.age`.
        written[0].path = out.path.to_path_buf();
        written[0].bytes = entries.iter().map(|e| e.age_bytes).sum();
        if self.keep_src {
            written[1].bytes = entries.iter().map(|e| e.plain_bytes).sum();
        }
        Ok(written)
    }
}

/// Removes what an interrupted earlier run left under the temporary names of `path`.
fn remove_partials(path: &Path) {
    output::remove_partial(&encrypted_path(path));
    output::remove_partial(path);
}

/// Runs a tool whose output becomes `out.path`: encrypted when asked
/// ([`Encryption::run_tool`]), else through [`RunContext::run_to_file`].
pub async fn run_tool(
    ctx: &RunContext,
    encryption: Option<&Encryption>,
    command: Command,
    name: ChildName<'_>,
    out: ToolOutput<'_>,
    jobs: u32,
) -> Result<Vec<WrittenFile>, DumpError> {
    match encryption {
        Some(encryption) => encryption.run_tool(ctx, command, name, out, jobs).await,
        None => Ok(ctx
            .run_to_file(command, name, out)
            .await?
            .into_iter()
            .collect()),
    }
}

/// Writes a small file from memory, encrypted when asked.
pub async fn write_small(
    ctx: &RunContext,
    encryption: Option<&Encryption>,
    path: &Path,
    bytes: &[u8],
    checksum: ChecksumAlgorithm,
) -> Result<Vec<WrittenFile>, OutputError> {
    let mode = ctx.dump.backup_file_mode;
    match encryption {
        Some(encryption) => encryption.write_bytes(path, bytes, checksum, mode).await,
        None => Ok(vec![
            output::write_bytes(path, bytes, checksum, mode).await?,
        ]),
    }
}
