//! The simple Query protocol on a replication connection (`IDENTIFY_SYSTEM`, `SHOW`,
//! `CREATE_REPLICATION_SLOT`): result sets as text, NULL kept apart from the empty string.

use postgres_protocol::message::backend::{DataRowBody, Message};
use postgres_protocol::message::frontend;

use crate::replication::error::ReplicationError;
use crate::replication::startup::ReplicationConnection;
use crate::replication::wire::{message_name, unexpected};
use crate::wal::Lsn;

/// One row in text format; `None` is SQL NULL.
pub type Row = Vec<Option<String>>;

/// One result set of a command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResultSet {
    /// Column names, in order.
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
}

impl ResultSet {
    /// The value in `column` of the first row, if that row and value exist and are not NULL.
    pub fn first(&self, column: usize) -> Option<&str> {
        self.rows.first()?.get(column)?.as_deref()
    }
}

/// What `IDENTIFY_SYSTEM` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemIdentity {
    /// The cluster's system identifier (a 64-bit number as text).
    pub system_id: String,
    /// The current timeline.
    pub timeline: u32,
    /// The current WAL flush position.
    pub position: Lsn,
}

impl ReplicationConnection {
    /// Runs one command and returns its result sets (none for a command without rows).
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<ResultSet>, ReplicationError> {
        frontend::query(sql, &mut self.wire.write)?;
        self.wire.flush().await?;
        let mut sets = Vec::new();
        let mut current: Option<ResultSet> = None;
        loop {
            match self.wire.expect_message().await? {
                Message::RowDescription(body) => {
                    current = Some(ResultSet {
                        columns: column_names(&body)?,
                        rows: Vec::new(),
                    });
                }
                Message::DataRow(body) => match &mut current {
                    Some(set) => set.rows.push(text_row(&body)?),
                    None => return Err(unexpected("DataRow without RowDescription")),
                },
                Message::CommandComplete(_) | Message::EmptyQueryResponse => {
                    sets.extend(current.take());
                }
                Message::ReadyForQuery(_) => return Ok(sets),
                other => return Err(unexpected(message_name(&other))),
            }
        }
    }

    /// `IDENTIFY_SYSTEM`: the cluster's identifier, its timeline and WAL position. Before 15,
    /// a standby refuses START_REPLICATION on a connection that has not run it.
    pub async fn identify_system(&mut self) -> Result<SystemIdentity, ReplicationError> {
        let sets = self.simple_query("IDENTIFY_SYSTEM").await?;
        let set = sets.first().ok_or_else(|| {
            ReplicationError::Protocol("IDENTIFY_SYSTEM returned no rows".to_owned())
        })?;
        let bad = |what: &str| ReplicationError::Protocol(format!("IDENTIFY_SYSTEM: bad {what}"));
        Ok(SystemIdentity {
            system_id: set.first(0).ok_or_else(|| bad("systemid"))?.to_owned(),
            timeline: set
                .first(1)
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| bad("timeline"))?,
            position: set
                .first(2)
                .and_then(Lsn::parse)
                .ok_or_else(|| bad("xlogpos"))?,
        })
    }

    /// `SHOW name`: the setting's value.
    pub async fn show(&mut self, name: &str) -> Result<String, ReplicationError> {
        let sets = self.simple_query(&format!("SHOW {name}")).await?;
        sets.first()
            .and_then(|set| set.first(0))
            .map(str::to_owned)
            .ok_or_else(|| ReplicationError::Protocol(format!("SHOW {name} returned no value")))
    }
}

pub(crate) fn column_names(
    body: &postgres_protocol::message::backend::RowDescriptionBody,
) -> Result<Vec<String>, ReplicationError> {
    use fallible_iterator::FallibleIterator as _;
    body.fields()
        .map(|field| Ok(field.name().to_owned()))
        .collect()
        .map_err(|e| ReplicationError::Protocol(e.to_string()))
}

/// A DataRow's fields as text; NULL stays `None`.
pub(crate) fn text_row(body: &DataRowBody) -> Result<Row, ReplicationError> {
    use fallible_iterator::FallibleIterator as _;
    let buffer = body.buffer();
    body.ranges()
        .map(|range| Ok(range.map(|range| String::from_utf8_lossy(&buffer[range]).into_owned())))
        .collect()
        .map_err(|e| ReplicationError::Protocol(e.to_string()))
}
