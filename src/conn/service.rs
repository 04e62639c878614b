//! `pg_service.conf`: where libpq looks for service files, and the `[name]` section that
//! defines a service, each value remembering its file and line for error messages.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::conn::env::Environment;
use crate::conn::error::{ConnError, Origin};
use crate::conn::params::check_keyword;

/// System-wide service files tried when `PGSYSCONFDIR` is not set (Debian's, then a plain one).
const DEFAULT_SYSCONF_SERVICE_FILES: &[&str] = &[
    "/etc/postgresql-common/pg_service.conf",
    "/etc/pg_service.conf",
];

/// A service definition: keyword -> (value, the file and line that set it).
pub(super) type ServiceValues = HashMap<String, (String, Origin)>;

/// Service files in libpq's order: `PGSERVICEFILE` or `~/.pg_service.conf`, then
/// `PGSYSCONFDIR/pg_service.conf` (or the distribution's default). The first file that
/// defines the service is used alone.
fn service_files(env: &Environment) -> Vec<PathBuf> {
    let mut files = Vec::new();
    match env.var("PGSERVICEFILE").filter(|v| !v.is_empty()) {
        Some(file) => files.push(PathBuf::from(file)),
        None => {
            if let Some(home) = &env.home {
                files.push(home.join(".pg_service.conf"));
            }
        }
    }
    match env.var("PGSYSCONFDIR").filter(|v| !v.is_empty()) {
        Some(dir) => files.push(Path::new(dir).join("pg_service.conf")),
        None => files.extend(DEFAULT_SYSCONF_SERVICE_FILES.iter().map(PathBuf::from)),
    }
    files
}

pub(super) fn load_service(name: &str, env: &Environment) -> Result<ServiceValues, ConnError> {
    let files = service_files(env);
    for file in &files {
        let text = match fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(ConnError::ServiceFileRead {
                    file: file.clone(),
                    source,
                })
            }
        };
        if let Some(values) = parse_service_file(&text, name, file)? {
            return Ok(values);
        }
    }
    Err(ConnError::ServiceNotFound {
        service: name.to_owned(),
        searched: files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// The `[name]` section of a service file, `None` if the file does not define it. Only the
/// wanted section is checked, like libpq; within it the first value of a keyword wins.
pub(super) fn parse_service_file(
    text: &str,
    name: &str,
    file: &Path,
) -> Result<Option<ServiceValues>, ConnError> {
    let mut values: Option<ServiceValues> = None;
    let mut in_group = false;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(group) = line.strip_prefix('[') {
            in_group = group.strip_suffix(']') == Some(name);
            if in_group && values.is_none() {
                values = Some(HashMap::new());
            }
            continue;
        }
        if !in_group {
            continue;
        }
        let syntax = |reason: String| ConnError::ServiceFileSyntax {
            file: file.to_path_buf(),
            line: line_no,
            reason,
        };
        let (keyword, value) = line
            .split_once('=')
            .ok_or_else(|| syntax("expected keyword=value".to_owned()))?;
        let keyword = keyword.trim();
        let value = value.trim();
        if keyword == "service" {
            return Err(syntax(
                "nested service specifications not supported".to_owned(),
            ));
        }
        let origin = Origin::Service {
            file: file.to_path_buf(),
            line: line_no,
        };
        check_keyword(keyword, &origin)?;
        if let Some(values) = values.as_mut() {
            values
                .entry(keyword.to_owned())
                .or_insert_with(|| (value.to_owned(), origin));
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use crate::conn::settings::HostTarget;
    use crate::conn::testing::{resolve, test_env};
    use crate::exit::{ExitStatus, Failure as _};
    use std::fs;

    const SERVICES: &str = "\
# comment
[other]
host=elsewhere

[broken]
bogus line, ignored unless this section is wanted

[nightly]
host = svc.example
port=6543
dbname=svcdb
user=svcuser
port=1111
";

    #[test]
    fn service_beats_environment_and_params_beat_service() {
        let home = tempfile::tempdir().unwrap();
        fs::write(home.path().join(".pg_service.conf"), SERVICES).unwrap();
        let env = test_env(
            home.path(),
            &[
                ("PGSERVICE", "nightly"),
                ("PGHOST", "envhost"),
                ("PGUSER", "envuser"),
            ],
        );
        let settings = resolve("user=explicit", &env).unwrap();
        assert_eq!(
            settings.hosts,
            vec![HostTarget::Tcp {
                host: "svc.example".into(),
                port: 6543
            }]
        );
        assert_eq!(settings.user, "explicit");
        assert_eq!(settings.dbname, "svcdb");
        assert_eq!(settings.service.as_deref(), Some("nightly"));
        assert!(settings.describe().contains("service=nightly"));
    }

    #[test]
    fn service_keyword_beats_pgservice_and_pgservicefile_is_used() {
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join("custom.conf");
        fs::write(&file, SERVICES).unwrap();
        let env = test_env(
            home.path(),
            &[
                ("PGSERVICE", "missing"),
                ("PGSERVICEFILE", file.to_str().unwrap()),
            ],
        );
        let settings = resolve("service=other", &env).unwrap();
        assert_eq!(settings.hosts[0].host_keyword(), "elsewhere");
    }

    #[test]
    fn system_service_file_is_the_fallback() {
        let home = tempfile::tempdir().unwrap();
        let etc = home.path().join("etc");
        fs::create_dir(&etc).unwrap();
        fs::write(
            home.path().join(".pg_service.conf"),
            "[unrelated]\nhost=x\n",
        )
        .unwrap();
        fs::write(etc.join("pg_service.conf"), SERVICES).unwrap();
        let settings = resolve("service=nightly", &test_env(home.path(), &[])).unwrap();
        assert_eq!(settings.hosts[0].host_keyword(), "svc.example");
    }

    #[test]
    fn unknown_service_is_named() {
        let home = tempfile::tempdir().unwrap();
        fs::write(home.path().join(".pg_service.conf"), SERVICES).unwrap();
        let error = resolve("service=nope", &test_env(home.path(), &[])).unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("definition of service \"nope\" not found"),
            "{text}"
        );
        assert!(text.contains(".pg_service.conf"), "{text}");
        assert_eq!(error.exit_status(), ExitStatus::Usage);
    }

    #[test]
    fn service_file_errors_name_file_and_line() {
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join(".pg_service.conf");
        fs::write(&file, "[s]\nhost=a\ngssencmode=disable\n").unwrap();
        let error = resolve("service=s", &test_env(home.path(), &[])).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "connection option \"gssencmode\" is not supported by safe-backup (from service file {}, line 3)",
                file.display()
            )
        );
        fs::write(&file, "[s]\nhost a\n").unwrap();
        let error = resolve("service=s", &test_env(home.path(), &[])).unwrap_err();
        assert!(error.to_string().contains("line 2"), "{error}");
        fs::write(&file, "[s]\nservice=t\n").unwrap();
        assert!(resolve("service=s", &test_env(home.path(), &[])).is_err());
        fs::write(&file, "[s]\nport=x\n").unwrap();
        let error = resolve("service=s", &test_env(home.path(), &[])).unwrap_err();
        assert!(error.to_string().contains("line 2"), "{error}");
    }
}
