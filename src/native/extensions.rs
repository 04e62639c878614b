//! Extensions: `CREATE EXTENSION name WITH SCHEMA s VERSION 'v'`, each after the extensions
//! it requires, and their comments; never their member objects (the inventory leaves out
//! `pg_depend` deptype `e` members). Their configuration tables' rows are written with the
//! data (`extension_data`), their members' changed privileges with the others
//! (`member_privileges`).

use tokio_postgres::Client;

use super::ddl::view_order;
use super::error::NativeError;
use super::objects::read_rows;
use crate::server::quote_literal;

/// An installed extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    /// Its oid.
    pub oid: u32,
    /// Quoted name.
    pub name: String,
    /// Quoted schema.
    pub schema: String,
    /// `extversion`.
    pub version: String,
}

/// `CREATE EXTENSION`, in the extension's schema and at its version.
pub fn create_extension(e: &Extension) -> String {
    format!(
        "CREATE EXTENSION {} WITH SCHEMA {} VERSION {};\n",
        e.name,
        e.schema,
        quote_literal(&e.version)
    )
}

const EXTENSIONS_SQL: &str = "SELECT x.oid, pg_catalog.quote_ident(x.extname), \
    pg_catalog.quote_ident(n.nspname), x.extversion FROM pg_catalog.pg_extension x \
    JOIN pg_catalog.pg_namespace n ON n.oid = x.extnamespace \
    WHERE x.oid = ANY($1) ORDER BY x.oid";

/// Which extension requires which ((extension, extension it requires)).
const REQUIRES_SQL: &str = "SELECT d.objid, d.refobjid FROM pg_catalog.pg_depend d \
    WHERE d.classid = 'pg_catalog.pg_extension'::pg_catalog.regclass \
    AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass \
    AND d.objid = ANY($1) AND d.refobjid = ANY($1)";

const COMMENTS_SQL: &str = "SELECT pg_catalog.format('COMMENT ON EXTENSION %I IS %L;', \
    x.extname, d.description) FROM pg_catalog.pg_description d \
    JOIN pg_catalog.pg_extension x ON x.oid = d.objoid \
    WHERE d.classoid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND x.oid = ANY($1)";

/// The extensions of `list`, each after those it requires, with their comments: the SQL
/// that comes after the schemas.
pub async fn extensions(client: &Client, list: &[u32]) -> Result<String, NativeError> {
    let list = list.to_vec();
    let what = "reading extensions";
    let mut extensions = read_rows(client, EXTENSIONS_SQL, &[&list], what, |row| {
        Ok(Extension {
            oid: row.try_get(0)?,
            name: row.try_get(1)?,
            schema: row.try_get(2)?,
            version: row.try_get(3)?,
        })
    })
    .await?;
    let requires = read_rows(client, REQUIRES_SQL, &[&list], what, |row| {
        Ok((row.try_get(0)?, row.try_get(1)?))
    })
    .await?;
    let order = view_order(&list, &requires);
    extensions.sort_by_key(|e| order.iter().position(|oid| *oid == e.oid));
    let comments: Vec<String> =
        read_rows(client, COMMENTS_SQL, &[&list], what, |row| row.try_get(0)).await?;
    let mut sql: String = extensions.iter().map(create_extension).collect();
    for comment in comments {
        sql.push_str(&comment);
        sql.push('\n');
    }
    if !sql.is_empty() {
        sql.push('\n');
    }
    Ok(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extension_is_created_in_its_schema_at_its_version() {
        let citext = Extension {
            oid: 16400,
            name: "citext".into(),
            schema: "\"Odd Schema\"".into(),
            version: "1.6".into(),
        };
        assert_eq!(
            create_extension(&citext),
            "CREATE EXTENSION citext WITH SCHEMA \"Odd Schema\" VERSION '1.6';\n"
        );
    }
}
