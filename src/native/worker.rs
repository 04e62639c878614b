//! The data worker: a second session on the database, with the main session's settings, in a
//! `REPEATABLE READ READ ONLY` transaction that imports the main session's exported snapshot
//! (`SET TRANSACTION SNAPSHOT`), so that it reads the very rows the main session would. It
//! locks the tables without waiting, then streams each table's rows with `COPY ... TO STDOUT`
//! while the main session reads the definitions written after the data.

use std::collections::HashMap;

use futures_util::{pin_mut, TryStreamExt as _};
use tokio_postgres::Client;

use super::ddl::{self, Column, COPY_END};
use super::error::{query, NativeError};
use super::objects::Owned;
use super::output::SqlWriter;
use super::partitions::Hierarchy;
use super::session::{lock_tables, settings_sql, Snapshot, Wait};
use crate::server::{quote_literal, ServerVersion};

/// The worker's transaction: the main session's isolation, in its exported snapshot.
pub fn import_sql(snapshot_id: &str) -> String {
    format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT {}",
        quote_literal(snapshot_id)
    )
}

/// What a worker sends before its first read, one batch at a time: the main session's
/// settings, then the transaction importing the snapshot (`SET TRANSACTION SNAPSHOT` must
/// come before any query of the transaction, so no setting shares its batch).
pub fn opening_sql(version: ServerVersion, snapshot_id: &str) -> Vec<String> {
    let mut batches: Vec<String> = settings_sql(version).map(str::to_string).to_vec();
    batches.push(import_sql(snapshot_id));
    batches
}

/// A data worker, in the export's snapshot, holding `ACCESS SHARE` on every table.
#[derive(Debug)]
pub struct Worker<'a> {
    /// The worker's session (not the main session).
    client: &'a Client,
}

impl<'a> Worker<'a> {
    /// Opens the worker's transaction on `client`, a second session on the database of
    /// `snapshot`, whose transaction must still be open (its snapshot is gone once it ends).
    pub async fn open(client: &'a Client, snapshot: &Snapshot<'_>) -> Result<Self, NativeError> {
        for batch in opening_sql(snapshot.version, &snapshot.snapshot_id) {
            client
                .batch_execute(&batch)
                .await
                .map_err(query("opening the data worker in the export's snapshot"))?;
        }
        lock_tables(client, &snapshot.inventory, Wait::Fail).await?;
        Ok(Worker { client })
    }

    /// Writes the rows of `tables` (their columns in `columns`, generated ones left out), each
    /// framed by its section and COPY lines, in order; returns how many tables were copied (a
    /// partitioned table's rows are its partitions').
    pub async fn copy(
        &self,
        tables: &[Owned],
        columns: &HashMap<u32, Vec<Column>>,
        hierarchy: &Hierarchy,
        marker: &str,
        out: &mut SqlWriter,
    ) -> Result<usize, NativeError> {
        let mut copied = 0;
        for table in tables {
            let names: Vec<String> = columns
                .get(&table.oid)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter(|c| !c.generated)
                .map(|c| c.name.clone())
                .collect();
            let Some(copy) = hierarchy.copy_query(table, &names) else {
                continue;
            };
            out.text(&ddl::section(marker, &format!("data of {}", table.name)))
                .await?;
            out.text(&ddl::copy_lines(marker, &table.name, &names))
                .await?;
            let stream = self
                .client
                .copy_out(&copy)
                .await
                .map_err(query("copying a table's rows"))?;
            pin_mut!(stream);
            while let Some(bytes) = stream
                .try_next()
                .await
                .map_err(query("copying a table's rows"))?
            {
                out.write(&bytes).await?;
            }
            out.text(COPY_END).await?;
            copied += 1;
        }
        Ok(copied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_takes_the_main_sessions_settings_then_its_snapshot() {
        let version = ServerVersion(100000);
        let batches = opening_sql(version, "00000003-0000001B-1");
        assert_eq!(
            batches[..2],
            settings_sql(version).map(str::to_string).to_vec()[..]
        );
        assert_eq!(
            batches[2],
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; \
             SET TRANSACTION SNAPSHOT '00000003-0000001B-1'"
        );
        assert_eq!(batches.len(), 3);
    }

    #[test]
    fn the_snapshot_id_is_a_quoted_literal() {
        assert!(import_sql("a'b\\c").ends_with("SET TRANSACTION SNAPSHOT E'a''b\\\\c'"));
    }
}
