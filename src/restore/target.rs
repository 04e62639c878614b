//! What the restore reads on the target server: its roles, its databases, and whether an
//! existing database holds objects of its own. The SQL is built per server version by pure
//! functions.

use std::collections::BTreeSet;

use crate::conn::{ConnError, ConnSettings};

/// Every role name.
pub const ROLES: &str = "SELECT rolname::text FROM pg_catalog.pg_roles";

/// Every database name.
pub const DATABASES: &str = "SELECT datname::text FROM pg_catalog.pg_database";

/// Objects below this OID were made by initdb; anything at or above it was created later.
const FIRST_NORMAL_OBJECT_ID: u32 = 16384;

/// Counts, per kind, the objects a database holds that initdb did not create (temporary
/// schemas aside). Columns: kind, count; only kinds with a count above zero.
pub fn own_objects_query(server_version_num: i32) -> String {
    let temp = "n.nspname !~ '^pg_(toast_)?temp_'";
    let mut parts = vec![
        format!(
            "SELECT 'schema', count(*) FROM pg_catalog.pg_namespace n \
             WHERE n.oid >= {FIRST_NORMAL_OBJECT_ID} AND {temp}"
        ),
        format!(
            "SELECT 'relation', count(*) FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid >= {FIRST_NORMAL_OBJECT_ID} AND {temp}"
        ),
        format!(
            "SELECT 'function', count(*) FROM pg_catalog.pg_proc p \
             JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
             WHERE p.oid >= {FIRST_NORMAL_OBJECT_ID} AND {temp}"
        ),
        format!(
            "SELECT 'type', count(*) FROM pg_catalog.pg_type t \
             JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
             WHERE t.oid >= {FIRST_NORMAL_OBJECT_ID} AND {temp}"
        ),
    ];
    let mut simple = vec![
        ("extension", "pg_extension"),
        ("large object", "pg_largeobject_metadata"),
        ("event trigger", "pg_event_trigger"),
        ("foreign data wrapper", "pg_foreign_data_wrapper"),
        ("foreign server", "pg_foreign_server"),
        ("language", "pg_language"),
        ("cast", "pg_cast"),
        ("collation", "pg_collation"),
        ("conversion", "pg_conversion"),
        ("operator", "pg_operator"),
        ("operator class", "pg_opclass"),
        ("operator family", "pg_opfamily"),
        ("text search configuration", "pg_ts_config"),
        ("text search dictionary", "pg_ts_dict"),
        ("default privilege", "pg_default_acl"),
    ];
    if server_version_num >= 100_000 {
        simple.push(("publication", "pg_publication"));
        simple.push(("extended statistics", "pg_statistic_ext"));
    }
    for (kind, catalog) in simple {
        parts.push(format!(
            "SELECT '{kind}', count(*) FROM pg_catalog.{catalog} WHERE oid >= {FIRST_NORMAL_OBJECT_ID}"
        ));
    }
    format!(
        "SELECT kind, n FROM ({}) AS objects(kind, n) WHERE n > 0",
        parts.join(" UNION ALL ")
    )
}

/// What the restore learned about the target before touching it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetState {
    pub server_version_num: i32,
    /// Roles that exist.
    pub roles: BTreeSet<String>,
    /// Databases that exist.
    pub databases: BTreeSet<String>,
}

/// Reading the target failed.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Connecting failed.
    #[error(transparent)]
    Connect(#[from] ConnError),
    /// A catalog query failed.
    #[error("{what}: {source}")]
    Query {
        /// What was read.
        what: String,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

fn query_error(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> TargetError {
    let what = what.into();
    move |source| TargetError::Query { what, source }
}

async fn names(
    client: &tokio_postgres::Client,
    sql: &str,
    what: &str,
) -> Result<BTreeSet<String>, TargetError> {
    client
        .query(sql, &[])
        .await
        .map_err(query_error(what))?
        .iter()
        .map(|row| row.try_get::<_, String>(0))
        .collect::<Result<_, _>>()
        .map_err(query_error(what))
}

/// Reads the version, roles and databases through the maintenance database of `conn`.
pub async fn read_target(conn: &ConnSettings) -> Result<TargetState, TargetError> {
    let session = conn.connect().await?;
    let client = &session.client;
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .map_err(query_error("reading the server version"))?;
    Ok(TargetState {
        server_version_num: row
            .try_get(0)
            .map_err(query_error("reading the server version"))?,
        roles: names(client, ROLES, "listing roles").await?,
        databases: names(client, DATABASES, "listing databases").await?,
    })
}

/// The objects of its own `dbname` holds, as `(kind, count)`; empty when it holds none.
pub async fn own_objects(
    conn: &ConnSettings,
    dbname: &str,
    server_version_num: i32,
) -> Result<Vec<(String, i64)>, TargetError> {
    let mut settings = conn.clone();
    settings.dbname = dbname.to_string();
    let session = settings.connect().await?;
    let what = format!("counting the objects of database {dbname:?}");
    session
        .client
        .query(&own_objects_query(server_version_num), &[])
        .await
        .map_err(query_error(what.clone()))?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(query_error(what))
}

/// `3 relations, 1 function`.
pub fn describe_objects(objects: &[(String, i64)]) -> String {
    objects
        .iter()
        .map(|(kind, n)| {
            if *n == 1 {
                format!("1 {kind}")
            } else {
                format!("{n} {kind}s")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_objects_per_version() {
        let v15 = own_objects_query(150_000);
        assert!(v15.contains("pg_publication") && v15.contains("pg_statistic_ext"));
        assert!(v15.contains("oid >= 16384"));
        assert!(v15.contains("'^pg_(toast_)?temp_'"));
        let v96 = own_objects_query(90_600);
        assert!(!v96.contains("pg_publication") && !v96.contains("pg_statistic_ext"));
        assert_eq!(v96.matches("UNION ALL").count(), 18);
    }

    #[test]
    fn object_counts_read_well() {
        assert_eq!(
            describe_objects(&[("relation".into(), 3), ("function".into(), 1)]),
            "3 relations, 1 function"
        );
        assert_eq!(describe_objects(&[]), "");
    }
}
