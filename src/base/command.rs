//! `pgbase`'s command line (clap) and the validated request it becomes.

use std::path::{Path, PathBuf};

use crate::args::{ArchiveArgs, Checkpoint, LogArgs, ServerArgs};
use crate::backup::ArchiveOptions;
use crate::base::compress::{parse_compression, Compression};
use crate::base::error::BaseError;
use crate::config::{take_passphrase_from_env, BackupConfig, EncryptionConfig, EncryptionFlags};
use crate::crypt::EncryptKey;
use crate::replication::ManifestChecksums;
use crate::values::ChecksumAlgorithm;

/// Take a base backup of a running PostgreSQL (10-18) over the replication protocol, as
/// pg_basebackup does: a tar set (base.tar, <oid>.tar, pg_wal.tar, backup_manifest) or a data
/// directory, with the WAL it needs streamed from a temporary slot.
///
/// The directory holds pgbase.incomplete until the backup is finished and synced to disk.
#[derive(clap::Parser, Debug)]
#[command(
    name = "pgbase",
    version,
    disable_help_flag = true,
    after_help = crate::exit::exit_codes_help(),
    mut_arg("encrypt", |arg| arg.help(
        "Encrypt every file written (tar format) with age, as pgback does [env: PGBACK_ENCRYPT]"
    )),
    mut_arg("cipher_public_key", |arg| arg.help(
        "age public keys (age1...) to encrypt to, comma-separated; without one, the passphrase \
         of PGBK_CIPHER_PASS is used"
    )),
    // pgback's flags that pgbase has no use for: no plaintext copies, nothing to decrypt.
    mut_arg("encrypt_keep_src", |arg| arg.hide(true)),
    mut_arg("no_encrypt_keep_src", |arg| arg.hide(true)),
    mut_arg("cipher_identity", |arg| arg.hide(true)),
    // The hook pair's archive check, run after a -X none backup.
    mut_arg("archive_check", |arg| arg.help(
        "-X none: auto checks that the backup's WAL is archived (--wal-archive, else \
         --restore-command, else the server's pg_stat_archiver); none checks nothing [default: auto]"
    )),
    mut_arg("wal_archive", |arg| arg.help(
        "-X none: check that each segment is in DIR (plain, .gz .zst .lz4 .bz2 .xz, pgBackRest's \
         -SHA1 names)"
    )),
    mut_arg("restore_command", |arg| arg.help(
        "-X none: fetch each segment with this restore_command (%f, %p; run by sh) into a \
         private temporary directory and check its page header"
    )),
    mut_arg("archive_timeout", |arg| arg.help(
        "-X none: how long the archive check waits for a segment; restarts whenever another \
         one arrives; 0 = no limit [default: 60s]"
    )),
    mut_arg("wait_for_archive", |arg| arg.hide(true))
)]
pub struct PgbaseArgs {
    /// How to reach the server (replication=true is added).
    #[command(flatten)]
    pub server: ServerArgs,

    /// Directory to write the backup into; must be new or empty
    #[arg(short = 'D', long = "pgdata", value_name = "DIR")]
    pub dir: PathBuf,

    /// Output format: p (a data directory) or t (tar files)
    #[arg(short = 'F', long, value_enum, default_value_t = Format::Plain)]
    pub format: Format,

    /// How the backup gets its WAL: stream (a second connection from a temporary slot),
    /// fetch (in the main archive at the end), none (from your WAL archive)
    #[arg(short = 'X', long, value_enum, default_value_t = WalMethod::Stream)]
    pub wal_method: WalMethod,

    /// The start's checkpoint: fast (immediate) or spread
    #[arg(short = 'c', long, value_enum, default_value_t = Checkpoint::Spread)]
    pub checkpoint: Checkpoint,

    /// Backup label
    #[arg(short = 'l', long, default_value = "pgbase base backup")]
    pub label: String,

    /// Transfer limit of the server, in kB/s (32 to 1048576)
    #[arg(short = 'r', long, value_name = "RATE", value_parser = clap::value_parser!(u32).range(32..=1_048_576))]
    pub max_rate: Option<u32>,

    /// Show progress on stderr
    #[arg(short = 'P', long)]
    pub progress: bool,

    /// Relocate the tablespace in OLDDIR to NEWDIR (plain format); "=" in a path as "\="
    #[arg(short = 'T', long = "tablespace-mapping", value_name = "OLDDIR=NEWDIR")]
    pub tablespace_mapping: Vec<String>,

    /// Compress the tar files (-F t): [client-|server-]METHOD[:LEVEL] with gzip, lz4, zstd or
    /// none, or a bare gzip LEVEL; server- needs PostgreSQL 15+
    #[arg(short = 'Z', long = "compress", value_name = "METHOD")]
    pub compress: Option<String>,

    /// --encrypt and its keys, as pgback takes them (tar format).
    #[command(flatten)]
    pub encryption: EncryptionFlags,

    /// Do not ask for a backup manifest (13+)
    #[arg(long)]
    pub no_manifest: bool,

    /// Checksums the manifest lists per file
    #[arg(long, value_enum, value_name = "ALGORITHM", default_value_t = ManifestChecksums::Crc32c)]
    pub manifest_checksums: ManifestChecksums,

    /// Checksum file written beside each tar file and the manifest, as pgback writes them
    /// (sha1, sha224, sha256, sha384, sha512, none)
    #[arg(long, value_name = "ALGORITHM", default_value = "sha256")]
    pub checksum_algo: ChecksumAlgorithm,

    /// -v, --log-format and --help, as the hook pair's.
    #[command(flatten)]
    pub log: LogArgs,

    /// `-X none`: the hook pair's archive check on the backup's WAL, with its flags.
    #[command(flatten)]
    pub archive: ArchiveArgs,

    /// Keep what a failed or interrupted run wrote, marked pgbase.incomplete (to look at it;
    /// never restore it)
    #[arg(short = 'n', long)]
    pub no_clean: bool,
}

/// pg_basebackup's `-F`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A data directory.
    #[value(name = "p", alias = "plain")]
    Plain,
    /// Tar files.
    #[value(name = "t", alias = "tar")]
    Tar,
}

/// pg_basebackup's `-X`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalMethod {
    /// Streamed over a second connection from a temporary slot.
    Stream,
    /// Included by the server at the end of the main archive.
    Fetch,
    /// Not included: restore it from the WAL archive.
    None,
}

/// A validated `pgbase` run.
#[derive(Clone, Debug)]
pub struct Request {
    /// The backup directory.
    pub dir: PathBuf,
    /// Tar or plain.
    pub format: Format,
    /// Where the WAL comes from.
    pub wal_method: WalMethod,
    /// Fast or spread checkpoint.
    pub checkpoint: Checkpoint,
    /// The label.
    pub label: String,
    /// Progress on stderr.
    pub progress: bool,
    /// The server's transfer limit in kB/s.
    pub max_rate: Option<u32>,
    /// `-T` pairs, old location to new.
    pub tablespace_mapping: Vec<(PathBuf, PathBuf)>,
    /// The manifest's checksums; `None` for no manifest.
    pub manifest: Option<ManifestChecksums>,
    /// Our checksum files.
    pub checksum_algo: ChecksumAlgorithm,
    /// `-Z`: client- or server-side compression of the tar files.
    pub compression: Option<Compression>,
    /// `--encrypt`: the age key every file is encrypted with.
    pub encrypt: Option<EncryptKey>,
    /// `-X none`: where and how long the archive check looks for the backup's WAL.
    pub archive: ArchiveOptions,
    /// `-n`: a failed run leaves its files, marked incomplete.
    pub no_clean: bool,
}

impl PgbaseArgs {
    /// Checks what clap cannot.
    pub fn request(&self) -> Result<Request, BaseError> {
        let tablespace_mapping = self
            .tablespace_mapping
            .iter()
            .map(|value| parse_mapping(value))
            .collect::<Result<Vec<_>, _>>()?;
        if self.format == Format::Tar && !tablespace_mapping.is_empty() {
            return Err(BaseError::Usage(
                "-T/--tablespace-mapping works only with the plain format (-F p)".to_owned(),
            ));
        }
        let compression = match &self.compress {
            Some(spec) => parse_compression(spec).map_err(BaseError::Usage)?,
            None => None,
        };
        if self.format == Format::Plain && compression.is_some() {
            return Err(BaseError::Usage(
                "-Z/--compress works only with the tar format (-F t)".to_owned(),
            ));
        }
        let encrypt = self.encrypt_key()?;
        let archive = self.archive_options()?;
        if self.format == Format::Plain && encrypt.is_some() {
            return Err(BaseError::Usage(
                "--encrypt works only with the tar format (-F t)".to_owned(),
            ));
        }
        Ok(Request {
            dir: self.dir.clone(),
            format: self.format,
            wal_method: self.wal_method,
            checkpoint: self.checkpoint,
            label: self.label.clone(),
            progress: self.progress,
            max_rate: self.max_rate,
            tablespace_mapping,
            manifest: (!self.no_manifest).then_some(self.manifest_checksums),
            checksum_algo: self.checksum_algo,
            compression,
            encrypt,
            archive,
            no_clean: self.no_clean,
        })
    }

    /// The archive check's flags over the hook pair's defaults; they mean something with
    /// `-X none` only.
    fn archive_options(&self) -> Result<ArchiveOptions, BaseError> {
        let flags = &self.archive;
        let given = flags.archive_check.is_some()
            || flags.wal_archive.is_some()
            || flags.restore_command.is_some()
            || flags.archive_timeout.is_some();
        if given && self.wal_method != WalMethod::None {
            return Err(BaseError::Usage(
                "--archive-check, --wal-archive, --restore-command and --archive-timeout work \
                 only with -X none (the backup carries its WAL otherwise)"
                    .to_owned(),
            ));
        }
        let mut config = BackupConfig::default();
        config
            .apply_archive(flags)
            .map_err(|invalid| BaseError::Usage(format!("{}: {}", invalid.key, invalid.message)))?;
        Ok(ArchiveOptions::from_config(&config))
    }

    /// pgback's encryption settings from the flags, `PGBACK_*` and `PGBK_CIPHER_PASS` (taken
    /// out of the environment); pgbase reads no configuration file yet.
    fn encrypt_key(&self) -> Result<Option<EncryptKey>, BaseError> {
        if self.encryption.encrypt_keep_src == Some(true) && !self.encryption.no_encrypt_keep_src {
            return Err(BaseError::Usage(
                "pgbase does not keep plaintext copies: --encrypt-keep-src is pgback's".to_owned(),
            ));
        }
        let mut config = EncryptionConfig::default();
        config.apply_flags(&self.encryption);
        if !config.encrypt {
            return Ok(None);
        }
        let passphrase = take_passphrase_from_env().map_err(|e| BaseError::Encryption(e.into()))?;
        Ok(config.encrypt_key(passphrase.as_ref())?)
    }
}

/// `OLDDIR=NEWDIR`, both absolute; `\=` is an `=` inside a path.
pub fn parse_mapping(value: &str) -> Result<(PathBuf, PathBuf), BaseError> {
    let bad = |reason: &str| {
        BaseError::Usage(format!("invalid tablespace mapping \"{value}\": {reason}"))
    };
    let mut old = String::new();
    let mut new = String::new();
    let mut seen_equals = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        let target = if seen_equals { &mut new } else { &mut old };
        match c {
            '\\' if chars.clone().next() == Some('=') => {
                target.push('=');
                chars.next();
            }
            '=' if !seen_equals => seen_equals = true,
            '=' => return Err(bad("multiple \"=\" signs")),
            c => target.push(c),
        }
    }
    if !seen_equals || old.is_empty() || new.is_empty() {
        return Err(bad("must be OLDDIR=NEWDIR"));
    }
    if !Path::new(&old).is_absolute() || !Path::new(&new).is_absolute() {
        return Err(bad("both directories must be absolute paths"));
    }
    Ok((PathBuf::from(old), PathBuf::from(new)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory as _, Parser as _};

    #[test]
    fn definitions_are_consistent_and_mappings_parse() {
        PgbaseArgs::command().debug_assert();
        assert_eq!(
            parse_mapping("/a=/b").unwrap(),
            (PathBuf::from("/a"), PathBuf::from("/b"))
        );
        assert_eq!(
            parse_mapping(r"/a\=x=/b").unwrap(),
            (PathBuf::from("/a=x"), PathBuf::from("/b"))
        );
        for bad in ["/a", "a=/b", "/a=b", "/a=/b=/c", "=/b"] {
            assert!(parse_mapping(bad).is_err(), "{bad}");
        }
        let args = PgbaseArgs::parse_from(["pgbase", "-D", "/x", "-F", "t", "-T", "/a=/b"]);
        assert!(matches!(args.request(), Err(BaseError::Usage(_))));
        let args = PgbaseArgs::parse_from(["pgbase", "-D", "/x", "--no-manifest"]);
        let request = args.request().unwrap();
        assert_eq!(request.manifest, None);
        assert_eq!(request.format, Format::Plain);
        assert_eq!(request.wal_method, WalMethod::Stream);
        assert_eq!(request.checksum_algo, ChecksumAlgorithm::Sha256);
        assert_eq!(request.compression, None);
        let args = PgbaseArgs::parse_from(["pgbase", "-D", "/x", "-Z", "zstd:3"]);
        assert!(matches!(args.request(), Err(BaseError::Usage(_))));
        let args = PgbaseArgs::parse_from(["pgbase", "-D", "/x", "-F", "t", "-Z", "5"]);
        assert!(args.request().unwrap().compression.is_some());
        let args = PgbaseArgs::parse_from(["pgbase", "-D", "/x", "-F", "t", "-Z", "xz"]);
        assert!(matches!(args.request(), Err(BaseError::Usage(_))));
        let key = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
        let encrypted = [
            "pgbase",
            "-D",
            "/x",
            "--encrypt",
            "--cipher-public-key",
            key,
        ];
        let args = PgbaseArgs::parse_from(encrypted);
        assert!(matches!(args.request(), Err(BaseError::Usage(_))));
        let args = PgbaseArgs::parse_from(encrypted.iter().chain(&["-F", "t"]));
        assert!(args.request().unwrap().encrypt.is_some());
        let args = PgbaseArgs::parse_from(["pgbase", "-D", "/x", "-F", "t", "--encrypt-keep-src"]);
        assert!(matches!(args.request(), Err(BaseError::Usage(_))));
    }
}
