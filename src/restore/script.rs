//! The SQL scripts of a dump set read as statements: the globals without the `CREATE ROLE` of
//! roles the target already has, and a `createdb.sql` turned into `ALTER DATABASE` for a
//! database that exists. Quoting (`'..'`, `E'..'`, `".."`, `$tag$..$tag$`), comments and psql
//! meta-commands (`\restrict`, `\connect`) are respected; every other byte is kept as it is.

use std::collections::BTreeSet;

use crate::server::quote_ident;

/// A part of a psql script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// One SQL statement through its `;` (or the end of the text).
    Statement(&'a str),
    /// A psql meta-command line, newline included.
    Meta(&'a str),
    /// Whitespace and comments between them.
    Gap(&'a str),
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The end (exclusive) of a `--` comment starting at `i`.
fn line_comment_end(bytes: &[u8], i: usize) -> usize {
    bytes[i..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |n| i + n + 1)
}

/// The end of a (nested) `/* */` comment starting at `i`.
fn block_comment_end(bytes: &[u8], mut i: usize) -> usize {
    let mut depth = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if bytes[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// The end of a quoted run starting at `i` (`'`, `"`), with `E''` backslash escapes.
fn quoted_end(bytes: &[u8], i: usize, backslashes: bool) -> usize {
    let quote = bytes[i];
    let mut j = i + 1;
    while j < bytes.len() {
        let b = bytes[j];
        if backslashes && b == b'\\' {
            j += 2;
        } else if b == quote {
            if bytes.get(j + 1) == Some(&quote) {
                j += 2;
            } else {
                return j + 1;
            }
        } else {
            j += 1;
        }
    }
    bytes.len()
}

/// The end of a `$tag$...$tag$` string starting at `i`, or `None` when `$` starts no tag.
fn dollar_end(bytes: &[u8], i: usize) -> Option<usize> {
    let tag_len = bytes[i + 1..]
        .iter()
        .position(|&b| b == b'$')
        .filter(|&n| {
            bytes[i + 1..i + 1 + n]
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80)
                && !bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
        })?;
    let tag = &bytes[i..i + tag_len + 2];
    let body = i + tag.len();
    let close = bytes[body..].windows(tag.len()).position(|w| w == tag)?;
    Some(body + close + tag.len())
}

/// Where the token starting at `i` ends when it is a quoted run, a comment or a dollar string.
fn skip_quoted(bytes: &[u8], i: usize) -> Option<usize> {
    let prev_is_ident = i > 0 && is_ident_byte(bytes[i - 1]);
    match bytes[i] {
        b'\'' => {
            let e = i > 0
                && matches!(bytes[i - 1], b'E' | b'e')
                && !(i > 1 && is_ident_byte(bytes[i - 2]));
            Some(quoted_end(bytes, i, e))
        }
        b'"' => Some(quoted_end(bytes, i, false)),
        b'-' if bytes.get(i + 1) == Some(&b'-') => Some(line_comment_end(bytes, i)),
        b'/' if bytes.get(i + 1) == Some(&b'*') => Some(block_comment_end(bytes, i)),
        b'$' if !prev_is_ident => dollar_end(bytes, i),
        _ => None,
    }
}

/// Splits a psql script into statements, meta-commands and the gaps between them.
pub fn split_script(text: &str) -> Vec<Piece<'_>> {
    let bytes = text.as_bytes();
    let mut pieces = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let gap_start = pos;
        loop {
            if pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
                pos += 1;
            } else if bytes[pos..].starts_with(b"--") {
                pos = line_comment_end(bytes, pos);
            } else if bytes[pos..].starts_with(b"/*") {
                pos = block_comment_end(bytes, pos);
            } else {
                break;
            }
        }
        if pos > gap_start {
            pieces.push(Piece::Gap(&text[gap_start..pos]));
        }
        if pos >= bytes.len() {
            break;
        }
        let start = pos;
        if bytes[pos] == b'\\' {
            pos = line_comment_end(bytes, pos);
            pieces.push(Piece::Meta(&text[start..pos]));
            continue;
        }
        while pos < bytes.len() {
            if let Some(end) = skip_quoted(bytes, pos) {
                pos = end;
            } else if bytes[pos] == b';' {
                pos += 1;
                break;
            } else {
                pos += 1;
            }
        }
        pieces.push(Piece::Statement(&text[start..pos]));
    }
    pieces
}

/// A token of a statement, enough to recognise the few shapes this module rewrites.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare word, lowercased as the server folds it.
    Word(String),
    /// A quoted identifier, unescaped.
    Quoted(String),
    /// A string literal (content not kept).
    Literal,
    /// Any other character.
    Symbol(char),
}

impl Token {
    fn is_word(&self, word: &str) -> bool {
        matches!(self, Token::Word(w) if w == word)
    }

    /// The name this token stands for, when it is an identifier.
    fn name(&self) -> Option<&str> {
        match self {
            Token::Word(w) | Token::Quoted(w) => Some(w),
            _ => None,
        }
    }
}

fn tokens(statement: &str) -> Vec<Token> {
    let bytes = statement.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_whitespace() {
            i += 1;
        } else if b == b'"' {
            let end = quoted_end(bytes, i, false);
            let inner = &statement[i + 1..end.saturating_sub(1).max(i + 1)];
            out.push(Token::Quoted(inner.replace("\"\"", "\"")));
            i = end;
        } else if let Some(end) = skip_quoted(bytes, i) {
            if matches!(b, b'\'' | b'$') {
                out.push(Token::Literal);
            }
            i = end;
        } else if is_ident_byte(b) {
            let start = i;
            while i < bytes.len() && is_ident_byte(bytes[i]) {
                i += 1;
            }
            let word = &statement[start..i];
            if bytes.get(i) == Some(&b'\'') && matches!(word, "E" | "e") {
                // E'..': the literal follows.
                continue;
            }
            out.push(Token::Word(word.to_ascii_lowercase()));
        } else {
            let c = statement[i..].chars().next().unwrap_or('\0');
            out.push(Token::Symbol(c));
            i += c.len_utf8().max(1);
        }
    }
    out
}

/// The first statement of a script, tokenised.
fn first_statement(text: &str) -> Option<(&str, Vec<Token>)> {
    split_script(text)
        .into_iter()
        .find_map(|piece| match piece {
            Piece::Statement(s) => Some((s, tokens(s))),
            _ => None,
        })
}

/// The database a createdb.sql is for: the name after `CREATE DATABASE` or `ALTER DATABASE`
/// in its first statement.
pub fn createdb_database_name(text: &str) -> Option<String> {
    let (_, tokens) = first_statement(text)?;
    match tokens.as_slice() {
        [first, second, name, ..]
            if (first.is_word("create") || first.is_word("alter"))
                && second.is_word("database") =>
        {
            name.name().map(str::to_string)
        }
        _ => None,
    }
}

/// A createdb.sql this module cannot rewrite.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("its first statement is neither CREATE DATABASE .. OWNER nor ALTER DATABASE")]
pub struct UnexpectedCreatedb;

/// Turns a createdb.sql into the script for a database that already exists: its settings are
/// reset first, `CREATE DATABASE` becomes `ALTER DATABASE .. OWNER TO` (plus `CONNECTION
/// LIMIT`), and the rest (ACL, `IS_TEMPLATE`, settings) is kept. Encoding, locale and tablespace
/// of an existing database stay as they are.
pub fn createdb_for_existing(text: &str) -> Result<String, UnexpectedCreatedb> {
    let pieces = split_script(text);
    let first = pieces
        .iter()
        .position(|p| matches!(p, Piece::Statement(_)))
        .ok_or(UnexpectedCreatedb)?;
    let Piece::Statement(statement) = pieces[first] else {
        return Err(UnexpectedCreatedb);
    };
    let tokens = tokens(statement);
    let (is_create, name) = match tokens.as_slice() {
        [a, b, name, ..] if a.is_word("create") && b.is_word("database") => (true, name.name()),
        [a, b, name, ..] if a.is_word("alter") && b.is_word("database") => (false, name.name()),
        _ => (false, None),
    };
    let name = name.ok_or(UnexpectedCreatedb)?;
    let db = quote_ident(name);
    let mut out = format!("ALTER DATABASE {db} RESET ALL;\n");
    for (index, piece) in pieces.iter().enumerate() {
        let text = match piece {
            Piece::Statement(s) | Piece::Meta(s) | Piece::Gap(s) => *s,
        };
        if index != first || !is_create {
            out.push_str(text);
            continue;
        }
        let owner = tokens
            .windows(3)
            .find_map(|w| match w {
                [o, Token::Symbol('='), name] if o.is_word("owner") => name.name(),
                _ => None,
            })
            .or_else(|| {
                tokens.windows(2).find_map(|w| match w {
                    [o, name] if o.is_word("owner") => name.name(),
                    _ => None,
                })
            })
            .ok_or(UnexpectedCreatedb)?;
        out.push_str(&format!(
            "ALTER DATABASE {db} OWNER TO {};",
            quote_ident(owner)
        ));
        let limit = tokens.windows(4).find_map(|w| match w {
            [c, l, Token::Symbol('='), Token::Word(n)]
                if c.is_word("connection") && l.is_word("limit") =>
            {
                Some(n.clone())
            }
            _ => None,
        });
        if let Some(limit) = limit.filter(|n| n.parse::<i32>().is_ok()) {
            out.push_str(&format!("\nALTER DATABASE {db} CONNECTION LIMIT {limit};"));
        }
    }
    Ok(out)
}

/// The globals script without the `CREATE ROLE` statements of roles in `existing`, and the
/// roles left out (in script order). Their `ALTER ROLE` statements stay, so their attributes
/// (and password, when dumped) become the dump's, as pg_dumpall's script does.
pub fn globals_without_roles(text: &str, existing: &BTreeSet<String>) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut skipped = Vec::new();
    for piece in split_script(text) {
        match piece {
            Piece::Statement(statement) => {
                let tokens = tokens(statement);
                let role = match tokens.as_slice() {
                    [c, r, name, Token::Symbol(';')]
                        if c.is_word("create") && r.is_word("role") =>
                    {
                        name.name()
                    }
                    _ => None,
                };
                match role {
                    Some(role) if existing.contains(role) => {
                        skipped.push(role.to_string());
                        out.push_str("-- CREATE ROLE skipped by pgback --restore: the role exists");
                    }
                    _ => out.push_str(statement),
                }
            }
            Piece::Meta(s) | Piece::Gap(s) => out.push_str(s),
        }
    }
    (out, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GLOBALS: &str = "--\n-- PostgreSQL database cluster dump\n--\n\n\\restrict abc123\n\n\
        SET default_transaction_read_only = off;\n\nCREATE ROLE postgres;\n\
        ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;\n\
        CREATE ROLE u1;\nALTER ROLE u1 WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:x;CREATE ROLE u1;';\n\
        CREATE ROLE \"we\"\"ird\nrole\";\nALTER ROLE \"we\"\"ird\nrole\" WITH LOGIN;\n\
        ALTER ROLE u1 SET search_path TO E'a\\';b';\n\
        GRANT u1 TO \"we\"\"ird\nrole\" GRANTED BY postgres;\n\n\\unrestrict abc123\n";

    #[test]
    fn scripts_split_into_statements() {
        let pieces = split_script(GLOBALS);
        let statements: Vec<&str> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Statement(s) => Some(*s),
                _ => None,
            })
            .collect();
        assert_eq!(statements.len(), 9, "{statements:#?}");
        assert_eq!(
            statements[4],
            "ALTER ROLE u1 WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:x;CREATE ROLE u1;';"
        );
        assert_eq!(statements[7], "ALTER ROLE u1 SET search_path TO E'a\\';b';");
        let metas: Vec<&str> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Meta(s) => Some(*s),
                _ => None,
            })
            .collect();
        assert_eq!(metas, ["\\restrict abc123\n", "\\unrestrict abc123\n"]);
        // Nothing is lost.
        let joined: String = pieces
            .iter()
            .map(|p| match p {
                Piece::Statement(s) | Piece::Meta(s) | Piece::Gap(s) => *s,
            })
            .collect();
        assert_eq!(joined, GLOBALS);
        let odd = "SELECT $f$;'$f$, $1, /* ; /* ; */ */ 'x''y', \"a;b\"; SELECT 2";
        let pieces = split_script(odd);
        assert_eq!(
            pieces,
            [
                Piece::Statement("SELECT $f$;'$f$, $1, /* ; /* ; */ */ 'x''y', \"a;b\";"),
                Piece::Gap(" "),
                Piece::Statement("SELECT 2"),
            ]
        );
    }

    #[test]
    fn existing_roles_are_not_created_again() {
        let existing: BTreeSet<String> = ["postgres", "we\"ird\nrole", "other"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (script, skipped) = globals_without_roles(GLOBALS, &existing);
        assert_eq!(skipped, ["postgres", "we\"ird\nrole"]);
        assert!(!script.contains("CREATE ROLE postgres;"));
        assert!(!script.contains("CREATE ROLE \"we"));
        assert!(script.contains("CREATE ROLE u1;\n"));
        assert!(script.contains("ALTER ROLE postgres WITH SUPERUSER"));
        assert!(script.contains("PASSWORD 'SCRAM-SHA-256$4096:x;CREATE ROLE u1;'"));
        assert!(script
            .starts_with("--\n-- PostgreSQL database cluster dump\n--\n\n\\restrict abc123\n"));
        let (same, none) = globals_without_roles(GLOBALS, &BTreeSet::new());
        assert_eq!((same.as_str(), none.len()), (GLOBALS, 0));
    }

    #[test]
    fn createdb_scripts_for_existing_databases() {
        let create = "CREATE DATABASE \"x=y \"\"z\" WITH TEMPLATE = template0 OWNER = \"u 1\" \
            ENCODING = 'UTF8' LC_COLLATE = 'C' LC_CTYPE = 'C' CONNECTION LIMIT = 7;\n\
            REVOKE ALL ON DATABASE \"x=y \"\"z\" FROM PUBLIC;\n\
            ALTER DATABASE \"x=y \"\"z\" SET \"work_mem\" TO '5MB';\n";
        assert_eq!(createdb_database_name(create).as_deref(), Some("x=y \"z"));
        assert_eq!(
            createdb_for_existing(create).unwrap(),
            "ALTER DATABASE \"x=y \"\"z\" RESET ALL;\n\
             ALTER DATABASE \"x=y \"\"z\" OWNER TO \"u 1\";\n\
             ALTER DATABASE \"x=y \"\"z\" CONNECTION LIMIT 7;\n\
             REVOKE ALL ON DATABASE \"x=y \"\"z\" FROM PUBLIC;\n\
             ALTER DATABASE \"x=y \"\"z\" SET \"work_mem\" TO '5MB';\n"
        );
        let always = "-- \"postgres\" exists in every cluster: not created\n\
            ALTER DATABASE \"postgres\" OWNER TO \"postgres\";\n";
        assert_eq!(createdb_database_name(always).as_deref(), Some("postgres"));
        assert_eq!(
            createdb_for_existing(always).unwrap(),
            format!("ALTER DATABASE \"postgres\" RESET ALL;\n{always}")
        );
        // pg_back writes bare names.
        let bare = "CREATE DATABASE b1 WITH TEMPLATE = template0 OWNER = u1 ENCODING = 'UTF8';\n";
        assert_eq!(createdb_database_name(bare).as_deref(), Some("b1"));
        assert!(createdb_for_existing(bare)
            .unwrap()
            .contains("ALTER DATABASE \"b1\" OWNER TO \"u1\";"));
        assert_eq!(createdb_for_existing("SELECT 1;"), Err(UnexpectedCreatedb));
        assert_eq!(createdb_database_name(""), None);
    }
}
