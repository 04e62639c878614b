//! Which databases to dump: all, or the ones named in the user's order; exclusions win;
//! templates only on request; template0 never.

/// A database the server lists (`datallowconn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedDatabase {
    /// `datname`.
    pub name: String,
    /// `datistemplate`.
    pub is_template: bool,
}

/// What the user asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectionRules {
    /// Names to dump, in order; empty means every database.
    pub include: Vec<String>,
    /// Names never to dump; wins over `include`.
    pub exclude: Vec<String>,
    /// Whether templates are dumped when dumping every database.
    pub with_templates: bool,
}

/// The outcome: what to dump and what was asked for but is not there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Databases to dump, in order.
    pub databases: Vec<String>,
    /// Names given in `include` that the server does not list (a warning, like pg_back).
    pub missing: Vec<String>,
}

/// Applies the rules to the server's list.
pub fn select_databases(listed: &[ListedDatabase], rules: &SelectionRules) -> Selection {
    let excluded = |name: &str| name == "template0" || rules.exclude.iter().any(|e| e == name);
    let mut selection = Selection::default();
    if rules.include.is_empty() {
        selection.databases = listed
            .iter()
            .filter(|db| rules.with_templates || !db.is_template)
            .map(|db| db.name.clone())
            .filter(|name| !excluded(name))
            .collect();
        return selection;
    }
    for name in &rules.include {
        if selection.databases.contains(name) || selection.missing.contains(name) {
            continue;
        }
        if !listed.iter().any(|db| &db.name == name) {
            selection.missing.push(name.clone());
        } else if !excluded(name) {
            selection.databases.push(name.clone());
        }
    }
    selection
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed() -> Vec<ListedDatabase> {
        [
            ("app", false),
            ("a\"b", false),
            ("postgres", false),
            ("template1", true),
            ("template0", true),
        ]
        .into_iter()
        .map(|(name, is_template)| ListedDatabase {
            name: name.into(),
            is_template,
        })
        .collect()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn all_databases_without_templates_by_default() {
        let s = select_databases(&listed(), &SelectionRules::default());
        assert_eq!(s.databases, names(&["app", "a\"b", "postgres"]));
        let with = SelectionRules {
            with_templates: true,
            ..Default::default()
        };
        assert_eq!(
            select_databases(&listed(), &with).databases,
            names(&["app", "a\"b", "postgres", "template1"])
        );
    }

    #[test]
    fn includes_keep_order_and_exclusions_win() {
        let rules = SelectionRules {
            include: names(&[
                "postgres",
                "nope",
                "app",
                "postgres",
                "a\"b",
                "template0",
                "template1",
            ]),
            exclude: names(&["a\"b"]),
            with_templates: false,
        };
        let s = select_databases(&listed(), &rules);
        assert_eq!(s.databases, names(&["postgres", "app", "template1"]));
        assert_eq!(s.missing, names(&["nope"]));
    }

    #[test]
    fn template0_never() {
        let rules = SelectionRules {
            with_templates: true,
            exclude: names(&["postgres"]),
            ..Default::default()
        };
        let s = select_databases(&listed(), &rules);
        assert!(!s.databases.contains(&"template0".to_string()));
        assert!(!s.databases.contains(&"postgres".to_string()));
    }
}
