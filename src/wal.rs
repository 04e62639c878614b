//! WAL positions and segment names, computed without a server: the one `Lsn` type of the
//! crate, segment arithmetic (a segment's name from an LSN and a timeline, and back), used by
//! the hook pair's archive check, pgdrill and the metrics.

use std::fmt;

/// A WAL position (`pg_lsn`), e.g. `0/3000028`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Parses `X/Y` with hexadecimal halves of at most 8 digits (PostgreSQL 18 pads the low
    /// half; both forms parse).
    pub fn parse(text: &str) -> Option<Lsn> {
        let (high, low) = text.trim().split_once('/')?;
        let is_hex = |part: &str| {
            !part.is_empty() && part.len() <= 8 && part.chars().all(|c| c.is_ascii_hexdigit())
        };
        if !is_hex(high) || !is_hex(low) {
            return None;
        }
        let high = u64::from_str_radix(high, 16).ok()?;
        let low = u64::from_str_radix(low, 16).ok()?;
        Some(Lsn(high << 32 | low))
    }

    /// Every LSN written in `text` (`... at 0/3000060: wanted 24 ...`), in order.
    pub fn find_all(text: &str) -> Vec<Lsn> {
        text.split(|c: char| !(c.is_ascii_hexdigit() || c == '/'))
            .filter_map(Lsn::parse)
            .collect()
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// The WAL segment size PostgreSQL uses unless initdb was told otherwise (`--wal-segsize`).
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

/// `TTTTTTTTXXXXXXXXYYYYYYYY`: the name of the segment holding `lsn` on `timeline`, with the
/// segment number split as PostgreSQL does (`XLogFileName`).
pub fn wal_file_name(timeline: u32, lsn: Lsn, segment_size: u64) -> String {
    let segment = lsn.0 / segment_size;
    let per_id = 0x1_0000_0000 / segment_size;
    format!(
        "{timeline:08X}{:08X}{:08X}",
        segment / per_id,
        segment % per_id
    )
}

/// Whether `name` has the shape of a WAL segment's file name (24 hexadecimal digits).
pub fn is_wal_file_name(name: &str) -> bool {
    name.len() == 24 && name.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse_print_and_are_found_in_log_lines() {
        assert_eq!(Lsn::parse("0/3000060"), Some(Lsn(0x3000060)));
        assert_eq!(Lsn::parse("1/0"), Some(Lsn(1 << 32)));
        assert_eq!(Lsn::parse("0/03000060"), Some(Lsn(0x3000060)));
        assert_eq!(Lsn::parse("16/B374D848"), Some(Lsn(0x16_B374_D848)));
        assert_eq!(Lsn::parse("FFFFFFFF/FFFFFFFF"), Some(Lsn(u64::MAX)));
        for bad in ["0/", "x/1", "", "12", "1/2/3", "100000000/0"] {
            assert_eq!(Lsn::parse(bad), None, "{bad}");
        }
        assert_eq!(Lsn(0x1_0300_0060).to_string(), "1/3000060");
        assert_eq!(
            Lsn::find_all("LOG:  invalid record length at 0/3000060: wanted 24, got 0"),
            vec![Lsn(0x3000060)]
        );
        assert!(Lsn::find_all("2026-11-03 10:00:00.123 UTC [42] LOG:  ok").is_empty());
    }

    #[test]
    fn segment_names_split_the_number_as_postgres_does() {
        let size = DEFAULT_SEGMENT_SIZE;
        assert_eq!(
            wal_file_name(1, Lsn(0x3000060), size),
            "000000010000000000000003"
        );
        assert_eq!(
            wal_file_name(1, Lsn(0x1_0000_0000), size),
            "000000010000000100000000"
        );
        assert_eq!(
            wal_file_name(2, Lsn(0xFFFF_FFFF), size),
            "0000000200000000000000FF"
        );
        // initdb --wal-segsize=64: 64 segments per 4 GB.
        assert_eq!(
            wal_file_name(1, Lsn(0xC000000), 64 * 1024 * 1024),
            "000000010000000000000003"
        );
        assert!(is_wal_file_name("000000010000000000000003"));
        assert!(!is_wal_file_name("000000010000000000000003.gz"));
    }
}
