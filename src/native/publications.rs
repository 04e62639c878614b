//! Publications, as pg_dump writes them after the tables exist: `CREATE PUBLICATION` with its
//! `publish` list (truncate on 11+), `publish_via_partition_root` (13+) and
//! `publish_generated_columns` (18+), comment and owner; its tables (`ADD TABLE ONLY`, with a
//! column list and a row filter on 15+) and its schemas (`ADD TABLES IN SCHEMA`, 15+).

use tokio_postgres::Client;

use super::error::NativeError;
use super::objects::statements;
use crate::server::ServerVersion;

/// The statements of each publication of `$1`, in oid order.
pub fn publications_sql(version: ServerVersion) -> String {
    let v = version.num();
    let truncate = match v >= 110000 {
        true => "CASE WHEN p.pubtruncate THEN 'truncate' END",
        false => "NULL",
    };
    let via_root = match v >= 130000 {
        true => "CASE WHEN p.pubviaroot THEN ', publish_via_partition_root = true' ELSE '' END",
        false => "''",
    };
    let generated = match v >= 180000 {
        true => {
            "CASE WHEN p.pubgencols = 's' THEN ', publish_generated_columns = stored' \
                 ELSE '' END"
        }
        false => "''",
    };
    format!(
        "SELECT pg_catalog.format('CREATE PUBLICATION %I', p.pubname) \
           || CASE WHEN p.puballtables THEN ' FOR ALL TABLES' ELSE '' END \
           || ' WITH (publish = ' || pg_catalog.quote_literal(pg_catalog.concat_ws(', ', \
                CASE WHEN p.pubinsert THEN 'insert' END, CASE WHEN p.pubupdate THEN 'update' END, \
                CASE WHEN p.pubdelete THEN 'delete' END, {truncate})) \
           || {via_root} || {generated} || E');\\n' \
           || coalesce(pg_catalog.format('COMMENT ON PUBLICATION %I IS ', p.pubname) \
                || pg_catalog.quote_literal(pg_catalog.obj_description(p.oid, 'pg_publication')) \
                || E';\\n', '') \
           || pg_catalog.format(E'ALTER PUBLICATION %I OWNER TO %I;\\n', p.pubname, \
                pg_catalog.pg_get_userbyid(p.pubowner)) \
         FROM pg_catalog.pg_publication p WHERE p.oid = ANY($1) ORDER BY p.oid"
    )
}

/// `ALTER PUBLICATION ... ADD TABLE ONLY` of each publication relation of `$1`.
pub fn publication_tables_sql(version: ServerVersion) -> String {
    let (columns, filter) = match version.num() >= 150000 {
        true => (
            "coalesce(' (' || (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), \
               ', ' ORDER BY a.attnum) FROM pg_catalog.pg_attribute a \
               WHERE a.attrelid = r.prrelid AND a.attnum = ANY(r.prattrs::pg_catalog.int2[])) \
               || ')', '')",
            "coalesce(' WHERE (' || pg_catalog.pg_get_expr(r.prqual, r.prrelid) || ')', '')",
        ),
        false => ("''", "''"),
    };
    format!(
        "SELECT pg_catalog.format('ALTER PUBLICATION %I ADD TABLE ONLY %s', p.pubname, \
           r.prrelid::pg_catalog.regclass) || {columns} || {filter} || E';\\n' \
         FROM pg_catalog.pg_publication_rel r \
         JOIN pg_catalog.pg_publication p ON p.oid = r.prpubid \
         WHERE r.oid = ANY($1) ORDER BY r.oid"
    )
}

/// `ALTER PUBLICATION ... ADD TABLES IN SCHEMA` of each publication schema of `$1` (15+).
const PUBLICATION_SCHEMAS_SQL: &str =
    "SELECT pg_catalog.format(E'ALTER PUBLICATION %I ADD TABLES IN SCHEMA %I;\\n', \
       p.pubname, n.nspname) FROM pg_catalog.pg_publication_namespace s \
     JOIN pg_catalog.pg_publication p ON p.oid = s.pnpubid \
     JOIN pg_catalog.pg_namespace n ON n.oid = s.pnnspid \
     WHERE s.oid = ANY($1) ORDER BY s.oid";

/// The publications of `publications` with their comment and owner, then their tables and
/// schemas (the inventory's publication relations and publication namespaces).
pub async fn create(
    client: &Client,
    version: ServerVersion,
    publications: &[u32],
    tables: &[u32],
    schemas: &[u32],
) -> Result<String, NativeError> {
    let mut sql = statements(
        client,
        &publications_sql(version),
        publications,
        "reading publications",
    )
    .await?;
    sql.push_str(
        &statements(
            client,
            &publication_tables_sql(version),
            tables,
            "reading publications' tables",
        )
        .await?,
    );
    sql.push_str(
        &statements(
            client,
            PUBLICATION_SCHEMAS_SQL,
            schemas,
            "reading publications' schemas",
        )
        .await?,
    );
    Ok(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_major_reads_the_options_and_lists_it_has() {
        let ten = publications_sql(ServerVersion(100000));
        assert!(!ten.contains("pubtruncate") && !ten.contains("pubviaroot"));
        let thirteen = publications_sql(ServerVersion(130000));
        assert!(thirteen.contains("pubtruncate") && thirteen.contains("pubviaroot"));
        assert!(!thirteen.contains("pubgencols"));
        assert!(publications_sql(ServerVersion(180000)).contains("pubgencols"));
        let fourteen = publication_tables_sql(ServerVersion(140000));
        assert!(!fourteen.contains("prattrs") && !fourteen.contains("prqual"));
        let fifteen = publication_tables_sql(ServerVersion(150000));
        assert!(fifteen.contains("prattrs") && fifteen.contains("prqual"));
    }
}
