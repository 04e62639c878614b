//! gzip (flate2), lz4 frames (lz4_flex) and zstd (libzstd), for pgbase's tar files and pgback's
//! native dumps: `-Z [client-|server-]METHOD[:LEVEL]` (pg_basebackup's syntax, bare levels too)
//! and its pure parser; [`Compressor`], the writer that compresses on the way to disk;
//! [`CompressingReader`], the same as a reader (a pipeline's blocking source); and
//! [`decompressing_reader`], the one way back, whatever wrote the file.

use std::io::{self, Read, Write};

/// A compression method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// gzip (levels 1-9).
    Gzip,
    /// lz4 frames (levels 1-12 on the server; one level on the client).
    Lz4,
    /// zstd (levels 1-22).
    Zstd,
}

impl Method {
    /// The name pg_basebackup and the server use.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Gzip => "gzip",
            Method::Lz4 => "lz4",
            Method::Zstd => "zstd",
        }
    }

    /// The suffix of a file compressed with it, as the server names its archives.
    pub fn suffix(self) -> &'static str {
        match self {
            Method::Gzip => ".gz",
            Method::Lz4 => ".lz4",
            Method::Zstd => ".zst",
        }
    }

    /// The method a file's name says by its suffix (`.gz`, `.lz4`, `.zst`), if any.
    pub fn of_file_name(name: &str) -> Option<Method> {
        [Method::Gzip, Method::Lz4, Method::Zstd]
            .into_iter()
            .find(|method| name.ends_with(method.suffix()))
    }

    /// The levels it takes.
    pub fn levels(self) -> std::ops::RangeInclusive<i32> {
        match self {
            Method::Gzip => 1..=9,
            Method::Lz4 => 1..=12,
            Method::Zstd => 1..=22,
        }
    }
}

/// Where the compression happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// pgbase compresses what it receives.
    Client,
    /// The server sends compressed archives (15+).
    Server,
}

/// A parsed `-Z`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compression {
    /// Client or server.
    pub side: Side,
    /// The method.
    pub method: Method,
    /// The level; `None` for the method's default.
    pub level: Option<i32>,
}

/// Parses `-Z`: `LEVEL` (gzip at that level, 0 for none), `[client-|server-]METHOD`, with
/// `:LEVEL` or `:level=LEVEL`; `none` for no compression (`Ok(None)`).
pub fn parse_compression(spec: &str) -> Result<Option<Compression>, String> {
    let bad = |reason: String| format!("invalid -Z \"{spec}\": {reason}");
    if let Ok(level) = spec.parse::<i32>() {
        if level == 0 {
            return Ok(None);
        }
        return checked(Side::Client, Method::Gzip, Some(level)).map_err(bad);
    }
    let (side, rest) = match spec.split_once('-') {
        Some(("client", rest)) => (Side::Client, rest),
        Some(("server", rest)) => (Side::Server, rest),
        _ => (Side::Client, spec),
    };
    let (name, detail) = match rest.split_once(':') {
        Some((name, detail)) => (name, Some(detail)),
        None => (rest, None),
    };
    let method = match name {
        "gzip" => Method::Gzip,
        "lz4" => Method::Lz4,
        "zstd" => Method::Zstd,
        "none" if detail.is_none() => return Ok(None),
        "none" => return Err(bad("none takes no level".to_owned())),
        other => {
            return Err(bad(format!(
                "unknown method \"{other}\" (gzip, lz4, zstd or none)"
            )))
        }
    };
    let level = match detail {
        None => None,
        Some(detail) => {
            let number = detail.strip_prefix("level=").unwrap_or(detail);
            Some(number.parse::<i32>().map_err(|_| {
                bad(format!(
                    "\"{detail}\" is not a level (LEVEL or level=LEVEL; other options are not supported)"
                ))
            })?)
        }
    };
    checked(side, method, level).map_err(bad)
}

fn checked(side: Side, method: Method, level: Option<i32>) -> Result<Option<Compression>, String> {
    if let Some(level) = level {
        let range = method.levels();
        if !range.contains(&level) {
            return Err(format!(
                "{} levels are {} to {}",
                method.as_str(),
                range.start(),
                range.end()
            ));
        }
        if side == Side::Client && method == Method::Lz4 {
            return Err(
                "client-side lz4 has one level (lz4's fast one): give no level, or use server-lz4:LEVEL or zstd"
                    .to_owned(),
            );
        }
    }
    Ok(Some(Compression {
        side,
        method,
        level,
    }))
}

/// A writer that compresses into `W`, or passes through.
pub enum Compressor<W: Write> {
    /// No compression.
    Plain(W),
    /// gzip.
    Gzip(flate2::write::GzEncoder<W>),
    /// An lz4 frame, as `lz4 -d` reads it.
    Lz4(lz4_flex::frame::FrameEncoder<W>),
    /// A zstd frame.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    /// Compresses with `method` (at `level`, or its default) into `inner`.
    pub fn new(inner: W, method: Option<(Method, Option<i32>)>) -> io::Result<Compressor<W>> {
        Ok(match method {
            None => Compressor::Plain(inner),
            Some((Method::Gzip, level)) => Compressor::Gzip(flate2::write::GzEncoder::new(
                inner,
                level.map_or_else(flate2::Compression::default, |l| {
                    flate2::Compression::new(l.unsigned_abs())
                }),
            )),
            Some((Method::Lz4, _)) => Compressor::Lz4(lz4_flex::frame::FrameEncoder::new(inner)),
            Some((Method::Zstd, level)) => Compressor::Zstd(zstd::stream::write::Encoder::new(
                inner,
                level.unwrap_or(zstd::DEFAULT_COMPRESSION_LEVEL),
            )?),
        })
    }

    /// The writer the compressed bytes go to (for a reader to drain what is written so far).
    pub fn inner_mut(&mut self) -> &mut W {
        match self {
            Compressor::Plain(inner) => inner,
            Compressor::Gzip(encoder) => encoder.get_mut(),
            Compressor::Lz4(encoder) => encoder.get_mut(),
            Compressor::Zstd(encoder) => encoder.get_mut(),
        }
    }

    /// Ends the compressed stream and gives back the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Plain(inner) => Ok(inner),
            Compressor::Gzip(encoder) => encoder.finish(),
            Compressor::Lz4(encoder) => encoder.finish().map_err(io::Error::other),
            Compressor::Zstd(encoder) => encoder.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Plain(inner) => inner.write(bytes),
            Compressor::Gzip(encoder) => encoder.write(bytes),
            Compressor::Lz4(encoder) => encoder.write(bytes),
            Compressor::Zstd(encoder) => encoder.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Plain(inner) => inner.flush(),
            Compressor::Gzip(encoder) => encoder.flush(),
            Compressor::Lz4(encoder) => encoder.flush(),
            Compressor::Zstd(encoder) => encoder.flush(),
        }
    }
}

/// Plain bytes read per step by a [`CompressingReader`].
const READ_CHUNK: usize = 256 * 1024;

/// A blocking reader that yields the bytes of `R` compressed: one chunk of input at a time
/// goes through a [`Compressor`] into memory, which is drained before the next is read, so
/// the memory held is one chunk and its compressed bytes.
pub struct CompressingReader<R: Read> {
    source: R,
    /// `None` once the stream is finished.
    compressor: Option<Compressor<Vec<u8>>>,
    chunk: Vec<u8>,
    /// Compressed bytes not yet read, from `position` on.
    ready: Vec<u8>,
    position: usize,
}

impl<R: Read> CompressingReader<R> {
    /// Compresses `source` with `method` (at `level`, or its default).
    pub fn new(source: R, method: Method, level: Option<i32>) -> io::Result<CompressingReader<R>> {
        Ok(CompressingReader {
            source,
            compressor: Some(Compressor::new(Vec::new(), Some((method, level)))?),
            chunk: vec![0; READ_CHUNK],
            ready: Vec::new(),
            position: 0,
        })
    }

    /// Compresses the next chunk of the source into `ready`; at its end, finishes the stream.
    fn refill(&mut self, compressor: &mut Compressor<Vec<u8>>) -> io::Result<bool> {
        let read = loop {
            match self.source.read(&mut self.chunk) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if read == 0 {
            return Ok(false);
        }
        compressor.write_all(&self.chunk[..read])?;
        self.ready.clear();
        self.position = 0;
        std::mem::swap(compressor.inner_mut(), &mut self.ready);
        Ok(true)
    }
}

impl<R: Read> Read for CompressingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.position == self.ready.len() {
            let Some(mut compressor) = self.compressor.take() else {
                return Ok(0);
            };
            if self.refill(&mut compressor)? {
                self.compressor = Some(compressor);
            } else {
                self.ready = compressor.finish()?;
                self.position = 0;
            }
        }
        let n = out.len().min(self.ready.len() - self.position);
        out[..n].copy_from_slice(&self.ready[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

/// `reader`'s bytes decompressed with `method` (as `gzip -d`, `lz4 -d` and `zstd -d` read
/// them, concatenated gzip members and frames included), or as they are for `None`.
pub fn decompressing_reader<'a>(
    method: Option<Method>,
    reader: impl Read + 'a,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match method {
        None => Box::new(reader),
        Some(Method::Gzip) => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Some(Method::Lz4) => Box::new(lz4_flex::frame::FrameDecoder::new(reader)),
        Some(Method::Zstd) => Box::new(zstd::stream::read::Decoder::new(reader)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each method's speed through a [`CompressingReader`], on 256 MB shaped like a plain dump
    /// of pgbench_accounts (numbers, then 84 blanks): a benchmark, run by hand with
    /// `cargo test --release --lib compression_throughput -- --ignored --nocapture`.
    #[test]
    #[ignore = "prints throughput figures; run in release"]
    fn compression_throughput() {
        let mut plain = Vec::with_capacity(256 << 20);
        let mut row = 0u64;
        while plain.len() < 256 << 20 {
            row += 1;
            let line = format!("{row}\t{}\t0\t{:84}\n", row / 100_000 + 1, "");
            plain.extend_from_slice(line.as_bytes());
        }
        let mb = plain.len() as f64 / 1e6;
        for (method, level) in [
            (Method::Gzip, Some(6)),
            (Method::Zstd, Some(3)),
            (Method::Lz4, None),
        ] {
            let start = std::time::Instant::now();
            let mut reader = CompressingReader::new(&plain[..], method, level).unwrap();
            let mut buf = vec![0; 128 * 1024];
            let mut out = 0;
            loop {
                let n = reader.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                out += n;
            }
            let wall = start.elapsed().as_secs_f64();
            println!("{}: {:.0} MB/s, {out} bytes", method.as_str(), mb / wall);
            assert!(out > 0);
        }
    }

    fn some(side: Side, method: Method, level: Option<i32>) -> Option<Compression> {
        Some(Compression {
            side,
            method,
            level,
        })
    }

    #[test]
    fn specs_parse_as_pg_basebackup_reads_them() {
        let ok = |spec| parse_compression(spec).unwrap();
        assert_eq!(ok("5"), some(Side::Client, Method::Gzip, Some(5)));
        assert_eq!(ok("0"), None);
        assert_eq!(ok("none"), None);
        assert_eq!(ok("client-none"), None);
        assert_eq!(ok("gzip"), some(Side::Client, Method::Gzip, None));
        assert_eq!(ok("zstd:3"), some(Side::Client, Method::Zstd, Some(3)));
        assert_eq!(
            ok("client-zstd:level=19"),
            some(Side::Client, Method::Zstd, Some(19))
        );
        assert_eq!(ok("client-lz4"), some(Side::Client, Method::Lz4, None));
        assert_eq!(
            ok("server-lz4:12"),
            some(Side::Server, Method::Lz4, Some(12))
        );
        assert_eq!(ok("server-gzip"), some(Side::Server, Method::Gzip, None));
        for bad in [
            "10",
            "-1",
            "gzip:0",
            "zstd:23",
            "brotli",
            "lz4:3",
            "zstd:workers=4",
            "zstd:x",
            "none:1",
            "server-",
            "",
        ] {
            assert!(parse_compression(bad).is_err(), "{bad}");
        }
    }

    /// `reader` read to its end in reads of `step` bytes.
    fn read_in_steps(mut reader: impl Read, step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buffer = vec![0; step];
        loop {
            match reader.read(&mut buffer).unwrap() {
                0 => return out,
                n => out.extend_from_slice(&buffer[..n]),
            }
        }
    }

    #[test]
    fn the_reader_round_trips_each_method() {
        let large: Vec<u8> = (0..3_000_000u32)
            .map(|n| (n.wrapping_mul(2_654_435_761) >> 24) as u8 % 7 + b'a')
            .collect();
        for method in [Method::Gzip, Method::Lz4, Method::Zstd] {
            for (plain, step) in [
                (&b""[..], 100),
                (&b"one line\n"[..], 3),
                (&large[..], 77_777),
            ] {
                let reader = CompressingReader::new(plain, method, None).unwrap();
                let packed = read_in_steps(reader, step);
                assert!(!packed.is_empty(), "{method:?}: a stream even for no input");
                let back = decompressing_reader(Some(method), &packed[..]).unwrap();
                assert_eq!(
                    read_in_steps(back, 4099),
                    plain,
                    "{method:?} in reads of {step}"
                );
                assert_eq!(
                    Method::of_file_name(&format!("a.sql{}", method.suffix())),
                    Some(method)
                );
            }
        }
        let level = CompressingReader::new(&large[..], Method::Zstd, Some(19)).unwrap();
        let fast = CompressingReader::new(&large[..], Method::Zstd, Some(1)).unwrap();
        assert!(read_in_steps(level, 65_536).len() < read_in_steps(fast, 65_536).len());
        let passed = decompressing_reader(None, &large[..1000]).unwrap();
        assert_eq!(read_in_steps(passed, 10), &large[..1000]);
        assert_eq!(Method::of_file_name("a.sql"), None);
    }

    #[test]
    fn each_method_round_trips() {
        let plain: Vec<u8> = (0..200_000u32)
            .flat_map(|n| (n % 251).to_le_bytes())
            .collect();
        for method in [Method::Gzip, Method::Lz4, Method::Zstd] {
            let mut writer = Compressor::new(Vec::new(), Some((method, None))).unwrap();
            writer.write_all(&plain).unwrap();
            let packed = writer.finish().unwrap();
            assert!(packed.len() < plain.len() / 4, "{method:?}");
            let mut back = Vec::new();
            match method {
                Method::Gzip => flate2::read::GzDecoder::new(&packed[..])
                    .read_to_end(&mut back)
                    .unwrap(),
                Method::Lz4 => lz4_flex::frame::FrameDecoder::new(&packed[..])
                    .read_to_end(&mut back)
                    .unwrap(),
                Method::Zstd => zstd::stream::read::Decoder::new(&packed[..])
                    .unwrap()
                    .read_to_end(&mut back)
                    .unwrap(),
            };
            assert_eq!(back, plain, "{method:?}");
        }
    }
}
