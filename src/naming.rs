//! The file names of a dump set, pg_back-compatible (`pgback` writes them, `--restore` reads
//! them): `<dir>/<db>_<stamp>.<ext>`, the stamp in rfc3339 or legacy form, and database names
//! made safe for a path.

use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone};

use crate::values::{Compression, Format, TimestampFormat};

/// The legacy stamp, Go's `2006-01-02_15-04-05`.
const LEGACY: &str = "%Y-%m-%d_%H-%M-%S";

/// The placeholder `backup_directory` may contain.
pub const DBNAME_PLACEHOLDER: &str = "{dbname}";

/// The prefix of the globals dump, `pg_globals_<stamp>.sql`.
pub const GLOBALS: &str = "pg_globals";
/// The prefix of the applied settings, `pg_settings_<stamp>.out`.
pub const SETTINGS: &str = "pg_settings";
/// The server files saved as `<setting>_<stamp>.out`, by the setting naming them.
pub const CONFIG_FILES: [&str; 2] = ["hba_file", "ident_file"];
/// The server-level files, by prefix.
pub const SERVER_FILES: [&str; 4] = [GLOBALS, SETTINGS, CONFIG_FILES[0], CONFIG_FILES[1]];

/// Formats the time of a run as it appears in file names.
pub fn format_stamp(format: TimestampFormat, when: &DateTime<FixedOffset>) -> String {
    match format {
        // Go's time.RFC3339: offset as +hh:mm, or Z in UTC; no fractional seconds.
        TimestampFormat::Rfc3339 => when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        TimestampFormat::Legacy => when.format(LEGACY).to_string(),
    }
}

/// The current local time, to the second, as a fixed offset.
pub fn now() -> DateTime<FixedOffset> {
    let now = Local::now();
    let secs = now.timestamp();
    now.timezone()
        .timestamp_opt(secs, 0)
        .single()
        .unwrap_or(now)
        .fixed_offset()
}

/// Reads a stamp back (either format; a legacy stamp is local time).
pub fn parse_stamp(stamp: &str) -> Option<DateTime<FixedOffset>> {
    // Go's RFC3339 layout always has seconds and no fraction; reject anything looser so that
    // another database's name is never taken for a stamp.
    if stamp.len() >= 20 && stamp.as_bytes().get(10) == Some(&b'T') && !stamp.contains('.') {
        if let Ok(when) = DateTime::parse_from_rfc3339(stamp) {
            return Some(when);
        }
    }
    if stamp.len() == 19 {
        if let Ok(naive) = NaiveDateTime::parse_from_str(stamp, LEGACY) {
            return Local
                .from_local_datetime(&naive)
                .earliest()
                .map(|t| t.fixed_offset());
        }
    }
    None
}

/// A database name as it appears in a file name: a leading `.` gets `_` prefixed (no hidden
/// files) and `/` becomes `_` (no sub- or parent directories). Every other character is kept, as
/// pg_back does, so existing backups keep matching.
pub fn clean_db_name(dbname: &str) -> String {
    let mut name = dbname.replace('/', "_");
    if name.starts_with('.') {
        name.insert(0, '_');
    }
    name
}

/// The extension of a dump in `format` (`dump`, `sql[.gz|.lz4|.zst]`, `tar`, `d`).
pub fn dump_extension(format: Format, compression: &Compression) -> String {
    match format {
        Format::Custom => "dump".to_string(),
        Format::Tar => "tar".to_string(),
        Format::Directory => "d".to_string(),
        Format::Plain => match compression.plain_suffix() {
            Some(suffix) => format!("sql.{suffix}"),
            None => "sql".to_string(),
        },
    }
}

/// The directory files of `dbname` go to: `backup_directory` with `{dbname}` replaced.
pub fn backup_dir(backup_directory: &Path, dbname: &str) -> PathBuf {
    let text = backup_directory.to_string_lossy();
    if text.contains(DBNAME_PLACEHOLDER) {
        PathBuf::from(text.replace(DBNAME_PLACEHOLDER, &clean_db_name(dbname)))
    } else {
        backup_directory.to_path_buf()
    }
}

/// The part of `backup_directory` before the directory holding `{dbname}`: `/b/{dbname}/x` ->
/// `/b`; the whole path when there is no placeholder. It must exist before anything is dumped.
pub fn fixed_backup_dir(backup_directory: &str) -> &str {
    match backup_directory.find(DBNAME_PLACEHOLDER) {
        Some(at) => backup_directory[..at]
            .rfind('/')
            .map_or("", |slash| &backup_directory[..slash.max(1)]),
        None => backup_directory,
    }
}

/// The file name `<db>_<stamp>.<ext>` (no directory).
pub fn file_name(dbname: &str, stamp: &str, ext: &str) -> String {
    format!("{}_{stamp}.{ext}", clean_db_name(dbname))
}

/// `<backup_directory with {dbname}>/<db>_<stamp>.<ext>`.
pub fn dump_path(backup_directory: &Path, dbname: &str, stamp: &str, ext: &str) -> PathBuf {
    backup_dir(backup_directory, dbname).join(file_name(dbname, stamp, ext))
}

/// The lock file of a database: `<dir>/<db>.lock`.
pub fn lock_path(backup_directory: &Path, dbname: &str) -> PathBuf {
    backup_dir(backup_directory, dbname).join(format!("{}.lock", clean_db_name(dbname)))
}

/// Splits a file name `<prefix>_<stamp>.<ext>` written for `dbname` into (stamp, ext); `None`
/// when the name belongs to something else (another database whose name starts alike, a lock).
pub fn split_name<'a>(file_name: &'a str, dbname: &str) -> Option<(&'a str, &'a str)> {
    let prefix = clean_db_name(dbname);
    let rest = file_name.strip_prefix(prefix.as_str())?.strip_prefix('_')?;
    let (stamp, ext) = rest.split_once('.')?;
    parse_stamp(stamp)?;
    Some((stamp, ext))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(text).unwrap()
    }

    #[test]
    fn stamps_in_both_formats() {
        let when = at("2024-03-05T07:08:09+01:00");
        assert_eq!(
            format_stamp(TimestampFormat::Rfc3339, &when),
            "2024-03-05T07:08:09+01:00"
        );
        assert_eq!(
            format_stamp(TimestampFormat::Legacy, &when),
            "2024-03-05_07-08-09"
        );
        let utc = at("2024-03-05T07:08:09Z");
        assert_eq!(
            format_stamp(TimestampFormat::Rfc3339, &utc),
            "2024-03-05T07:08:09Z"
        );
        assert_eq!(parse_stamp("2024-03-05T07:08:09+01:00"), Some(when));
        assert!(parse_stamp("2024-03-05_07-08-09").is_some());
        for bad in [
            "",
            "2024-03-05",
            "2024-03-05T07:08:09.5Z",
            "x2024-03-05_07-08-09",
            "b_2024-03-05_07-08-09",
        ] {
            assert_eq!(parse_stamp(bad), None, "{bad}");
        }
        // now() round-trips through both formats.
        let now = now();
        assert_eq!(
            parse_stamp(&format_stamp(TimestampFormat::Rfc3339, &now)),
            Some(now)
        );
        assert_eq!(
            parse_stamp(&format_stamp(TimestampFormat::Legacy, &now)).map(|t| t.timestamp()),
            Some(now.timestamp())
        );
    }

    #[test]
    fn names_are_pg_back_compatible() {
        let stamp = "2024-03-05T07:08:09Z";
        let dir = Path::new("/var/backups/postgresql");
        let ext = dump_extension(Format::Custom, &Compression::Default);
        assert_eq!(
            dump_path(dir, "app", stamp, &ext),
            PathBuf::from("/var/backups/postgresql/app_2024-03-05T07:08:09Z.dump")
        );
        for (dbname, ext, name) in [
            ("a/b", "tar", "a_b_2024-03-05T07:08:09Z.tar"),
            ("../etc", "d", "_.._etc_2024-03-05T07:08:09Z.d"),
            (".hidden", "sql", "_.hidden_2024-03-05T07:08:09Z.sql"),
            ("a\"b", "dump", "a\"b_2024-03-05T07:08:09Z.dump"),
            ("x=y z", "dump", "x=y z_2024-03-05T07:08:09Z.dump"),
            (
                "line\nbreak",
                "dump",
                "line\nbreak_2024-03-05T07:08:09Z.dump",
            ),
            ("név", "dump", "név_2024-03-05T07:08:09Z.dump"),
            ("it's", "dump", "it's_2024-03-05T07:08:09Z.dump"),
        ] {
            assert_eq!(file_name(dbname, stamp, ext), name);
        }
        for (format, compression, ext) in [
            (Format::Plain, Compression::Level(3), "sql.gz"),
            (Format::Plain, Compression::Default, "sql"),
            (Format::Directory, Compression::Level(3), "d"),
            (Format::Tar, Compression::Default, "tar"),
        ] {
            assert_eq!(dump_extension(format, &compression), ext);
        }
        for (compression, ext) in [
            ("gzip", "sql.gz"),
            ("gzip:0", "sql"),
            ("lz4:1", "sql.lz4"),
            ("zstd:level=3", "sql.zst"),
            ("none", "sql"),
            ("0", "sql"),
        ] {
            let compression: Compression = compression.parse().unwrap();
            assert_eq!(dump_extension(Format::Plain, &compression), ext);
        }
    }

    #[test]
    fn dbname_placeholder_in_the_directory() {
        let dir = Path::new("/b/{dbname}/x");
        assert_eq!(backup_dir(dir, "a/b"), PathBuf::from("/b/a_b/x"));
        assert_eq!(lock_path(dir, ".h"), PathBuf::from("/b/_.h/x/_.h.lock"));
    }

    #[test]
    fn fixed_part_of_the_backup_directory() {
        assert_eq!(fixed_backup_dir("/b/{dbname}/x"), "/b");
        assert_eq!(fixed_backup_dir("/b/x"), "/b/x");
        assert_eq!(fixed_backup_dir("/{dbname}"), "/");
        assert_eq!(fixed_backup_dir("{dbname}/x"), "");
        assert_eq!(fixed_backup_dir("/b/db_{dbname}"), "/b");
    }

    #[test]
    fn split_names_only_of_the_database_asked() {
        assert_eq!(
            split_name("app_2024-03-05T07:08:09Z.dump.sha256", "app"),
            Some(("2024-03-05T07:08:09Z", "dump.sha256"))
        );
        assert_eq!(
            split_name("app_2024-03-05_07-08-09.createdb.sql", "app"),
            Some(("2024-03-05_07-08-09", "createdb.sql"))
        );
        // Database `app_x` is not `app`.
        assert_eq!(split_name("app_x_2024-03-05T07:08:09Z.dump", "app"), None);
        assert_eq!(split_name("app.lock", "app"), None);
        assert_eq!(
            split_name("_.h_2024-03-05T07:08:09Z.dump", ".h"),
            Some(("2024-03-05T07:08:09Z", "dump"))
        );
    }
}
