//! The export's session, as pg_dump opens it: its timeouts off, `DateStyle`, `IntervalStyle`,
//! `extra_float_digits` and an empty `search_path` set, `row_security` off (a policy fails the
//! dump rather than hiding rows), one `REPEATABLE READ READ ONLY` transaction whose snapshot is
//! exported (`pg_export_snapshot`) for worker connections, the inventory read in it, and
//! `ACCESS SHARE` locks on every table before any definition is read.

use tokio_postgres::Client;

use super::error::{query, NativeError};
use super::inventory::{
    classify, inventory_sql, Inventory, InventoryObject, Refusal, CATALOGS_WITH_OIDS_SQL,
    SYSTEM_CHANGES_SQL,
};
use super::objects::read_rows;
use crate::server::{session_guard_sql, ServerVersion};

/// Settings of the export's session (the output sets the same for the restore).
const SESSION_SQL: &str = "SET DateStyle = ISO; SET IntervalStyle = postgres; \
    SET extra_float_digits = 3; SET row_security = off; \
    SELECT pg_catalog.set_config('search_path', '', false)";

/// The session's settings, in the order they are sent: the guards (no timeout ends the
/// export), then pg_dump's. The main session and its data worker send the same.
pub fn settings_sql(version: ServerVersion) -> [&'static str; 2] {
    [session_guard_sql(version), SESSION_SQL]
}

/// An open export: the transaction, its snapshot and what the database holds.
#[derive(Debug)]
pub struct Snapshot<'a> {
    /// The session, inside its transaction.
    pub client: &'a Client,
    /// The server's version.
    pub version: ServerVersion,
    /// `pg_export_snapshot()`'s name, for `SET TRANSACTION SNAPSHOT` in worker sessions.
    pub snapshot_id: String,
    /// The inventory, read in the snapshot.
    pub inventory: Inventory,
    /// The database's encoding.
    pub encoding: String,
}

/// Opens the transaction on `client` and reads the inventory; tables are locked only when
/// `lock` (an inventory before the run needs no locks).
pub async fn open(
    client: &Client,
    version: ServerVersion,
    lock: bool,
) -> Result<Snapshot<'_>, NativeError> {
    let what = "opening the export's session";
    for settings in settings_sql(version) {
        client.batch_execute(settings).await.map_err(query(what))?;
    }
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(query(what))?;
    let snapshot_id: String = client
        .query_one("SELECT pg_catalog.pg_export_snapshot()", &[])
        .await
        .map_err(query(what))?
        .try_get(0)
        .map_err(query(what))?;
    let encoding: String = client
        .query_one("SELECT pg_catalog.pg_encoding_to_char(encoding) FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()", &[])
        .await
        .map_err(query(what))?
        .try_get(0)
        .map_err(query(what))?;
    let inventory = read_inventory(client, version).await?;
    if lock {
        lock_tables(client, &inventory, Wait::Queue).await?;
    }
    Ok(Snapshot {
        client,
        version,
        snapshot_id,
        inventory,
        encoding,
    })
}

/// Reads and classifies every object of the database.
async fn read_inventory(client: &Client, version: ServerVersion) -> Result<Inventory, NativeError> {
    let what = "reading the inventory";
    let catalogs: Vec<String> = read_rows(client, CATALOGS_WITH_OIDS_SQL, &[], what, |row| {
        row.try_get(0)
    })
    .await?;
    let rows = client
        .query(&inventory_sql(version, &catalogs), &[])
        .await
        .map_err(query(what))?;
    let mut objects = Vec::with_capacity(rows.len());
    for row in rows {
        objects.push(InventoryObject {
            catalog: row.try_get(0).map_err(query(what))?,
            oid: row.try_get(1).map_err(query(what))?,
            kind: row.try_get(2).map_err(query(what))?,
            identity: row.try_get(3).map_err(query(what))?,
            unsupported: row.try_get(4).map_err(query(what))?,
        });
    }
    let mut inventory = classify(objects);
    for row in client
        .query(SYSTEM_CHANGES_SQL, &[])
        .await
        .map_err(query(what))?
    {
        inventory.refusals.push(Refusal {
            kind: row.try_get(0).map_err(query(what))?,
            identity: row.try_get(1).map_err(query(what))?,
            reasons: Vec::new(),
        });
    }
    Ok(inventory)
}

/// Whether a lock waits its turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// It waits behind the sessions before it (the main session).
    Queue,
    /// `NOWAIT`: a data worker would wait behind an `ACCESS EXCLUSIVE` request that itself
    /// waits for the main session, which waits for the worker: a deadlock the server cannot
    /// see, so the worker fails instead (as pg_dump's workers do).
    Fail,
}

/// `LOCK TABLE ... IN ACCESS SHARE MODE` on every table of the inventory, a few at a time.
pub async fn lock_tables(
    client: &Client,
    inventory: &Inventory,
    wait: Wait,
) -> Result<(), NativeError> {
    let mut tables = inventory.oids("table");
    tables.extend(inventory.oids("partitioned table"));
    for batch in tables.chunks(500) {
        let names: Vec<String> = client
            .query(
                "SELECT c.oid::pg_catalog.regclass::text FROM pg_catalog.pg_class c \
                 WHERE c.oid = ANY($1)",
                &[&batch.to_vec()],
            )
            .await
            .map_err(query("naming the tables to lock"))?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(query("naming the tables to lock"))?;
        if names.is_empty() {
            continue;
        }
        client
            .batch_execute(&lock_sql(&names, wait))
            .await
            .map_err(query(match wait {
                Wait::Queue => "locking the tables",
                Wait::Fail => {
                    "the data worker locking the tables (a session asked for an \
                    ACCESS EXCLUSIVE lock on one after the export had locked them)"
                }
            }))?;
    }
    Ok(())
}

/// `LOCK TABLE ONLY ... IN ACCESS SHARE MODE` of the quoted `names`, `NOWAIT` when `wait` fails.
pub fn lock_sql(names: &[String], wait: Wait) -> String {
    format!(
        "LOCK TABLE {} IN ACCESS SHARE MODE{}",
        names
            .iter()
            .map(|n| format!("ONLY {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        match wait {
            Wait::Queue => "",
            Wait::Fail => " NOWAIT",
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sessions_send_the_guards_then_pg_dumps_settings() {
        let [guards, settings] = settings_sql(ServerVersion(180000));
        assert_eq!(guards, session_guard_sql(ServerVersion(180000)));
        assert!(settings.contains("SET row_security = off"));
        assert!(settings.contains("set_config('search_path', '', false)"));
    }

    #[test]
    fn a_worker_locks_without_waiting() {
        let names = ["public.t".to_string(), "\"A b\".\"c\"".to_string()];
        assert_eq!(
            lock_sql(&names, Wait::Queue),
            "LOCK TABLE ONLY public.t, ONLY \"A b\".\"c\" IN ACCESS SHARE MODE"
        );
        assert_eq!(
            lock_sql(&names[..1], Wait::Fail),
            "LOCK TABLE ONLY public.t IN ACCESS SHARE MODE NOWAIT"
        );
    }
}
