//! Extended statistics (`CREATE STATISTICS`, 10+), as pg_dump writes them after the indexes:
//! `pg_get_statisticsobjdef`, the statistics target (`ALTER STATISTICS ... SET STATISTICS`,
//! 13+), the comment and the owner.

use tokio_postgres::Client;

use super::error::NativeError;
use super::objects::statements;
use crate::server::ServerVersion;

/// The statements of each statistics object of `$1`, in oid order: one text per object.
pub fn statistics_sql(version: ServerVersion) -> String {
    // 13 added the target (-1: the default); 17 made the default NULL.
    let target = match version.num() {
        v if v >= 170000 => "s.stxstattarget",
        v if v >= 130000 => "NULLIF(s.stxstattarget, -1)",
        _ => "NULL::integer",
    };
    format!(
        "SELECT pg_catalog.pg_get_statisticsobjdef(s.oid) || E';\\n' \
           || CASE WHEN {target} IS NOT NULL THEN pg_catalog.format( \
                E'ALTER STATISTICS %I.%I SET STATISTICS %s;\\n', n.nspname, s.stxname, {target}) \
              ELSE '' END \
           || coalesce(pg_catalog.format('COMMENT ON STATISTICS %I.%I IS ', n.nspname, \
                s.stxname) || pg_catalog.quote_literal( \
                pg_catalog.obj_description(s.oid, 'pg_statistic_ext')) || E';\\n', '') \
           || pg_catalog.format(E'ALTER STATISTICS %I.%I OWNER TO %I;\\n', \
                n.nspname, s.stxname, pg_catalog.pg_get_userbyid(s.stxowner)) \
         FROM pg_catalog.pg_statistic_ext s \
         JOIN pg_catalog.pg_namespace n ON n.oid = s.stxnamespace \
         WHERE s.oid = ANY($1) ORDER BY s.oid"
    )
}

/// The statistics objects of `list`, created with their target, comment and owner.
pub async fn create(
    client: &Client,
    version: ServerVersion,
    list: &[u32],
) -> Result<String, NativeError> {
    statements(
        client,
        &statistics_sql(version),
        list,
        "reading extended statistics",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_read_where_the_major_has_one() {
        assert!(statistics_sql(ServerVersion(100000)).contains("NULL::integer"));
        assert!(statistics_sql(ServerVersion(130000)).contains("NULLIF(s.stxstattarget, -1)"));
        let seventeen = statistics_sql(ServerVersion(170000));
        assert!(seventeen.contains(", s.stxstattarget)") && !seventeen.contains("NULLIF"));
        assert!(seventeen.contains("pg_get_statisticsobjdef"));
    }
}
