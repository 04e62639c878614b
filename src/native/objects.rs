//! The catalog reads of a native export, typed: every query of the engine but the inventory's.
//! Each reads only the oids the inventory accepted, so nothing is exported that was not
//! inventoried. Names come back quoted by the server under the session's empty search_path.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::ddl::{Column, Grant, Identity, Sequence};
use super::error::{query, NativeError};
use crate::server::ServerVersion;

/// A schema, function, table, view or sequence: its name, owner and privileges.
#[derive(Clone, Debug)]
pub struct Owned {
    /// Its oid.
    pub oid: u32,
    /// Quoted (qualified) name, or a function's signature.
    pub name: String,
    /// Quoted owner.
    pub owner: String,
    /// Whether its ACL is set (not the default).
    pub has_acl: bool,
    /// Its definition, where the server writes it (functions, views, indexes).
    pub definition: String,
    /// A relation's `reloptions` (`name=value`); empty for the others.
    pub options: Vec<String>,
}

fn oids(list: &[u32]) -> Vec<u32> {
    list.to_vec()
}

/// Runs `sql` with `params` and turns each row into a `T`; errors say `what` was being read.
pub async fn read_rows<T>(
    client: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    what: &'static str,
    row_to: impl Fn(&tokio_postgres::Row) -> Result<T, tokio_postgres::Error>,
) -> Result<Vec<T>, NativeError> {
    let rows = client.query(sql, params).await.map_err(query(what))?;
    rows.iter()
        .map(|row| row_to(row).map_err(query(what)))
        .collect()
}

/// The text of each row of `sql` (one text column, `$1` the oids of `list`), concatenated:
/// for objects whose statements the server writes whole. Nothing is read for an empty list.
pub async fn statements(
    client: &Client,
    sql: &str,
    list: &[u32],
    what: &'static str,
) -> Result<String, NativeError> {
    if list.is_empty() {
        return Ok(String::new());
    }
    let texts = read_rows(client, sql, &[&oids(list)], what, |row| {
        row.try_get::<_, String>(0)
    })
    .await?;
    Ok(texts.concat())
}

async fn owned(
    client: &Client,
    sql: &str,
    list: &[u32],
    what: &'static str,
) -> Result<Vec<Owned>, NativeError> {
    read_rows(client, sql, &[&oids(list)], what, |row| {
        Ok(Owned {
            oid: row.try_get(0)?,
            name: row.try_get(1)?,
            owner: row.try_get(2)?,
            has_acl: row.try_get(3)?,
            definition: row.try_get::<_, Option<String>>(4)?.unwrap_or_default(),
            options: row.try_get(5)?,
        })
    })
    .await
}

/// Schemas, in oid order.
pub async fn schemas(client: &Client, list: &[u32]) -> Result<Vec<Owned>, NativeError> {
    let sql = "SELECT n.oid, pg_catalog.quote_ident(n.nspname), \
        pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(n.nspowner)), n.nspacl IS NOT NULL, ''::text, '{}'::text[] \
        FROM pg_catalog.pg_namespace n WHERE n.oid = ANY($1) ORDER BY n.oid";
    owned(client, sql, list, "reading schemas").await
}

/// Functions with their `pg_get_functiondef`, in oid order.
pub async fn functions(client: &Client, list: &[u32]) -> Result<Vec<Owned>, NativeError> {
    let sql = "SELECT p.oid, p.oid::pg_catalog.regprocedure::text, \
        pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(p.proowner)), p.proacl IS NOT NULL, \
        pg_catalog.pg_get_functiondef(p.oid), '{}'::text[] \
        FROM pg_catalog.pg_proc p WHERE p.oid = ANY($1) ORDER BY p.oid";
    owned(client, sql, list, "reading functions").await
}

/// Relations (tables, views, sequences, indexes): views with `pg_get_viewdef`, indexes with
/// `pg_get_indexdef`, in oid order.
pub async fn relations(client: &Client, list: &[u32]) -> Result<Vec<Owned>, NativeError> {
    let sql = "SELECT c.oid, c.oid::pg_catalog.regclass::text, \
        pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(c.relowner)), c.relacl IS NOT NULL, \
        CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) \
          WHEN c.relkind IN ('i', 'I') THEN pg_catalog.pg_get_indexdef(c.oid) ELSE '' END, \
        coalesce(c.reloptions, '{}') \
        FROM pg_catalog.pg_class c WHERE c.oid = ANY($1) ORDER BY c.oid";
    owned(client, sql, list, "reading relations").await
}

/// The privileges of objects of `catalog` (`pg_class`, `pg_proc`, `pg_namespace`), per oid, in
/// the ACL's order.
pub async fn grants(
    client: &Client,
    catalog: &str,
    list: &[u32],
) -> Result<HashMap<u32, Vec<Grant>>, NativeError> {
    let acl = match catalog {
        "pg_class" => "relacl",
        "pg_proc" => "proacl",
        "pg_type" => "typacl",
        "pg_default_acl" => "defaclacl",
        "pg_largeobject_metadata" => "lomacl",
        _ => "nspacl",
    };
    let sql = format!(
        "SELECT o.oid, CASE WHEN g.grantee = 0 THEN NULL \
           ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END, \
         g.privilege_type, g.is_grantable \
         FROM pg_catalog.{catalog} o \
         CROSS JOIN LATERAL pg_catalog.aclexplode(o.{acl}) WITH ORDINALITY \
           g(grantor, grantee, privilege_type, is_grantable, n) \
         WHERE o.oid = ANY($1) ORDER BY o.oid, g.n"
    );
    let what = "reading privileges";
    let rows = client
        .query(&sql, &[&oids(list)])
        .await
        .map_err(query(what))?;
    let mut map: HashMap<u32, Vec<Grant>> = HashMap::new();
    for row in rows {
        map.entry(row.try_get(0).map_err(query(what))?)
            .or_default()
            .push(Grant {
                grantee: row.try_get(1).map_err(query(what))?,
                privilege: row.try_get(2).map_err(query(what))?,
                grantable: row.try_get(3).map_err(query(what))?,
            });
    }
    Ok(map)
}

/// The columns of tables, in attnum order (dropped ones left out), with an identity's
/// sequence and a collation other than the type's; `attgenerated` from 12 on.
pub fn columns_sql(version: ServerVersion) -> String {
    let generated = match version.num() >= 120000 {
        true => "a.attgenerated = 's'",
        false => "false",
    };
    format!(
        "SELECT a.attrelid, pg_catalog.quote_ident(a.attname), \
         pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull, \
         pg_catalog.pg_get_expr(d.adbin, d.adrelid), {generated}, a.attidentity::text, \
         q.seqrelid::pg_catalog.regclass::text, q.seqstart, q.seqincrement, q.seqmin, \
         q.seqmax, q.seqcache, q.seqcycle, \
         (SELECT pg_catalog.format('%I.%I', n.nspname, o.collname) \
           FROM pg_catalog.pg_collation o JOIN pg_catalog.pg_namespace n \
             ON n.oid = o.collnamespace JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
           WHERE o.oid = a.attcollation AND a.attcollation <> t.typcollation) \
         FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d \
           ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         LEFT JOIN pg_catalog.pg_depend i ON a.attidentity <> '' \
           AND i.classid = 'pg_catalog.pg_class'::pg_catalog.regclass \
           AND i.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass \
           AND i.refobjid = a.attrelid AND i.refobjsubid = a.attnum AND i.deptype = 'i' \
         LEFT JOIN pg_catalog.pg_sequence q ON q.seqrelid = i.objid \
         WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attrelid, a.attnum"
    )
}

/// The columns of each table (see [`columns_sql`]).
pub async fn columns(
    client: &Client,
    version: ServerVersion,
    tables: &[u32],
) -> Result<HashMap<u32, Vec<Column>>, NativeError> {
    let what = "reading columns";
    let rows = client
        .query(&columns_sql(version), &[&oids(tables)])
        .await
        .map_err(query(what))?;
    let mut map: HashMap<u32, Vec<Column>> = HashMap::new();
    for row in rows {
        let get_identity = || -> Result<Option<(Identity, Sequence)>, tokio_postgres::Error> {
            let kind: String = row.try_get(6)?;
            let Some(name) = row.try_get::<_, Option<String>>(7)? else {
                return Ok(None);
            };
            let identity = match kind.as_str() {
                "a" => Identity::Always,
                _ => Identity::ByDefault,
            };
            Ok(Some((
                identity,
                Sequence {
                    name,
                    type_name: String::new(),
                    start: row.try_get(8)?,
                    increment: row.try_get(9)?,
                    min: row.try_get(10)?,
                    max: row.try_get(11)?,
                    cache: row.try_get(12)?,
                    cycle: row.try_get(13)?,
                },
            )))
        };
        let identity = get_identity().map_err(query(what))?;
        map.entry(row.try_get(0).map_err(query(what))?)
            .or_default()
            .push(Column {
                name: row.try_get(1).map_err(query(what))?,
                type_name: row.try_get(2).map_err(query(what))?,
                collation: row.try_get(14).map_err(query(what))?,
                not_null: row.try_get(3).map_err(query(what))?,
                default: row.try_get(4).map_err(query(what))?,
                generated: row.try_get(5).map_err(query(what))?,
                identity,
            });
    }
    Ok(map)
}

/// `CREATE TRIGGER` statements (`pg_get_triggerdef`), in oid order.
pub async fn triggers(client: &Client, list: &[u32]) -> Result<Vec<String>, NativeError> {
    let sql = "SELECT pg_catalog.pg_get_triggerdef(g.oid, false) || ';' \
        FROM pg_catalog.pg_trigger g WHERE g.oid = ANY($1) ORDER BY g.oid";
    read_rows(client, sql, &[&oids(list)], "reading triggers", |row| {
        row.try_get(0)
    })
    .await
}

/// The triggers of the constraint triggers of `list` (`pg_constraint` rows of contype `t`, whose
/// trigger is a part of them): written with the other triggers, by `pg_get_triggerdef`.
pub async fn constraint_triggers(client: &Client, list: &[u32]) -> Result<Vec<u32>, NativeError> {
    let sql = "SELECT g.oid FROM pg_catalog.pg_trigger g \
        JOIN pg_catalog.pg_constraint k ON k.oid = g.tgconstraint \
        WHERE k.contype = 't' AND k.oid = ANY($1) ORDER BY g.oid";
    read_rows(
        client,
        sql,
        &[&oids(list)],
        "reading constraint triggers",
        |row| row.try_get(0),
    )
    .await
}

/// The materialized views of `list` that hold data (refreshed after the data).
pub async fn populated(client: &Client, list: &[u32]) -> Result<Vec<u32>, NativeError> {
    let sql = "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.oid = ANY($1) AND c.relispopulated";
    read_rows(
        client,
        sql,
        &[&oids(list)],
        "reading materialized views",
        |row| row.try_get(0),
    )
    .await
}

/// Enum types with their labels (quoted, in their sort order) as the definition.
pub async fn enums(client: &Client, list: &[u32]) -> Result<Vec<Owned>, NativeError> {
    let sql = "SELECT t.oid, pg_catalog.format_type(t.oid, NULL), \
        pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(t.typowner)), t.typacl IS NOT NULL, \
        (SELECT pg_catalog.string_agg(pg_catalog.quote_literal(e.enumlabel), ', ' \
           ORDER BY e.enumsortorder) FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid), \
        '{}'::text[] FROM pg_catalog.pg_type t WHERE t.oid = ANY($1) ORDER BY t.oid";
    let mut enums = owned(client, sql, list, "reading enum types").await?;
    for e in &mut enums {
        e.definition = format!("CREATE TYPE {} AS ENUM ({});\n", e.name, e.definition);
    }
    Ok(enums)
}

/// A table constraint: CHECK, PRIMARY KEY, UNIQUE or FOREIGN KEY.
#[derive(Clone, Debug)]
pub struct Constraint {
    /// `pg_constraint.contype`.
    pub contype: String,
    /// Whether it was validated (NOT VALID ones go after the data).
    pub validated: bool,
    /// `ALTER TABLE ONLY ... ADD CONSTRAINT ...;`
    pub statement: String,
}

/// The table constraints, in oid order.
pub async fn constraints(client: &Client, list: &[u32]) -> Result<Vec<Constraint>, NativeError> {
    let sql = "SELECT k.contype::text, k.convalidated, \
        pg_catalog.format('ALTER TABLE ONLY %s ADD CONSTRAINT %I %s;', \
          k.conrelid::pg_catalog.regclass, k.conname, pg_catalog.pg_get_constraintdef(k.oid)) \
        FROM pg_catalog.pg_constraint k WHERE k.oid = ANY($1) ORDER BY k.oid";
    read_rows(client, sql, &[&oids(list)], "reading constraints", |row| {
        Ok(Constraint {
            contype: row.try_get(0)?,
            validated: row.try_get(1)?,
            statement: row.try_get(2)?,
        })
    })
    .await
}

/// Sequences' parameters (pg_sequence, 10+) and `OWNED BY`, in oid order.
pub async fn sequences(
    client: &Client,
    list: &[u32],
) -> Result<Vec<(Sequence, Option<String>)>, NativeError> {
    let sql = "SELECT c.oid::pg_catalog.regclass::text, pg_catalog.format_type(s.seqtypid, NULL), \
        s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle, \
        (SELECT pg_catalog.format('%s.%I', d.refobjid::pg_catalog.regclass, a.attname) \
           FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_attribute a \
             ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
           WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid \
             AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass \
             AND d.refobjsubid > 0 AND d.deptype = 'a') \
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid \
        WHERE c.oid = ANY($1) ORDER BY c.oid";
    let what = "reading sequences";
    let rows = client
        .query(sql, &[&oids(list)])
        .await
        .map_err(query(what))?;
    rows.iter()
        .map(|row| {
            Ok((
                Sequence {
                    name: row.try_get(0).map_err(query(what))?,
                    type_name: row.try_get(1).map_err(query(what))?,
                    start: row.try_get(2).map_err(query(what))?,
                    increment: row.try_get(3).map_err(query(what))?,
                    min: row.try_get(4).map_err(query(what))?,
                    max: row.try_get(5).map_err(query(what))?,
                    cache: row.try_get(6).map_err(query(what))?,
                    cycle: row.try_get(7).map_err(query(what))?,
                },
                row.try_get(8).map_err(query(what))?,
            ))
        })
        .collect()
}

/// A sequence's state at the snapshot: `last_value`, `is_called`.
pub async fn sequence_state(client: &Client, name: &str) -> Result<(i64, bool), NativeError> {
    let what = "reading a sequence's state";
    let row = client
        .query_one(&format!("SELECT last_value, is_called FROM {name}"), &[])
        .await
        .map_err(query(what))?;
    Ok((
        row.try_get(0).map_err(query(what))?,
        row.try_get(1).map_err(query(what))?,
    ))
}

/// Which views each view reads (through its `_RETURN` rule's dependencies).
pub async fn view_dependencies(
    client: &Client,
    views: &[u32],
) -> Result<Vec<(u32, u32)>, NativeError> {
    let sql = "SELECT DISTINCT r.ev_class, d.refobjid FROM pg_catalog.pg_rewrite r \
        JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
          AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass \
        WHERE r.ev_class = ANY($1) AND d.refobjid = ANY($1) AND d.refobjid <> r.ev_class";
    let what = "reading the views' dependencies";
    let rows = client
        .query(sql, &[&oids(views)])
        .await
        .map_err(query(what))?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get(0).map_err(query(what))?,
                row.try_get(1).map_err(query(what))?,
            ))
        })
        .collect()
}

/// `COMMENT ON` statements of the exported objects and their columns.
pub async fn comments(
    client: &Client,
    relations: &[u32],
    functions: &[u32],
    schemas: &[u32],
    constraints: &[u32],
    types: &[u32],
    triggers: &[u32],
) -> Result<Vec<String>, NativeError> {
    let sql = "SELECT pg_catalog.format('COMMENT ON %s %s IS %L;', CASE c.relkind \
          WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'TABLE' WHEN 'v' THEN 'VIEW' WHEN 'S' THEN 'SEQUENCE' \
          WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'INDEX' END, \
          c.oid::pg_catalog.regclass, d.description) \
        FROM pg_catalog.pg_description d JOIN pg_catalog.pg_class c ON c.oid = d.objoid \
        WHERE d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid = 0 \
          AND c.oid = ANY($1) \
        UNION ALL SELECT pg_catalog.format('COMMENT ON COLUMN %s.%I IS %L;', \
          a.attrelid::pg_catalog.regclass, a.attname, d.description) \
        FROM pg_catalog.pg_description d JOIN pg_catalog.pg_attribute a \
          ON a.attrelid = d.objoid AND a.attnum = d.objsubid \
        WHERE d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid > 0 \
          AND a.attrelid = ANY($1) \
        UNION ALL SELECT pg_catalog.format('COMMENT ON FUNCTION %s IS %L;', \
          d.objoid::pg_catalog.regprocedure, d.description) \
        FROM pg_catalog.pg_description d \
        WHERE d.classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objoid = ANY($2) \
        UNION ALL SELECT pg_catalog.format('COMMENT ON TRIGGER %I ON %s IS %L;', g.tgname, \
          g.tgrelid::pg_catalog.regclass, d.description) \
        FROM pg_catalog.pg_description d JOIN pg_catalog.pg_trigger g ON g.oid = d.objoid \
        WHERE d.classoid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND g.oid = ANY($6) \
        UNION ALL SELECT pg_catalog.format('COMMENT ON TYPE %s IS %L;', \
          pg_catalog.format_type(d.objoid, NULL), d.description) \
        FROM pg_catalog.pg_description d \
        WHERE d.classoid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.objoid = ANY($5) \
        UNION ALL SELECT pg_catalog.format('COMMENT ON SCHEMA %I IS %L;', n.nspname, d.description) \
        FROM pg_catalog.pg_description d JOIN pg_catalog.pg_namespace n ON n.oid = d.objoid \
        WHERE d.classoid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND n.oid = ANY($3) \
        UNION ALL SELECT pg_catalog.format('COMMENT ON CONSTRAINT %I ON %s IS %L;', k.conname, \
          k.conrelid::pg_catalog.regclass, d.description) \
        FROM pg_catalog.pg_description d JOIN pg_catalog.pg_constraint k ON k.oid = d.objoid \
        WHERE d.classoid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND k.oid = ANY($4)";
    let what = "reading comments";
    let rows = client
        .query(
            sql,
            &[
                &oids(relations),
                &oids(functions),
                &oids(schemas),
                &oids(constraints),
                &oids(types),
                &oids(triggers),
            ],
        )
        .await
        .map_err(query(what))?;
    rows.iter()
        .map(|row| row.try_get(0).map_err(query(what)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_columns_are_read_from_12_on() {
        assert!(columns_sql(ServerVersion(110022)).contains(", false, a.attidentity"));
        assert!(columns_sql(ServerVersion(120000)).contains("a.attgenerated = 's'"));
    }
}
