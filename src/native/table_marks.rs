//! What a table is marked with after its indexes and rules exist, as pg_dump writes it: its
//! replica identity (`ALTER TABLE ONLY t REPLICA IDENTITY FULL | NOTHING | USING INDEX i`),
//! the index it is clustered on (`ALTER TABLE t CLUSTER ON i`), and its rules' firing states
//! (`ALTER TABLE t DISABLE RULE r`, `ENABLE REPLICA` / `ENABLE ALWAYS`).

use tokio_postgres::Client;

use super::error::NativeError;
use super::objects::read_rows;
use super::table_extras::firing_state;

/// The tables (and materialized views) of `$1` whose replica identity is not the default,
/// with the index it uses when `i`.
const REPLICA_IDENTITY_SQL: &str = "SELECT c.oid::pg_catalog.regclass::text, \
    c.relreplident::text, (SELECT pg_catalog.quote_ident(i.relname) \
      FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid \
      WHERE x.indrelid = c.oid AND x.indisreplident) \
    FROM pg_catalog.pg_class c WHERE c.oid = ANY($1) AND c.relreplident <> 'd' ORDER BY c.oid";

/// `ALTER TABLE ... CLUSTER ON` of each index of the tables of `$1` marked clustered.
const CLUSTER_SQL: &str = "SELECT pg_catalog.format('ALTER TABLE %s CLUSTER ON %I;', \
      x.indrelid::pg_catalog.regclass, i.relname) \
    FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid \
    WHERE x.indrelid = ANY($1) AND x.indisclustered ORDER BY x.indrelid";

/// The rules of `$1` that are not simply enabled, with their state (`ev_enabled`).
const RULE_STATES_SQL: &str = "SELECT r.ev_class::pg_catalog.regclass::text, \
    pg_catalog.quote_ident(r.rulename), r.ev_enabled::text FROM pg_catalog.pg_rewrite r \
    WHERE r.oid = ANY($1) AND r.ev_enabled <> 'O' ORDER BY r.oid";

/// The statement that gives `table` its replica identity (`relreplident`); `None` for the
/// default, or for an index identity whose index is gone (the table then has none).
pub fn replica_identity(table: &str, relreplident: &str, index: Option<&str>) -> Option<String> {
    let identity = match (relreplident, index) {
        ("f", _) => "FULL".to_string(),
        ("n", _) => "NOTHING".to_string(),
        ("i", Some(index)) => format!("USING INDEX {index}"),
        _ => return None,
    };
    Some(format!(
        "ALTER TABLE ONLY {table} REPLICA IDENTITY {identity};\n"
    ))
}

/// After the indexes: the replica identities and CLUSTER marks of `tables`.
pub async fn after_indexes(client: &Client, tables: &[u32]) -> Result<String, NativeError> {
    let list = tables.to_vec();
    let identities: Vec<(String, String, Option<String>)> = read_rows(
        client,
        REPLICA_IDENTITY_SQL,
        &[&list],
        "reading replica identities",
        |row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)),
    )
    .await?;
    let mut sql: String = identities
        .iter()
        .filter_map(|(table, kind, index)| replica_identity(table, kind, index.as_deref()))
        .collect();
    let clusters: Vec<String> = read_rows(
        client,
        CLUSTER_SQL,
        &[&list],
        "reading CLUSTER marks",
        |row| row.try_get(0),
    )
    .await?;
    for cluster in clusters {
        sql.push_str(&cluster);
        sql.push('\n');
    }
    Ok(sql)
}

/// After the rules: the firing states of the rules of `rules` that are not simply enabled.
pub async fn rule_states(client: &Client, rules: &[u32]) -> Result<String, NativeError> {
    let rows: Vec<(String, String, String)> = read_rows(
        client,
        RULE_STATES_SQL,
        &[&rules.to_vec()],
        "reading rules' states",
        |row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)),
    )
    .await?;
    Ok(rows
        .iter()
        .filter_map(|(table, rule, state)| firing_state(table, "RULE", rule, state))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_identities_as_pg_dump_writes_them() {
        assert_eq!(
            replica_identity("app.t", "f", None).as_deref(),
            Some("ALTER TABLE ONLY app.t REPLICA IDENTITY FULL;\n")
        );
        assert_eq!(
            replica_identity("app.t", "n", None).as_deref(),
            Some("ALTER TABLE ONLY app.t REPLICA IDENTITY NOTHING;\n")
        );
        assert_eq!(
            replica_identity("app.t", "i", Some("\"T key\"")).as_deref(),
            Some("ALTER TABLE ONLY app.t REPLICA IDENTITY USING INDEX \"T key\";\n")
        );
        assert_eq!(replica_identity("app.t", "i", None), None);
        assert_eq!(replica_identity("app.t", "d", None), None);
    }

    #[test]
    fn rules_states_use_the_triggers_words() {
        assert_eq!(
            firing_state("app.t", "RULE", "\"No\"", "D").as_deref(),
            Some("ALTER TABLE app.t DISABLE RULE \"No\";\n")
        );
        assert_eq!(
            firing_state("app.t", "RULE", "r", "A").as_deref(),
            Some("ALTER TABLE app.t ENABLE ALWAYS RULE r;\n")
        );
        assert_eq!(firing_state("app.t", "RULE", "r", "O"), None);
    }
}
