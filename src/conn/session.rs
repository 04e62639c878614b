//! An open session: the tokio-postgres client, and the spawned task that drives the
//! connection and hands its notifications, notices and end over as [`SessionEvent`]s.

use futures_util::StreamExt as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use crate::conn::error::classify;
use crate::conn::settings::HostTarget;

/// An open connection whose Connection future is spawned on the current tokio runtime.
#[derive(Debug)]
pub struct Session {
    /// Runs queries.
    pub client: tokio_postgres::Client,
    /// Notifications, notices and the end of the connection, in arrival order.
    pub events: mpsc::UnboundedReceiver<SessionEvent>,
    /// The host that accepted the session.
    pub target: HostTarget,
}

/// What the spawned connection task reports.
// The variants are as large as tokio-postgres makes them; events are rare, boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum SessionEvent {
    /// A `NOTIFY` on a channel this session `LISTEN`s to.
    Notification(tokio_postgres::Notification),
    /// A notice or warning from the server.
    Notice(tokio_postgres::error::DbError),
    /// The connection ended; the error text if it ended in one. Sent once, last.
    Closed(Option<String>),
}

/// Spawns the task that drives `connection`; what it reports arrives on the returned
/// receiver, [`SessionEvent::Closed`] last.
pub(super) fn spawn_connection<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
) -> mpsc::UnboundedReceiver<SessionEvent>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        let mut end = None;
        while let Some(message) = messages.next().await {
            // A closed receiver is fine: nobody is listening any more.
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    let _ = sender.send(SessionEvent::Notification(notification));
                }
                Ok(AsyncMessage::Notice(notice)) => {
                    tracing::debug!(
                        severity = notice.severity(),
                        "server notice: {}",
                        notice.message()
                    );
                    let _ = sender.send(SessionEvent::Notice(notice));
                }
                Ok(_) => {}
                Err(error) => {
                    let (_, text) = classify(&error);
                    tracing::warn!("database connection ended: {text}");
                    end = Some(text);
                    break;
                }
            }
        }
        let _ = sender.send(SessionEvent::Closed(end));
    });
    receiver
}
