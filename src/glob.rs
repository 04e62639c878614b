//! The one glob of the DBNAME patterns (`--download`, `--list-remote`, `--decrypt`, `--restore`):
//! parsed once, a malformed pattern refused with its text, matched as Go's `filepath.Match`.
//!
//! Uses nothing of the crate but [`crate::exit`]. Syntax: `*` (any run of characters but `/`),
//! `?` (one character), `[abc]`, `[a-z]`, `[!x]` or `[^x]` (a class; `]` first is literal), and
//! `\` quoting the next character outside a class. Built on the `glob` crate, with the `\` and
//! `[^` of pg_back's Go globs translated into its syntax.

use crate::exit::{ExitStatus, Failure};

/// A pattern that does not parse: the run stops before anything is done (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pattern {pattern:?}: {reason}")]
pub struct GlobError {
    /// The pattern as the user wrote it.
    pub pattern: String,
    /// Why it does not parse.
    pub reason: String,
}

impl Failure for GlobError {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Usage
    }
    fn hint(&self) -> Option<String> {
        Some("close each '[' with ']', or quote a literal '[' as '\\[' (and quote the pattern for the shell)".into())
    }
}

/// One parsed pattern.
#[derive(Debug, Clone)]
pub struct Glob {
    text: String,
    pattern: glob::Pattern,
}

impl Glob {
    /// Parses `text`; an unclosed class or a trailing `\` is an error naming it.
    pub fn new(text: &str) -> Result<Glob, GlobError> {
        let error = |reason: &str| GlobError {
            pattern: text.to_string(),
            reason: reason.to_string(),
        };
        let translated = translate(text).ok_or_else(|| error("ends with an unquoted '\\'"))?;
        let pattern = glob::Pattern::new(&translated).map_err(|e| error(e.msg))?;
        Ok(Glob {
            text: text.to_string(),
            pattern,
        })
    }

    /// Parses every pattern; the first malformed one is the error.
    pub fn parse_all(texts: &[String]) -> Result<Vec<Glob>, GlobError> {
        texts.iter().map(|text| Glob::new(text)).collect()
    }

    /// Whether `name` matches the whole pattern (`*` and `?` never match `/`).
    pub fn matches(&self, name: &str) -> bool {
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        self.pattern.matches_with(name, options)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Whether one of `globs` matches `name`; every name matches an empty list.
pub fn any_matches(globs: &[Glob], name: &str) -> bool {
    globs.is_empty() || globs.iter().any(|glob| glob.matches(name))
}

/// Go's glob syntax in the `glob` crate's: `\c` outside a class becomes `c`, or `[c]` for a
/// metacharacter; `[^` becomes `[!`; a run of `*` becomes one. `None` for a trailing `\`.
fn translate(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if !in_class => match chars.next()? {
                meta @ ('*' | '?' | '[' | ']') => out.extend(['[', meta, ']']),
                other => out.push(other),
            },
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.next_if_eq(&'^').is_some() || chars.next_if_eq(&'!').is_some() {
                    out.push('!');
                }
                // A ']' right after the opening is part of the class.
                if let Some(bracket) = chars.next_if_eq(&']') {
                    out.push(bracket);
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            // Go reads `**` as `*`; the glob crate would take it for a recursive wildcard.
            '*' if !in_class => {
                while chars.next_if_eq(&'*').is_some() {}
                out.push('*');
            }
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_stars_are_one_star_as_in_go() {
        let glob = Glob::new("db**").unwrap();
        assert!(glob.matches("db_2026"));
        assert!(Glob::new("a***").unwrap().matches("abc"));
        assert!(!Glob::new("a**").unwrap().matches("b"));
    }

    #[test]
    fn matches_like_go() {
        for (glob, name, expected) in [
            ("*", "név", true),
            ("b?", "b1", true),
            ("b?", "b10", false),
            ("b[12]", "b2", true),
            ("b[!12]", "b2", false),
            ("b[^12]", "b3", true),
            ("b[^12]", "b1", false),
            ("[a-c]*", "b2", true),
            ("x=y z", "x=y z", true),
            ("a\"b", "a\"b", true),
            (".*", ".hidden", true),
            ("*", ".hidden", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("\\[x]", "[x]", true),
            ("\\a", "a", true),
            ("[]]", "]", true),
            ("*z", "x=y z", true),
            ("db_*", "db_x/y", false),
            ("App", "app", false),
        ] {
            let parsed = Glob::new(glob).unwrap();
            assert_eq!(parsed.matches(name), expected, "{glob} vs {name}");
            assert_eq!(parsed.as_str(), glob);
        }
    }

    #[test]
    fn malformed_patterns_are_refused_by_name() {
        for bad in ["[x", "[", "a[b-", "x\\", "[!"] {
            let error = Glob::new(bad).unwrap_err();
            assert_eq!(error.pattern, bad);
            assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
            assert_eq!(error.exit_status(), ExitStatus::Usage);
        }
        let texts = vec!["ok*".to_string(), "[x".to_string()];
        assert_eq!(Glob::parse_all(&texts).unwrap_err().pattern, "[x");
    }

    #[test]
    fn an_empty_list_matches_everything() {
        assert!(any_matches(&[], "anything"));
        let globs = Glob::parse_all(&["a*".into(), "b".into()]).unwrap();
        assert!(any_matches(&globs, "b"));
        assert!(!any_matches(&globs, "c"));
    }
}
