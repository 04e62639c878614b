//! Resolving: explicit params, the service file, the `PG*` environment and libpq's defaults
//! layered into one [`ConnSettings`]. [`Layers`] answers "what is the value of this keyword,
//! and where did it come from"; each setting is then read by a step of its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::conn::env::Environment;
use crate::conn::error::{ConnError, Origin};
use crate::conn::params::{check_value, parse_port, ConnParams, SUPPORTED, UNSUPPORTED};
use crate::conn::service::{load_service, ServiceValues};
use crate::conn::settings::{
    socket_file, ChannelBinding, ConnSettings, HostTarget, Password, SslMode, TargetSessionAttrs,
    DEFAULT_PORT,
};

/// Socket directories tried, in order, when no host is given (Debian's first, then upstream's).
const DEFAULT_SOCKET_DIRS: &[&str] = &["/var/run/postgresql", "/tmp"];

impl ConnSettings {
    /// Layers explicit params, the service file, the environment and libpq's defaults.
    ///
    /// Precedence follows libpq's `conninfo_add_defaults`: the service definition is applied
    /// to every keyword the params left unset *before* the environment is consulted, so a
    /// service value beats a `PG*` variable (and `PGSERVICE` itself is just the fallback for
    /// `service=`).
    pub fn resolve(params: &ConnParams, env: &Environment) -> Result<ConnSettings, ConnError> {
        refuse_unsupported_variables(env)?;
        let service = service_name(params, env);
        let layers = Layers {
            params,
            service: match &service {
                Some(name) => load_service(name, env)?,
                None => ServiceValues::new(),
            },
            env,
        };
        // Read in this order (a struct literal evaluates its fields as written), so that of
        // several bad values the same one is reported as always.
        let hosts = layers.hosts()?;
        let user = layers.user()?;
        let dbname = layers.string("dbname")?.unwrap_or_else(|| user.clone());
        Ok(ConnSettings {
            hosts,
            user,
            dbname,
            password: layers.string("password")?.map(Password::new),
            passfile: layers.path("passfile", &[".pgpass"])?,
            sslmode: layers.sslmode()?,
            sslrootcert: layers.path("sslrootcert", &[".postgresql", "root.crt"])?,
            sslcert: layers.path("sslcert", &[".postgresql", "postgresql.crt"])?,
            sslkey: layers.path("sslkey", &[".postgresql", "postgresql.key"])?,
            application_name: layers.application_name()?,
            connect_timeout: layers.connect_timeout()?,
            keepalives: layers.keepalives()?,
            keepalives_idle: layers.duration("keepalives_idle")?,
            keepalives_interval: layers.duration("keepalives_interval")?,
            keepalives_retries: layers.keepalives_retries()?,
            options: layers.string("options")?,
            target_session_attrs: layers.target_session_attrs()?,
            channel_binding: layers.channel_binding()?,
            service,
        })
    }
}

/// A `PG*` variable for an option safe-backup does not implement would change what libpq
/// does; refuse it rather than connect differently than the user asked.
fn refuse_unsupported_variables(env: &Environment) -> Result<(), ConnError> {
    for (keyword, var) in UNSUPPORTED {
        if let Some(var) = var {
            if env.var(var).is_some_and(|v| !v.is_empty()) {
                return Err(ConnError::Unsupported {
                    keyword: (*keyword).to_owned(),
                    origin: Origin::Env((*var).to_owned()),
                });
            }
        }
    }
    Ok(())
}

/// The service to apply: `service=`, else `PGSERVICE`; empty counts as none.
fn service_name(params: &ConnParams, env: &Environment) -> Option<String> {
    params
        .get("service")
        .filter(|s| !s.is_empty())
        .or_else(|| env.var("PGSERVICE").filter(|s| !s.is_empty()))
        .map(str::to_owned)
}

/// The layered view of one keyword: params > service > environment.
struct Layers<'a> {
    params: &'a ConnParams,
    service: ServiceValues,
    env: &'a Environment,
}

impl Layers<'_> {
    /// The value for a keyword and where it came from. An empty environment variable counts as
    /// unset, like libpq's callers usually expect; an empty explicit value is kept.
    fn get(&self, keyword: &str) -> Option<(String, Origin)> {
        if let Some(value) = self.params.get(keyword) {
            return Some((value.to_owned(), Origin::Params));
        }
        if let Some((value, origin)) = self.service.get(keyword) {
            return Some((value.clone(), origin.clone()));
        }
        let var = SUPPORTED
            .iter()
            .find(|(k, _)| *k == keyword)
            .and_then(|(_, var)| *var)?;
        self.env
            .var(var)
            .map(|value| (value.to_owned(), Origin::Env(var.to_owned())))
    }

    /// A non-empty value, validated (values from the environment and service files were not
    /// checked on the way in).
    fn value(&self, keyword: &str) -> Result<Option<(String, Origin)>, ConnError> {
        match self.get(keyword) {
            Some((value, origin)) if !value.is_empty() => {
                check_value(keyword, &value, &origin)?;
                Ok(Some((value, origin)))
            }
            _ => Ok(None),
        }
    }

    /// A non-empty value without its origin.
    fn string(&self, keyword: &str) -> Result<Option<String>, ConnError> {
        Ok(self.value(keyword)?.map(|(v, _)| v))
    }

    /// A non-negative integer (a number of seconds or of probes).
    fn non_negative(&self, keyword: &str) -> Result<Option<u64>, ConnError> {
        match self.value(keyword)? {
            None => Ok(None),
            Some((value, origin)) => {
                value
                    .trim()
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| ConnError::InvalidValue {
                        keyword: keyword.to_owned(),
                        value,
                        origin,
                        reason: "expected a non-negative integer".to_owned(),
                    })
            }
        }
    }

    /// A number of seconds.
    fn duration(&self, keyword: &str) -> Result<Option<Duration>, ConnError> {
        Ok(self.non_negative(keyword)?.map(Duration::from_secs))
    }

    /// The servers to try: each host (or `hostaddr`) paired with its port.
    fn hosts(&self) -> Result<Vec<HostTarget>, ConnError> {
        let ports = self.ports()?;
        let names = self.host_names()?;
        if ports.len() != 1 && ports.len() != names.len() {
            return Err(ConnError::PortCount {
                ports: ports.len(),
                hosts: names.len(),
            });
        }
        let socket_dirs: Vec<&Path> = DEFAULT_SOCKET_DIRS.iter().map(Path::new).collect();
        Ok(names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let port = if ports.len() == 1 { ports[0] } else { ports[i] };
                host_target(name, port, &socket_dirs)
            })
            .collect())
    }

    /// `port`: one for every host, or one per host; an empty entry is the default port.
    fn ports(&self) -> Result<Vec<u16>, ConnError> {
        Ok(match self.value("port")? {
            None => vec![DEFAULT_PORT],
            Some((value, _)) => value
                .split(',')
                .map(|p| parse_port(p).unwrap_or(DEFAULT_PORT))
                .collect(),
        })
    }

    /// `host` or `hostaddr` (not both), split at commas; neither gives one empty entry, the
    /// default socket.
    fn host_names(&self) -> Result<Vec<String>, ConnError> {
        match (self.value("host")?, self.value("hostaddr")?) {
            (Some((_, host_origin)), Some((_, addr_origin))) => Err(ConnError::Unsupported {
                keyword: "hostaddr together with host".to_owned(),
                origin: if addr_origin == Origin::Params {
                    host_origin
                } else {
                    addr_origin
                },
            }),
            (Some((value, _)), None) | (None, Some((value, _))) => {
                Ok(value.split(',').map(|h| h.trim().to_owned()).collect())
            }
            (None, None) => Ok(vec![String::new()]),
        }
    }

    /// `user`, else the operating-system user.
    fn user(&self) -> Result<String, ConnError> {
        match self.string("user")? {
            Some(user) => Ok(user),
            None if !self.env.os_user.is_empty() => Ok(self.env.os_user.clone()),
            None => Err(ConnError::NoUser),
        }
    }

    /// A file keyword, else its default below the home directory (none without a home).
    fn path(&self, keyword: &str, below_home: &[&str]) -> Result<Option<PathBuf>, ConnError> {
        Ok(self.string(keyword)?.map(PathBuf::from).or_else(|| {
            self.env.home.as_ref().map(|home| {
                let mut path = home.clone();
                path.extend(below_home);
                path
            })
        }))
    }

    fn sslmode(&self) -> Result<SslMode, ConnError> {
        Ok(match self.value("sslmode")? {
            Some((value, _)) => value.parse().unwrap_or(SslMode::Prefer),
            None => SslMode::Prefer,
        })
    }

    /// `application_name`, else `fallback_application_name`.
    fn application_name(&self) -> Result<Option<String>, ConnError> {
        match self.string("application_name")? {
            Some(name) => Ok(Some(name)),
            None => self.string("fallback_application_name"),
        }
    }

    /// libpq: zero or negative waits forever; anything below 2 s counts as 2 s.
    fn connect_timeout(&self) -> Result<Option<Duration>, ConnError> {
        Ok(match self.value("connect_timeout")? {
            None => None,
            Some((value, _)) => match value.trim().parse::<i64>() {
                Ok(secs) if secs > 0 => Some(Duration::from_secs(secs.max(2).unsigned_abs())),
                _ => None,
            },
        })
    }

    /// libpq's `keepalives` is an integer: 0 turns them off; any other number, or none, on.
    fn keepalives(&self) -> Result<bool, ConnError> {
        Ok(match self.value("keepalives")? {
            None => true,
            Some((value, _)) => value.trim().parse::<i64>() != Ok(0),
        })
    }

    fn keepalives_retries(&self) -> Result<Option<u32>, ConnError> {
        Ok(self
            .non_negative("keepalives_count")?
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
    }

    fn target_session_attrs(&self) -> Result<TargetSessionAttrs, ConnError> {
        Ok(match self.string("target_session_attrs")?.as_deref() {
            Some("read-write") => TargetSessionAttrs::ReadWrite,
            Some("read-only") => TargetSessionAttrs::ReadOnly,
            _ => TargetSessionAttrs::Any,
        })
    }

    fn channel_binding(&self) -> Result<ChannelBinding, ConnError> {
        Ok(match self.value("channel_binding")? {
            Some((value, _)) => value.parse().unwrap_or(ChannelBinding::Prefer),
            None => ChannelBinding::Prefer,
        })
    }
}

/// One host entry as a target: empty is the default socket directory, an absolute path a
/// socket directory, anything else a TCP host.
fn host_target(name: &str, port: u16, socket_dirs: &[&Path]) -> HostTarget {
    if name.is_empty() {
        HostTarget::Socket {
            dir: default_socket_dir(socket_dirs, port),
            port,
        }
    } else if name.starts_with('/') {
        HostTarget::Socket {
            dir: PathBuf::from(name),
            port,
        }
    } else {
        HostTarget::Tcp {
            host: name.to_owned(),
            port,
        }
    }
}

/// The first of `candidates` that holds the socket for `port`, else the first candidate.
fn default_socket_dir(candidates: &[&Path], port: u16) -> PathBuf {
    candidates
        .iter()
        .find(|dir| socket_file(dir, port).exists())
        .or(candidates.first())
        .map_or_else(
            || PathBuf::from(DEFAULT_SOCKET_DIRS[0]),
            |d| d.to_path_buf(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::testing::{resolve, test_env};
    use crate::exit::Failure as _;
    use std::fs;

    // --- layering ---

    #[test]
    fn libpq_defaults() {
        let home = tempfile::tempdir().unwrap();
        let settings = resolve("host=db", &test_env(home.path(), &[])).unwrap();
        assert_eq!(settings.user, "alice");
        assert_eq!(settings.dbname, "alice");
        assert_eq!(settings.sslmode, SslMode::Prefer);
        assert_eq!(settings.passfile, Some(home.path().join(".pgpass")));
        assert_eq!(
            settings.sslrootcert,
            Some(home.path().join(".postgresql/root.crt"))
        );
        assert!(settings.keepalives);
        assert_eq!(settings.connect_timeout, None);
        assert_eq!(settings.target_session_attrs, TargetSessionAttrs::Any);
        assert_eq!(settings.channel_binding, ChannelBinding::Prefer);
        assert!(settings.password.is_none());
    }

    #[test]
    fn environment_fills_what_params_leave_out() {
        let home = tempfile::tempdir().unwrap();
        let env = test_env(
            home.path(),
            &[
                ("PGHOST", "envhost"),
                ("PGPORT", "6000"),
                ("PGUSER", "bob"),
                ("PGDATABASE", "envdb"),
                ("PGSSLMODE", "require"),
                ("PGAPPNAME", "envapp"),
                ("PGCONNECT_TIMEOUT", "1"),
                ("PGPASSWORD", "envsecret"),
                ("PGOPTIONS", "-c work_mem=1MB"),
                ("PGTARGETSESSIONATTRS", "read-write"),
                ("PGCHANNELBINDING", "require"),
            ],
        );
        let settings = resolve("host=explicit", &env).unwrap();
        assert_eq!(
            settings.hosts,
            vec![HostTarget::Tcp {
                host: "explicit".into(),
                port: 6000
            }]
        );
        assert_eq!(settings.user, "bob");
        assert_eq!(settings.dbname, "envdb");
        assert_eq!(settings.sslmode, SslMode::Require);
        assert_eq!(settings.application_name.as_deref(), Some("envapp"));
        // libpq: a timeout below 2 s counts as 2 s.
        assert_eq!(settings.connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(
            settings.password.as_ref().map(Password::expose),
            Some("envsecret")
        );
        assert_eq!(settings.options.as_deref(), Some("-c work_mem=1MB"));
        assert_eq!(settings.target_session_attrs, TargetSessionAttrs::ReadWrite);
        assert_eq!(settings.channel_binding, ChannelBinding::Require);
    }

    #[test]
    fn fallback_application_name_loses_to_pgappname() {
        let home = tempfile::tempdir().unwrap();
        let params = "fallback_application_name=pgback";
        let settings = resolve(params, &test_env(home.path(), &[])).unwrap();
        assert_eq!(settings.application_name.as_deref(), Some("pgback"));
        let env = test_env(home.path(), &[("PGAPPNAME", "mine")]);
        let settings = resolve(params, &env).unwrap();
        assert_eq!(settings.application_name.as_deref(), Some("mine"));
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let home = tempfile::tempdir().unwrap();
        let env = test_env(home.path(), &[("PGSSLMODE", "bogus")]);
        let error = resolve("", &env).unwrap_err();
        assert!(error.to_string().contains("PGSSLMODE"), "{error}");
        let env = test_env(home.path(), &[("PGGSSENCMODE", "require")]);
        let error = resolve("", &env).unwrap_err();
        assert_eq!(
            error.to_string(),
            "connection option \"gssencmode\" is not supported by safe-backup (from environment variable PGGSSENCMODE)"
        );
        assert_eq!(error.hint().as_deref(), Some("unset PGGSSENCMODE"));
    }

    #[test]
    fn ports_pair_with_hosts() {
        let env = test_env(Path::new("/nonexistent"), &[]);
        let settings = resolve("host=a,b,/sock port=7000", &env).unwrap();
        assert_eq!(
            settings.hosts,
            vec![
                HostTarget::Tcp {
                    host: "a".into(),
                    port: 7000
                },
                HostTarget::Tcp {
                    host: "b".into(),
                    port: 7000
                },
                HostTarget::Socket {
                    dir: "/sock".into(),
                    port: 7000
                },
            ]
        );
        let settings = resolve("host=a,b port=7000,", &env).unwrap();
        assert_eq!(settings.hosts[1].port(), 5432);
        assert_eq!(
            resolve("host=a,b,c port=1,2", &env)
                .unwrap_err()
                .to_string(),
            "could not match 2 port numbers to 3 hosts"
        );
    }

    #[test]
    fn hostaddr_alone_is_a_tcp_host_and_with_host_is_refused() {
        let env = test_env(Path::new("/nonexistent"), &[]);
        let settings = resolve("hostaddr=127.0.0.1 port=5", &env).unwrap();
        assert_eq!(
            settings.hosts,
            vec![HostTarget::Tcp {
                host: "127.0.0.1".into(),
                port: 5
            }]
        );
        assert!(matches!(
            resolve("hostaddr=127.0.0.1 host=db", &env),
            Err(ConnError::Unsupported { .. })
        ));
    }

    #[test]
    fn default_socket_is_the_first_directory_holding_it() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let dirs = [first.path(), second.path()];
        // No socket anywhere: the first directory.
        assert_eq!(default_socket_dir(&dirs, 5432), first.path());
        // A (fake) socket file only in the second one.
        fs::write(second.path().join(".s.PGSQL.5433"), "").unwrap();
        assert_eq!(default_socket_dir(&dirs, 5433), second.path());
        assert_eq!(default_socket_dir(&dirs, 5432), first.path());
    }
}
