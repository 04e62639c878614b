//! The little of tar that a base backup needs, push-style so it follows the network stream:
//! [`TarParser`] splits a server's archive into entries (ustar headers as PostgreSQL writes
//! them, octal or base-256 sizes, the two zero blocks that end it), and [`header`] writes the
//! ustar header of a WAL segment for `pg_wal.tar`.
//!
//! Not the `tar` crate: it reads from a blocking `Read`, which would need a thread and a pipe
//! between the async copy loop and the parser; PostgreSQL's archives use only files,
//! directories and symlinks with names under 100 bytes, which 150 lines cover.

use std::io;

/// A tar block.
pub const BLOCK: usize = 512;

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (PostgreSQL's `pg_tblspc/<oid>`).
    Symlink,
}

/// One entry's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The path inside the archive, without a trailing `/`.
    pub path: String,
    /// File, directory or symlink.
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Data bytes that follow the header.
    pub size: u64,
    /// A symlink's target.
    pub link: String,
}

/// Where the parser hands entries and their bytes.
pub trait TarVisitor {
    /// An entry begins.
    fn entry(&mut self, entry: &Entry) -> io::Result<()>;
    /// Bytes of the current file.
    fn data(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// The current entry is complete.
    fn end_entry(&mut self) -> io::Result<()>;
}

/// Splits a tar stream fed in arbitrary pieces.
#[derive(Debug, Default)]
pub struct TarParser {
    header: Vec<u8>,
    /// Data bytes of the current entry still to come.
    remaining: u64,
    /// Padding bytes after them.
    padding: u64,
    in_entry: bool,
    /// Zero blocks seen in a row; two end the archive.
    zero_blocks: u8,
}

impl TarParser {
    /// A parser at the start of an archive.
    pub fn new() -> TarParser {
        TarParser::default()
    }

    /// Whether the archive's end (two zero blocks) has been seen.
    pub fn ended(&self) -> bool {
        self.zero_blocks >= 2
    }

    /// Whether the stream stopped between entries (it may still lack the end blocks).
    pub fn at_boundary(&self) -> bool {
        !self.in_entry && self.header.is_empty()
    }

    /// Feeds the next piece of the stream.
    pub fn feed(&mut self, mut bytes: &[u8], visitor: &mut impl TarVisitor) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.in_entry {
                if self.remaining > 0 {
                    let n = bytes
                        .len()
                        .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                    visitor.data(&bytes[..n])?;
                    self.remaining -= n as u64;
                    bytes = &bytes[n..];
                    if self.remaining > 0 {
                        continue;
                    }
                }
                // An entry whose data fills its last block ends with its last data byte.
                let n = bytes
                    .len()
                    .min(usize::try_from(self.padding).unwrap_or(usize::MAX));
                self.padding -= n as u64;
                bytes = &bytes[n..];
                if self.padding == 0 {
                    self.in_entry = false;
                    visitor.end_entry()?;
                }
                continue;
            }
            let n = (BLOCK - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() < BLOCK {
                continue;
            }
            let block = std::mem::take(&mut self.header);
            if block.iter().all(|&b| b == 0) {
                self.zero_blocks = self.zero_blocks.saturating_add(1);
                continue;
            }
            if self.ended() {
                return Err(invalid("data after the end of the tar archive"));
            }
            self.zero_blocks = 0;
            let entry = parse_header(&block)?;
            visitor.entry(&entry)?;
            self.remaining = entry.size;
            self.padding = (BLOCK as u64 - entry.size % BLOCK as u64) % BLOCK as u64;
            self.in_entry = true;
            if self.remaining == 0 && self.padding == 0 {
                self.in_entry = false;
                visitor.end_entry()?;
            }
        }
        Ok(())
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Reads a ustar header block.
pub fn parse_header(block: &[u8]) -> io::Result<Entry> {
    let text = |range: std::ops::Range<usize>| {
        let field = &block[range];
        let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
        String::from_utf8_lossy(&field[..end]).into_owned()
    };
    let stored: u64 = block[148..156]
        .iter()
        .filter(|b| b.is_ascii_digit())
        .fold(0, |sum, &b| sum * 8 + u64::from(b - b'0'));
    let computed: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    if stored != computed {
        return Err(invalid("tar header checksum mismatch"));
    }
    let mut path = text(0..100);
    if &block[257..262] == b"ustar" {
        let prefix = text(345..500);
        if !prefix.is_empty() {
            path = format!("{prefix}/{path}");
        }
    }
    let kind = match block[156] {
        b'0' | 0 => EntryKind::File,
        b'5' => EntryKind::Directory,
        b'2' => EntryKind::Symlink,
        other => {
            return Err(invalid(&format!(
                "tar entry {path:?} has unsupported type {:?}",
                char::from(other)
            )))
        }
    };
    Ok(Entry {
        path: path.trim_end_matches('/').to_owned(),
        kind,
        mode: u32::try_from(number(&block[100..108])? & 0o7777).unwrap_or(0o600),
        size: if kind == EntryKind::File {
            number(&block[124..136])?
        } else {
            0
        },
        link: text(157..257),
    })
}

/// An octal field, or base-256 when its first byte has the high bit set (PostgreSQL's
/// `print_tar_number` for sizes of 8 GB and more).
fn number(field: &[u8]) -> io::Result<u64> {
    if field[0] & 0x80 != 0 {
        return Ok(field[1..]
            .iter()
            .fold(u64::from(field[0] & 0x7f), |n, &b| (n << 8) | u64::from(b)));
    }
    let digits = field
        .iter()
        .skip_while(|&&b| b == b' ')
        .take_while(|&&b| (b'0'..=b'7').contains(&b));
    let mut value = 0u64;
    for &digit in digits {
        value = value
            .checked_mul(8)
            .ok_or_else(|| invalid("tar number overflows"))?
            + u64::from(digit - b'0');
    }
    Ok(value)
}

/// The ustar header of a regular file `name` of `size` bytes (mode 0600, mtime `mtime`).
pub fn header(name: &str, size: u64, mtime: u64) -> io::Result<[u8; BLOCK]> {
    if name.len() >= 100 {
        return Err(invalid("tar entry name too long"));
    }
    let mut block = [0u8; BLOCK];
    block[..name.len()].copy_from_slice(name.as_bytes());
    let mut octal = |range: std::ops::Range<usize>, value: u64| {
        let width = range.len() - 1;
        let text = format!("{value:0width$o}");
        block[range.start..range.start + width].copy_from_slice(&text.as_bytes()[..width]);
    };
    octal(100..108, 0o600);
    octal(108..116, 0);
    octal(116..124, 0);
    octal(124..136, size);
    octal(136..148, mtime);
    block[156] = b'0';
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    block[148..156].fill(b' ');
    let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
    let checksum = format!("{sum:06o}\0 ");
    block[148..156].copy_from_slice(checksum.as_bytes());
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        entries: Vec<Entry>,
        data: Vec<u8>,
        ended: usize,
    }

    impl TarVisitor for Recorder {
        fn entry(&mut self, entry: &Entry) -> io::Result<()> {
            self.entries.push(entry.clone());
            Ok(())
        }
        fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
            self.data.extend_from_slice(bytes);
            Ok(())
        }
        fn end_entry(&mut self) -> io::Result<()> {
            self.ended += 1;
            Ok(())
        }
    }

    #[test]
    fn written_headers_parse_back_fed_byte_by_byte() {
        let mut archive = header("000000010000000000000003", 700, 1).unwrap().to_vec();
        archive.extend(std::iter::repeat_n(7u8, 700));
        archive.extend(std::iter::repeat_n(0u8, 1024 - 700));
        archive.extend(header("empty", 0, 1).unwrap());
        archive.extend(header("full", BLOCK as u64, 1).unwrap());
        archive.extend([9u8; BLOCK]);
        let mut parser = TarParser::new();
        let mut recorder = Recorder::default();
        for byte in &archive {
            parser
                .feed(std::slice::from_ref(byte), &mut recorder)
                .unwrap();
        }
        assert!(parser.at_boundary() && !parser.ended());
        parser.feed(&[0u8; 1024], &mut recorder).unwrap();
        assert!(parser.ended());
        assert_eq!(recorder.entries.len(), 3);
        assert_eq!(recorder.entries[0].path, "000000010000000000000003");
        assert_eq!(recorder.entries[0].size, 700);
        assert_eq!(recorder.entries[0].mode, 0o600);
        let mut data = vec![7u8; 700];
        data.extend([9u8; BLOCK]);
        assert_eq!(recorder.data, data);
        assert_eq!(recorder.ended, 3);
        assert!(parser
            .feed(&header("late", 0, 1).unwrap(), &mut recorder)
            .is_err());
    }

    #[test]
    fn bad_headers_and_big_sizes() {
        let mut block = header("x", 1, 1).unwrap();
        block[0] = b'y';
        assert!(parse_header(&block).is_err());
        let mut base256 = [0u8; 12];
        base256[0] = 0x80;
        base256[7] = 0x02;
        assert_eq!(number(&base256).unwrap(), 2 << 32);
        assert_eq!(number(b"00000001750\0").unwrap(), 1000);
        assert!(header(&"n".repeat(100), 0, 0).is_err());
    }
}
