//! Privileges changed on extensions' members, as pg_dump writes them: the members are the
//! extension's (its `CREATE EXTENSION` makes them with the privileges `pg_init_privs` recorded),
//! so only the difference is written: a `REVOKE` of each ACL item of the creation that is gone,
//! then a `GRANT` of each item added since, in the ACL's order (the owner's own first). The
//! inventory refuses items granted by a role other than the member's owner.

use tokio_postgres::Client;

use super::error::NativeError;
use super::inventory::member_acls_sql;
use super::objects::read_rows;
use super::output::SqlWriter;

/// One ACL item of a member that differs from its creation's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberChange {
    /// `pg_identify_object`'s type: `function`, `table`, `sequence`, `type`, `schema`...
    pub object_type: String,
    /// `pg_identify_object`'s identity, quoted and qualified.
    pub identity: String,
    /// REVOKE (an item of the creation that is gone) or GRANT (one added).
    pub revoke: bool,
    /// Quoted role name; `None` is PUBLIC.
    pub grantee: Option<String>,
    /// The privileges to revoke, or to grant without grant option (`SELECT, UPDATE`).
    pub privileges: String,
    /// The privileges to grant WITH GRANT OPTION.
    pub grantable: String,
}

/// The keyword of GRANT and REVOKE for a member's type; `None` for a type no catalog with an
/// ACL holds.
pub fn keyword(object_type: &str) -> Option<&'static str> {
    Some(match object_type {
        "table" | "view" | "materialized view" | "foreign table" => "TABLE",
        "sequence" => "SEQUENCE",
        "function" | "aggregate" | "window function" => "FUNCTION",
        "procedure" => "PROCEDURE",
        "schema" => "SCHEMA",
        "foreign-data wrapper" => "FOREIGN DATA WRAPPER",
        "server" => "FOREIGN SERVER",
        "language" => "LANGUAGE",
        t if t == "type" || t == "domain" || t.ends_with(" type") => "TYPE",
        _ => return None,
    })
}

/// The statements of one change.
pub fn statements(change: &MemberChange) -> String {
    let Some(keyword) = keyword(&change.object_type) else {
        return String::new();
    };
    let on = format!("ON {keyword} {}", change.identity);
    let role = change.grantee.as_deref().unwrap_or("PUBLIC");
    if change.revoke {
        return format!("REVOKE {} {on} FROM {role};\n", change.privileges);
    }
    let mut sql = String::new();
    if !change.privileges.is_empty() {
        sql.push_str(&format!("GRANT {} {on} TO {role};\n", change.privileges));
    }
    if !change.grantable.is_empty() {
        sql.push_str(&format!(
            "GRANT {} {on} TO {role} WITH GRANT OPTION;\n",
            change.grantable
        ));
    }
    sql
}

/// The changed ACL items of the members of the extensions `$1`, one row per item, in the order
/// pg_dump writes them; each item's privileges in alphabetical order (`aclexplode`'s differs by
/// major).
pub fn changes_sql() -> String {
    format!(
        "SELECT i.type, i.identity, k.revoke, \
         CASE WHEN g.grantee = 0 THEN NULL \
           ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END, \
         coalesce(pg_catalog.string_agg(g.privilege_type, ', ' ORDER BY g.privilege_type) \
           FILTER (WHERE k.revoke OR NOT g.is_grantable), ''), \
         coalesce(pg_catalog.string_agg(g.privilege_type, ', ' ORDER BY g.privilege_type) \
           FILTER (WHERE NOT k.revoke AND g.is_grantable), '') \
         FROM ({}) m \
         CROSS JOIN LATERAL pg_catalog.pg_identify_object(m.classid, m.objid, 0) i \
         CROSS JOIN LATERAL (\
           SELECT true AS revoke, b.item, b.n FROM pg_catalog.unnest(m.base) \
             WITH ORDINALITY b(item, n) WHERE NOT b.item = ANY(m.acl) \
           UNION ALL SELECT false, a.item, a.n FROM pg_catalog.unnest(m.acl) \
             WITH ORDINALITY a(item, n) WHERE NOT a.item = ANY(m.base)) k \
         CROSS JOIN LATERAL pg_catalog.aclexplode(ARRAY[k.item]) g \
         GROUP BY m.classid, m.objid, m.owner, i.type, i.identity, k.revoke, k.n, g.grantee \
         ORDER BY m.classid, m.objid, k.revoke DESC, g.grantee = m.owner DESC, k.n",
        member_acls_sql("ANY($1)")
    )
}

/// Writes the privileges changed on the members of `extensions`.
pub async fn write(
    client: &Client,
    extensions: &[u32],
    out: &mut SqlWriter,
) -> Result<(), NativeError> {
    let list = extensions.to_vec();
    let what = "reading privileges changed on extensions' members";
    let changes = read_rows(client, &changes_sql(), &[&list], what, |row| {
        Ok(MemberChange {
            object_type: row.try_get(0)?,
            identity: row.try_get(1)?,
            revoke: row.try_get(2)?,
            grantee: row.try_get(3)?,
            privileges: row.try_get(4)?,
            grantable: row.try_get(5)?,
        })
    })
    .await?;
    for change in &changes {
        out.text(&statements(change)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(object_type: &str, revoke: bool, privileges: &str, grantable: &str) -> MemberChange {
        MemberChange {
            object_type: object_type.into(),
            identity: "public.similarity(text,text)".into(),
            revoke,
            grantee: Some("nat_reader".into()),
            privileges: privileges.into(),
            grantable: grantable.into(),
        }
    }

    #[test]
    fn an_added_item_is_granted_with_and_without_grant_option() {
        assert_eq!(
            statements(&change("function", false, "EXECUTE", "")),
            "GRANT EXECUTE ON FUNCTION public.similarity(text,text) TO nat_reader;\n"
        );
        let mut both = change("table", false, "SELECT", "UPDATE");
        both.identity = "app.cfg".into();
        assert_eq!(
            statements(&both),
            "GRANT SELECT ON TABLE app.cfg TO nat_reader;\n\
             GRANT UPDATE ON TABLE app.cfg TO nat_reader WITH GRANT OPTION;\n"
        );
    }

    #[test]
    fn a_removed_item_is_revoked_from_its_grantee_or_public() {
        let mut public = change("sequence", true, "SELECT, USAGE", "");
        public.grantee = None;
        public.identity = "app.cfg_seq".into();
        assert_eq!(
            statements(&public),
            "REVOKE SELECT, USAGE ON SEQUENCE app.cfg_seq FROM PUBLIC;\n"
        );
    }

    #[test]
    fn each_member_type_has_its_keyword() {
        for (object_type, expected) in [
            ("view", Some("TABLE")),
            ("aggregate", Some("FUNCTION")),
            ("procedure", Some("PROCEDURE")),
            ("domain", Some("TYPE")),
            ("composite type", Some("TYPE")),
            ("foreign-data wrapper", Some("FOREIGN DATA WRAPPER")),
            ("server", Some("FOREIGN SERVER")),
            ("operator", None),
        ] {
            assert_eq!(keyword(object_type), expected, "{object_type}");
        }
        assert_eq!(statements(&change("operator", false, "USAGE", "")), "");
    }

    #[test]
    fn the_query_diffs_each_item_against_the_creation() {
        let sql = changes_sql();
        assert!(sql.contains("d.refobjid = ANY($1)"), "{sql}");
        assert!(sql.contains("WHERE NOT b.item = ANY(m.acl)"));
        assert!(sql.contains("WHERE NOT a.item = ANY(m.base)"));
        assert!(sql.contains("ORDER BY m.classid, m.objid, k.revoke DESC"));
        assert!(!sql.contains("  "), "{sql}");
    }
}
