//! What a physical backup brings besides its files: `backup_label`, `tablespace_map`, the
//! copied `pg_control`, and WAL positions (LSNs and segment names), parsed without a server.

use std::path::{Path, PathBuf};

pub use crate::wal::Lsn;
use crate::wal::{is_wal_file_name, wal_file_name, DEFAULT_SEGMENT_SIZE};

/// The lines of `backup_label` that pgdrill needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupLabel {
    /// `START WAL LOCATION`: where replay of this backup starts.
    pub start: Lsn,
    /// The WAL file named beside the start location, e.g. `000000010000000000000002`.
    pub start_file: String,
    /// `CHECKPOINT LOCATION`: the checkpoint the backup started from.
    pub checkpoint: Lsn,
    /// `LABEL`, when present.
    pub label: Option<String>,
    /// `START TIME`, when present.
    pub start_time: Option<String>,
}

impl BackupLabel {
    /// Parses the text of a `backup_label` file; the error says which line is missing or bad.
    pub fn parse(text: &str) -> Result<BackupLabel, String> {
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
                .map(str::trim_end)
        };
        let start_line = field("START WAL LOCATION")
            .ok_or("no `START WAL LOCATION` line: this is not a backup_label")?;
        let (start, rest) = start_line.split_once(' ').unwrap_or((start_line, ""));
        let start = Lsn::parse(start).ok_or_else(|| format!("bad START WAL LOCATION {start:?}"))?;
        let start_file = rest
            .strip_prefix("(file ")
            .and_then(|rest| rest.strip_suffix(')'))
            .filter(|file| is_wal_file_name(file))
            .ok_or_else(|| format!("bad WAL file in START WAL LOCATION {start_line:?}"))?
            .to_string();
        let checkpoint = field("CHECKPOINT LOCATION")
            .and_then(Lsn::parse)
            .ok_or("no valid `CHECKPOINT LOCATION` line")?;
        Ok(BackupLabel {
            start,
            start_file,
            checkpoint,
            label: field("LABEL").map(str::to_string),
            start_time: field("START TIME").map(str::to_string),
        })
    }

    /// The timeline of the backup's start, from the start WAL file name.
    pub fn timeline(&self) -> u32 {
        u32::from_str_radix(&self.start_file[..8], 16).unwrap_or(1)
    }

    /// The cluster's WAL segment size, worked out from the start LSN and the file name
    /// beside it (a power of two from 1 MB to 1 GB); 16 MB when they do not agree.
    pub fn wal_segment_size(&self) -> u64 {
        let high = u64::from_str_radix(&self.start_file[8..16], 16).unwrap_or(0);
        let low = u64::from_str_radix(&self.start_file[16..24], 16).unwrap_or(0);
        (20..=30)
            .map(|shift| 1u64 << shift)
            .find(|size| high * (0x1_0000_0000 / size) + low == self.start.0 / size)
            .unwrap_or(DEFAULT_SEGMENT_SIZE)
    }

    /// The name of the WAL segment holding `lsn` on this backup's timeline.
    pub fn segment_name(&self, lsn: Lsn) -> String {
        wal_file_name(self.timeline(), lsn, self.wal_segment_size())
    }
}

/// One line of `tablespace_map`: the tablespace's OID and the directory its link points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TablespaceEntry {
    /// The name of the link under `pg_tblspc`.
    pub oid: String,
    /// Where the tablespace lived when the backup was taken.
    pub path: PathBuf,
}

/// Parses `tablespace_map`: `<oid> <path>` per line, where the server escaped `\n`, `\r`
/// and `\` in the path with a backslash.
pub fn parse_tablespace_map(text: &str) -> Result<Vec<TablespaceEntry>, String> {
    let mut entries = Vec::new();
    for line in text.lines().filter(|line| !line.is_empty()) {
        let (oid, escaped) = line
            .split_once(' ')
            .filter(|(oid, _)| !oid.is_empty() && oid.chars().all(|c| c.is_ascii_digit()))
            .ok_or_else(|| format!("line {line:?} is not `<oid> <path>`"))?;
        let mut path = String::new();
        let mut chars = escaped.chars();
        while let Some(c) = chars.next() {
            path.push(if c == '\\' {
                chars.next().unwrap_or('\\')
            } else {
                c
            });
        }
        entries.push(TablespaceEntry {
            oid: oid.to_string(),
            path: PathBuf::from(path),
        });
    }
    Ok(entries)
}

/// Writes `tablespace_map` lines, escaping as the server does.
pub fn format_tablespace_map(entries: &[TablespaceEntry]) -> String {
    let mut out = String::new();
    for entry in entries {
        out.push_str(&entry.oid);
        out.push(' ');
        for c in entry.path.to_string_lossy().chars() {
            if matches!(c, '\n' | '\r' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('\n');
    }
    out
}

/// What pgdrill reads from a copied `global/pg_control`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlFile {
    /// `pg_control_version`, e.g. 1300 (a sanity check that this is a control file).
    pub version: u32,
    /// The latest checkpoint the copied server had completed when `pg_control` was copied.
    pub checkpoint: Lsn,
}

impl ControlFile {
    /// Reads the fixed start of `ControlFileData`, the same from 9.3 to 18: system identifier
    /// (8 bytes), `pg_control_version` (4), catalog version (4), state (4, padded to 8), time
    /// (8), then `checkPoint` at byte 32. Little-endian, as written on this machine.
    pub fn parse(bytes: &[u8]) -> Result<ControlFile, String> {
        let word = |at: usize, len: usize| -> Result<u64, String> {
            let slice = bytes
                .get(at..at + len)
                .ok_or_else(|| format!("only {} bytes", bytes.len()))?;
            let mut buf = [0u8; 8];
            buf[..len].copy_from_slice(slice);
            Ok(u64::from_le_bytes(buf))
        };
        let version = word(8, 4)? as u32;
        if !(900..2000).contains(&version) {
            return Err(format!(
                "pg_control_version {version} is not one PostgreSQL 9.3 to 18 writes"
            ));
        }
        Ok(ControlFile {
            version,
            checkpoint: Lsn(word(32, 8)?),
        })
    }

    /// Reads `DATADIR/global/pg_control`.
    pub fn read(data_dir: &Path) -> Result<ControlFile, String> {
        let path = data_dir.join("global").join("pg_control");
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        ControlFile::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL: &str = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
                         CHECKPOINT LOCATION: 0/2000060\n\
                         BACKUP METHOD: streamed\n\
                         BACKUP FROM: primary\n\
                         START TIME: 2026-11-03 10:00:00 UTC\n\
                         LABEL: nightly\n\
                         START TIMELINE: 1\n";

    #[test]
    fn labels_parse_and_name_segments() {
        let label = BackupLabel::parse(LABEL).unwrap();
        assert_eq!(label.start, Lsn(0x2000028));
        assert_eq!(label.checkpoint, Lsn(0x2000060));
        assert_eq!(label.label.as_deref(), Some("nightly"));
        assert_eq!(label.timeline(), 1);
        assert_eq!(label.wal_segment_size(), 16 * 1024 * 1024);
        assert_eq!(
            label.segment_name(Lsn(0x3000060)),
            "000000010000000000000003"
        );
        assert_eq!(
            label.segment_name(Lsn(0x1_0000_0000)),
            "000000010000000100000000"
        );
        assert!(BackupLabel::parse("LABEL: x\n").is_err());
        assert!(BackupLabel::parse("START WAL LOCATION: 0/1 (file 12)\n").is_err());
    }

    #[test]
    fn segment_size_comes_from_the_start_file() {
        // initdb --wal-segsize=64: segment 2 starts at 0/8000000.
        let text = LABEL.replace(
            "0/2000028 (file 000000010000000000000002)",
            "0/8000028 (file 000000020000000000000002)",
        );
        let label = BackupLabel::parse(&text).unwrap();
        assert_eq!(label.wal_segment_size(), 64 * 1024 * 1024);
        assert_eq!(label.timeline(), 2);
        assert_eq!(
            label.segment_name(Lsn(0xC000000)),
            "000000020000000000000003"
        );
    }

    #[test]
    fn tablespace_maps_round_trip_with_escapes() {
        let text = "16384 /srv/ts one\n16385 /srv/odd\\\\dir\n";
        let entries = parse_tablespace_map(text).unwrap();
        assert_eq!(entries[0].oid, "16384");
        assert_eq!(entries[0].path, PathBuf::from("/srv/ts one"));
        assert_eq!(entries[1].path, PathBuf::from("/srv/odd\\dir"));
        assert_eq!(format_tablespace_map(&entries), text);
        assert!(parse_tablespace_map("x /a\n").is_err());
    }

    #[test]
    fn control_file_start_is_read() {
        let mut bytes = vec![0u8; 296];
        bytes[8..12].copy_from_slice(&1300u32.to_le_bytes());
        bytes[32..40].copy_from_slice(&0x1_0200_0060u64.to_le_bytes());
        let control = ControlFile::parse(&bytes).unwrap();
        assert_eq!(control.version, 1300);
        assert_eq!(control.checkpoint, Lsn(0x1_0200_0060));
        bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
        assert!(ControlFile::parse(&bytes).is_err());
        assert!(ControlFile::parse(&bytes[..20]).is_err());
    }
}
