//! The one way every binary hears SIGINT and SIGTERM: signal-hook's stream, as `nix` signals.
//!
//! Uses nothing of the crate. [`ShutdownSignals`] is for a loop that reacts to each signal
//! (`pgpre` passes them on to its `--exec` command, the co-process ends backup mode);
//! [`shutdown_signal`] is the future a run stops on (`pgback`, `--restore`, `pgdrill`);
//! [`stop_on_signals`] and [`Stoppable`] stop synchronous reads (checksums, unpacking) that no
//! future can interrupt. Once registered, the default action of both signals (ending the
//! process) stays replaced.

use std::io::{self, Read};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures_util::{Stream, StreamExt};
use nix::sys::signal::Signal;
use signal_hook::consts::{SIGINT, SIGTERM};

/// SIGINT and SIGTERM as they arrive, from the moment this is made.
pub struct ShutdownSignals(signal_hook_tokio::Signals);

impl ShutdownSignals {
    /// Registers both signals; fails only when the process cannot install a handler.
    /// Needs a tokio runtime with I/O enabled.
    pub fn new() -> std::io::Result<ShutdownSignals> {
        signal_hook_tokio::Signals::new([SIGINT, SIGTERM]).map(ShutdownSignals)
    }
}

impl Stream for ShutdownSignals {
    type Item = Signal;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Signal>> {
        Pin::new(&mut self.0)
            .poll_next(cx)
            .map(|number| number.map(as_signal))
    }
}

/// The registered numbers are SIGINT and SIGTERM; anything else reads as SIGTERM.
fn as_signal(number: i32) -> Signal {
    Signal::try_from(number).unwrap_or(Signal::SIGTERM)
}

/// Resolves with the first SIGINT or SIGTERM; never, when they cannot be caught (the run then
/// ends as the signal's default action ends it).
pub async fn shutdown_signal() -> Signal {
    match ShutdownSignals::new() {
        Ok(mut signals) => match signals.next().await {
            Some(signal) => signal,
            None => std::future::pending().await,
        },
        Err(_) => std::future::pending().await,
    }
}

/// The signal number a SIGINT or SIGTERM stored, once [`stop_on_signals`] registered it.
static STOP: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// From now on, SIGINT and SIGTERM set a flag instead of ending the process: [`stop_requested`]
/// says which arrived, and every [`Stoppable`] read fails from then on. For synchronous work
/// that holds the thread (hashing, unpacking); a run ends on the error and cleans up.
pub fn stop_on_signals() -> io::Result<()> {
    let flag = STOP.get_or_init(|| Arc::new(AtomicUsize::new(0)));
    for number in [SIGINT, SIGTERM] {
        // Stores the number itself: the last signal wins, either one stops the work.
        signal_hook::flag::register_usize(number, Arc::clone(flag), number as usize)?;
    }
    Ok(())
}

/// The SIGINT or SIGTERM that arrived since [`stop_on_signals`], if any.
pub fn stop_requested() -> Option<Signal> {
    STOP.get().and_then(|flag| stored_signal(flag))
}

fn stored_signal(flag: &AtomicUsize) -> Option<Signal> {
    match flag.load(Ordering::SeqCst) {
        0 => None,
        number => Some(as_signal(i32::try_from(number).unwrap_or(SIGTERM))),
    }
}

/// A reader that fails once a stop was requested ([`stop_on_signals`]): `io::copy` and every
/// read loop over it end within one read of the signal. Without [`stop_on_signals`] it only
/// reads.
pub struct Stoppable<R> {
    inner: R,
    flag: Option<Arc<AtomicUsize>>,
}

impl<R: Read> Stoppable<R> {
    /// Wraps `inner`, stopping on the flag of [`stop_on_signals`] when it was registered.
    pub fn new(inner: R) -> Stoppable<R> {
        Stoppable {
            inner,
            flag: STOP.get().cloned(),
        }
    }
}

impl<R: Read> Read for Stoppable<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.flag.as_deref().and_then(stored_signal) {
            // Not ErrorKind::Interrupted: read loops retry that one.
            Some(signal) => Err(io::Error::other(format!("stopped by {}", signal.as_str()))),
            None => self.inner.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_signals() {
        assert_eq!(as_signal(SIGINT), Signal::SIGINT);
        assert_eq!(as_signal(SIGTERM), Signal::SIGTERM);
        assert_eq!(as_signal(-1), Signal::SIGTERM);
    }

    #[test]
    fn a_signal_stops_a_stoppable_read() {
        // Its own flag, not the process's: other tests' readers keep reading.
        let flag = Arc::new(AtomicUsize::new(0));
        let mut reader = Stoppable {
            inner: &b"some bytes"[..],
            flag: Some(Arc::clone(&flag)),
        };
        let mut first = [0u8; 4];
        assert_eq!(reader.read(&mut first).unwrap(), 4);
        signal_hook::flag::register_usize(SIGINT, Arc::clone(&flag), SIGINT as usize).unwrap();
        nix::sys::signal::raise(Signal::SIGINT).unwrap();
        assert_eq!(stored_signal(&flag), Some(Signal::SIGINT));
        let error = reader.read(&mut first).unwrap_err();
        assert_eq!(error.to_string(), "stopped by SIGINT");
        assert_eq!(Stoppable::new(&b"x"[..]).read(&mut first).unwrap(), 1);
    }

    #[tokio::test]
    async fn a_raised_signal_arrives() {
        let mut signals = ShutdownSignals::new().unwrap();
        nix::sys::signal::raise(Signal::SIGTERM).unwrap();
        let received = tokio::time::timeout(std::time::Duration::from_secs(10), signals.next());
        assert_eq!(received.await.unwrap(), Some(Signal::SIGTERM));
    }
}
