//! The `public` schema, which initdb makes and a dump cannot create: only what differs from
//! initdb's on the server's major is written, as pg_dump 18 does (its owner, its comment, its
//! privileges), so that the restore's `public` is the source's. initdb's `public`: owned by
//! `pg_database_owner` with `{pg_database_owner=UC/pg_database_owner,=U/pg_database_owner}`
//! from 15 on; before 15, owned by the bootstrap superuser (oid 10) with
//! `{owner=UC/owner,=UC/owner}`; commented `standard public schema` on every major. A renamed
//! or dropped `public`, no ACL at all, or a privilege granted by a role other than its owner
//! is refused by the inventory.

use tokio_postgres::Client;

use super::ddl::{self, Grant};
use super::error::NativeError;
use super::objects::{self, read_rows};
use crate::server::ServerVersion;

/// The `public` schema's oid, the same on every major.
pub const PUBLIC_OID: u32 = 2200;

/// The comment initdb gives `public`.
const DEFAULT_COMMENT: &str = "standard public schema";

/// The owner initdb gives `public` on `version`, as an `oid` expression.
pub fn default_owner_sql(version: ServerVersion) -> &'static str {
    match version.num() >= 150000 {
        true => "'pg_database_owner'::pg_catalog.regrole::pg_catalog.oid",
        false => "10::pg_catalog.oid",
    }
}

/// The privileges initdb gives `public` on `version`, in its ACL's order, once owned by
/// `owner` (`ALTER SCHEMA ... OWNER TO` puts the new owner in the old one's place).
pub fn default_grants(version: ServerVersion, owner: &str) -> Vec<Grant> {
    let grant = |grantee: Option<&str>, privilege: &str| Grant {
        grantee: grantee.map(String::from),
        privilege: privilege.into(),
        grantable: false,
    };
    let mut grants = vec![
        grant(Some(owner), "USAGE"),
        grant(Some(owner), "CREATE"),
        grant(None, "USAGE"),
    ];
    if version.num() < 150000 {
        grants.push(grant(None, "CREATE"));
    }
    grants
}

/// The state of the source's `public` schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicSchema {
    /// Its quoted owner.
    pub owner: String,
    /// Whether that owner is initdb's.
    pub default_owner: bool,
    /// Its comment as a literal (`'...'` or `NULL`) where it is not initdb's.
    pub comment: Option<String>,
    /// Its privileges, in its ACL's order.
    pub grants: Vec<Grant>,
}

/// The statements that make a fresh database's `public` the same as `source`: the owner
/// first (it renames the owner in the ACL), the comment, and the privileges when they differ
/// from initdb's (all revoked, then granted again in the source's order).
pub fn statements(version: ServerVersion, source: &PublicSchema) -> String {
    let mut sql = String::new();
    if !source.default_owner {
        sql.push_str(&format!("ALTER SCHEMA public OWNER TO {};\n", source.owner));
    }
    if let Some(comment) = &source.comment {
        sql.push_str(&format!("COMMENT ON SCHEMA public IS {comment};\n"));
    }
    if source.grants != default_grants(version, &source.owner) {
        sql.push_str(&ddl::privileges(
            "SCHEMA",
            "public",
            &source.owner,
            &source.grants,
        ));
    }
    if !sql.is_empty() {
        sql.push('\n');
    }
    sql
}

/// Reads the `public` schema of the database: its owner, whether initdb's, and its comment
/// where it is not initdb's.
pub fn public_schema_sql(version: ServerVersion) -> String {
    format!(
        "SELECT pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(n.nspowner)), \
         n.nspowner = {owner}, \
         CASE WHEN pg_catalog.obj_description(n.oid, 'pg_namespace') \
           IS DISTINCT FROM '{DEFAULT_COMMENT}' THEN coalesce(pg_catalog.quote_literal( \
           pg_catalog.obj_description(n.oid, 'pg_namespace')), 'NULL') END \
         FROM pg_catalog.pg_namespace n WHERE n.oid = {PUBLIC_OID}",
        owner = default_owner_sql(version),
    )
}

/// The statements that give the restore the source's `public` schema (see [`statements`]);
/// nothing when the database has none (the inventory refused it).
pub async fn export(client: &Client, version: ServerVersion) -> Result<String, NativeError> {
    let rows = read_rows(
        client,
        &public_schema_sql(version),
        &[],
        "reading the public schema",
        |row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)),
    )
    .await?;
    let Some((owner, default_owner, comment)) = rows.into_iter().next() else {
        return Ok(String::new());
    };
    let grants = objects::grants(client, "pg_namespace", &[PUBLIC_OID])
        .await?
        .remove(&PUBLIC_OID)
        .unwrap_or_default();
    Ok(statements(
        version,
        &PublicSchema {
            owner,
            default_owner,
            comment,
            grants,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V14: ServerVersion = ServerVersion(140010);
    const V15: ServerVersion = ServerVersion(150000);

    fn initdb_made(version: ServerVersion) -> PublicSchema {
        let owner = match version.num() >= 150000 {
            true => "pg_database_owner",
            false => "postgres",
        };
        PublicSchema {
            owner: owner.into(),
            default_owner: true,
            comment: None,
            grants: default_grants(version, owner),
        }
    }

    #[test]
    fn initdbs_public_schema_writes_nothing() {
        assert_eq!(statements(V14, &initdb_made(V14)), "");
        assert_eq!(statements(V15, &initdb_made(V15)), "");
        // 15's ACL on a 14 server is a change (CREATE revoked from PUBLIC), and back.
        let mut hardened = initdb_made(V14);
        hardened.grants = default_grants(V15, "postgres");
        assert_eq!(
            statements(V14, &hardened),
            "REVOKE ALL ON SCHEMA public FROM PUBLIC;\n\
             REVOKE ALL ON SCHEMA public FROM postgres;\n\
             GRANT USAGE ON SCHEMA public TO postgres;\n\
             GRANT CREATE ON SCHEMA public TO postgres;\n\
             GRANT USAGE ON SCHEMA public TO PUBLIC;\n\n"
        );
        let mut opened = initdb_made(V15);
        opened.grants = default_grants(V14, "pg_database_owner");
        assert!(statements(V15, &opened).ends_with("GRANT CREATE ON SCHEMA public TO PUBLIC;\n\n"));
    }

    #[test]
    fn a_new_owner_comes_first_and_its_default_acl_follows_it() {
        let moved = PublicSchema {
            owner: "\"Nat Owner\"".into(),
            default_owner: false,
            comment: Some("'it''s ours'".into()),
            grants: default_grants(V15, "\"Nat Owner\""),
        };
        assert_eq!(
            statements(V15, &moved),
            "ALTER SCHEMA public OWNER TO \"Nat Owner\";\n\
             COMMENT ON SCHEMA public IS 'it''s ours';\n\n"
        );
        let uncommented = PublicSchema {
            comment: Some("NULL".into()),
            grants: Vec::new(),
            ..initdb_made(V14)
        };
        assert_eq!(
            statements(V14, &uncommented),
            "COMMENT ON SCHEMA public IS NULL;\n\
             REVOKE ALL ON SCHEMA public FROM PUBLIC;\n\
             REVOKE ALL ON SCHEMA public FROM postgres;\n\n"
        );
    }

    #[test]
    fn the_default_owner_differs_at_15() {
        assert!(default_owner_sql(V15).contains("pg_database_owner"));
        assert_eq!(default_owner_sql(V14), "10::pg_catalog.oid");
        assert!(public_schema_sql(V14).contains("n.nspowner = 10::pg_catalog.oid"));
        assert!(public_schema_sql(V15).contains("'standard public schema'"));
        assert_eq!(default_grants(V14, "o").len(), 4);
        assert_eq!(default_grants(V15, "o").len(), 3);
    }
}
