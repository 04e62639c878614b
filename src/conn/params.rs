//! libpq's keywords both ways: which ones safe-backup supports, refuses or does not know,
//! how their values are checked, conninfo strings (`keyword=value ...`, or a URI through
//! `uri.rs`) read into [`ConnParams`], and [`ConnSettings`] written back as a conninfo line
//! ([`ConnSettings::describe`], with the one [`quote_conninfo`]) or as the `PG*` variables of a
//! libpq child ([`ConnSettings::libpq_env`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::conn::error::{ConnError, Origin};
use crate::conn::settings::{
    ChannelBinding, ConnSettings, HostTarget, SslMode, TargetSessionAttrs, DEFAULT_PORT,
};
use crate::conn::uri::{parse_uri, strip_uri_prefix};

/// Every environment variable libpq reads. A caller that runs `pg_dump` clears these before
/// applying [`ConnSettings::libpq_env`], so that nothing resolved here is re-resolved
/// differently by the child (libpq lets a `PGSERVICE` beat `PGHOST`, for example).
pub const LIBPQ_ENV_VARS: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGSYSCONFDIR",
    "PGOPTIONS",
    "PGAPPNAME",
    "PGSSLMODE",
    "PGREQUIRESSL",
    "PGSSLCOMPRESSION",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGSSLCERTMODE",
    "PGSSLROOTCERT",
    "PGSSLCRL",
    "PGSSLCRLDIR",
    "PGSSLSNI",
    "PGSSLNEGOTIATION",
    "PGREQUIREPEER",
    "PGSSLMINPROTOCOLVERSION",
    "PGSSLMAXPROTOCOLVERSION",
    "PGGSSENCMODE",
    "PGKRBSRVNAME",
    "PGGSSLIB",
    "PGGSSDELEGATION",
    "PGCONNECT_TIMEOUT",
    "PGCLIENTENCODING",
    "PGTARGETSESSIONATTRS",
    "PGLOADBALANCEHOSTS",
    "PGREQUIREAUTH",
    "PGCHANNELBINDING",
    "PGDATESTYLE",
    "PGTZ",
    "PGGEQO",
];

/// The keywords safe-backup understands, with the environment variable libpq reads for each.
pub(super) const SUPPORTED: &[(&str, Option<&str>)] = &[
    ("host", Some("PGHOST")),
    ("hostaddr", Some("PGHOSTADDR")),
    ("port", Some("PGPORT")),
    ("dbname", Some("PGDATABASE")),
    ("user", Some("PGUSER")),
    ("password", Some("PGPASSWORD")),
    ("passfile", Some("PGPASSFILE")),
    ("connect_timeout", Some("PGCONNECT_TIMEOUT")),
    ("application_name", Some("PGAPPNAME")),
    ("fallback_application_name", None),
    ("options", Some("PGOPTIONS")),
    ("sslmode", Some("PGSSLMODE")),
    ("sslrootcert", Some("PGSSLROOTCERT")),
    ("sslcert", Some("PGSSLCERT")),
    ("sslkey", Some("PGSSLKEY")),
    ("keepalives", None),
    ("keepalives_idle", None),
    ("keepalives_interval", None),
    ("keepalives_count", None),
    ("target_session_attrs", Some("PGTARGETSESSIONATTRS")),
    ("service", Some("PGSERVICE")),
    ("channel_binding", Some("PGCHANNELBINDING")),
];

/// Real libpq keywords that safe-backup refuses rather than ignores, with their variables.
pub(super) const UNSUPPORTED: &[(&str, Option<&str>)] = &[
    ("gssencmode", Some("PGGSSENCMODE")),
    ("krbsrvname", Some("PGKRBSRVNAME")),
    ("gsslib", Some("PGGSSLIB")),
    ("gssdelegation", Some("PGGSSDELEGATION")),
    ("requirepeer", Some("PGREQUIREPEER")),
    ("sslcrl", Some("PGSSLCRL")),
    ("sslcrldir", Some("PGSSLCRLDIR")),
    ("sslcompression", Some("PGSSLCOMPRESSION")),
    ("sslpassword", None),
    ("sslcertmode", Some("PGSSLCERTMODE")),
    ("sslsni", Some("PGSSLSNI")),
    ("sslnegotiation", Some("PGSSLNEGOTIATION")),
    ("sslkeylogfile", None),
    ("ssl_min_protocol_version", Some("PGSSLMINPROTOCOLVERSION")),
    ("ssl_max_protocol_version", Some("PGSSLMAXPROTOCOLVERSION")),
    ("min_protocol_version", None),
    ("max_protocol_version", None),
    ("tcp_user_timeout", None),
    ("load_balance_hosts", Some("PGLOADBALANCEHOSTS")),
    ("require_auth", Some("PGREQUIREAUTH")),
    ("replication", None),
    ("client_encoding", Some("PGCLIENTENCODING")),
    ("servicefile", None),
    ("scram_client_key", None),
    ("scram_server_key", None),
    ("oauth_issuer", None),
    ("oauth_client_id", None),
    ("oauth_client_secret", None),
    ("oauth_scope", None),
    ("tty", None),
];

/// How to look up a keyword: supported, a real libpq keyword we refuse, or not libpq's at all.
pub(super) fn check_keyword(keyword: &str, origin: &Origin) -> Result<(), ConnError> {
    if SUPPORTED.iter().any(|(k, _)| *k == keyword) {
        Ok(())
    } else if UNSUPPORTED.iter().any(|(k, _)| *k == keyword) {
        Err(ConnError::Unsupported {
            keyword: keyword.to_owned(),
            origin: origin.clone(),
        })
    } else {
        Err(ConnError::InvalidKeyword {
            keyword: keyword.to_owned(),
            origin: origin.clone(),
        })
    }
}

/// Checks a value for a supported keyword. Passwords are never checked, so never echoed.
pub(super) fn check_value(keyword: &str, value: &str, origin: &Origin) -> Result<(), ConnError> {
    let invalid = |reason: &str| ConnError::InvalidValue {
        keyword: keyword.to_owned(),
        value: value.to_owned(),
        origin: origin.clone(),
        reason: reason.to_owned(),
    };
    match keyword {
        "port" => {
            for port in value.split(',') {
                if !port.trim().is_empty() {
                    parse_port(port)
                        .ok_or_else(|| invalid("a port is a number from 1 to 65535"))?;
                }
            }
        }
        "hostaddr" => {
            for addr in value.split(',') {
                if !addr.trim().is_empty() && addr.trim().parse::<std::net::IpAddr>().is_err() {
                    return Err(invalid("hostaddr takes numeric IP addresses"));
                }
            }
        }
        "connect_timeout" | "keepalives"
            if !value.trim().is_empty() && value.trim().parse::<i64>().is_err() =>
        {
            return Err(invalid("expected an integer"));
        }
        "keepalives_idle" | "keepalives_interval" | "keepalives_count"
            if !value.trim().is_empty() && value.trim().parse::<u32>().is_err() =>
        {
            return Err(invalid("expected a non-negative integer"));
        }
        "sslmode" => {
            value.parse::<SslMode>().map_err(|()| {
                invalid("expected disable, allow, prefer, require, verify-ca or verify-full")
            })?;
        }
        "channel_binding" => {
            value
                .parse::<ChannelBinding>()
                .map_err(|()| invalid("expected disable, prefer or require"))?;
        }
        "target_session_attrs" => match value {
            "any" | "read-write" | "read-only" => {}
            "primary" | "standby" | "prefer-standby" => {
                return Err(invalid(
                    "not supported by safe-backup; supported are any, read-write and read-only",
                ))
            }
            _ => return Err(invalid("expected any, read-write or read-only")),
        },
        "sslrootcert" if value == "system" => {
            return Err(invalid(
                "the system certificate store is not supported by safe-backup; give a CA file",
            ))
        }
        _ => {}
    }
    Ok(())
}

pub(super) fn parse_port(text: &str) -> Option<u16> {
    text.trim().parse::<u16>().ok().filter(|p| *p != 0)
}

/// Raw, validated libpq keywords -> values, as parsed from a conninfo string or URI.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnParams {
    values: BTreeMap<String, String>,
}

impl fmt::Debug for ConnParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (keyword, value) in &self.values {
            if keyword == "password" {
                map.entry(keyword, &"********");
            } else {
                map.entry(keyword, value);
            }
        }
        map.finish()
    }
}

impl ConnParams {
    /// Parses a libpq connection string: `keyword=value ...` or a `postgresql://` /
    /// `postgres://` URI. The empty string gives empty params.
    pub fn parse(conninfo: &str) -> Result<ConnParams, ConnError> {
        let pairs = if let Some(rest) = strip_uri_prefix(conninfo) {
            parse_uri(rest)?
        } else {
            parse_keyword_value(conninfo)?
        };
        let mut params = ConnParams::default();
        for (keyword, value) in pairs {
            params.insert(&keyword, value)?;
        }
        Ok(params)
    }

    /// Sets one keyword, overriding an earlier value. Like libpq's `expand_dbname`, a `dbname`
    /// that is itself a connection string (contains `=` or starts with `postgresql://`) is
    /// expanded, each of its keywords overriding.
    pub fn set(&mut self, keyword: &str, value: &str) -> Result<(), ConnError> {
        if keyword == "dbname" && (value.contains('=') || strip_uri_prefix(value).is_some()) {
            let expanded = ConnParams::parse(value)?;
            self.values.extend(expanded.values);
            return Ok(());
        }
        self.insert(keyword, value.to_owned())
    }

    /// The value given for a keyword, if any.
    pub fn get(&self, keyword: &str) -> Option<&str> {
        self.values.get(keyword).map(String::as_str)
    }

    /// Whether no keyword was given.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn insert(&mut self, keyword: &str, value: String) -> Result<(), ConnError> {
        check_keyword(keyword, &Origin::Params)?;
        check_value(keyword, &value, &Origin::Params)?;
        self.values.insert(keyword.to_owned(), value);
        Ok(())
    }
}

/// libpq's `conninfo_parse`: `keyword = value` pairs, values optionally single-quoted, `\`
/// escaping the next character both inside and outside quotes.
fn parse_keyword_value(conninfo: &str) -> Result<Vec<(String, String)>, ConnError> {
    let mut pairs = Vec::new();
    let mut chars = conninfo.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut keyword = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            keyword.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.next() {
            Some('=') => {}
            None => return Err(ConnError::MissingValue { keyword }),
            Some(_) => return Err(ConnError::MissingEquals { keyword }),
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(ConnError::UnterminatedQuote),
                    Some('\\') => {
                        if let Some(c) = chars.next() {
                            value.push(c);
                        }
                    }
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((keyword, value));
    }
    Ok(pairs)
}

/// Writes `value` so that a conninfo string reads it back unchanged: bare when it is not empty
/// and holds no white space, `'` or `\`; otherwise single-quoted, with `'` and `\` escaped by a
/// backslash. The one quoter for every conninfo safe-backup writes (logs, `pg_dump -d`).
pub fn quote_conninfo(value: &str) -> String {
    if !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\')
    {
        return value.to_owned();
    }
    let mut quoted = String::from("'");
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

impl ConnSettings {
    /// A conninfo-style line for logs and messages, e.g.
    /// `host=/var/run/postgresql port=5432 user=postgres dbname=postgres`; never the password.
    pub fn describe(&self) -> String {
        let mut parts = vec![
            format!("host={}", quote_conninfo(&self.host_list())),
            format!("port={}", self.port_list()),
            format!("user={}", quote_conninfo(&self.user)),
            format!("dbname={}", quote_conninfo(&self.dbname)),
        ];
        if self.sslmode != SslMode::Prefer {
            parts.push(format!("sslmode={}", self.sslmode));
        }
        if self.target_session_attrs != TargetSessionAttrs::Any {
            parts.push(format!(
                "target_session_attrs={}",
                self.target_session_attrs.as_str()
            ));
        }
        if let Some(service) = &self.service {
            parts.push(format!("service={}", quote_conninfo(service)));
        }
        parts.join(" ")
    }

    fn host_list(&self) -> String {
        self.hosts
            .iter()
            .map(HostTarget::host_keyword)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn port_list(&self) -> String {
        let ports: Vec<u16> = self.hosts.iter().map(HostTarget::port).collect();
        if ports.windows(2).all(|w| w[0] == w[1]) {
            ports.first().copied().unwrap_or(DEFAULT_PORT).to_string()
        } else {
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",")
        }
    }

    /// The variables that make a libpq child (`pg_dump`, `psql`) connect exactly like this.
    /// Secrets go here, never into argv. `PGPASSWORD` is set only for a password given
    /// explicitly; one from the password file reaches the child through `PGPASSFILE`.
    /// Clear [`LIBPQ_ENV_VARS`] in the child first.
    pub fn libpq_env(&self) -> Vec<(String, String)> {
        let mut vars = vec![
            ("PGHOST".to_owned(), self.host_list()),
            ("PGPORT".to_owned(), self.port_list()),
            ("PGUSER".to_owned(), self.user.clone()),
            ("PGDATABASE".to_owned(), self.dbname.clone()),
            ("PGSSLMODE".to_owned(), self.sslmode.as_str().to_owned()),
            (
                "PGCHANNELBINDING".to_owned(),
                self.channel_binding.as_str().to_owned(),
            ),
        ];
        let mut push_path = |name: &str, path: &Option<PathBuf>| {
            if let Some(path) = path {
                vars.push((name.to_owned(), path.display().to_string()));
            }
        };
        push_path("PGSSLROOTCERT", &self.sslrootcert);
        push_path("PGSSLCERT", &self.sslcert);
        push_path("PGSSLKEY", &self.sslkey);
        push_path("PGPASSFILE", &self.passfile);
        if let Some(name) = &self.application_name {
            vars.push(("PGAPPNAME".to_owned(), name.clone()));
        }
        if let Some(timeout) = self.connect_timeout {
            vars.push((
                "PGCONNECT_TIMEOUT".to_owned(),
                timeout.as_secs().to_string(),
            ));
        }
        if let Some(options) = &self.options {
            vars.push(("PGOPTIONS".to_owned(), options.clone()));
        }
        if self.target_session_attrs != TargetSessionAttrs::Any {
            vars.push((
                "PGTARGETSESSIONATTRS".to_owned(),
                self.target_session_attrs.as_str().to_owned(),
            ));
        }
        if let Some(password) = &self.password {
            vars.push(("PGPASSWORD".to_owned(), password.expose().to_owned()));
        }
        vars
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::testing::{resolve, test_env};
    use crate::exit::{ExitStatus, Failure as _};
    use std::collections::HashMap;
    use std::path::Path;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    // --- keyword=value strings (pg_back's vectors) ---

    #[test]
    fn quoted_socket_host() {
        let params = ConnParams::parse("host='/tmp'").unwrap();
        assert_eq!(params.get("host"), Some("/tmp"));
    }

    #[test]
    fn whitespace_around_equals_and_quoted_values() {
        let params =
            ConnParams::parse("host =  pg.local port\n = 5433 user=u1 dbname= 'silly name'")
                .unwrap();
        assert_eq!(params.values.len(), 4);
        assert_eq!(params.get("host"), Some("pg.local"));
        assert_eq!(params.get("port"), Some("5433"));
        assert_eq!(params.get("user"), Some("u1"));
        assert_eq!(params.get("dbname"), Some("silly name"));
    }

    #[test]
    fn missing_equals_names_the_word() {
        let error = ConnParams::parse("bad keyword = value").unwrap_err();
        assert_eq!(
            error.to_string(),
            "missing \"=\" after \"bad\" in connection info string"
        );
    }

    #[test]
    fn backslash_escapes_inside_and_outside_quotes() {
        let parsed = parse_keyword_value(r"key='\' \\ \p' other_key=ab\ cd").unwrap();
        assert_eq!(parsed, pairs(&[("key", r"' \ p"), ("other_key", "ab cd")]));
    }

    #[test]
    fn keyword_without_value() {
        assert!(matches!(
            parse_keyword_value("novalue"),
            Err(ConnError::MissingValue { keyword }) if keyword == "novalue"
        ));
    }

    #[test]
    fn unterminated_quote() {
        assert!(matches!(
            parse_keyword_value("key = 'no end quote"),
            Err(ConnError::UnterminatedQuote)
        ));
    }

    #[test]
    fn quoted_values_read_back_unchanged() {
        assert_eq!(quote_conninfo("plain"), "plain");
        assert_eq!(quote_conninfo(""), "''");
        assert_eq!(quote_conninfo("my db"), "'my db'");
        assert_eq!(quote_conninfo(r"it's a\b"), r"'it\'s a\\b'");
        for value in ["plain", "", "my db", r"it's a\b", "tab\there", "=x", "ü"] {
            let parsed = parse_keyword_value(&format!("dbname={}", quote_conninfo(value))).unwrap();
            assert_eq!(parsed, pairs(&[("dbname", value)]), "{value}");
        }
    }

    #[test]
    fn empty_string_and_empty_values() {
        assert!(ConnParams::parse("").unwrap().is_empty());
        assert!(ConnParams::parse("   ").unwrap().is_empty());
        let params = ConnParams::parse("dbname='' user=").unwrap();
        assert_eq!(params.get("dbname"), Some(""));
        assert_eq!(params.get("user"), Some(""));
        // As in libpq, whitespace after "=" is skipped, so the next word is the value.
        let params = ConnParams::parse("dbname= user=x").unwrap();
        assert_eq!(params.get("dbname"), Some("user=x"));
    }

    #[test]
    fn unknown_and_unsupported_keywords_are_refused_by_name() {
        assert_eq!(
            ConnParams::parse("hots=x").unwrap_err().to_string(),
            "invalid connection option \"hots\""
        );
        for keyword in [
            "gssencmode",
            "krbsrvname",
            "requirepeer",
            "sslcrl",
            "sslcompression",
            "tcp_user_timeout",
            "load_balance_hosts",
            "require_auth",
        ] {
            let error = ConnParams::parse(&format!("{keyword}=1")).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("connection option \"{keyword}\" is not supported by safe-backup")
            );
            assert_eq!(error.exit_status(), ExitStatus::Usage);
        }
    }

    #[test]
    fn values_are_checked() {
        for bad in [
            "port=abc",
            "port=0",
            "port=70000",
            "sslmode=maybe",
            "channel_binding=sometimes",
            "connect_timeout=soon",
            "keepalives_idle=-1",
            "hostaddr=db.example",
            "target_session_attrs=whatever",
        ] {
            assert!(
                matches!(ConnParams::parse(bad), Err(ConnError::InvalidValue { .. })),
                "{bad}"
            );
        }
        let error = ConnParams::parse("target_session_attrs=standby").unwrap_err();
        assert!(error.to_string().contains("not supported by safe-backup"));
        assert!(error.to_string().contains("\"standby\""));
        assert!(ConnParams::parse("target_session_attrs=read-only port=5432,,5433").is_ok());
    }

    #[test]
    fn set_overrides_and_validates() {
        let mut params = ConnParams::parse("host=a port=1").unwrap();
        params.set("host", "b").unwrap();
        assert_eq!(params.get("host"), Some("b"));
        assert!(params.set("sslcrl", "x").is_err());
        assert!(params.set("nonsense", "x").is_err());
    }

    #[test]
    fn dbname_holding_a_connection_string_is_expanded() {
        let mut params = ConnParams::parse("user=u port=1").unwrap();
        params
            .set("dbname", "host=h dbname='my db' port=2")
            .unwrap();
        assert_eq!(params.get("host"), Some("h"));
        assert_eq!(params.get("dbname"), Some("my db"));
        assert_eq!(params.get("port"), Some("2"));
        assert_eq!(params.get("user"), Some("u"));
        params.set("dbname", "postgresql://other/db2").unwrap();
        assert_eq!(params.get("host"), Some("other"));
        assert_eq!(params.get("dbname"), Some("db2"));
        // Within a connection string, dbname is literal (as in libpq).
        let literal = ConnParams::parse(r"dbname='a=b'").unwrap();
        assert_eq!(literal.get("dbname"), Some("a=b"));
    }

    // --- secrets stay secret ---

    #[test]
    fn password_never_shows() {
        let home = tempfile::tempdir().unwrap();
        let env = test_env(home.path(), &[]);
        let params = ConnParams::parse("host=h user=u password=hunter2 dbname=d").unwrap();
        assert!(!format!("{params:?}").contains("hunter2"));
        let settings = ConnSettings::resolve(&params, &env).unwrap();
        assert!(!format!("{settings:?}").contains("hunter2"));
        assert!(!settings.describe().contains("hunter2"));
        let password = settings.password.clone().unwrap();
        assert_eq!(password.to_string(), "********");
        assert_eq!(format!("{password:?}"), "********");
        assert_eq!(password.expose(), "hunter2");
    }

    #[test]
    fn describe_is_a_conninfo_line() {
        let env = test_env(Path::new("/nonexistent"), &[]);
        let settings = resolve(
            "host=/var/run/postgresql user=postgres dbname=postgres",
            &env,
        )
        .unwrap();
        assert_eq!(
            settings.describe(),
            "host=/var/run/postgresql port=5432 user=postgres dbname=postgres"
        );
        let settings =
            resolve("host=a,b port=1,2 dbname='my db' sslmode=verify-full", &env).unwrap();
        assert_eq!(
            settings.describe(),
            "host=a,b port=1,2 user=alice dbname='my db' sslmode=verify-full"
        );
        // The described line parses back to the same settings.
        let again = resolve(&settings.describe(), &env).unwrap();
        assert_eq!(again.hosts, settings.hosts);
        assert_eq!(again.dbname, "my db");
    }

    #[test]
    fn libpq_env_carries_the_password_only_when_explicit() {
        let home = tempfile::tempdir().unwrap();
        let env = test_env(home.path(), &[]);
        let settings = resolve(
            "host=h port=6 user=u dbname=d application_name=pgback",
            &env,
        )
        .unwrap();
        let vars: HashMap<String, String> = settings.libpq_env().into_iter().collect();
        assert_eq!(vars["PGHOST"], "h");
        assert_eq!(vars["PGPORT"], "6");
        assert_eq!(vars["PGUSER"], "u");
        assert_eq!(vars["PGDATABASE"], "d");
        assert_eq!(vars["PGSSLMODE"], "prefer");
        assert_eq!(vars["PGAPPNAME"], "pgback");
        assert_eq!(
            vars["PGPASSFILE"],
            home.path().join(".pgpass").display().to_string()
        );
        assert!(!vars.contains_key("PGPASSWORD"));
        for name in vars.keys() {
            assert!(LIBPQ_ENV_VARS.contains(&name.as_str()), "{name}");
        }
        let settings = resolve("host=h password=s3", &env).unwrap();
        let vars: HashMap<String, String> = settings.libpq_env().into_iter().collect();
        assert_eq!(vars["PGPASSWORD"], "s3");
    }
}
