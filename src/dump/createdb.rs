//! The `<db>_<stamp>.createdb.sql` builder: CREATE DATABASE with owner, encoding, locale,
//! tablespace and connection limit, the database ACL as REVOKE/GRANT (PUBLIC as the keyword),
//! and the `ALTER DATABASE .. SET` / `ALTER ROLE .. IN DATABASE .. SET` settings, every name and
//! value quoted whatever it contains.

use std::fmt::Write as _;

use super::acl::{parse_acl_item, AclError};
use crate::server::{quote_ident, quote_literal};

/// The catalog facts about one database.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DatabaseDefinition {
    /// `datname`.
    pub name: String,
    /// The owner's role name.
    pub owner: String,
    /// `pg_encoding_to_char(encoding)`.
    pub encoding: String,
    /// `datcollate`.
    pub collate: String,
    /// `datctype`.
    pub ctype: String,
    /// `datlocprovider` (15+): `c` libc, `i` icu, `b` builtin.
    pub locale_provider: Option<String>,
    /// `daticulocale` (15-16) or `datlocale` (17+).
    pub provider_locale: Option<String>,
    /// `daticurules` (16+).
    pub icu_rules: Option<String>,
    /// `datistemplate`.
    pub is_template: bool,
    /// `datacl` as text items; `None` means the default privileges.
    pub acl: Option<Vec<String>>,
    /// `datconnlimit`; -1 is unlimited.
    pub connection_limit: i32,
    /// The tablespace name, when not `pg_default`.
    pub tablespace: Option<String>,
}

/// One row of `pg_db_role_setting` for the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSettings {
    /// The role the settings apply to; `None` for every role (`ALTER DATABASE .. SET`).
    pub role: Option<String>,
    /// `name=value` entries, as stored.
    pub settings: Vec<String>,
}

/// What makes the createdb.sql impossible to write faithfully.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreatedbError {
    /// An ACL item did not parse.
    #[error(transparent)]
    Acl(#[from] AclError),
    /// A setting without `=`.
    #[error("cannot parse database setting {0:?}: missing \"=\"")]
    Setting(String),
}

/// Settings whose value is a list that `SET` takes as separate literals (pg_dump's
/// GUC_LIST_QUOTE variables).
const LIST_SETTINGS: &[&str] = &[
    "search_path",
    "temp_tablespaces",
    "session_preload_libraries",
    "shared_preload_libraries",
    "local_preload_libraries",
];

/// Databases every cluster has; they are altered, not created.
const ALWAYS_PRESENT: &[&str] = &["postgres", "template1"];

/// Splits a list setting's stored value (`"$user", public`) into its elements.
fn split_list_value(value: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut item = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.next_if_eq(&'"').is_some() {
                        item.push('"');
                    } else {
                        break;
                    }
                } else {
                    item.push(c);
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',' && !c.is_whitespace()) {
                item.push(c);
            }
        }
        items.push(item);
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next_if_eq(&',').is_none() {
            // Anything else than a separator ends the list; keep the rest as one more element
            // rather than lose it.
            let rest: String = chars.collect();
            if !rest.trim().is_empty() {
                items.push(rest.trim().to_string());
            }
            break;
        }
    }
    items
}

/// `name TO value` for a stored `name=value` setting; the value is kept whole, `=` included.
pub(super) fn set_clause(entry: &str) -> Result<String, CreatedbError> {
    let (name, value) = entry
        .split_once('=')
        .ok_or_else(|| CreatedbError::Setting(entry.to_string()))?;
    let value = if LIST_SETTINGS.contains(&name.to_ascii_lowercase().as_str()) {
        let items = split_list_value(value);
        if items.is_empty() {
            "''".to_string()
        } else {
            items
                .iter()
                .map(|item| quote_literal(item))
                .collect::<Vec<_>>()
                .join(", ")
        }
    } else {
        quote_literal(value)
    };
    Ok(format!("{} TO {value}", quote_ident(name)))
}

/// The REVOKE/GRANT lines of an explicit ACL on `object` (`DATABASE "x"`, `TABLESPACE "t"`):
/// an explicit ACL replaces the defaults, so start from nothing, then grant what it lists
/// (PUBLIC as the keyword; grants by another role than the owner made as that role).
pub(super) fn acl_commands(
    out: &mut String,
    object: &str,
    owner: &str,
    acl: &[String],
) -> Result<(), CreatedbError> {
    let _ = writeln!(out, "REVOKE ALL ON {object} FROM PUBLIC;");
    let _ = writeln!(out, "REVOKE ALL ON {object} FROM {};", quote_ident(owner));
    for text in acl {
        let item = parse_acl_item(text)?;
        let grantee = match &item.grantee {
            Some(role) => quote_ident(role),
            None => "PUBLIC".to_string(),
        };
        let as_other = item.grantor != owner;
        if as_other {
            let _ = writeln!(
                out,
                "SET SESSION AUTHORIZATION {};",
                quote_ident(&item.grantor)
            );
        }
        for (privilege, grant_option) in &item.privileges {
            let _ = writeln!(
                out,
                "GRANT {} ON {object} TO {grantee}{};",
                privilege.keyword(),
                if *grant_option {
                    " WITH GRANT OPTION"
                } else {
                    ""
                }
            );
        }
        if as_other {
            out.push_str("RESET SESSION AUTHORIZATION;\n");
        }
    }
    Ok(())
}

/// Builds the whole createdb.sql text.
pub fn createdb_script(
    def: &DatabaseDefinition,
    settings: &[RoleSettings],
) -> Result<String, CreatedbError> {
    let db = quote_ident(&def.name);
    let owner = quote_ident(&def.owner);
    let mut out = String::new();
    if ALWAYS_PRESENT.contains(&def.name.as_str()) {
        let _ = writeln!(out, "-- {db} exists in every cluster: not created");
        let _ = writeln!(out, "ALTER DATABASE {db} OWNER TO {owner};");
    } else {
        let _ = write!(
            out,
            "CREATE DATABASE {db} WITH TEMPLATE = template0 OWNER = {owner}"
        );
        let _ = write!(out, " ENCODING = {}", quote_literal(&def.encoding));
        let _ = write!(out, " LC_COLLATE = {}", quote_literal(&def.collate));
        let _ = write!(out, " LC_CTYPE = {}", quote_literal(&def.ctype));
        match (
            def.locale_provider.as_deref(),
            def.provider_locale.as_deref(),
        ) {
            (Some("i"), locale) => {
                out.push_str(" LOCALE_PROVIDER = icu");
                if let Some(locale) = locale {
                    let _ = write!(out, " ICU_LOCALE = {}", quote_literal(locale));
                }
                if let Some(rules) = def.icu_rules.as_deref().filter(|r| !r.is_empty()) {
                    let _ = write!(out, " ICU_RULES = {}", quote_literal(rules));
                }
            }
            (Some("b"), locale) => {
                out.push_str(" LOCALE_PROVIDER = builtin");
                if let Some(locale) = locale {
                    let _ = write!(out, " BUILTIN_LOCALE = {}", quote_literal(locale));
                }
            }
            _ => {}
        }
        if let Some(tablespace) = def.tablespace.as_deref().filter(|t| *t != "pg_default") {
            let _ = write!(out, " TABLESPACE = {}", quote_ident(tablespace));
        }
        if def.connection_limit != -1 {
            let _ = write!(out, " CONNECTION LIMIT = {}", def.connection_limit);
        }
        out.push_str(";\n");
    }
    if def.is_template {
        let _ = writeln!(out, "ALTER DATABASE {db} IS_TEMPLATE = true;");
    }
    if let Some(acl) = &def.acl {
        acl_commands(&mut out, &format!("DATABASE {db}"), &def.owner, acl)?;
    }
    for row in settings {
        for entry in &row.settings {
            let clause = set_clause(entry)?;
            match &row.role {
                None => {
                    let _ = writeln!(out, "ALTER DATABASE {db} SET {clause};");
                }
                Some(role) => {
                    let _ = writeln!(
                        out,
                        "ALTER ROLE {} IN DATABASE {db} SET {clause};",
                        quote_ident(role)
                    );
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("PUBLIC"), "\"PUBLIC\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b'c"), "E'a\\\\b''c'");
        assert_eq!(quote_literal("x=y\nz"), "'x=y\nz'");
    }

    fn testdb() -> DatabaseDefinition {
        DatabaseDefinition {
            name: "testdb".into(),
            owner: "testrole".into(),
            encoding: "UTF8".into(),
            collate: "C".into(),
            ctype: "C".into(),
            connection_limit: -1,
            tablespace: Some("pg_default".into()),
            ..Default::default()
        }
    }

    #[test]
    fn create_database_with_everything() {
        let mut def = testdb();
        def.name = "a\"b".into();
        def.owner = "o'wner".into();
        def.collate = "en_US.UTF-8".into();
        def.tablespace = Some("fast disk".into());
        def.connection_limit = 10;
        def.locale_provider = Some("i".into());
        def.provider_locale = Some("und".into());
        def.is_template = true;
        let sql = createdb_script(&def, &[]).unwrap();
        assert_eq!(
            sql,
            "CREATE DATABASE \"a\"\"b\" WITH TEMPLATE = template0 OWNER = \"o'wner\" ENCODING = 'UTF8' \
             LC_COLLATE = 'en_US.UTF-8' LC_CTYPE = 'C' LOCALE_PROVIDER = icu ICU_LOCALE = 'und' \
             TABLESPACE = \"fast disk\" CONNECTION LIMIT = 10;\n\
             ALTER DATABASE \"a\"\"b\" IS_TEMPLATE = true;\n"
        );
    }

    #[test]
    fn default_acl_and_builtin_databases() {
        let mut def = testdb();
        def.name = "postgres".into();
        let sql = createdb_script(&def, &[]).unwrap();
        assert!(!sql.contains("CREATE DATABASE"));
        assert!(sql.contains("ALTER DATABASE \"postgres\" OWNER TO \"testrole\";"));
        assert!(!sql.contains("REVOKE"));
    }

    #[test]
    fn facts_acl_vectors() {
        let mut def = testdb();
        def.acl = Some(vec!["other=CT*c/testrole".into(), "=c/testrole".into()]);
        let sql = createdb_script(&def, &[]).unwrap();
        let lines: Vec<&str> = sql.lines().collect();
        for expected in [
            "REVOKE ALL ON DATABASE \"testdb\" FROM PUBLIC;",
            "GRANT CREATE ON DATABASE \"testdb\" TO \"other\";",
            "GRANT TEMPORARY ON DATABASE \"testdb\" TO \"other\" WITH GRANT OPTION;",
            "GRANT CONNECT ON DATABASE \"testdb\" TO \"other\";",
            "GRANT CONNECT ON DATABASE \"testdb\" TO PUBLIC;",
        ] {
            assert!(lines.contains(&expected), "{expected} in\n{sql}");
        }
        assert!(!sql.contains("\"PUBLIC\""));
        assert!(!sql.contains("SESSION AUTHORIZATION"));
    }

    #[test]
    fn grants_by_another_role_and_a_role_named_public() {
        let mut def = testdb();
        def.acl = Some(vec!["\"PUBLIC\"=c/admin".into()]);
        let sql = createdb_script(&def, &[]).unwrap();
        assert!(sql.contains(
            "SET SESSION AUTHORIZATION \"admin\";\nGRANT CONNECT ON DATABASE \"testdb\" TO \"PUBLIC\";\nRESET SESSION AUTHORIZATION;\n"
        ));
        def.acl = Some(vec!["broken".into()]);
        assert!(matches!(
            createdb_script(&def, &[]),
            Err(CreatedbError::Acl(_))
        ));
    }

    #[test]
    fn settings_keep_values_whole_and_quote_names() {
        let settings = [
            RoleSettings {
                role: None,
                settings: vec![
                    "work_mem=64MB".into(),
                    "app.filter=a=b; c='d'".into(),
                    "search_path=\"$user\", public, \"we,ird\"\"s\"".into(),
                    "app.path=C:\\x".into(),
                ],
            },
            RoleSettings {
                role: Some("r\"1".into()),
                settings: vec!["statement_timeout=5s".into(), "search_path=".into()],
            },
        ];
        let sql = createdb_script(&testdb(), &settings).unwrap();
        let lines: Vec<&str> = sql.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "ALTER DATABASE \"testdb\" SET \"work_mem\" TO '64MB';",
                "ALTER DATABASE \"testdb\" SET \"app.filter\" TO 'a=b; c=''d''';",
                "ALTER DATABASE \"testdb\" SET \"search_path\" TO '$user', 'public', 'we,ird\"s';",
                "ALTER DATABASE \"testdb\" SET \"app.path\" TO E'C:\\\\x';",
                "ALTER ROLE \"r\"\"1\" IN DATABASE \"testdb\" SET \"statement_timeout\" TO '5s';",
                "ALTER ROLE \"r\"\"1\" IN DATABASE \"testdb\" SET \"search_path\" TO '';",
            ]
        );
        let bad = [RoleSettings {
            role: None,
            settings: vec!["novalue".into()],
        }];
        assert_eq!(
            createdb_script(&testdb(), &bad),
            Err(CreatedbError::Setting("novalue".into()))
        );
    }

    #[test]
    fn newlines_stay_inside_literals() {
        let settings = [RoleSettings {
            role: None,
            settings: vec!["app.x=1\n; DROP TABLE t; --".into()],
        }];
        let sql = createdb_script(&testdb(), &settings).unwrap();
        assert!(sql.contains("SET \"app.x\" TO '1\n; DROP TABLE t; --';"));
    }
}
