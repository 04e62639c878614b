//! The socket of a replication connection and the messages on it: a read buffer decoded with
//! postgres-protocol, a write buffer sent whole, and the rules every state shares (notices are
//! logged, parameter changes kept, an `ErrorResponse` becomes an error carrying its text).

use bytes::{Buf as _, BytesMut};
use postgres_protocol::message::backend::Message;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::replication::error::{ReplicationError, ServerError};

/// A byte stream to the server: TCP, a Unix socket, or TLS over TCP.
pub(crate) trait Socket: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Socket for T {}

/// What came from the server.
pub(crate) enum Received {
    /// A message postgres-protocol decodes.
    Message(Message),
    /// `CopyBothResponse` (`W`), which postgres-protocol does not know: START_REPLICATION's answer.
    CopyBoth,
}

/// One connection's socket and buffers.
pub(crate) struct Wire {
    socket: Box<dyn Socket>,
    read: BytesMut,
    /// Messages to send, encoded by postgres-protocol's `frontend` functions; [`Wire::flush`]
    /// sends them.
    pub(crate) write: BytesMut,
    /// `server_version` as the server reported it at login.
    pub(crate) server_version: Option<String>,
}

impl Wire {
    pub(crate) fn new(socket: Box<dyn Socket>) -> Wire {
        Wire {
            socket,
            read: BytesMut::with_capacity(64 * 1024),
            write: BytesMut::with_capacity(1024),
            server_version: None,
        }
    }

    /// Sends what is in the write buffer.
    pub(crate) async fn flush(&mut self) -> Result<(), ReplicationError> {
        self.socket.write_all(&self.write).await?;
        self.socket.flush().await?;
        self.write.clear();
        Ok(())
    }

    /// The next message that needs a decision. Cancel-safe: a partial message stays in the
    /// buffer.
    pub(crate) async fn receive(&mut self) -> Result<Received, ReplicationError> {
        loop {
            if let Some(received) = self.decode()? {
                return Ok(received);
            }
            if self.socket.read_buf(&mut self.read).await? == 0 {
                return Err(ReplicationError::Closed);
            }
        }
    }

    /// [`Wire::receive`], with an `ErrorResponse` turned into the error it is.
    pub(crate) async fn expect(&mut self) -> Result<Received, ReplicationError> {
        match self.receive().await? {
            Received::Message(Message::ErrorResponse(body)) => Err(ReplicationError::Server(
                ServerError::from_fields(body.fields()),
            )),
            received => Ok(received),
        }
    }

    /// [`Wire::expect`] where a `CopyBothResponse` does not belong.
    pub(crate) async fn expect_message(&mut self) -> Result<Message, ReplicationError> {
        match self.expect().await? {
            Received::Message(message) => Ok(message),
            Received::CopyBoth => Err(unexpected("CopyBothResponse")),
        }
    }

    fn decode(&mut self) -> Result<Option<Received>, ReplicationError> {
        loop {
            if self.read.len() >= 5 && self.read[0] == b'W' {
                let len =
                    u32::from_be_bytes([self.read[1], self.read[2], self.read[3], self.read[4]]);
                let total = len as usize + 1;
                if self.read.len() < total {
                    return Ok(None);
                }
                self.read.advance(total);
                return Ok(Some(Received::CopyBoth));
            }
            let message = Message::parse(&mut self.read)
                .map_err(|e| ReplicationError::Protocol(e.to_string()))?;
            match message {
                None => return Ok(None),
                Some(Message::NoticeResponse(body)) => {
                    let notice = ServerError::from_fields(body.fields());
                    tracing::info!(severity = %notice.severity, "{}", notice.message);
                }
                Some(Message::ParameterStatus(body)) => {
                    if body.name().ok() == Some("server_version") {
                        self.server_version = body.value().ok().map(str::to_owned);
                    }
                }
                Some(message) => return Ok(Some(Received::Message(message))),
            }
        }
    }
}

/// The error for a message that does not belong where it came.
pub(crate) fn unexpected(what: &str) -> ReplicationError {
    ReplicationError::Protocol(format!("unexpected {what} from the server"))
}

/// The name of a message, for [`unexpected`].
pub(crate) fn message_name(message: &Message) -> &'static str {
    match message {
        Message::CommandComplete(_) => "CommandComplete",
        Message::CopyData(_) => "CopyData",
        Message::CopyDone => "CopyDone",
        Message::CopyInResponse(_) => "CopyInResponse",
        Message::CopyOutResponse(_) => "CopyOutResponse",
        Message::DataRow(_) => "DataRow",
        Message::EmptyQueryResponse => "EmptyQueryResponse",
        Message::ReadyForQuery(_) => "ReadyForQuery",
        Message::RowDescription(_) => "RowDescription",
        Message::BackendKeyData(_) => "BackendKeyData",
        _ => "message",
    }
}
