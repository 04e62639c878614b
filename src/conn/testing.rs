//! Fixtures shared by the unit tests of `conn/`: an environment that reads nothing from the
//! machine, conninfo resolved against it, password files with a given mode, host targets.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::conn::env::Environment;
use crate::conn::error::ConnError;
use crate::conn::params::ConnParams;
use crate::conn::settings::{ConnSettings, HostTarget};

/// An environment with nothing from the machine: no PG* variables, a temporary home,
/// and PGSYSCONFDIR pointing into it so /etc is never read.
pub(super) fn test_env(home: &Path, vars: &[(&str, &str)]) -> Environment {
    let mut map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    map.entry("PGSYSCONFDIR".to_owned())
        .or_insert_with(|| home.join("etc").display().to_string());
    Environment {
        vars: map,
        home: Some(home.to_path_buf()),
        os_user: "alice".to_owned(),
    }
}

/// Parses `conninfo` and resolves it against `env`.
pub(super) fn resolve(conninfo: &str, env: &Environment) -> Result<ConnSettings, ConnError> {
    ConnSettings::resolve(&ConnParams::parse(conninfo)?, env)
}

/// Writes a file and gives it `mode`, as a password or key file.
pub(super) fn write_mode(path: &Path, text: &str, mode: u32) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Debian's default socket, port 5432.
pub(super) fn socket() -> HostTarget {
    HostTarget::Socket {
        dir: "/var/run/postgresql".into(),
        port: 5432,
    }
}

/// A TCP host.
pub(super) fn tcp(host: &str, port: u16) -> HostTarget {
    HostTarget::Tcp {
        host: host.into(),
        port,
    }
}
