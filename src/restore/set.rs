//! Dump sets in a backup directory: pg_back file names read back, grouped into the runs that
//! wrote them, the newest run (or the one holding a given stamp) picked, databases chosen by
//! globs.
//!
//! A run of `pgback` (or pg_back) writes `pg_globals_<stamp>.sql` first, then one dump (and one
//! `createdb.sql`) per database, each with the time it started unless the stamps are uniform.
//! So a set starts at a globals file and holds, for each database, its newest dump before the
//! next globals file. A directory without globals files (`--dump-only`) has one set: the newest
//! dump of each database.
//!
//! Encrypted files (`--encrypt`: `<file>.age`, and for a directory dump `*.age` inside it) are
//! part of a set like the plaintext ones; a file kept in both forms (`--encrypt-keep-src`) is
//! taken in plaintext.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};

use crate::compress::Method;
use crate::glob::{Glob, GlobError};
use crate::naming::{parse_stamp, split_name};

/// How a database dump was written, read from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpFormat {
    /// `.dump`: `pg_dump -Fc`, restored with `pg_restore`.
    Custom,
    /// `.d`: `pg_dump -Fd`, a directory, restored with `pg_restore`.
    Directory,
    /// `.tar`: `pg_dump -Ft`, restored with `pg_restore` (one job: pg_restore cannot do more).
    Tar,
    /// `.sql[.gz|.lz4|.zst]`: an SQL script, restored with `psql`.
    Plain(PlainCompression),
}

/// The compression of a plain dump, undone by a decompressor piped into psql.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainCompression {
    /// `.sql`.
    None,
    /// `.sql.gz`.
    Gzip,
    /// `.sql.lz4`.
    Lz4,
    /// `.sql.zst`.
    Zstd,
}

impl PlainCompression {
    /// Its method, for pgback's own decompression of a native dump.
    pub fn method(self) -> Option<Method> {
        match self {
            PlainCompression::None => None,
            PlainCompression::Gzip => Some(Method::Gzip),
            PlainCompression::Lz4 => Some(Method::Lz4),
            PlainCompression::Zstd => Some(Method::Zstd),
        }
    }

    /// The decompressing program, which writes the script to its stdout.
    pub fn decompressor(self) -> Option<&'static str> {
        match self {
            PlainCompression::None => None,
            PlainCompression::Gzip => Some("gzip"),
            PlainCompression::Lz4 => Some("lz4"),
            PlainCompression::Zstd => Some("zstd"),
        }
    }
}

impl DumpFormat {
    /// The compression method of a plain dump, if compressed.
    pub fn plain_method(self) -> Option<Method> {
        match self {
            DumpFormat::Plain(compression) => compression.method(),
            _ => None,
        }
    }

    /// The format of a dump extension; `None` for anything else.
    pub fn from_extension(ext: &str) -> Option<DumpFormat> {
        Some(match ext {
            "dump" => DumpFormat::Custom,
            "d" => DumpFormat::Directory,
            "tar" => DumpFormat::Tar,
            "sql" => DumpFormat::Plain(PlainCompression::None),
            "sql.gz" => DumpFormat::Plain(PlainCompression::Gzip),
            "sql.lz4" => DumpFormat::Plain(PlainCompression::Lz4),
            "sql.zst" => DumpFormat::Plain(PlainCompression::Zstd),
            _ => return None,
        })
    }

    /// The name used in plans and summaries.
    pub fn name(self) -> &'static str {
        match self {
            DumpFormat::Custom => "custom",
            DumpFormat::Directory => "directory",
            DumpFormat::Tar => "tar",
            DumpFormat::Plain(_) => "plain",
        }
    }
}

/// The prefix of the globals file.
pub const GLOBALS_PREFIX: &str = "pg_globals";

/// Server-level files that are kept but never applied by a restore.
pub const UNAPPLIED_PREFIXES: [&str; 3] = ["pg_settings", "hba_file", "ident_file"];

/// One database of a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseDump {
    /// The database's real name (from its createdb.sql when there is one, else read back
    /// from the file name).
    pub name: String,
    /// The name as it appears in file names (`_.hidden` for `.hidden`).
    pub file_prefix: String,
    /// Its own stamp (stamps differ per database unless `uniform_timestamp`).
    pub stamp: String,
    /// The dump file, or directory for the directory format.
    pub dump: PathBuf,
    /// How it was written.
    pub format: DumpFormat,
    /// `<db>_<stamp>.createdb.sql` (or `.createdb.sql.age`), absent in `--dump-only` sets.
    pub createdb: Option<PathBuf>,
    /// The dump is encrypted: `<file>.age`, or a directory of `*.age` files.
    pub encrypted: bool,
}

/// The files of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpSet {
    /// The directory read.
    pub dir: PathBuf,
    /// The set's stamp: its globals file's, else its newest dump's.
    pub stamp: String,
    /// `pg_globals_<stamp>.sql`, absent in `--dump-only` sets.
    pub globals: Option<PathBuf>,
    /// Every database of the set, by name.
    pub databases: Vec<DatabaseDump>,
    /// `pg_settings`, `hba_file` and `ident_file` of the run: never applied, only named.
    pub unapplied: Vec<PathBuf>,
}

/// Why no set could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    /// The directory cannot be read.
    #[error("cannot read {dir}: {source}")]
    Read {
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Nothing in it looks like a dump.
    #[error(
        "{0} holds no dump set (no <db>_<stamp>.dump/.sql/.tar/.d and no pg_globals_<stamp>.sql)"
    )]
    Empty(PathBuf),
    /// `--timestamp` is not a stamp.
    #[error("--timestamp {0:?} is not a stamp (like 2024-03-05T07:08:09Z or 2024-03-05_07-08-09)")]
    BadStamp(String),
    /// No file carries the stamp asked for.
    #[error("no file in {dir} has the stamp {stamp}; sets there: {available}")]
    NoSuchStamp {
        dir: PathBuf,
        /// The stamp asked for.
        stamp: String,
        /// The stamps of the sets found.
        available: String,
    },
    /// A DBNAME glob does not parse.
    #[error(transparent)]
    Glob(#[from] GlobError),
    /// A glob matches no database of the set.
    #[error("no database of the set {stamp} matches {glob:?}; it holds: {available}")]
    NoMatch {
        glob: String,
        /// The set's stamp.
        stamp: String,
        /// Its databases.
        available: String,
    },
}

/// A file name read back: `<prefix>_<stamp>.<ext>`.
#[derive(Debug, Clone)]
struct NamedFile {
    prefix: String,
    stamp: String,
    when: DateTime<FixedOffset>,
    ext: String,
    path: PathBuf,
    /// `<...>.<ext>.age`: `ext` is the plaintext's extension.
    encrypted: bool,
}

/// Splits `<prefix>_<stamp>.<ext>`, trying every `_` (names may hold `_`, legacy stamps do too)
/// and keeping the last split whose stamp parses.
fn read_name(file_name: &str) -> Option<(String, String, String)> {
    let mut found = None;
    for (at, _) in file_name.match_indices('_') {
        let prefix = &file_name[..at];
        if let Some((stamp, ext)) = split_name(file_name, prefix) {
            // split_name cleans the prefix: `.x` would not match `_.x`, which is what we want.
            found = Some((prefix.to_string(), stamp.to_string(), ext.to_string()));
        }
    }
    found
}

/// The database name a file prefix stands for: pgback prefixes `.name` with `_`; `/` became
/// `_` and cannot be told apart (createdb.sql, when present, has the real name).
fn name_from_prefix(prefix: &str) -> String {
    match prefix.strip_prefix("_.") {
        Some(rest) => format!(".{rest}"),
        None => prefix.to_string(),
    }
}

const CHECKSUM_EXTS: [&str; 5] = ["sha1", "sha224", "sha256", "sha384", "sha512"];

fn list(dir: &Path) -> Result<Vec<NamedFile>, SetError> {
    let read = |source| SetError::Read {
        dir: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)? {
        let entry = entry.map_err(read)?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Some((prefix, stamp, ext)) = read_name(&name) else {
            continue;
        };
        let Some(when) = parse_stamp(&stamp) else {
            continue;
        };
        files.push(NamedFile {
            prefix,
            stamp,
            when,
            ext,
            path: entry.path(),
            encrypted: false,
        });
    }
    // A checksum file whose file is gone stands for that file, so that verification names it
    // as missing instead of the set silently falling back to an older dump.
    let mut ghosts: Vec<NamedFile> = Vec::new();
    for file in &files {
        let Some((base_ext, _)) = checksum_ext(&file.ext) else {
            continue;
        };
        let mut base = file.path.clone();
        base.set_extension("");
        let missing = std::fs::symlink_metadata(&base).is_err();
        if missing && !ghosts.iter().any(|g| g.path == base) {
            ghosts.push(NamedFile {
                ext: base_ext.to_string(),
                path: base,
                ..file.clone()
            });
        }
    }
    files.extend(ghosts);
    for file in &mut files {
        if let Some(plain_ext) = file.ext.strip_suffix(".age") {
            file.ext = plain_ext.to_string();
            file.encrypted = true;
        }
    }
    Ok(files)
}

/// `dump.sha256` -> (`dump`, `sha256`).
fn checksum_ext(ext: &str) -> Option<(&str, &str)> {
    let (base, algo) = ext.rsplit_once('.')?;
    CHECKSUM_EXTS.contains(&algo).then_some((base, algo))
}

/// Whether an extension names a checksum file or an interrupted write.
fn is_side_file(ext: &str) -> bool {
    ext.ends_with(".partial") || checksum_ext(ext).is_some()
}

/// Picks the set: the newest, or the one holding a file stamped `stamp`.
pub fn find_set(dir: &Path, stamp: Option<&str>) -> Result<DumpSet, SetError> {
    let wanted = match stamp {
        Some(text) => Some(parse_stamp(text).ok_or_else(|| SetError::BadStamp(text.into()))?),
        None => None,
    };
    let files = list(dir)?;
    let mut anchors: Vec<&NamedFile> = files
        .iter()
        .filter(|f| f.prefix == GLOBALS_PREFIX && f.ext == "sql")
        .collect();
    // The plaintext first among files of one stamp (keep-src wrote both).
    anchors.sort_by_key(|f| (f.when, f.encrypted));
    anchors.dedup_by_key(|f| f.when);
    let dumps: Vec<(&NamedFile, DumpFormat)> = files
        .iter()
        .filter(|f| f.prefix != GLOBALS_PREFIX)
        .filter_map(|f| DumpFormat::from_extension(&f.ext).map(|format| (f, format)))
        .collect();
    if anchors.is_empty() && dumps.is_empty() {
        return Err(SetError::Empty(dir.to_path_buf()));
    }
    // The window [start, end) of the set.
    let (start, end, globals) = if anchors.is_empty() {
        (None, wanted.map(|w| (w, true)), None)
    } else {
        let index = match wanted {
            None => anchors.len() - 1,
            Some(when) => {
                if !files
                    .iter()
                    .any(|f| f.when == when && !is_side_file(&f.ext))
                {
                    return Err(no_such_stamp(dir, stamp.unwrap_or_default(), &anchors));
                }
                match anchors.iter().rposition(|a| a.when <= when) {
                    Some(index) => index,
                    None => return Err(no_such_stamp(dir, stamp.unwrap_or_default(), &anchors)),
                }
            }
        };
        let anchor = anchors[index];
        (
            Some(anchor.when),
            anchors.get(index + 1).map(|next| (next.when, false)),
            Some(anchor),
        )
    };
    let in_window = |when: DateTime<FixedOffset>| {
        start.is_none_or(|s| when >= s)
            && end.is_none_or(|(e, inclusive)| if inclusive { when <= e } else { when < e })
    };
    if globals.is_none() {
        if let (Some(when), Some(text)) = (wanted, stamp) {
            if !dumps.iter().any(|(f, _)| f.when == when) {
                return Err(no_such_stamp(dir, text, &[]));
            }
        }
    }
    // The newest dump of each database in the window.
    let mut newest: BTreeMap<&str, (&NamedFile, DumpFormat)> = BTreeMap::new();
    for (file, format) in &dumps {
        if !in_window(file.when) {
            continue;
        }
        let keep = newest.get(file.prefix.as_str()).is_none_or(|(seen, _)| {
            file.when > seen.when || (file.when == seen.when && seen.encrypted && !file.encrypted)
        });
        if keep {
            newest.insert(&file.prefix, (file, *format));
        }
    }
    let mut databases = Vec::new();
    for (prefix, (file, format)) in newest {
        let mut createdbs: Vec<&NamedFile> = files
            .iter()
            .filter(|f| f.prefix == prefix && f.stamp == file.stamp && f.ext == "createdb.sql")
            .collect();
        createdbs.sort_by_key(|f| f.encrypted);
        let createdb = createdbs.first().map(|f| f.path.clone());
        // An encrypted createdb.sql is read once the key is known (see `super::decrypt`).
        let name = createdbs
            .first()
            .filter(|f| !f.encrypted)
            .and_then(|f| std::fs::read_to_string(&f.path).ok())
            .and_then(|text| super::script::createdb_database_name(&text))
            .unwrap_or_else(|| name_from_prefix(prefix));
        databases.push(DatabaseDump {
            name,
            file_prefix: prefix.to_string(),
            stamp: file.stamp.clone(),
            dump: file.path.clone(),
            format,
            createdb,
            encrypted: file.encrypted
                || (format == DumpFormat::Directory && holds_encrypted_files(&file.path)),
        });
    }
    databases.sort_by(|a, b| a.name.cmp(&b.name));
    let set_stamp = match globals {
        Some(anchor) => anchor.stamp.clone(),
        None => databases
            .iter()
            .filter_map(|d| parse_stamp(&d.stamp).map(|when| (when, &d.stamp)))
            .max()
            .map(|(_, stamp)| stamp.clone())
            .unwrap_or_default(),
    };
    if databases.is_empty() && globals.is_none() {
        return Err(SetError::Empty(dir.to_path_buf()));
    }
    let mut unapplied: Vec<&NamedFile> = files
        .iter()
        .filter(|f| {
            UNAPPLIED_PREFIXES.contains(&f.prefix.as_str()) && f.ext == "out" && in_window(f.when)
        })
        .collect();
    unapplied.sort_by_key(|f| (f.prefix.clone(), std::cmp::Reverse(f.when), f.encrypted));
    unapplied.dedup_by(|a, b| a.prefix == b.prefix);
    Ok(DumpSet {
        dir: dir.to_path_buf(),
        stamp: set_stamp,
        globals: globals.map(|g| g.path.clone()),
        databases,
        unapplied: unapplied.into_iter().map(|f| f.path.clone()).collect(),
    })
}

/// Whether a directory dump holds encrypted files (`toc.dat.age`, ...).
fn holds_encrypted_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|entry| crate::crypt::is_encrypted_name(&entry.file_name()))
    })
}

/// Whether a file of the set is encrypted (its name ends in `.age`).
pub fn is_encrypted_file(path: &Path) -> bool {
    path.file_name()
        .is_some_and(crate::crypt::is_encrypted_name)
}

fn no_such_stamp(dir: &Path, stamp: &str, anchors: &[&NamedFile]) -> SetError {
    SetError::NoSuchStamp {
        dir: dir.to_path_buf(),
        stamp: stamp.to_string(),
        available: if anchors.is_empty() {
            "none with a pg_globals file".to_string()
        } else {
            anchors
                .iter()
                .map(|a| a.stamp.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        },
    }
}

/// The databases of `set` the globs select, in glob order (names sorted within one glob);
/// every database when there are none. A glob matching nothing is an error.
pub fn select<'a>(set: &'a DumpSet, globs: &[Glob]) -> Result<Vec<&'a DatabaseDump>, SetError> {
    if globs.is_empty() {
        return Ok(set.databases.iter().collect());
    }
    let mut chosen: Vec<&DatabaseDump> = Vec::new();
    for glob in globs {
        let matches: Vec<&DatabaseDump> = set
            .databases
            .iter()
            .filter(|db| glob.matches(&db.name))
            .collect();
        if matches.is_empty() {
            return Err(SetError::NoMatch {
                glob: glob.as_str().to_string(),
                stamp: set.stamp.clone(),
                available: set
                    .databases
                    .iter()
                    .map(|d| format!("{:?}", d.name))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        for db in matches {
            if !chosen.iter().any(|c| c.name == db.name) {
                chosen.push(db);
            }
        }
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) {
        if name.ends_with(".d") {
            std::fs::create_dir(dir.join(name)).unwrap();
        } else {
            std::fs::write(dir.join(name), name).unwrap();
        }
    }

    #[test]
    fn names_read_back() {
        let r = |n: &str| read_name(n).map(|(p, s, e)| format!("{p}|{s}|{e}"));
        assert_eq!(
            r("app_2024-03-05T07:08:09Z.dump").as_deref(),
            Some("app|2024-03-05T07:08:09Z|dump")
        );
        assert_eq!(
            r("a_b_2024-03-05_07-08-09.createdb.sql").as_deref(),
            Some("a_b|2024-03-05_07-08-09|createdb.sql")
        );
        assert_eq!(
            r("x=y z_2024-03-05T07:08:09+01:00.sql.gz").as_deref(),
            Some("x=y z|2024-03-05T07:08:09+01:00|sql.gz")
        );
        assert_eq!(
            r("_.hidden_2024-03-05T07:08:09Z.d.sha256").as_deref(),
            Some("_.hidden|2024-03-05T07:08:09Z|d.sha256")
        );
        assert_eq!(r("app.lock"), None);
        assert_eq!(r(".hidden_2024-03-05T07:08:09Z.dump"), None);
        assert_eq!(name_from_prefix("_.hidden"), ".hidden");
        assert_eq!(name_from_prefix("név"), "név");
        assert!(is_side_file("dump.sha256"));
        assert!(is_side_file("dump.partial"));
        assert!(!is_side_file("createdb.sql"));
    }

    #[test]
    fn newest_set_and_one_by_stamp() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for name in [
            // Run 1 (non-uniform stamps).
            "pg_globals_2024-03-05T07:00:00Z.sql",
            "pg_settings_2024-03-05T07:00:00Z.out",
            "hba_file_2024-03-05T07:00:00Z.out",
            "app_2024-03-05T07:00:01Z.dump",
            "app_2024-03-05T07:00:01Z.createdb.sql",
            "app_2024-03-05T07:00:01Z.dump.sha256",
            "_.hidden_2024-03-05T07:00:02Z.d",
            // Run 2.
            "pg_globals_2024-03-06T07:00:00Z.sql",
            "hba_file_2024-03-06T07:00:00Z.out",
            "app_2024-03-06T07:00:03Z.sql.gz",
            "app_2024-03-06T07:00:09Z.dump.partial",
            "app.lock",
        ] {
            touch(dir, name);
        }
        std::fs::write(
            dir.join("app_2024-03-05T07:00:01Z.createdb.sql"),
            "CREATE DATABASE \"app\" WITH TEMPLATE = template0 OWNER = \"o\";\n",
        )
        .unwrap();
        let newest = find_set(dir, None).unwrap();
        assert_eq!(newest.stamp, "2024-03-06T07:00:00Z");
        assert_eq!(
            newest.globals,
            Some(dir.join("pg_globals_2024-03-06T07:00:00Z.sql"))
        );
        assert_eq!(newest.databases.len(), 1);
        assert_eq!(
            newest.databases[0].format,
            DumpFormat::Plain(PlainCompression::Gzip)
        );
        assert_eq!(newest.databases[0].createdb, None);
        assert_eq!(
            newest.unapplied,
            [dir.join("hba_file_2024-03-06T07:00:00Z.out")]
        );

        // Any stamp of run 1 picks run 1.
        for stamp in ["2024-03-05T07:00:00Z", "2024-03-05T08:00:02+01:00"] {
            let old = find_set(dir, Some(stamp)).unwrap();
            assert_eq!(old.stamp, "2024-03-05T07:00:00Z");
            let names: Vec<&str> = old.databases.iter().map(|d| d.name.as_str()).collect();
            assert_eq!(names, [".hidden", "app"]);
            assert_eq!(old.databases[0].format, DumpFormat::Directory);
            assert_eq!(old.databases[0].file_prefix, "_.hidden");
            assert_eq!(
                old.databases[1].createdb,
                Some(dir.join("app_2024-03-05T07:00:01Z.createdb.sql"))
            );
            assert_eq!(old.unapplied.len(), 2);
        }
        assert!(matches!(
            find_set(dir, Some("2024-03-05T07:30:00Z")),
            Err(SetError::NoSuchStamp { .. })
        ));
        assert!(matches!(
            find_set(dir, Some("yesterday")),
            Err(SetError::BadStamp(_))
        ));
        // A dump whose checksum file is left stands in the set, missing; run 1 is not used.
        touch(dir, "app_2024-03-06T07:00:04Z.dump.sha1");
        let newest = find_set(dir, None).unwrap();
        assert_eq!(
            newest.databases[0].dump,
            dir.join("app_2024-03-06T07:00:04Z.dump")
        );
        assert!(!newest.databases[0].dump.exists());
    }

    #[test]
    fn dump_only_directories_and_empty_ones() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            find_set(tmp.path(), None),
            Err(SetError::Empty(_))
        ));
        for name in [
            "a_2024-03-05T07:00:00Z.dump",
            "a_2024-03-06T07:00:00Z.tar",
            "b_2024-03-05T07:00:01Z.dump",
        ] {
            touch(tmp.path(), name);
        }
        let set = find_set(tmp.path(), None).unwrap();
        assert_eq!(set.globals, None);
        assert_eq!(set.stamp, "2024-03-06T07:00:00Z");
        let formats: Vec<DumpFormat> = set.databases.iter().map(|d| d.format).collect();
        assert_eq!(formats, [DumpFormat::Tar, DumpFormat::Custom]);
        let older = find_set(tmp.path(), Some("2024-03-05T07:00:01Z")).unwrap();
        assert_eq!(older.databases[0].format, DumpFormat::Custom);
    }

    #[test]
    fn encrypted_files_form_sets_and_plaintext_wins_when_both_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for name in [
            "pg_globals_2024-03-05T07:00:00Z.sql.age",
            "pg_globals_2024-03-05T07:00:00Z.sql.age.sha256",
            "pg_globals_2024-03-05T07:00:00Z.sql.sha256.age",
            "pg_settings_2024-03-05T07:00:00Z.out.age",
            "a_2024-03-05T07:00:01Z.dump.age",
            "a_2024-03-05T07:00:01Z.createdb.sql.age",
            "b_2024-03-05T07:00:02Z.sql.gz.age",
            "b_2024-03-05T07:00:02Z.sql.gz",
            "b_2024-03-05T07:00:02Z.createdb.sql",
            "b_2024-03-05T07:00:02Z.createdb.sql.age",
            "c_2024-03-05T07:00:03Z.d",
        ] {
            touch(dir, name);
        }
        std::fs::write(dir.join("c_2024-03-05T07:00:03Z.d/toc.dat.age"), b"x").unwrap();
        std::fs::write(
            dir.join("b_2024-03-05T07:00:02Z.createdb.sql"),
            "CREATE DATABASE \"b\" WITH TEMPLATE = template0;\n",
        )
        .unwrap();
        let set = find_set(dir, None).unwrap();
        assert_eq!(
            set.globals,
            Some(dir.join("pg_globals_2024-03-05T07:00:00Z.sql.age"))
        );
        assert_eq!(
            set.unapplied,
            [dir.join("pg_settings_2024-03-05T07:00:00Z.out.age")]
        );
        let found: Vec<(&str, bool, DumpFormat)> = set
            .databases
            .iter()
            .map(|d| (d.name.as_str(), d.encrypted, d.format))
            .collect();
        assert_eq!(
            found,
            [
                ("a", true, DumpFormat::Custom),
                ("b", false, DumpFormat::Plain(PlainCompression::Gzip)),
                ("c", true, DumpFormat::Directory)
            ]
        );
        assert!(is_encrypted_file(
            set.databases[0].createdb.as_deref().unwrap()
        ));
        assert_eq!(
            set.databases[1].createdb,
            Some(dir.join("b_2024-03-05T07:00:02Z.createdb.sql"))
        );
        assert_eq!(
            set.databases[1].dump,
            dir.join("b_2024-03-05T07:00:02Z.sql.gz")
        );
    }

    #[test]
    fn globs_select_in_order() {
        let db = |name: &str| DatabaseDump {
            name: name.into(),
            file_prefix: name.into(),
            stamp: "s".into(),
            dump: PathBuf::new(),
            format: DumpFormat::Custom,
            createdb: None,
            encrypted: false,
        };
        let set = DumpSet {
            dir: PathBuf::new(),
            stamp: "s".into(),
            globals: None,
            databases: vec![db("a"), db("b1"), db("b2")],
            unapplied: vec![],
        };
        let names = |globs: &[&str]| {
            let globs: Vec<Glob> = globs.iter().map(|g| Glob::new(g).unwrap()).collect();
            select(&set, &globs).map(|dbs| dbs.iter().map(|d| d.name.clone()).collect::<Vec<_>>())
        };
        assert_eq!(names(&[]).unwrap(), ["a", "b1", "b2"]);
        assert_eq!(names(&["b2", "b*", "a"]).unwrap(), ["b2", "b1", "a"]);
        assert!(matches!(names(&["c*"]), Err(SetError::NoMatch { .. })));
    }
}
