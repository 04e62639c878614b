//! What changes how tables behave, written after their data: row-level security (the tables'
//! `ENABLE` / `FORCE ROW LEVEL SECURITY` flags and their policies) and rules; and the default
//! privileges, written last of all so that no object of the restore takes them.
//!
//! The data goes in before any of it: the restore's `COPY` meets neither a policy nor a rule.

use tokio_postgres::Client;

use super::ddl::Grant;
use super::error::{query, NativeError};
use super::inventory::Inventory;
use super::objects;
use super::output::SqlWriter;

/// A policy of a table (`pg_policy`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Quoted name.
    pub name: String,
    /// Quoted, qualified table.
    pub table: String,
    /// `AS PERMISSIVE` (the default) or `AS RESTRICTIVE`.
    pub permissive: bool,
    /// `polcmd`: `*` (ALL), `r` (SELECT), `a` (INSERT), `w` (UPDATE), `d` (DELETE).
    pub command: String,
    /// Quoted role names, in the catalog's order; `PUBLIC` for the public pseudo-role.
    pub roles: Vec<String>,
    /// `pg_get_expr` of the USING expression.
    pub using: Option<String>,
    /// `pg_get_expr` of the WITH CHECK expression.
    pub with_check: Option<String>,
}

/// `CREATE POLICY` with every clause spelled out.
pub fn create_policy(policy: &Policy) -> String {
    let command = match policy.command.as_str() {
        "r" => "SELECT",
        "a" => "INSERT",
        "w" => "UPDATE",
        "d" => "DELETE",
        _ => "ALL",
    };
    let mut sql = format!(
        "CREATE POLICY {} ON {} AS {} FOR {command} TO {}",
        policy.name,
        policy.table,
        match policy.permissive {
            true => "PERMISSIVE",
            false => "RESTRICTIVE",
        },
        match policy.roles.is_empty() {
            true => "PUBLIC".to_string(),
            false => policy.roles.join(", "),
        }
    );
    if let Some(using) = &policy.using {
        sql.push_str(&format!(" USING ({using})"));
    }
    if let Some(check) = &policy.with_check {
        sql.push_str(&format!(" WITH CHECK ({check})"));
    }
    sql.push_str(";\n");
    sql
}

/// The row-level security flags of a table, as `ALTER TABLE` statements (none when off).
pub fn row_security(table: &str, enabled: bool, forced: bool) -> String {
    let mut sql = String::new();
    if enabled {
        sql.push_str(&format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n"));
    }
    if forced {
        sql.push_str(&format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY;\n"));
    }
    sql
}

/// The policies of `list`, in oid order.
const POLICIES_SQL: &str = "SELECT pg_catalog.quote_ident(p.polname), \
    p.polrelid::pg_catalog.regclass::text, p.polpermissive, p.polcmd::text, \
    ARRAY(SELECT CASE WHEN r.role = 0 THEN 'PUBLIC' \
            ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(r.role)) END \
          FROM pg_catalog.unnest(p.polroles) WITH ORDINALITY r(role, n) ORDER BY r.n), \
    pg_catalog.pg_get_expr(p.polqual, p.polrelid), \
    pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) \
    FROM pg_catalog.pg_policy p WHERE p.oid = ANY($1) ORDER BY p.oid";

/// The tables of `list` with row-level security on or forced, in oid order.
const ROW_SECURITY_SQL: &str = "SELECT c.oid::pg_catalog.regclass::text, c.relrowsecurity, \
    c.relforcerowsecurity FROM pg_catalog.pg_class c \
    WHERE c.oid = ANY($1) AND (c.relrowsecurity OR c.relforcerowsecurity) ORDER BY c.oid";

/// The rules of `list` (`pg_get_ruledef`, ending in `;`), in oid order.
const RULES_SQL: &str = "SELECT pg_catalog.pg_get_ruledef(r.oid) FROM pg_catalog.pg_rewrite r \
    WHERE r.oid = ANY($1) ORDER BY r.oid";

/// `COMMENT ON POLICY` and `COMMENT ON RULE` of the policies `$1` and rules `$2`.
const COMMENTS_SQL: &str = "SELECT pg_catalog.format('COMMENT ON POLICY %I ON %s IS %L;', \
      p.polname, p.polrelid::pg_catalog.regclass, d.description) \
    FROM pg_catalog.pg_description d JOIN pg_catalog.pg_policy p ON p.oid = d.objoid \
    WHERE d.classoid = 'pg_catalog.pg_policy'::pg_catalog.regclass AND p.oid = ANY($1) \
    UNION ALL SELECT pg_catalog.format('COMMENT ON RULE %I ON %s IS %L;', \
      r.rulename, r.ev_class::pg_catalog.regclass, d.description) \
    FROM pg_catalog.pg_description d JOIN pg_catalog.pg_rewrite r ON r.oid = d.objoid \
    WHERE d.classoid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND r.oid = ANY($2)";

/// Writes, after the data: the tables' row-level security flags, their policies, the rules,
/// and the comments of policies and rules.
pub async fn after_data(
    client: &Client,
    inventory: &Inventory,
    out: &mut SqlWriter,
) -> Result<(), NativeError> {
    let tables: Vec<u32> = ["table", "partitioned table"]
        .iter()
        .flat_map(|kind| inventory.oids(kind))
        .collect();
    let what = "reading the tables' row-level security";
    for row in client
        .query(ROW_SECURITY_SQL, &[&tables])
        .await
        .map_err(query(what))?
    {
        let table: String = row.try_get(0).map_err(query(what))?;
        let enabled = row.try_get(1).map_err(query(what))?;
        let forced = row.try_get(2).map_err(query(what))?;
        out.text(&row_security(&table, enabled, forced)).await?;
    }
    let policies = inventory.oids("policy");
    let what = "reading policies";
    for row in client
        .query(POLICIES_SQL, &[&policies])
        .await
        .map_err(query(what))?
    {
        let policy = Policy {
            name: row.try_get(0).map_err(query(what))?,
            table: row.try_get(1).map_err(query(what))?,
            permissive: row.try_get(2).map_err(query(what))?,
            command: row.try_get(3).map_err(query(what))?,
            roles: row.try_get(4).map_err(query(what))?,
            using: row.try_get(5).map_err(query(what))?,
            with_check: row.try_get(6).map_err(query(what))?,
        };
        out.text(&create_policy(&policy)).await?;
    }
    let rules = inventory.oids("rule");
    let what = "reading rules";
    for row in client
        .query(RULES_SQL, &[&rules])
        .await
        .map_err(query(what))?
    {
        let definition: String = row.try_get(0).map_err(query(what))?;
        out.text(&format!("{}\n", definition.trim_end())).await?;
    }
    let what = "reading the comments of policies and rules";
    for row in client
        .query(COMMENTS_SQL, &[&policies, &rules])
        .await
        .map_err(query(what))?
    {
        let comment: String = row.try_get(0).map_err(query(what))?;
        out.text(&format!("{comment}\n")).await?;
    }
    Ok(())
}

/// A default ACL (`pg_default_acl`): whose, where, for which objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultAcl {
    /// Quoted role whose new objects take it.
    pub role: String,
    /// Quoted schema; `None` for every schema.
    pub schema: Option<String>,
    /// `defaclobjtype`: `r`, `S`, `f`, `T`, `n` (schemas), `L` (large objects, 18+).
    pub object_type: String,
    /// Its privileges, in the ACL's order.
    pub grants: Vec<Grant>,
}

/// `ALTER DEFAULT PRIVILEGES` that make the same ACL: everything revoked (from PUBLIC and the
/// role: a global entry then holds an empty ACL, a schema's none), then each privilege granted
/// in the ACL's order, so that the array is the same.
pub fn default_privileges(acl: &DefaultAcl) -> String {
    let objects = match acl.object_type.as_str() {
        "r" => "TABLES",
        "S" => "SEQUENCES",
        "f" => "FUNCTIONS",
        "T" => "TYPES",
        "n" => "SCHEMAS",
        _ => "LARGE OBJECTS",
    };
    let prefix = match &acl.schema {
        Some(schema) => format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {schema}",
            acl.role
        ),
        None => format!("ALTER DEFAULT PRIVILEGES FOR ROLE {}", acl.role),
    };
    let mut sql = format!(
        "{prefix} REVOKE ALL ON {objects} FROM PUBLIC;\n{prefix} REVOKE ALL ON {objects} FROM {};\n",
        acl.role
    );
    for grant in &acl.grants {
        sql.push_str(&format!(
            "{prefix} GRANT {} ON {objects} TO {}{};\n",
            grant.privilege,
            grant.grantee.as_deref().unwrap_or("PUBLIC"),
            match grant.grantable {
                true => " WITH GRANT OPTION",
                false => "",
            }
        ));
    }
    sql
}

/// The default ACLs of `list`, in oid order.
const DEFAULT_ACLS_SQL: &str = "SELECT d.oid, \
    pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(d.defaclrole)), \
    CASE WHEN d.defaclnamespace <> 0 THEN pg_catalog.quote_ident(n.nspname) END, \
    d.defaclobjtype::text FROM pg_catalog.pg_default_acl d \
    LEFT JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace \
    WHERE d.oid = ANY($1) ORDER BY d.oid";

/// Writes the default privileges: last of all, so that no object of the restore takes them.
pub async fn default_acls(
    client: &Client,
    inventory: &Inventory,
    out: &mut SqlWriter,
) -> Result<(), NativeError> {
    let list = inventory.oids("default acl");
    if list.is_empty() {
        return Ok(());
    }
    let mut grants = objects::grants(client, "pg_default_acl", &list).await?;
    let what = "reading default privileges";
    for row in client
        .query(DEFAULT_ACLS_SQL, &[&list])
        .await
        .map_err(query(what))?
    {
        let oid: u32 = row.try_get(0).map_err(query(what))?;
        let acl = DefaultAcl {
            role: row.try_get(1).map_err(query(what))?,
            schema: row.try_get(2).map_err(query(what))?,
            object_type: row.try_get(3).map_err(query(what))?,
            grants: grants.remove(&oid).unwrap_or_default(),
        };
        out.text(&default_privileges(&acl)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_spell_out_every_clause() {
        let mut policy = Policy {
            name: "\"Own rows\"".into(),
            table: "app.accounts".into(),
            permissive: true,
            command: "*".into(),
            roles: Vec::new(),
            using: Some("(owner = CURRENT_USER)".into()),
            with_check: None,
        };
        assert_eq!(
            create_policy(&policy),
            "CREATE POLICY \"Own rows\" ON app.accounts AS PERMISSIVE FOR ALL TO PUBLIC \
             USING ((owner = CURRENT_USER));\n"
        );
        policy.permissive = false;
        policy.command = "a".into();
        policy.roles = vec!["nat_reader".into(), "PUBLIC".into()];
        policy.using = None;
        policy.with_check = Some("(amount > 0)".into());
        assert_eq!(
            create_policy(&policy),
            "CREATE POLICY \"Own rows\" ON app.accounts AS RESTRICTIVE FOR INSERT \
             TO nat_reader, PUBLIC WITH CHECK ((amount > 0));\n"
        );
        for (command, word) in [("r", "SELECT"), ("w", "UPDATE"), ("d", "DELETE")] {
            policy.command = command.into();
            assert!(create_policy(&policy).contains(&format!(" FOR {word} TO ")));
        }
    }

    #[test]
    fn row_security_flags() {
        assert_eq!(row_security("public.t", false, false), "");
        assert_eq!(
            row_security("public.t", true, true),
            "ALTER TABLE public.t ENABLE ROW LEVEL SECURITY;\n\
             ALTER TABLE public.t FORCE ROW LEVEL SECURITY;\n"
        );
        assert_eq!(
            row_security("public.t", false, true),
            "ALTER TABLE public.t FORCE ROW LEVEL SECURITY;\n"
        );
    }

    #[test]
    fn default_privileges_replay_the_acl_in_order() {
        let acl = DefaultAcl {
            role: "nat_owner".into(),
            schema: Some("\"Odd Schema\"".into()),
            object_type: "r".into(),
            grants: vec![
                Grant {
                    grantee: Some("nat_reader".into()),
                    privilege: "SELECT".into(),
                    grantable: true,
                },
                Grant {
                    grantee: None,
                    privilege: "INSERT".into(),
                    grantable: false,
                },
            ],
        };
        let prefix = "ALTER DEFAULT PRIVILEGES FOR ROLE nat_owner IN SCHEMA \"Odd Schema\"";
        assert_eq!(
            default_privileges(&acl),
            format!(
                "{prefix} REVOKE ALL ON TABLES FROM PUBLIC;\n\
                 {prefix} REVOKE ALL ON TABLES FROM nat_owner;\n\
                 {prefix} GRANT SELECT ON TABLES TO nat_reader WITH GRANT OPTION;\n\
                 {prefix} GRANT INSERT ON TABLES TO PUBLIC;\n"
            )
        );
        for (code, objects) in [
            ("S", "SEQUENCES"),
            ("f", "FUNCTIONS"),
            ("T", "TYPES"),
            ("n", "SCHEMAS"),
            ("L", "LARGE OBJECTS"),
        ] {
            let global = DefaultAcl {
                schema: None,
                object_type: code.into(),
                grants: Vec::new(),
                ..acl.clone()
            };
            assert_eq!(
                default_privileges(&global),
                format!(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE nat_owner REVOKE ALL ON {objects} FROM PUBLIC;\n\
                     ALTER DEFAULT PRIVILEGES FOR ROLE nat_owner REVOKE ALL ON {objects} FROM nat_owner;\n"
                )
            );
        }
    }
}
