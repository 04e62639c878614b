//! `pgbase`'s command line (clap) and the validated request it becomes.

use std::path::{Path, PathBuf};

use crate::args::{ArchiveArgs, Checkpoint, LogArgs, ServerArgs};
use crate::backup::ArchiveOptions;
use crate::base::error::BaseError;
use crate::compress::{parse_compression, Compression};
use crate::config::{take_passphrase_from_env, BackupConfig, EncryptionConfig, EncryptionFlags};
use crate::config::{
    BaseFlags, Config, ConnectionConfig, RemoteFlags, RemoteSettings, SetupError, StoreKind,
};
use crate::crypt::EncryptKey;
use crate::replication::ManifestChecksums;
use crate::secret::Secret;
use crate::values::ChecksumAlgorithm;
use crate::values::{Keep, PurgeInterval};

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
        "Encrypt every file written (tar format) with age, as pgback does [config: \
         dump.encryption.encrypt] [env: PGBACK_ENCRYPT]"
    )),
    mut_arg("cipher_public_key", |arg| arg.help(
        "age public keys (age1...) to encrypt to, comma-separated; without one, the passphrase \
         of PGBK_CIPHER_PASS is used [config: dump.encryption.cipher_public_key]"
    )),
    // pgback's flags that pgbase has no use for: no plaintext copies, nothing to decrypt.
    mut_arg("encrypt_keep_src", |arg| arg.hide(true)),
    mut_arg("no_encrypt_keep_src", |arg| arg.hide(true)),
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
         private temporary directory and check its page header; with --restore: add \
         restore_command = 'CMD' to postgresql.auto.conf (recovery.conf on 10 and 11)"
    )),
    mut_arg("archive_timeout", |arg| arg.help(
        "-X none: how long the archive check waits for a segment; restarts whenever another \
         one arrives; 0 = no limit [default: 60s]"
    )),
    mut_arg("wait_for_archive", |arg| arg.hide(true)),
    mut_arg("cipher_identity", |arg| arg.help(
        "With --restore: age identity file (AGE-SECRET-KEY-1..., mode 0600) of an encrypted \
         backup; without one, the passphrase of PGBK_CIPHER_PASS [config: \
         dump.encryption.cipher_private_key]"
    )),
    mut_arg("list_remote", |arg| arg.hide(true)),
    mut_arg("download", |arg| arg.help(
        "With --restore: fetch BACKUP (the name of the backup directory) from this store: s3, \
         b2, gcs, azure, sftp"
    )),
    mut_arg("purge_remote", |arg| arg.help(
        "With --purge-older-than: purge the old backups on the --upload store too [config: \
         dump.remote.purge_remote]"
    ))
)]
pub struct PgbaseArgs {
    /// How to reach the server (replication=true is added).
    #[command(flatten)]
    pub server: ServerArgs,

    /// Directory to write the backup into; must be new or empty
    #[arg(short = 'D', long = "pgdata", value_name = "DIR")]
    pub dir: PathBuf,

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

    /// --encrypt and its keys, as pgback takes them (tar format).
    #[command(flatten)]
    pub encryption: EncryptionFlags,

    /// Do not ask for a backup manifest (13+)
    #[arg(long)]
    pub no_manifest: bool,

    /// Checksums the manifest lists per file
    #[arg(long, value_enum, value_name = "ALGORITHM", default_value_t = ManifestChecksums::Crc32c)]
    pub manifest_checksums: ManifestChecksums,

    // baseoff's block: [base], upload, purge, metrics, --json, --restore.
    /// The keys of [base]: format, WAL, checkpoint, compression, checksums, purge.
    #[command(flatten)]
    pub base: BaseFlags,

    /// Configuration file: [base], and pgback's [dump.encryption] and [dump.remote] [default:
    /// /etc/safe-backup/config.toml when it exists]
    #[arg(long, env = "SAFE_BACKUP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// pgback's upload settings: --upload STORE (tar format), --upload-prefix, the stores'
    /// flags; with --restore, --download STORE fetches BACKUP from the store.
    #[command(flatten)]
    pub remote: RemoteFlags,

    /// Write the Prometheus metrics of this run (textfile-collector format: times, outcome,
    /// bytes, the backup's LSNs, the upload) to FILE when it ends, failed or not; replaced
    /// atomically
    #[arg(long, env = "PGBASE_METRICS_FILE", value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,

    /// Print the result (the backup's LSNs, files, upload; or the restore's) as JSON on stdout
    #[arg(long)]
    pub json: bool,

    /// Restore the backup BACKUP (a directory pgbase wrote; with --download STORE, its name
    /// on the store) into the new data directory -D, tablespaces relocated by -T
    #[arg(long, value_name = "BACKUP")]
    pub restore: Option<String>,

    /// With --restore: write recovery.signal, so the server recovers (to the end of its WAL,
    /// or of restore_command's) and then promotes
    #[arg(long, requires = "restore")]
    pub recovery_signal: bool,

    // end of baseoff's block
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

pub use crate::config::{BaseFormat as Format, WalMethod};

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
    /// `[dump.remote]` with its flags: `upload` says where each finished file goes.
    pub remote: RemoteSettings,
    /// `--purge-older-than` and `--purge-min-keep`, when a purge was asked for.
    pub purge: Option<(PurgeInterval, Keep)>,
    /// `[connection]`, which `-d`, `-h`, `-p` and `-U` override.
    pub connection: ConnectionConfig,
}

/// A validated `pgbase --restore`.
#[derive(Clone, Debug)]
pub struct RestoreRequest {
    /// `--restore BACKUP`: a directory, or the backup's name on the `--download` store.
    pub backup: String,
    /// The new data directory (`-D`).
    pub dir: PathBuf,
    /// `-T` pairs, the tablespace's old location to its new one.
    pub tablespace_mapping: Vec<(PathBuf, PathBuf)>,
    /// `--recovery-signal`.
    pub recovery_signal: bool,
    /// `--restore-command`.
    pub restore_command: Option<String>,
    /// `[dump.remote]` with its flags: `download` names the store BACKUP is on.
    pub remote: RemoteSettings,
    /// `[dump.encryption]` with `--cipher-identity`: the key of an encrypted backup.
    pub encryption: EncryptionConfig,
    /// `PGBK_CIPHER_PASS`, taken out of the environment.
    pub passphrase: Option<Secret>,
    /// The configuration file read, which may hold the identity itself.
    pub config_file: Option<PathBuf>,
}

/// What a `pgbase` command line asks for.
#[derive(Clone, Debug)]
pub enum Mode {
    /// A backup.
    Backup(Box<Request>),
    /// `--restore`.
    Restore(Box<RestoreRequest>),
}

impl PgbaseArgs {
    /// The configuration file (`--config`, else the default path) under the flags and
    /// variables, checked: a backup or a restore.
    pub fn mode(&self) -> Result<Mode, BaseError> {
        let (config, path) = Config::load(self.config.as_deref()).map_err(SetupError::from)?;
        config
            .dump
            .check_secret_files(path.as_deref())
            .map_err(|e| BaseError::Encryption(e.into()))?;
        if self.remote.list_remote.is_some() {
            return Err(BaseError::Usage(
                "--list-remote is pgback's: list a store with pgback --list-remote".to_owned(),
            ));
        }
        match &self.restore {
            Some(backup) => self
                .restore_request(backup, config, path)
                .map(Box::new)
                .map(Mode::Restore),
            None => self.request_with(config).map(Box::new).map(Mode::Backup),
        }
    }

    fn restore_request(
        &self,
        backup: &str,
        config: Config,
        config_file: Option<PathBuf>,
    ) -> Result<RestoreRequest, BaseError> {
        let remote = self.remote_settings(config.dump.remote);
        let mut encryption = config.dump.encryption;
        encryption.apply_flags(&self.encryption);
        if remote.upload != StoreKind::None || encryption.encrypt {
            return Err(BaseError::Usage(
                "--restore takes neither --upload nor --encrypt".to_owned(),
            ));
        }
        Ok(RestoreRequest {
            backup: backup.to_owned(),
            dir: self.dir.clone(),
            tablespace_mapping: self.mapping()?,
            recovery_signal: self.recovery_signal,
            restore_command: self.archive.restore_command.clone(),
            remote,
            encryption,
            passphrase: take_passphrase_from_env().map_err(|e| BaseError::Encryption(e.into()))?,
            config_file,
        })
    }

    /// `[dump.remote]` under the flags; its `download` and `list_remote` are pgback's (set
    /// there, every pgback run downloads or lists): only `--download` counts.
    fn remote_settings(&self, mut remote: RemoteSettings) -> RemoteSettings {
        remote.download = StoreKind::None;
        remote.list_remote = StoreKind::None;
        remote.apply_flags(&self.remote);
        remote
    }

    fn mapping(&self) -> Result<Vec<(PathBuf, PathBuf)>, BaseError> {
        self.tablespace_mapping
            .iter()
            .map(|value| parse_mapping(value))
            .collect()
    }

    /// Checks what clap cannot, over the built-in defaults (no configuration file).
    pub fn request(&self) -> Result<Request, BaseError> {
        self.request_with(Config::default())
    }

    /// Checks what clap cannot, over `config`.
    pub fn request_with(&self, config: Config) -> Result<Request, BaseError> {
        let base = config.base.layered(&self.base);
        let remote = self.remote_settings(config.dump.remote);
        if remote.download != StoreKind::None {
            return Err(BaseError::Usage(
                "--download works only with --restore".to_owned(),
            ));
        }
        if self.recovery_signal {
            return Err(BaseError::Usage(
                "--recovery-signal works only with --restore".to_owned(),
            ));
        }
        let tablespace_mapping = self.mapping()?;
        if base.format == Format::Tar && !tablespace_mapping.is_empty() {
            return Err(BaseError::Usage(
                "-T/--tablespace-mapping works only with the plain format (-F p)".to_owned(),
            ));
        }
        let compression = match base.compress.as_str() {
            "" => None,
            spec => parse_compression(spec).map_err(BaseError::Usage)?,
        };
        if base.format == Format::Plain && compression.is_some() {
            return Err(BaseError::Usage(
                "-Z/--compress works only with the tar format (-F t)".to_owned(),
            ));
        }
        let encrypt = self.encrypt_key(config.dump.encryption)?;
        let archive = self.archive_options(base.wal_method)?;
        if base.format == Format::Plain && encrypt.is_some() {
            return Err(BaseError::Usage(
                "--encrypt (or dump.encryption.encrypt) works only with the tar format (-F t, or \
                 base.format = \"t\")"
                    .to_owned(),
            ));
        }
        if base.format == Format::Plain && remote.upload != StoreKind::None {
            return Err(BaseError::Usage(
                "--upload (or dump.remote.upload) works only with the tar format (-F t, or \
                 base.format = \"t\")"
                    .to_owned(),
            ));
        }
        let purge = match (base.purge_older_than, base.purge_min_keep) {
            (Some(age), keep @ Keep::Newest(_)) => Some((age, keep)),
            _ => None,
        };
        Ok(Request {
            // Absolute, so that each file's remote name is its path under -D's parent.
            dir: std::path::absolute(&self.dir).map_err(BaseError::output(&self.dir))?,
            format: base.format,
            wal_method: base.wal_method,
            checkpoint: base.checkpoint,
            label: self.label.clone(),
            progress: self.progress,
            max_rate: self.max_rate,
            tablespace_mapping,
            manifest: (!self.no_manifest).then_some(self.manifest_checksums),
            checksum_algo: base.checksum_algorithm,
            compression,
            encrypt,
            archive,
            no_clean: self.no_clean,
            remote,
            purge,
            connection: config.connection,
        })
    }

    /// The archive check's flags over the hook pair's defaults; they mean something with
    /// `-X none` only.
    fn archive_options(&self, wal_method: WalMethod) -> Result<ArchiveOptions, BaseError> {
        let flags = &self.archive;
        let given = flags.archive_check.is_some()
            || flags.wal_archive.is_some()
            || flags.restore_command.is_some()
            || flags.archive_timeout.is_some();
        if given && wal_method != WalMethod::None {
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
    /// out of the environment), over `[dump.encryption]`.
    fn encrypt_key(&self, mut config: EncryptionConfig) -> Result<Option<EncryptKey>, BaseError> {
        if self.encryption.encrypt_keep_src == Some(true) && !self.encryption.no_encrypt_keep_src {
            return Err(BaseError::Usage(
                "pgbase does not keep plaintext copies: --encrypt-keep-src is pgback's".to_owned(),
            ));
        }
        // A shared file's encrypt_keep_src is pgback's: pgbase never writes plaintext copies.
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

    #[test]
    fn the_file_lies_under_the_flags_and_pgbacks_download_key_is_not_read() {
        let text = "[base]\nformat = \"t\"\ncompress = \"gzip:1\"\npurge_older_than = \"7\"\n\
                    [dump.remote]\nupload = \"s3\"\ndownload = \"s3\"\n";
        let config = || Config::parse(text, Path::new("t.toml")).unwrap();
        let args = PgbaseArgs::parse_from(["pgbase", "-D", "/x", "--purge-min-keep", "2"]);
        let request = args.request_with(config()).unwrap();
        assert_eq!(request.format, Format::Tar);
        assert!(request.compression.is_some());
        assert_eq!(request.remote.upload, StoreKind::S3);
        assert_eq!(request.remote.download, StoreKind::None);
        assert_eq!(
            request.purge,
            Some((
                PurgeInterval(std::time::Duration::from_secs(7 * 86_400)),
                Keep::Newest(2)
            ))
        );
        let args = PgbaseArgs::parse_from(["pgbase", "-D", "/x", "-F", "p"]);
        let refused = args.request_with(config()).unwrap_err().to_string();
        assert!(refused.contains("-Z/--compress"), "{refused}");
        let args = PgbaseArgs::parse_from(["pgbase", "-D", "/x", "--upload", "s3"]);
        let refused = args.request().unwrap_err().to_string();
        assert!(
            refused.contains("--upload (or dump.remote.upload)"),
            "{refused}"
        );
        let args = PgbaseArgs::parse_from(["pgbase", "-D", "/x", "--download", "s3"]);
        assert!(matches!(args.request(), Err(BaseError::Usage(_))));
        let args =
            PgbaseArgs::parse_from(["pgbase", "-D", "x", "--restore", "b", "--upload", "s3"]);
        assert!(matches!(
            args.restore_request("b", Config::default(), None),
            Err(BaseError::Usage(_))
        ));
        assert!(PgbaseArgs::try_parse_from(["pgbase", "-D", "/x", "--recovery-signal"]).is_err());
        let args = PgbaseArgs::parse_from(["pgbase", "-D", "/x", "-F", "t"]);
        assert_eq!(args.request().unwrap().purge, None);
        assert!(args.request().unwrap().dir.is_absolute());
    }
}
