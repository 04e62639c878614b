//! Database ACLs: parsing `aclitem` text (`grantee=privs/grantor`, names quoted when needed)
//! into typed grants.

/// A privilege on a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabasePrivilege {
    /// `C`
    Create,
    /// `T`
    Temporary,
    /// `c`
    Connect,
}

impl DatabasePrivilege {
    /// The SQL keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            DatabasePrivilege::Create => "CREATE",
            DatabasePrivilege::Temporary => "TEMPORARY",
            DatabasePrivilege::Connect => "CONNECT",
        }
    }
}

/// One `aclitem` of `pg_database.datacl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclItem {
    /// The role given the privileges; `None` is PUBLIC.
    pub grantee: Option<String>,
    /// Each privilege and whether it comes WITH GRANT OPTION.
    pub privileges: Vec<(DatabasePrivilege, bool)>,
    /// The role that granted them.
    pub grantor: String,
}

/// An `aclitem` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse database ACL item {item:?}: {reason}")]
pub struct AclError {
    /// The text received from the server.
    pub item: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Reads a role name as `aclitem` prints it: bare, or double-quoted with `""` for a quote.
/// Returns the name and the rest of the input after it.
fn read_name(input: &str) -> Result<(String, &str), &'static str> {
    if let Some(mut rest) = input.strip_prefix('"') {
        let mut name = String::new();
        loop {
            let Some(end) = rest.find('"') else {
                return Err("unterminated quoted role name");
            };
            name.push_str(&rest[..end]);
            rest = &rest[end + 1..];
            if let Some(after) = rest.strip_prefix('"') {
                name.push('"');
                rest = after;
            } else {
                return Ok((name, rest));
            }
        }
    }
    let end = input.find(['=', '/']).unwrap_or(input.len());
    Ok((input[..end].to_string(), &input[end..]))
}

/// Parses one `aclitem` of a database.
pub fn parse_acl_item(item: &str) -> Result<AclItem, AclError> {
    let fail = |reason| AclError {
        item: item.to_string(),
        reason,
    };
    let (grantee, rest) = read_name(item).map_err(fail)?;
    let rest = rest
        .strip_prefix('=')
        .ok_or_else(|| fail("missing \"=\""))?;
    let slash = rest.find('/').ok_or_else(|| fail("missing \"/\""))?;
    let (letters, rest) = (&rest[..slash], &rest[slash + 1..]);
    let (grantor, tail) = read_name(rest).map_err(fail)?;
    if !tail.is_empty() {
        return Err(fail("trailing characters after the grantor"));
    }
    if grantor.is_empty() {
        return Err(fail("empty grantor"));
    }
    let mut privileges: Vec<(DatabasePrivilege, bool)> = Vec::new();
    for letter in letters.chars() {
        let privilege = match letter {
            'C' => DatabasePrivilege::Create,
            'T' => DatabasePrivilege::Temporary,
            'c' => DatabasePrivilege::Connect,
            '*' => match privileges.last_mut() {
                Some(last) if !last.1 => {
                    last.1 = true;
                    continue;
                }
                _ => return Err(fail("misplaced \"*\"")),
            },
            _ => return Err(fail("unknown privilege letter for a database")),
        };
        privileges.push((privilege, false));
    }
    Ok(AclItem {
        grantee: if grantee.is_empty() {
            None
        } else {
            Some(grantee)
        },
        privileges,
        grantor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use DatabasePrivilege::*;

    #[test]
    fn facts_vectors() {
        assert_eq!(
            parse_acl_item("other=CT*c/testrole"),
            Ok(AclItem {
                grantee: Some("other".into()),
                privileges: vec![(Create, false), (Temporary, true), (Connect, false)],
                grantor: "testrole".into(),
            })
        );
        assert_eq!(
            parse_acl_item("=c/postgres"),
            Ok(AclItem {
                grantee: None,
                privileges: vec![(Connect, false)],
                grantor: "postgres".into(),
            })
        );
    }

    #[test]
    fn quoted_role_names() {
        let item = parse_acl_item(r#""a ""b""=c"=C*/"x/y""#).unwrap();
        assert_eq!(item.grantee.as_deref(), Some(r#"a "b"=c"#));
        assert_eq!(item.privileges, vec![(Create, true)]);
        assert_eq!(item.grantor, "x/y");
        let item = parse_acl_item(r#""PUBLIC"=c/"név""#).unwrap();
        assert_eq!(item.grantee.as_deref(), Some("PUBLIC"));
        assert_eq!(item.grantor, "név");
    }

    #[test]
    fn malformed_items() {
        for bad in [
            "", "x", "x=c", "x=c/", "x=q/y", "x=*/y", "x=c**/y", "\"x=c/y",
        ] {
            assert!(parse_acl_item(bad).is_err(), "{bad}");
        }
    }
}
