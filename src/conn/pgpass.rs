//! `~/.pgpass` (or `passfile` / `PGPASSFILE`): the password for one host, found like libpq
//! finds it, and ignored with a warning when others may read the file.

use std::fs;
use std::io::{self, BufRead as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use crate::conn::settings::{ConnSettings, HostTarget, Password};

impl ConnSettings {
    /// The password for one host: the explicit one, else the matching password-file line.
    pub fn password_for(&self, target: &HostTarget) -> Option<Password> {
        if let Some(password) = self.password.as_ref().filter(|p| !p.0.is_empty()) {
            return Some(password.clone());
        }
        let passfile = self.passfile.as_ref()?;
        pgpass_lookup(passfile, target, &self.dbname, &self.user)
    }
}

/// Looks `target` up in a password file. A missing file gives nothing; a file that is not a
/// regular file or that others may read is ignored with a warning, like libpq.
fn pgpass_lookup(file: &Path, target: &HostTarget, dbname: &str, user: &str) -> Option<Password> {
    let meta = match fs::metadata(file) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %file.display(), "password file ignored: {e}");
            return None;
        }
    };
    if !meta.is_file() {
        tracing::warn!(file = %file.display(), "password file ignored: not a regular file");
        return None;
    }
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(
            file = %file.display(),
            "password file ignored: it has group or world access; permissions should be u=rw (0600) or less"
        );
        return None;
    }
    let handle = match fs::File::open(file) {
        Ok(handle) => handle,
        Err(e) => {
            tracing::warn!(file = %file.display(), "password file ignored: {e}");
            return None;
        }
    };
    // libpq matches a socket connection against "localhost".
    let host = match target {
        HostTarget::Tcp { host, .. } => host.as_str(),
        HostTarget::Socket { .. } => "localhost",
    };
    let port = target.port().to_string();
    for line in io::BufReader::new(handle).lines() {
        let Ok(line) = line else {
            tracing::warn!(file = %file.display(), "password file: stopped at an unreadable line");
            return None;
        };
        if let Some(password) = pgpass_match(&line, host, &port, dbname, user) {
            return Some(password);
        }
    }
    None
}

/// One `hostname:port:database:username:password` line against a connection. `*` matches
/// anything; `\:` and `\\` are a literal colon and backslash.
pub(super) fn pgpass_match(
    line: &str,
    host: &str,
    port: &str,
    dbname: &str,
    user: &str,
) -> Option<Password> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut rest = line;
    for wanted in [host, port, dbname, user] {
        rest = pgpass_field_matches(rest, wanted)?;
    }
    // The rest is the password, up to an unescaped ':'.
    let mut password = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            ':' => break,
            '\\' => match chars.next() {
                Some(escaped) => password.push(escaped),
                None => password.push('\\'),
            },
            c => password.push(c),
        }
    }
    Some(Password(password))
}

/// If the field at the start of `rest` matches `wanted`, what follows its ':'.
fn pgpass_field_matches<'a>(rest: &'a str, wanted: &str) -> Option<&'a str> {
    if let Some(after) = rest.strip_prefix("*:") {
        return Some(after);
    }
    let mut field = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            ':' => return (field == wanted).then(|| &rest[i + 1..]),
            '\\' => field.push(chars.next().map_or('\\', |(_, c)| c)),
            c => field.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::testing::{resolve, socket, tcp, test_env, write_mode};
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn pgpass_lines() {
        let exact = "db.example:5432:sales:bob:pw1";
        assert_eq!(
            pgpass_match(exact, "db.example", "5432", "sales", "bob").map(|p| p.0),
            Some("pw1".into())
        );
        assert!(pgpass_match(exact, "db.example", "5433", "sales", "bob").is_none());
        assert!(pgpass_match(exact, "db.example", "5432", "sales", "eve").is_none());
        let wild = "*:*:*:bob:pw2";
        assert_eq!(
            pgpass_match(wild, "any", "1", "x", "bob").map(|p| p.0),
            Some("pw2".into())
        );
        let escaped = r"h\:1:5432:d\\b:u:p\:w\\d:ignored";
        assert_eq!(
            pgpass_match(escaped, "h:1", "5432", r"d\b", "u").map(|p| p.0),
            Some(r"p:w\d".into())
        );
        assert!(pgpass_match("# *:*:*:*:x", "h", "1", "d", "u").is_none());
        assert!(pgpass_match("", "h", "1", "d", "u").is_none());
        assert!(pgpass_match("h:1:d", "h", "1", "d", "u").is_none());
    }

    #[test]
    fn pgpass_file_first_match_wins_and_localhost_matches_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        write_mode(
            &file,
            "# comment\r\nlocalhost:5432:*:alice:sock\ndb:*:*:alice:first\ndb:*:*:alice:second\n*:*:*:*:fallback\n",
            0o600,
        );
        assert_eq!(
            pgpass_lookup(&file, &socket(), "x", "alice").map(|p| p.0),
            Some("sock".into())
        );
        assert_eq!(
            pgpass_lookup(&file, &tcp("db", 9999), "x", "alice").map(|p| p.0),
            Some("first".into())
        );
        assert_eq!(
            pgpass_lookup(&file, &tcp("other", 5432), "x", "alice").map(|p| p.0),
            Some("fallback".into())
        );
        assert!(pgpass_lookup(&dir.path().join("missing"), &socket(), "x", "alice").is_none());
    }

    #[test]
    fn pgpass_readable_by_others_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        write_mode(&file, "*:*:*:*:secret\n", 0o644);
        assert!(pgpass_lookup(&file, &socket(), "d", "u").is_none());
        fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(pgpass_lookup(&file, &socket(), "d", "u").is_none());
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(pgpass_lookup(&file, &socket(), "d", "u").is_some());
        // A directory is not a password file.
        assert!(pgpass_lookup(dir.path(), &socket(), "d", "u").is_none());
    }

    #[test]
    fn explicit_password_wins_over_pgpass_and_empty_means_none() {
        let home = tempfile::tempdir().unwrap();
        write_mode(&home.path().join(".pgpass"), "*:*:*:*:frompass\n", 0o600);
        let env = test_env(home.path(), &[]);
        let settings = resolve("host=h password=given", &env).unwrap();
        assert_eq!(
            settings.password_for(&settings.hosts[0]).map(|p| p.0),
            Some("given".into())
        );
        let settings = resolve("host=h password=", &env).unwrap();
        assert_eq!(
            settings.password_for(&settings.hosts[0]).map(|p| p.0),
            Some("frompass".into())
        );
        let other = home.path().join("other");
        write_mode(&other, "h:5432:alice:alice:viaparam\n", 0o600);
        let settings = resolve(&format!("host=h passfile={}", other.display()), &env).unwrap();
        assert_eq!(
            settings.password_for(&settings.hosts[0]).map(|p| p.0),
            Some("viaparam".into())
        );
    }
}
