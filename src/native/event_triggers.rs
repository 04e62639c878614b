//! Event triggers, written last as pg_dump does (so that none fires during the restore): the
//! event, its tags, the function (`EXECUTE FUNCTION` on 11+, `EXECUTE PROCEDURE` on 10), the
//! firing state, the comment and the owner.

use tokio_postgres::Client;

use super::error::NativeError;
use super::objects::statements;
use crate::server::ServerVersion;

/// The statements of each event trigger of `$1`, in oid order: one text per trigger.
pub fn event_triggers_sql(version: ServerVersion) -> String {
    let execute = match version.num() >= 110000 {
        true => "FUNCTION",
        false => "PROCEDURE",
    };
    format!(
        "SELECT pg_catalog.format(E'CREATE EVENT TRIGGER %I ON %I', e.evtname, e.evtevent) \
           || coalesce(' WHEN TAG IN (' || (SELECT pg_catalog.string_agg( \
                pg_catalog.quote_literal(t), ', ' ORDER BY o) \
                FROM pg_catalog.unnest(e.evttags) WITH ORDINALITY AS u(t, o)) || ')', '') \
           || pg_catalog.format(E'\\n    EXECUTE {execute} %s.%I();\\n', \
                pg_catalog.quote_ident(n.nspname), p.proname) \
           || CASE e.evtenabled WHEN 'D' THEN pg_catalog.format(E'ALTER EVENT TRIGGER %I DISABLE;\\n', e.evtname) \
                WHEN 'R' THEN pg_catalog.format(E'ALTER EVENT TRIGGER %I ENABLE REPLICA;\\n', e.evtname) \
                WHEN 'A' THEN pg_catalog.format(E'ALTER EVENT TRIGGER %I ENABLE ALWAYS;\\n', e.evtname) \
                ELSE '' END \
           || coalesce(pg_catalog.format('COMMENT ON EVENT TRIGGER %I IS ', e.evtname) \
                || pg_catalog.quote_literal( \
                pg_catalog.obj_description(e.oid, 'pg_event_trigger')) || E';\\n', '') \
           || pg_catalog.format(E'ALTER EVENT TRIGGER %I OWNER TO %I;\\n', e.evtname, \
                pg_catalog.pg_get_userbyid(e.evtowner)) \
         FROM pg_catalog.pg_event_trigger e \
         JOIN pg_catalog.pg_proc p ON p.oid = e.evtfoid \
         JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
         WHERE e.oid = ANY($1) ORDER BY e.oid"
    )
}

/// The event triggers of `list`, with their state, comment and owner.
pub async fn create(
    client: &Client,
    version: ServerVersion,
    list: &[u32],
) -> Result<String, NativeError> {
    statements(
        client,
        &event_triggers_sql(version),
        list,
        "reading event triggers",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_executes_a_procedure_and_eleven_a_function() {
        assert!(event_triggers_sql(ServerVersion(100000)).contains("EXECUTE PROCEDURE"));
        let eleven = event_triggers_sql(ServerVersion(110000));
        assert!(eleven.contains("EXECUTE FUNCTION") && !eleven.contains("PROCEDURE"));
        assert!(eleven.contains("ENABLE REPLICA") && eleven.contains("ENABLE ALWAYS"));
    }
}
