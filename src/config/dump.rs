//! `[dump]` configuration of `pgback`: pg_back's keys (snake_case, pg_back's names), per-database
//! tables `[dump.databases."name"]`, strict values, the layering of command-line flags over
//! per-database tables, and `--convert-pg-back-config`. The section is part of
//! [`crate::config::Config`]; its errors are [`ConfigError`]s.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::values::{
    ChecksumAlgorithm, Compression, FileMode, Format, InvalidValue, Keep, PurgeInterval, Seconds,
    TimestampFormat,
};
use crate::config::ConfigError;

/// A value type read from TOML as a string (or an integer where that is natural) through its
/// strict `FromStr`, and written back as a string.
pub trait ConfigValue: std::str::FromStr<Err = InvalidValue> + fmt::Display {
    /// An integer in the TOML file; by default read like its decimal text.
    fn from_int(n: i64) -> Result<Self, InvalidValue> {
        n.to_string().parse()
    }
}

impl ConfigValue for Format {}
impl ConfigValue for Compression {}
impl ConfigValue for Keep {}
impl ConfigValue for PurgeInterval {}
impl ConfigValue for Seconds {}
impl ConfigValue for ChecksumAlgorithm {}
impl ConfigValue for TimestampFormat {}
impl ConfigValue for FileMode {
    /// TOML `0o600` arrives as 384: take it as the mode itself.
    fn from_int(n: i64) -> Result<Self, InvalidValue> {
        match n {
            n if n < 0 => Ok(FileMode::Unchanged),
            0..=0o7777 => Ok(FileMode::Chmod(n as u32)),
            _ => Err(InvalidValue {
                value: format!("{n:o} (octal)"),
                expected: "an octal mode from 0000 to 7777, or a negative number for no chmod",
            }),
        }
    }
}

/// Serde adapter for [`ConfigValue`] fields.
pub struct Strict<T>(pub T);

struct StrictVisitor<T>(std::marker::PhantomData<T>);

impl<T: ConfigValue> Visitor<'_> for StrictVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or an integer")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::from_int(v).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        let n = i64::try_from(v).map_err(|_| E::custom(format!("{v} is too large")))?;
        T::from_int(n).map_err(E::custom)
    }
}

fn strict<'de, D: Deserializer<'de>, T: ConfigValue>(d: D) -> Result<T, D::Error> {
    d.deserialize_any(StrictVisitor(std::marker::PhantomData))
}

fn strict_opt<'de, D: Deserializer<'de>, T: ConfigValue>(d: D) -> Result<Option<T>, D::Error> {
    strict(d).map(Some)
}

fn as_text<S: Serializer, T: fmt::Display>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn as_text_opt<S: Serializer, T: fmt::Display>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => s.collect_str(value),
        None => s.serialize_none(),
    }
}

/// `[dump]`: everything `pgback` reads from the configuration file.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DumpConfig {
    /// Where pg_dump, pg_dumpall (and psql for nothing) are; empty = found on PATH.
    pub bin_directory: String,
    /// Where files go; may hold `{dbname}`.
    pub backup_directory: String,
    /// `rfc3339` or `legacy` stamps in file names.
    #[serde(deserialize_with = "strict", serialize_with = "as_text")]
    pub timestamp_format: TimestampFormat,
    /// Mode of every file written; negative = no chmod.
    #[serde(deserialize_with = "strict", serialize_with = "as_text")]
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
    /// pg_dump format.
    #[serde(deserialize_with = "strict", serialize_with = "as_text")]
    pub format: Format,
    /// pg_dump -j for the directory format.
    pub parallel_backup_jobs: u32,
    /// pg_dump -Z.
    #[serde(deserialize_with = "strict", serialize_with = "as_text")]
    pub compress_level: Compression,
    /// Databases dumped at once.
    pub jobs: u32,
    /// How long to wait for replay to pause on a standby.
    #[serde(deserialize_with = "strict", serialize_with = "as_text")]
    pub pause_timeout: Seconds,
    /// Age past which backups are purged: days, or a duration like `12h`.
    #[serde(deserialize_with = "strict", serialize_with = "as_text")]
    pub purge_older_than: PurgeInterval,
    /// Newest backups kept whatever their age; `all` disables purge.
    #[serde(deserialize_with = "strict", serialize_with = "as_text")]
    pub purge_min_keep: Keep,
    /// Checksum files beside each file.
    #[serde(deserialize_with = "strict", serialize_with = "as_text")]
    pub checksum_algorithm: ChecksumAlgorithm,
    /// More pg_dump options, split like a shell would.
    pub pg_dump_options: String,
    /// Command run before anything else.
    pub pre_backup_hook: String,
    /// Command run after everything, on every path once the pre hook ran.
    pub post_backup_hook: String,
    /// How long a hook may run.
    #[serde(deserialize_with = "strict", serialize_with = "as_text")]
    pub hook_timeout: Seconds,
    /// Per-database overrides, `[dump.databases."name"]`.
    pub databases: BTreeMap<String, DatabaseOverrides>,
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
            databases: BTreeMap::new(),
        }
    }
}

/// `[dump.databases."name"]`: what one database does differently.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseOverrides {
    /// pg_dump format.
    #[serde(
        deserialize_with = "strict_opt",
        serialize_with = "as_text_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub format: Option<Format>,
    /// pg_dump -j (directory format).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_backup_jobs: Option<u32>,
    /// pg_dump -Z.
    #[serde(
        deserialize_with = "strict_opt",
        serialize_with = "as_text_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub compress_level: Option<Compression>,
    /// Checksum algorithm.
    #[serde(
        deserialize_with = "strict_opt",
        serialize_with = "as_text_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    /// Purge age.
    #[serde(
        deserialize_with = "strict_opt",
        serialize_with = "as_text_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub purge_older_than: Option<PurgeInterval>,
    /// Purge keep.
    #[serde(
        deserialize_with = "strict_opt",
        serialize_with = "as_text_opt",
        skip_serializing_if = "Option::is_none"
    )]
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
    /// Checksum algorithm.
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
fn db_key(name: &str, key: &str) -> String {
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

    /// Applies command-line flags actually given: they win over the file, per-database tables
    /// included.
    pub fn apply_flags(&mut self, flags: &DumpFlags) {
        macro_rules! layer {
            ($field:ident) => {
                if let Some(value) = &flags.$field {
                    self.$field = value.clone();
                    for db in self.databases.values_mut() {
                        db.$field = None;
                    }
                }
            };
        }
        layer!(format);
        layer!(parallel_backup_jobs);
        layer!(compress_level);
        layer!(checksum_algorithm);
        layer!(purge_older_than);
        layer!(purge_min_keep);
        macro_rules! global {
            ($field:ident) => {
                if let Some(value) = &flags.$field {
                    self.$field = value.clone();
                }
            };
        }
        global!(bin_directory);
        global!(backup_directory);
        global!(backup_file_mode);
        global!(jobs);
        global!(pause_timeout);
        global!(pre_backup_hook);
        global!(post_backup_hook);
        global!(with_templates);
        global!(dump_only);
        global!(with_role_passwords);
        global!(uniform_timestamp);
        if !flags.include_dbs.is_empty() {
            self.include_dbs = flags.include_dbs.clone();
        }
        if let Some(exclude) = &flags.exclude_dbs {
            self.exclude_dbs = exclude.clone();
        }
    }
}

/// Command-line flags that override `[dump]`; `None` = not given.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DumpFlags {
    /// -B
    pub bin_directory: Option<String>,
    /// -b
    pub backup_directory: Option<String>,
    /// -m
    pub backup_file_mode: Option<FileMode>,
    /// positional names
    pub include_dbs: Vec<String>,
    /// -D (comma-separated)
    pub exclude_dbs: Option<Vec<String>>,
    /// -t / --without-templates
    pub with_templates: Option<bool>,
    /// --dump-only
    pub dump_only: Option<bool>,
    /// --with[out]-role-passwords
    pub with_role_passwords: Option<bool>,
    /// --uniform-timestamp
    pub uniform_timestamp: Option<bool>,
    /// -F
    pub format: Option<Format>,
    /// -J
    pub parallel_backup_jobs: Option<u32>,
    /// -Z
    pub compress_level: Option<Compression>,
    /// -j
    pub jobs: Option<u32>,
    /// -T
    pub pause_timeout: Option<Seconds>,
    /// -P
    pub purge_older_than: Option<PurgeInterval>,
    /// -K
    pub purge_min_keep: Option<Keep>,
    /// -S
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    /// --pre-backup-hook
    pub pre_backup_hook: Option<String>,
    /// --post-backup-hook
    pub post_backup_hook: Option<String>,
}

/// pg_back.conf keys pgback does not implement; a conversion stops on them unless they are off.
const UNSUPPORTED_PG_BACK_KEYS: &[&str] = &[
    "encrypt",
    "cipher_pass",
    "cipher_public_key",
    "cipher_private_key",
    "encrypt_keep_source",
    "upload",
    "upload_prefix",
    "purge_remote",
    "delete_uploaded",
];

fn is_off(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "" | "false" | "no" | "off" | "0" | "none"
    )
}

/// Reads pg_back.conf (INI-like: `key = value`, `# comments`, `[dbname]` sections) and returns
/// the equivalent TOML (`[connection]` and `[dump]`).
pub fn convert_pg_back_config(text: &str, path: &Path) -> Result<String, ConfigError> {
    let origin = path.display().to_string();
    let mut dump = DumpConfig::default();
    let mut conn: Vec<(String, String)> = Vec::new();
    let mut section: Option<String> = None;
    for (number, raw_line) in text.lines().enumerate() {
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let fail = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: number + 1,
            message,
        };
        if let Some(name) = line.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or_else(|| fail(format!("unterminated section {line:?}")))?;
            section = Some(name.trim().to_string());
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| fail(format!("expected key = value, found {line:?}")))?;
        let key = key.trim();
        let mut value = value.trim();
        for quote in ['"', '\''] {
            if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
                value = &value[1..value.len() - 1];
            }
        }
        let parsed = |key_name: &str, result: Result<(), InvalidValue>| {
            result.map_err(|e| ConfigError::Value {
                path: format!("{origin}:{}", number + 1).into(),
                key: key_name.to_string(),
                message: e.to_string(),
            })
        };
        let list = |v: &str| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        };
        match &section {
            Some(db) => {
                let entry = dump.databases.entry(db.clone()).or_default();
                let name = db_key(db, key);
                match key {
                    "format" => parsed(&name, value.parse().map(|v| entry.format = Some(v)))?,
                    "parallel_backup_jobs" => parsed(
                        &name,
                        value
                            .parse::<u32>()
                            .map(|v| entry.parallel_backup_jobs = Some(v))
                            .map_err(|_| InvalidValue {
                                value: value.into(),
                                expected: "a number >= 1",
                            }),
                    )?,
                    "compress_level" => {
                        parsed(&name, value.parse().map(|v| entry.compress_level = Some(v)))?
                    }
                    "checksum_algorithm" => parsed(
                        &name,
                        value.parse().map(|v| entry.checksum_algorithm = Some(v)),
                    )?,
                    "purge_older_than" => parsed(
                        &name,
                        value.parse().map(|v| entry.purge_older_than = Some(v)),
                    )?,
                    "purge_min_keep" => {
                        parsed(&name, value.parse().map(|v| entry.purge_min_keep = Some(v)))?
                    }
                    "user" => entry.user = Some(value.to_string()),
                    "schemas" => entry.schemas = list(value),
                    "exclude_schemas" => entry.exclude_schemas = list(value),
                    "tables" => entry.tables = list(value),
                    "exclude_tables" => entry.exclude_tables = list(value),
                    "pg_dump_options" => entry.pg_dump_options = Some(value.to_string()),
                    "with_blobs" => parsed(
                        &name,
                        super::values::parse_bool(value).map(|v| entry.with_blobs = Some(v)),
                    )?,
                    _ => return Err(fail(format!("unknown key {key:?} in section [{db}]"))),
                }
            }
            None => {
                let name = format!("dump.{key}");
                match key {
                    "host" | "port" | "user" | "dbname" => {
                        if !value.is_empty() {
                            conn.push((key.to_string(), value.to_string()));
                        }
                    }
                    "bin_directory" => dump.bin_directory = value.to_string(),
                    "backup_directory" => dump.backup_directory = value.to_string(),
                    "timestamp_format" => {
                        parsed(&name, value.parse().map(|v| dump.timestamp_format = v))?
                    }
                    "backup_file_mode" => {
                        parsed(&name, value.parse().map(|v| dump.backup_file_mode = v))?
                    }
                    "include_dbs" => dump.include_dbs = list(value),
                    "exclude_dbs" => dump.exclude_dbs = list(value),
                    "with_templates" => parsed(
                        &name,
                        super::values::parse_bool(value).map(|v| dump.with_templates = v),
                    )?,
                    "dump_only" => parsed(
                        &name,
                        super::values::parse_bool(value).map(|v| dump.dump_only = v),
                    )?,
                    "with_role_passwords" => parsed(
                        &name,
                        super::values::parse_bool(value).map(|v| dump.with_role_passwords = v),
                    )?,
                    "uniform_timestamp" => parsed(
                        &name,
                        super::values::parse_bool(value).map(|v| dump.uniform_timestamp = v),
                    )?,
                    "format" => parsed(&name, value.parse().map(|v| dump.format = v))?,
                    "parallel_backup_jobs" | "jobs" => {
                        let n = value.parse::<u32>().ok().filter(|n| *n >= 1);
                        parsed(
                            &name,
                            n.map(|n| {
                                if key == "jobs" {
                                    dump.jobs = n
                                } else {
                                    dump.parallel_backup_jobs = n
                                }
                            })
                            .ok_or(InvalidValue {
                                value: value.into(),
                                expected: "a number >= 1",
                            }),
                        )?
                    }
                    "compress_level" => {
                        parsed(&name, value.parse().map(|v| dump.compress_level = v))?
                    }
                    "pause_timeout" => {
                        parsed(&name, value.parse().map(|v| dump.pause_timeout = v))?
                    }
                    "purge_older_than" => {
                        parsed(&name, value.parse().map(|v| dump.purge_older_than = v))?
                    }
                    "purge_min_keep" => {
                        parsed(&name, value.parse().map(|v| dump.purge_min_keep = v))?
                    }
                    "checksum_algorithm" => {
                        parsed(&name, value.parse().map(|v| dump.checksum_algorithm = v))?
                    }
                    "pg_dump_options" => dump.pg_dump_options = value.to_string(),
                    "pre_backup_hook" => dump.pre_backup_hook = value.to_string(),
                    "post_backup_hook" => dump.post_backup_hook = value.to_string(),
                    k if UNSUPPORTED_PG_BACK_KEYS.contains(&k)
                        || k.starts_with("s3_")
                        || k.starts_with("sftp_")
                        || k.starts_with("gcs_")
                        || k.starts_with("azure_")
                        || k.starts_with("b2_") =>
                    {
                        // Settings of encryption and upload do nothing while those are off.
                        let switch =
                            matches!(k, "encrypt" | "upload" | "purge_remote" | "delete_uploaded");
                        if switch && !is_off(value) {
                            return Err(fail(format!(
                                "{key} is not supported by pgback yet (no encryption or upload): remove it to convert"
                            )));
                        }
                    }
                    _ => return Err(fail(format!("unknown key {key:?}"))),
                }
            }
        }
    }
    dump.validate(&origin)?;
    let conninfo = conn
        .iter()
        .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect::<Vec<_>>()
        .join(" ");
    /// The two sections a conversion produces.
    #[derive(Serialize)]
    struct Converted {
        connection: ConvertedConnection,
        dump: DumpConfig,
    }
    #[derive(Serialize)]
    struct ConvertedConnection {
        conninfo: String,
    }
    let file = Converted {
        connection: ConvertedConnection { conninfo },
        dump,
    };
    let body = toml::to_string(&file).map_err(|e| ConfigError::Value {
        path: origin.into(),
        key: "dump".into(),
        message: e.to_string(),
    })?;
    Ok(format!(
        "# Converted from {} by pgback --convert-pg-back-config.\n{body}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DEFAULT_CONFIG};
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

    #[test]
    fn converts_pg_back_conf() {
        let conf = r#"
# pg_back configuration
bin_directory = /usr/lib/postgresql/15/bin
backup_directory = /srv/backups/{dbname}
timestamp_format = legacy
host = /var/run/postgresql
port = 5433
user = backup
format = custom
compress_level = 6
jobs = 2
purge_older_than = 7
purge_min_keep = 2
checksum_algorithm = sha256
backup_file_mode = 0640
include_dbs = app, reports
exclude_dbs = scratch
pre_backup_hook = "/usr/local/bin/notify 'starting backup'"
encrypt = false
upload = none

[app]
format = directory
parallel_backup_jobs = 4
schemas = public, sales
with_blobs = true
"#;
        let toml_text = convert_pg_back_config(conf, Path::new("pg_back.conf")).unwrap();
        let file = parse(&toml_text).unwrap();
        assert_eq!(
            file.connection.conninfo,
            "host='/var/run/postgresql' port='5433' user='backup'"
        );
        let dump = file.dump;
        assert_eq!(dump.timestamp_format, TimestampFormat::Legacy);
        assert_eq!(dump.backup_file_mode, FileMode::Chmod(0o640));
        assert_eq!(dump.include_dbs, ["app", "reports"]);
        assert_eq!(dump.checksum_algorithm, ChecksumAlgorithm::Sha256);
        assert_eq!(dump.purge_min_keep, Keep::Newest(2));
        assert_eq!(
            dump.pre_backup_hook,
            "/usr/local/bin/notify 'starting backup'"
        );
        let app = dump.for_database("app");
        assert_eq!(
            (app.format, app.parallel_backup_jobs),
            (Format::Directory, 4)
        );
        assert_eq!(app.schemas, ["public", "sales"]);
        assert_eq!(app.with_blobs, Some(true));

        for (bad, says) in [
            ("compress_level = 12", "dump.compress_level"),
            ("colour = blue", "unknown key"),
            ("[db]\ncolour = blue", "unknown key"),
            ("encrypt = true", "not supported"),
            ("purge_min_keep = -10", "dump.purge_min_keep"),
            ("just words", "expected key = value"),
        ] {
            let error = convert_pg_back_config(bad, Path::new("pg_back.conf"))
                .unwrap_err()
                .to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
