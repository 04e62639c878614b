//! Typed configuration values (format, compression, file mode, keep, purge interval, durations,
//! checksum algorithm, timestamp format, booleans), each parsed strictly: a bad value is an
//! error, never a silent default. Also the serde adapter that reads them from TOML through that
//! same parser and writes them back as text ([`text`], [`text_opt`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};

/// A value that does not parse; the config layer adds the key it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {value:?}: expected {expected}")]
pub struct InvalidValue {
    /// The text as the user gave it.
    pub value: String,
    /// What would have been accepted, for the error message.
    pub expected: &'static str,
}

impl InvalidValue {
    fn new(value: &str, expected: &'static str) -> Self {
        InvalidValue {
            value: value.to_string(),
            expected,
        }
    }
}

/// pg_dump's output format (`-F`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `-Fp`: an SQL script, restored with psql.
    Plain,
    /// `-Fc`: pg_dump's compressed archive, restored with pg_restore (the default, like pg_back).
    #[default]
    Custom,
    /// `-Ft`: a tar archive, restored with pg_restore.
    Tar,
    /// `-Fd`: a directory of files, the only format pg_dump can write with `-j`.
    Directory,
}

impl Format {
    /// The letter given to `pg_dump -F`.
    pub fn letter(self) -> char {
        match self {
            Format::Plain => 'p',
            Format::Custom => 'c',
            Format::Tar => 't',
            Format::Directory => 'd',
        }
    }

    /// The long name, as written in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::Custom => "custom",
            Format::Tar => "tar",
            Format::Directory => "directory",
        }
    }
}

impl FromStr for Format {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "p" | "plain" => Ok(Format::Plain),
            "c" | "custom" => Ok(Format::Custom),
            "t" | "tar" => Ok(Format::Tar),
            "d" | "directory" => Ok(Format::Directory),
            _ => Err(InvalidValue::new(
                s,
                "plain|p, custom|c, tar|t or directory|d",
            )),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// pg_dump's `-Z`: pg_back's level (-1 = pg_dump's default, 0 = none, 1..9 = gzip level), or
/// pg_dump 16+'s `method[:detail]` with gzip, lz4, zstd or none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Compression {
    /// No `-Z`: pg_dump's own default (gzip for custom and directory, none for plain and tar).
    #[default]
    Default,
    /// `-Z <0..9>`.
    Level(u8),
    /// `-Z <method>[:<detail>]`.
    Method {
        /// gzip, lz4, zstd or none.
        method: String,
        /// The level or option after `:`, passed through to pg_dump.
        detail: Option<String>,
    },
}

impl Compression {
    /// The argument of `-Z`, or `None` when pg_dump's default applies.
    pub fn pg_dump_arg(&self) -> Option<String> {
        match self {
            Compression::Default => None,
            Compression::Level(level) => Some(level.to_string()),
            Compression::Method { method, detail } => Some(match detail {
                Some(detail) => format!("{method}:{detail}"),
                None => method.clone(),
            }),
        }
    }

    /// The suffix a plain-format dump gets after `.sql` (`gz`, `lz4`, `zst`), if compressed.
    pub fn plain_suffix(&self) -> Option<&'static str> {
        match self {
            Compression::Default | Compression::Level(0) => None,
            Compression::Level(_) => Some("gz"),
            Compression::Method { method, detail } => {
                if detail.as_deref() == Some("0") {
                    return None;
                }
                match method.as_str() {
                    "gzip" => Some("gz"),
                    "lz4" => Some("lz4"),
                    "zstd" => Some("zst"),
                    _ => None,
                }
            }
        }
    }
}

impl FromStr for Compression {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const EXPECTED: &str = "-1..9 or gzip|lz4|zstd|none[:level]";
        let text = s.trim();
        if let Ok(level) = text.parse::<i32>() {
            return match level {
                -1 => Ok(Compression::Default),
                0..=9 => Ok(Compression::Level(level as u8)),
                _ => Err(InvalidValue::new(s, EXPECTED)),
            };
        }
        let (method, detail) = match text.split_once(':') {
            Some((method, detail)) => (method, Some(detail)),
            None => (text, None),
        };
        let method = method.to_ascii_lowercase();
        if !matches!(method.as_str(), "gzip" | "lz4" | "zstd" | "none") {
            return Err(InvalidValue::new(s, EXPECTED));
        }
        let detail = match detail {
            Some(d)
                if d.is_empty()
                    || !d
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "=,-_".contains(c)) =>
            {
                return Err(InvalidValue::new(s, EXPECTED))
            }
            other => other.map(str::to_string),
        };
        Ok(Compression::Method { method, detail })
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pg_dump_arg() {
            Some(arg) => f.write_str(&arg),
            None => f.write_str("-1"),
        }
    }
}

/// The mode given to every file written (`backup_file_mode`): octal, or negative for "leave the
/// umask's result alone".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileMode {
    /// chmod to these permission bits.
    Chmod(u32),
    /// No chmod.
    Unchanged,
}

impl FileMode {
    /// The permission bits to set, `None` for no chmod.
    pub fn bits(self) -> Option<u32> {
        match self {
            FileMode::Chmod(bits) => Some(bits),
            FileMode::Unchanged => None,
        }
    }
}

impl Default for FileMode {
    fn default() -> Self {
        FileMode::Chmod(0o600)
    }
}

impl FromStr for FileMode {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const EXPECTED: &str = "an octal mode from 0000 to 7777, or a negative number for no chmod";
        let text = s.trim();
        if let Some(rest) = text.strip_prefix('-') {
            return if !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()) {
                Ok(FileMode::Unchanged)
            } else {
                Err(InvalidValue::new(s, EXPECTED))
            };
        }
        let digits = text.strip_prefix("0o").unwrap_or(text);
        match u32::from_str_radix(digits, 8) {
            Ok(mode) if !digits.is_empty() && mode <= 0o7777 && !digits.starts_with('+') => {
                Ok(FileMode::Chmod(mode))
            }
            _ => Err(InvalidValue::new(s, EXPECTED)),
        }
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileMode::Chmod(mode) => write!(f, "{mode:04o}"),
            FileMode::Unchanged => f.write_str("-1"),
        }
    }
}

/// How many of the newest backups purge keeps whatever their age (`purge_min_keep`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// `all`: purge deletes nothing.
    All,
    /// Keep this many newest backups.
    Newest(usize),
}

impl Default for Keep {
    fn default() -> Self {
        Keep::Newest(0)
    }
}

impl FromStr for Keep {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if text.eq_ignore_ascii_case("all") {
            return Ok(Keep::All);
        }
        text.parse::<usize>()
            .map(Keep::Newest)
            .map_err(|_| InvalidValue::new(s, "a number >= 0 or `all`"))
    }
}

impl fmt::Display for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Keep::All => f.write_str("all"),
            Keep::Newest(n) => write!(f, "{n}"),
        }
    }
}

/// `purge_older_than`: a plain number of days, or a duration like `1h30m` (units ns, us, ms, s,
/// m, h; pg_back's Go durations, plus `d` for days).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeInterval(pub Duration);

impl Default for PurgeInterval {
    fn default() -> Self {
        PurgeInterval(Duration::from_secs(30 * 86_400))
    }
}

impl FromStr for PurgeInterval {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s, 86_400).map(PurgeInterval)
    }
}

impl fmt::Display for PurgeInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        if self.0.subsec_nanos() == 0 && secs.is_multiple_of(86_400) {
            write!(f, "{}", secs / 86_400)
        } else {
            write!(f, "{}", format_duration(self.0))
        }
    }
}

/// A timeout in seconds, or a duration like `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl FromStr for Seconds {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s, 1).map(Seconds)
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.subsec_nanos() == 0 {
            write!(f, "{}", self.0.as_secs())
        } else {
            f.write_str(&format_duration(self.0))
        }
    }
}

fn format_duration(d: Duration) -> String {
    let mut out = String::new();
    let mut secs = d.as_secs();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    let nanos = d.subsec_nanos();
    if secs > 0 || (out.is_empty() && nanos == 0) {
        out.push_str(&format!("{secs}s"));
    }
    if nanos > 0 {
        out.push_str(&format!("{nanos}ns"));
    }
    out
}

/// Parses `<number>` (times `bare_unit_secs`) or a sequence of `<number><unit>`.
pub fn parse_duration(s: &str, bare_unit_secs: u64) -> Result<Duration, InvalidValue> {
    const EXPECTED: &str =
        "a non-negative number or a duration like 1h30m (units ns, us, ms, s, m, h, d)";
    let text = s.trim();
    let err = || InvalidValue::new(s, EXPECTED);
    if text.is_empty() {
        return Err(err());
    }
    if text.chars().all(|c| c.is_ascii_digit()) {
        let n: u64 = text.parse().map_err(|_| err())?;
        return n
            .checked_mul(bare_unit_secs)
            .map(Duration::from_secs)
            .ok_or_else(err);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if digits == 0 {
            return Err(err());
        }
        let number: f64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3_600.0,
            "d" => 86_400.0,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        let part = Duration::try_from_secs_f64(number * unit).map_err(|_| err())?;
        total = total.checked_add(part).ok_or_else(err)?;
    }
    Ok(total)
}

/// The checksum written beside each file (`checksum_algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumAlgorithm {
    /// No checksum file.
    #[default]
    None,
    /// SHA-1 (`sha1sum -c`).
    Sha1,
    /// SHA-224.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl ChecksumAlgorithm {
    /// The name, which is also the checksum file's extension.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::None => "none",
            ChecksumAlgorithm::Sha1 => "sha1",
            ChecksumAlgorithm::Sha224 => "sha224",
            ChecksumAlgorithm::Sha256 => "sha256",
            ChecksumAlgorithm::Sha384 => "sha384",
            ChecksumAlgorithm::Sha512 => "sha512",
        }
    }
}

impl FromStr for ChecksumAlgorithm {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(ChecksumAlgorithm::None),
            "sha1" => Ok(ChecksumAlgorithm::Sha1),
            "sha224" => Ok(ChecksumAlgorithm::Sha224),
            "sha256" => Ok(ChecksumAlgorithm::Sha256),
            "sha384" => Ok(ChecksumAlgorithm::Sha384),
            "sha512" => Ok(ChecksumAlgorithm::Sha512),
            _ => Err(InvalidValue::new(
                s,
                "none, sha1, sha224, sha256, sha384 or sha512",
            )),
        }
    }
}

impl fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the time appears in file names (`timestamp_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampFormat {
    /// `2006-01-02T15:04:05+01:00` (`Z` in UTC), Go's RFC3339 as pg_back writes it.
    #[default]
    Rfc3339,
    /// `2006-01-02_15-04-05`, local time.
    Legacy,
}

impl FromStr for TimestampFormat {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rfc3339" => Ok(TimestampFormat::Rfc3339),
            "legacy" => Ok(TimestampFormat::Legacy),
            _ => Err(InvalidValue::new(s, "rfc3339 or legacy")),
        }
    }
}

impl fmt::Display for TimestampFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimestampFormat::Rfc3339 => "rfc3339",
            TimestampFormat::Legacy => "legacy",
        })
    }
}

/// Parses pg_back's booleans (`true/false`, `yes/no`, `on/off`, `1/0`), strictly.
pub fn parse_bool(s: &str) -> Result<bool, InvalidValue> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" | "t" | "y" => Ok(true),
        "false" | "no" | "off" | "0" | "f" | "n" => Ok(false),
        _ => Err(InvalidValue::new(s, "true or false")),
    }
}

/// A value type read from TOML as a string (or an integer where that is natural) through its
/// strict `FromStr`, and written back as a string.
pub trait ConfigValue: FromStr<Err = InvalidValue> + fmt::Display {
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

/// `#[serde(with = "text")]`: a [`ConfigValue`] read from TOML through its strict parser (a
/// string, or an integer where that is natural) and written back as its text.
pub mod text {
    use super::{fmt, ConfigValue, StrictVisitor};
    use serde::{Deserializer, Serializer};

    /// Reads the value through its strict parser.
    pub fn deserialize<'de, D: Deserializer<'de>, T: ConfigValue>(d: D) -> Result<T, D::Error> {
        d.deserialize_any(StrictVisitor(std::marker::PhantomData))
    }

    /// Writes the value as its text.
    pub fn serialize<S: Serializer, T: fmt::Display>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }
}

/// [`text`] for an optional key.
pub mod text_opt {
    use super::{fmt, ConfigValue};
    use serde::{Deserializer, Serializer};

    /// Reads the value through its strict parser.
    pub fn deserialize<'de, D: Deserializer<'de>, T: ConfigValue>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        super::text::deserialize(d).map(Some)
    }

    /// Writes the value as its text.
    pub fn serialize<S: Serializer, T: fmt::Display>(
        value: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => s.collect_str(value),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_modes_follow_the_facts_vectors() {
        assert_eq!("0700".parse::<FileMode>(), Ok(FileMode::Chmod(448)));
        assert_eq!("0600".parse::<FileMode>(), Ok(FileMode::Chmod(0o600)));
        assert_eq!("-1".parse::<FileMode>(), Ok(FileMode::Unchanged));
        for bad in ["070000", "08170", "", "rw", "-", "-x", "+600"] {
            assert!(bad.parse::<FileMode>().is_err(), "{bad}");
        }
        assert_eq!(FileMode::Chmod(0o640).to_string(), "0640");
    }

    #[test]
    fn keep_is_a_count_or_all() {
        assert_eq!("all".parse::<Keep>(), Ok(Keep::All));
        assert_eq!("ALL".parse::<Keep>(), Ok(Keep::All));
        assert_eq!("3".parse::<Keep>(), Ok(Keep::Newest(3)));
        assert!("-10".parse::<Keep>().is_err());
        assert!("many".parse::<Keep>().is_err());
    }

    #[test]
    fn purge_interval_is_days_or_a_duration() {
        assert_eq!(
            "30".parse::<PurgeInterval>(),
            Ok(PurgeInterval(Duration::from_secs(30 * 86_400)))
        );
        assert_eq!(
            "1h30m".parse::<PurgeInterval>(),
            Ok(PurgeInterval(Duration::from_secs(5_400)))
        );
        assert_eq!(
            "90s".parse::<PurgeInterval>(),
            Ok(PurgeInterval(Duration::from_secs(90)))
        );
        assert_eq!(
            "1.5h".parse::<PurgeInterval>(),
            Ok(PurgeInterval(Duration::from_secs(5_400)))
        );
        assert_eq!(
            "0".parse::<PurgeInterval>(),
            Ok(PurgeInterval(Duration::ZERO))
        );
        for bad in ["", "-1", "-1h", "1x", "h", "1h-5m", "thirty"] {
            assert!(bad.parse::<PurgeInterval>().is_err(), "{bad}");
        }
        assert_eq!(
            PurgeInterval(Duration::from_secs(5_400)).to_string(),
            "1h30m"
        );
        assert_eq!(PurgeInterval::default().to_string(), "30");
    }

    #[test]
    fn formats_accept_pg_back_names_and_letters() {
        assert_eq!("c".parse::<Format>(), Ok(Format::Custom));
        assert_eq!("directory".parse::<Format>(), Ok(Format::Directory));
        assert_eq!("P".parse::<Format>(), Ok(Format::Plain));
        assert!("zip".parse::<Format>().is_err());
    }

    #[test]
    fn compression_levels_and_methods() {
        assert_eq!("-1".parse::<Compression>(), Ok(Compression::Default));
        assert_eq!("6".parse::<Compression>(), Ok(Compression::Level(6)));
        assert!("10".parse::<Compression>().is_err());
        assert!("-2".parse::<Compression>().is_err());
        let zstd: Compression = "zstd:3".parse().unwrap();
        assert_eq!(zstd.pg_dump_arg().as_deref(), Some("zstd:3"));
        assert_eq!(zstd.plain_suffix(), Some("zst"));
        assert_eq!(Compression::Level(5).plain_suffix(), Some("gz"));
        assert_eq!(Compression::Level(0).plain_suffix(), None);
        assert!("brotli".parse::<Compression>().is_err());
        assert!("zstd:".parse::<Compression>().is_err());
        assert!("zstd:3 --evil".parse::<Compression>().is_err());
    }

    #[test]
    fn checksum_algorithms() {
        assert_eq!(
            "SHA256".parse::<ChecksumAlgorithm>(),
            Ok(ChecksumAlgorithm::Sha256)
        );
        assert!("md5".parse::<ChecksumAlgorithm>().is_err());
    }

    #[test]
    fn booleans_are_strict() {
        assert_eq!(parse_bool("yes"), Ok(true));
        assert_eq!(parse_bool("false"), Ok(false));
        assert!(parse_bool("maybe").is_err());
        assert!(parse_bool("").is_err());
    }
}
