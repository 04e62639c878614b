//! The native restore of a native dump: no psql. The dump's framing (see [`super::ddl`])
//! splits it into batches of statements, each run as one simple query, and tables' rows, each
//! sent through `COPY ... FROM STDIN` over the COPY protocol, streamed in bounded chunks. A dump
//! cut short (no end line, a COPY without its `\.`) fails the load.

use std::io::Cursor;
use std::pin::pin;

use futures_util::SinkExt as _;
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncReadExt as _};
use tokio_postgres::Client;

use super::ddl::{frame_of, marker_of, Frame, END_LINE};
use super::error::{query, NativeError};

/// Bytes of rows sent per CopyData batch.
const COPY_CHUNK: usize = 256 * 1024;

/// What a load did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoadSummary {
    /// Batches of statements run.
    pub batches: usize,
    /// Tables whose rows were copied.
    pub tables: usize,
    /// Rows copied.
    pub rows: u64,
}

/// Whether `first_line` opens a native dump.
pub fn is_native_dump(first_line: &str) -> bool {
    marker_of(first_line).is_some()
}

fn truncated(what: &str) -> NativeError {
    NativeError::Load(format!("the dump is cut short: {what}"))
}

fn read_error(e: std::io::Error) -> NativeError {
    NativeError::Load(format!("reading the dump: {e}"))
}

/// Reads the next line of `input` into `line` (cleared first); `false` at the end.
async fn next_line(
    input: &mut (impl AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
) -> Result<bool, NativeError> {
    line.clear();
    let read = input.read_until(b'\n', line).await.map_err(read_error)?;
    Ok(read > 0)
}

/// Loads the native dump `input` through `client` (connected to the target database).
pub async fn load(
    client: &Client,
    input: impl AsyncBufRead + Unpin,
) -> Result<LoadSummary, NativeError> {
    let mut input = input;
    let mut line = Vec::new();
    input
        .read_until(b'\n', &mut line)
        .await
        .map_err(read_error)?;
    let first = String::from_utf8_lossy(&line).into_owned();
    let marker = marker_of(&first)
        .ok_or_else(|| NativeError::Load("not a pgback native dump".into()))?
        .to_string();
    let mut summary = LoadSummary::default();
    let mut batch: Vec<u8> = Vec::new();
    let mut ended = false;
    while next_line(&mut input, &mut line).await? {
        match frame_of(&line, &marker) {
            None => {
                ended = line.starts_with(END_LINE.as_bytes());
                batch.extend_from_slice(&line);
            }
            Some(Frame::Batch) => run_batch(client, &mut batch, &mut summary).await?,
            Some(Frame::Copy(len)) => {
                run_batch(client, &mut batch, &mut summary).await?;
                let mut statement = vec![0; len + 1];
                input
                    .read_exact(&mut statement)
                    .await
                    .map_err(|_| truncated("a COPY statement"))?;
                statement.pop();
                let statement = String::from_utf8(statement)
                    .map_err(|_| NativeError::Load("a COPY statement is not UTF-8".into()))?;
                summary.rows += copy_rows(client, &statement, &mut input).await?;
                summary.tables += 1;
            }
        }
    }
    if !ended {
        return Err(truncated("its end line is missing"));
    }
    run_batch(client, &mut batch, &mut summary).await?;
    Ok(summary)
}

/// Runs one statement of a native set's globals or createdb.sql as a simple query of its own
/// (as psql does: `CREATE DATABASE` cannot share a query with another statement).
pub async fn run_statement(client: &Client, statement: &str) -> Result<(), NativeError> {
    client
        .batch_execute(statement)
        .await
        .map_err(query("running a statement of the script"))
}

/// Runs the statements gathered so far as one simple query.
async fn run_batch(
    client: &Client,
    batch: &mut Vec<u8>,
    summary: &mut LoadSummary,
) -> Result<(), NativeError> {
    let text = String::from_utf8(std::mem::take(batch))
        .map_err(|_| NativeError::Load("a statement is not UTF-8".into()))?;
    if text.trim().is_empty() {
        return Ok(());
    }
    client
        .batch_execute(&text)
        .await
        .map_err(query("running the dump's statements"))?;
    summary.batches += 1;
    Ok(())
}

/// Sends the rows after a COPY statement, up to the line `\.`, through COPY FROM STDIN.
async fn copy_rows(
    client: &Client,
    statement: &str,
    input: &mut (impl AsyncBufRead + Unpin),
) -> Result<u64, NativeError> {
    let copy = "copying rows into a table";
    let sink = client.copy_in(statement).await.map_err(query(copy))?;
    let mut sink = pin!(sink);
    let mut chunk: Vec<u8> = Vec::with_capacity(COPY_CHUNK);
    let mut line = Vec::new();
    loop {
        if !next_line(input, &mut line).await? {
            return Err(truncated("a table's rows have no end"));
        }
        if line == b"\\.\n" {
            break;
        }
        chunk.extend_from_slice(&line);
        if chunk.len() >= COPY_CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(COPY_CHUNK));
            sink.send(Cursor::new(full)).await.map_err(query(copy))?;
        }
    }
    if !chunk.is_empty() {
        sink.send(Cursor::new(chunk)).await.map_err(query(copy))?;
    }
    sink.as_mut().finish().await.map_err(query(copy))
}
