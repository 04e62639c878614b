//! Physical WAL streaming: `CREATE_REPLICATION_SLOT name TEMPORARY PHYSICAL RESERVE_WAL`,
//! `START_REPLICATION SLOT name PHYSICAL lsn TIMELINE tli`, then CopyBoth: `w` XLogData frames
//! and `k` keepalives from the server, `r` standby status updates from us.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use crate::replication::error::ReplicationError;
use crate::replication::startup::ReplicationConnection;
use crate::replication::wire::{message_name, unexpected, Received};
use crate::wal::Lsn;

/// The command creating a temporary physical slot that holds WAL from now on (10+). The
/// server drops the slot when the connection ends, however it ends.
pub fn create_temporary_slot_command(slot: &str) -> String {
    format!("CREATE_REPLICATION_SLOT {slot} TEMPORARY PHYSICAL RESERVE_WAL")
}

/// The command starting physical replication from `start` on `timeline`, through `slot`.
pub fn start_replication_command(slot: &str, start: Lsn, timeline: u32) -> String {
    format!("START_REPLICATION SLOT {slot} PHYSICAL {start} TIMELINE {timeline}")
}

/// Whether `name` is a valid slot name (lower-case letters, digits, underscores, at most 63).
pub fn is_slot_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// What the WAL stream delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalEvent {
    /// WAL bytes beginning at `start`.
    Data {
        /// The position of the first byte.
        start: Lsn,
        bytes: Bytes,
    },
    /// A keepalive that asks for a status update now ([`WalStream::send_status`]).
    ReplyRequested,
    /// The server ended the stream (end of timeline).
    End,
}

/// A running `START_REPLICATION`: read with [`WalStream::next`], answer with
/// [`WalStream::send_status`].
pub struct WalStream<'a> {
    connection: &'a mut ReplicationConnection,
    received: Lsn,
}

impl ReplicationConnection {
    /// Creates a temporary physical slot reserving WAL (`slot` must be a valid slot name).
    pub async fn create_temporary_slot(&mut self, slot: &str) -> Result<(), ReplicationError> {
        if !is_slot_name(slot) {
            return Err(ReplicationError::Protocol(format!(
                "invalid replication slot name {slot:?}"
            )));
        }
        self.simple_query(&create_temporary_slot_command(slot))
            .await
            .map(drop)
    }

    /// Starts streaming; the server answers with CopyBoth.
    pub async fn start_replication(
        &mut self,
        slot: &str,
        start: Lsn,
        timeline: u32,
    ) -> Result<WalStream<'_>, ReplicationError> {
        frontend::query(
            &start_replication_command(slot, start, timeline),
            &mut self.wire.write,
        )?;
        self.wire.flush().await?;
        match self.wire.expect().await? {
            Received::CopyBoth => Ok(WalStream {
                connection: self,
                received: start,
            }),
            Received::Message(other) => Err(unexpected(message_name(&other))),
        }
    }
}

impl WalStream<'_> {
    /// The position after the last byte received.
    pub fn received(&self) -> Lsn {
        self.received
    }

    /// The next event. Cancel-safe: it only reads.
    pub async fn next(&mut self) -> Result<WalEvent, ReplicationError> {
        loop {
            let message = match self.connection.wire.expect().await? {
                Received::Message(message) => message,
                Received::CopyBoth => return Err(unexpected("second CopyBothResponse")),
            };
            match message {
                Message::CopyData(body) => {
                    if let Some(event) = self.frame(body.into_bytes())? {
                        return Ok(event);
                    }
                }
                Message::CopyDone => return Ok(WalEvent::End),
                other => return Err(unexpected(message_name(&other))),
            }
        }
    }

    fn frame(&mut self, mut data: Bytes) -> Result<Option<WalEvent>, ReplicationError> {
        let short = || ReplicationError::Protocol("short replication frame".to_owned());
        if data.is_empty() {
            return Err(short());
        }
        match data.get_u8() {
            b'w' => {
                if data.len() < 24 {
                    return Err(short());
                }
                let start = Lsn(data.get_u64());
                let _server_end = data.get_u64();
                let _send_time = data.get_i64();
                let end = start.0.checked_add(data.len() as u64).ok_or_else(short)?;
                self.received = self.received.max(Lsn(end));
                Ok(Some(WalEvent::Data { start, bytes: data }))
            }
            b'k' => {
                if data.len() < 17 {
                    return Err(short());
                }
                let _server_end = data.get_u64();
                let _send_time = data.get_i64();
                Ok((data.get_u8() != 0).then_some(WalEvent::ReplyRequested))
            }
            other => Err(ReplicationError::Protocol(format!(
                "unknown replication frame type {:?}",
                char::from(other)
            ))),
        }
    }

    /// Sends a standby status update: written up to [`WalStream::received`], nothing flushed
    /// or applied (so the temporary slot keeps every byte of WAL until the end).
    pub async fn send_status(&mut self) -> Result<(), ReplicationError> {
        let update = status_update(self.received, SystemTime::now());
        let body = frontend::CopyData::new(update.freeze())?;
        body.write(&mut self.connection.wire.write);
        self.connection.wire.flush().await
    }
}

/// The `r` message: write, flush, apply positions, the clock in microseconds since
/// 2000-01-01, and no reply requested.
pub fn status_update(written: Lsn, now: SystemTime) -> BytesMut {
    const POSTGRES_EPOCH: Duration = Duration::from_secs(946_684_800);
    let micros = now
        .duration_since(UNIX_EPOCH + POSTGRES_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let mut message = BytesMut::with_capacity(34);
    message.put_u8(b'r');
    message.put_u64(written.0);
    message.put_u64(0);
    message.put_u64(0);
    message.put_i64(micros);
    message.put_u8(0);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_slot_names() {
        assert_eq!(
            create_temporary_slot_command("pgbase_42"),
            "CREATE_REPLICATION_SLOT pgbase_42 TEMPORARY PHYSICAL RESERVE_WAL"
        );
        assert_eq!(
            start_replication_command("pgbase_42", Lsn(0x1_0300_0000), 2),
            "START_REPLICATION SLOT pgbase_42 PHYSICAL 1/3000000 TIMELINE 2"
        );
        assert!(is_slot_name("pgbase_42"));
        for bad in ["", "Pg", "a-b", "a b", &"x".repeat(64)] {
            assert!(!is_slot_name(bad), "{bad}");
        }
    }

    #[test]
    fn status_update_layout() {
        let at = UNIX_EPOCH + Duration::from_secs(946_684_800 + 2);
        let update = status_update(Lsn(0x3000060), at);
        assert_eq!(update.len(), 34);
        assert_eq!(update[0], b'r');
        assert_eq!(&update[1..9], &0x3000060u64.to_be_bytes());
        assert_eq!(&update[25..33], &2_000_000i64.to_be_bytes());
        assert_eq!(update[33], 0);
    }
}
