//! `pgback --convert-pg-back-config`: reads a pg_back.conf (INI-like: `key = value`,
//! `# comments`, `[dbname]` sections) and writes the equivalent TOML (`[connection]`, `[dump]`
//! and `[dump.remote]`). Values are parsed as strictly as the TOML ones; keys of what pgback does
//! not implement (encryption) stop the conversion unless they are off. Remote secrets are left
//! out of the output, with a comment saying where they go.

use std::path::Path;

use serde::Serialize;

use super::dump::{db_key, DatabaseOverrides, DumpConfig};
use super::error::ConfigError;
use crate::conn::quote_conninfo;
use crate::values::{parse_bool, InvalidValue};

/// pg_back's remote storage keys (besides the `s3_`, `b2_`, `gcs_`, `azure_`, `sftp_` ones).
const REMOTE_KEYS: &[&str] = &["upload", "upload_prefix", "purge_remote", "delete_uploaded"];

/// Prefixes of pg_back's remote storage keys.
const REMOTE_PREFIXES: &[&str] = &["s3_", "b2_", "gcs_", "azure_", "sftp_"];

/// Remote keys holding a secret, and where the secret goes instead.
const REMOTE_SECRETS: &[(&str, &str)] = &[
    ("s3_secret", "AWS_SECRET_ACCESS_KEY or an AWS profile"),
    ("b2_app_key", "B2_APPLICATION_KEY"),
    ("azure_key", "AZURE_STORAGE_KEY"),
    ("sftp_password", "PGBK_SSH_PASS"),
];

/// Reads pg_back.conf text and returns the equivalent TOML; `path` names it in errors and in
/// the first line of the result.
pub fn convert_pg_back_config(text: &str, path: &Path) -> Result<String, ConfigError> {
    let mut converted = Converted::default();
    let mut section: Option<String> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = Line {
            path,
            number: index + 1,
        };
        match line.read(raw)? {
            Entry::Nothing => {}
            Entry::Section(name) => section = Some(name),
            Entry::Pair(key, value) => match &section {
                Some(db) => {
                    let entry = converted.dump.databases.entry(db.clone()).or_default();
                    set_database_key(entry, db, key, value, &line)?;
                }
                None => set_global_key(&mut converted, key, value, &line)?,
            },
        }
    }
    converted.dump.validate(&path.display().to_string())?;
    converted.into_toml(path)
}

/// What a line of pg_back.conf holds.
enum Entry<'a> {
    /// A blank line or a comment.
    Nothing,
    /// `[dbname]`.
    Section(String),
    /// `key = value`, the value unquoted.
    Pair(&'a str, &'a str),
}

/// Where a line is, for its errors.
struct Line<'a> {
    path: &'a Path,
    number: usize,
}

impl Line<'_> {
    /// A line that is not pg_back.conf syntax, or a key that pgback does not take.
    fn invalid(&self, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: self.number,
            message,
        }
    }

    /// A value that did not parse, named by its TOML key.
    fn value<T>(&self, key: &str, parsed: Result<T, InvalidValue>) -> Result<T, ConfigError> {
        parsed.map_err(|e| ConfigError::Value {
            path: format!("{}:{}", self.path.display(), self.number).into(),
            key: key.to_string(),
            message: e.to_string(),
        })
    }

    fn read<'t>(&self, raw: &'t str) -> Result<Entry<'t>, ConfigError> {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            return Ok(Entry::Nothing);
        }
        if let Some(name) = line.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or_else(|| self.invalid(format!("unterminated section {line:?}")))?;
            return Ok(Entry::Section(name.trim().to_string()));
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| self.invalid(format!("expected key = value, found {line:?}")))?;
        Ok(Entry::Pair(key.trim(), unquote(value.trim())))
    }
}

/// A value without one pair of surrounding quotes (`"..."`, then `'...'`).
fn unquote(mut value: &str) -> &str {
    for quote in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
            value = &value[1..value.len() - 1];
        }
    }
    value
}

/// `a, b` -> `["a", "b"]`.
fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// A count such as `jobs`, at least `min`.
fn count(value: &str, min: u32) -> Result<u32, InvalidValue> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= min)
        .ok_or(InvalidValue {
            value: value.into(),
            expected: "a number >= 1",
        })
}

fn set_database_key(
    entry: &mut DatabaseOverrides,
    db: &str,
    key: &str,
    value: &str,
    line: &Line,
) -> Result<(), ConfigError> {
    let name = db_key(db, key);
    match key {
        "format" => entry.format = Some(line.value(&name, value.parse())?),
        // 0 is left to the validation, which names the per-database key.
        "parallel_backup_jobs" => {
            entry.parallel_backup_jobs = Some(line.value(&name, count(value, 0))?)
        }
        "compress_level" => entry.compress_level = Some(line.value(&name, value.parse())?),
        "checksum_algorithm" => entry.checksum_algorithm = Some(line.value(&name, value.parse())?),
        "purge_older_than" => entry.purge_older_than = Some(line.value(&name, value.parse())?),
        "purge_min_keep" => entry.purge_min_keep = Some(line.value(&name, value.parse())?),
        "user" => entry.user = Some(value.to_string()),
        "schemas" => entry.schemas = list(value),
        "exclude_schemas" => entry.exclude_schemas = list(value),
        "tables" => entry.tables = list(value),
        "exclude_tables" => entry.exclude_tables = list(value),
        "pg_dump_options" => entry.pg_dump_options = Some(value.to_string()),
        "with_blobs" => entry.with_blobs = Some(line.value(&name, parse_bool(value))?),
        _ => return Err(line.invalid(format!("unknown key {key:?} in section [{db}]"))),
    }
    Ok(())
}

fn set_global_key(
    converted: &mut Converted,
    key: &str,
    value: &str,
    line: &Line,
) -> Result<(), ConfigError> {
    let name = format!("dump.{key}");
    let dump = &mut converted.dump;
    match key {
        "host" | "port" | "user" | "dbname" => {
            if !value.is_empty() {
                converted
                    .conninfo
                    .push((key.to_string(), value.to_string()));
            }
        }
        "bin_directory" => dump.bin_directory = value.to_string(),
        "backup_directory" => dump.backup_directory = value.to_string(),
        "timestamp_format" => dump.timestamp_format = line.value(&name, value.parse())?,
        "backup_file_mode" => dump.backup_file_mode = line.value(&name, value.parse())?,
        "include_dbs" => dump.include_dbs = list(value),
        "exclude_dbs" => dump.exclude_dbs = list(value),
        "with_templates" => dump.with_templates = line.value(&name, parse_bool(value))?,
        "dump_only" => dump.dump_only = line.value(&name, parse_bool(value))?,
        "with_role_passwords" => dump.with_role_passwords = line.value(&name, parse_bool(value))?,
        "uniform_timestamp" => dump.uniform_timestamp = line.value(&name, parse_bool(value))?,
        "format" => dump.format = line.value(&name, value.parse())?,
        "parallel_backup_jobs" => dump.parallel_backup_jobs = line.value(&name, count(value, 1))?,
        "jobs" => dump.jobs = line.value(&name, count(value, 1))?,
        "compress_level" => dump.compress_level = line.value(&name, value.parse())?,
        "pause_timeout" => dump.pause_timeout = line.value(&name, value.parse())?,
        "purge_older_than" => dump.purge_older_than = line.value(&name, value.parse())?,
        "purge_min_keep" => dump.purge_min_keep = line.value(&name, value.parse())?,
        "checksum_algorithm" => dump.checksum_algorithm = line.value(&name, value.parse())?,
        "pg_dump_options" => dump.pg_dump_options = value.to_string(),
        "pre_backup_hook" => dump.pre_backup_hook = value.to_string(),
        "post_backup_hook" => dump.post_backup_hook = value.to_string(),
        _ if is_remote_key(key) => converted.set_remote_key(key, value, line)?,
        _ => match dump.encryption.convert_pg_back_key(key, value) {
            Ok(true) => {}
            Ok(false) => return Err(line.invalid(format!("unknown key {key:?}"))),
            Err(message) => return Err(line.invalid(message)),
        },
    }
    Ok(())
}

fn is_remote_key(key: &str) -> bool {
    REMOTE_KEYS.contains(&key) || REMOTE_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// What a conversion collects.
#[derive(Default)]
struct Converted {
    /// `host`, `port`, `user`, `dbname`, in the file's order.
    conninfo: Vec<(String, String)>,
    dump: DumpConfig,
    /// pg_back's remote keys as read (secrets excepted), parsed into `dump.remote` as a whole.
    remote: toml::Table,
    /// Comments on what was left out.
    notes: Vec<String>,
}

impl Converted {
    /// A remote key: checked by parsing everything read so far as `[dump.remote]`. A secret is
    /// left out, with a note naming where it goes.
    fn set_remote_key(&mut self, key: &str, value: &str, line: &Line) -> Result<(), ConfigError> {
        if let Some((_, instead)) = REMOTE_SECRETS.iter().find(|(k, _)| *k == key) {
            if !value.is_empty() {
                self.notes.push(format!(
                    "# {key} left out: set {instead}, or put it in [dump.remote] of a file \
                     no other user can read"
                ));
            }
            return Ok(());
        }
        if value.trim().is_empty() {
            // pg_back's empty value is its default.
            return Ok(());
        }
        let parsed = match key {
            "b2_concurrent_connections" => count(value, 1).map(|n| toml::Value::from(i64::from(n))),
            _ => Ok(toml::Value::from(value)),
        };
        self.remote.insert(
            key.to_string(),
            line.value(&format!("dump.remote.{key}"), parsed)?,
        );
        let remote =
            toml::Value::Table(self.remote.clone())
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Value {
                    path: format!("{}:{}", line.path.display(), line.number).into(),
                    key: format!("dump.remote.{key}"),
                    message: e.message().to_string(),
                })?;
        self.dump.remote = remote;
        Ok(())
    }
}

/// The two sections a conversion writes.
#[derive(Serialize)]
struct ConvertedFile {
    connection: ConvertedConnection,
    dump: DumpConfig,
}

#[derive(Serialize)]
struct ConvertedConnection {
    conninfo: String,
}

impl Converted {
    fn into_toml(self, path: &Path) -> Result<String, ConfigError> {
        let conninfo = self
            .conninfo
            .iter()
            .map(|(key, value)| format!("{key}={}", quote_conninfo(value)))
            .collect::<Vec<_>>()
            .join(" ");
        let file = ConvertedFile {
            connection: ConvertedConnection { conninfo },
            dump: self.dump,
        };
        let body = toml::to_string(&file).map_err(|e| ConfigError::Value {
            path: path.to_path_buf(),
            key: "dump".into(),
            message: e.to_string(),
        })?;
        let notes: String = self.notes.iter().map(|n| format!("{n}\n")).collect();
        Ok(format!(
            "# Converted from {} by pgback --convert-pg-back-config.\n{notes}{body}",
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::remote::StoreKind;
    use crate::config::Config;
    use crate::conn::ConnParams;
    use crate::values::{ChecksumAlgorithm, FileMode, Format, Keep, TimestampFormat};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
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
        // One conninfo quoter for the whole crate: quotes only where a value needs them.
        assert_eq!(
            file.connection.conninfo,
            "host=/var/run/postgresql port=5433 user=backup"
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

        // Settings of a feature that is off are dropped.
        assert!(convert_pg_back_config(
            "s3_bucket = b\nupload = none\nencrypt = off",
            Path::new("pg_back.conf")
        )
        .is_ok());
        let spaced = convert_pg_back_config(
            "host = /run/my sockets\nuser = o'brien\\x",
            Path::new("pg_back.conf"),
        )
        .unwrap();
        let conninfo = parse(&spaced).unwrap().connection.conninfo;
        let params = ConnParams::parse(&conninfo).unwrap();
        assert_eq!(params.get("host"), Some("/run/my sockets"), "{conninfo}");
        assert_eq!(params.get("user"), Some("o'brien\\x"), "{conninfo}");

        for (bad, says) in [
            ("compress_level = 12", "dump.compress_level"),
            ("colour = blue", "unknown key"),
            ("[db]\ncolour = blue", "unknown key"),
            ("encrypt = maybe", "encrypt"),
            ("cipher_pass = hunter2", "PGBK_CIPHER_PASS"),
            ("purge_min_keep = -10", "dump.purge_min_keep"),
            ("just words", "expected key = value"),
            ("[db", "unterminated section"),
            ("jobs = 0", "dump.jobs"),
            (
                "[db]\nparallel_backup_jobs = 0",
                "dump.databases.\"db\".parallel_backup_jobs",
            ),
            ("upload = ftp", "dump.remote.upload"),
            ("s3_tls = maybe", "dump.remote.s3_tls"),
            ("s3_bucket_name = x", "dump.remote.s3_bucket_name"),
            (
                "b2_concurrent_connections = 0",
                "dump.remote.b2_concurrent_connections",
            ),
        ] {
            let error = convert_pg_back_config(bad, Path::new("pg_back.conf"))
                .unwrap_err()
                .to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn converts_remote_keys_without_secrets() {
        let conf = "upload = s3\nupload_prefix = nightly\npurge_remote = true\n\
                    s3_bucket = b\ns3_force_path = true\ns3_tls = false\n\
                    s3_secret = hunter2-Qx\nsftp_port = 2222\nb2_concurrent_connections = 3\n";
        let text = convert_pg_back_config(conf, Path::new("pg_back.conf")).unwrap();
        assert!(!text.contains("hunter2-Qx"), "{text}");
        assert!(
            text.contains("# s3_secret left out: set AWS_SECRET_ACCESS_KEY"),
            "{text}"
        );
        let remote = parse(&text).unwrap().dump.remote;
        assert_eq!(remote.upload, StoreKind::S3);
        assert_eq!(remote.upload_prefix, "nightly");
        assert!(remote.purge_remote && remote.s3_force_path && !remote.s3_tls);
        assert_eq!(
            (remote.sftp_port, remote.b2_concurrent_connections),
            (2222, 3)
        );
        assert!(remote.s3_secret.is_none());
    }
}
