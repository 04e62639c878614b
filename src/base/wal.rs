//! `-X stream`: the WAL a backup needs, streamed over a second replication connection from a
//! temporary slot while the archives arrive, into `pg_wal.tar` (`-F t`) or `pg_wal/` (`-F p`)
//! as whole segments (the last one padded with zeros, as pg_basebackup writes it).

use std::fs::{File, OpenOptions};
use std::io::{Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::base::error::BaseError;
use crate::base::output::HashedFile;
use crate::base::tar::{header, BLOCK};
use crate::replication::{BackupPosition, ReplicationConnection, WalEvent};
use crate::wal::{wal_file_name, Lsn};

/// How long, once the backup has ended, the stream may stay silent before the WAL it still
/// needs is given up on.
const END_WAIT: Duration = Duration::from_secs(300);

/// How often a status update goes to the server without being asked.
const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// Where the segments go.
pub enum WalTarget {
    /// `pg_wal.tar`, each segment an entry.
    Tar(Box<HashedFile>),
    /// `pg_wal/`, each segment a file.
    Dir(PathBuf),
}

/// Writes streamed WAL as segments.
pub struct WalWriter {
    target: WalTarget,
    segment_size: u64,
    timeline: u32,
    /// The open segment: its number, bytes written into it, its file in `Dir` mode.
    current: Option<(u64, u64, Option<File>)>,
    /// Segments written, by name, in order.
    pub segments: Vec<String>,
}

impl WalWriter {
    /// A writer of `segment_size`-byte segments on `timeline`.
    pub fn new(target: WalTarget, segment_size: u64, timeline: u32) -> WalWriter {
        WalWriter {
            target,
            segment_size,
            timeline,
            current: None,
            segments: Vec::new(),
        }
    }

    fn path(&self) -> PathBuf {
        match &self.target {
            WalTarget::Tar(_) => PathBuf::from("pg_wal.tar"),
            WalTarget::Dir(dir) => dir.clone(),
        }
    }

    /// Writes `bytes`, which begin at `start`, across segment boundaries.
    pub fn write(&mut self, start: Lsn, mut bytes: &[u8]) -> Result<(), BaseError> {
        let mut position = start.0;
        while !bytes.is_empty() {
            let number = position / self.segment_size;
            let offset = position % self.segment_size;
            if self.current.as_ref().map(|c| c.0) != Some(number) {
                self.close_segment()?;
                self.open_segment(number)?;
            }
            let written = self.current.as_ref().map_or(0, |c| c.1);
            if offset < written {
                return Err(BaseError::Stream(format!(
                    "the server sent WAL at {} again",
                    Lsn(position)
                )));
            }
            self.pad(offset - written)?;
            let n = bytes
                .len()
                .min(usize::try_from(self.segment_size - offset).unwrap_or(usize::MAX));
            self.put(&bytes[..n])?;
            position += n as u64;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    fn open_segment(&mut self, number: u64) -> Result<(), BaseError> {
        let name = wal_file_name(
            self.timeline,
            Lsn(number * self.segment_size),
            self.segment_size,
        );
        let file = match &mut self.target {
            WalTarget::Tar(tar) => {
                let mtime = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let block = header(&name, self.segment_size, mtime)
                    .map_err(BaseError::output("pg_wal.tar"))?;
                tar.write(&block)?;
                None
            }
            WalTarget::Dir(dir) => {
                let path = dir.join(&name);
                Some(
                    OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&path)
                        .map_err(BaseError::output(&path))?,
                )
            }
        };
        self.segments.push(name);
        self.current = Some((number, 0, file));
        Ok(())
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), BaseError> {
        let path = self.path();
        let Some((_, written, file)) = &mut self.current else {
            return Ok(());
        };
        match (&mut self.target, file) {
            (WalTarget::Tar(tar), _) => tar.write(bytes)?,
            (WalTarget::Dir(_), Some(file)) => {
                file.write_all(bytes).map_err(BaseError::output(&path))?
            }
            (WalTarget::Dir(_), None) => {}
        }
        *written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self, mut count: u64) -> Result<(), BaseError> {
        let path = self.path();
        if let Some((_, written, Some(file))) = &mut self.current {
            // A segment file: seek; set_len fills the gap with zeros.
            file.seek(SeekFrom::Current(count as i64))
                .map_err(BaseError::output(path))?;
            *written += count;
            return Ok(());
        }
        let zeros = [0u8; 64 * BLOCK];
        while count > 0 {
            let n = count.min(zeros.len() as u64);
            self.put(&zeros[..n as usize])?;
            count -= n;
        }
        Ok(())
    }

    /// Pads the open segment to its full size and closes it.
    fn close_segment(&mut self) -> Result<(), BaseError> {
        let Some((_, written, _)) = &self.current else {
            return Ok(());
        };
        let rest = self.segment_size - written;
        let path = self.path();
        if let Some((_, _, Some(file))) = &mut self.current {
            file.set_len(self.segment_size)
                .and_then(|()| file.sync_all())
                .map_err(BaseError::output(path))?;
        } else {
            self.pad(rest)?;
        }
        self.current = None;
        Ok(())
    }

    /// Closes the last segment; `pg_wal.tar` gets its end blocks, checksum file and fsync.
    pub fn finish(mut self) -> Result<Vec<String>, BaseError> {
        self.close_segment()?;
        if let WalTarget::Tar(mut tar) = self.target {
            tar.write(&[0u8; 2 * BLOCK])?;
            tar.finish()?;
        }
        Ok(self.segments)
    }
}

/// Streams from the segment holding the backup's start until WAL past its end arrived. The
/// start and end come from the main connection; when the main connection gives up (a
/// dropped sender), so does this.
pub async fn stream_wal(
    connection: &mut ReplicationConnection,
    slot: &str,
    start: oneshot::Receiver<BackupPosition>,
    mut end: oneshot::Receiver<Lsn>,
    target: WalTarget,
    segment_size: u64,
) -> Result<Option<WalWriter>, BaseError> {
    let Ok(start) = start.await else {
        return Ok(None);
    };
    let mut writer = WalWriter::new(target, segment_size, start.timeline);
    let segment_start = Lsn(start.lsn.0 - start.lsn.0 % segment_size);
    let mut stream = connection
        .start_replication(slot, segment_start, start.timeline)
        .await?;
    let mut end_lsn: Option<Lsn> = None;
    // Set when the end is known, moved on by WAL that arrives, never by keepalives: a server
    // that only answers keepalives cannot hold the run forever.
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut last_status = Instant::now();
    loop {
        if end_lsn.is_some_and(|end| stream.received() >= end) {
            break;
        }
        let event = tokio::select! {
            biased;
            lsn = &mut end, if end_lsn.is_none() => {
                match lsn {
                    Ok(lsn) => {
                        end_lsn = Some(lsn);
                        deadline = Some(tokio::time::Instant::now() + END_WAIT);
                    }
                    Err(_) => return Ok(None),
                }
                continue;
            }
            event = stream.next() => event?,
            () = sleep_until_deadline(deadline), if deadline.is_some() => {
                return Err(BaseError::Stream(format!(
                    "the WAL up to the backup's end {} did not arrive within {} s (received up \
                     to {}); on a standby, run SELECT pg_switch_wal() on the primary",
                    end_lsn.unwrap_or(Lsn(0)),
                    END_WAIT.as_secs(),
                    stream.received()
                )))
            }
        };
        match event {
            WalEvent::Data { start, bytes } => {
                writer.write(start, &bytes)?;
                if deadline.is_some() {
                    deadline = Some(tokio::time::Instant::now() + END_WAIT);
                }
            }
            WalEvent::ReplyRequested => {
                stream.send_status().await?;
                last_status = Instant::now();
            }
            WalEvent::End => {
                return Err(BaseError::Stream(format!(
                    "the server ended the WAL stream at {} before the backup's end",
                    stream.received()
                )))
            }
        }
        if last_status.elapsed() >= STATUS_INTERVAL {
            stream.send_status().await?;
            last_status = Instant::now();
        }
    }
    Ok(Some(writer))
}

/// `SHOW wal_segment_size` (`16MB`, `1GB`, `64MB`) in bytes.
pub fn parse_segment_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number: u64 = text[..digits].parse().ok()?;
    let unit = match text[digits..].trim() {
        "" | "B" => 1,
        "kB" => 1024,
        "MB" => 1024 * 1024,
        "GB" => 1024 * 1024 * 1024,
        _ => return None,
    };
    number
        .checked_mul(unit)
        .filter(|size| size.is_power_of_two())
}

/// Sleeps until `deadline`; never when there is none.
async fn sleep_until_deadline(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_sizes_parse() {
        assert_eq!(parse_segment_size("16MB"), Some(16 * 1024 * 1024));
        assert_eq!(parse_segment_size("1GB"), Some(1024 * 1024 * 1024));
        assert_eq!(parse_segment_size("3MB"), None);
        assert_eq!(parse_segment_size("16 furlongs"), None);
    }

    #[test]
    fn segments_are_split_padded_and_named() {
        let scratch = tempfile::tempdir().unwrap();
        let mut writer = WalWriter::new(WalTarget::Dir(scratch.path().to_path_buf()), 1 << 20, 1);
        writer.write(Lsn(0x20_0000), &[1u8; 100]).unwrap();
        writer.write(Lsn(0x2F_FFFF), &[2u8; 2]).unwrap();
        let names = writer.finish().unwrap();
        assert_eq!(
            names,
            ["000000010000000000000002", "000000010000000000000003"]
        );
        let first = std::fs::read(scratch.path().join(&names[0])).unwrap();
        assert_eq!(first.len(), 1 << 20);
        assert_eq!(&first[..100], &[1u8; 100]);
        assert_eq!(first[100], 0);
        assert_eq!(first[(1 << 20) - 1], 2);
        let second = std::fs::read(scratch.path().join(&names[1])).unwrap();
        assert_eq!(second[0], 2);
        assert_eq!(second.len(), 1 << 20);

        let tar =
            HashedFile::create(scratch.path().join("pg_wal.tar"), Default::default()).unwrap();
        let mut writer = WalWriter::new(WalTarget::Tar(Box::new(tar)), 1 << 20, 1);
        writer.write(Lsn(0x10_0000), &[3u8; 10]).unwrap();
        writer.finish().unwrap();
        let bytes = std::fs::read(scratch.path().join("pg_wal.tar")).unwrap();
        assert_eq!(bytes.len(), BLOCK + (1 << 20) + 2 * BLOCK);
        assert_eq!(bytes[BLOCK], 3);
    }
}
