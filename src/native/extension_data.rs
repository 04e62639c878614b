//! Extensions' configuration tables (`pg_extension_config_dump`): their rows, as pg_dump writes
//! them, with the other tables' data. The tables are the extension's (its `CREATE EXTENSION`
//! makes them, and their built-in rows); what is written is a configuration table's rows that
//! its condition (`extcondition`, such as `WHERE NOT builtin`) keeps, read with
//! `COPY (SELECT columns FROM table condition) TO STDOUT` as pg_dump reads them (children's rows
//! included, as there), each table after the configuration tables its foreign keys reference,
//! and a configuration sequence's `setval`. Views, foreign and partitioned tables hold no rows
//! of their own: nothing is written for them, as pg_dump writes nothing.

use futures_util::{pin_mut, TryStreamExt as _};
use tokio_postgres::Client;

use super::ddl::{self, view_order, COPY_END};
use super::error::{query, NativeError};
use super::objects::{self, read_rows};
use super::output::SqlWriter;
use crate::server::ServerVersion;

/// A configuration relation of an extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigRelation {
    /// Its oid.
    pub oid: u32,
    /// Quoted, qualified name.
    pub name: String,
    /// `relkind`: `r` (its rows are written), `S` (its state), others (nothing).
    pub relkind: String,
    /// The condition of `pg_extension_config_dump` (`WHERE ...`), empty for every row.
    pub condition: String,
}

/// The configuration relations of the extensions `$1`, in oid order.
const CONFIG_SQL: &str = "SELECT c.oid, c.oid::pg_catalog.regclass::text, c.relkind::text, \
    coalesce(x.condition, '') FROM pg_catalog.pg_extension e \
    CROSS JOIN LATERAL ROWS FROM (pg_catalog.unnest(e.extconfig), \
      pg_catalog.unnest(e.extcondition)) AS x(relation, condition) \
    JOIN pg_catalog.pg_class c ON c.oid = x.relation \
    WHERE e.oid = ANY($1) ORDER BY c.oid";

/// The foreign keys between configuration tables `$1`: (table, table it references).
const REFERENCES_SQL: &str = "SELECT k.conrelid, k.confrelid FROM pg_catalog.pg_constraint k \
    WHERE k.contype = 'f' AND k.conrelid = ANY($1) AND k.confrelid = ANY($1)";

/// The query that reads a configuration table's rows: pg_dump's `COPY (SELECT ...)` when it has
/// a condition, else a plain `COPY`; `columns` are the quoted names, generated columns left out.
pub fn copy_query(table: &ConfigRelation, columns: &[String]) -> String {
    if table.condition.is_empty() {
        return ddl::copy_to_stdout(&table.name, columns);
    }
    let list = match columns.is_empty() {
        true => "*".to_string(),
        false => columns.join(", "),
    };
    format!(
        "COPY (SELECT {list} FROM {} {}) TO STDOUT",
        table.name, table.condition
    )
}

/// Writes the rows of the configuration tables of `extensions`, then the state of their
/// configuration sequences; returns how many tables' rows were copied.
pub async fn export(
    client: &Client,
    version: ServerVersion,
    extensions: &[u32],
    marker: &str,
    out: &mut SqlWriter,
) -> Result<usize, NativeError> {
    let what = "reading extensions' configuration tables";
    let list = extensions.to_vec();
    let relations = read_rows(client, CONFIG_SQL, &[&list], what, |row| {
        Ok(ConfigRelation {
            oid: row.try_get(0)?,
            name: row.try_get(1)?,
            relkind: row.try_get(2)?,
            condition: row.try_get(3)?,
        })
    })
    .await?;
    if relations.is_empty() {
        return Ok(0);
    }
    let tables: Vec<u32> = relations
        .iter()
        .filter(|r| r.relkind == "r")
        .map(|r| r.oid)
        .collect();
    let references = read_rows(client, REFERENCES_SQL, &[&tables], what, |row| {
        Ok((row.try_get(0)?, row.try_get(1)?))
    })
    .await?;
    let mut columns = objects::columns(client, version, &tables).await?;
    let mut copied = 0;
    for oid in view_order(&tables, &references) {
        let Some(table) = relations.iter().find(|r| r.oid == oid) else {
            continue;
        };
        let names: Vec<String> = columns
            .remove(&oid)
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !c.generated)
            .map(|c| c.name)
            .collect();
        out.text(&ddl::section(
            marker,
            &format!(
                "data of {} (an extension's configuration table)",
                table.name
            ),
        ))
        .await?;
        out.text(&ddl::copy_lines(marker, &table.name, &names))
            .await?;
        let what = "copying a configuration table's rows";
        let stream = client
            .copy_out(&copy_query(table, &names))
            .await
            .map_err(query(what))?;
        pin_mut!(stream);
        while let Some(bytes) = stream.try_next().await.map_err(query(what))? {
            out.write(&bytes).await?;
        }
        out.text(COPY_END).await?;
        copied += 1;
    }
    for sequence in relations.iter().filter(|r| r.relkind == "S") {
        let (last_value, is_called) = objects::sequence_state(client, &sequence.name).await?;
        out.text(&ddl::setval(&sequence.name, last_value, is_called))
            .await?;
    }
    out.text(&ddl::batch_line(marker)).await?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(condition: &str) -> ConfigRelation {
        ConfigRelation {
            oid: 16500,
            name: "app.\"Settings\"".into(),
            relkind: "r".into(),
            condition: condition.into(),
        }
    }

    #[test]
    fn a_condition_reads_the_rows_it_keeps_as_pg_dump_does() {
        let columns = ["id".to_string(), "\"Value\"".to_string()];
        assert_eq!(
            copy_query(&table("WHERE NOT builtin"), &columns),
            "COPY (SELECT id, \"Value\" FROM app.\"Settings\" WHERE NOT builtin) TO STDOUT"
        );
        assert_eq!(
            copy_query(&table("WHERE NOT builtin"), &[]),
            "COPY (SELECT * FROM app.\"Settings\" WHERE NOT builtin) TO STDOUT"
        );
    }

    #[test]
    fn without_a_condition_every_row_of_the_table_is_copied() {
        assert_eq!(
            copy_query(&table(""), &["id".to_string()]),
            "COPY app.\"Settings\" (id) TO STDOUT"
        );
    }

    #[test]
    fn the_queries_read_only_the_extensions_given() {
        assert!(CONFIG_SQL.contains("unnest(e.extconfig), pg_catalog.unnest(e.extcondition))"));
        assert!(CONFIG_SQL.contains("WHERE e.oid = ANY($1)"));
        assert!(REFERENCES_SQL.contains("k.conrelid = ANY($1) AND k.confrelid = ANY($1)"));
    }
}
