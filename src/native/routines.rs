//! Procedures (11+, `pg_get_functiondef`) and aggregates, which no server function writes:
//! `CREATE AGGREGATE` is built here from `pg_aggregate` (normal, ordered-set and hypothetical;
//! moving-aggregate support; `FINALFUNC_MODIFY` from 11 on), written after the functions they
//! use; then their owners, privileges and comments. Every overload is its own object.

use tokio_postgres::Client;

use super::ddl;
use super::error::{query, NativeError};
use super::inventory::Inventory;
use super::objects::{self, Owned};
use super::output::SqlWriter;
use crate::server::{quote_literal, ServerVersion};

/// An aggregate, as `pg_aggregate` and `pg_proc` describe it. Functions are qualified and
/// quoted (`pg_catalog.int4pl`), types `format_type`'s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Aggregate {
    /// Its oid.
    pub oid: u32,
    /// Quoted, qualified name.
    pub name: String,
    /// `pg_get_function_arguments` (`ORDER BY` included for ordered-set ones); empty for `*`.
    pub arguments: String,
    /// `pg_get_function_identity_arguments`, for `ALTER` and `COMMENT`.
    pub identity_arguments: String,
    /// Its `regprocedure` (`GRANT ... ON FUNCTION` takes every argument in one list).
    pub procedure: String,
    /// Quoted owner.
    pub owner: String,
    /// Whether its ACL is set.
    pub has_acl: bool,
    /// `aggkind`: `n` normal, `o` ordered-set, `h` hypothetical-set.
    pub kind: String,
    /// SFUNC.
    pub sfunc: String,
    /// STYPE.
    pub stype: String,
    /// SSPACE (0: not set).
    pub sspace: i32,
    /// FINALFUNC.
    pub finalfunc: Option<String>,
    /// FINALFUNC_EXTRA.
    pub finalfunc_extra: bool,
    /// FINALFUNC_MODIFY (`r`, `s`, `w`; 11+).
    pub finalfunc_modify: Option<String>,
    /// COMBINEFUNC.
    pub combinefunc: Option<String>,
    /// SERIALFUNC.
    pub serialfunc: Option<String>,
    /// DESERIALFUNC.
    pub deserialfunc: Option<String>,
    /// INITCOND.
    pub initcond: Option<String>,
    /// MSFUNC.
    pub msfunc: Option<String>,
    /// MINVFUNC.
    pub minvfunc: Option<String>,
    /// MSTYPE.
    pub mstype: Option<String>,
    /// MSSPACE (0: not set).
    pub msspace: i32,
    /// MFINALFUNC.
    pub mfinalfunc: Option<String>,
    /// MFINALFUNC_EXTRA.
    pub mfinalfunc_extra: bool,
    /// MFINALFUNC_MODIFY (11+).
    pub mfinalfunc_modify: Option<String>,
    /// MINITCOND.
    pub minitcond: Option<String>,
    /// SORTOP, as `OPERATOR(schema.op)`.
    pub sortop: Option<String>,
    /// `proparallel`: `s`, `r` or `u` (the default).
    pub parallel: String,
}

impl Aggregate {
    /// `name(identity arguments)`, or `name(*)`.
    pub fn signature(&self) -> String {
        format!("{}({})", self.name, star(&self.identity_arguments))
    }
}

fn star(arguments: &str) -> &str {
    match arguments.is_empty() {
        true => "*",
        false => arguments,
    }
}

fn modify_word(code: &str) -> &'static str {
    match code {
        "s" => "SHAREABLE",
        "w" => "READ_WRITE",
        _ => "READ_ONLY",
    }
}

/// `CREATE AGGREGATE` with every parameter that differs from what the server would choose.
pub fn create_aggregate(a: &Aggregate) -> String {
    // The server's default FINALFUNC_MODIFY: READ_ONLY for normal aggregates, READ_WRITE else.
    let default_modify = match a.kind.as_str() {
        "n" => "r",
        _ => "w",
    };
    let modify = |code: &Option<String>| {
        code.as_deref()
            .filter(|m| *m != default_modify)
            .map(|m| modify_word(m).to_string())
    };
    let space = |bytes: i32| (bytes != 0).then(|| bytes.to_string());
    let flag = |on: bool| on.then(String::new);
    let parallel = match a.parallel.as_str() {
        "s" => Some("SAFE".to_string()),
        "r" => Some("RESTRICTED".to_string()),
        _ => None,
    };
    let parameters = [
        ("SFUNC", Some(a.sfunc.clone())),
        ("STYPE", Some(a.stype.clone())),
        ("SSPACE", space(a.sspace)),
        ("FINALFUNC", a.finalfunc.clone()),
        ("FINALFUNC_EXTRA", flag(a.finalfunc_extra)),
        ("FINALFUNC_MODIFY", modify(&a.finalfunc_modify)),
        ("COMBINEFUNC", a.combinefunc.clone()),
        ("SERIALFUNC", a.serialfunc.clone()),
        ("DESERIALFUNC", a.deserialfunc.clone()),
        ("INITCOND", a.initcond.as_deref().map(quote_literal)),
        ("MSFUNC", a.msfunc.clone()),
        ("MINVFUNC", a.minvfunc.clone()),
        ("MSTYPE", a.mstype.clone()),
        ("MSSPACE", space(a.msspace)),
        ("MFINALFUNC", a.mfinalfunc.clone()),
        ("MFINALFUNC_EXTRA", flag(a.mfinalfunc_extra)),
        (
            "MFINALFUNC_MODIFY",
            a.msfunc.as_ref().and_then(|_| modify(&a.mfinalfunc_modify)),
        ),
        ("MINITCOND", a.minitcond.as_deref().map(quote_literal)),
        ("SORTOP", a.sortop.clone()),
        ("PARALLEL", parallel),
        ("HYPOTHETICAL", flag(a.kind == "h")),
    ];
    let items: Vec<String> = parameters
        .into_iter()
        .filter_map(|(name, value)| {
            value.map(|value| match value.is_empty() {
                true => name.to_string(),
                false => format!("{name} = {value}"),
            })
        })
        .collect();
    format!(
        "CREATE AGGREGATE {}({}) (\n    {}\n);\n\n",
        a.name,
        star(&a.arguments),
        items.join(",\n    ")
    )
}

/// The aggregates of `$1`, in oid order; `FINALFUNC_MODIFY` exists from 11 on.
pub fn aggregates_sql(version: ServerVersion) -> String {
    let (modify, mmodify) = match version.num() >= 110000 {
        true => ("a.aggfinalmodify::text", "a.aggmfinalmodify::text"),
        false => ("NULL::text", "NULL::text"),
    };
    let function = |column: &str| {
        format!(
            "(SELECT pg_catalog.format('%I.%I', n.nspname, f.proname) \
             FROM pg_catalog.pg_proc f JOIN pg_catalog.pg_namespace n ON n.oid = f.pronamespace \
             WHERE f.oid = a.{column})"
        )
    };
    format!(
        "SELECT p.oid, pg_catalog.format('%I.%I', pn.nspname, p.proname), \
         pg_catalog.pg_get_function_arguments(p.oid), \
         pg_catalog.pg_get_function_identity_arguments(p.oid), \
         p.oid::pg_catalog.regprocedure::text, \
         pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(p.proowner)), p.proacl IS NOT NULL, \
         a.aggkind::text, {sfunc}, pg_catalog.format_type(a.aggtranstype, NULL), \
         a.aggtransspace, {finalfunc}, a.aggfinalextra, {modify}, {combinefunc}, \
         {serialfunc}, {deserialfunc}, a.agginitval, {msfunc}, {minvfunc}, \
         CASE WHEN a.aggmtranstype <> 0 THEN pg_catalog.format_type(a.aggmtranstype, NULL) END, \
         a.aggmtransspace, {mfinalfunc}, a.aggmfinalextra, {mmodify}, a.aggminitval, \
         (SELECT pg_catalog.format('OPERATOR(%I.%s)', n.nspname, o.oprname) \
          FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace \
          WHERE o.oid = a.aggsortop), p.proparallel::text \
         FROM pg_catalog.pg_aggregate a JOIN pg_catalog.pg_proc p ON p.oid = a.aggfnoid \
         JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
         WHERE p.oid = ANY($1) ORDER BY p.oid",
        sfunc = function("aggtransfn"),
        finalfunc = function("aggfinalfn"),
        combinefunc = function("aggcombinefn"),
        serialfunc = function("aggserialfn"),
        deserialfunc = function("aggdeserialfn"),
        msfunc = function("aggmtransfn"),
        minvfunc = function("aggminvtransfn"),
        mfinalfunc = function("aggmfinalfn"),
    )
}

async fn aggregates(
    client: &Client,
    version: ServerVersion,
    list: &[u32],
) -> Result<Vec<Aggregate>, NativeError> {
    let what = "reading aggregates";
    let rows = client
        .query(&aggregates_sql(version), &[&list.to_vec()])
        .await
        .map_err(query(what))?;
    let read = |row: &tokio_postgres::Row| -> Result<Aggregate, tokio_postgres::Error> {
        Ok(Aggregate {
            oid: row.try_get(0)?,
            name: row.try_get(1)?,
            arguments: row.try_get(2)?,
            identity_arguments: row.try_get(3)?,
            procedure: row.try_get(4)?,
            owner: row.try_get(5)?,
            has_acl: row.try_get(6)?,
            kind: row.try_get(7)?,
            sfunc: row.try_get(8)?,
            stype: row.try_get(9)?,
            sspace: row.try_get(10)?,
            finalfunc: row.try_get(11)?,
            finalfunc_extra: row.try_get(12)?,
            finalfunc_modify: row.try_get(13)?,
            combinefunc: row.try_get(14)?,
            serialfunc: row.try_get(15)?,
            deserialfunc: row.try_get(16)?,
            initcond: row.try_get(17)?,
            msfunc: row.try_get(18)?,
            minvfunc: row.try_get(19)?,
            mstype: row.try_get(20)?,
            msspace: row.try_get(21)?,
            mfinalfunc: row.try_get(22)?,
            mfinalfunc_extra: row.try_get(23)?,
            mfinalfunc_modify: row.try_get(24)?,
            minitcond: row.try_get(25)?,
            sortop: row.try_get(26)?,
            parallel: row.try_get(27)?,
        })
    };
    rows.iter()
        .map(|row| read(row).map_err(query(what)))
        .collect()
}

/// The procedures and aggregates written by [`create`], for [`ownership`].
#[derive(Debug, Default)]
pub struct Routines {
    procedures: Vec<Owned>,
    aggregates: Vec<Aggregate>,
}

/// Writes the procedures, then the aggregates (after the functions they use).
pub async fn create(
    client: &Client,
    version: ServerVersion,
    inventory: &Inventory,
    marker: &str,
    out: &mut SqlWriter,
) -> Result<Routines, NativeError> {
    let procedures = objects::functions(client, &inventory.oids("procedure")).await?;
    for procedure in &procedures {
        let title = format!("procedure {}", procedure.name);
        out.text(&ddl::section(marker, &title)).await?;
        out.text(procedure.definition.trim_end()).await?;
        out.text(";\n\n").await?;
    }
    let aggregates = aggregates(client, version, &inventory.oids("aggregate")).await?;
    if !aggregates.is_empty() {
        out.text(&ddl::batch_line(marker)).await?;
    }
    for aggregate in &aggregates {
        out.text(&create_aggregate(aggregate)).await?;
    }
    Ok(Routines {
        procedures,
        aggregates,
    })
}

/// `COMMENT ON PROCEDURE` of `$1` and `COMMENT ON AGGREGATE` of `$2` (signed as
/// [`Aggregate::signature`]).
const COMMENTS_SQL: &str = "SELECT pg_catalog.format('COMMENT ON PROCEDURE %s IS %L;', \
      d.objoid::pg_catalog.regprocedure, d.description) \
    FROM pg_catalog.pg_description d \
    WHERE d.classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objoid = ANY($1) \
    UNION ALL SELECT pg_catalog.format('COMMENT ON AGGREGATE %I.%I(%s) IS %L;', n.nspname, \
      p.proname, coalesce(NULLIF(pg_catalog.pg_get_function_identity_arguments(p.oid), ''), '*'), \
      d.description) \
    FROM pg_catalog.pg_description d JOIN pg_catalog.pg_proc p ON p.oid = d.objoid \
    JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
    WHERE d.classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND p.oid = ANY($2)";

/// Writes the owners, privileges and comments of the procedures and aggregates.
pub async fn ownership(
    client: &Client,
    routines: &Routines,
    out: &mut SqlWriter,
) -> Result<(), NativeError> {
    for procedure in &routines.procedures {
        out.text(&format!(
            "ALTER PROCEDURE {} OWNER TO {};\n",
            procedure.name, procedure.owner
        ))
        .await?;
    }
    for aggregate in &routines.aggregates {
        out.text(&format!(
            "ALTER AGGREGATE {} OWNER TO {};\n",
            aggregate.signature(),
            aggregate.owner
        ))
        .await?;
    }
    // Privileges: a procedure's ON PROCEDURE, an aggregate's ON FUNCTION (as pg_dump writes).
    let with_acl: Vec<(u32, &str, &str, &str)> = routines
        .procedures
        .iter()
        .filter(|p| p.has_acl)
        .map(|p| (p.oid, "PROCEDURE", p.name.as_str(), p.owner.as_str()))
        .chain(
            routines
                .aggregates
                .iter()
                .filter(|a| a.has_acl)
                .map(|a| (a.oid, "FUNCTION", a.procedure.as_str(), a.owner.as_str())),
        )
        .collect();
    if !with_acl.is_empty() {
        let oids: Vec<u32> = with_acl.iter().map(|(oid, ..)| *oid).collect();
        let grants = objects::grants(client, "pg_proc", &oids).await?;
        for (oid, object_type, name, owner) in with_acl {
            let granted = grants.get(&oid).map(Vec::as_slice).unwrap_or(&[]);
            out.text(&ddl::privileges(object_type, name, owner, granted))
                .await?;
        }
    }
    let procedures: Vec<u32> = routines.procedures.iter().map(|p| p.oid).collect();
    let aggregates: Vec<u32> = routines.aggregates.iter().map(|a| a.oid).collect();
    let what = "reading the comments of procedures and aggregates";
    for row in client
        .query(COMMENTS_SQL, &[&procedures, &aggregates])
        .await
        .map_err(query(what))?
    {
        let comment: String = row.try_get(0).map_err(query(what))?;
        out.text(&format!("{comment}\n")).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum() -> Aggregate {
        Aggregate {
            name: "app.\"Sum\"".into(),
            arguments: "integer".into(),
            identity_arguments: "integer".into(),
            kind: "n".into(),
            sfunc: "pg_catalog.int4pl".into(),
            stype: "integer".into(),
            finalfunc_modify: Some("r".into()),
            mfinalfunc_modify: Some("r".into()),
            parallel: "u".into(),
            ..Aggregate::default()
        }
    }

    #[test]
    fn a_plain_aggregate_says_only_what_differs_from_the_defaults() {
        assert_eq!(
            create_aggregate(&sum()),
            "CREATE AGGREGATE app.\"Sum\"(integer) (\n    SFUNC = pg_catalog.int4pl,\n    STYPE = integer\n);\n\n"
        );
        assert_eq!(sum().signature(), "app.\"Sum\"(integer)");
        let star = Aggregate {
            arguments: String::new(),
            identity_arguments: String::new(),
            ..sum()
        };
        assert!(create_aggregate(&star).starts_with("CREATE AGGREGATE app.\"Sum\"(*) ("));
        assert_eq!(star.signature(), "app.\"Sum\"(*)");
    }

    #[test]
    fn every_parameter_is_written() {
        let full = Aggregate {
            sspace: 16,
            finalfunc: Some("app.fin".into()),
            finalfunc_extra: true,
            finalfunc_modify: Some("s".into()),
            combinefunc: Some("app.comb".into()),
            serialfunc: Some("app.ser".into()),
            deserialfunc: Some("app.deser".into()),
            initcond: Some("it's".into()),
            msfunc: Some("app.mfwd".into()),
            minvfunc: Some("app.minv".into()),
            mstype: Some("bigint".into()),
            msspace: 8,
            mfinalfunc: Some("app.mfin".into()),
            mfinalfunc_extra: true,
            mfinalfunc_modify: Some("w".into()),
            minitcond: Some("0".into()),
            sortop: Some("OPERATOR(pg_catalog.>)".into()),
            parallel: "s".into(),
            ..sum()
        };
        assert_eq!(
            create_aggregate(&full),
            "CREATE AGGREGATE app.\"Sum\"(integer) (\n    SFUNC = pg_catalog.int4pl,\n    \
             STYPE = integer,\n    SSPACE = 16,\n    FINALFUNC = app.fin,\n    FINALFUNC_EXTRA,\n    \
             FINALFUNC_MODIFY = SHAREABLE,\n    COMBINEFUNC = app.comb,\n    SERIALFUNC = app.ser,\n    \
             DESERIALFUNC = app.deser,\n    INITCOND = 'it''s',\n    MSFUNC = app.mfwd,\n    \
             MINVFUNC = app.minv,\n    MSTYPE = bigint,\n    MSSPACE = 8,\n    MFINALFUNC = app.mfin,\n    \
             MFINALFUNC_EXTRA,\n    MFINALFUNC_MODIFY = READ_WRITE,\n    MINITCOND = '0',\n    \
             SORTOP = OPERATOR(pg_catalog.>),\n    PARALLEL = SAFE\n);\n\n"
        );
    }

    #[test]
    fn ordered_set_and_hypothetical_aggregates() {
        let ordered = Aggregate {
            arguments: "double precision ORDER BY integer".into(),
            identity_arguments: "double precision ORDER BY integer".into(),
            kind: "o".into(),
            finalfunc_modify: Some("w".into()),
            parallel: "r".into(),
            ..sum()
        };
        let sql = create_aggregate(&ordered);
        assert!(
            sql.starts_with("CREATE AGGREGATE app.\"Sum\"(double precision ORDER BY integer) (")
        );
        assert!(
            !sql.contains("FINALFUNC_MODIFY"),
            "READ_WRITE is their default: {sql}"
        );
        assert!(sql.contains("PARALLEL = RESTRICTED") && !sql.contains("HYPOTHETICAL"));
        let read_only = Aggregate {
            finalfunc_modify: Some("r".into()),
            ..ordered.clone()
        };
        assert!(create_aggregate(&read_only).contains("FINALFUNC_MODIFY = READ_ONLY"));
        let hypothetical = Aggregate {
            kind: "h".into(),
            ..ordered
        };
        assert!(create_aggregate(&hypothetical).ends_with(",\n    HYPOTHETICAL\n);\n\n"));
    }

    #[test]
    fn finalfunc_modify_is_read_from_11_on() {
        assert!(aggregates_sql(ServerVersion(100023)).contains("NULL::text, "));
        assert!(!aggregates_sql(ServerVersion(100023)).contains("aggfinalmodify"));
        let eleven = aggregates_sql(ServerVersion(110000));
        assert!(eleven.contains("a.aggfinalmodify::text") && eleven.contains("a.aggmfinalmodify"));
    }
}
