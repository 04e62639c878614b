//! Domains, composite and range types: their catalog reads and their SQL. Each is created
//! after the types it uses (`pg_depend` order), before the functions and tables; a domain's
//! default and CHECK constraints, which may call a function or read a sequence, come after
//! the functions and sequences. Comments, owners and privileges with the others'.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::ddl::{privileges, view_order, Grant};
use super::error::NativeError;
use super::objects::{grants, read_rows};
use crate::server::{quote_literal, ServerVersion};

/// What makes a type: a domain over a base type, a composite's attributes, a range's subtype.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `CREATE DOMAIN`.
    Domain(Domain),
    /// `CREATE TYPE ... AS (...)`: its attributes.
    Composite(Vec<Attribute>),
    /// `CREATE TYPE ... AS RANGE`.
    Range(Range),
}

/// A domain's base type and NOT NULL; its default and constraints come later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    /// `format_type` of the base type with the domain's typmod.
    pub base: String,
    /// Its collation (quoted, qualified) when it is not the base type's.
    pub collation: Option<String>,
    /// NOT NULL.
    pub not_null: bool,
    /// `pg_get_expr` of its default.
    pub default: Option<String>,
    /// Its CHECK constraints.
    pub checks: Vec<DomainCheck>,
}

/// A CHECK constraint of a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainCheck {
    /// Quoted name.
    pub name: String,
    /// `pg_get_constraintdef` (`NOT VALID` included).
    pub definition: String,
    /// Validated: added before the data; NOT VALID ones after it, as pg_dump does (rows
    /// may break them).
    pub validated: bool,
}

/// One attribute of a composite type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    /// Quoted name.
    pub name: String,
    /// `format_type` with its typmod.
    pub type_name: String,
    /// Its collation (quoted, qualified) when it is not its type's.
    pub collation: Option<String>,
}

/// A range type's parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    /// `format_type` of the subtype.
    pub subtype: String,
    /// The subtype's operator class when it is not the default one (quoted, qualified).
    pub opclass: Option<String>,
    /// Its collation (quoted, qualified), when set.
    pub collation: Option<String>,
    /// Its canonical function (`regproc`), a system one (the inventory refuses others).
    pub canonical: Option<String>,
    /// Its subtype difference function (`regproc`), a system one.
    pub subtype_diff: Option<String>,
    /// Its multirange type's name (14+).
    pub multirange: Option<String>,
}

/// A domain, composite or range type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserType {
    /// Its oid.
    pub oid: u32,
    /// `format_type`: quoted, qualified.
    pub name: String,
    /// Quoted owner.
    pub owner: String,
    /// Whether its ACL is set.
    pub has_acl: bool,
    /// What it is made of.
    pub shape: Shape,
}

impl UserType {
    /// `DOMAIN` or `TYPE`, as ALTER, GRANT and COMMENT name it.
    fn keyword(&self) -> &'static str {
        match self.shape {
            Shape::Domain(_) => "DOMAIN",
            _ => "TYPE",
        }
    }
}

/// `CREATE DOMAIN`, `CREATE TYPE ... AS (...)` or `CREATE TYPE ... AS RANGE (...)`, without a
/// domain's default and constraints ([`domain_parts`]).
pub fn create_type(t: &UserType) -> String {
    let collate = |c: &Option<String>| match c {
        Some(collation) => format!(" COLLATE {collation}"),
        None => String::new(),
    };
    match &t.shape {
        Shape::Domain(d) => format!(
            "CREATE DOMAIN {} AS {}{}{};\n\n",
            t.name,
            d.base,
            collate(&d.collation),
            if d.not_null { " NOT NULL" } else { "" }
        ),
        Shape::Composite(attributes) => {
            let lines: Vec<String> = attributes
                .iter()
                .map(|a| format!("    {} {}{}", a.name, a.type_name, collate(&a.collation)))
                .collect();
            match lines.is_empty() {
                true => format!("CREATE TYPE {} AS (\n);\n\n", t.name),
                false => format!("CREATE TYPE {} AS (\n{}\n);\n\n", t.name, lines.join(",\n")),
            }
        }
        Shape::Range(r) => {
            let mut items = vec![format!("subtype = {}", r.subtype)];
            let optional = [
                ("subtype_opclass", &r.opclass),
                ("collation", &r.collation),
                ("canonical", &r.canonical),
                ("subtype_diff", &r.subtype_diff),
                ("multirange_type_name", &r.multirange),
            ];
            for (key, value) in optional {
                if let Some(value) = value {
                    items.push(format!("{key} = {value}"));
                }
            }
            format!(
                "CREATE TYPE {} AS RANGE (\n    {}\n);\n\n",
                t.name,
                items.join(",\n    ")
            )
        }
    }
}

/// A domain's default and validated CHECK constraints (`validated`), or its NOT VALID ones,
/// as `ALTER DOMAIN` statements; empty for other types.
pub fn domain_parts(t: &UserType, validated: bool) -> String {
    let Shape::Domain(d) = &t.shape else {
        return String::new();
    };
    let mut sql = String::new();
    if let (Some(default), true) = (&d.default, validated) {
        sql.push_str(&format!("ALTER DOMAIN {} SET DEFAULT {default};\n", t.name));
    }
    for check in d.checks.iter().filter(|c| c.validated == validated) {
        sql.push_str(&format!(
            "ALTER DOMAIN {} ADD CONSTRAINT {} {};\n",
            t.name, check.name, check.definition
        ));
    }
    sql
}

/// `ALTER ... OWNER TO` and the privileges of a type (`grants`: its ACL, when set).
pub fn ownership(t: &UserType, grants: &[Grant]) -> String {
    let keyword = t.keyword();
    let mut sql = format!("ALTER {keyword} {} OWNER TO {};\n", t.name, t.owner);
    if t.has_acl {
        sql.push_str(&privileges(keyword, &t.name, &t.owner, grants));
    }
    sql
}

/// The domains, composite and range types of a database, read in the export's snapshot.
#[derive(Debug, Default)]
pub struct Types {
    /// Each type, after the types it uses.
    pub types: Vec<UserType>,
    /// `COMMENT ON` statements: the types', their attributes' and their constraints'.
    pub comments: Vec<String>,
    /// The ACLs of the types that have one.
    pub grants: HashMap<u32, Vec<Grant>>,
}

impl Types {
    /// `CREATE` statements, in dependency order (before the functions).
    pub fn creates(&self) -> String {
        self.types.iter().map(create_type).collect()
    }

    /// Domains' defaults and validated constraints (after the functions and sequences).
    pub fn domain_parts(&self) -> String {
        self.types.iter().map(|t| domain_parts(t, true)).collect()
    }

    /// Domains' NOT VALID constraints (after the data).
    pub fn not_valid_checks(&self) -> String {
        self.types.iter().map(|t| domain_parts(t, false)).collect()
    }

    /// Comments, owners and privileges.
    pub fn ownership(&self) -> String {
        let mut sql: String = self.comments.iter().map(|c| format!("{c}\n")).collect();
        for t in &self.types {
            let granted = self.grants.get(&t.oid).map(Vec::as_slice).unwrap_or(&[]);
            sql.push_str(&ownership(t, granted));
        }
        sql
    }
}

/// The collation expression (quoted, qualified) of collation `oid`, as SQL.
fn collation_sql(oid: &str) -> String {
    format!(
        "(SELECT pg_catalog.format('%I.%I', cn.nspname, co.collname) \
         FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn \
         ON cn.oid = co.collnamespace WHERE co.oid = {oid})"
    )
}

/// The types' own rows: (oid, typtype, name, owner, has ACL, domain base type, collation
/// unless the base type's, NOT NULL, default).
fn types_sql() -> String {
    format!(
        "SELECT t.oid, t.typtype::text, pg_catalog.format_type(t.oid, NULL), \
         pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(t.typowner)), t.typacl IS NOT NULL, \
         pg_catalog.format_type(t.typbasetype, t.typtypmod), \
         CASE WHEN t.typcollation <> 0 AND t.typcollation <> b.typcollation THEN {} END, \
         t.typnotnull, pg_catalog.pg_get_expr(t.typdefaultbin, 0) \
         FROM pg_catalog.pg_type t LEFT JOIN pg_catalog.pg_type b ON b.oid = t.typbasetype \
         WHERE t.oid = ANY($1) ORDER BY t.oid",
        collation_sql("t.typcollation")
    )
}

/// Composite types' attributes in order: (type oid, name, type, collation unless its type's).
fn attributes_sql() -> String {
    format!(
        "SELECT t.oid, pg_catalog.quote_ident(a.attname), \
         pg_catalog.format_type(a.atttypid, a.atttypmod), \
         CASE WHEN a.attcollation <> 0 AND a.attcollation <> u.typcollation THEN {} END \
         FROM pg_catalog.pg_type t JOIN pg_catalog.pg_attribute a ON a.attrelid = t.typrelid \
         JOIN pg_catalog.pg_type u ON u.oid = a.atttypid \
         WHERE t.oid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY t.oid, a.attnum",
        collation_sql("a.attcollation")
    )
}

/// Range types' parameters (the multirange's name from 14 on): (oid, subtype, opclass unless
/// the default, collation, canonical, subtype_diff, multirange).
pub fn ranges_sql(version: ServerVersion) -> String {
    let multirange = match version.num() >= 140000 {
        true => "pg_catalog.format_type(r.rngmultitypid, NULL)",
        false => "NULL::text",
    };
    format!(
        "SELECT r.rngtypid, pg_catalog.format_type(r.rngsubtype, NULL), \
         CASE WHEN NOT c.opcdefault THEN pg_catalog.format('%I.%I', cn.nspname, c.opcname) END, \
         CASE WHEN r.rngcollation <> 0 THEN {} END, \
         CASE WHEN r.rngcanonical <> 0 THEN r.rngcanonical::pg_catalog.regproc::text END, \
         CASE WHEN r.rngsubdiff <> 0 THEN r.rngsubdiff::pg_catalog.regproc::text END, \
         {multirange} \
         FROM pg_catalog.pg_range r JOIN pg_catalog.pg_opclass c ON c.oid = r.rngsubopc \
         JOIN pg_catalog.pg_namespace cn ON cn.oid = c.opcnamespace \
         WHERE r.rngtypid = ANY($1)",
        collation_sql("r.rngcollation")
    )
}

/// Which of the types each uses ((type, type it uses)): a domain's base type, a range's
/// subtype, a composite's attributes' types, an array type standing for its element.
const DEPENDENCIES_SQL: &str = "SELECT DISTINCT t.oid, u.oid \
    FROM pg_catalog.pg_type t JOIN pg_catalog.pg_depend d ON d.refclassid = \
      'pg_catalog.pg_type'::pg_catalog.regclass AND ((d.classid = \
      'pg_catalog.pg_type'::pg_catalog.regclass AND d.objid = t.oid) OR (t.typrelid <> 0 \
      AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = t.typrelid)) \
    JOIN pg_catalog.pg_type r ON r.oid = d.refobjid \
    JOIN pg_catalog.pg_type u ON u.oid IN (r.oid, r.typelem) \
    WHERE t.oid = ANY($1) AND u.oid = ANY($1) AND u.oid <> t.oid";

/// Comments on the types, their attributes and their constraints (`$2`).
const COMMENTS_SQL: &str = "SELECT pg_catalog.format('COMMENT ON %s %s IS %L;', \
      CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, \
      pg_catalog.format_type(t.oid, NULL), d.description) \
    FROM pg_catalog.pg_description d JOIN pg_catalog.pg_type t ON t.oid = d.objoid \
    WHERE d.classoid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.objsubid = 0 \
      AND t.oid = ANY($1) \
    UNION ALL SELECT pg_catalog.format('COMMENT ON COLUMN %s.%I IS %L;', \
      pg_catalog.format_type(t.oid, NULL), a.attname, d.description) \
    FROM pg_catalog.pg_description d JOIN pg_catalog.pg_type t ON t.typrelid = d.objoid \
    JOIN pg_catalog.pg_attribute a ON a.attrelid = t.typrelid AND a.attnum = d.objsubid \
    WHERE d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid > 0 \
      AND t.oid = ANY($1) \
    UNION ALL SELECT pg_catalog.format('COMMENT ON CONSTRAINT %I ON DOMAIN %s IS %L;', \
      k.conname, pg_catalog.format_type(k.contypid, NULL), d.description) \
    FROM pg_catalog.pg_description d JOIN pg_catalog.pg_constraint k ON k.oid = d.objoid \
    WHERE d.classoid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND k.oid = ANY($2)";

/// Domains' CHECK constraints (of `$1`): (domain, quoted name, definition, validated), by name.
const CHECKS_SQL: &str = "SELECT k.contypid, pg_catalog.quote_ident(k.conname), \
    pg_catalog.pg_get_constraintdef(k.oid), k.convalidated FROM pg_catalog.pg_constraint k \
    WHERE k.oid = ANY($1) AND k.contype = 'c' ORDER BY k.contypid, k.conname";

type Row = tokio_postgres::Row;

/// Reads the types `list` (domains, composite and range types) and the domain constraints
/// `constraints`, in the export's snapshot.
pub async fn read(
    client: &Client,
    version: ServerVersion,
    list: &[u32],
    constraints: &[u32],
) -> Result<Types, NativeError> {
    let list = list.to_vec();
    let constraints = constraints.to_vec();
    let what = "reading domains, composite and range types";
    let rows = read_rows(client, &types_sql(), &[&list], what, |row: &Row| {
        Ok((
            row.try_get::<_, u32>(0)?,
            row.try_get::<_, String>(1)?,
            row.try_get::<_, String>(2)?,
            row.try_get::<_, String>(3)?,
            row.try_get::<_, bool>(4)?,
            Domain {
                base: row.try_get(5)?,
                collation: row.try_get(6)?,
                not_null: row.try_get(7)?,
                default: row.try_get(8)?,
                checks: Vec::new(),
            },
        ))
    })
    .await?;
    let mut attributes: HashMap<u32, Vec<Attribute>> = HashMap::new();
    for (oid, attribute) in read_rows(client, &attributes_sql(), &[&list], what, |row: &Row| {
        Ok((
            row.try_get::<_, u32>(0)?,
            Attribute {
                name: row.try_get(1)?,
                type_name: row.try_get(2)?,
                collation: row.try_get(3)?,
            },
        ))
    })
    .await?
    {
        attributes.entry(oid).or_default().push(attribute);
    }
    let mut ranges: HashMap<u32, Range> =
        read_rows(client, &ranges_sql(version), &[&list], what, |row: &Row| {
            Ok((
                row.try_get::<_, u32>(0)?,
                Range {
                    subtype: row.try_get(1)?,
                    opclass: row.try_get(2)?,
                    collation: row.try_get(3)?,
                    canonical: row.try_get(4)?,
                    subtype_diff: row.try_get(5)?,
                    multirange: row.try_get(6)?,
                },
            ))
        })
        .await?
        .into_iter()
        .collect();
    let mut checks: HashMap<u32, Vec<DomainCheck>> = HashMap::new();
    for (oid, check) in read_rows(client, CHECKS_SQL, &[&constraints], what, |row: &Row| {
        Ok((
            row.try_get::<_, u32>(0)?,
            DomainCheck {
                name: row.try_get(1)?,
                definition: row.try_get(2)?,
                validated: row.try_get(3)?,
            },
        ))
    })
    .await?
    {
        checks.entry(oid).or_default().push(check);
    }
    let mut types = Vec::with_capacity(rows.len());
    for (oid, typtype, name, owner, has_acl, mut domain) in rows {
        let shape = match typtype.as_str() {
            "d" => {
                domain.checks = checks.remove(&oid).unwrap_or_default();
                Shape::Domain(domain)
            }
            "r" => match ranges.remove(&oid) {
                Some(range) => Shape::Range(range),
                None => continue,
            },
            _ => Shape::Composite(attributes.remove(&oid).unwrap_or_default()),
        };
        types.push(UserType {
            oid,
            name,
            owner,
            has_acl,
            shape,
        });
    }
    let depends = read_rows(client, DEPENDENCIES_SQL, &[&list], what, |row: &Row| {
        Ok((row.try_get(0)?, row.try_get(1)?))
    })
    .await?;
    let order = view_order(&list, &depends);
    types.sort_by_key(|t| order.iter().position(|oid| *oid == t.oid));
    let comments = read_rows(
        client,
        COMMENTS_SQL,
        &[&list, &constraints],
        what,
        |row: &Row| row.try_get(0),
    )
    .await?;
    let with_acl: Vec<u32> = types.iter().filter(|t| t.has_acl).map(|t| t.oid).collect();
    let grants = match with_acl.is_empty() {
        true => HashMap::new(),
        false => grants(client, "pg_type", &with_acl).await?,
    };
    Ok(Types {
        types,
        comments,
        grants,
    })
}

/// A collation: its provider and locales, as `CREATE COLLATION` takes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collation {
    /// Quoted, qualified name.
    pub name: String,
    /// Quoted owner.
    pub owner: String,
    /// `pg_collation.collprovider`: `c` libc, `i` ICU, `b` builtin (17+).
    pub provider: String,
    /// `collisdeterministic` (12+; always true before).
    pub deterministic: bool,
    /// `collcollate` (libc).
    pub lc_collate: Option<String>,
    /// `collctype` (libc).
    pub lc_ctype: Option<String>,
    /// The ICU or builtin locale: `collcollate` before 15, `colliculocale` on 15 and 16,
    /// `colllocale` from 17.
    pub locale: Option<String>,
    /// ICU tailoring rules (`collicurules`, 16+).
    pub rules: Option<String>,
}

/// The collations of `$1` (oid order): name, owner, provider, deterministic, lc_collate,
/// lc_ctype, the ICU or builtin locale, ICU rules; each column as the major names it.
pub fn collations_sql(version: ServerVersion) -> String {
    let v = version.num();
    let deterministic = match v >= 120000 {
        true => "c.collisdeterministic",
        false => "true",
    };
    let locale = match v {
        v if v >= 170000 => "c.colllocale",
        v if v >= 150000 => "c.colliculocale",
        _ => "CASE WHEN c.collprovider = 'i' THEN c.collcollate::text END",
    };
    let rules = match v >= 160000 {
        true => "c.collicurules",
        false => "NULL::text",
    };
    format!(
        "SELECT pg_catalog.format('%I.%I', n.nspname, c.collname), \
         pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(c.collowner)), \
         c.collprovider::text, {deterministic}, c.collcollate::text, c.collctype::text, \
         {locale}::text, {rules} \
         FROM pg_catalog.pg_collation c JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace \
         WHERE c.oid = ANY($1) ORDER BY c.oid"
    )
}

/// `CREATE COLLATION` with its provider, locale(s) and determinism, and its owner.
pub fn create_collation(c: &Collation) -> String {
    let literal = |s: &Option<String>| quote_literal(s.as_deref().unwrap_or(""));
    let mut items = Vec::new();
    match c.provider.as_str() {
        "i" => {
            items.push("provider = icu".to_string());
            items.push(format!("locale = {}", literal(&c.locale)));
            if let Some(rules) = &c.rules {
                items.push(format!("rules = {}", quote_literal(rules)));
            }
        }
        "b" => {
            items.push("provider = builtin".to_string());
            items.push(format!("locale = {}", literal(&c.locale)));
        }
        _ => {
            items.push("provider = libc".to_string());
            match c.lc_collate == c.lc_ctype {
                true => items.push(format!("locale = {}", literal(&c.lc_collate))),
                false => {
                    items.push(format!("lc_collate = {}", literal(&c.lc_collate)));
                    items.push(format!("lc_ctype = {}", literal(&c.lc_ctype)));
                }
            }
        }
    }
    if !c.deterministic {
        items.push("deterministic = false".to_string());
    }
    format!(
        "CREATE COLLATION {} ({});\nALTER COLLATION {} OWNER TO {};\n\n",
        c.name,
        items.join(", "),
        c.name,
        c.owner
    )
}

/// Comments on the collations of `$1`.
const COLLATION_COMMENTS_SQL: &str =
    "SELECT pg_catalog.format('COMMENT ON COLLATION %I.%I IS %L;', \
      n.nspname, c.collname, d.description) \
    FROM pg_catalog.pg_description d JOIN pg_catalog.pg_collation c ON c.oid = d.objoid \
    JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace \
    WHERE d.classoid = 'pg_catalog.pg_collation'::pg_catalog.regclass AND c.oid = ANY($1)";

/// The collations of `list`: `CREATE COLLATION`, owner and comment each, to be written before
/// the types and tables that use them.
pub async fn collations(
    client: &Client,
    version: ServerVersion,
    list: &[u32],
) -> Result<String, NativeError> {
    let list = list.to_vec();
    let what = "reading collations";
    let collations = read_rows(
        client,
        &collations_sql(version),
        &[&list],
        what,
        |row: &Row| {
            Ok(Collation {
                name: row.try_get(0)?,
                owner: row.try_get(1)?,
                provider: row.try_get(2)?,
                deterministic: row.try_get(3)?,
                lc_collate: row.try_get(4)?,
                lc_ctype: row.try_get(5)?,
                locale: row.try_get(6)?,
                rules: row.try_get(7)?,
            })
        },
    )
    .await?;
    let comments: Vec<String> = read_rows(
        client,
        COLLATION_COMMENTS_SQL,
        &[&list],
        what,
        |row: &Row| row.try_get(0),
    )
    .await?;
    let mut sql: String = collations.iter().map(create_collation).collect();
    for comment in comments {
        sql.push_str(&comment);
        sql.push('\n');
    }
    Ok(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_type(name: &str, shape: Shape) -> UserType {
        UserType {
            oid: 16500,
            name: name.into(),
            owner: "nat_owner".into(),
            has_acl: false,
            shape,
        }
    }

    #[test]
    fn domains_are_created_bare_then_given_their_default_and_checks() {
        let domain = user_type(
            "app.\"Code\"",
            Shape::Domain(Domain {
                base: "character varying(8)".into(),
                collation: Some("pg_catalog.\"C\"".into()),
                not_null: true,
                default: Some("'x'::character varying".into()),
                checks: vec![
                    DomainCheck {
                        name: "code_len".into(),
                        definition: "CHECK ((length((VALUE)::text) > 1))".into(),
                        validated: true,
                    },
                    DomainCheck {
                        name: "\"Up\"".into(),
                        definition: "CHECK ((VALUE = upper(VALUE))) NOT VALID".into(),
                        validated: false,
                    },
                ],
            }),
        );
        assert_eq!(
            create_type(&domain),
            "CREATE DOMAIN app.\"Code\" AS character varying(8) COLLATE pg_catalog.\"C\" NOT NULL;\n\n"
        );
        assert_eq!(
            domain_parts(&domain, true),
            "ALTER DOMAIN app.\"Code\" SET DEFAULT 'x'::character varying;\n\
             ALTER DOMAIN app.\"Code\" ADD CONSTRAINT code_len CHECK ((length((VALUE)::text) > 1));\n"
        );
        assert_eq!(
            domain_parts(&domain, false),
            "ALTER DOMAIN app.\"Code\" ADD CONSTRAINT \"Up\" CHECK ((VALUE = upper(VALUE))) NOT VALID;\n"
        );
        let mut granted = domain.clone();
        granted.has_acl = true;
        let grant = Grant {
            grantee: Some("nat_reader".into()),
            privilege: "USAGE".into(),
            grantable: false,
        };
        assert_eq!(
            ownership(&granted, &[grant]),
            "ALTER DOMAIN app.\"Code\" OWNER TO nat_owner;\n\
             REVOKE ALL ON DOMAIN app.\"Code\" FROM PUBLIC;\n\
             REVOKE ALL ON DOMAIN app.\"Code\" FROM nat_owner;\n\
             GRANT USAGE ON DOMAIN app.\"Code\" TO nat_reader;\n"
        );
    }

    #[test]
    fn composite_types_with_attributes_collations_and_none() {
        let pair = user_type(
            "app.pair",
            Shape::Composite(vec![
                Attribute {
                    name: "a".into(),
                    type_name: "app.\"Code\"[]".into(),
                    collation: None,
                },
                Attribute {
                    name: "\"B\"".into(),
                    type_name: "text".into(),
                    collation: Some("pg_catalog.\"POSIX\"".into()),
                },
            ]),
        );
        assert_eq!(
            create_type(&pair),
            "CREATE TYPE app.pair AS (\n    a app.\"Code\"[],\n    \"B\" text COLLATE pg_catalog.\"POSIX\"\n);\n\n"
        );
        assert_eq!(domain_parts(&pair, true), "");
        assert_eq!(
            ownership(&pair, &[]),
            "ALTER TYPE app.pair OWNER TO nat_owner;\n"
        );
        let empty = user_type("app.nothing", Shape::Composite(Vec::new()));
        assert_eq!(create_type(&empty), "CREATE TYPE app.nothing AS (\n);\n\n");
    }

    #[test]
    fn ranges_name_only_what_is_set_and_their_multirange_from_14() {
        let range = user_type(
            "app.span",
            Shape::Range(Range {
                subtype: "double precision".into(),
                opclass: None,
                collation: None,
                canonical: None,
                subtype_diff: Some("float8mi".into()),
                multirange: Some("app.span_multi".into()),
            }),
        );
        assert_eq!(
            create_type(&range),
            "CREATE TYPE app.span AS RANGE (\n    subtype = double precision,\n    \
             subtype_diff = float8mi,\n    multirange_type_name = app.span_multi\n);\n\n"
        );
        assert!(ranges_sql(ServerVersion(140000)).contains("r.rngmultitypid"));
        assert!(!ranges_sql(ServerVersion(130000)).contains("rngmultitypid"));
        assert!(ranges_sql(ServerVersion(100000)).contains("NULL::text"));
    }

    #[test]
    fn collations_by_provider_and_major() {
        let libc = Collation {
            name: "app.\"Fr\"".into(),
            owner: "nat_owner".into(),
            provider: "c".into(),
            deterministic: true,
            lc_collate: Some("C".into()),
            lc_ctype: Some("C".into()),
            locale: None,
            rules: None,
        };
        assert_eq!(
            create_collation(&libc),
            "CREATE COLLATION app.\"Fr\" (provider = libc, locale = 'C');\n\
             ALTER COLLATION app.\"Fr\" OWNER TO nat_owner;\n\n"
        );
        let split = Collation {
            lc_ctype: Some("POSIX".into()),
            ..libc.clone()
        };
        assert!(create_collation(&split)
            .contains("(provider = libc, lc_collate = 'C', lc_ctype = 'POSIX')"));
        let icu = Collation {
            provider: "i".into(),
            deterministic: false,
            locale: Some("und-u-ks-level2".into()),
            rules: Some("&a < b".into()),
            ..libc.clone()
        };
        assert!(create_collation(&icu).contains(
            "(provider = icu, locale = 'und-u-ks-level2', rules = '&a < b', deterministic = false)"
        ));
        let builtin = Collation {
            provider: "b".into(),
            locale: Some("C.UTF-8".into()),
            ..libc
        };
        assert!(create_collation(&builtin).contains("(provider = builtin, locale = 'C.UTF-8')"));
        let sql = |v| collations_sql(ServerVersion(v));
        assert!(sql(100000).contains(", true, ") && sql(100000).contains("NULL::text"));
        assert!(sql(120000).contains("c.collisdeterministic"));
        assert!(sql(150000).contains("c.colliculocale") && !sql(150000).contains("collicurules"));
        assert!(sql(160000).contains("c.collicurules"));
        assert!(sql(170000).contains("c.colllocale") && !sql(170000).contains("colliculocale"));
    }
}
