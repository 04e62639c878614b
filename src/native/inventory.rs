//! The inventory: every object a database's catalogs hold, not a list of what we support.
//!
//! Every catalog of the database (not shared) with an `oid` column is read for its user objects
//! (oid >= 16384, as initdb's objects are below; every large object), each named by
//! `pg_identify_object` and given a kind of our own (finer than its type: a partitioned table,
//! an enum, a window function...) and the properties we do not reproduce. Objects that are a
//! part of another (`pg_depend` deptype `i`: a row type, an array type, a constraint's index, a
//! view's rule, an FK's triggers) and extension members (`e`, and what is a part of a member,
//! `a`: the operators and support functions added to an extension's operator family, a
//! member table's constraints, defaults, indexes, triggers and rules, all of which pg_dump
//! leaves out too; not a policy, which is exported though pg_dump 18 loses it) go with their
//! owner object.
//! Besides: privileges changed on a system object (against `pg_init_privs`; the `public`
//! schema's are exported), security labels, a dropped or renamed `public` schema (or one with a
//! privilege granted by a role other than its owner), subscriptions. [`classify`] turns the
//! rows into the objects we
//! export and the refusals; a refusal names the object and why.

use crate::server::ServerVersion;

/// The kinds [`classify`] accepts; every other kind is refused.
pub const SUPPORTED_KINDS: [&str; 32] = [
    "schema",
    "extension",
    "collation",
    "enum type",
    "domain",
    "domain constraint",
    "composite type",
    "range type",
    "table",
    "partitioned table",
    "sequence",
    "view",
    "materialized view",
    "index",
    "partitioned index",
    "trigger",
    "function",
    "table constraint",
    "constraint trigger",
    "statistics object",
    "event trigger",
    "publication",
    "publication relation",
    "publication namespace",
    "not-null constraint",
    "default value",
    "policy",
    "rule",
    "procedure",
    "aggregate",
    "default acl",
    "large object",
];

/// One object of the inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryObject {
    /// Its catalog (`pg_class`, `pg_proc`...).
    pub catalog: String,
    /// Its oid in that catalog.
    pub oid: u32,
    /// Our kind: `table`, `partitioned table`, `enum type`, `trigger`...
    pub kind: String,
    /// `pg_identify_object`'s identity, quoted (`public."Odd"`), or a description.
    pub identity: String,
    /// The properties of it we do not reproduce (`unlogged`, `column privileges`...).
    pub unsupported: Vec<String>,
}

/// An object a native dump cannot reproduce, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Its kind.
    pub kind: String,
    /// Which object.
    pub identity: String,
    /// What of it is not reproduced: the kind itself when empty.
    pub reasons: Vec<String>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // An identity may hold a newline (a quoted name can): the refusal stays one line.
        let identity: String = self
            .identity
            .chars()
            .map(|c| match c.is_control() {
                true => c.escape_default().to_string(),
                false => c.to_string(),
            })
            .collect();
        write!(f, "{} {identity}", self.kind)?;
        if self.reasons.is_empty() {
            write!(f, " (kind not supported)")
        } else {
            write!(f, " ({})", self.reasons.join(", "))
        }
    }
}

/// What a database holds, split: the objects exported, and the refusals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    /// The supported objects, in catalog then oid order.
    pub objects: Vec<InventoryObject>,
    /// Every object that cannot be reproduced; the database is refused when not empty.
    pub refusals: Vec<Refusal>,
}

impl Inventory {
    /// The oids of the objects of `kind`.
    pub fn oids(&self, kind: &str) -> Vec<u32> {
        self.objects
            .iter()
            .filter(|o| o.kind == kind)
            .map(|o| o.oid)
            .collect()
    }
}

/// Splits the inventory's rows into the exported objects and the refusals.
pub fn classify(rows: Vec<InventoryObject>) -> Inventory {
    let mut inventory = Inventory::default();
    for object in rows {
        if SUPPORTED_KINDS.contains(&object.kind.as_str()) && object.unsupported.is_empty() {
            inventory.objects.push(object);
        } else {
            let reasons = match SUPPORTED_KINDS.contains(&object.kind.as_str()) {
                true => object.unsupported,
                false => Vec::new(),
            };
            inventory.refusals.push(Refusal {
                kind: object.kind,
                identity: object.identity,
                reasons,
            });
        }
    }
    inventory
}

/// The catalogs of the database (not shared) that have an `oid` column, by name; on 10 and 11
/// `oid` is a system column, which `pg_attribute` lists too.
pub const CATALOGS_WITH_OIDS_SQL: &str = "\
SELECT c.relname::text FROM pg_catalog.pg_class c \
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = 'oid' \
WHERE c.relnamespace = 'pg_catalog'::pg_catalog.regnamespace AND c.relkind = 'r' \
AND NOT c.relisshared ORDER BY 1";

/// Catalogs whose rows are parts of objects read elsewhere: an enum's labels.
const PART_CATALOGS: [&str; 1] = ["pg_enum"];

/// The objects' own catalogs under the name the kind expressions use.
fn kind_sql(version: ServerVersion) -> String {
    let proc_kind = if version.num() >= 110000 {
        "CASE p.prokind WHEN 'f' THEN 'function' WHEN 'p' THEN 'procedure' \
         WHEN 'a' THEN 'aggregate' ELSE 'window function' END"
    } else {
        "CASE WHEN p.proisagg THEN 'aggregate' WHEN p.proiswindow THEN 'window function' \
         ELSE 'function' END"
    };
    format!(
        "CASE o.catalog \
         WHEN 'pg_class' THEN (SELECT CASE c.relkind WHEN 'r' THEN 'table' \
           WHEN 'p' THEN 'partitioned table' WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' \
           WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' \
           WHEN 'I' THEN 'partitioned index' WHEN 'f' THEN 'foreign table' \
           WHEN 'c' THEN 'composite type' ELSE 'relation kind ' || c.relkind::text END \
           FROM pg_catalog.pg_class c WHERE c.oid = o.objid) \
         WHEN 'pg_proc' THEN (SELECT {proc_kind} FROM pg_catalog.pg_proc p WHERE p.oid = o.objid) \
         WHEN 'pg_type' THEN (SELECT CASE t.typtype WHEN 'e' THEN 'enum type' \
           WHEN 'c' THEN 'composite type' WHEN 'd' THEN 'domain' WHEN 'r' THEN 'range type' \
           WHEN 'm' THEN 'multirange type' WHEN 'b' THEN 'base type' \
           ELSE 'pseudo-type' END FROM pg_catalog.pg_type t WHERE t.oid = o.objid) \
         WHEN 'pg_constraint' THEN (SELECT CASE WHEN k.contypid <> 0 THEN 'domain constraint' \
           WHEN k.contype IN ('c', 'f', 'p', 'u', 'x') THEN 'table constraint' \
           WHEN k.contype = 'n' THEN 'not-null constraint' \
           WHEN k.contype = 'x' THEN 'exclusion constraint' \
           WHEN k.contype = 't' THEN 'constraint trigger' \
           ELSE 'constraint type ' || k.contype::text END \
           FROM pg_catalog.pg_constraint k WHERE k.oid = o.objid) \
         ELSE i.type END"
    )
}

/// The catalogs whose objects an extension may have as members: ACL column, owner column, and
/// the object type letter of `acldefault` (an expression of the row `y`).
const MEMBER_ACLS: [(&str, &str, &str, &str); 7] = [
    (
        "pg_class",
        "relacl",
        "relowner",
        "CASE y.relkind WHEN 'S' THEN 's' ELSE 'r' END",
    ),
    ("pg_proc", "proacl", "proowner", "'f'"),
    ("pg_type", "typacl", "typowner", "'T'"),
    ("pg_namespace", "nspacl", "nspowner", "'n'"),
    ("pg_foreign_data_wrapper", "fdwacl", "fdwowner", "'F'"),
    ("pg_foreign_server", "srvacl", "srvowner", "'S'"),
    ("pg_language", "lanacl", "lanowner", "'l'"),
];

/// The members (`pg_depend` deptype `e`) of the extensions `extension` (an SQL expression of an
/// extension's oid, or `ANY(...)` of a list) that have privileges: rows of (classid, objid,
/// owner, acl, base), `acl` their ACL and `base` the one they were created with
/// (`pg_init_privs`), each the object's default (`acldefault`) when null. pg_dump writes the
/// difference: REVOKE what is in `base` only, GRANT what is in `acl` only.
pub fn member_acls_sql(extension: &str) -> String {
    let members: Vec<String> = MEMBER_ACLS
        .iter()
        .map(|(catalog, acl, owner, kind)| {
            format!(
                "SELECT y.{acl} AS acl, y.{owner} AS owner, {kind}::\"char\" AS kind \
                 FROM pg_catalog.{catalog} y \
                 WHERE d.classid = 'pg_catalog.{catalog}'::pg_catalog.regclass AND y.oid = d.objid"
            )
        })
        .collect();
    format!(
        "SELECT d.classid, d.objid, m.owner, \
         coalesce(m.acl, pg_catalog.acldefault(m.kind, m.owner)) AS acl, \
         coalesce(ip.initprivs, pg_catalog.acldefault(m.kind, m.owner)) AS base \
         FROM pg_catalog.pg_depend d CROSS JOIN LATERAL ({}) m \
         LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = d.classid \
           AND ip.objoid = d.objid AND ip.objsubid = 0 \
         WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass \
         AND d.refobjid = {extension} AND d.deptype = 'e'",
        members.join(" UNION ALL ")
    )
}

/// Whether a member of the extension `x` has privileges, granted or revoked since its
/// creation, of a grantor other than its owner (a REVOKE or GRANT run by the restoring
/// superuser acts as the owner).
fn member_privileges_of_others_sql() -> String {
    format!(
        "EXISTS (SELECT 1 FROM ({}) m \
         CROSS JOIN LATERAL (\
           SELECT a FROM pg_catalog.unnest(m.acl) a WHERE NOT a = ANY(m.base) UNION ALL \
           SELECT b FROM pg_catalog.unnest(m.base) b WHERE NOT b = ANY(m.acl)) k(item) \
         CROSS JOIN LATERAL pg_catalog.aclexplode(ARRAY[k.item]) g \
         WHERE g.grantor <> m.owner)",
        member_acls_sql("x.oid")
    )
}

/// The properties of a supported kind that we do not reproduce, as a `text[]` expression.
fn unsupported_sql(version: ServerVersion) -> String {
    let v = version.num();
    let mut class = vec![
        (
            "c.relpersistence = 'u' AND c.relkind NOT IN ('r', 'i')",
            "unlogged",
        ),
        (
            "EXISTS (SELECT 1 FROM pg_catalog.pg_class t \
             WHERE t.oid = c.reltoastrelid AND t.reloptions IS NOT NULL)",
            "TOAST storage parameters",
        ),
        ("c.reltablespace <> 0", "tablespace"),
        ("c.reloftype <> 0", "typed table"),
        (
            "NOT c.relispartition AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute x \
             JOIN pg_catalog.pg_attribute y ON y.attrelid = x.attrelid AND y.attnum > x.attnum \
               AND NOT y.attisdropped \
             WHERE x.attrelid = c.oid AND x.attnum > 0 AND NOT x.attisdropped \
             AND coalesce((SELECT min(h.inhseqno * 10000 + p.attnum) \
               FROM pg_catalog.pg_inherits h JOIN pg_catalog.pg_attribute p \
               ON p.attrelid = h.inhparent AND p.attname = x.attname AND NOT p.attisdropped \
               WHERE h.inhrelid = x.attrelid), 2147483647) \
             > coalesce((SELECT min(h.inhseqno * 10000 + p.attnum) \
               FROM pg_catalog.pg_inherits h JOIN pg_catalog.pg_attribute p \
               ON p.attrelid = h.inhparent AND p.attname = y.attname AND NOT p.attisdropped \
               WHERE h.inhrelid = y.attrelid), 2147483647))",
            "columns in an order INHERITS does not make (ALTER TABLE ... INHERIT)",
        ),
        (
            "EXISTS (SELECT 1 FROM pg_catalog.pg_index x \
             WHERE x.indexrelid = c.oid AND NOT (x.indisvalid AND x.indisready))",
            "invalid index",
        ),
        (
            "EXISTS (SELECT 1 FROM pg_catalog.aclexplode(c.relacl) g \
             WHERE g.grantor <> c.relowner)",
            "privilege granted by a role other than the owner",
        ),
        (
            "EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             AND a.attacl IS NOT NULL AND (pg_catalog.cardinality(a.attacl) = 0 \
               OR EXISTS (SELECT 1 FROM pg_catalog.aclexplode(a.attacl) g \
                 WHERE g.grantor <> c.relowner)))",
            "column privileges emptied or granted by a role other than the owner",
        ),
        (
            "c.relkind NOT IN ('r', 'p') AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attoptions IS NOT NULL)",
            "column options",
        ),
        (
            "c.relkind NOT IN ('i', 'I', 'r', 'p') AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             AND (a.attstorage <> t.typstorage OR a.attcollation <> t.typcollation))",
            "column storage or collation",
        ),
        (
            "EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
             JOIN pg_catalog.pg_class q ON q.oid = d.objid \
             JOIN pg_catalog.pg_sequence s ON s.seqrelid = q.oid \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid \
             WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass \
             AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass \
             AND d.refobjid = c.oid AND d.deptype = 'i' AND q.relkind = 'S' \
             AND (q.relacl IS NOT NULL OR s.seqtypid <> a.atttypid \
               OR q.relpersistence <> c.relpersistence \
               OR pg_catalog.obj_description(q.oid, 'pg_class') IS NOT NULL))",
            "identity sequence with privileges, a comment or its own type",
        ),
        (
            "EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
             JOIN pg_catalog.pg_class x ON x.oid = t.typrelid \
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             AND x.relkind <> 'c')",
            "column of the row type of a table or view",
        ),
    ];
    class.push(match v >= 170000 {
        true => (
            "c.relkind NOT IN ('r', 'p') AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attstattarget IS NOT NULL)",
            "column statistics target",
        ),
        false => (
            "c.relkind NOT IN ('r', 'p') AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attstattarget <> -1)",
            "column statistics target",
        ),
    });
    if v < 120000 {
        class.push(("c.relhasoids", "WITH OIDS"));
    } else {
        class.push((
            "EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             AND a.attgenerated NOT IN ('', 's'))",
            "virtual generated column",
        ));
        class.push((
            "c.relkind IN ('r', 'm') AND c.relam <> \
             (SELECT m.oid FROM pg_catalog.pg_am m WHERE m.amname = 'heap')",
            "table access method",
        ));
    }
    if v >= 140000 {
        class.push((
            "c.relkind NOT IN ('r', 'p') AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attcompression <> '')",
            "column compression",
        ));
    }
    let mut proc = vec![
        (
            "EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
             JOIN pg_catalog.pg_type t ON t.oid = d.refobjid \
             WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid \
             AND d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass \
             AND EXISTS (SELECT 1 FROM pg_catalog.pg_type e \
               JOIN pg_catalog.pg_class x ON x.oid = e.typrelid \
               WHERE e.oid IN (t.oid, t.typelem) AND x.relkind <> 'c'))",
            "uses the row type of a table or view",
        ),
        (
            "EXISTS (SELECT 1 FROM pg_catalog.aclexplode(p.proacl) g \
             WHERE g.grantor <> p.proowner)",
            "privilege granted by a role other than the owner",
        ),
    ];
    if v >= 140000 {
        proc.push(("p.prosqlbody IS NOT NULL", "SQL-standard body"));
    }
    let constraint = [
        (
            "k.contype = 'n' AND ((k.conname <> \
             (SELECT r.relname || '_' || a.attname || '_not_null' \
              FROM pg_catalog.pg_class r JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid \
              WHERE r.oid = k.conrelid AND a.attnum = k.conkey[1]) AND k.coninhcount = 0) \
             OR NOT k.convalidated OR k.connoinherit)",
            "named, NOT VALID or NO INHERIT",
        ),
        (
            "EXISTS (SELECT 1 FROM pg_catalog.pg_class x \
             WHERE x.oid = k.conindid AND k.contype IN ('p', 'u', 'x') \
             AND (x.reltablespace <> 0 OR x.reloptions IS NOT NULL))",
            "index tablespace or options",
        ),
        (
            "k.contypid <> 0 AND k.contype = 'n' AND (NOT k.convalidated \
             OR k.conname <> (SELECT y.typname || '_not_null' FROM pg_catalog.pg_type y \
               WHERE y.oid = k.contypid) \
             OR pg_catalog.obj_description(k.oid, 'pg_constraint') IS NOT NULL)",
            "named, NOT VALID or commented NOT NULL of a domain",
        ),
    ];
    let namespace = [(
        "EXISTS (SELECT 1 FROM pg_catalog.aclexplode(n.nspacl) g WHERE g.grantor <> n.nspowner)",
        "privilege granted by a role other than the owner",
    )];
    let mut types = vec![
        (
            "EXISTS (SELECT 1 FROM pg_catalog.aclexplode(t.typacl) g \
             WHERE g.grantor <> t.typowner)",
            "privilege granted by a role other than the owner",
        ),
        (
            "EXISTS (SELECT 1 FROM pg_catalog.pg_type a \
             WHERE a.oid = t.typarray AND a.typacl IS NOT NULL)",
            "privileges on its array type",
        ),
        (
            "EXISTS (SELECT 1 FROM pg_catalog.pg_range r WHERE r.rngtypid = t.oid \
             AND (r.rngcanonical::pg_catalog.oid >= 16384 OR r.rngsubdiff::pg_catalog.oid >= 16384))",
            "a canonical or subtype_diff function of its own",
        ),
        (
            "EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
             JOIN pg_catalog.pg_type u ON u.oid = d.refobjid \
             LEFT JOIN pg_catalog.pg_type e ON e.oid = u.typelem \
             WHERE d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass \
             AND ((d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.objid = t.oid) \
               OR (t.typrelid <> 0 AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass \
                 AND d.objid = t.typrelid)) \
             AND EXISTS (SELECT 1 FROM pg_catalog.pg_class x \
               WHERE x.oid IN (u.typrelid, e.typrelid) AND x.relkind <> 'c'))",
            "uses the row type of a table or view",
        ),
    ];
    if v >= 140000 {
        types.push((
            "EXISTS (SELECT 1 FROM pg_catalog.pg_range r \
             JOIN pg_catalog.pg_type m ON m.oid = r.rngmultitypid WHERE r.rngtypid = t.oid \
             AND (m.typacl IS NOT NULL OR m.typowner <> t.typowner))",
            "privileges or owner of its multirange type",
        ));
    }
    let trigger: [(&str, &str); 0] = [];
    let member_privileges = member_privileges_of_others_sql();
    let extension = [
        (
            "EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
             WHERE c.oid = ANY(x.extconfig) AND c.relkind = 'm')",
            "materialized view as a configuration table",
        ),
        (
            member_privileges.as_str(),
            "privileges on its members granted or revoked by a role other than their owner",
        ),
        (
            "EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = d.objid \
             LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = d.classid \
               AND ip.objoid = d.objid AND ip.objsubid = a.attnum \
             WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass \
             AND d.refobjid = x.oid AND d.deptype = 'e' \
             AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND a.attnum > 0 \
             AND a.attacl IS DISTINCT FROM ip.initprivs)",
            "column privileges changed on its members",
        ),
    ];
    let rule: [(&str, &str); 0] = [];
    let array = |table: &str, alias: &str, checks: &[(&str, &str)]| {
        let items: Vec<String> = checks
            .iter()
            .map(|(condition, name)| format!("CASE WHEN {condition} THEN '{name}' END"))
            .collect();
        format!(
            "(SELECT pg_catalog.array_remove(ARRAY[{}]::text[], NULL) \
             FROM pg_catalog.{table} {alias} WHERE {alias}.oid = o.objid)",
            items.join(", ")
        )
    };
    format!(
        "CASE o.catalog WHEN 'pg_class' THEN {} WHEN 'pg_proc' THEN {} \
         WHEN 'pg_constraint' THEN {} WHEN 'pg_namespace' THEN {} WHEN 'pg_type' THEN {} \
         WHEN 'pg_trigger' THEN {} WHEN 'pg_extension' THEN {} WHEN 'pg_rewrite' THEN {} \
         ELSE '{{}}'::text[] END",
        array("pg_class", "c", &class),
        array("pg_proc", "p", &proc),
        array("pg_constraint", "k", &constraint),
        array("pg_namespace", "n", &namespace),
        array("pg_type", "t", &types),
        array("pg_trigger", "g", &trigger),
        array("pg_extension", "x", &extension),
        array("pg_rewrite", "r", &rule),
    )
}

/// The inventory of the database, from the catalogs [`CATALOGS_WITH_OIDS_SQL`] listed: rows of
/// (catalog, oid, kind, identity, unsupported properties).
pub fn inventory_sql(version: ServerVersion, catalogs: &[String]) -> String {
    let sources: Vec<String> = catalogs
        .iter()
        .filter(|name| !PART_CATALOGS.contains(&name.as_str()))
        .map(|name| {
            // A large object's oid may be any the user chose; its class is pg_largeobject.
            let (class, filter) = match name.as_str() {
                "pg_largeobject_metadata" => ("pg_largeobject", ""),
                _ => (name.as_str(), " WHERE oid >= 16384"),
            };
            format!(
                "SELECT '{name}'::text AS catalog, 'pg_catalog.{class}'::pg_catalog.regclass::oid \
                 AS classid, oid AS objid FROM pg_catalog.{name}{filter}"
            )
        })
        .collect();
    format!(
        "WITH o AS ({sources}) \
         SELECT o.catalog, o.objid, ({kind})::text AS kind, \
         coalesce(i.identity, pg_catalog.pg_describe_object(o.classid, o.objid, 0)) AS identity, \
         ({unsupported}) AS unsupported \
         FROM o CROSS JOIN LATERAL pg_catalog.pg_identify_object(o.classid, o.objid, 0) i \
         WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = o.classid \
           AND d.objid = o.objid AND d.objsubid = 0 AND (d.deptype IN ('i', 'e') \
             OR (o.catalog <> 'pg_policy' AND d.deptype = 'a' \
               AND EXISTS (SELECT 1 FROM pg_catalog.pg_depend x WHERE x.classid = d.refclassid \
                 AND x.objid = d.refobjid AND x.deptype = 'e')))) \
         AND coalesce(i.schema, '') !~ '^pg_(toast|temp_[0-9]+|toast_temp_[0-9]+)$' \
         AND NOT (o.catalog = 'pg_namespace' \
           AND i.identity ~ '^pg_(toast|temp_[0-9]+|toast_temp_[0-9]+)$') \
         ORDER BY o.catalog, o.objid",
        sources = sources.join(" UNION ALL "),
        kind = kind_sql(version),
        unsupported = unsupported_sql(version),
    )
}

/// Changes to what initdb made, which pg_dump reproduces and we do not yet: privileges changed
/// on a system object (but the `public` schema's: `public_schema` writes them), security
/// labels, a dropped or renamed `public` schema, one with no ACL or a privilege granted by a
/// role other than its owner; rows of (kind, identity).
pub const SYSTEM_CHANGES_SQL: &str = "SELECT 'privileges on a system object'::text, \
           pg_catalog.pg_describe_object(s.classid, s.objid, s.objsubid) \
         FROM (SELECT 'pg_catalog.pg_class'::pg_catalog.regclass::oid AS classid, c.oid AS objid, \
                 0 AS objsubid, c.relacl AS acl, c.relnamespace::pg_catalog.regnamespace::text \
                 AS schema FROM pg_catalog.pg_class c WHERE c.oid < 16384 \
               UNION ALL SELECT 'pg_catalog.pg_class'::pg_catalog.regclass::oid, a.attrelid, \
                 a.attnum, a.attacl, c.relnamespace::pg_catalog.regnamespace::text \
                 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                 WHERE a.attrelid < 16384 AND a.attacl IS NOT NULL \
               UNION ALL SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass::oid, p.oid, 0, p.proacl, \
                 p.pronamespace::pg_catalog.regnamespace::text \
                 FROM pg_catalog.pg_proc p WHERE p.oid < 16384 \
               UNION ALL SELECT 'pg_catalog.pg_namespace'::pg_catalog.regclass::oid, n.oid, 0, \
                 n.nspacl, n.nspname::text FROM pg_catalog.pg_namespace n \
                 WHERE n.oid < 16384 AND n.oid <> 2200 \
               UNION ALL SELECT 'pg_catalog.pg_type'::pg_catalog.regclass::oid, t.oid, 0, t.typacl, \
                 t.typnamespace::pg_catalog.regnamespace::text \
                 FROM pg_catalog.pg_type t WHERE t.oid < 16384 \
               UNION ALL SELECT 'pg_catalog.pg_language'::pg_catalog.regclass::oid, l.oid, 0, \
                 l.lanacl, '' FROM pg_catalog.pg_language l WHERE l.oid < 16384) s \
         LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = s.classid \
           AND ip.objoid = s.objid AND ip.objsubid = s.objsubid \
         WHERE s.acl IS DISTINCT FROM ip.initprivs AND s.schema <> 'information_schema' \
         UNION ALL SELECT 'security label', pg_catalog.pg_describe_object(l.classoid, l.objoid, \
           l.objsubid) FROM pg_catalog.pg_seclabel l \
         UNION ALL SELECT 'schema', 'public (dropped)' WHERE NOT EXISTS \
           (SELECT 1 FROM pg_catalog.pg_namespace WHERE oid = 2200) \
         UNION ALL SELECT 'schema', 'public (renamed, without an ACL, or a privilege granted by \
           a role other than its owner)' \
           FROM pg_catalog.pg_namespace n WHERE n.oid = 2200 AND (n.nspname <> 'public' \
           OR n.nspacl IS NULL OR EXISTS (SELECT 1 FROM pg_catalog.aclexplode(n.nspacl) g \
             WHERE g.grantor <> n.nspowner)) \
         UNION ALL SELECT 'subscription', pg_catalog.quote_ident(s.subname) \
           FROM pg_catalog.pg_subscription s WHERE s.subdbid = \
           (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database())";

#[cfg(test)]
mod tests {
    #[test]
    fn an_extension_members_acl_is_read_from_its_own_catalog() {
        let sql = member_acls_sql("x.oid");
        for (catalog, acl, owner, _) in MEMBER_ACLS {
            let case = format!("SELECT y.{acl} AS acl, y.{owner} AS owner, ");
            assert_eq!(sql.matches(&case).count(), 1, "{case}\n{sql}");
            let of_catalog = format!(
                "FROM pg_catalog.{catalog} y \
                 WHERE d.classid = 'pg_catalog.{catalog}'::pg_catalog.regclass AND y.oid = d.objid"
            );
            assert_eq!(sql.matches(&of_catalog).count(), 1, "{of_catalog}\n{sql}");
        }
        assert_eq!(sql.matches(" UNION ALL ").count(), MEMBER_ACLS.len() - 1);
        assert!(
            sql.contains("AND d.refobjid = x.oid AND d.deptype = 'e'"),
            "{sql}"
        );
        assert!(sql.contains("CASE y.relkind WHEN 'S' THEN 's' ELSE 'r' END::\"char\""));
        assert!(!sql.contains("  "), "{sql}");
        let others = member_privileges_of_others_sql();
        assert!(others.contains("WHERE g.grantor <> m.owner)"), "{others}");
        assert!(!others.contains("  "), "{others}");
    }

    #[test]
    fn a_refusal_is_one_line_whatever_the_name() {
        let refusal = Refusal {
            kind: "table".into(),
            identity: "public.\"a\nb\"".into(),
            reasons: Vec::new(),
        };
        assert_eq!(
            refusal.to_string(),
            "table public.\"a\\nb\" (kind not supported)"
        );
    }

    use super::*;

    fn object(kind: &str, unsupported: &[&str]) -> InventoryObject {
        InventoryObject {
            catalog: "pg_class".into(),
            oid: 16400,
            kind: kind.into(),
            identity: "public.t".into(),
            unsupported: unsupported.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn unsupported_kinds_and_properties_are_refused_by_name() {
        let inventory = classify(vec![
            object("table", &[]),
            object("cast", &[]),
            object("table", &["unlogged", "tablespace"]),
        ]);
        assert_eq!(inventory.objects, vec![object("table", &[])]);
        let lines: Vec<String> = inventory.refusals.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            lines,
            [
                "cast public.t (kind not supported)",
                "table public.t (unlogged, tablespace)"
            ]
        );
        assert_eq!(inventory.oids("table"), vec![16400]);
    }

    #[test]
    fn every_catalog_is_read_but_enum_labels_and_large_objects_have_no_oid_floor() {
        let catalogs: Vec<String> = ["pg_class", "pg_enum", "pg_largeobject_metadata"]
            .map(String::from)
            .to_vec();
        let sql = inventory_sql(ServerVersion(180000), &catalogs);
        assert!(sql.contains("FROM pg_catalog.pg_class WHERE oid >= 16384"));
        assert!(!sql.contains("FROM pg_catalog.pg_enum"));
        assert!(
            sql.contains("FROM pg_catalog.pg_largeobject_metadata UNION ALL")
                || sql.contains("FROM pg_catalog.pg_largeobject_metadata)")
        );
        assert!(sql.contains("a.attstattarget IS NOT NULL"));
        assert!(sql.contains("p.prokind"));
    }

    #[test]
    fn version_specific_properties() {
        let ten = inventory_sql(ServerVersion(100023), &["pg_class".into()]);
        assert!(ten.contains("c.relhasoids"));
        assert!(ten.contains("p.proisagg"));
        assert!(!ten.contains("attcompression"));
        assert!(!ten.contains("prosqlbody"));
        assert!(ten.contains("a.attstattarget <> -1"));
        assert!(ten.contains("an order INHERITS does not make"));
        assert!(!ten.contains("identity column in a partitioned table"));
        assert!(ten.contains("materialized view as a configuration table"));
        assert!(!ten.contains("x.extconfig IS NOT NULL"));
        let fourteen = inventory_sql(ServerVersion(140000), &["pg_class".into()]);
        assert!(fourteen.contains("attcompression") && fourteen.contains("prosqlbody"));
        let public = SYSTEM_CHANGES_SQL;
        assert!(public.contains("n.oid < 16384 AND n.oid <> 2200"));
        assert!(public.contains("public (renamed, without an ACL"));
    }
}
