//! The one way every binary hears SIGINT and SIGTERM: signal-hook's stream, as `nix` signals.
//!
//! Uses nothing of the crate. [`ShutdownSignals`] is for a loop that reacts to each signal
//! (`pgpre` passes them on to its `--exec` command, the co-process ends backup mode);
//! [`shutdown_signal`] is the future a run stops on (`pgback`, `--restore`, `pgdrill`).
//! Once registered, the default action of both signals (ending the process) stays replaced.

use std::pin::Pin;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_signals() {
        assert_eq!(as_signal(SIGINT), Signal::SIGINT);
        assert_eq!(as_signal(SIGTERM), Signal::SIGTERM);
        assert_eq!(as_signal(-1), Signal::SIGTERM);
    }

    #[tokio::test]
    async fn a_raised_signal_arrives() {
        let mut signals = ShutdownSignals::new().unwrap();
        nix::sys::signal::raise(Signal::SIGTERM).unwrap();
        let received = tokio::time::timeout(std::time::Duration::from_secs(10), signals.next());
        assert_eq!(received.await.unwrap(), Some(Signal::SIGTERM));
    }
}
