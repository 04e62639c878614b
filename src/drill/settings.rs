//! The throwaway server's settings, as pure builders: what cannot touch the outside world goes
//! on the command line (it wins over every configuration file), the recovery settings go into
//! `recovery.conf` (10, 11) or `postgresql.auto.conf` + `recovery.signal` (12+).

use std::path::Path;

/// Where the WAL comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalSource {
    /// A directory of archived segments, copied with `cp`.
    Archive(std::path::PathBuf),
    /// A `restore_command` given as is (`%f`, `%p` as PostgreSQL expands them).
    Command(String),
}

impl WalSource {
    /// The `restore_command` value.
    pub fn restore_command(&self) -> String {
        match self {
            WalSource::Command(command) => command.clone(),
            WalSource::Archive(dir) => {
                // The shell sees single-quoted paths; PostgreSQL expands `%` first.
                let dir = shell_quote(&dir.to_string_lossy()).replace('%', "%%");
                format!("cp {dir}/'%f' '%p'")
            }
        }
    }
}

/// A word for `/bin/sh`, single-quoted.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// A string literal in postgresql.conf syntax.
pub fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Paths the server gets on its command line.
#[derive(Clone, Debug)]
pub struct ServerPaths<'a> {
    /// The clone's data directory.
    pub data_dir: &'a Path,
    /// The private socket directory (mode 0700).
    pub socket_dir: &'a Path,
    /// The port that names the socket (no TCP listener).
    pub port: u16,
}

/// `-c name=value` pairs for `postgres`: no TCP, a private socket, no archiving, no
/// replication, our own hba/ident files, logging to stderr in English, a small
/// `shared_buffers`, no fsync (the clone is thrown away), and on 12+ the recovery target.
pub fn server_options(major: u32, paths: &ServerPaths<'_>) -> Vec<(&'static str, String)> {
    let data = |file: &str| paths.data_dir.join(file).to_string_lossy().into_owned();
    let mut options: Vec<(&'static str, String)> = vec![
        ("config_file", data("postgresql.conf")),
        (
            "data_directory",
            paths.data_dir.to_string_lossy().into_owned(),
        ),
        ("hba_file", data("pg_hba.conf")),
        ("ident_file", data("pg_ident.conf")),
        (
            "external_pid_file",
            paths
                .socket_dir
                .join("postmaster.pid")
                .to_string_lossy()
                .into_owned(),
        ),
        ("listen_addresses", String::new()),
        (
            "unix_socket_directories",
            paths.socket_dir.to_string_lossy().into_owned(),
        ),
        ("unix_socket_permissions", "0700".into()),
        ("port", paths.port.to_string()),
        ("ssl", "off".into()),
        ("archive_mode", "off".into()),
        ("synchronous_standby_names", String::new()),
        ("hot_standby", "off".into()),
        ("shared_buffers", "64MB".into()),
        ("huge_pages", "off".into()),
        ("fsync", "off".into()),
        ("synchronous_commit", "off".into()),
        ("autovacuum", "off".into()),
        ("restart_after_crash", "off".into()),
        ("default_transaction_read_only", "off".into()),
        ("logging_collector", "off".into()),
        ("log_destination", "stderr".into()),
        ("log_line_prefix", "%m [%p] ".into()),
        ("log_min_messages", "warning".into()),
        ("lc_messages", "C".into()),
        ("cluster_name", "pgdrill".into()),
    ];
    if major <= 14 {
        // Debian points this at /run/postgresql: keep the statistics inside the clone.
        options.push(("stats_temp_directory", "pg_stat_tmp".into()));
    }
    if major >= 12 {
        options.extend([
            ("primary_conninfo", String::new()),
            ("primary_slot_name", String::new()),
            // 12-15 refuse a second target as each is assigned: clear the others first
            // (a configuration file's then count no more: the command line wins).
            ("recovery_target_name", String::new()),
            ("recovery_target_time", String::new()),
            ("recovery_target_xid", String::new()),
            ("recovery_target_lsn", String::new()),
            ("recovery_target", "immediate".into()),
            ("recovery_target_action", "promote".into()),
            ("recovery_end_command", String::new()),
            ("archive_cleanup_command", String::new()),
        ]);
    }
    options
}

/// The files that turn on archive recovery, with their contents. The restore command goes
/// into a file, not onto the command line, where every local user could read it.
pub fn recovery_files(
    major: u32,
    restore_command: &str,
    auto_conf: &str,
) -> Vec<(&'static str, String)> {
    let restore = format!("restore_command = {}\n", conf_quote(restore_command));
    if major >= 12 {
        let mut auto = auto_conf.to_string();
        if !auto.is_empty() && !auto.ends_with('\n') {
            auto.push('\n');
        }
        auto.push_str("# pgdrill: recover this clone from the backup's WAL\n");
        auto.push_str(&restore);
        vec![
            ("postgresql.auto.conf", auto),
            ("recovery.signal", String::new()),
        ]
    } else {
        vec![(
            "recovery.conf",
            format!(
                "# pgdrill: recover this clone from the backup's WAL, stop once consistent\n\
                 {restore}recovery_target = 'immediate'\n\
                 recovery_target_action = 'promote'\n"
            ),
        )]
    }
}

/// The clone's `pg_hba.conf`: trust on the private socket, nothing else.
pub const HBA_CONF: &str = "# pgdrill: the clone's server listens only on a private socket \
                            directory (mode 0700)\nlocal all all trust\n";

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn archive_restore_command_quotes_for_shell_and_percent() {
        let source = WalSource::Archive(PathBuf::from("/srv/wal's 100%"));
        assert_eq!(
            source.restore_command(),
            "cp '/srv/wal'\\''s 100%%'/'%f' '%p'"
        );
        let given = WalSource::Command("wal-g wal-fetch %f %p".into());
        assert_eq!(given.restore_command(), "wal-g wal-fetch %f %p");
        assert_eq!(conf_quote("a'b\\c"), "'a''b\\\\c'");
    }

    #[test]
    fn options_isolate_the_server_by_version() {
        let data = PathBuf::from("/w/data");
        let sock = PathBuf::from("/w/socket");
        let paths = ServerPaths {
            data_dir: &data,
            socket_dir: &sock,
            port: 5999,
        };
        let get = |major: u32, name: &str| {
            server_options(major, &paths)
                .into_iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value)
        };
        assert_eq!(get(15, "listen_addresses").as_deref(), Some(""));
        assert_eq!(get(15, "archive_mode").as_deref(), Some("off"));
        assert_eq!(get(15, "hba_file").as_deref(), Some("/w/data/pg_hba.conf"));
        assert_eq!(get(15, "recovery_target").as_deref(), Some("immediate"));
        assert_eq!(get(15, "primary_conninfo").as_deref(), Some(""));
        assert_eq!(get(11, "recovery_target"), None);
        assert_eq!(
            get(14, "stats_temp_directory").as_deref(),
            Some("pg_stat_tmp")
        );
        assert_eq!(get(15, "stats_temp_directory"), None);
    }

    #[test]
    fn recovery_files_by_version() {
        let files = recovery_files(11, "cp a b", "ignored");
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, "recovery.conf");
        assert!(files[0].1.contains("restore_command = 'cp a b'\n"));
        assert!(files[0].1.contains("recovery_target_action = 'promote'"));
        let files = recovery_files(12, "cp a b", "work_mem = '8MB'");
        assert_eq!(files[0].0, "postgresql.auto.conf");
        assert!(files[0]
            .1
            .starts_with("work_mem = '8MB'\n# pgdrill: recover"));
        assert!(files[0].1.ends_with("restore_command = 'cp a b'\n"));
        assert_eq!(files[1], ("recovery.signal", String::new()));
    }
}
