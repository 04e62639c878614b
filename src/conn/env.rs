//! The process environment as libpq reads it: `PG*` variables, the home directory (for
//! `~/.pgpass`, `~/.pg_service.conf`, `~/.postgresql/`) and the operating-system user.
//! Injectable, so that tests never read the machine's own.

use std::collections::HashMap;
use std::path::PathBuf;

/// The process environment as libpq sees it; injectable for tests.
#[derive(Clone, Debug, Default)]
pub struct Environment {
    /// Environment variables (only the `PG*` ones matter).
    pub vars: HashMap<String, String>,
    /// The home directory, for `~/.pgpass`, `~/.pg_service.conf` and `~/.postgresql/`.
    pub home: Option<PathBuf>,
    /// The operating-system user name, libpq's default user.
    pub os_user: String,
}

impl Environment {
    /// Reads the real environment, the home directory (`$HOME`, else the password database)
    /// and the user name of the effective uid.
    pub fn from_process() -> Environment {
        let vars: HashMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let account = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten();
        let home = vars
            .get("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| account.as_ref().map(|a| a.dir.clone()));
        let os_user = account
            .map(|a| a.name)
            .or_else(|| vars.get("USER").cloned())
            .unwrap_or_default();
        Environment {
            vars,
            home,
            os_user,
        }
    }

    /// The value of one variable, if it is set.
    pub(super) fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
}
