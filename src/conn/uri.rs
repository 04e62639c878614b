//! Connection URIs (`postgresql://` and `postgres://`), read like libpq's
//! `conninfo_uri_parse` into the same keyword/value pairs a conninfo string gives.

use crate::conn::error::ConnError;

/// What follows the scheme, when `text` is a connection URI.
pub(super) fn strip_uri_prefix(text: &str) -> Option<&str> {
    text.strip_prefix("postgresql://")
        .or_else(|| text.strip_prefix("postgres://"))
}

/// Percent-decoding as libpq does it: a `%` must be followed by two hex digits, and `%00` is
/// refused.
fn uri_decode(text: &str) -> Result<String, ConnError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
            match hex {
                Some(b"00") => {
                    return Err(ConnError::InvalidUri {
                        reason: "forbidden value %00 in percent-encoded value".to_owned(),
                    })
                }
                Some(_) => i += 3,
                None => {
                    return Err(ConnError::InvalidUri {
                        reason: "invalid percent-encoded token".to_owned(),
                    })
                }
            }
        } else {
            i += 1;
        }
    }
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ConnError::InvalidUri {
            reason: "percent-encoded value is not UTF-8".to_owned(),
        })
}

/// libpq's `conninfo_uri_parse`, after the scheme:
/// `[user[:password]@][host][:port][,...][/dbname][?param1=value1&...]`.
pub(super) fn parse_uri(rest: &str) -> Result<Vec<(String, String)>, ConnError> {
    let mut pairs = Vec::new();
    let (main, query) = match rest.split_once('?') {
        Some((main, query)) => (main, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match main.split_once('/') {
        Some((authority, path)) => (authority, Some(path)),
        None => (main, None),
    };
    // The last '@' ends the user part: hosts cannot contain one, careless passwords might.
    let hostspec = match authority.rsplit_once('@') {
        Some((userinfo, hostspec)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                pairs.push(("user".to_owned(), uri_decode(user)?));
            }
            if let Some(password) = password {
                pairs.push(("password".to_owned(), uri_decode(password)?));
            }
            hostspec
        }
        None => authority,
    };
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    for entry in hostspec.split(',') {
        let (host, port) = if let Some(bracketed) = entry.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| ConnError::InvalidUri {
                    reason: "missing \"]\" after an IPv6 host address".to_owned(),
                })?;
            if host.is_empty() {
                return Err(ConnError::InvalidUri {
                    reason: "IPv6 host address may not be empty".to_owned(),
                });
            }
            let port = match after {
                "" => "",
                _ => after
                    .strip_prefix(':')
                    .ok_or_else(|| ConnError::InvalidUri {
                        reason: format!(
                            "unexpected character \"{}\" after an IPv6 host address",
                            after.chars().next().unwrap_or(' ')
                        ),
                    })?,
            };
            (host, port)
        } else {
            entry.split_once(':').unwrap_or((entry, ""))
        };
        hosts.push(uri_decode(host)?);
        ports.push(uri_decode(port)?);
    }
    if hosts.iter().any(|h| !h.is_empty()) {
        pairs.push(("host".to_owned(), hosts.join(",")));
    }
    if ports.iter().any(|p| !p.is_empty()) {
        pairs.push(("port".to_owned(), ports.join(",")));
    }
    if let Some(path) = path.filter(|p| !p.is_empty()) {
        pairs.push(("dbname".to_owned(), uri_decode(path)?));
    }
    for param in query.into_iter().flat_map(|q| q.split('&')) {
        if param.is_empty() {
            continue;
        }
        let (key, value) = param.split_once('=').ok_or_else(|| ConnError::InvalidUri {
            reason: format!("missing key/value separator \"=\" in query parameter \"{param}\""),
        })?;
        let key = uri_decode(key)?;
        let value = uri_decode(value)?;
        // libpq's JDBC-compatible spelling.
        if key == "ssl" && value == "true" {
            pairs.push(("sslmode".to_owned(), "require".to_owned()));
        } else {
            pairs.push((key, value));
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use crate::conn::error::ConnError;
    use crate::conn::params::ConnParams;
    use crate::conn::settings::{ConnSettings, HostTarget};
    use crate::conn::testing::test_env;
    use std::path::Path;

    #[test]
    fn uri_with_several_hosts_and_ports() {
        let params = ConnParams::parse("postgresql://host1:123,host2:456/somedb").unwrap();
        assert_eq!(params.get("host"), Some("host1,host2"));
        assert_eq!(params.get("port"), Some("123,456"));
        assert_eq!(params.get("dbname"), Some("somedb"));
        let settings =
            ConnSettings::resolve(&params, &test_env(Path::new("/nonexistent"), &[])).unwrap();
        assert_eq!(
            settings.hosts,
            vec![
                HostTarget::Tcp {
                    host: "host1".into(),
                    port: 123
                },
                HostTarget::Tcp {
                    host: "host2".into(),
                    port: 456
                },
            ]
        );
    }

    #[test]
    fn uri_with_ipv6_host() {
        let params = ConnParams::parse("postgresql://[::1]:5433").unwrap();
        assert_eq!(params.get("host"), Some("::1"));
        assert_eq!(params.get("port"), Some("5433"));
        assert_eq!(params.get("dbname"), None);
        assert!(ConnParams::parse("postgresql://[::1:5433/db").is_err());
    }

    #[test]
    fn uri_with_socket_directory_in_the_query() {
        let params = ConnParams::parse("postgresql:///db?host=%2Ftmp").unwrap();
        assert_eq!(params.get("host"), Some("/tmp"));
        let settings =
            ConnSettings::resolve(&params, &test_env(Path::new("/nonexistent"), &[])).unwrap();
        assert_eq!(
            settings.hosts,
            vec![HostTarget::Socket {
                dir: "/tmp".into(),
                port: 5432
            }]
        );
        assert_eq!(settings.dbname, "db");
    }

    #[test]
    fn uri_user_password_and_percent_decoding() {
        let params = ConnParams::parse(
            "postgres://us%40er:p%40ss:w@db.example:6432/my%20db?application_name=a%26b&sslmode=verify-full",
        )
        .unwrap();
        assert_eq!(params.get("user"), Some("us@er"));
        assert_eq!(params.get("password"), Some("p@ss:w"));
        assert_eq!(params.get("host"), Some("db.example"));
        assert_eq!(params.get("port"), Some("6432"));
        assert_eq!(params.get("dbname"), Some("my db"));
        assert_eq!(params.get("application_name"), Some("a&b"));
        assert_eq!(params.get("sslmode"), Some("verify-full"));
        assert!(!format!("{params:?}").contains("p@ss"));
    }

    #[test]
    fn uri_odds_and_ends() {
        assert!(ConnParams::parse("postgresql://").unwrap().is_empty());
        let params = ConnParams::parse("postgresql://:5433/db?ssl=true").unwrap();
        assert_eq!(params.get("host"), None);
        assert_eq!(params.get("port"), Some("5433"));
        assert_eq!(params.get("sslmode"), Some("require"));
        let socket = ConnParams::parse("postgresql://%2Fvar%2Frun%2Fpostgresql/db").unwrap();
        assert_eq!(socket.get("host"), Some("/var/run/postgresql"));
        assert!(matches!(
            ConnParams::parse("postgresql://h/db?bogus=1"),
            Err(ConnError::InvalidKeyword { .. })
        ));
        assert!(matches!(
            ConnParams::parse("postgresql://h/db?sslmode"),
            Err(ConnError::InvalidUri { .. })
        ));
        assert!(matches!(
            ConnParams::parse("postgresql://h/d%zzb"),
            Err(ConnError::InvalidUri { .. })
        ));
        assert!(matches!(
            ConnParams::parse("postgresql://h/d%00b"),
            Err(ConnError::InvalidUri { .. })
        ));
    }

    #[test]
    fn uri_errors_never_echo_the_password() {
        let error = ConnParams::parse("postgresql://u:s3cret@h/db?x%zz=1").unwrap_err();
        assert!(!error.to_string().contains("s3cret"));
    }
}
