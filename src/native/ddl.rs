//! The SQL text of a native dump, built from catalog rows without a server: the preamble of
//! session settings, CREATE statements, ownership, privileges and the COPY framing. Names
//! arrive quoted by the server (`quote_ident`, `regclass` and `regprocedure` under an empty
//! `search_path`); literals are quoted here with [`crate::server::quote_literal`].

use crate::server::{quote_literal, ServerVersion};

/// The first line of every native dump; `pgback --restore` recognises a native set by it.
pub const NATIVE_HEADER: &str = "-- pgback native dump";

/// The first line of `pgback --native`'s globals file: `pgback --restore` runs the globals and
/// createdb.sql of such a set itself, without psql.
pub const NATIVE_GLOBALS_HEADER: &str = "-- pgback native globals";

/// The framing of a native dump for the native restore, in comment lines psql ignores, each
/// carrying the dump's marker (random, written in the header line), so that no text of the
/// database (a comment, a function body) can pose as one:
/// - `-- pgback MARKER batch`: the statements since the previous line of the framing end here;
/// - `-- pgback MARKER copy LEN`: the next LEN bytes and a newline are a `COPY ... FROM stdin;`,
///   followed by its rows up to the line `\.`.
pub fn header_line(marker: &str) -> String {
    format!("{NATIVE_HEADER}, format 1, marker {marker}\n")
}

/// The marker of a native dump, from its first line; `None` for any other file.
pub fn marker_of(first_line: &str) -> Option<&str> {
    let marker = first_line
        .trim_end()
        .strip_prefix(NATIVE_HEADER)?
        .strip_prefix(", format 1, marker ")?;
    (!marker.is_empty() && marker.bytes().all(|b| b.is_ascii_hexdigit())).then_some(marker)
}

/// The line that ends a batch of statements.
pub fn batch_line(marker: &str) -> String {
    format!("-- pgback {marker} batch\n")
}

/// What a line of the framing says.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// The statements so far are one batch.
    Batch,
    /// A COPY statement of this many bytes follows.
    Copy(usize),
}

/// Reads a line of the framing (`None`: any other line).
pub fn frame_of(line: &[u8], marker: &str) -> Option<Frame> {
    let text = std::str::from_utf8(line).ok()?.trim_end_matches('\n');
    let rest = text.strip_prefix("-- pgback ")?.strip_prefix(marker)?;
    match rest {
        " batch" => Some(Frame::Batch),
        _ => rest
            .strip_prefix(" copy ")
            .and_then(|len| len.parse().ok())
            .map(Frame::Copy),
    }
}

/// The framing line and the `COPY ... FROM stdin;` statement that opens a table's data.
pub fn copy_lines(marker: &str, table: &str, columns: &[String]) -> String {
    let statement = copy_from_stdin(table, columns);
    let statement = statement.trim_end_matches('\n');
    format!("-- pgback {marker} copy {}\n{statement}\n", statement.len())
}

/// The header and pg_dump's session settings, which `psql -f` and the native restore apply.
/// `client_encoding` is the export session's, UTF8 (tokio-postgres's, whatever the database's
/// `encoding` is, which the header names): the file's bytes are UTF-8.
pub fn preamble(dbname: &str, version: ServerVersion, encoding: &str, marker: &str) -> String {
    let dbname = dbname.replace(['\n', '\r'], " ");
    format!(
        "{}\
         --\n\
         -- Database {dbname} (encoding {encoding}), from a PostgreSQL {version} server.\n\
         -- Restore it with\n\
         -- `psql -X -v ON_ERROR_STOP=1 -f FILE` or `pgback --restore`.\n\
         --\n\n\
         SET statement_timeout = 0;\n\
         SET lock_timeout = 0;\n\
         SET idle_in_transaction_session_timeout = 0;\n\
         SET client_encoding = 'UTF8';\n\
         SET standard_conforming_strings = on;\n\
         SELECT pg_catalog.set_config('search_path', '', false);\n\
         SET check_function_bodies = false;\n\
         SET xmloption = content;\n\
         SET client_min_messages = warning;\n\
         SET row_security = off;\n\
         SET DateStyle = ISO;\n\
         SET IntervalStyle = postgres;\n\
         SET extra_float_digits = 3;\n{}\n",
        header_line(marker),
        batch_line(marker),
        encoding = encoding.replace(['\n', '\r'], " "),
    )
}

/// A comment naming what follows (names on one line), after the end of a batch.
pub fn section(marker: &str, title: &str) -> String {
    format!(
        "{}--\n-- {}\n--\n\n",
        batch_line(marker),
        title.replace(['\n', '\r'], " ")
    )
}

/// One column of a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Quoted name.
    pub name: String,
    /// `format_type()` with its typmod.
    pub type_name: String,
    /// Its collation (quoted, qualified) where it is not its type's.
    pub collation: Option<String>,
    /// NOT NULL.
    pub not_null: bool,
    /// `pg_get_expr()` of its default, or of its generation expression.
    pub default: Option<String>,
    /// A stored generated column (12+): `default` is its expression; COPY leaves it out.
    pub generated: bool,
    /// An identity column: `ALWAYS` or `BY DEFAULT`, and its sequence.
    pub identity: Option<(Identity, Sequence)>,
}

/// How an identity column takes its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// `GENERATED ALWAYS`.
    Always,
    /// `GENERATED BY DEFAULT`.
    ByDefault,
}

/// The sequence parameters after `START WITH` (shared by CREATE SEQUENCE and identities).
fn sequence_options(s: &Sequence) -> String {
    format!(
        "START WITH {} INCREMENT BY {} MINVALUE {} MAXVALUE {} CACHE {}{}",
        s.start,
        s.increment,
        s.min,
        s.max,
        s.cache,
        if s.cycle { " CYCLE" } else { " NO CYCLE" }
    )
}

/// ` WITH (name='value', ...)` of a relation's `reloptions` (`name=value` each), values quoted
/// as pg_dump quotes them; empty without options.
pub fn with_options(options: &[String]) -> String {
    if options.is_empty() {
        return String::new();
    }
    let items: Vec<String> = options
        .iter()
        .map(|option| match option.split_once('=') {
            Some((name, value)) => format!("{name}={}", quote_literal(value)),
            None => option.clone(),
        })
        .collect();
    format!(" WITH ({})", items.join(", "))
}

/// One column's line of a `CREATE TABLE`: type, default or generation expression, identity,
/// NOT NULL.
pub fn column_line(c: &Column) -> String {
    let mut line = format!("    {} {}", c.name, c.type_name);
    if let Some(collation) = &c.collation {
        line.push_str(&format!(" COLLATE {collation}"));
    }
    match (&c.default, c.generated) {
        (Some(expression), true) => {
            line.push_str(&format!(" GENERATED ALWAYS AS ({expression}) STORED"))
        }
        (Some(default), false) => {
            line.push_str(" DEFAULT ");
            line.push_str(default);
        }
        (None, _) => {}
    }
    if let Some((identity, sequence)) = &c.identity {
        line.push_str(&format!(
            " GENERATED {} AS IDENTITY (SEQUENCE NAME {} {})",
            match identity {
                Identity::Always => "ALWAYS",
                Identity::ByDefault => "BY DEFAULT",
            },
            sequence.name,
            sequence_options(sequence)
        ));
    }
    if c.not_null {
        line.push_str(" NOT NULL");
    }
    line
}

/// `CREATE TABLE name (lines){clauses} WITH (options);`: `clauses` (` INHERITS (...)`,
/// ` PARTITION BY ...`) go between the column list and the storage parameters.
pub fn table_statement(name: &str, lines: &[String], clauses: &str, options: &[String]) -> String {
    let with = with_options(options);
    match lines.is_empty() {
        true => format!("CREATE TABLE {name} (\n){clauses}{with};\n\n"),
        false => format!(
            "CREATE TABLE {name} (\n{}\n){clauses}{with};\n\n",
            lines.join(",\n")
        ),
    }
}

/// A sequence's definition (10+: `AS type`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequence {
    /// Quoted, qualified name.
    pub name: String,
    /// `format_type` of its type.
    pub type_name: String,
    /// START WITH.
    pub start: i64,
    /// INCREMENT BY.
    pub increment: i64,
    /// MINVALUE.
    pub min: i64,
    /// MAXVALUE.
    pub max: i64,
    /// CACHE.
    pub cache: i64,
    /// CYCLE.
    pub cycle: bool,
}

/// `CREATE SEQUENCE` with every parameter spelled out.
pub fn create_sequence(s: &Sequence) -> String {
    format!(
        "CREATE SEQUENCE {} AS {} {};\n\n",
        s.name,
        s.type_name,
        sequence_options(s)
    )
}

/// `setval` with the sequence's state at the snapshot.
pub fn setval(name: &str, last_value: i64, is_called: bool) -> String {
    format!(
        "SELECT pg_catalog.setval({}, {last_value}, {is_called});\n",
        quote_literal(name)
    )
}

/// One privilege of an ACL, from `aclexplode`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Quoted role name; `None` is PUBLIC.
    pub grantee: Option<String>,
    /// `SELECT`, `USAGE`, `EXECUTE`...
    pub privilege: String,
    /// WITH GRANT OPTION.
    pub grantable: bool,
}

/// The privileges of an object with a non-null ACL: everything revoked (from PUBLIC and the
/// owner: the ACL is then empty), then each privilege granted again in the ACL's order, so
/// the restored ACL is the same array. Granted by the owner (the inventory refuses others).
pub fn privileges(object_type: &str, name: &str, owner: &str, grants: &[Grant]) -> String {
    let mut sql = format!(
        "REVOKE ALL ON {object_type} {name} FROM PUBLIC;\nREVOKE ALL ON {object_type} {name} FROM {owner};\n"
    );
    for grant in grants {
        sql.push_str(&format!(
            "GRANT {} ON {object_type} {name} TO {}{};\n",
            grant.privilege,
            grant.grantee.as_deref().unwrap_or("PUBLIC"),
            if grant.grantable {
                " WITH GRANT OPTION"
            } else {
                ""
            }
        ));
    }
    sql
}

/// `COPY ... FROM stdin;`, the line that opens a table's data (no list for no columns).
pub fn copy_from_stdin(table: &str, columns: &[String]) -> String {
    match columns.is_empty() {
        true => format!("COPY {table} FROM stdin;\n"),
        false => format!("COPY {table} ({}) FROM stdin;\n", columns.join(", ")),
    }
}

/// `COPY ... TO STDOUT`, the query that reads it.
pub fn copy_to_stdout(table: &str, columns: &[String]) -> String {
    match columns.is_empty() {
        true => format!("COPY {table} TO STDOUT"),
        false => format!("COPY {table} ({}) TO STDOUT", columns.join(", ")),
    }
}

/// The last line of a complete native dump.
pub const END_LINE: &str = "-- end of the pgback native dump";

/// The line that ends a table's data.
pub const COPY_END: &str = "\\.\n\n";

/// `CREATE VIEW` or, empty until refreshed, `CREATE MATERIALIZED VIEW ... WITH NO DATA`;
/// `definition` is `pg_get_viewdef`'s (ending in `;`).
pub fn create_view(name: &str, options: &[String], definition: &str, materialized: bool) -> String {
    let definition = definition.trim_end().trim_end_matches(';');
    match materialized {
        true => format!(
            "\nCREATE MATERIALIZED VIEW {name}{} AS\n{definition}\n  WITH NO DATA;\n",
            with_options(options)
        ),
        false => format!(
            "\nCREATE VIEW {name}{} AS\n{definition};\n",
            with_options(options)
        ),
    }
}

/// Orders views so that each comes after the views it reads: `depends` holds (view, view it
/// reads) pairs; a cycle (impossible in a catalog) keeps the remaining views in oid order.
pub fn view_order(views: &[u32], depends: &[(u32, u32)]) -> Vec<u32> {
    let mut done: Vec<u32> = Vec::with_capacity(views.len());
    let mut left: Vec<u32> = views.to_vec();
    while !left.is_empty() {
        let ready: Vec<u32> = left
            .iter()
            .copied()
            .filter(|v| {
                depends
                    .iter()
                    .all(|(view, on)| view != v || !left.contains(on) || on == v)
            })
            .collect();
        if ready.is_empty() {
            done.append(&mut left);
            break;
        }
        left.retain(|v| !ready.contains(v));
        done.extend(ready);
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_table(name: &str, columns: &[Column], options: &[String]) -> String {
        let lines: Vec<String> = columns.iter().map(column_line).collect();
        table_statement(name, &lines, "", options)
    }

    #[test]
    fn tables_sequences_and_copy_framing() {
        let columns = [
            Column {
                name: "id".into(),
                type_name: "integer".into(),
                collation: None,
                not_null: true,
                default: Some("nextval('public.t_id_seq'::regclass)".into()),
                generated: false,
                identity: None,
            },
            Column {
                name: "\"Odd\"".into(),
                type_name: "character varying(10)[]".into(),
                collation: Some("pg_catalog.\"C\"".into()),
                not_null: false,
                default: None,
                generated: false,
                identity: None,
            },
        ];
        assert_eq!(
            create_table("public.t", &columns, &[]),
            "CREATE TABLE public.t (\n    id integer DEFAULT nextval('public.t_id_seq'::regclass) NOT NULL,\n    \"Odd\" character varying(10)[] COLLATE pg_catalog.\"C\"\n);\n\n"
        );
        assert_eq!(
            create_table("public.e", &[], &["fillfactor=70".into()]),
            "CREATE TABLE public.e (\n) WITH (fillfactor='70');\n\n"
        );
        assert_eq!(
            with_options(&["check_option=local".into(), "security_barrier=true".into()]),
            " WITH (check_option='local', security_barrier='true')"
        );
        assert_eq!(with_options(&[]), "");
        let seq = Sequence {
            name: "public.s".into(),
            type_name: "bigint".into(),
            start: 1,
            increment: -2,
            min: -100,
            max: 9,
            cache: 1,
            cycle: true,
        };
        assert_eq!(
            create_sequence(&seq),
            "CREATE SEQUENCE public.s AS bigint START WITH 1 INCREMENT BY -2 MINVALUE -100 MAXVALUE 9 CACHE 1 CYCLE;\n\n"
        );
        assert_eq!(
            setval("public.\"it's\"", 42, false),
            "SELECT pg_catalog.setval('public.\"it''s\"', 42, false);\n"
        );
        let cols = ["a".to_string(), "\"B\"".to_string()];
        assert_eq!(
            copy_from_stdin("public.t", &cols),
            "COPY public.t (a, \"B\") FROM stdin;\n"
        );
        assert_eq!(copy_to_stdout("public.e", &[]), "COPY public.e TO STDOUT");
    }

    #[test]
    fn identity_and_generated_columns() {
        let sequence = Sequence {
            name: "public.t_i_seq".into(),
            type_name: "integer".into(),
            start: 5,
            increment: 1,
            min: 1,
            max: 2147483647,
            cache: 1,
            cycle: false,
        };
        let columns = [
            Column {
                name: "i".into(),
                type_name: "integer".into(),
                collation: None,
                not_null: true,
                default: None,
                generated: false,
                identity: Some((Identity::Always, sequence)),
            },
            Column {
                name: "twice".into(),
                type_name: "integer".into(),
                collation: None,
                not_null: false,
                default: Some("(i * 2)".into()),
                generated: true,
                identity: None,
            },
        ];
        assert_eq!(
            create_table("public.t", &columns, &[]),
            "CREATE TABLE public.t (\n    i integer GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME public.t_i_seq START WITH 5 INCREMENT BY 1 MINVALUE 1 MAXVALUE 2147483647 CACHE 1 NO CYCLE) NOT NULL,\n    twice integer GENERATED ALWAYS AS ((i * 2)) STORED\n);\n\n"
        );
    }

    #[test]
    fn privileges_are_replayed_in_order_after_revoking_all() {
        let grants = [
            Grant {
                grantee: Some("u1".into()),
                privilege: "SELECT".into(),
                grantable: false,
            },
            Grant {
                grantee: None,
                privilege: "USAGE".into(),
                grantable: true,
            },
        ];
        assert_eq!(
            privileges("SCHEMA", "s", "\"Owner\"", &grants),
            "REVOKE ALL ON SCHEMA s FROM PUBLIC;\nREVOKE ALL ON SCHEMA s FROM \"Owner\";\n\
             GRANT SELECT ON SCHEMA s TO u1;\nGRANT USAGE ON SCHEMA s TO PUBLIC WITH GRANT OPTION;\n"
        );
    }

    #[test]
    fn the_framing_is_found_only_with_the_marker() {
        assert_eq!(
            marker_of("-- pgback native dump, format 1, marker 0a1b\n"),
            Some("0a1b")
        );
        assert_eq!(
            marker_of("-- pgback native dump, format 1, marker \n"),
            None
        );
        assert_eq!(marker_of("--\n"), None);
        assert_eq!(
            frame_of(batch_line("0a1b").as_bytes(), "0a1b"),
            Some(Frame::Batch)
        );
        assert_eq!(frame_of(batch_line("ffff").as_bytes(), "0a1b"), None);
        let cols = ["a".to_string()];
        let lines = copy_lines("0a1b", "public.\"x\ny\"", &cols);
        let (frame, statement) = lines.split_once('\n').unwrap();
        assert_eq!(
            frame_of(frame.as_bytes(), "0a1b"),
            Some(Frame::Copy(statement.len() - 1))
        );
        assert_eq!(statement, "COPY public.\"x\ny\" (a) FROM stdin;\n");
        assert_eq!(frame_of(b"-- pgback 0a1b copy x\n", "0a1b"), None);
    }

    #[test]
    fn views_and_materialized_views() {
        assert_eq!(
            create_view("public.v", &[], " SELECT 1 AS one;", false),
            "\nCREATE VIEW public.v AS\n SELECT 1 AS one;\n"
        );
        assert_eq!(
            create_view("public.m", &["fillfactor=50".into()], " SELECT 1 AS one;", true),
            "\nCREATE MATERIALIZED VIEW public.m WITH (fillfactor='50') AS\n SELECT 1 AS one\n  WITH NO DATA;\n"
        );
    }

    #[test]
    fn views_follow_the_views_they_read() {
        assert_eq!(view_order(&[1, 2, 3], &[(1, 3), (3, 2)]), vec![2, 3, 1]);
        assert_eq!(view_order(&[1, 2], &[(1, 2), (2, 1)]), vec![1, 2]);
        assert_eq!(view_order(&[5], &[(5, 99)]), vec![5]);
    }

    #[test]
    fn the_preamble_sets_what_pg_dump_sets() {
        let text = preamble("db\nx", ServerVersion(180001), "LATIN1", "00ff");
        assert!(text.starts_with("-- pgback native dump, format 1, marker 00ff\n"));
        assert!(text.ends_with("-- pgback 00ff batch\n\n"));
        for line in [
            "SET client_encoding = 'UTF8';",
            "SELECT pg_catalog.set_config('search_path', '', false);",
            "SET standard_conforming_strings = on;",
            "SET extra_float_digits = 3;",
            "SET DateStyle = ISO;",
            "SET IntervalStyle = postgres;",
            "-- Database db x (encoding LATIN1),",
        ] {
            assert!(text.contains(line), "{line}");
        }
    }
}
