//! What a table carries beyond its columns and constraints: `UNLOGGED`, its columns'
//! privileges (`pg_attribute.attacl`, granted after the table's own, which a `REVOKE` on the
//! table would take back) and its triggers' states (disabled, replica, always).

use tokio_postgres::Client;

use super::error::NativeError;
use super::objects::read_rows;

/// `CREATE UNLOGGED TABLE` for `create_table`'s statement when `unlogged`.
pub fn persistence(create_table: String, unlogged: bool) -> String {
    match (unlogged, create_table.strip_prefix("CREATE TABLE ")) {
        (true, Some(rest)) => format!("CREATE UNLOGGED TABLE {rest}"),
        _ => create_table,
    }
}

/// The unlogged tables of `tables`.
pub async fn unlogged(client: &Client, tables: &[u32]) -> Result<Vec<u32>, NativeError> {
    let sql = "SELECT c.oid FROM pg_catalog.pg_class c \
        WHERE c.oid = ANY($1) AND c.relpersistence = 'u'";
    read_rows(client, sql, &[&tables.to_vec()], "reading tables", |row| {
        row.try_get(0)
    })
    .await
}

/// One privilege on a column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnGrant {
    /// The relation, quoted and qualified.
    pub relation: String,
    /// The column, quoted.
    pub column: String,
    /// Quoted role name; `None` is PUBLIC.
    pub grantee: Option<String>,
    /// `SELECT`, `INSERT`, `UPDATE` or `REFERENCES`.
    pub privilege: String,
    /// WITH GRANT OPTION.
    pub grantable: bool,
}

/// `GRANT privilege (column) ON TABLE ...`: a column's ACL starts empty, so granting each
/// privilege in the ACL's order rebuilds the same array (granted by the owner: the inventory
/// refuses others).
pub fn column_grant(g: &ColumnGrant) -> String {
    format!(
        "GRANT {} ({}) ON TABLE {} TO {}{};\n",
        g.privilege,
        g.column,
        g.relation,
        g.grantee.as_deref().unwrap_or("PUBLIC"),
        if g.grantable {
            " WITH GRANT OPTION"
        } else {
            ""
        }
    )
}

/// The column privileges of `relations`, as `GRANT` statements, in column then ACL order.
pub async fn column_grants(client: &Client, relations: &[u32]) -> Result<String, NativeError> {
    let sql = "SELECT a.attrelid::pg_catalog.regclass::text, pg_catalog.quote_ident(a.attname), \
        CASE WHEN g.grantee = 0 THEN NULL \
          ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END, \
        g.privilege_type, g.is_grantable \
        FROM pg_catalog.pg_attribute a \
        CROSS JOIN LATERAL pg_catalog.aclexplode(a.attacl) WITH ORDINALITY \
          g(grantor, grantee, privilege_type, is_grantable, n) \
        WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped \
        ORDER BY a.attrelid, a.attnum, g.n";
    let what = "reading column privileges";
    let grants = read_rows(client, sql, &[&relations.to_vec()], what, |row| {
        Ok(ColumnGrant {
            relation: row.try_get(0)?,
            column: row.try_get(1)?,
            grantee: row.try_get(2)?,
            privilege: row.try_get(3)?,
            grantable: row.try_get(4)?,
        })
    })
    .await?;
    Ok(grants.iter().map(column_grant).collect())
}

/// The statement that gives a trigger or a rule (`object`: `TRIGGER`, `RULE`) its state
/// (`pg_trigger.tgenabled`, `pg_rewrite.ev_enabled`), after its creation; `None` for an
/// enabled one (`O`, the state `CREATE` gives).
pub fn firing_state(table: &str, object: &str, name: &str, enabled: &str) -> Option<String> {
    let action = match enabled {
        "D" => "DISABLE",
        "R" => "ENABLE REPLICA",
        "A" => "ENABLE ALWAYS",
        _ => return None,
    };
    Some(format!("ALTER TABLE {table} {action} {object} {name};\n"))
}

/// The states of the triggers of `triggers` that are not simply enabled.
pub async fn trigger_states(client: &Client, triggers: &[u32]) -> Result<String, NativeError> {
    let sql = "SELECT g.tgrelid::pg_catalog.regclass::text, pg_catalog.quote_ident(g.tgname), \
        g.tgenabled::text FROM pg_catalog.pg_trigger g WHERE g.oid = ANY($1) ORDER BY g.oid";
    let rows: Vec<(String, String, String)> = read_rows(
        client,
        sql,
        &[&triggers.to_vec()],
        "reading triggers' states",
        |row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)),
    )
    .await?;
    Ok(rows
        .iter()
        .filter_map(|(table, trigger, state)| firing_state(table, "TRIGGER", trigger, state))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlogged_tables_say_so_and_logged_ones_are_left_alone() {
        let create = "CREATE TABLE app.t (\n    i integer\n);\n\n".to_string();
        assert_eq!(
            persistence(create.clone(), true),
            "CREATE UNLOGGED TABLE app.t (\n    i integer\n);\n\n"
        );
        assert_eq!(persistence(create.clone(), false), create);
    }

    #[test]
    fn column_privileges_name_their_column() {
        let grant = ColumnGrant {
            relation: "app.\"T\"".into(),
            column: "\"select\"".into(),
            grantee: None,
            privilege: "UPDATE".into(),
            grantable: false,
        };
        assert_eq!(
            column_grant(&grant),
            "GRANT UPDATE (\"select\") ON TABLE app.\"T\" TO PUBLIC;\n"
        );
        let grant = ColumnGrant {
            grantee: Some("nat_reader".into()),
            grantable: true,
            ..grant
        };
        assert_eq!(
            column_grant(&grant),
            "GRANT UPDATE (\"select\") ON TABLE app.\"T\" TO nat_reader WITH GRANT OPTION;\n"
        );
    }

    #[test]
    fn each_trigger_state_has_its_statement() {
        let states: Vec<Option<String>> = ["O", "D", "R", "A"]
            .iter()
            .map(|s| firing_state("app.t", "TRIGGER", "\"Tg\"", s))
            .collect();
        assert_eq!(
            states,
            [
                None,
                Some("ALTER TABLE app.t DISABLE TRIGGER \"Tg\";\n".into()),
                Some("ALTER TABLE app.t ENABLE REPLICA TRIGGER \"Tg\";\n".into()),
                Some("ALTER TABLE app.t ENABLE ALWAYS TRIGGER \"Tg\";\n".into()),
            ]
        );
    }
}
