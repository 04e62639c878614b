//! SQL text of `pgback`: quoting of identifiers and literals, and the catalog queries, built per
//! server version by pure functions.

pub use crate::server::{quote_ident, quote_literal};

/// Reads the server version, superuser status and recovery state of the session.
pub const SERVER_INFO: &str = "SELECT current_setting('server_version_num')::int4, \
     coalesce((SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user), false), \
     pg_catalog.pg_is_in_recovery()";

/// Every database that accepts connections, with its template flag.
pub const LIST_DATABASES: &str =
    "SELECT datname, datistemplate FROM pg_catalog.pg_database WHERE datallowconn ORDER BY datname";

/// What createdb.sql needs about one database (`$1` = its name). Columns: owner, encoding,
/// collate, ctype, locale provider, icu/builtin locale, icu rules, is template, acl as text[],
/// connection limit, tablespace.
pub fn database_definition_query(server_version_num: i32) -> String {
    let locale = if server_version_num >= 170_000 {
        "d.datlocprovider::text, d.datlocale, d.daticurules"
    } else if server_version_num >= 160_000 {
        "d.datlocprovider::text, d.daticulocale, d.daticurules"
    } else if server_version_num >= 150_000 {
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

/// `ALTER DATABASE .. SET` and `ALTER ROLE .. IN DATABASE .. SET` settings of one database
/// (`$1` = its name). Columns: role name (NULL for every role), settings as `name=value` text[].
pub const DATABASE_SETTINGS: &str = "SELECT CASE WHEN s.setrole = 0 THEN NULL \
     ELSE pg_catalog.pg_get_userbyid(s.setrole)::text END, s.setconfig \
     FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase \
     WHERE d.datname = $1 ORDER BY s.setrole <> 0, 1";

/// The settings applied from the configuration files (9.5+), for `pg_settings_<stamp>.out`.
pub fn file_settings_query(server_version_num: i32) -> Option<&'static str> {
    (server_version_num >= 90_500).then_some(
        "SELECT name, setting FROM pg_catalog.pg_show_all_file_settings() WHERE applied ORDER BY seqno",
    )
}

/// Reads a server file named by a setting (`hba_file`, `ident_file`): columns path, contents.
pub fn read_config_file_query(setting: &str) -> String {
    format!(
        "SELECT current_setting({0}), pg_catalog.pg_read_file(current_setting({0}))",
        quote_literal(setting)
    )
}

/// The replay functions' infix: `wal` from 10 on, `xlog` before.
fn wal_or_xlog(server_version_num: i32) -> &'static str {
    if server_version_num >= 100_000 {
        "wal"
    } else {
        "xlog"
    }
}

/// Pauses replay unless a query holds or waits for an AccessExclusiveLock (which a paused
/// replay could block forever); returns a row when it paused.
pub fn pause_replay_query(server_version_num: i32) -> String {
    format!(
        "SELECT pg_catalog.pg_{}_replay_pause() WHERE NOT EXISTS \
         (SELECT 1 FROM pg_catalog.pg_locks WHERE mode = 'AccessExclusiveLock') \
         AND pg_catalog.pg_is_in_recovery()",
        wal_or_xlog(server_version_num)
    )
}

/// Whether replay has actually stopped (13+); older servers have no way to tell.
pub fn replay_pause_state_query(server_version_num: i32) -> Option<&'static str> {
    (server_version_num >= 130_000)
        .then_some("SELECT pg_catalog.pg_get_wal_replay_pause_state() = 'paused'")
}

/// Resumes replay.
pub fn resume_replay_query(server_version_num: i32) -> String {
    format!(
        "SELECT pg_catalog.pg_{}_replay_resume() WHERE pg_catalog.pg_is_in_recovery()",
        wal_or_xlog(server_version_num)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("PUBLIC"), "\"PUBLIC\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b'c"), "E'a\\\\b''c'");
        assert_eq!(quote_literal("x=y\nz"), "'x=y\nz'");
    }

    #[test]
    fn queries_by_version() {
        assert!(database_definition_query(170_002).contains("datlocale"));
        assert!(database_definition_query(160_000).contains("daticulocale, d.daticurules"));
        assert!(database_definition_query(150_000).contains("daticulocale, NULL"));
        assert!(!database_definition_query(140_000).contains("datlocprovider"));
        assert!(pause_replay_query(150_000).contains("pg_wal_replay_pause()"));
        assert!(pause_replay_query(96_000).contains("pg_xlog_replay_pause()"));
        assert!(resume_replay_query(90_600).contains("pg_xlog_replay_resume()"));
        assert!(replay_pause_state_query(130_000).is_some());
        assert!(replay_pause_state_query(120_000).is_none());
        assert!(file_settings_query(90_400).is_none());
        assert_eq!(
            read_config_file_query("hba_file"),
            "SELECT current_setting('hba_file'), pg_catalog.pg_read_file(current_setting('hba_file'))"
        );
    }
}
