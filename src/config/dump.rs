//! `[dump]` configuration of `pgback`: pg_back's keys (snake_case, pg_back's names), per-database
//! tables `[dump.databases."name"]`, and the one place where the layers meet: defaults < file <
//! environment (`PGBACK_*`) < command line ([`DumpConfig::layered`]). The section is part of
//! [`crate::config::Config`]; its errors are [`ConfigError`]s.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::encryption::{EncryptionConfig, EncryptionFlags};
use super::error::ConfigError;
use super::flags::{either, layer, negatable, toggle};
use crate::secret::{check_config_file, SecretError};
use crate::values::{
    text, text_opt, ChecksumAlgorithm, Compression, FileMode, Format, Keep, PurgeInterval, Seconds,
    TimestampFormat,
};

/// `[dump]`: everything `pgback` reads from the configuration file.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DumpConfig {
    /// Where pg_dump, pg_dumpall (and psql for nothing) are; empty = found on PATH.
    pub bin_directory: String,
    /// Where files go; may hold `{dbname}`.
    pub backup_directory: String,
    /// `rfc3339` or `legacy` stamps in file names.
    #[serde(with = "text")]
    pub timestamp_format: TimestampFormat,
    /// Mode of every file written; negative = no chmod.
    #[serde(with = "text")]
    pub backup_file_mode: FileMode,
    /// Databases to dump, in this order; empty = all.
    pub include_dbs: Vec<String>,
    /// Databases never dumped (wins over include_dbs).
    pub exclude_dbs: Vec<String>,
    /// Dump templates too (never template0).
    pub with_templates: bool,
    /// Dump databases only: no globals, settings, hba/ident, createdb.sql.
    pub dump_only: bool,
    /// Keep role passwords in the globals dump (only possible as a superuser).
    pub with_role_passwords: bool,
    /// One stamp for all files of a run (the run's start) instead of each file's own time.
    pub uniform_timestamp: bool,
    /// `--native`: each database exported as plain SQL by pgback itself, without pg_dump;
    /// a database holding objects it cannot reproduce is refused.
    pub native: bool,
    /// With `native`: a refused database is dumped with pg_dump instead.
    pub fallback_tools: bool,
    /// pg_dump format.
    #[serde(with = "text")]
    pub format: Format,
    /// pg_dump -j for the directory format.
    pub parallel_backup_jobs: u32,
    /// pg_dump -Z.
    #[serde(with = "text")]
    pub compress_level: Compression,
    /// Databases dumped at once.
    pub jobs: u32,
    /// How long to wait for replay to pause on a standby.
    #[serde(with = "text")]
    pub pause_timeout: Seconds,
    /// Age past which backups are purged: days, or a duration like `12h`.
    #[serde(with = "text")]
    pub purge_older_than: PurgeInterval,
    /// Newest backups kept whatever their age; `all` disables purge.
    #[serde(with = "text")]
    pub purge_min_keep: Keep,
    /// Checksum files beside each file.
    #[serde(with = "text")]
    pub checksum_algorithm: ChecksumAlgorithm,
    /// More pg_dump options, split like a shell would.
    pub pg_dump_options: String,
    /// Command run before anything else.
    pub pre_backup_hook: String,
    /// Command run after everything, on every path once the pre hook ran.
    pub post_backup_hook: String,
    /// How long a hook may run.
    #[serde(with = "text")]
    pub hook_timeout: Seconds,
    /// `[dump.encryption]`: age encryption of every file written.
    pub encryption: EncryptionConfig,
    /// Per-database overrides, `[dump.databases."name"]`.
    pub databases: BTreeMap<String, DatabaseOverrides>,
    /// Remote storage, `[dump.remote]` (pg_back's keys).
    pub remote: super::remote::RemoteSettings,
}

impl Default for DumpConfig {
    fn default() -> Self {
        DumpConfig {
            bin_directory: String::new(),
            backup_directory: "/var/backups/postgresql".into(),
            timestamp_format: TimestampFormat::Rfc3339,
            backup_file_mode: FileMode::default(),
            include_dbs: Vec::new(),
            exclude_dbs: Vec::new(),
            with_templates: false,
            dump_only: false,
            with_role_passwords: true,
            uniform_timestamp: false,
            native: false,
            fallback_tools: false,
            format: Format::Custom,
            parallel_backup_jobs: 1,
            compress_level: Compression::Default,
            jobs: 1,
            pause_timeout: Seconds(std::time::Duration::from_secs(3600)),
            purge_older_than: PurgeInterval::default(),
            purge_min_keep: Keep::default(),
            checksum_algorithm: ChecksumAlgorithm::None,
            pg_dump_options: String::new(),
            pre_backup_hook: String::new(),
            post_backup_hook: String::new(),
            hook_timeout: Seconds(std::time::Duration::from_secs(3600)),
            encryption: EncryptionConfig::default(),
            databases: BTreeMap::new(),
            remote: Default::default(),
        }
    }
}

/// `[dump.databases."name"]`: what one database does differently.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseOverrides {
    /// pg_dump format.
    #[serde(with = "text_opt", skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// pg_dump -j (directory format).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_backup_jobs: Option<u32>,
    /// pg_dump -Z.
    #[serde(with = "text_opt", skip_serializing_if = "Option::is_none")]
    pub compress_level: Option<Compression>,
    /// Checksum algorithm.
    #[serde(with = "text_opt", skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    /// Purge age.
    #[serde(with = "text_opt", skip_serializing_if = "Option::is_none")]
    pub purge_older_than: Option<PurgeInterval>,
    /// Purge keep.
    #[serde(with = "text_opt", skip_serializing_if = "Option::is_none")]
    pub purge_min_keep: Option<Keep>,
    /// Role pg_dump connects as for this database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// pg_dump -n.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<String>,
    /// pg_dump -N.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude_schemas: Vec<String>,
    /// pg_dump -t.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// pg_dump -T.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude_tables: Vec<String>,
    /// pg_dump options replacing the global ones, split like a shell would.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_dump_options: Option<String>,
    /// true = `-b` (large objects even with -n/-t), false = `-B` (none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub with_blobs: Option<bool>,
}

/// What pg_dump gets for one database once every layer is applied.
#[derive(Clone, Debug, PartialEq)]
pub struct DatabaseDumpSettings {
    /// pg_dump format.
    pub format: Format,
    /// pg_dump -j (directory format only).
    pub parallel_backup_jobs: u32,
    /// pg_dump -Z.
    pub compress_level: Compression,
    pub checksum_algorithm: ChecksumAlgorithm,
    /// Purge age.
    pub purge_older_than: PurgeInterval,
    /// Purge keep.
    pub purge_min_keep: Keep,
    /// Role to connect as, when not the run's.
    pub user: Option<String>,
    /// -n.
    pub schemas: Vec<String>,
    /// -N.
    pub exclude_schemas: Vec<String>,
    /// -t.
    pub tables: Vec<String>,
    /// -T.
    pub exclude_tables: Vec<String>,
    /// Extra options, already split.
    pub pg_dump_options: Vec<String>,
    /// -b / -B.
    pub with_blobs: Option<bool>,
}

fn split_options(origin: &str, key: &str, text: &str) -> Result<Vec<String>, ConfigError> {
    shell_words::split(text).map_err(|e| ConfigError::Value {
        path: origin.into(),
        key: key.to_string(),
        message: format!("{text:?}: {e}"),
    })
}

/// The `dump.databases."name"` prefix of a per-database key.
pub(crate) fn db_key(name: &str, key: &str) -> String {
    format!(
        "dump.databases.\"{}\".{key}",
        name.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

impl DumpConfig {
    /// Checks what types alone cannot; `origin` names the file in errors.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: String, message: &str| ConfigError::Value {
            path: origin.into(),
            key,
            message: message.to_string(),
        };
        if self.backup_directory.trim().is_empty() {
            return Err(invalid("dump.backup_directory".into(), "must not be empty"));
        }
        if self.jobs == 0 {
            return Err(invalid("dump.jobs".into(), "must be at least 1"));
        }
        if self.parallel_backup_jobs == 0 {
            return Err(invalid(
                "dump.parallel_backup_jobs".into(),
                "must be at least 1",
            ));
        }
        split_options(origin, "dump.pg_dump_options", &self.pg_dump_options)?;
        for (key, hook) in [
            ("dump.pre_backup_hook", &self.pre_backup_hook),
            ("dump.post_backup_hook", &self.post_backup_hook),
        ] {
            split_options(origin, key, hook)?;
        }
        for (name, db) in &self.databases {
            if db.parallel_backup_jobs == Some(0) {
                return Err(invalid(
                    db_key(name, "parallel_backup_jobs"),
                    "must be at least 1",
                ));
            }
            if let Some(options) = &db.pg_dump_options {
                split_options(origin, &db_key(name, "pg_dump_options"), options)?;
            }
            if db.user.as_deref().is_some_and(str::is_empty) {
                return Err(invalid(db_key(name, "user"), "must not be empty"));
            }
        }
        Ok(())
    }

    /// The settings of one database: global < `[dump.databases."name"]` (flags were applied by
    /// [`DumpConfig::apply_flags`], which removes what they override from the tables).
    pub fn for_database(&self, name: &str) -> DatabaseDumpSettings {
        let db = self.databases.get(name).cloned().unwrap_or_default();
        let options = db
            .pg_dump_options
            .as_deref()
            .unwrap_or(&self.pg_dump_options);
        DatabaseDumpSettings {
            format: db.format.unwrap_or(self.format),
            parallel_backup_jobs: db.parallel_backup_jobs.unwrap_or(self.parallel_backup_jobs),
            compress_level: db
                .compress_level
                .unwrap_or_else(|| self.compress_level.clone()),
            checksum_algorithm: db.checksum_algorithm.unwrap_or(self.checksum_algorithm),
            purge_older_than: db.purge_older_than.unwrap_or(self.purge_older_than),
            purge_min_keep: db.purge_min_keep.unwrap_or(self.purge_min_keep),
            user: db.user,
            schemas: db.schemas,
            exclude_schemas: db.exclude_schemas,
            tables: db.tables,
            exclude_tables: db.exclude_tables,
            // Validated at load time; an unsplittable string cannot reach here.
            pg_dump_options: shell_words::split(options).unwrap_or_default(),
            with_blobs: db.with_blobs,
        }
    }

    /// Refuses a configuration file that holds a secret (`[dump.encryption]`'s passphrase or
    /// key, a `[dump.remote]` secret) and that other users can read.
    pub fn check_secret_files(&self, path: Option<&Path>) -> Result<(), SecretError> {
        self.encryption.check_file(path)?;
        if let Some(path) = path {
            for key in self.remote.secret_keys() {
                check_config_file(path, &format!("dump.remote.{key}"))?;
            }
        }
        Ok(())
    }

    /// `[dump]` as a run uses it: the defaults and the file (`self`, read over the defaults)
    /// under the environment and the command line (`flags`, where clap put a flag over its
    /// `PGBACK_*` variable), checked. A flag or variable also wins over per-database tables.
    pub fn layered(mut self, flags: &DumpFlags) -> Result<DumpConfig, ConfigError> {
        self.apply_flags(flags);
        self.validate("command line")?;
        Ok(self)
    }

    /// Applies the flags (and variables) actually given: they win over the file, per-database
    /// tables included.
    pub fn apply_flags(&mut self, flags: &DumpFlags) {
        layer!(self, flags, overriding self.databases.values_mut();
            format,
            parallel_backup_jobs,
            compress_level,
            checksum_algorithm,
            purge_older_than,
            purge_min_keep,
        );
        layer!(self, flags;
            bin_directory,
            backup_directory,
            backup_file_mode,
            jobs,
            pause_timeout,
            pre_backup_hook,
            post_backup_hook,
            dump_only,
            uniform_timestamp,
            native,
            fallback_tools,
            exclude_dbs,
        );
        if let Some(value) = either(flags.with_templates, flags.without_templates) {
            self.with_templates = value;
        }
        if let Some(value) = either(flags.with_role_passwords, flags.without_role_passwords) {
            self.with_role_passwords = value;
        }
        if !flags.include_dbs.is_empty() {
            self.include_dbs = flags.include_dbs.clone();
        }
        self.encryption.apply_flags(&flags.encryption);
        self.remote.apply_flags(&flags.remote);
    }
}

/// The flags of `pgback` that override `[dump]`; each also comes from a `PGBACK_<KEY>` variable
/// named after its config key. `None` (or empty) = neither given.
#[derive(Clone, Debug, Default, PartialEq, clap::Args)]
#[command(
    mut_arg("with_templates", |arg| negatable(arg, "PGBACK_WITH_TEMPLATES")),
    mut_arg("dump_only", toggle),
    mut_arg("with_role_passwords", |arg| negatable(arg, "PGBACK_WITH_ROLE_PASSWORDS")),
    mut_arg("uniform_timestamp", toggle),
    mut_arg("native", toggle),
    mut_arg("fallback_tools", toggle)
)]
pub struct DumpFlags {
    /// Databases to dump, in this order (default: all) [config: dump.include_dbs]
    #[arg(value_name = "DBNAME")]
    pub include_dbs: Vec<String>,
    /// Directory of pg_dump and pg_dumpall [config: dump.bin_directory]
    #[arg(short = 'B', long, env = "PGBACK_BIN_DIRECTORY", value_name = "DIR")]
    pub bin_directory: Option<String>,
    /// Where files go; may hold {dbname} [config: dump.backup_directory]
    #[arg(short = 'b', long, env = "PGBACK_BACKUP_DIRECTORY", value_name = "DIR")]
    pub backup_directory: Option<String>,
    /// Mode of the files, octal; negative = no chmod [config: dump.backup_file_mode]
    #[arg(
        short = 'm',
        long,
        env = "PGBACK_BACKUP_FILE_MODE",
        value_name = "MODE",
        allow_hyphen_values = true
    )]
    pub backup_file_mode: Option<FileMode>,
    /// plain|p, custom|c, tar|t, directory|d [config: dump.format]
    #[arg(short = 'F', long, env = "PGBACK_FORMAT", value_name = "FORMAT")]
    pub format: Option<Format>,
    /// pg_dump -j for the directory format [config: dump.parallel_backup_jobs]
    #[arg(
        short = 'J',
        long,
        env = "PGBACK_PARALLEL_BACKUP_JOBS",
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub parallel_backup_jobs: Option<u32>,
    /// -1..9, or gzip|lz4|zstd|none[:level] [config: dump.compress_level]
    #[arg(
        short = 'Z',
        long = "compress",
        env = "PGBACK_COMPRESS_LEVEL",
        value_name = "LEVEL",
        allow_hyphen_values = true
    )]
    pub compress_level: Option<Compression>,
    /// Databases dumped at once [config: dump.jobs]
    #[arg(
        short = 'j',
        long,
        env = "PGBACK_JOBS",
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub jobs: Option<u32>,
    /// none, sha1, sha224, sha256, sha384, sha512 [config: dump.checksum_algorithm]
    #[arg(
        short = 'S',
        long = "checksum-algo",
        env = "PGBACK_CHECKSUM_ALGORITHM",
        value_name = "ALGO"
    )]
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    /// Purge backups older than DAYS, or a duration like 12h [config: dump.purge_older_than]
    #[arg(
        short = 'P',
        long,
        env = "PGBACK_PURGE_OLDER_THAN",
        value_name = "DAYS"
    )]
    pub purge_older_than: Option<PurgeInterval>,
    /// Newest backups always kept; `all` = no purge [config: dump.purge_min_keep]
    #[arg(
        short = 'K',
        long,
        env = "PGBACK_PURGE_MIN_KEEP",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub purge_min_keep: Option<Keep>,
    /// Databases never dumped, comma-separated [config: dump.exclude_dbs]
    #[arg(
        short = 'D',
        long,
        env = "PGBACK_EXCLUDE_DBS",
        value_name = "LIST",
        value_delimiter = ','
    )]
    pub exclude_dbs: Option<Vec<String>>,
    /// Dump templates too (never template0) [config: dump.with_templates] [env:
    /// PGBACK_WITH_TEMPLATES]
    #[arg(short = 't', long, overrides_with = "without_templates")]
    pub with_templates: Option<bool>,
    /// Do not dump templates
    #[arg(long)]
    pub without_templates: bool,
    /// Only the databases: no globals, settings, hba/ident, createdb.sql [config: dump.dump_only]
    #[arg(long, env = "PGBACK_DUMP_ONLY")]
    pub dump_only: Option<bool>,
    /// Keep role passwords in the globals (superuser only) [config: dump.with_role_passwords]
    /// [env: PGBACK_WITH_ROLE_PASSWORDS]
    #[arg(long, overrides_with = "without_role_passwords")]
    pub with_role_passwords: Option<bool>,
    /// Leave role passwords out of the globals
    #[arg(long)]
    pub without_role_passwords: bool,
    /// One stamp (the run's start) for every file [config: dump.uniform_timestamp]
    #[arg(long, env = "PGBACK_UNIFORM_TIMESTAMP")]
    pub uniform_timestamp: Option<bool>,
    /// Export each database and the globals as plain SQL without pg_dump or pg_dumpall (no
    /// client tool needed); refuse (exit 2) a database holding objects it cannot reproduce,
    /// naming each [config: dump.native]
    #[arg(long, env = "PGBACK_NATIVE")]
    pub native: Option<bool>,
    /// With --native: dump a refused database with pg_dump instead (only then is pg_dump
    /// looked for) [config: dump.fallback_tools]
    #[arg(long, env = "PGBACK_FALLBACK_TOOLS")]
    pub fallback_tools: Option<bool>,
    /// How long to wait for replay to pause on a standby, seconds [config: dump.pause_timeout]
    #[arg(
        short = 'T',
        long,
        env = "PGBACK_PAUSE_TIMEOUT",
        value_name = "SECONDS"
    )]
    pub pause_timeout: Option<Seconds>,
    /// Command run first (split like a shell, run without one) [config: dump.pre_backup_hook]
    #[arg(long, env = "PGBACK_PRE_BACKUP_HOOK", value_name = "COMMAND")]
    pub pre_backup_hook: Option<String>,
    /// Command run last, on every path after the pre hook [config: dump.post_backup_hook]
    #[arg(long, env = "PGBACK_POST_BACKUP_HOOK", value_name = "COMMAND")]
    pub post_backup_hook: Option<String>,
    /// What overrides `[dump.encryption]`.
    #[command(flatten)]
    pub encryption: EncryptionFlags,
    /// What overrides `[dump.remote]`.
    #[command(flatten)]
    pub remote: super::remote::RemoteFlags,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DEFAULT_CONFIG};
    use clap::Parser;
    use std::path::Path;
    use std::time::Duration;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn shipped_section_parses_to_the_defaults() {
        assert_eq!(parse(DEFAULT_CONFIG).unwrap().dump, DumpConfig::default());
        assert_eq!(parse("").unwrap().dump, DumpConfig::default());
    }

    #[test]
    fn values_and_per_database_tables() {
        let file = parse(
            r#"
[dump]
backup_file_mode = "0640"
purge_older_than = "12h"
purge_min_keep = "all"
compress_level = 5
format = "d"
[dump.databases."a\"b"]
format = "plain"
compress_level = "zstd:3"
schemas = ["s1", "s 2"]
with_blobs = false
pg_dump_options = "--no-owner --exclude-table-data='big table'"
"#,
        )
        .unwrap();
        let dump = file.dump;
        assert_eq!(dump.backup_file_mode, FileMode::Chmod(0o640));
        assert_eq!(
            dump.purge_older_than,
            PurgeInterval(Duration::from_secs(43_200))
        );
        assert_eq!(dump.purge_min_keep, Keep::All);
        let db = dump.for_database("a\"b");
        assert_eq!(db.format, Format::Plain);
        assert_eq!(db.compress_level.pg_dump_arg().as_deref(), Some("zstd:3"));
        assert_eq!(
            db.pg_dump_options,
            ["--no-owner", "--exclude-table-data=big table"]
        );
        assert_eq!(db.with_blobs, Some(false));
        assert_eq!(dump.for_database("other").format, Format::Directory);
        assert_eq!(
            parse("[dump]\nbackup_file_mode = 0o600")
                .unwrap()
                .dump
                .backup_file_mode,
            FileMode::Chmod(0o600)
        );
    }

    #[test]
    fn invalid_values_name_the_key() {
        for (text, key) in [
            (
                "[dump]\nbackup_file_mode = \"08170\"",
                "dump.backup_file_mode",
            ),
            ("[dump]\npurge_min_keep = -10", "dump.purge_min_keep"),
            ("[dump]\nformat = \"zip\"", "dump.format"),
            ("[dump]\nwith_templates = \"maybe\"", "dump.with_templates"),
            ("[dump]\nunknown_key = 1", "dump.unknown_key"),
            ("[dump]\njobs = -1", "dump.jobs"),
            ("[dump.databases.x]\ncolour = 1", "dump.databases.x.colour"),
            (
                "[dump.databases.\"x\"]\ncolour = 1",
                "dump.databases.\"x\".colour",
            ),
        ] {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(key), "{text}: {error}");
        }
        let error = parse("[dump]\njobs = 0").unwrap_err().to_string();
        assert!(
            error.contains("dump.jobs") && error.contains("at least 1"),
            "{error}"
        );
        let error = parse("[dump]\npre_backup_hook = \"echo 'open\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("dump.pre_backup_hook"), "{error}");
    }

    #[test]
    fn flags_win_over_per_database_tables() {
        let mut dump = parse("[dump.databases.app]\nformat = \"tar\"\nuser = \"u\"")
            .unwrap()
            .dump;
        dump.apply_flags(&DumpFlags {
            format: Some(Format::Plain),
            jobs: Some(3),
            ..Default::default()
        });
        let app = dump.for_database("app");
        assert_eq!(app.format, Format::Plain);
        assert_eq!(app.user.as_deref(), Some("u"));
        assert_eq!(dump.jobs, 3);
    }

    /// Held by the tests that parse flags: one of them sets PGBACK_* variables.
    static ENVIRONMENT: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// pgback's flags alone.
    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        dump: DumpFlags,
    }

    #[test]
    fn defaults_then_file_then_environment_then_flags() {
        let _environment = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
        let variables = [
            ("PGBACK_FORMAT", "tar"),
            ("PGBACK_JOBS", "3"),
            ("PGBACK_WITH_TEMPLATES", "false"),
            ("PGBACK_WITH_ROLE_PASSWORDS", "true"),
            ("PGBACK_DUMP_ONLY", "yes"),
            ("PGBACK_EXCLUDE_DBS", "a,b"),
        ];
        for (name, value) in variables {
            std::env::set_var(name, value);
        }
        let flags = Flags::try_parse_from(["pgback", "-j", "4", "--without-role-passwords"]);
        std::env::set_var("PGBACK_JOBS", "0");
        let invalid = Flags::try_parse_from(["pgback"]).map(|_| ());
        for (name, _) in variables {
            std::env::remove_var(name);
        }
        let flags = flags.unwrap().dump;
        let file = parse(
            "[dump]\nformat = \"directory\"\njobs = 2\ncompress_level = 5\n\
             with_templates = true\n[dump.databases.app]\nformat = \"plain\"",
        )
        .unwrap()
        .dump;
        let dump = file.layered(&flags).unwrap();
        // Set nowhere: the default.
        assert_eq!(dump.checksum_algorithm, ChecksumAlgorithm::None);
        assert_eq!(dump.backup_directory, "/var/backups/postgresql");
        // In the file only: the file.
        assert_eq!(dump.compress_level, Compression::Level(5));
        // File and environment: the environment, per-database tables included.
        assert_eq!(dump.format, Format::Tar);
        assert_eq!(dump.for_database("app").format, Format::Tar);
        assert!(!dump.with_templates);
        assert_eq!(dump.exclude_dbs, ["a", "b"]);
        // Environment over the default.
        assert!(dump.dump_only);
        // File, environment and flag: the flag (a negation too).
        assert_eq!(dump.jobs, 4);
        assert!(!dump.with_role_passwords);
        // A variable is checked like its flag.
        let error = invalid.unwrap_err().to_string();
        assert!(error.contains("--jobs"), "{error}");
    }

    #[test]
    fn with_and_without_flags_the_later_wins() {
        let _environment = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
        let parse_flags = |args: &[&str]| {
            let argv = std::iter::once("pgback").chain(args.iter().copied());
            let flags = Flags::try_parse_from(argv).unwrap().dump;
            let mut dump = DumpConfig::default();
            dump.apply_flags(&flags);
            (dump.with_templates, dump.dump_only, dump.include_dbs)
        };
        assert_eq!(
            parse_flags(&["-t", "app"]),
            (true, false, vec!["app".into()])
        );
        assert!(!parse_flags(&["-t", "--without-templates"]).0);
        assert!(parse_flags(&["--without-templates", "-t"]).0);
        assert!(parse_flags(&["--dump-only", "app"]).1);
        assert_eq!(parse_flags(&[]), (false, false, vec![]));
    }
}
