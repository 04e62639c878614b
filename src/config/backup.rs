//! `[backup]`: how `pgpre`, the co-process and `pgpost` run a backup: defaults, validation,
//! and the command line laid over the file.
//!
//! Layering is defaults < file < environment < command line: serde fills the defaults and the
//! file, clap fills each override from its flag or else its `SAFE_BACKUP_*` variable, and
//! [`BackupConfig::apply`] lays the overrides over the section.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::args::{ArchiveArgs, ArchiveCheck, BackupArgs, Checkpoint, StartArgs, StopArgs};
use crate::values::Seconds;

/// The backup name used when none is given.
pub const DEFAULT_NAME: &str = "default";

/// `[backup]`: how `pgpre`, the co-process and `pgpost` run a backup.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// Label given to the start function; empty means a generated one.
    pub label: String,
    /// How the start's checkpoint runs.
    pub checkpoint: Checkpoint,
    /// Deprecated spelling of `checkpoint` (true = fast), still read; wins when present.
    pub fast_checkpoint: Option<bool>,
    /// How long `pgpre` waits for the start function; 0 = no limit.
    #[serde(deserialize_with = "seconds")]
    pub start_timeout: Seconds,
    /// How long the co-process holds backup mode before failing it; 0 = no limit.
    #[serde(deserialize_with = "seconds")]
    pub backup_timeout: Seconds,
    /// Whether pgpost checks that the backup's WAL is archived (and pgpre that archiving is on).
    pub archive_check: ArchiveCheck,
    /// Deprecated alias of `archive_check` (false = none, true = auto), still read; wins when
    /// present. It was the stop function's argument; the stop never waits any more.
    pub wait_for_archive: Option<bool>,
    /// The archive directory the check looks in; empty means none.
    pub wal_archive: PathBuf,
    /// The restore_command the check fetches segments with; empty means none.
    pub restore_command: String,
    /// How long the check waits for the next segment; restarts on progress; 0 = no limit.
    #[serde(deserialize_with = "seconds")]
    pub archive_timeout: Seconds,
    /// How long `pgpost` waits for the backup to complete; 0 = no limit.
    #[serde(deserialize_with = "seconds")]
    pub stop_timeout: Seconds,
    /// Schema of the state table; empty means the first schema on the search_path.
    pub schema: String,
    /// Name of the state table.
    pub table: String,
    /// Log file of the co-process; empty means none.
    pub log_file: PathBuf,
    /// Where the co-process logs: its log file, or the systemd journal.
    pub log_target: LogTarget,
    /// Time between slow re-reads of the state table behind LISTEN/NOTIFY; at least 1 s.
    #[serde(deserialize_with = "seconds")]
    pub recheck_interval: Seconds,
    /// Which backup (row) pgpre and pgpost work on; several can run at once.
    pub name: String,
    /// Where a backup of a hot standby keeps its state (nothing is written to a standby);
    /// empty means `$XDG_RUNTIME_DIR/safe-backup`, else `/run/safe-backup`.
    pub state_dir: PathBuf,
    /// The primary of the standby the hooks back up (a connection string); empty means none.
    pub primary_conninfo: String,
}

impl Default for BackupConfig {
    fn default() -> Self {
        let secs = |n| Seconds(Duration::from_secs(n));
        BackupConfig {
            label: String::new(),
            checkpoint: Checkpoint::Fast,
            fast_checkpoint: None,
            start_timeout: secs(600),
            backup_timeout: secs(DEFAULT_BACKUP_TIMEOUT_SECS),
            archive_check: ArchiveCheck::Auto,
            wait_for_archive: None,
            wal_archive: PathBuf::new(),
            restore_command: String::new(),
            archive_timeout: secs(60),
            stop_timeout: secs(3600),
            schema: String::new(),
            table: "backup".to_string(),
            log_file: PathBuf::new(),
            log_target: LogTarget::File,
            recheck_interval: secs(10),
            name: DEFAULT_NAME.to_string(),
            state_dir: PathBuf::new(),
            primary_conninfo: String::new(),
        }
    }
}

/// The default `backup_timeout`: 6 hours. Long enough for a copy of a few TB (a
/// `cp -a`/rsync between the hooks, or `--exec`), short enough that a backup nobody ends
/// (Veeam skips post-thaw when no snapshot was taken) is failed and its session released
/// within the night, before the next nightly run.
pub const DEFAULT_BACKUP_TIMEOUT_SECS: u64 = 6 * 3600;

/// The longest label accepted, in bytes.
pub const MAX_LABEL_BYTES: usize = 1024;

/// Checks a backup label: at most [`MAX_LABEL_BYTES`] bytes, no control character (a newline
/// would put a line of the caller's choosing into `backup_label`, which recovery reads).
pub fn validate_label(label: &str) -> Result<(), String> {
    if label.len() > MAX_LABEL_BYTES {
        return Err(format!(
            "is {} bytes long, more than {MAX_LABEL_BYTES}",
            label.len()
        ));
    }
    if let Some((at, control)) = label.char_indices().find(|(_, c)| c.is_control()) {
        return Err(format!(
            "must be one line of printable characters: {control:?} at byte {at} (of {})",
            shorten_label(label)
        ));
    }
    Ok(())
}

/// A label as messages show it: at most 60 characters, control characters escaped.
pub fn shorten_label(label: &str) -> String {
    const SHOWN: usize = 60;
    let escaped: String = label.escape_debug().collect();
    if escaped.chars().count() <= SHOWN {
        return format!("\"{escaped}\"");
    }
    let head: String = escaped.chars().take(SHOWN).collect();
    format!("\"{head}...\" ({} bytes)", label.len())
}

/// `backup.log_target`: where pgpre's co-process (which has no terminal) logs.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    /// `backup.log_file` (none when empty).
    #[default]
    File,
    /// The systemd journal (journald's socket), with `SYSLOG_IDENTIFIER=pgpre`.
    Journal,
}

/// A `[backup]` value that is well-typed but not acceptable; the caller names where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidKey {
    /// `backup.<key>` for the file, the flag (`--name`) for the command line.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

fn invalid(key: &'static str, message: impl Into<String>) -> InvalidKey {
    InvalidKey {
        key,
        message: message.into(),
    }
}

/// A timeout where 0 means none.
pub fn limit(value: Seconds) -> Option<Duration> {
    (!value.0.is_zero()).then_some(value.0)
}

/// Checks a backup name: 1 to 63 characters of `A-Z a-z 0-9 _ . -`.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 characters long".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err("may hold only letters, digits, '_', '.' and '-'".into());
    }
    Ok(())
}

impl BackupConfig {
    /// Checks the values as read from the file.
    pub fn validate(&self) -> Result<(), InvalidKey> {
        if self.table.is_empty() {
            return Err(invalid("backup.table", "must not be empty"));
        }
        if self.recheck_interval.0 < Duration::from_secs(1) {
            return Err(invalid(
                "backup.recheck_interval",
                "must be at least 1 second",
            ));
        }
        validate_name(&self.name).map_err(|message| invalid("backup.name", message))?;
        validate_label(&self.label).map_err(|message| invalid("backup.label", message))?;
        self.validate_archive_source("backup.wal_archive")
    }

    /// One place to look: a directory or a restore_command, not both.
    fn validate_archive_source(&self, key: &'static str) -> Result<(), InvalidKey> {
        if !self.wal_archive.as_os_str().is_empty() && !self.restore_command.is_empty() {
            return Err(invalid(
                key,
                "give the archive directory or the restore_command (backup.restore_command), not both",
            ));
        }
        Ok(())
    }

    /// The archive check asked for: the deprecated `wait_for_archive` when set (false = none),
    /// else `archive_check`.
    pub fn archive_check(&self) -> ArchiveCheck {
        match self.wait_for_archive {
            Some(false) => ArchiveCheck::None,
            Some(true) => ArchiveCheck::Auto,
            None => self.archive_check,
        }
    }

    /// Lays the archive-check flags (or their variables) over the section.
    pub fn apply_archive(&mut self, archive: &ArchiveArgs) -> Result<(), InvalidKey> {
        if let Some(wait) = archive.wait_for_archive {
            self.wait_for_archive = Some(wait);
        }
        if let Some(check) = archive.archive_check {
            self.archive_check = check;
            self.wait_for_archive = None;
        }
        if let Some(dir) = &archive.wal_archive {
            self.wal_archive.clone_from(dir);
            self.restore_command.clear();
        }
        if let Some(command) = &archive.restore_command {
            self.restore_command.clone_from(command);
            if archive.wal_archive.is_none() {
                self.wal_archive = PathBuf::new();
            }
        }
        self.archive_timeout = archive.archive_timeout.unwrap_or(self.archive_timeout);
        self.validate_archive_source("--wal-archive")
    }

    /// The checkpoint asked for: the deprecated `fast_checkpoint` when a file still sets it,
    /// else `checkpoint` (fast by default: pgpre must return within the 10-60 s its callers
    /// allow).
    pub fn checkpoint(&self) -> Checkpoint {
        match self.fast_checkpoint {
            Some(true) => Checkpoint::Fast,
            Some(false) => Checkpoint::Spread,
            None => self.checkpoint,
        }
    }

    /// Lays the command line over the section: each override (its flag, else its
    /// `SAFE_BACKUP_*` variable) replaces the file's value. `start` holds pgpre's own keys,
    /// `stop` pgpost's.
    pub fn apply(
        &mut self,
        args: &BackupArgs,
        start: Option<&StartArgs>,
        stop: Option<&StopArgs>,
    ) -> Result<(), InvalidKey> {
        if let Some(schema) = &args.schema {
            self.schema.clone_from(schema);
        }
        if let Some(table) = &args.table {
            if table.is_empty() {
                return Err(invalid("--table", "must not be empty"));
            }
            self.table.clone_from(table);
        }
        if let Some(name) = &args.name {
            validate_name(name).map_err(|message| invalid("--name", message))?;
            self.name.clone_from(name);
        }
        if let Some(dir) = &args.state_dir {
            self.state_dir.clone_from(dir);
        }
        if let Some(primary) = &args.primary {
            let params = crate::conn::ConnParams::parse(primary).ok();
            if params.is_some_and(|params| params.get("password").is_some()) {
                return Err(invalid(
                    "--primary",
                    "must not hold a password (the command line is visible to every local \
                     user): put it in ~/.pgpass, PGPASSFILE or PGPASSWORD",
                ));
            }
            self.primary_conninfo.clone_from(primary);
        }
        self.apply_archive(&args.archive)?;
        if let Some(start) = start {
            if let Some(label) = &start.label {
                validate_label(label).map_err(|message| invalid("--label", message))?;
                self.label.clone_from(label);
            }
            let flag = match (start.checkpoint, start.fast, start.spread) {
                (Some(checkpoint), _, _) => Some(checkpoint),
                (None, true, _) => Some(Checkpoint::Fast),
                (None, _, true) => Some(Checkpoint::Spread),
                (None, false, false) => None,
            };
            if let Some(checkpoint) = flag {
                self.checkpoint = checkpoint;
                self.fast_checkpoint = None;
            }
            self.start_timeout = start.start_timeout.unwrap_or(self.start_timeout);
            self.backup_timeout = start.backup_timeout.unwrap_or(self.backup_timeout);
            if let Some(log_file) = &start.log_file {
                self.log_file.clone_from(log_file);
            }
        }
        if let Some(stop) = stop {
            self.stop_timeout = stop.stop_timeout.unwrap_or(self.stop_timeout);
        }
        Ok(())
    }
}

/// Reads a [`Seconds`] key: an integer number of seconds (as the keys always took) or a
/// duration string such as `"10m"`.
fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Seconds, D::Error> {
    use serde::de::Error;
    match toml::Value::deserialize(deserializer)? {
        toml::Value::Integer(n) => u64::try_from(n)
            .map(|n| Seconds(Duration::from_secs(n)))
            .map_err(|_| D::Error::custom(format!("{n} is negative: expected seconds >= 0"))),
        toml::Value::String(text) => text.parse().map_err(D::Error::custom),
        other => Err(D::Error::custom(format!(
            "invalid type: {}, expected seconds (an integer) or a duration like \"10m\"",
            other.type_str()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Pgpre;
    use crate::config::Config;
    use clap::Parser;
    use std::path::Path;

    /// Tests that set `SAFE_BACKUP_*` variables run one at a time.
    static ENVIRONMENT: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn parse(text: &str) -> BackupConfig {
        Config::parse(text, Path::new("test.toml")).unwrap().backup
    }

    fn secs(n: u64) -> Seconds {
        Seconds(Duration::from_secs(n))
    }

    /// The file's `[backup]` with pgpre's command line (`args`) applied, with `env` set.
    fn layered(file: &str, env: &[(&str, &str)], args: &[&str]) -> BackupConfig {
        let _one_at_a_time = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
        for (key, value) in env {
            std::env::set_var(key, value);
        }
        let cli = Pgpre::try_parse_from(std::iter::once("pgpre").chain(args.iter().copied()));
        for (key, _) in env {
            std::env::remove_var(key);
        }
        let cli = cli.unwrap();
        let mut config = parse(file);
        config
            .apply(&cli.common.backup, Some(&cli.start), None)
            .unwrap();
        config
    }

    #[test]
    fn the_standby_keys_layer_and_a_password_in_primary_is_refused() {
        let file = "[backup]\nstate_dir = \"/file\"\nprimary_conninfo = \"host=file\"\n";
        let config = layered(file, &[("SAFE_BACKUP_STATE_DIR", "/env")], &[]);
        assert_eq!(config.state_dir, PathBuf::from("/env"));
        assert_eq!(config.primary_conninfo, "host=file");
        let config = layered(
            file,
            &[("SAFE_BACKUP_PRIMARY", "host=env")],
            &["--primary", "host=flag"],
        );
        assert_eq!(config.primary_conninfo, "host=flag");
        assert_eq!(BackupConfig::default().state_dir, PathBuf::new());
        let cli = Pgpre::try_parse_from(["pgpre", "--primary", "host=p password=s3cr3t"]).unwrap();
        let refused = parse(file)
            .apply(&cli.common.backup, Some(&cli.start), None)
            .unwrap_err();
        assert_eq!(refused.key, "--primary");
        assert!(!refused.message.contains("s3cr3t"), "{}", refused.message);
    }

    #[test]
    fn defaults_then_file_then_environment_then_flags() {
        let file = "[backup]\nlabel = \"file\"\nbackup_timeout = 10\nstart_timeout = 20\n\
                    table = \"file_table\"\n";
        let env = [
            ("SAFE_BACKUP_LABEL", "env"),
            ("SAFE_BACKUP_BACKUP_TIMEOUT", "30"),
            ("SAFE_BACKUP_TABLE", "env_table"),
        ];
        let args = ["--backup-timeout", "40", "--table", "flag_table"];
        // Defaults alone: a backup nobody ends (no pgpost) ends by itself after 6 hours.
        let config = layered("", &[], &[]);
        assert_eq!(config, BackupConfig::default());
        assert_eq!(
            limit(config.backup_timeout),
            Some(Duration::from_secs(6 * 3600))
        );
        // The file wins over the defaults.
        let config = layered(file, &[], &[]);
        assert_eq!(
            (
                config.label.as_str(),
                config.backup_timeout,
                config.start_timeout
            ),
            ("file", secs(10), secs(20))
        );
        assert_eq!(
            config.stop_timeout,
            secs(3600),
            "untouched keys keep their default"
        );
        // The environment wins over the file.
        let config = layered(file, &env, &[]);
        assert_eq!(
            (
                config.label.as_str(),
                config.backup_timeout,
                config.table.as_str()
            ),
            ("env", secs(30), "env_table")
        );
        assert_eq!(config.start_timeout, secs(20));
        // Flags win over the environment.
        let config = layered(file, &env, &args);
        assert_eq!(
            (
                config.label.as_str(),
                config.backup_timeout,
                config.table.as_str()
            ),
            ("env", secs(40), "flag_table")
        );
    }

    #[test]
    fn pgposts_stop_timeout_is_layered_too() {
        use crate::args::Pgpost;
        let _one_at_a_time = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
        let mut config = parse("[backup]\nstop_timeout = 5\n");
        std::env::set_var("SAFE_BACKUP_STOP_TIMEOUT", "6");
        let from_env = Pgpost::try_parse_from(["pgpost"]);
        let from_flag = Pgpost::try_parse_from(["pgpost", "--stop-timeout", "7"]);
        std::env::remove_var("SAFE_BACKUP_STOP_TIMEOUT");
        let (from_env, from_flag) = (from_env.unwrap(), from_flag.unwrap());
        assert_eq!(config.stop_timeout, secs(5));
        config
            .apply(&from_env.common.backup, None, Some(&from_env.stop))
            .unwrap();
        assert_eq!(config.stop_timeout, secs(6));
        config
            .apply(&from_flag.common.backup, None, Some(&from_flag.stop))
            .unwrap();
        assert_eq!(config.stop_timeout, secs(7));
    }

    #[test]
    fn checkpoint_flags_override_the_file() {
        use Checkpoint::{Fast, Spread};
        assert_eq!(layered("", &[], &[]).checkpoint(), Fast, "the default");
        let spread = "[backup]\ncheckpoint = \"spread\"\n";
        assert_eq!(layered(spread, &[], &[]).checkpoint(), Spread);
        assert_eq!(
            layered(spread, &[], &["--checkpoint=fast"]).checkpoint(),
            Fast
        );
        assert_eq!(layered(spread, &[], &["--fast"]).checkpoint(), Fast);
        assert_eq!(
            layered(spread, &[("SAFE_BACKUP_CHECKPOINT", "fast")], &[]).checkpoint(),
            Fast
        );
        // The deprecated key still works, both ways.
        let old_spread = "[backup]\nfast_checkpoint = false\n";
        assert_eq!(layered(old_spread, &[], &[]).checkpoint(), Spread);
        assert_eq!(
            layered(old_spread, &[], &["--checkpoint", "fast"]).checkpoint(),
            Fast
        );
        let old_fast = "[backup]\nfast_checkpoint = true\n";
        assert_eq!(layered(old_fast, &[], &["--spread"]).checkpoint(), Spread);
        let _one_at_a_time = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
        assert!(Pgpre::try_parse_from(["pgpre", "--checkpoint", "slow"]).is_err());
        assert!(Pgpre::try_parse_from(["pgpre", "--fast", "--checkpoint=spread"]).is_err());
    }

    #[test]
    fn the_archive_check_is_layered_and_wait_for_archive_is_its_alias() {
        use ArchiveCheck::{Auto, None as Off};
        let config = layered("", &[], &[]);
        assert_eq!(
            (config.archive_check(), config.archive_timeout),
            (Auto, secs(60))
        );
        assert_eq!(
            layered("[backup]\nwait_for_archive = false\n", &[], &[]).archive_check(),
            Off
        );
        assert_eq!(
            layered("[backup]\nwait_for_archive = true\n", &[], &[]).archive_check(),
            Auto
        );
        assert_eq!(
            layered(
                "[backup]\nwait_for_archive = false\n",
                &[],
                &["--archive-check", "auto"]
            )
            .archive_check(),
            Auto
        );
        assert_eq!(
            layered("", &[], &["--wait-for-archive", "false"]).archive_check(),
            Off
        );
        assert_eq!(
            layered("", &[("SAFE_BACKUP_ARCHIVE_CHECK", "none")], &[]).archive_check(),
            Off
        );
        let file = "[backup]\nwal_archive = \"/file\"\narchive_timeout = \"2m\"\n";
        let config = layered(file, &[("SAFE_BACKUP_ARCHIVE_TIMEOUT", "3")], &[]);
        assert_eq!(
            (config.wal_archive.as_path(), config.archive_timeout),
            (Path::new("/file"), secs(3))
        );
        // A restore_command on the command line replaces the file's directory.
        let config = layered(file, &[], &["--restore-command", "cp /a/%f %p"]);
        assert_eq!(
            (
                config.wal_archive.as_os_str().is_empty(),
                config.restore_command.as_str()
            ),
            (true, "cp /a/%f %p")
        );
        let both = "[backup]\nwal_archive = \"/a\"\nrestore_command = \"cp\"\n";
        let error = Config::parse(both, Path::new("test.toml")).unwrap_err();
        assert!(error.to_string().contains("backup.wal_archive"), "{error}");
    }

    #[test]
    fn labels_are_one_short_line() {
        assert!(validate_label("nightly 2026-11-21T03:00:00Z").is_ok());
        assert!(validate_label("héllo wörld").is_ok());
        assert!(validate_label(&"x".repeat(MAX_LABEL_BYTES)).is_ok());
        let long = validate_label(&"x".repeat(MAX_LABEL_BYTES + 1)).unwrap_err();
        assert!(long.contains("1025 bytes"), "{long}");
        for bad in [
            "a\nSTART TIMELINE: 7",
            "a\rb",
            "tab\there",
            "nul\0",
            "esc\u{1b}[31m",
        ] {
            let message = validate_label(bad).unwrap_err();
            assert!(!message.contains('\n'), "one line: {message}");
        }
        let error = BackupConfig {
            label: "a\nb".into(),
            ..BackupConfig::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(error.key, "backup.label");
        let mut config = BackupConfig::default();
        let start = StartArgs {
            label: Some("a\nSTART TIMELINE: 7".into()),
            ..StartArgs::default()
        };
        let error = config
            .apply(&BackupArgs::default(), Some(&start), None)
            .unwrap_err();
        assert_eq!(error.key, "--label");
        assert!(
            error.message.contains("'\\n' at byte 1"),
            "{}",
            error.message
        );
    }

    #[test]
    fn long_labels_are_shortened_in_messages() {
        assert_eq!(shorten_label("short"), "\"short\"");
        let shown = shorten_label(&"y".repeat(1000));
        assert!(
            shown.len() < 90 && shown.ends_with("(1000 bytes)"),
            "{shown}"
        );
        assert_eq!(shorten_label("a\nb"), "\"a\\nb\"");
    }

    #[test]
    fn bad_overrides_name_the_flag() {
        let mut config = BackupConfig::default();
        let name = |name: &str| BackupArgs {
            name: Some(name.into()),
            ..BackupArgs::default()
        };
        let error = config.apply(&name("no spaces"), None, None).unwrap_err();
        assert_eq!(error.key, "--name");
        let table = BackupArgs {
            table: Some(String::new()),
            ..BackupArgs::default()
        };
        assert_eq!(
            config.apply(&table, None, None).unwrap_err(),
            invalid("--table", "must not be empty")
        );
        config.apply(&name("vol-2.data"), None, None).unwrap();
        assert_eq!(config.name, "vol-2.data");
    }

    #[test]
    fn timeouts_take_integers_and_durations() {
        let config = parse("[backup]\nstart_timeout = 0\nbackup_timeout = \"1h30m\"\n");
        assert_eq!(limit(config.start_timeout), None, "0 = no limit");
        assert_eq!(
            limit(config.backup_timeout),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            layered("", &[], &["--start-timeout", "0"]).start_timeout,
            secs(0)
        );
        let _one_at_a_time = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
        assert!(Pgpre::try_parse_from(["pgpre", "--start-timeout", "ten"]).is_err());
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("default").is_ok());
        assert!(validate_name("vol-2.data_x").is_ok());
        for bad in ["", "a b", "x'y", "ä", &"n".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
