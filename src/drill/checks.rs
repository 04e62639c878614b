//! What pgdrill checks on the recovered clone: amcheck on every database (pg_amcheck on 14+,
//! `bt_index_check` on every B-tree index on 10 to 13), the `--sql` queries, and the `--exec`
//! command, run against the clone with PGHOST, PGPORT, PGUSER and PGDATABASE.

use std::ffi::OsString;
use std::os::fd::AsFd as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::types::FromSql;
use tokio_postgres::{Client, NoTls, Row, SimpleQueryMessage};

use super::error::DrillError;
use crate::server::{quote_ident, read_version, session_guard_sql, ServerVersion, VersionError};

/// How to reach the recovered server: its private socket, as a role that exists.
#[derive(Clone, Debug)]
pub struct Target {
    /// The private socket directory.
    pub socket_dir: PathBuf,
    /// The port that names the socket.
    pub port: u16,
    /// A superuser of the backed-up cluster (trust on the private socket).
    pub role: String,
    /// A database that exists: `postgres`, else `template1`.
    pub maintenance_db: String,
}

impl Target {
    /// Connects to `dbname`; the connection is driven by a spawned task.
    pub async fn connect(&self, dbname: &str) -> Result<Client, tokio_postgres::Error> {
        connect_as(&self.socket_dir, self.port, &self.role, dbname).await
    }

    /// Environment variables pointing libpq at the clone (every other `PG*` is removed).
    fn libpq_env(&self, dbname: &str) -> [(&'static str, String); 4] {
        [
            ("PGHOST", self.socket_dir.to_string_lossy().into_owned()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", self.role.clone()),
            ("PGDATABASE", dbname.to_string()),
        ]
    }
}

async fn connect_as(
    socket_dir: &Path,
    port: u16,
    role: &str,
    dbname: &str,
) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::Config::new()
        .host_path(socket_dir)
        .port(port)
        .user(role)
        .dbname(dbname)
        .application_name("pgdrill")
        .connect(NoTls)
        .await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A `tokio_postgres` error as one line: the server's message when there is one.
fn db_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_string(),
        None => error.to_string(),
    }
}

/// Finds a role to connect as (the data directory owner's name, then `postgres`), a database
/// to start from (`postgres`, else `template1`) and the server's version; retries briefly
/// while the just-promoted server settles.
pub async fn find_target(
    socket_dir: &Path,
    port: u16,
    candidates: &[String],
) -> Result<(Target, ServerVersion), DrillError> {
    let mut problems = Vec::new();
    for role in candidates {
        for dbname in ["postgres", "template1"] {
            match connect_settled(socket_dir, port, role, dbname).await {
                Ok(client) => {
                    let target = Target {
                        socket_dir: socket_dir.to_path_buf(),
                        port,
                        role: role.clone(),
                        maintenance_db: dbname.to_string(),
                    };
                    return Ok((target, server_version(&client).await?));
                }
                Err(error)
                    if error.code()
                        == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME) =>
                {
                    continue
                }
                Err(error) => {
                    problems.push(format!("{role}: {}", db_message(&error)));
                    break;
                }
            }
        }
    }
    Err(DrillError::Connect(problems.join("; ")))
}

/// Connects, retrying for up to 10 s while the server is not answering yet (an error from
/// the server itself is returned at once).
async fn connect_settled(
    socket_dir: &Path,
    port: u16,
    role: &str,
    dbname: &str,
) -> Result<Client, tokio_postgres::Error> {
    let mut delay = Duration::from_millis(50);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match connect_as(socket_dir, port, role, dbname).await {
            Err(error) if error.as_db_error().is_none() && Instant::now() < deadline => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            result => return result,
        }
    }
}

async fn server_version(client: &Client) -> Result<ServerVersion, DrillError> {
    read_version(client).await.map_err(|error| match error {
        VersionError::Query(e) => DrillError::Connect(db_message(&e)),
        VersionError::Unreadable(text) => {
            DrillError::Internal(format!("server_version_num {text:?}"))
        }
    })
}

/// The databases that accept connections, by name.
pub async fn databases(target: &Target) -> Result<Vec<String>, DrillError> {
    let client = target
        .connect(&target.maintenance_db)
        .await
        .map_err(|e| DrillError::Connect(db_message(&e)))?;
    let rows = client
        .query(
            "SELECT datname::text FROM pg_database WHERE datallowconn ORDER BY datname",
            &[],
        )
        .await
        .map_err(|e| DrillError::Connect(db_message(&e)))?;
    rows.iter()
        .map(|row| column(row, 0, "a database name"))
        .collect()
}

/// Column `index` of a row pgdrill asked for, or a typed error saying what was asked.
fn column<'a, T: FromSql<'a>>(
    row: &'a Row,
    index: usize,
    what: &'static str,
) -> Result<T, DrillError> {
    row.try_get(index)
        .map_err(|source| DrillError::Answer { what, source })
}

/// The amcheck result of one database.
#[derive(Clone, Debug, Serialize)]
pub struct DatabaseCheck {
    /// The database.
    pub name: String,
    /// What ran: `pg_amcheck --heapallindexed`, `bt_index_check(index, heapallindexed)`, ...
    pub method: String,
    /// Indexes checked (10-13; pg_amcheck does not say).
    pub indexes_checked: Option<u64>,
    /// What amcheck reported; empty when clean.
    pub findings: Vec<String>,
}

/// 14+: `pg_amcheck --install-missing --heapallindexed` on `dbname` (heap and B-tree), its
/// output lines as findings.
pub async fn pg_amcheck(pg_amcheck: &Path, target: &Target, dbname: &str) -> DatabaseCheck {
    let mut command = tokio::process::Command::new(pg_amcheck);
    command.args(["--install-missing", "--heapallindexed", "--no-password"]);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            command.env_remove(key);
        }
    }
    command
        .envs(target.libpq_env(dbname))
        .env("PGAPPNAME", "pgdrill")
        .env(
            "PGOPTIONS",
            "-c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0",
        )
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let mut check = DatabaseCheck {
        name: dbname.to_string(),
        method: "pg_amcheck --heapallindexed".into(),
        indexes_checked: None,
        findings: Vec::new(),
    };
    match command.output().await {
        Ok(output) if output.status.success() => {}
        Ok(output) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            check.findings = text
                .lines()
                .filter(|line| !line.trim().is_empty())
                .map(str::to_string)
                .collect();
            if check.findings.is_empty() {
                check.findings.push(format!("pg_amcheck {}", output.status));
            }
        }
        Err(error) => check
            .findings
            .push(format!("cannot run {}: {error}", pg_amcheck.display())),
    }
    check
}

/// 10-13 (no pg_amcheck there): `bt_index_check` on every valid B-tree index of `dbname`,
/// with `heapallindexed` from 11 on; amcheck is created in the clone when missing.
pub async fn btree_check(target: &Target, dbname: &str, version: ServerVersion) -> DatabaseCheck {
    let heapallindexed = version.0 >= 110000;
    let mut check = DatabaseCheck {
        name: dbname.to_string(),
        method: if heapallindexed {
            "bt_index_check(index, heapallindexed)".into()
        } else {
            "bt_index_check(index)".into()
        },
        indexes_checked: Some(0),
        findings: Vec::new(),
    };
    if let Err(finding) = check_indexes(target, dbname, version, heapallindexed, &mut check).await {
        check.findings.push(finding);
    }
    check
}

async fn check_indexes(
    target: &Target,
    dbname: &str,
    version: ServerVersion,
    heapallindexed: bool,
    check: &mut DatabaseCheck,
) -> Result<(), String> {
    let client = target.connect(dbname).await.map_err(|e| db_message(&e))?;
    client
        .batch_execute(session_guard_sql(version))
        .await
        .map_err(|e| db_message(&e))?;
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        .await
        .map_err(|e| format!("CREATE EXTENSION amcheck: {}", db_message(&e)))?;
    let schema_row = client
        .query_one(
            "SELECT n.nspname::text FROM pg_extension e \
             JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'amcheck'",
            &[],
        )
        .await
        .map_err(|e| db_message(&e))?;
    let schema: String = column(&schema_row, 0, "amcheck's schema").map_err(|e| e.to_string())?;
    let indexes = client
        .query(
            "SELECT c.oid, format('%I.%I', n.nspname, c.relname) FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_am am ON am.oid = c.relam \
             WHERE am.amname = 'btree' AND c.relpersistence <> 't' \
               AND i.indisready AND i.indisvalid ORDER BY c.oid",
            &[],
        )
        .await
        .map_err(|e| db_message(&e))?;
    let call = format!(
        "SELECT {}.bt_index_check($1::oid::regclass{})",
        quote_ident(&schema),
        if heapallindexed { ", true" } else { "" }
    );
    let statement = client.prepare(&call).await.map_err(|e| db_message(&e))?;
    for index in &indexes {
        let oid: u32 = column(index, 0, "an index's oid").map_err(|e| e.to_string())?;
        let name: String = column(index, 1, "an index's name").map_err(|e| e.to_string())?;
        if let Err(error) = client.query(&statement, &[&oid]).await {
            check
                .findings
                .push(format!("index {name}: {}", db_message(&error)));
        }
        check.indexes_checked = check.indexes_checked.map(|n| n + 1);
    }
    Ok(())
}

/// One `--sql` query and what it returned.
#[derive(Clone, Debug, Serialize)]
pub struct SqlCheck {
    /// The query as given.
    pub query: String,
    /// The database it ran in.
    pub database: String,
    /// It returned exactly one row whose first column is true.
    pub passed: bool,
    /// `true`, `false`, `NULL`, `no row`, `3 rows` or the error.
    pub result: String,
}

/// Runs `query` (simple protocol, so several statements are fine: the last row counts).
pub async fn sql_check(target: &Target, dbname: &str, query: &str) -> SqlCheck {
    let result = match target.connect(dbname).await {
        Err(error) => format!("error: {}", db_message(&error)),
        Ok(client) => match client.simple_query(query).await {
            Err(error) => format!("error: {}", db_message(&error)),
            Ok(messages) => {
                let rows: Vec<_> = messages
                    .iter()
                    .filter_map(|m| match m {
                        SimpleQueryMessage::Row(row) => Some(row),
                        _ => None,
                    })
                    .collect();
                match rows.as_slice() {
                    [] => "no row".to_string(),
                    [row] => match row.try_get(0) {
                        Ok(Some("t")) => "true".to_string(),
                        Ok(Some("f")) => "false".to_string(),
                        Ok(Some(other)) => format!("{other:?}, not a boolean"),
                        Ok(None) => "NULL".to_string(),
                        Err(_) => "no column".to_string(),
                    },
                    many => format!("{} rows", many.len()),
                }
            }
        },
    };
    SqlCheck {
        query: query.to_string(),
        database: dbname.to_string(),
        passed: result == "true",
        result,
    }
}

/// The `--exec` command and how it ended.
#[derive(Clone, Debug, Serialize)]
pub struct ExecRun {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Its exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that killed it, when one did.
    pub signal: Option<i32>,
    /// It exited 0.
    pub passed: bool,
    /// Why it could not run, when it could not.
    pub error: Option<String>,
    /// How long it ran.
    pub seconds: f64,
}

/// Runs `argv` without a shell against the clone; its stdout and stderr go to pgdrill's
/// stderr (stdout stays for the report).
pub async fn exec(argv: &[OsString], target: &Target, dbname: &str) -> ExecRun {
    let started = Instant::now();
    let mut run = ExecRun {
        command: argv
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect(),
        exit_code: None,
        signal: None,
        passed: false,
        error: None,
        seconds: 0.0,
    };
    let Some((program, args)) = argv.split_first() else {
        run.error = Some("no command after --exec".into());
        return run;
    };
    let mut command = tokio::process::Command::new(program);
    command.args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            command.env_remove(key);
        }
    }
    command.envs(target.libpq_env(dbname)).stdin(Stdio::null());
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => match fd.try_clone() {
            Ok(fd2) => {
                command.stdout(Stdio::from(fd)).stderr(Stdio::from(fd2));
            }
            Err(error) => run.error = Some(format!("duplicating stderr: {error}")),
        },
        Err(error) => run.error = Some(format!("duplicating stderr: {error}")),
    }
    if run.error.is_some() {
        return run;
    }
    match command.kill_on_drop(true).status().await {
        Ok(status) => {
            run.exit_code = status.code();
            run.signal = status.signal();
            run.passed = status.success();
        }
        Err(error) => {
            run.error = Some(format!("cannot run {}: {error}", program.to_string_lossy()))
        }
    }
    run.seconds = started.elapsed().as_secs_f64();
    run
}
