//! `--native`'s globals file, `pg_globals_<stamp>.sql`, written without pg_dumpall: roles
//! (attributes, password hashes when readable, comments, `ALTER ROLE .. SET`), role memberships
//! (ADMIN OPTION and `GRANTED BY`; INHERIT and SET on 16+) and tablespaces (owner, location,
//! options, ACL, comment). The SQL of each read is built per server version by pure functions,
//! and the file by [`globals_script`], both unit-tested without a server.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use tokio_postgres::Client;

use super::catalog::CatalogError;
use super::createdb::{acl_commands, set_clause, CreatedbError};
use crate::native::NATIVE_GLOBALS_HEADER;
use crate::server::{quote_ident, quote_literal, ServerVersion};

/// One role, as `pg_authid` (or `pg_roles` without passwords) has it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Role {
    pub name: String,
    pub superuser: bool,
    pub inherit: bool,
    pub create_role: bool,
    pub create_db: bool,
    pub login: bool,
    pub replication: bool,
    pub bypass_rls: bool,
    /// -1 is unlimited.
    pub connection_limit: i32,
    /// The stored hash (`SCRAM-SHA-256$...`, `md5...`), when read.
    pub password: Option<String>,
    /// `rolvaliduntil` as ISO text in UTC, or `infinity`.
    pub valid_until: Option<String>,
    pub comment: Option<String>,
    /// `name=value` entries of `ALTER ROLE .. SET` (every database).
    pub settings: Vec<String>,
}

/// One row of `pg_auth_members`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub role: String,
    pub member: String,
    /// `None` when the grantor role no longer exists (or was never recorded).
    pub grantor: Option<String>,
    pub admin: bool,
    /// 16+: the INHERIT and SET options; `None` before 16.
    pub inherit_set: Option<(bool, bool)>,
}

/// One user tablespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tablespace {
    pub name: String,
    pub owner: String,
    pub location: String,
    /// `spcoptions` entries (`seq_page_cost=2`).
    pub options: Vec<String>,
    /// `spcacl` as text items; `None` means the default privileges.
    pub acl: Option<Vec<String>>,
    pub comment: Option<String>,
}

/// Everything the globals file holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Globals {
    pub roles: Vec<Role>,
    pub memberships: Vec<Membership>,
    pub tablespaces: Vec<Tablespace>,
}

/// The roles (predefined `pg_*` roles left out). With passwords, `pg_authid` (superuser only);
/// without, `pg_roles`, as `pg_dumpall --no-role-passwords` does.
fn roles_query(with_passwords: bool) -> String {
    let (table, password) = match with_passwords {
        true => ("pg_catalog.pg_authid", "r.rolpassword"),
        false => ("pg_catalog.pg_roles", "NULL::text"),
    };
    format!(
        "SELECT r.rolname::text, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, \
         r.rolcanlogin, r.rolreplication, r.rolbypassrls, r.rolconnlimit, {password}, \
         CASE WHEN r.rolvaliduntil IS NULL THEN NULL \
         WHEN r.rolvaliduntil = 'infinity' THEN 'infinity' \
         ELSE pg_catalog.to_char(r.rolvaliduntil AT TIME ZONE 'UTC', \
         'YYYY-MM-DD HH24:MI:SS.US') || '+00' END, \
         pg_catalog.shobj_description(r.oid, 'pg_authid'), \
         (SELECT s.setconfig FROM pg_catalog.pg_db_role_setting s \
          WHERE s.setrole = r.oid AND s.setdatabase = 0) \
         FROM {table} r WHERE r.rolname !~ '^pg_' ORDER BY 1"
    )
}

/// The memberships, but those of a predefined role in another; INHERIT and SET on 16+.
fn memberships_query(version: ServerVersion) -> String {
    let options = match version.num() >= 160_000 {
        true => "a.inherit_option, a.set_option",
        false => "NULL::bool, NULL::bool",
    };
    format!(
        "SELECT ur.rolname::text, um.rolname::text, ug.rolname::text, a.admin_option, {options} \
         FROM pg_catalog.pg_auth_members a \
         JOIN pg_catalog.pg_roles ur ON ur.oid = a.roleid \
         JOIN pg_catalog.pg_roles um ON um.oid = a.member \
         LEFT JOIN pg_catalog.pg_roles ug ON ug.oid = a.grantor \
         WHERE NOT (ur.rolname ~ '^pg_' AND um.rolname ~ '^pg_') ORDER BY 1, 2, 3"
    )
}

/// The tablespaces but `pg_default` and `pg_global`.
const TABLESPACES: &str = "SELECT t.spcname::text, pg_catalog.pg_get_userbyid(t.spcowner)::text, \
     pg_catalog.pg_tablespace_location(t.oid), t.spcoptions, t.spcacl::text[], \
     pg_catalog.shobj_description(t.oid, 'pg_tablespace') \
     FROM pg_catalog.pg_tablespace t WHERE t.spcname !~ '^pg_' ORDER BY 1";

/// What the native globals do not reproduce yet, so that its presence fails the globals file
/// rather than being left out silently: (the first major that has it, a count, what it is).
const NOT_WRITTEN: [(u32, &str, &str); 2] = [
    (
        150_000,
        "SELECT count(*) FROM pg_catalog.pg_parameter_acl",
        "privileges on configuration parameters (GRANT ON PARAMETER), which \
         --native does not write yet",
    ),
    (
        0,
        "SELECT count(*) FROM pg_catalog.pg_shseclabel",
        "security labels on roles, tablespaces or databases, which --native does not write yet",
    ),
];

fn reading(what: &'static str) -> impl Fn(tokio_postgres::Error) -> CatalogError {
    move |source| CatalogError::Query { what, source }
}

/// Reads the globals; role passwords only when `with_passwords` (the caller checks superuser).
pub async fn read_globals(
    client: &Client,
    version: ServerVersion,
    with_passwords: bool,
) -> Result<Globals, CatalogError> {
    for (since, sql, what) in NOT_WRITTEN {
        if version.num() < since {
            continue;
        }
        let reading = reading("reading what the globals cannot write");
        let count: i64 = client
            .query_one(sql, &[])
            .await
            .map_err(&reading)?
            .try_get(0)
            .map_err(&reading)?;
        if count > 0 {
            return Err(CatalogError::Value {
                what,
                value: count.to_string(),
            });
        }
    }
    let what = reading("reading roles");
    let mut roles = Vec::new();
    for row in client
        .query(&roles_query(with_passwords), &[])
        .await
        .map_err(&what)?
    {
        roles.push(Role {
            name: row.try_get(0).map_err(&what)?,
            superuser: row.try_get(1).map_err(&what)?,
            inherit: row.try_get(2).map_err(&what)?,
            create_role: row.try_get(3).map_err(&what)?,
            create_db: row.try_get(4).map_err(&what)?,
            login: row.try_get(5).map_err(&what)?,
            replication: row.try_get(6).map_err(&what)?,
            bypass_rls: row.try_get(7).map_err(&what)?,
            connection_limit: row.try_get(8).map_err(&what)?,
            password: row.try_get(9).map_err(&what)?,
            valid_until: row.try_get(10).map_err(&what)?,
            comment: row.try_get(11).map_err(&what)?,
            settings: row
                .try_get::<_, Option<Vec<String>>>(12)
                .map_err(&what)?
                .unwrap_or_default(),
        });
    }
    let what = reading("reading role memberships");
    let mut memberships = Vec::new();
    for row in client
        .query(&memberships_query(version), &[])
        .await
        .map_err(&what)?
    {
        let inherit: Option<bool> = row.try_get(4).map_err(&what)?;
        let set: Option<bool> = row.try_get(5).map_err(&what)?;
        memberships.push(Membership {
            role: row.try_get(0).map_err(&what)?,
            member: row.try_get(1).map_err(&what)?,
            grantor: row.try_get(2).map_err(&what)?,
            admin: row.try_get(3).map_err(&what)?,
            inherit_set: inherit.zip(set),
        });
    }
    let what = reading("reading tablespaces");
    let mut tablespaces = Vec::new();
    for row in client.query(TABLESPACES, &[]).await.map_err(&what)? {
        tablespaces.push(Tablespace {
            name: row.try_get(0).map_err(&what)?,
            owner: row.try_get(1).map_err(&what)?,
            location: row.try_get(2).map_err(&what)?,
            options: row
                .try_get::<_, Option<Vec<String>>>(3)
                .map_err(&what)?
                .unwrap_or_default(),
            acl: row.try_get(4).map_err(&what)?,
            comment: row.try_get(5).map_err(&what)?,
        });
    }
    Ok(Globals {
        roles,
        memberships,
        tablespaces,
    })
}

/// `ALTER ROLE x WITH ...` attributes, in pg_dumpall's words and order.
fn role_attributes(role: &Role) -> String {
    let flag = |on: bool, yes: &str, no: &str| if on { yes } else { no }.to_string();
    let mut words = vec![
        flag(role.superuser, "SUPERUSER", "NOSUPERUSER"),
        flag(role.inherit, "INHERIT", "NOINHERIT"),
        flag(role.create_role, "CREATEROLE", "NOCREATEROLE"),
        flag(role.create_db, "CREATEDB", "NOCREATEDB"),
        flag(role.login, "LOGIN", "NOLOGIN"),
        flag(role.replication, "REPLICATION", "NOREPLICATION"),
        flag(role.bypass_rls, "BYPASSRLS", "NOBYPASSRLS"),
    ];
    if role.connection_limit != -1 {
        words.push(format!("CONNECTION LIMIT {}", role.connection_limit));
    }
    if let Some(password) = &role.password {
        words.push(format!("PASSWORD {}", quote_literal(password)));
    }
    if let Some(until) = &role.valid_until {
        words.push(format!("VALID UNTIL {}", quote_literal(until)));
    }
    words.join(" ")
}

/// `GRANT role TO member WITH ...`: ADMIN, and on 16+ INHERIT and SET, each explicit.
fn grant_role(m: &Membership) -> String {
    let mut out = format!(
        "GRANT {} TO {}",
        quote_ident(&m.role),
        quote_ident(&m.member)
    );
    match m.inherit_set {
        Some((inherit, set)) => {
            let _ = write!(
                out,
                " WITH ADMIN {}, INHERIT {}, SET {}",
                bool_word(m.admin),
                bool_word(inherit),
                bool_word(set)
            );
        }
        None if m.admin => out.push_str(" WITH ADMIN OPTION"),
        None => {}
    }
    if let Some(grantor) = &m.grantor {
        let _ = write!(out, " GRANTED BY {}", quote_ident(grantor));
    }
    out.push_str(";\n");
    out
}

fn bool_word(value: bool) -> &'static str {
    match value {
        true => "TRUE",
        false => "FALSE",
    }
}

/// The memberships in an order each can be granted in: a grant whose grantor is neither a
/// superuser nor already holding ADMIN on the role (granted earlier) waits, as pg_dumpall's
/// passes do. What can never be ordered keeps its place at the end.
fn ordered_memberships(globals: &Globals) -> Vec<&Membership> {
    let superusers: BTreeSet<&str> = globals
        .roles
        .iter()
        .filter(|r| r.superuser)
        .map(|r| r.name.as_str())
        .collect();
    let mut admins: BTreeSet<(&str, &str)> = BTreeSet::new();
    let mut pending: Vec<&Membership> = globals.memberships.iter().collect();
    let mut ordered = Vec::new();
    loop {
        let (ready, waiting): (Vec<&Membership>, Vec<&Membership>) =
            pending.into_iter().partition(|m| match &m.grantor {
                None => true,
                Some(g) => {
                    superusers.contains(g.as_str()) || admins.contains(&(&m.role, g.as_str()))
                }
            });
        pending = waiting;
        if ready.is_empty() {
            ordered.extend(pending);
            return ordered;
        }
        for m in ready {
            if m.admin {
                admins.insert((&m.role, &m.member));
            }
            ordered.push(m);
        }
    }
}

/// The whole globals file: roles (each `CREATE ROLE`, then `ALTER ROLE` with its attributes,
/// as pg_dumpall writes them, so that an existing role gets them too), their comments and
/// settings, the memberships, then the tablespaces.
pub fn globals_script(globals: &Globals) -> Result<String, CreatedbError> {
    let mut out = format!(
        "{NATIVE_GLOBALS_HEADER}\n\nSET default_transaction_read_only = off;\n\
         SET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\n\n"
    );
    for role in &globals.roles {
        let name = quote_ident(&role.name);
        let _ = writeln!(out, "CREATE ROLE {name};");
        let _ = writeln!(out, "ALTER ROLE {name} WITH {};", role_attributes(role));
        if let Some(comment) = &role.comment {
            let _ = writeln!(out, "COMMENT ON ROLE {name} IS {};", quote_literal(comment));
        }
    }
    out.push('\n');
    for role in &globals.roles {
        for entry in &role.settings {
            let clause = set_clause(entry)?;
            let _ = writeln!(out, "ALTER ROLE {} SET {clause};", quote_ident(&role.name));
        }
    }
    out.push('\n');
    for membership in ordered_memberships(globals) {
        out.push_str(&grant_role(membership));
    }
    out.push('\n');
    for space in &globals.tablespaces {
        let name = quote_ident(&space.name);
        let _ = writeln!(
            out,
            "CREATE TABLESPACE {name} OWNER {} LOCATION {};",
            quote_ident(&space.owner),
            quote_literal(&space.location)
        );
        if !space.options.is_empty() {
            let _ = writeln!(
                out,
                "ALTER TABLESPACE {name} SET ({});",
                space.options.join(", ")
            );
        }
        if let Some(acl) = &space.acl {
            acl_commands(&mut out, &format!("TABLESPACE {name}"), &space.owner, acl)?;
        }
        if let Some(comment) = &space.comment {
            let _ = writeln!(
                out,
                "COMMENT ON TABLESPACE {name} IS {};",
                quote_literal(comment)
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_per_version_and_password_source() {
        assert!(roles_query(true).contains("FROM pg_catalog.pg_authid r"));
        assert!(roles_query(true).contains("r.rolpassword"));
        assert!(roles_query(false).contains("FROM pg_catalog.pg_roles r"));
        assert!(!roles_query(false).contains("rolpassword"));
        assert!(memberships_query(ServerVersion(160_000)).contains("a.inherit_option"));
        assert!(!memberships_query(ServerVersion(150_004)).contains("inherit_option"));
    }

    fn role(name: &str) -> Role {
        Role {
            name: name.into(),
            inherit: true,
            connection_limit: -1,
            ..Default::default()
        }
    }

    #[test]
    fn roles_with_attributes_passwords_comments_and_settings() {
        let mut app = role("App\"User");
        app.login = true;
        app.connection_limit = 5;
        app.password = Some("SCRAM-SHA-256$4096:salt$k:s".into());
        app.valid_until = Some("2030-01-01 00:00:00.000000+00".into());
        app.comment = Some("it's".into());
        app.settings = vec!["search_path=app, \"$user\"".into(), "work_mem=8MB".into()];
        let mut admin = role("admin");
        admin.superuser = true;
        admin.inherit = false;
        let sql = globals_script(&Globals {
            roles: vec![app, admin],
            ..Default::default()
        })
        .unwrap();
        for line in [
            "CREATE ROLE \"App\"\"User\";",
            "ALTER ROLE \"App\"\"User\" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN \
             NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 5 PASSWORD 'SCRAM-SHA-256$4096:salt$k:s' \
             VALID UNTIL '2030-01-01 00:00:00.000000+00';",
            "COMMENT ON ROLE \"App\"\"User\" IS 'it''s';",
            "ALTER ROLE \"admin\" WITH SUPERUSER NOINHERIT NOCREATEROLE NOCREATEDB NOLOGIN \
             NOREPLICATION NOBYPASSRLS;",
            "ALTER ROLE \"App\"\"User\" SET \"search_path\" TO 'app', '$user';",
            "ALTER ROLE \"App\"\"User\" SET \"work_mem\" TO '8MB';",
        ] {
            assert!(sql.lines().any(|l| l == line), "{line}\nnot in\n{sql}");
        }
    }

    #[test]
    fn memberships_before_and_from_16_in_an_order_they_can_be_granted() {
        let mut boss = role("boss");
        boss.superuser = true;
        let globals = Globals {
            roles: vec![boss, role("lead"), role("dev"), role("team")],
            memberships: vec![
                // Granted by lead, who holds ADMIN on team only through the grant below.
                Membership {
                    role: "team".into(),
                    member: "dev".into(),
                    grantor: Some("lead".into()),
                    admin: false,
                    inherit_set: Some((false, true)),
                },
                Membership {
                    role: "team".into(),
                    member: "lead".into(),
                    grantor: Some("boss".into()),
                    admin: true,
                    inherit_set: Some((true, false)),
                },
            ],
            ..Default::default()
        };
        let sql = globals_script(&globals).unwrap();
        let first = "GRANT \"team\" TO \"lead\" WITH ADMIN TRUE, INHERIT TRUE, SET FALSE GRANTED BY \"boss\";";
        let second = "GRANT \"team\" TO \"dev\" WITH ADMIN FALSE, INHERIT FALSE, SET TRUE GRANTED BY \"lead\";";
        let (a, b) = (sql.find(first), sql.find(second));
        assert!(a.is_some() && b.is_some() && a < b, "{sql}");

        let old = Membership {
            role: "team".into(),
            member: "dev".into(),
            grantor: None,
            admin: true,
            inherit_set: None,
        };
        assert_eq!(
            grant_role(&old),
            "GRANT \"team\" TO \"dev\" WITH ADMIN OPTION;\n"
        );
        let plain = Membership {
            admin: false,
            ..old
        };
        assert_eq!(grant_role(&plain), "GRANT \"team\" TO \"dev\";\n");
    }

    #[test]
    fn tablespaces_with_owner_options_acl_and_comment() {
        let space = Tablespace {
            name: "fast disk".into(),
            owner: "app".into(),
            location: "/srv/it's".into(),
            options: vec!["seq_page_cost=2".into(), "random_page_cost=1.5".into()],
            acl: Some(vec!["app=C/app".into(), "dev=C*/app".into()]),
            comment: Some("ssd".into()),
        };
        let sql = globals_script(&Globals {
            tablespaces: vec![space],
            ..Default::default()
        })
        .unwrap();
        let tail: Vec<&str> = sql
            .lines()
            .skip_while(|l| !l.starts_with("CREATE TABLESPACE"))
            .collect();
        assert_eq!(
            tail,
            [
                "CREATE TABLESPACE \"fast disk\" OWNER \"app\" LOCATION '/srv/it''s';",
                "ALTER TABLESPACE \"fast disk\" SET (seq_page_cost=2, random_page_cost=1.5);",
                "REVOKE ALL ON TABLESPACE \"fast disk\" FROM PUBLIC;",
                "REVOKE ALL ON TABLESPACE \"fast disk\" FROM \"app\";",
                "GRANT CREATE ON TABLESPACE \"fast disk\" TO \"app\";",
                "GRANT CREATE ON TABLESPACE \"fast disk\" TO \"dev\" WITH GRANT OPTION;",
                "COMMENT ON TABLESPACE \"fast disk\" IS 'ssd';",
            ]
        );
    }
}
