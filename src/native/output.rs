//! The export's bytes on their way to the backup file: [`SqlWriter`] buffers them and sends
//! them over a bounded channel, [`ChunkReader`] reads them on the pipeline's blocking thread.
//! A stream ends only with [`Chunk::End`]: an export that stopped (an error, a dropped task)
//! makes the reader fail, so a partial dump is never put in place. A writer made with
//! [`SqlWriter::in_memory`] keeps what it is given instead (definitions read while the data
//! streams, never table data), for [`SqlWriter::append`] to send later.

use std::io::{self, Read};

use tokio::sync::mpsc;

/// Bytes buffered before a chunk is sent.
const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks in flight: the memory the stream holds is bounded by this many chunks.
const CHUNKS_IN_FLIGHT: usize = 4;

/// What travels from the export to the file.
#[derive(Debug)]
pub enum Chunk {
    /// The next bytes of the file.
    Data(Vec<u8>),
    /// The export is complete.
    End,
}

/// The reading side went away (the file could not be written).
#[derive(Debug, thiserror::Error)]
#[error("the output stream was closed")]
pub struct OutputClosed;

/// The export's side: buffers, then sends chunks.
#[derive(Debug)]
pub struct SqlWriter {
    /// Where full chunks go; `None` for a writer that keeps everything in memory.
    tx: Option<mpsc::Sender<Chunk>>,
    buf: Vec<u8>,
    bytes: u64,
}

/// A writer and the reader of what it writes.
pub fn sql_stream() -> (SqlWriter, ChunkReader) {
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let writer = SqlWriter {
        tx: Some(tx),
        buf: Vec::with_capacity(CHUNK_BYTES),
        bytes: 0,
    };
    let reader = ChunkReader {
        rx,
        current: Vec::new(),
        pos: 0,
        ended: false,
    };
    (writer, reader)
}

impl SqlWriter {
    /// A writer that keeps all it is given, for [`SqlWriter::append`]: only for definitions
    /// (their size is the catalogs'), never for table data.
    pub fn in_memory() -> SqlWriter {
        SqlWriter {
            tx: None,
            buf: Vec::new(),
            bytes: 0,
        }
    }

    /// Appends `bytes`; sends a chunk when the buffer is full (kept, in memory).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), OutputClosed> {
        self.buf.extend_from_slice(bytes);
        self.bytes += bytes.len() as u64;
        if let Some(tx) = &self.tx {
            if self.buf.len() >= CHUNK_BYTES {
                let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
                tx.send(Chunk::Data(full)).await.map_err(|_| OutputClosed)?;
            }
        }
        Ok(())
    }

    /// Appends what an in-memory writer kept, a chunk at a time.
    pub async fn append(&mut self, kept: SqlWriter) -> Result<(), OutputClosed> {
        for part in kept.buf.chunks(CHUNK_BYTES) {
            self.write(part).await?;
        }
        Ok(())
    }

    /// Appends a statement or comment text.
    pub async fn text(&mut self, text: &str) -> Result<(), OutputClosed> {
        self.write(text.as_bytes()).await
    }

    /// Sends what is buffered and the end; returns the bytes written (an in-memory writer
    /// has nowhere to send them: it is closed).
    pub async fn finish(mut self) -> Result<u64, OutputClosed> {
        let tx = self.tx.take().ok_or(OutputClosed)?;
        let rest = std::mem::take(&mut self.buf);
        if !rest.is_empty() {
            tx.send(Chunk::Data(rest)).await.map_err(|_| OutputClosed)?;
        }
        tx.send(Chunk::End).await.map_err(|_| OutputClosed)?;
        Ok(self.bytes)
    }
}

/// The file's side: a blocking reader (run it on a blocking thread).
#[derive(Debug)]
pub struct ChunkReader {
    rx: mpsc::Receiver<Chunk>,
    current: Vec<u8>,
    pos: usize,
    ended: bool,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.current.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Chunk::Data(data)) => {
                    self.current = data;
                    self.pos = 0;
                }
                Some(Chunk::End) => self.ended = true,
                None => return Err(io::Error::other("the native export stopped before its end")),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_without_its_end_fails_the_reader() {
        let (mut writer, mut reader) = sql_stream();
        let read = tokio::task::spawn_blocking(move || {
            let mut all = Vec::new();
            reader.read_to_end(&mut all).map(|_| all)
        });
        writer.text("SELECT 1;\n").await.unwrap();
        drop(writer);
        assert!(read.await.unwrap().is_err());

        let (mut writer, mut reader) = sql_stream();
        let read = tokio::task::spawn_blocking(move || {
            let mut all = Vec::new();
            reader.read_to_end(&mut all).map(|_| all)
        });
        let big = vec![b'x'; CHUNK_BYTES + 10];
        writer.write(&big).await.unwrap();
        writer.text("end").await.unwrap();
        assert_eq!(writer.finish().await.unwrap(), big.len() as u64 + 3);
        let all = read.await.unwrap().unwrap();
        assert_eq!(all.len(), big.len() + 3);
        assert!(all.ends_with(b"xend"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kept_definitions_follow_what_was_streamed() {
        let (mut writer, mut reader) = sql_stream();
        let read = tokio::task::spawn_blocking(move || {
            let mut all = Vec::new();
            reader.read_to_end(&mut all).map(|_| all)
        });
        let mut kept = SqlWriter::in_memory();
        let big = vec![b'k'; 2 * CHUNK_BYTES + 5];
        kept.write(&big).await.unwrap();
        kept.text("end;\n").await.unwrap();
        writer.text("data\n").await.unwrap();
        writer.append(kept).await.unwrap();
        assert_eq!(writer.finish().await.unwrap(), 5 + big.len() as u64 + 5);
        let all = read.await.unwrap().unwrap();
        assert!(all.starts_with(b"data\nkkk"));
        assert!(all.ends_with(b"kend;\n"));
        assert_eq!(all.len(), 5 + big.len() + 5);
        assert!(SqlWriter::in_memory().finish().await.is_err());
    }
}
