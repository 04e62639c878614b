//! Server versions and the SQL that differs between them, as pure builders.
//!
//! [`ServerVersion`] is the one version type of the crate, and [`read_version`] its one reader:
//! the hook pair's, `pgback`'s, `--restore`'s and `pgdrill`'s.

use std::fmt;

/// `server_version_num` of a server, e.g. 150018 or 90624.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion(pub u32);

/// The oldest server with non-exclusive backups (`pg_start_backup(.., false)`).
pub const OLDEST_SUPPORTED: ServerVersion = ServerVersion(90600);

impl ServerVersion {
    /// Parses `SHOW server_version_num`.
    pub fn parse(text: &str) -> Option<ServerVersion> {
        text.trim().parse().ok().map(ServerVersion)
    }

    /// `server_version_num` as a number, e.g. 150018.
    pub fn num(self) -> u32 {
        self.0
    }

    /// The major version as PostgreSQL names it: 96 for 9.6, 15 for 15.x.
    pub fn major(self) -> u32 {
        if self.0 >= 100000 {
            self.0 / 10000
        } else {
            self.0 / 10000 * 10 + self.0 / 100 % 100
        }
    }

    /// Whether the hook pair can work with this server at all.
    pub fn is_supported(self) -> bool {
        self >= OLDEST_SUPPORTED
    }

    /// 15 renamed the backup functions to `pg_backup_start` / `pg_backup_stop`.
    fn has_backup_start(self) -> bool {
        self.0 >= 150000
    }
}

/// Reading a server's version failed.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// The query failed or its row did not decode.
    #[error("reading the server version: {0}")]
    Query(#[from] tokio_postgres::Error),
    /// The server answered something that is not a version.
    #[error("unexpected server_version_num {0:?}")]
    Unreadable(String),
}

/// The one reader of a server's version: `current_setting('server_version_num')`.
pub async fn read_version(client: &tokio_postgres::Client) -> Result<ServerVersion, VersionError> {
    let text: String = client
        .query_one("SELECT current_setting('server_version_num')", &[])
        .await?
        .try_get(0)?;
    ServerVersion::parse(&text).ok_or(VersionError::Unreadable(text))
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= 100000 {
            write!(f, "{}.{}", self.0 / 10000, self.0 % 10000)
        } else {
            write!(
                f,
                "{}.{}.{}",
                self.0 / 10000,
                self.0 / 100 % 100,
                self.0 % 100
            )
        }
    }
}

/// Starts a non-exclusive backup. Parameters: `$1` label (text), `$2` fast checkpoint
/// (bool). Returns one row: the start LSN as text.
pub fn backup_start_sql(version: ServerVersion) -> &'static str {
    if version.has_backup_start() {
        "SELECT pg_backup_start($1::text, $2::boolean)::text"
    } else {
        "SELECT pg_start_backup($1::text, $2::boolean, false)::text"
    }
}

/// Stops the non-exclusive backup of this session **without** the server's archive wait: that
/// wait has no time limit and hands back the label only when it ends, so a session lost during
/// it loses the label (the archive check is pgpost's, after the label is stored). No
/// parameters (9.6 has no such argument and always waits). Returns one row: stop LSN as text,
/// `backup_label`, `tablespace_map` (NULL or empty without tablespaces).
pub fn backup_stop_sql(version: ServerVersion) -> &'static str {
    if version.has_backup_start() {
        "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)"
    } else if version.0 >= 100000 {
        "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, false)"
    } else {
        "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false)"
    }
}

/// Forces the segment holding the stop out to the archiver, even on an idle server: a restore
/// point writes a record (`$1`, its name, text), so the switch that follows always has
/// something to switch out (pgBackRest's way; a bare switch on an idle server does nothing).
/// Two statements, run one after the other.
pub fn force_segment_out_sql(version: ServerVersion) -> [&'static str; 2] {
    let switch = if version.0 >= 100000 {
        "SELECT pg_switch_wal()::text"
    } else {
        "SELECT pg_switch_xlog()::text"
    };
    ["SELECT pg_create_restore_point($1::text)::text", switch]
}

/// What pgpre reports of a standby's replay, one row: whether replay is paused (or a pause
/// is requested) and how far replay lags behind the WAL already received, in seconds (NULL
/// when nothing waits to be replayed: an idle primary is no lag).
pub fn replay_state_sql(version: ServerVersion) -> &'static str {
    if version.0 >= 140000 {
        "SELECT pg_get_wal_replay_pause_state() <> 'not paused' AS paused, \
           CASE WHEN pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn() \
             THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END AS lag"
    } else {
        "SELECT pg_is_wal_replay_paused() AS paused, \
           CASE WHEN pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn() \
             THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END AS lag"
    }
}

/// The functions a non-superuser must be allowed to execute, as GRANT statements.
pub fn backup_grants(version: ServerVersion, role: &str) -> Vec<String> {
    let role = quote_ident(role);
    let functions: &[&str] = if version.has_backup_start() {
        &[
            "pg_backup_start(text, boolean)",
            "pg_backup_stop(boolean)",
            "pg_create_restore_point(text)",
            "pg_switch_wal()",
        ]
    } else if version.0 >= 100000 {
        &[
            "pg_start_backup(text, boolean, boolean)",
            "pg_stop_backup(boolean, boolean)",
            "pg_create_restore_point(text)",
            "pg_switch_wal()",
        ]
    } else {
        &[
            "pg_start_backup(text, boolean, boolean)",
            "pg_stop_backup(boolean)",
            "pg_create_restore_point(text)",
            "pg_switch_xlog()",
        ]
    };
    let mut grants: Vec<String> = functions
        .iter()
        .map(|function| format!("GRANT EXECUTE ON FUNCTION {function} TO {role};"))
        .collect();
    // pg_stat_archiver's times and pg_ls_archive_statusdir() (12+): the archive check.
    if version.0 >= 100000 {
        grants.push(format!("GRANT pg_monitor TO {role};"));
    }
    grants
}

/// Session settings that would end or interrupt the held session, turned off.
/// `idle_session_timeout` exists from 14 on.
pub fn session_guard_sql(version: ServerVersion) -> &'static str {
    if version.0 >= 140000 {
        "SET statement_timeout = 0; SET lock_timeout = 0; \
         SET idle_in_transaction_session_timeout = 0; SET idle_session_timeout = 0"
    } else {
        "SET statement_timeout = 0; SET lock_timeout = 0; \
         SET idle_in_transaction_session_timeout = 0"
    }
}

/// Quotes an SQL identifier: always double-quoted, inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal: `'` doubled; with a backslash, an `E''` literal with
/// backslashes doubled, so the result means the same whatever `standard_conforming_strings` is.
pub fn quote_literal(value: &str) -> String {
    let doubled = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", doubled.replace('\\', "\\\\"))
    } else {
        format!("'{doubled}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_pause_is_read_as_each_major_can() {
        assert!(replay_state_sql(ServerVersion(140000)).contains("pg_get_wal_replay_pause_state()"));
        assert!(replay_state_sql(ServerVersion(130010)).contains("pg_is_wal_replay_paused()"));
        assert!(replay_state_sql(ServerVersion(100000)).contains("pg_last_wal_replay_lsn()"));
    }

    #[test]
    fn versions_parse_and_print() {
        assert_eq!(
            ServerVersion::parse("150018\n"),
            Some(ServerVersion(150018))
        );
        assert_eq!(ServerVersion::parse("fifteen"), None);
        assert_eq!(ServerVersion(150018).to_string(), "15.18");
        assert_eq!(ServerVersion(90624).to_string(), "9.6.24");
        assert_eq!(ServerVersion(90624).major(), 96);
        assert_eq!(ServerVersion(180001).major(), 18);
        assert!(!ServerVersion(90520).is_supported());
        assert!(ServerVersion(90600).is_supported());
        assert_eq!(ServerVersion(170002).num(), 170002);
    }

    #[test]
    fn start_sql_by_version() {
        for (num, function) in [
            (90624, "pg_start_backup($1::text, $2::boolean, false)"),
            (100023, "pg_start_backup($1::text, $2::boolean, false)"),
            (140013, "pg_start_backup($1::text, $2::boolean, false)"),
            (150000, "pg_backup_start($1::text, $2::boolean)"),
            (180001, "pg_backup_start($1::text, $2::boolean)"),
        ] {
            assert!(
                backup_start_sql(ServerVersion(num)).contains(function),
                "{num}"
            );
        }
    }

    #[test]
    fn stop_sql_never_waits_for_archiving() {
        assert!(backup_stop_sql(ServerVersion(90624)).contains("pg_stop_backup(false)"));
        assert!(backup_stop_sql(ServerVersion(100000)).contains("pg_stop_backup(false, false)"));
        assert!(backup_stop_sql(ServerVersion(149999)).contains("pg_stop_backup(false, false)"));
        assert!(backup_stop_sql(ServerVersion(150000)).contains("pg_backup_stop(false)"));
        assert!(backup_stop_sql(ServerVersion(180001)).contains("pg_backup_stop(false)"));
        for num in [90624, 120000, 170000] {
            // No parameter: nothing a caller passes can turn the server's wait back on.
            assert!(!backup_stop_sql(ServerVersion(num)).contains('$'));
            assert!(!backup_stop_sql(ServerVersion(num)).contains("true"));
        }
    }

    #[test]
    fn grants_by_version() {
        assert_eq!(
            backup_grants(ServerVersion(150000), "back\"up"),
            vec![
                "GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean) TO \"back\"\"up\";",
                "GRANT EXECUTE ON FUNCTION pg_backup_stop(boolean) TO \"back\"\"up\";",
                "GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) TO \"back\"\"up\";",
                "GRANT EXECUTE ON FUNCTION pg_switch_wal() TO \"back\"\"up\";",
                "GRANT pg_monitor TO \"back\"\"up\";",
            ]
        );
        assert!(backup_grants(ServerVersion(100000), "b")[1]
            .contains("pg_stop_backup(boolean, boolean)"));
        assert!(backup_grants(ServerVersion(90600), "b")[1].contains("pg_stop_backup(boolean) "));
    }

    #[test]
    fn a_restore_point_comes_before_the_switch() {
        let [point, switch] = force_segment_out_sql(ServerVersion(100000));
        assert!(point.contains("pg_create_restore_point($1::text)"));
        assert!(switch.contains("pg_switch_wal()"));
        assert!(force_segment_out_sql(ServerVersion(90624))[1].contains("pg_switch_xlog()"));
    }

    #[test]
    fn session_guard_by_version() {
        assert!(session_guard_sql(ServerVersion(140000)).contains("idle_session_timeout"));
        assert!(!session_guard_sql(ServerVersion(130000)).contains("idle_session_timeout"));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b=c d"), "\"a\"\"b=c d\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b'c"), "E'a\\\\b''c'");
    }
}
