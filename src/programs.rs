//! PostgreSQL's client programs (pg_dump, pg_dumpall, psql, pg_restore): where they are, and
//! their version (a [`ServerVersion`], as the server's), probed once to gate options.

use std::path::{Path, PathBuf};

use tokio::io::AsyncReadExt;

use crate::conn::quote_conninfo;
use crate::process::{run_child, ChildError, ChildName};
use crate::server::ServerVersion;

/// pg_dump cannot be run, or is too old.
#[derive(Debug, thiserror::Error)]
#[error("cannot use {program}: {reason}")]
pub struct UnusableTool {
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
    pub tool: ServerVersion,
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

/// A release's major, comparable across the 9.x and 10+ numbering: `major * 100`, and
/// `9 * 100 + 6` for 9.6, so that 10 is newer than 9.6.
fn major_rank(version: ServerVersion) -> u32 {
    if version.num() >= 100000 {
        version.num() / 10000 * 100
    } else {
        version.num() / 100
    }
}

/// Whether pg_dump `tool` dumps `server`: pg_dump refuses servers of a newer major.
pub fn dumps_server(tool: ServerVersion, server: ServerVersion) -> bool {
    major_rank(tool) >= major_rank(server)
}

/// The client tools of a run, found and probed.
#[derive(Debug, Clone)]
pub struct Tools {
    /// pg_dump's path.
    pub pg_dump: PathBuf,
    /// pg_dumpall's path.
    pub pg_dumpall: PathBuf,
    /// pg_dump's version (pg_dumpall comes with it).
    pub version: ServerVersion,
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
}

/// Why `<program> --version` did not answer.
fn probe_failure(error: ChildError) -> String {
    match error {
        ChildError::Spawn { source, .. } => source.to_string(),
        ChildError::Failed { status, .. } => format!("--version failed ({status})"),
        timeout @ ChildError::Timeout { .. } => timeout.to_string(),
    }
}

/// Runs `pg_dump --version`: it must run and be at least [`MIN_PG_DUMP`].
pub async fn probe_pg_dump(program: &Path) -> Result<ServerVersion, UnusableTool> {
    let version = probe_version(program, "pg_dump").await?;
    if version < MIN_PG_DUMP {
        return Err(UnusableTool {
            program: program.to_path_buf(),
            reason: format!("version {version} is older than {MIN_PG_DUMP}"),
        });
    }
    Ok(version)
}

/// Runs `<program> --version` (pg_dump, pg_restore, ...) and reads the version it prints.
pub async fn probe_version(program: &Path, label: &str) -> Result<ServerVersion, UnusableTool> {
    let fail = |reason: String| UnusableTool {
        program: program.to_path_buf(),
        reason,
    };
    let mut command = tokio::process::Command::new(program);
    command.arg("--version").stdin(std::process::Stdio::null());
    let shown = program.display().to_string();
    let name = ChildName {
        program: &shown,
        label,
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
    parse_tool_version(&text).ok_or_else(|| fail(format!("unreadable version {:?}", text.trim())))
}

/// A tool's path: in `bin_directory` when set, else looked up on PATH.
pub fn tool_path(bin_directory: &str, tool: &str) -> PathBuf {
    if bin_directory.is_empty() {
        PathBuf::from(tool)
    } else {
        Path::new(bin_directory).join(tool)
    }
}

/// Reads `pg_dump (PostgreSQL) 15.4 (Debian 15.4-1)`, `pg_dump (PostgreSQL) 9.6.24` or
/// `pg_dump (PostgreSQL) 17beta1` as the [`ServerVersion`] (`server_version_num`) of that release.
pub fn parse_tool_version(output: &str) -> Option<ServerVersion> {
    let line = output.lines().next()?;
    let word = line
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let release: String = word
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut numbers = release.split('.').map(|n| n.parse::<u32>().ok());
    let major = numbers.next()??;
    let minor = numbers.next().flatten().unwrap_or(0);
    let num = if major >= 10 {
        major * 10000 + minor
    } else {
        major * 10000 + minor * 100 + numbers.next().flatten().unwrap_or(0)
    };
    Some(ServerVersion(num))
}

/// The oldest pg_dump pgback runs (as pg_back).
pub const MIN_PG_DUMP: ServerVersion = ServerVersion(80400);

/// `dbname=...`: a connection string holding only the database name, quoted where needed so
/// that any name (with spaces, quotes, backslashes) stays a name.
pub fn conninfo_dbname(dbname: &str) -> String {
    format!("dbname={}", quote_conninfo(dbname))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let v = |s| parse_tool_version(s);
        assert_eq!(
            v("pg_dump (PostgreSQL) 15.4 (Debian 15.4-1.pgdg120+1)"),
            Some(ServerVersion(150004))
        );
        assert_eq!(v("pg_dump (PostgreSQL) 9.6.24"), Some(ServerVersion(90624)));
        assert_eq!(
            v("pg_dump (PostgreSQL) 17beta1"),
            Some(ServerVersion(170000))
        );
        assert_eq!(v("pg_dump (PostgreSQL) 8.3.1"), Some(ServerVersion(80301)));
        assert!(v("pg_dump (PostgreSQL) 8.3.1").unwrap() < MIN_PG_DUMP);
        assert_eq!(v("garbage"), None);
        assert_eq!(v(""), None);
    }

    #[test]
    fn a_pg_dump_older_than_the_server_is_refused_naming_the_major_needed() {
        let v = |major: u32, minor: u32| {
            ServerVersion(if major >= 10 {
                major * 10000 + minor
            } else {
                major * 10000 + minor * 100
            })
        };
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
}
