//! `[base]` configuration of `pgbase`: its own keys, and the one place where they meet the
//! environment (`PGBASE_*`) and the command line ([`BaseConfig::layered`]). Encryption and
//! upload are pgback's `[dump.encryption]` and `[dump.remote]`, read unchanged.

use serde::Deserialize;

use super::flags::layer;
use crate::args::Checkpoint;
use crate::values::{text, text_opt, ChecksumAlgorithm, Keep, PurgeInterval};

/// pg_basebackup's `-F`.
#[derive(clap::ValueEnum, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseFormat {
    /// A data directory.
    #[value(name = "p", alias = "plain")]
    #[serde(rename = "p", alias = "plain")]
    Plain,
    /// Tar files.
    #[value(name = "t", alias = "tar")]
    #[serde(rename = "t", alias = "tar")]
    Tar,
}

/// pg_basebackup's `-X`.
#[derive(clap::ValueEnum, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WalMethod {
    /// Streamed over a second connection from a temporary slot.
    Stream,
    /// Included by the server at the end of the main archive.
    Fetch,
    /// Not included: restore it from the WAL archive.
    None,
}

/// `[base]`: what `pgbase` reads from the configuration file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BaseConfig {
    /// `p` (a data directory) or `t` (tar files).
    pub format: BaseFormat,
    /// `stream`, `fetch` or `none`.
    pub wal_method: WalMethod,
    /// The start's checkpoint: `fast` or `spread`.
    pub checkpoint: Checkpoint,
    /// `-Z`: `[client-|server-]METHOD[:LEVEL]`; empty = none (checked by pgbase).
    pub compress: String,
    /// Checksum files beside each file (tar format).
    #[serde(with = "text")]
    pub checksum_algorithm: ChecksumAlgorithm,
    /// Age past which the other backups beside this one are purged; unset = no purge.
    #[serde(with = "text_opt")]
    pub purge_older_than: Option<PurgeInterval>,
    /// Newest backups kept whatever their age; `all` disables purge.
    #[serde(with = "text")]
    pub purge_min_keep: Keep,
}

impl Default for BaseConfig {
    fn default() -> Self {
        BaseConfig {
            format: BaseFormat::Plain,
            wal_method: WalMethod::Stream,
            checkpoint: Checkpoint::Spread,
            compress: String::new(),
            checksum_algorithm: ChecksumAlgorithm::Sha256,
            purge_older_than: None,
            purge_min_keep: Keep::default(),
        }
    }
}

impl BaseConfig {
    /// `[base]` as a run uses it: the defaults and the file (`self`) under the environment and
    /// the command line (`flags`, where clap put a flag over its `PGBASE_*` variable).
    pub fn layered(mut self, flags: &BaseFlags) -> BaseConfig {
        layer!(self, flags;
            format,
            wal_method,
            checkpoint,
            compress,
            checksum_algorithm,
            purge_min_keep,
        );
        if flags.purge_older_than.is_some() {
            self.purge_older_than = flags.purge_older_than;
        }
        self
    }
}

/// The flags of `pgbase` that override `[base]`; each also comes from a `PGBASE_<KEY>`
/// variable named after its key. `None` = neither given.
#[derive(Clone, Debug, Default, PartialEq, clap::Args)]
pub struct BaseFlags {
    /// Output format: p (a data directory) or t (tar files) [config: base.format] [default: p]
    #[arg(short = 'F', long, env = "PGBASE_FORMAT", value_enum)]
    pub format: Option<BaseFormat>,
    /// How the backup gets its WAL: stream (a second connection from a temporary slot),
    /// fetch (in the main archive at the end), none (from your WAL archive) [config:
    /// base.wal_method] [default: stream]
    #[arg(short = 'X', long, env = "PGBASE_WAL_METHOD", value_enum)]
    pub wal_method: Option<WalMethod>,
    /// The start's checkpoint: fast (immediate) or spread [config: base.checkpoint] [default:
    /// spread]
    #[arg(short = 'c', long, env = "PGBASE_CHECKPOINT", value_enum)]
    pub checkpoint: Option<Checkpoint>,
    /// Compress the tar files (-F t): [client-|server-]METHOD[:LEVEL] with gzip, lz4, zstd or
    /// none, or a bare gzip LEVEL; server- needs PostgreSQL 15+ [config: base.compress]
    #[arg(short = 'Z', long, env = "PGBASE_COMPRESS", value_name = "METHOD")]
    pub compress: Option<String>,
    /// Checksum file written beside each tar file and the manifest, as pgback writes them
    /// (sha1, sha224, sha256, sha384, sha512, none) [config: base.checksum_algorithm]
    /// [default: sha256]
    #[arg(
        long = "checksum-algo",
        env = "PGBASE_CHECKSUM_ALGORITHM",
        value_name = "ALGORITHM"
    )]
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    /// After a complete backup, delete the other tar backups beside it (in the parent of -D,
    /// and remotely with --purge-remote) older than DAYS, or a duration like 12h [config:
    /// base.purge_older_than]
    #[arg(long, env = "PGBASE_PURGE_OLDER_THAN", value_name = "DAYS")]
    pub purge_older_than: Option<PurgeInterval>,
    /// Newest backups always kept by the purge; `all` = no purge [config:
    /// base.purge_min_keep]
    #[arg(
        long,
        env = "PGBASE_PURGE_MIN_KEEP",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub purge_min_keep: Option<Keep>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    #[test]
    fn file_then_flags() {
        let text = "[base]\nformat = \"t\"\ncompress = \"zstd:3\"\npurge_older_than = \"12h\"\n";
        let config = Config::parse(text, Path::new("t.toml")).unwrap().base;
        assert_eq!(config.format, BaseFormat::Tar);
        assert_eq!(config.wal_method, WalMethod::Stream);
        assert_eq!(
            config.purge_older_than,
            Some(PurgeInterval(std::time::Duration::from_secs(12 * 3600)))
        );
        let flags = BaseFlags {
            format: Some(BaseFormat::Plain),
            purge_min_keep: Some(Keep::Newest(2)),
            ..BaseFlags::default()
        };
        let layered = config.layered(&flags);
        assert_eq!(layered.format, BaseFormat::Plain);
        assert_eq!(layered.compress, "zstd:3");
        assert_eq!(layered.purge_min_keep, Keep::Newest(2));
        assert!(Config::parse("[base]\nformat = \"x\"\n", Path::new("t.toml")).is_err());
        assert!(Config::parse("[base]\nzstd = 1\n", Path::new("t.toml")).is_err());
    }
}
