//! The properties of tables' columns that only `ALTER TABLE` sets, as pg_dump writes them for
//! each column of each table (`ALTER TABLE ONLY t ALTER COLUMN c ...`): the statistics target,
//! the storage where it is not the type's, the compression (14+) and the options
//! (`n_distinct`...). They are written once every table exists, so that an inheritance child
//! or a partition is created with its type's defaults and gets only its own. (A column's
//! collation is part of its definition: see `ddl::column_line`.)

use tokio_postgres::Client;

use super::error::NativeError;
use super::objects::read_rows;
use crate::server::ServerVersion;

/// What one column has beyond its definition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ColumnProps {
    /// The table's quoted, qualified name.
    pub table: String,
    /// The column's quoted name.
    pub column: String,
    /// `attstattarget` when set.
    pub statistics: Option<i32>,
    /// `attstorage` where it is not the type's `typstorage`.
    pub storage: Option<String>,
    /// `attcompression` when set (14+).
    pub compression: Option<String>,
    /// `attoptions`, joined by `, ` (`n_distinct=-1`).
    pub options: Option<String>,
}

/// The columns of the tables of `$1` that have a property of [`ColumnProps`], in table then
/// column order: the statistics target is NULL when unset from 17 on (-1 before), the
/// compression exists from 14 on.
pub fn column_props_sql(version: ServerVersion) -> String {
    let statistics = match version.num() >= 170000 {
        true => "a.attstattarget::integer",
        false => "(CASE WHEN a.attstattarget <> -1 THEN a.attstattarget END)::integer",
    };
    let compression = match version.num() >= 140000 {
        true => "CASE WHEN a.attcompression <> '' THEN a.attcompression::text END",
        false => "NULL::text",
    };
    format!(
        "SELECT p.relation, p.name, p.statistics, p.storage, p.compression, p.options \
         FROM (SELECT a.attrelid::pg_catalog.regclass::text AS relation, \
         pg_catalog.quote_ident(a.attname) AS name, {statistics} AS statistics, \
         CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage::text END AS storage, \
         {compression} AS compression, \
         pg_catalog.array_to_string(a.attoptions, ', ') AS options, a.attrelid AS relid, \
         a.attnum \
         FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
         WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped) p \
         WHERE p.statistics IS NOT NULL OR p.storage IS NOT NULL OR p.compression IS NOT NULL \
         OR p.options IS NOT NULL ORDER BY p.relid, p.attnum"
    )
}

/// The statements of one column, in pg_dump's order: statistics, storage, compression,
/// options.
pub fn alter_column(props: &ColumnProps) -> String {
    let alter = format!(
        "ALTER TABLE ONLY {} ALTER COLUMN {}",
        props.table, props.column
    );
    let mut sql = String::new();
    if let Some(target) = props.statistics {
        sql.push_str(&format!("{alter} SET STATISTICS {target};\n"));
    }
    let storage = match props.storage.as_deref() {
        Some("p") => Some("PLAIN"),
        Some("e") => Some("EXTERNAL"),
        Some("m") => Some("MAIN"),
        Some("x") => Some("EXTENDED"),
        _ => None,
    };
    if let Some(storage) = storage {
        sql.push_str(&format!("{alter} SET STORAGE {storage};\n"));
    }
    let compression = match props.compression.as_deref() {
        Some("p") => Some("pglz"),
        Some("l") => Some("lz4"),
        _ => None,
    };
    if let Some(compression) = compression {
        sql.push_str(&format!("{alter} SET COMPRESSION {compression};\n"));
    }
    if let Some(options) = &props.options {
        sql.push_str(&format!("{alter} SET ({options});\n"));
    }
    sql
}

/// The `ALTER TABLE ONLY ... ALTER COLUMN` statements of the columns of `tables`.
pub async fn alter_columns(
    client: &Client,
    version: ServerVersion,
    tables: &[u32],
) -> Result<String, NativeError> {
    let columns = read_rows(
        client,
        &column_props_sql(version),
        &[&tables.to_vec()],
        "reading the columns' storage and options",
        |row| {
            Ok(ColumnProps {
                table: row.try_get(0)?,
                column: row.try_get(1)?,
                statistics: row.try_get(2)?,
                storage: row.try_get(3)?,
                compression: row.try_get(4)?,
                options: row.try_get(5)?,
            })
        },
    )
    .await?;
    let mut sql: String = columns.iter().map(alter_column).collect();
    if !sql.is_empty() {
        sql.push('\n');
    }
    Ok(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_property_has_its_statement_in_pg_dumps_order() {
        let props = ColumnProps {
            table: "app.\"T\"".into(),
            column: "\"select\"".into(),
            statistics: Some(0),
            storage: Some("m".into()),
            compression: Some("p".into()),
            options: Some("n_distinct=-1, n_distinct_inherited=5".into()),
        };
        assert_eq!(
            alter_column(&props),
            "ALTER TABLE ONLY app.\"T\" ALTER COLUMN \"select\" SET STATISTICS 0;\n\
             ALTER TABLE ONLY app.\"T\" ALTER COLUMN \"select\" SET STORAGE MAIN;\n\
             ALTER TABLE ONLY app.\"T\" ALTER COLUMN \"select\" SET COMPRESSION pglz;\n\
             ALTER TABLE ONLY app.\"T\" ALTER COLUMN \"select\" SET (n_distinct=-1, n_distinct_inherited=5);\n"
        );
        for (letter, word) in [("p", "PLAIN"), ("e", "EXTERNAL"), ("x", "EXTENDED")] {
            let storage = ColumnProps {
                table: "t".into(),
                column: "c".into(),
                storage: Some(letter.into()),
                ..ColumnProps::default()
            };
            assert_eq!(
                alter_column(&storage),
                format!("ALTER TABLE ONLY t ALTER COLUMN c SET STORAGE {word};\n")
            );
        }
        let lz4 = ColumnProps {
            compression: Some("l".into()),
            ..ColumnProps::default()
        };
        assert!(alter_column(&lz4).ends_with("SET COMPRESSION lz4;\n"));
        assert_eq!(alter_column(&ColumnProps::default()), "");
    }

    #[test]
    fn statistics_and_compression_by_version() {
        let sql = column_props_sql(ServerVersion(180000));
        assert!(sql.starts_with("SELECT p.relation, p.name, p.statistics, p.storage, "));
        let ten = column_props_sql(ServerVersion(100023));
        assert!(ten.contains("WHEN a.attstattarget <> -1") && ten.contains("NULL::text AS"));
        let fourteen = column_props_sql(ServerVersion(140000));
        assert!(fourteen.contains("a.attcompression <> ''"));
        assert!(fourteen.contains("WHEN a.attstattarget <> -1"));
        let seventeen = column_props_sql(ServerVersion(170000));
        assert!(seventeen.contains("a.attstattarget::integer AS statistics"));
    }
}
