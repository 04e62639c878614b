//! WAL positions and segment names, computed without a server: the one `Lsn` type of the
//! crate, segment arithmetic (a segment's name from an LSN and a timeline, and back), the range
//! of segments a backup needs, the names archivers give segments, and the check of a segment's
//! first page header; used by the hook pair's archive check, pgdrill and the metrics.

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

/// The number of the segment holding `lsn` (`XLByteToSeg`).
pub fn segment_number(lsn: Lsn, segment_size: u64) -> u64 {
    lsn.0 / segment_size
}

/// `TTTTTTTTXXXXXXXXYYYYYYYY` of segment number `segment` on `timeline` (`XLogFileName`).
pub fn segment_file_name(timeline: u32, segment: u64, segment_size: u64) -> String {
    wal_file_name(
        timeline,
        Lsn(segment.saturating_mul(segment_size)),
        segment_size,
    )
}

/// The timeline and segment number a segment's file name says, if it is one.
pub fn parse_wal_file_name(name: &str, segment_size: u64) -> Option<(u32, u64)> {
    if !is_wal_file_name(name) {
        return None;
    }
    let field = |range: std::ops::Range<usize>| u64::from_str_radix(&name[range], 16).ok();
    let timeline = u32::try_from(field(0..8)?).ok()?;
    let per_id = 0x1_0000_0000 / segment_size;
    let (high, low) = (field(8..16)?, field(16..24)?);
    if low >= per_id {
        return None;
    }
    Some((timeline, high.checked_mul(per_id)?.checked_add(low)?))
}

/// The segments a backup needs: on `timeline`, from the one holding its start LSN to the one
/// holding the byte before its stop LSN (a stop LSN on a segment boundary needs nothing of
/// the segment it points into).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentRange {
    /// The backup's timeline.
    pub timeline: u32,
    /// The first segment's number.
    pub first: u64,
    /// The last segment's number (at least `first`).
    pub last: u64,
    /// `wal_segment_size` of the server.
    pub segment_size: u64,
}

impl SegmentRange {
    /// The range of a backup from `start` to `stop` (stop before start is taken as start).
    pub fn of_backup(timeline: u32, start: Lsn, stop: Lsn, segment_size: u64) -> SegmentRange {
        let first = segment_number(start, segment_size);
        let last = segment_number(Lsn(stop.0.saturating_sub(1)), segment_size).max(first);
        SegmentRange {
            timeline,
            first,
            last,
            segment_size,
        }
    }

    /// How many segments the range holds.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Always false: a range holds at least its first segment.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The file name of segment number `segment`.
    pub fn name(&self, segment: u64) -> String {
        segment_file_name(self.timeline, segment, self.segment_size)
    }

    /// Every segment's file name, in order.
    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        (self.first..=self.last).map(|segment| self.name(segment))
    }
}

/// The compression extensions archivers add to a segment's name (pgBackRest, WAL-G, Barman,
/// `gzip`/`zstd`/`lz4` in an `archive_command`).
pub const ARCHIVE_EXTENSIONS: [&str; 5] = [".gz", ".zst", ".lz4", ".bz2", ".xz"];

/// Whether `file` (a name in an archive directory) holds segment `segment`: the plain name,
/// the name with a compression extension, or pgBackRest's `NAME-<40 hex sha1>` with or
/// without one.
pub fn is_archived_name(file: &str, segment: &str) -> bool {
    let Some(rest) = file.strip_prefix(segment) else {
        return false;
    };
    let rest = match rest.strip_prefix('-') {
        Some(checksummed) => match checksummed.get(..40) {
            Some(sha1) if sha1.chars().all(|c| c.is_ascii_hexdigit()) => &checksummed[40..],
            _ => return false,
        },
        None => rest,
    };
    rest.is_empty() || ARCHIVE_EXTENSIONS.contains(&rest)
}

/// `XLOG_PAGE_MAGIC` of `xlog_internal.h` for a major (10 to 18): it changes with every
/// major, and a segment's first two bytes hold it.
pub fn xlog_page_magic(major: u32) -> Option<u16> {
    Some(match major {
        10 => 0xD097,
        11 => 0xD098,
        12 => 0xD101,
        13 => 0xD106,
        14 => 0xD10D,
        15 => 0xD110,
        16 => 0xD113,
        17 => 0xD116,
        18 => 0xD118,
        _ => return None,
    })
}

/// The bytes of a segment's first page that [`check_segment_header`] reads: the long page
/// header up to `xlp_xlog_blcksz`.
pub const LONG_PAGE_HEADER_LEN: usize = 40;

/// Why a file is not the segment it should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderProblem {
    /// Shorter than a long page header.
    TooShort(usize),
    /// `xlp_magic` is not this major's (garbage, or another major's WAL).
    Magic {
        /// What the file holds.
        found: u16,
        /// What the major writes.
        expected: u16,
    },
    /// The first page lacks the long header (`XLP_LONG_HEADER`) every segment starts with.
    NotLongHeader,
    /// `xlp_tli` is outside the timelines the segment may hold.
    Timeline(u32),
    /// `xlp_pageaddr` is not the segment's start: a file of another segment.
    Address(Lsn),
    /// `xlp_seg_size` differs from the server's segment size.
    SegmentSize(u32),
}

impl fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderProblem::TooShort(len) => write!(f, "only {len} bytes, not a WAL segment"),
            HeaderProblem::Magic { found, expected } => write!(
                f,
                "page magic {found:#06X}, expected {expected:#06X}: not WAL of this major"
            ),
            HeaderProblem::NotLongHeader => write!(f, "its first page has no long header"),
            HeaderProblem::Timeline(tli) => write!(f, "its page header says timeline {tli}"),
            HeaderProblem::Address(lsn) => {
                write!(f, "its first page is at {lsn}, another segment's")
            }
            HeaderProblem::SegmentSize(size) => write!(f, "its segment size is {size} bytes"),
        }
    }
}

/// Checks the long page header a segment starts with (little-endian, as written on the
/// architectures PostgreSQL runs on here): this major's magic, the long-header flag, a
/// timeline in `timelines`, the page address of `segment`, and the segment size. The first
/// segment of a new timeline is copied from the old one, header and all, so the first segment
/// of a backup may say any timeline up to the backup's ([`timelines_of`]); every later one must
/// say the backup's own.
pub fn check_segment_header(
    page: &[u8],
    magic: u16,
    timelines: std::ops::RangeInclusive<u32>,
    segment: u64,
    segment_size: u64,
) -> Result<(), HeaderProblem> {
    const XLP_LONG_HEADER: u16 = 0x0002;
    if page.len() < LONG_PAGE_HEADER_LEN {
        return Err(HeaderProblem::TooShort(page.len()));
    }
    let u16_at = |at: usize| u16::from_le_bytes([page[at], page[at + 1]]);
    let u32_at =
        |at: usize| u32::from_le_bytes([page[at], page[at + 1], page[at + 2], page[at + 3]]);
    let u64_at = |at: usize| u64::from(u32_at(at)) | u64::from(u32_at(at + 4)) << 32;
    let found = u16_at(0);
    if found != magic {
        return Err(HeaderProblem::Magic {
            found,
            expected: magic,
        });
    }
    if u16_at(2) & XLP_LONG_HEADER == 0 {
        return Err(HeaderProblem::NotLongHeader);
    }
    let tli = u32_at(4);
    if tli == 0 || !timelines.contains(&tli) {
        return Err(HeaderProblem::Timeline(tli));
    }
    let address = u64_at(8);
    if address != segment.saturating_mul(segment_size) {
        return Err(HeaderProblem::Address(Lsn(address)));
    }
    let size = u32_at(32);
    if u64::from(size) != segment_size {
        return Err(HeaderProblem::SegmentSize(size));
    }
    Ok(())
}

/// The timelines the first page of `segment` of `range` may say: from 1 to the backup's for
/// its first segment (it may be the one copied at the switch to the backup's timeline), the
/// backup's own for every later one.
pub fn timelines_of(range: &SegmentRange, segment: u64) -> std::ops::RangeInclusive<u32> {
    match segment == range.first {
        true => 1..=range.timeline,
        false => range.timeline..=range.timeline,
    }
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

    #[test]
    fn a_backup_needs_the_segments_up_to_the_byte_before_its_stop() {
        let size = DEFAULT_SEGMENT_SIZE;
        let range = SegmentRange::of_backup(1, Lsn(0x2000028), Lsn(0x2000138), size);
        assert_eq!((range.first, range.last, range.len()), (2, 2, 1));
        // A stop LSN on a boundary: the segment it points into is not needed.
        let range = SegmentRange::of_backup(1, Lsn(0x2000028), Lsn(0x4000000), size);
        assert_eq!((range.first, range.last), (2, 3));
        let range = SegmentRange::of_backup(1, Lsn(0x2000028), Lsn(0x4000001), size);
        assert_eq!((range.first, range.last), (2, 4));
        // Across the 4 GB line, on timeline 3.
        let range = SegmentRange::of_backup(3, Lsn(0xFF00_0028), Lsn(0x1_0100_0000), size);
        assert_eq!(
            range.names().collect::<Vec<_>>(),
            ["0000000300000000000000FF", "000000030000000100000000"]
        );
        // A stop at the start is one segment, not none.
        let range = SegmentRange::of_backup(1, Lsn(0x3000000), Lsn(0x3000000), size);
        assert_eq!((range.first, range.last, range.is_empty()), (3, 3, false));
        assert_eq!(
            parse_wal_file_name("000000030000000100000000", size),
            Some((3, 0x100))
        );
        assert_eq!(parse_wal_file_name("000000010000000000000100", size), None);
        assert_eq!(parse_wal_file_name("00000001.history", size), None);
        assert_eq!(
            segment_file_name(2, 0x1FF, size),
            "0000000200000001000000FF"
        );
    }

    #[test]
    fn archived_names_are_plain_compressed_or_checksummed() {
        let segment = "000000010000000000000003";
        let sha1 = "0123456789abcdef0123456789ABCDEF01234567";
        for good in [
            segment.to_string(),
            format!("{segment}.gz"),
            format!("{segment}.zst"),
            format!("{segment}.lz4"),
            format!("{segment}.bz2"),
            format!("{segment}.xz"),
            format!("{segment}-{sha1}"),
            format!("{segment}-{sha1}.zst"),
        ] {
            assert!(is_archived_name(&good, segment), "{good}");
        }
        for bad in [
            format!("{segment}.partial"),
            format!("{segment}.00000028.backup"),
            format!("{segment}-{}", &sha1[..39]),
            format!("{segment}-{sha1}.rar"),
            format!("{segment}.gz.tmp"),
            "000000010000000000000004".to_string(),
            "00000001000000000000000".to_string(),
        ] {
            assert!(!is_archived_name(&bad, segment), "{bad}");
        }
    }

    /// A long page header as PostgreSQL writes it at the start of a segment.
    fn header(magic: u16, info: u16, tli: u32, address: u64, segment_size: u32) -> Vec<u8> {
        let mut page = vec![0u8; 8192];
        page[0..2].copy_from_slice(&magic.to_le_bytes());
        page[2..4].copy_from_slice(&info.to_le_bytes());
        page[4..8].copy_from_slice(&tli.to_le_bytes());
        page[8..16].copy_from_slice(&address.to_le_bytes());
        page[24..32].copy_from_slice(&7_000_000_000_000_000_000u64.to_le_bytes());
        page[32..36].copy_from_slice(&segment_size.to_le_bytes());
        page[36..40].copy_from_slice(&8192u32.to_le_bytes());
        page
    }

    #[test]
    fn a_segment_header_names_its_major_timeline_and_address() {
        let size = DEFAULT_SEGMENT_SIZE;
        let magic = xlog_page_magic(15).unwrap();
        let good = header(magic, 0x0002, 2, 3 * size, size as u32);
        assert_eq!(check_segment_header(&good, magic, 1..=2, 3, size), Ok(()));
        // A later timeline's backup may start in the segment copied at the switch.
        assert_eq!(check_segment_header(&good, magic, 1..=3, 3, size), Ok(()));
        // Past the backup's first segment, only the backup's own timeline.
        assert_eq!(
            check_segment_header(&good, magic, 3..=3, 3, size),
            Err(HeaderProblem::Timeline(2))
        );
        let range = SegmentRange::of_backup(3, Lsn(3 * size + 40), Lsn(5 * size), size);
        assert_eq!(timelines_of(&range, 3), 1..=3);
        assert_eq!(timelines_of(&range, 4), 3..=3);
        assert_eq!(
            check_segment_header(&good, magic, 1..=1, 3, size),
            Err(HeaderProblem::Timeline(2))
        );
        assert_eq!(
            check_segment_header(&good, magic, 1..=2, 4, size),
            Err(HeaderProblem::Address(Lsn(3 * size)))
        );
        let other_major = xlog_page_magic(14).unwrap();
        assert_eq!(
            check_segment_header(&good, other_major, 1..=2, 3, size),
            Err(HeaderProblem::Magic {
                found: magic,
                expected: other_major
            })
        );
        let short = header(magic, 0x0000, 2, 3 * size, size as u32);
        assert_eq!(
            check_segment_header(&short, magic, 1..=2, 3, size),
            Err(HeaderProblem::NotLongHeader)
        );
        let resized = header(magic, 0x0002, 2, 3 * size, 1 << 26);
        assert!(matches!(
            check_segment_header(&resized, magic, 1..=2, 3, size),
            Err(HeaderProblem::SegmentSize(_))
        ));
        assert_eq!(
            check_segment_header(b"garbage", magic, 1..=2, 3, size),
            Err(HeaderProblem::TooShort(7))
        );
        let zeros = vec![0u8; 8192];
        assert!(check_segment_header(&zeros, magic, 1..=2, 3, size)
            .unwrap_err()
            .to_string()
            .contains("page magic 0x0000"));
        let magics: Vec<u16> = (10..=18).filter_map(xlog_page_magic).collect();
        assert_eq!(magics.len(), 9);
        assert!(
            magics.windows(2).all(|pair| pair[0] < pair[1]),
            "{magics:?}"
        );
        assert_eq!((xlog_page_magic(9), xlog_page_magic(19)), (None, None));
    }
}
