//! Moving a stream into its sink on one blocking thread: read a 1 MiB batch, hand it to the
//! sink (hash, encrypt, write), repeat until the end.
//!
//! A child's stdout ([`Source::child_stdout`]) is read on that thread, not through the async
//! runtime's epoll. With epoll, every write of the child (pg_dump writes a few KiB at a time)
//! runs the epoll callback and often wakes the runtime thread, on the child's own CPU time.
//! Here the thread waits in poll(2) only when the pipe is empty, so while the sink works the
//! child writes into the (1 MiB) pipe and wakes nobody. On 2 CPUs this took
//! `scripts/bench-dump`'s `-Z 0` run from 1.15-1.25 to 1.0 times bare pg_dump.
//!
//! The poll also watches a pipe of the caller's: when the caller's future is dropped (a
//! signal, a time limit), the thread stops at once, even if a grandchild of the child keeps
//! the stdout pipe open, and its sink is dropped unfinished.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use tokio::process::ChildStdout;

/// Bytes read before the sink sees them, and the size of its writes.
pub const BATCH_BYTES: usize = 1024 * 1024;

/// Where [`pump`] puts each batch. Called on a blocking thread.
pub trait BatchSink: Send + 'static {
    /// Takes one batch whole (hash it, write it all, ...).
    fn write_batch(&mut self, batch: &[u8]) -> io::Result<()>;
}

/// What [`pump`] reads.
pub enum Source {
    /// A child's stdout, made non-blocking by [`Source::child_stdout`]: waited for with poll(2).
    Pipe(File),
    /// Any blocking reader (bytes in memory, a file).
    Reader(Box<dyn Read + Send>),
}

impl Source {
    /// A child's stdout, taken out of the async runtime (which hands it over blocking).
    pub fn child_stdout(stdout: ChildStdout) -> io::Result<Source> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let pipe = stdout.into_owned_fd()?;
        let flags = OFlag::from_bits_truncate(fcntl(&pipe, FcntlArg::F_GETFL)?);
        fcntl(&pipe, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        Ok(Source::Pipe(File::from(pipe)))
    }

    /// Bytes held in memory.
    pub fn bytes(bytes: Vec<u8>) -> Source {
        Source::Reader(Box::new(io::Cursor::new(bytes)))
    }

    /// Reads into `buf`; a pipe that is empty is waited for, unless `abandoned` (the read end
    /// of the caller's pipe) hangs up first.
    fn read(&mut self, buf: &mut [u8], abandoned: &OwnedFd) -> io::Result<usize> {
        let pipe = match self {
            Source::Reader(reader) => loop {
                match reader.read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => return other,
                }
            },
            Source::Pipe(pipe) => pipe,
        };
        loop {
            match pipe.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
            let mut fds = [
                PollFd::new(pipe.as_fd(), PollFlags::POLLIN),
                PollFd::new(abandoned.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(errno) => return Err(errno.into()),
            }
            if fds[1].any().unwrap_or(true) {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "the stream was abandoned",
                ));
            }
        }
    }
}

/// Runs blocking work (file I/O, hashing, scrypt) off the runtime thread, starting now; a
/// panic in it becomes an error.
pub fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> impl std::future::Future<Output = io::Result<T>> {
    let job = tokio::task::spawn_blocking(work);
    async move {
        job.await
            .map_err(|e| io::Error::other(format!("the writing thread failed: {e}")))?
    }
}

/// Fills `batch` from `source` until it is full or the stream ends; returns the bytes read.
fn fill_batch(source: &mut Source, batch: &mut [u8], abandoned: &OwnedFd) -> io::Result<usize> {
    let mut filled = 0;
    while filled < batch.len() {
        match source.read(&mut batch[filled..], abandoned)? {
            0 => break,
            read => filled += read,
        }
    }
    Ok(filled)
}

/// Reads `source` to its end and puts every batch into `sink`, on a blocking thread; returns
/// the sink (for the caller to finish: fsync, rename) and the byte count. `on_progress` sees
/// the running byte count, on the caller's task. Dropping the future stops the thread (see
/// the module's doc) and drops the sink unfinished, so the caller's files are never put in
/// place.
pub async fn pump<S: BatchSink>(
    mut source: Source,
    mut sink: S,
    mut on_progress: impl FnMut(u64),
) -> io::Result<(S, u64)> {
    // Hung up when this future ends, whichever way.
    let (abandoned, _held) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (progress, mut seen) = tokio::sync::watch::channel(0u64);
    let job = blocking(move || {
        let mut batch = vec![0u8; BATCH_BYTES];
        let mut total = 0u64;
        loop {
            let read = fill_batch(&mut source, &mut batch, &abandoned)?;
            if read == 0 {
                return Ok((sink, total));
            }
            sink.write_batch(&batch[..read])?;
            total += read as u64;
            progress.send_replace(total);
        }
    });
    tokio::pin!(job);
    let mut reported = 0;
    let (sink, total) = loop {
        tokio::select! {
            done = &mut job => break done?,
            Ok(()) = seen.changed() => {
                reported = *seen.borrow_and_update();
                on_progress(reported);
            }
        }
    };
    if total != reported {
        on_progress(total);
    }
    Ok((sink, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Vec<u8>, usize);

    impl BatchSink for Collect {
        fn write_batch(&mut self, batch: &[u8]) -> io::Result<()> {
            assert!(batch.len() <= BATCH_BYTES);
            self.0.extend_from_slice(batch);
            self.1 += 1;
            match self.0.len() > 5 * BATCH_BYTES {
                true => Err(io::Error::other("disk full")),
                false => Ok(()),
            }
        }
    }

    #[tokio::test]
    async fn every_byte_reaches_the_sink_in_full_batches() {
        let data: Vec<u8> = (0..(3 * BATCH_BYTES + 17))
            .map(|i| (i % 253) as u8)
            .collect();
        let mut seen = Vec::new();
        let (sink, total) = pump(Source::bytes(data.clone()), Collect(Vec::new(), 0), |n| {
            seen.push(n)
        })
        .await
        .unwrap();
        assert_eq!(total, data.len() as u64);
        assert!(sink.0 == data);
        assert_eq!(sink.1, 4, "3 full batches and the rest");
        assert_eq!(seen.last(), Some(&total));
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    }

    #[tokio::test]
    async fn a_sink_error_ends_the_pump() {
        let data = vec![7u8; 8 * BATCH_BYTES];
        let error = pump(Source::bytes(data), Collect(Vec::new(), 0), |_| {})
            .await
            .err()
            .unwrap();
        assert_eq!(error.to_string(), "disk full");
    }

    #[tokio::test]
    async fn a_child_pipe_reads_to_its_end() {
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", "head -c 3000000 /dev/zero"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = Source::child_stdout(child.stdout.take().unwrap()).unwrap();
        let (sink, total) = pump(stdout, Collect(Vec::new(), 0), |_| {}).await.unwrap();
        assert_eq!(total, 3_000_000);
        assert!(sink.0.iter().all(|&b| b == 0));
        assert!(child.wait().await.unwrap().success());
    }

    /// Reports when it is dropped.
    struct Dropped(std::sync::mpsc::Sender<()>);

    impl BatchSink for Dropped {
        fn write_batch(&mut self, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
    }

    impl Drop for Dropped {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }

    #[tokio::test]
    async fn a_dropped_pump_stops_though_a_grandchild_holds_the_pipe() {
        use std::time::Duration;
        // The shell exits at once; its `sleep` keeps the pipe open and never writes.
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", "sleep 600 2>/dev/null & echo $! >&2"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = Source::child_stdout(child.stdout.take().unwrap()).unwrap();
        let output = child.wait_with_output().await.unwrap();
        let sleeper = String::from_utf8(output.stderr).unwrap().trim().to_string();
        let (dropped, sink_gone) = std::sync::mpsc::channel();
        let pumping = pump(stdout, Dropped(dropped), |_| {});
        let cut = tokio::time::timeout(Duration::from_millis(300), pumping).await;
        assert!(cut.is_err(), "the pump cannot end while the pipe is open");
        // The future is dropped: its thread ends and drops the sink, though the pipe is open.
        let stopped = sink_gone.recv_timeout(Duration::from_secs(10));
        let _ = std::process::Command::new("kill").arg(&sleeper).status();
        assert!(stopped.is_ok(), "the pumping thread still runs");
    }
}
