//! Every catalog query of `pgback`, typed: the SQL is built per server version by pure functions
//! (unit-tested without a server) and each read returns decoded values, so no SQL text appears
//! anywhere else in the pipeline.

use tokio_postgres::Client;

use super::createdb::{DatabaseDefinition, RoleSettings};
use super::select::ListedDatabase;
use crate::server::{quote_literal, read_version, ServerVersion, VersionError};

/// A read of the run (not of one database) that failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The query failed or its row did not decode.
    #[error("{what}: {source}")]
    Query {
        /// What was being read.
        what: &'static str,
        /// The server's (or the decoder's) error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A value the server should never send.
    #[error("{what}: unexpected value {value}")]
    Value {
        /// What was being read.
        what: &'static str,
        value: String,
    },
}

fn reading(what: &'static str) -> impl Fn(tokio_postgres::Error) -> CatalogError {
    move |source| CatalogError::Query { what, source }
}

/// What the run needs to know about its session's server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerInfo {
    /// `server_version_num`.
    pub version: ServerVersion,
    /// Whether the role is a superuser (role passwords in the globals).
    pub superuser: bool,
    /// Whether the server is a standby (replay is paused for the dumps).
    pub in_recovery: bool,
}

const SERVER_INFO: &str = "SELECT \
     coalesce((SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user), false), \
     pg_catalog.pg_is_in_recovery()";

/// Reads the server version, superuser status and recovery state of the session.
pub async fn server_info(client: &Client) -> Result<ServerInfo, CatalogError> {
    let version = read_version(client).await.map_err(|error| match error {
        VersionError::Query(source) => CatalogError::Query {
            what: "reading the server version",
            source,
        },
        VersionError::Unreadable(value) => CatalogError::Value {
            what: "server version",
            value,
        },
    })?;
    let row = client
        .query_one(SERVER_INFO, &[])
        .await
        .map_err(reading("reading the server's role and recovery state"))?;
    Ok(ServerInfo {
        version,
        superuser: row.try_get(0).map_err(reading("superuser"))?,
        in_recovery: row.try_get(1).map_err(reading("recovery state"))?,
    })
}

const LIST_DATABASES: &str =
    "SELECT datname, datistemplate FROM pg_catalog.pg_database WHERE datallowconn ORDER BY datname";

/// Every database that accepts connections, with its template flag.
pub async fn list_databases(client: &Client) -> Result<Vec<ListedDatabase>, CatalogError> {
    let what = reading("listing databases");
    client
        .query(LIST_DATABASES, &[])
        .await
        .map_err(&what)?
        .iter()
        .map(|row| {
            Ok(ListedDatabase {
                name: row.try_get(0).map_err(&what)?,
                is_template: row.try_get(1).map_err(&what)?,
            })
        })
        .collect()
}

/// What createdb.sql needs about one database (`$1` = its name). Columns: owner, encoding,
/// collate, ctype, locale provider, icu/builtin locale, icu rules, is template, acl as text[],
/// connection limit, tablespace.
fn database_definition_query(version: ServerVersion) -> String {
    let locale = if version.0 >= 170_000 {
        "d.datlocprovider::text, d.datlocale, d.daticurules"
    } else if version.0 >= 160_000 {
        "d.datlocprovider::text, d.daticulocale, d.daticurules"
    } else if version.0 >= 150_000 {
        "d.datlocprovider::text, d.daticulocale, NULL::text"
    } else {
        "NULL::text, NULL::text, NULL::text"
    };
    format!(
        "SELECT pg_catalog.pg_get_userbyid(d.datdba), pg_catalog.pg_encoding_to_char(d.encoding), \
         d.datcollate::text, d.datctype::text, {locale}, d.datistemplate, d.datacl::text[], \
         d.datconnlimit, t.spcname::text \
         FROM pg_catalog.pg_database d LEFT JOIN pg_catalog.pg_tablespace t ON t.oid = d.dattablespace \
         WHERE d.datname = $1"
    )
}

/// The catalog facts about database `dbname`.
pub async fn database_definition(
    client: &Client,
    version: ServerVersion,
    dbname: &str,
) -> Result<DatabaseDefinition, tokio_postgres::Error> {
    let row = client
        .query_one(&database_definition_query(version), &[&dbname])
        .await?;
    Ok(DatabaseDefinition {
        name: dbname.to_string(),
        owner: row.try_get(0)?,
        encoding: row.try_get(1)?,
        collate: row.try_get(2)?,
        ctype: row.try_get(3)?,
        locale_provider: row.try_get(4)?,
        provider_locale: row.try_get(5)?,
        icu_rules: row.try_get(6)?,
        is_template: row.try_get(7)?,
        acl: row.try_get(8)?,
        connection_limit: row.try_get(9)?,
        tablespace: row.try_get(10)?,
    })
}

/// `ALTER DATABASE .. SET` and `ALTER ROLE .. IN DATABASE .. SET` settings of one database
/// (`$1` = its name). Columns: role name (NULL for every role), settings as `name=value` text[].
const DATABASE_SETTINGS: &str = "SELECT CASE WHEN s.setrole = 0 THEN NULL \
     ELSE pg_catalog.pg_get_userbyid(s.setrole)::text END, s.setconfig \
     FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase \
     WHERE d.datname = $1 ORDER BY s.setrole <> 0, 1";

/// The per-database and per-role-in-database settings of `dbname`.
pub async fn database_settings(
    client: &Client,
    dbname: &str,
) -> Result<Vec<RoleSettings>, tokio_postgres::Error> {
    client
        .query(DATABASE_SETTINGS, &[&dbname])
        .await?
        .iter()
        .map(|row| {
            Ok(RoleSettings {
                role: row.try_get(0)?,
                settings: row
                    .try_get::<_, Option<Vec<String>>>(1)?
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// One setting applied from the configuration files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSetting {
    pub name: String,
    /// Its value as written (NULL when the server hides it).
    pub value: Option<String>,
}

/// The settings applied from the configuration files (9.5+).
fn file_settings_query(version: ServerVersion) -> Option<&'static str> {
    (version.0 >= 90_500).then_some(
        "SELECT name, setting FROM pg_catalog.pg_show_all_file_settings() WHERE applied ORDER BY seqno",
    )
}

/// The settings applied from the configuration files, in file order; `None` before 9.5, which
/// cannot tell. A row that does not decode is left out.
pub async fn file_settings(
    client: &Client,
    version: ServerVersion,
) -> Option<Result<Vec<FileSetting>, tokio_postgres::Error>> {
    let query = file_settings_query(version)?;
    Some(client.query(query, &[]).await.map(|rows| {
        rows.iter()
            .filter_map(|row| {
                Some(FileSetting {
                    name: row.try_get(0).ok()?,
                    value: row.try_get(1).ok()?,
                })
            })
            .collect()
    }))
}

/// A server file named by a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFile {
    /// Where it is on the server.
    pub path: String,
    /// What it holds.
    pub contents: Option<String>,
}

/// Reads a server file named by a setting (`hba_file`, `ident_file`): columns path, contents.
fn server_file_query(setting: &str) -> String {
    format!(
        "SELECT current_setting({0}), pg_catalog.pg_read_file(current_setting({0}))",
        quote_literal(setting)
    )
}

/// Reads the file named by `setting` (`hba_file`, `ident_file`); needs superuser or
/// `pg_read_server_files`.
pub async fn server_file(
    client: &Client,
    setting: &str,
) -> Result<ServerFile, tokio_postgres::Error> {
    let row = client.query_one(&server_file_query(setting), &[]).await?;
    Ok(ServerFile {
        path: row.try_get(0)?,
        contents: row.try_get(1)?,
    })
}

/// The replay functions' infix: `wal` from 10 on, `xlog` before.
fn wal_or_xlog(version: ServerVersion) -> &'static str {
    if version.0 >= 100_000 {
        "wal"
    } else {
        "xlog"
    }
}

/// Pauses replay unless a query holds or waits for an AccessExclusiveLock (which a paused
/// replay could block forever); returns a row when it paused.
fn pause_replay_query(version: ServerVersion) -> String {
    format!(
        "SELECT pg_catalog.pg_{}_replay_pause() WHERE NOT EXISTS \
         (SELECT 1 FROM pg_catalog.pg_locks WHERE mode = 'AccessExclusiveLock') \
         AND pg_catalog.pg_is_in_recovery()",
        wal_or_xlog(version)
    )
}

/// Asks a standby to pause replay; `false` when an AccessExclusiveLock is held (nothing
/// asked: try again later).
pub async fn request_replay_pause(
    client: &Client,
    version: ServerVersion,
) -> Result<bool, tokio_postgres::Error> {
    let rows = client.query(&pause_replay_query(version), &[]).await?;
    Ok(!rows.is_empty())
}

/// Whether the server can tell that replay has actually stopped (14+: 14 brought
/// `pg_get_wal_replay_pause_state()`; 13 answers "function does not exist").
pub fn reports_replay_pause_state(version: ServerVersion) -> bool {
    version.0 >= 140_000
}

const REPLAY_PAUSE_STATE: &str = "SELECT pg_catalog.pg_get_wal_replay_pause_state() = 'paused'";

/// Whether replay has stopped after a pause request (14+, see
/// [`reports_replay_pause_state`]).
pub async fn replay_is_paused(client: &Client) -> Result<bool, tokio_postgres::Error> {
    let row = client.query_one(REPLAY_PAUSE_STATE, &[]).await?;
    let paused: Option<bool> = row.try_get(0)?;
    Ok(paused == Some(true))
}

fn resume_replay_query(version: ServerVersion) -> String {
    format!(
        "SELECT pg_catalog.pg_{}_replay_resume() WHERE pg_catalog.pg_is_in_recovery()",
        wal_or_xlog(version)
    )
}

/// Resumes replay.
pub async fn resume_replay(
    client: &Client,
    version: ServerVersion,
) -> Result<(), tokio_postgres::Error> {
    client.query(&resume_replay_query(version), &[]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_by_version() {
        let v = ServerVersion;
        assert!(database_definition_query(v(170_002)).contains("datlocale"));
        assert!(database_definition_query(v(160_000)).contains("daticulocale, d.daticurules"));
        assert!(database_definition_query(v(150_000)).contains("daticulocale, NULL"));
        assert!(!database_definition_query(v(140_000)).contains("datlocprovider"));
        assert!(pause_replay_query(v(150_000)).contains("pg_wal_replay_pause()"));
        assert!(pause_replay_query(v(96_000)).contains("pg_xlog_replay_pause()"));
        assert!(resume_replay_query(v(90_600)).contains("pg_xlog_replay_resume()"));
        assert!(reports_replay_pause_state(v(140_000)));
        assert!(!reports_replay_pause_state(v(130_000)));
        assert!(file_settings_query(v(90_400)).is_none());
        assert_eq!(
            server_file_query("hba_file"),
            "SELECT current_setting('hba_file'), pg_catalog.pg_read_file(current_setting('hba_file'))"
        );
    }
}
