//! Large objects: each created with its oid, its data read in the snapshot with `lo_get` a
//! chunk at a time (never whole in memory) and written as pg_dump's plain format writes it
//! (`lo_open` in a transaction, one `lowrite(0, '\x...')` per chunk, `lo_close`), which both
//! `psql -f` and the native restore run; then its owner, privileges and comment. Each chunk
//! ends a batch of the framing, so the native restore holds one chunk at a time too.

use tokio_postgres::Client;

use super::ddl::{self, Grant};
use super::error::{query, NativeError};
use super::inventory::Inventory;
use super::objects;
use super::output::SqlWriter;
use crate::server::quote_literal;

/// Bytes of a large object read and written per statement.
pub const CHUNK: i32 = 128 * 1024;

/// `lo_create` of the object, empty, owned by the restoring role.
pub fn create(oid: u32) -> String {
    format!("SELECT pg_catalog.lo_create('{oid}');\n")
}

/// Opens the object for writing as descriptor 0, in a transaction of its own.
pub fn open(oid: u32) -> String {
    format!("BEGIN;\nSELECT pg_catalog.lo_open('{oid}', 131072);\n")
}

/// Writes one chunk of data at descriptor 0's position, as a bytea hex literal.
pub fn write_chunk(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut sql = String::with_capacity(bytes.len() * 2 + 40);
    sql.push_str("SELECT pg_catalog.lowrite(0, '\\x");
    for byte in bytes {
        sql.push(HEX[usize::from(byte >> 4)] as char);
        sql.push(HEX[usize::from(byte & 0xf)] as char);
    }
    sql.push_str("');\n");
    sql
}

/// Closes descriptor 0 and commits.
pub const CLOSE: &str = "SELECT pg_catalog.lo_close(0);\nCOMMIT;\n";

/// The owner, privileges and comment of a large object.
pub fn ownership(oid: u32, owner: &str, grants: Option<&[Grant]>, comment: Option<&str>) -> String {
    let name = oid.to_string();
    let mut sql = format!("ALTER LARGE OBJECT {oid} OWNER TO {owner};\n");
    if let Some(grants) = grants {
        sql.push_str(&ddl::privileges("LARGE OBJECT", &name, owner, grants));
    }
    if let Some(comment) = comment {
        sql.push_str(&format!(
            "COMMENT ON LARGE OBJECT {oid} IS {};\n",
            quote_literal(comment)
        ));
    }
    sql
}

/// The large objects of `list`: oid, quoted owner, whether an ACL is set, comment.
const LARGE_OBJECTS_SQL: &str = "SELECT m.oid, \
    pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(m.lomowner)), m.lomacl IS NOT NULL, \
    pg_catalog.obj_description(m.oid, 'pg_largeobject') \
    FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = ANY($1) ORDER BY m.oid";

/// A chunk of a large object's data at the snapshot.
const CHUNK_SQL: &str = "SELECT pg_catalog.lo_get($1, $2, $3)";

/// Writes every large object of the inventory: created, its data, owner, privileges, comment.
pub async fn export(
    client: &Client,
    inventory: &Inventory,
    marker: &str,
    out: &mut SqlWriter,
) -> Result<usize, NativeError> {
    let list = inventory.oids("large object");
    if list.is_empty() {
        return Ok(0);
    }
    let what = "reading large objects";
    let mut large_objects: Vec<(u32, String, bool, Option<String>)> = Vec::new();
    for row in client
        .query(LARGE_OBJECTS_SQL, &[&list])
        .await
        .map_err(query(what))?
    {
        let read = || {
            Ok((
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            ))
        };
        large_objects.push(read().map_err(query(what))?);
    }
    let with_acl: Vec<u32> = large_objects
        .iter()
        .filter(|(_, _, has_acl, _)| *has_acl)
        .map(|(oid, ..)| *oid)
        .collect();
    let grants = objects::grants(client, "pg_largeobject_metadata", &with_acl).await?;
    let statement = client.prepare(CHUNK_SQL).await.map_err(query(what))?;
    for (oid, owner, has_acl, comment) in &large_objects {
        let oid = *oid;
        out.text(&ddl::section(marker, &format!("large object {oid}")))
            .await?;
        out.text(&create(oid)).await?;
        let mut offset: i64 = 0;
        loop {
            let chunk: Vec<u8> = client
                .query_one(&statement, &[&oid, &offset, &CHUNK])
                .await
                .and_then(|row| row.try_get(0))
                .map_err(query("reading a large object's data"))?;
            if chunk.is_empty() {
                break;
            }
            if offset == 0 {
                out.text(&open(oid)).await?;
            }
            out.text(&write_chunk(&chunk)).await?;
            out.text(&ddl::batch_line(marker)).await?;
            offset += chunk.len() as i64;
            if chunk.len() < CHUNK as usize {
                break;
            }
        }
        if offset > 0 {
            out.text(CLOSE).await?;
        }
        let granted = has_acl.then(|| grants.get(&oid).map(Vec::as_slice).unwrap_or(&[]));
        out.text(&ownership(oid, owner, granted, comment.as_deref()))
            .await?;
    }
    out.text(&ddl::batch_line(marker)).await?;
    Ok(large_objects.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_written_as_pg_dump_writes_it() {
        assert_eq!(create(4242), "SELECT pg_catalog.lo_create('4242');\n");
        assert_eq!(
            open(4294967295),
            "BEGIN;\nSELECT pg_catalog.lo_open('4294967295', 131072);\n"
        );
        assert_eq!(
            write_chunk(&[0x00, 0x0a, 0xff, b'\'', b'\\']),
            "SELECT pg_catalog.lowrite(0, '\\x000aff275c');\n"
        );
        assert_eq!(write_chunk(&[]), "SELECT pg_catalog.lowrite(0, '\\x');\n");
        assert_eq!(CLOSE, "SELECT pg_catalog.lo_close(0);\nCOMMIT;\n");
    }

    #[test]
    fn owner_privileges_and_comment() {
        assert_eq!(
            ownership(7, "nat_owner", None, None),
            "ALTER LARGE OBJECT 7 OWNER TO nat_owner;\n"
        );
        let grants = [Grant {
            grantee: Some("nat_reader".into()),
            privilege: "SELECT".into(),
            grantable: false,
        }];
        assert_eq!(
            ownership(7, "\"Big\"", Some(&grants), Some("it's")),
            "ALTER LARGE OBJECT 7 OWNER TO \"Big\";\n\
             REVOKE ALL ON LARGE OBJECT 7 FROM PUBLIC;\n\
             REVOKE ALL ON LARGE OBJECT 7 FROM \"Big\";\n\
             GRANT SELECT ON LARGE OBJECT 7 TO nat_reader;\n\
             COMMENT ON LARGE OBJECT 7 IS 'it''s';\n"
        );
    }
}
