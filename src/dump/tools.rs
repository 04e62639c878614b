//! The client tools pgback runs (pg_dump, pg_dumpall): where they are, their version (probed
//! once to gate options), and the argument vectors, built by pure functions.

use std::path::{Path, PathBuf};

use tokio::io::AsyncReadExt;

use crate::config::dump::{DatabaseDumpSettings, DumpConfig};
use crate::config::values::{Compression, Format};
use crate::conn::quote_conninfo;
use crate::process::{run_child, ChildError, ChildName};
use crate::server::ServerVersion;

/// pg_dump cannot be run, or is too old.
#[derive(Debug, thiserror::Error)]
#[error("cannot use {program}: {reason}")]
pub struct UnusableTool {
    /// The program.
    pub program: PathBuf,
    /// Why.
    pub reason: String,
}

/// pg_dump is older than the server, which it refuses to dump ("aborting because of server
/// version mismatch"): found once, before anything is dumped.
#[derive(Debug, thiserror::Error)]
#[error(
    "{program} is pg_dump {tool}, older than the server (PostgreSQL {server}), which it cannot dump"
)]
pub struct OlderThanServer {
    /// The pg_dump.
    pub program: PathBuf,
    /// Its version.
    pub tool: ToolVersion,
    /// The server's version.
    pub server: ServerVersion,
}

impl OlderThanServer {
    /// The major the client tools must have at least: "18", or "9.6" for a 9.6 server.
    pub fn major_needed(&self) -> String {
        major_name(self.server)
    }
}

/// A server's major as PostgreSQL names it: 18 for 18.1, 9.6 for 9.6.24.
fn major_name(server: ServerVersion) -> String {
    let major = server.major();
    if server.num() >= 100000 {
        major.to_string()
    } else {
        format!("{}.{}", major / 10, major % 10)
    }
}

/// Whether pg_dump `tool` dumps `server`: pg_dump refuses servers of a newer major. Majors
/// compare as `major * 100`, and as `9 * 100 + 6` for 9.6, so that 10 is newer than 9.6.
pub fn dumps_server(tool: ToolVersion, server: ServerVersion) -> bool {
    let tool_major = if tool.major >= 10 {
        tool.major * 100
    } else {
        tool.major * 100 + tool.minor
    };
    let server_major = if server.num() >= 100000 {
        server.num() / 10000 * 100
    } else {
        server.num() / 100
    };
    tool_major >= server_major
}

/// The client tools of a run, found and probed.
#[derive(Debug, Clone)]
pub struct Tools {
    /// pg_dump's path.
    pub pg_dump: PathBuf,
    /// pg_dumpall's path.
    pub pg_dumpall: PathBuf,
    /// pg_dump's version (pg_dumpall comes with it).
    pub version: ToolVersion,
}

impl Tools {
    /// Finds the tools in `bin_directory` (empty: on PATH) and probes `pg_dump --version`.
    pub async fn find(bin_directory: &str) -> Result<Tools, UnusableTool> {
        let pg_dump = tool_path(bin_directory, "pg_dump");
        let version = probe_pg_dump(&pg_dump).await?;
        tracing::info!("pg_dump {version} at {}", pg_dump.display());
        Ok(Tools {
            pg_dump,
            pg_dumpall: tool_path(bin_directory, "pg_dumpall"),
            version,
        })
    }

    /// Checks that this pg_dump can dump `server` (its major or newer), once, before any dump.
    pub fn check_server(&self, server: ServerVersion) -> Result<(), OlderThanServer> {
        if dumps_server(self.version, server) {
            return Ok(());
        }
        Err(OlderThanServer {
            program: self.pg_dump.clone(),
            tool: self.version,
            server,
        })
    }

    /// Checks every `compress_level` of the run (the global one and each database's) against
    /// this pg_dump, before anything is dumped.
    pub fn check_compression(&self, dump: &DumpConfig) -> Result<(), UnusableTool> {
        let levels = std::iter::once(&dump.compress_level).chain(
            dump.databases
                .values()
                .filter_map(|db| db.compress_level.as_ref()),
        );
        for level in levels {
            compress_arg(level, self.version).map_err(|reason| UnusableTool {
                program: self.pg_dump.clone(),
                reason,
            })?;
        }
        Ok(())
    }
}

/// The first pg_dump that takes `-Z method[:detail]`, with lz4 and zstd.
pub const PG_DUMP_COMPRESSION_METHODS: ToolVersion = ToolVersion {
    major: 16,
    minor: 0,
};

/// The argument of `--compress` for this pg_dump, or `None` for pg_dump's default. Older
/// pg_dumps take a level only: `gzip[:N]` becomes `N` (gzip's default 6 without one) and
/// `none` becomes `0`; lz4 and zstd, or a detail other than a level, need pg_dump 16.
pub fn compress_arg(
    compression: &Compression,
    version: ToolVersion,
) -> Result<Option<String>, String> {
    let Compression::Method { method, detail } = compression else {
        return Ok(compression.pg_dump_arg());
    };
    if version >= PG_DUMP_COMPRESSION_METHODS {
        return Ok(compression.pg_dump_arg());
    }
    let too_old = || {
        format!(
            "-Z {compression} needs pg_dump {} or later (this one is {version}); -Z 0..9 (gzip) \
             works with any",
            PG_DUMP_COMPRESSION_METHODS.major
        )
    };
    let level = match (method.as_str(), detail.as_deref()) {
        ("none", _) => "0",
        ("gzip", None) => "6",
        ("gzip", Some(level)) if level.parse::<u8>().is_ok_and(|l| l <= 9) => level,
        _ => return Err(too_old()),
    };
    Ok(Some(level.to_string()))
}

/// Why `pg_dump --version` did not answer.
fn probe_failure(error: ChildError) -> String {
    match error {
        ChildError::Spawn { source, .. } => source.to_string(),
        ChildError::Failed { status, .. } => format!("--version failed ({status})"),
        timeout @ ChildError::Timeout { .. } => timeout.to_string(),
    }
}

/// Runs `pg_dump --version`: it must run and be at least [`MIN_PG_DUMP`].
pub async fn probe_pg_dump(program: &Path) -> Result<ToolVersion, UnusableTool> {
    let fail = |reason: String| UnusableTool {
        program: program.to_path_buf(),
        reason,
    };
    let mut command = tokio::process::Command::new(program);
    command.arg("--version");
    let shown = program.display().to_string();
    let name = ChildName {
        program: &shown,
        label: "pg_dump",
    };
    let read_all = |mut stdout: tokio::process::ChildStdout| async move {
        let mut text = Vec::new();
        stdout.read_to_end(&mut text).await.map(|_| text)
    };
    let output = run_child(command, name, None, read_all)
        .await
        .and_then(|finished| finished.success())
        .map_err(|error| fail(probe_failure(error)))?;
    let output = output.map_err(|error| fail(error.to_string()))?;
    let text = String::from_utf8_lossy(&output);
    let version = parse_tool_version(&text)
        .ok_or_else(|| fail(format!("unreadable version {:?}", text.trim())))?;
    if version < MIN_PG_DUMP {
        return Err(fail(format!(
            "version {version} is older than {MIN_PG_DUMP}"
        )));
    }
    Ok(version)
}

/// A tool's path: in `bin_directory` when set, else looked up on PATH.
pub fn tool_path(bin_directory: &str, tool: &str) -> PathBuf {
    if bin_directory.is_empty() {
        PathBuf::from(tool)
    } else {
        Path::new(bin_directory).join(tool)
    }
}

/// A tool version as `major * 10000 + minor` (9.6.3 -> 90603 style is not needed: majors from
/// 10 on have one number, older ones two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ToolVersion {
    /// 15 for 15.4; 9 for 9.6.
    pub major: u32,
    /// 4 for 15.4; 6 for 9.6.
    pub minor: u32,
}

impl std::fmt::Display for ToolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Reads `pg_dump (PostgreSQL) 15.4 (Debian 15.4-1)` or `pg_dump (PostgreSQL) 17beta1`.
pub fn parse_tool_version(output: &str) -> Option<ToolVersion> {
    let line = output.lines().next()?;
    let word = line
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let mut numbers = word
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().ok());
    let major = numbers.next()??;
    let minor = if word[major.to_string().len()..].starts_with('.') {
        numbers.next().flatten().unwrap_or(0)
    } else {
        0
    };
    Some(ToolVersion { major, minor })
}

/// The oldest pg_dump pgback runs (as pg_back).
pub const MIN_PG_DUMP: ToolVersion = ToolVersion { major: 8, minor: 4 };

/// pg_dump's arguments for one database (the database itself goes in `PGDATABASE`). Output:
/// stdout for every format but directory, which is written to `directory_target`.
pub fn pg_dump_args(
    settings: &DatabaseDumpSettings,
    version: ToolVersion,
    directory_target: Option<&Path>,
) -> Vec<String> {
    let mut args = vec![format!("-F{}", settings.format.letter()), "-w".to_string()];
    if settings.format == Format::Directory {
        if let Some(target) = directory_target {
            args.push(format!("--file={}", target.display()));
        }
        // pg_dump -j needs 9.3+.
        if settings.parallel_backup_jobs > 1 && version >= (ToolVersion { major: 9, minor: 3 }) {
            args.push(format!("--jobs={}", settings.parallel_backup_jobs));
        }
    }
    for (flag, values) in [
        ("--schema", &settings.schemas),
        ("--exclude-schema", &settings.exclude_schemas),
        ("--table", &settings.tables),
        ("--exclude-table", &settings.exclude_tables),
    ] {
        for value in values {
            args.push(format!("{flag}={value}"));
        }
    }
    match settings.with_blobs {
        Some(true) => args.push("-b".into()),
        // -B appeared in pg_dump 10.
        Some(false) if version.major >= 10 => args.push("-B".into()),
        _ => {}
    }
    if settings.format != Format::Tar {
        // Tools::check_compression refused what this pg_dump cannot do; should it not have
        // run, pg_dump gets the value as given and refuses it itself (never a silent default).
        let arg = compress_arg(&settings.compress_level, version)
            .unwrap_or_else(|_| settings.compress_level.pg_dump_arg());
        if let Some(level) = arg {
            args.push(format!("--compress={level}"));
        }
    }
    args.extend(settings.pg_dump_options.iter().cloned());
    args
}

/// pg_dumpall's arguments for the globals (roles, tablespaces), to stdout; the connection comes
/// from the environment, the database to connect to from `-l`.
pub fn pg_dumpall_args(
    maintenance_db: &str,
    no_role_passwords: bool,
    version: ToolVersion,
) -> Vec<String> {
    let mut args = vec![
        "-g".to_string(),
        "-w".to_string(),
        format!("--database={}", conninfo_dbname(maintenance_db)),
    ];
    // --no-role-passwords appeared in 10.
    if no_role_passwords && version.major >= 10 {
        args.push("--no-role-passwords".into());
    }
    args
}

/// `dbname=...`: a connection string holding only the database name, quoted where needed so
/// that any name (with spaces, quotes, backslashes) stays a name.
pub fn conninfo_dbname(dbname: &str) -> String {
    format!("dbname={}", quote_conninfo(dbname))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::dump::DumpConfig;
    use crate::config::values::Compression;

    #[test]
    fn versions() {
        let v = |s| parse_tool_version(s);
        assert_eq!(
            v("pg_dump (PostgreSQL) 15.4 (Debian 15.4-1.pgdg120+1)"),
            Some(ToolVersion {
                major: 15,
                minor: 4
            })
        );
        assert_eq!(
            v("pg_dump (PostgreSQL) 9.6.24"),
            Some(ToolVersion { major: 9, minor: 6 })
        );
        assert_eq!(
            v("pg_dump (PostgreSQL) 17beta1"),
            Some(ToolVersion {
                major: 17,
                minor: 0
            })
        );
        assert_eq!(
            v("pg_dump (PostgreSQL) 8.3.1"),
            Some(ToolVersion { major: 8, minor: 3 })
        );
        assert!(v("pg_dump (PostgreSQL) 8.3.1").unwrap() < MIN_PG_DUMP);
        assert_eq!(v("garbage"), None);
        assert_eq!(v(""), None);
    }

    #[test]
    fn pg_dump_argv() {
        let mut dump = DumpConfig::default();
        let v15 = ToolVersion {
            major: 15,
            minor: 4,
        };
        assert_eq!(
            pg_dump_args(&dump.for_database("x"), v15, None),
            ["-Fc", "-w"]
        );
        dump.format = Format::Directory;
        dump.parallel_backup_jobs = 4;
        dump.compress_level = Compression::Level(5);
        dump.pg_dump_options = "--no-owner".into();
        let mut s = dump.for_database("x");
        s.schemas = vec!["-evil schema".into()];
        s.with_blobs = Some(false);
        assert_eq!(
            pg_dump_args(&s, v15, Some(Path::new("/b/x.d.partial"))),
            [
                "-Fd",
                "-w",
                "--file=/b/x.d.partial",
                "--jobs=4",
                "--schema=-evil schema",
                "-B",
                "--compress=5",
                "--no-owner"
            ]
        );
        s.format = Format::Tar;
        assert_eq!(
            pg_dump_args(&s, ToolVersion { major: 9, minor: 6 }, None),
            ["-Ft", "-w", "--schema=-evil schema", "--no-owner"]
        );
    }

    #[test]
    fn compression_for_each_pg_dump() {
        let v = |major| ToolVersion { major, minor: 0 };
        let arg = |text: &str, major| {
            let compression: Compression = text.parse().unwrap();
            compress_arg(&compression, v(major))
        };
        assert_eq!(arg("-1", 15), Ok(None));
        assert_eq!(arg("5", 15), Ok(Some("5".into())));
        assert_eq!(arg("gzip:3", 15), Ok(Some("3".into())));
        assert_eq!(arg("gzip", 15), Ok(Some("6".into())));
        assert_eq!(arg("none", 12), Ok(Some("0".into())));
        assert_eq!(arg("gzip:3", 16), Ok(Some("gzip:3".into())));
        assert_eq!(
            arg("zstd:level=9,long", 17),
            Ok(Some("zstd:level=9,long".into()))
        );
        for lacking in ["zstd", "lz4:4", "gzip:level=3"] {
            let reason = arg(lacking, 15).unwrap_err();
            assert!(reason.contains("needs pg_dump 16 or later"), "{reason}");
            assert!(reason.contains("this one is 15.0"), "{reason}");
        }
        let dump = DumpConfig {
            compress_level: "lz4".parse().unwrap(),
            ..Default::default()
        };
        let tools = Tools {
            pg_dump: "pg_dump".into(),
            pg_dumpall: "pg_dumpall".into(),
            version: v(15),
        };
        assert!(tools.check_compression(&dump).is_err());
        assert!(Tools {
            version: v(16),
            ..tools
        }
        .check_compression(&dump)
        .is_ok());
    }

    #[test]
    fn a_pg_dump_older_than_the_server_is_refused_naming_the_major_needed() {
        let v = |major, minor| ToolVersion { major, minor };
        let tools = |version| Tools {
            pg_dump: "/usr/lib/postgresql/15/bin/pg_dump".into(),
            pg_dumpall: "pg_dumpall".into(),
            version,
        };
        for (tool, server, serves) in [
            (v(15, 18), 150018, true),
            (v(15, 18), 140023, true),
            (v(18, 1), 100023, true),
            (v(18, 1), 90624, true),
            (v(9, 6), 90624, true),
            (v(9, 5), 90624, false),
            (v(9, 6), 100023, false),
            (v(15, 18), 160014, false),
            (v(17, 0), 180004, false),
        ] {
            let server = ServerVersion(server);
            assert_eq!(dumps_server(tool, server), serves, "{tool} for {server}");
            assert_eq!(tools(tool).check_server(server).is_ok(), serves);
        }
        let refused = tools(v(15, 18))
            .check_server(ServerVersion(180004))
            .unwrap_err();
        assert_eq!(refused.major_needed(), "18");
        assert_eq!(
            refused.to_string(),
            "/usr/lib/postgresql/15/bin/pg_dump is pg_dump 15.18, older than the server \
             (PostgreSQL 18.4), which it cannot dump"
        );
        let refused = tools(v(9, 5))
            .check_server(ServerVersion(90624))
            .unwrap_err();
        assert_eq!(refused.major_needed(), "9.6");
    }

    #[test]
    fn pg_dumpall_argv() {
        let v15 = ToolVersion {
            major: 15,
            minor: 0,
        };
        assert_eq!(
            pg_dumpall_args("post'gres", true, v15),
            [
                "-g",
                "-w",
                "--database=dbname='post\\'gres'",
                "--no-role-passwords"
            ]
        );
        assert_eq!(
            pg_dumpall_args("postgres", true, ToolVersion { major: 9, minor: 6 }).len(),
            3
        );
    }
}
