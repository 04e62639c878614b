//! Remote storage settings of `pgback` under pg_back's key names (`upload`, `upload_prefix`,
//! `s3_*`, `b2_*`, `gcs_*`, `azure_*`, `sftp_*`), read strictly from TOML. Secrets may sit in a
//! configuration file (then the file must not be readable by others, see
//! [`RemoteSettings::secret_keys`]); never on the command line.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::flags::{layer, toggle};
use crate::secret::Secret;

/// Where files go, come from or are listed: pg_back's `none|s3|b2|gcs|azure|sftp`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// No remote storage.
    #[default]
    None,
    /// Amazon S3 or any S3-compatible service.
    S3,
    /// Backblaze B2, through its S3-compatible API.
    B2,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    Azure,
    /// A directory on an SSH server.
    Sftp,
}

impl StoreKind {
    /// The name used in settings, flags and messages.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::None => "none",
            StoreKind::S3 => "s3",
            StoreKind::B2 => "b2",
            StoreKind::Gcs => "gcs",
            StoreKind::Azure => "azure",
            StoreKind::Sftp => "sftp",
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A value that is not one of pg_back's store names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {value:?}: expected one of none, s3, b2, gcs, azure, sftp")]
pub struct InvalidStoreKind {
    /// The text given.
    pub value: String,
}

impl FromStr for StoreKind {
    type Err = InvalidStoreKind;

    fn from_str(s: &str) -> Result<StoreKind, InvalidStoreKind> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "none" => StoreKind::None,
            "s3" => StoreKind::S3,
            "b2" => StoreKind::B2,
            "gcs" => StoreKind::Gcs,
            "azure" => StoreKind::Azure,
            "sftp" => StoreKind::Sftp,
            _ => {
                return Err(InvalidStoreKind {
                    value: s.to_string(),
                })
            }
        })
    }
}

impl<'de> Deserialize<'de> for StoreKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StoreKind, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl Serialize for StoreKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// The default port of SSH.
pub const SSH_PORT: u16 = 22;

/// Remote storage settings: pg_back's keys, plus `b2_region` and `b2_endpoint` (B2 goes through
/// its S3-compatible API, which needs them). Suitable for a `[dump.remote]` table.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteSettings {
    /// Where finished files are uploaded.
    pub upload: StoreKind,
    /// Download from this store into the backup directory instead of dumping.
    pub download: StoreKind,
    /// List this store's files instead of dumping.
    pub list_remote: StoreKind,
    /// Prepended (with a `/`) to every remote name, on every backend.
    pub upload_prefix: String,
    /// Remove a local file once its upload is confirmed.
    #[serde(deserialize_with = "yes_no")]
    pub delete_uploaded: bool,
    /// Purge the remote files with the local purge rules.
    #[serde(deserialize_with = "yes_no")]
    pub purge_remote: bool,

    /// S3 region; empty = `AWS_REGION`, the profile's region, else `us-east-1`.
    pub s3_region: String,
    /// S3 bucket (required for s3).
    pub s3_bucket: String,
    /// S3-compatible endpoint (`host[:port]` or a URL); empty = AWS.
    pub s3_endpoint: String,
    /// Profile of the AWS shared config and credentials files.
    pub s3_profile: String,
    /// Access key id; its secret comes from `AWS_SECRET_ACCESS_KEY` or `s3_secret`.
    pub s3_key_id: String,
    /// Secret access key (configuration file only).
    #[serde(skip_serializing)]
    pub s3_secret: Option<Secret>,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted ones.
    #[serde(deserialize_with = "yes_no")]
    pub s3_force_path: bool,
    /// HTTPS for an endpoint given without a scheme.
    #[serde(deserialize_with = "yes_no")]
    pub s3_tls: bool,

    /// B2 bucket (required for b2).
    pub b2_bucket: String,
    /// B2 application key id; else `B2_APPLICATION_KEY_ID`.
    pub b2_key_id: String,
    /// B2 application key (configuration file only); else `B2_APPLICATION_KEY`.
    #[serde(skip_serializing)]
    pub b2_app_key: Option<Secret>,
    /// Path-style requests.
    #[serde(deserialize_with = "yes_no")]
    pub b2_force_path: bool,
    /// Parts of one file uploaded at once.
    pub b2_concurrent_connections: u32,
    /// B2 region of the bucket (`us-west-004`, ...): the endpoint is
    /// `https://s3.<region>.backblazeb2.com` unless `b2_endpoint` says otherwise.
    pub b2_region: String,
    /// B2 S3-compatible endpoint, overriding the one derived from `b2_region`.
    pub b2_endpoint: String,

    /// GCS bucket (required for gcs).
    pub gcs_bucket: String,
    /// GCS API base URL (an emulator); empty = Google's.
    pub gcs_endpoint: String,
    /// Service account or user credentials file; else `GOOGLE_APPLICATION_CREDENTIALS`.
    pub gcs_keyfile: String,

    /// Azure container (required for azure).
    pub azure_container: String,
    /// Storage account; else `AZURE_STORAGE_ACCOUNT`.
    pub azure_account: String,
    /// Blob endpoint: a domain (`blob.core.windows.net`, the account is prepended) or the
    /// account's URL (Azurite: `http://127.0.0.1:10000/devstoreaccount1`). Without an account, a
    /// URL carrying a SAS token.
    pub azure_endpoint: String,
    /// Shared key (configuration file only); else `AZURE_STORAGE_KEY`.
    #[serde(skip_serializing)]
    pub azure_key: Option<Secret>,

    /// SSH server.
    pub sftp_host: String,
    /// SSH port.
    #[serde(deserialize_with = "port")]
    pub sftp_port: u16,
    /// SSH user; empty = the current user.
    pub sftp_user: String,
    /// Remote directory holding the files (relative to the login directory unless absolute).
    pub sftp_directory: String,
    /// Private key file (mode 0600 or stricter); its passphrase is `PGBK_SSH_PASS`.
    pub sftp_identity: String,
    /// Accept a host key that `known_hosts` does not hold.
    #[serde(deserialize_with = "yes_no")]
    pub sftp_ignore_hostkey: bool,
    /// Password (configuration file only); else `PGBK_SSH_PASS`.
    #[serde(skip_serializing)]
    pub sftp_password: Option<Secret>,
}

impl Default for RemoteSettings {
    fn default() -> Self {
        RemoteSettings {
            upload: StoreKind::None,
            download: StoreKind::None,
            list_remote: StoreKind::None,
            upload_prefix: String::new(),
            delete_uploaded: false,
            purge_remote: false,
            s3_region: String::new(),
            s3_bucket: String::new(),
            s3_endpoint: String::new(),
            s3_profile: String::new(),
            s3_key_id: String::new(),
            s3_secret: None,
            s3_force_path: false,
            s3_tls: true,
            b2_bucket: String::new(),
            b2_key_id: String::new(),
            b2_app_key: None,
            b2_force_path: false,
            b2_concurrent_connections: 5,
            b2_region: String::new(),
            b2_endpoint: String::new(),
            gcs_bucket: String::new(),
            gcs_endpoint: String::new(),
            gcs_keyfile: String::new(),
            azure_container: String::new(),
            azure_account: String::new(),
            azure_endpoint: "blob.core.windows.net".into(),
            azure_key: None,
            sftp_host: String::new(),
            sftp_port: SSH_PORT,
            sftp_user: String::new(),
            sftp_directory: String::new(),
            sftp_identity: String::new(),
            sftp_ignore_hostkey: false,
            sftp_password: None,
        }
    }
}

impl RemoteSettings {
    /// The keys that hold a secret in these settings: when any came from a configuration file,
    /// that file must not be readable by others (`crate::secret::check_config_file`).
    pub fn secret_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let held = [
            ("s3_secret", &self.s3_secret),
            ("b2_app_key", &self.b2_app_key),
            ("azure_key", &self.azure_key),
            ("sftp_password", &self.sftp_password),
        ];
        for (key, value) in held {
            if value.as_ref().is_some_and(|s| !s.is_empty()) {
                keys.push(key);
            }
        }
        if self.azure_endpoint.contains('?') {
            // A SAS URL: its query is the token.
            keys.push("azure_endpoint");
        }
        keys
    }
}

/// pg_back's remote flags (secrets excepted: they are refused on the command line), each also
/// from a `PGBACK_<KEY>` variable; `None` = not given. Laid over `[dump.remote]` by
/// [`RemoteSettings::apply_flags`]. Booleans take pg_back's `--flag`, `--flag=yes|no`.
// The same settings for each named flag: clippy reads the repeated function as a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(Clone, Debug, Default, PartialEq, clap::Args)]
#[command(
    mut_arg("delete_uploaded", toggle),
    mut_arg("purge_remote", toggle),
    mut_arg("s3_force_path", toggle),
    mut_arg("s3_tls", toggle),
    mut_arg("b2_force_path", toggle),
    mut_arg("sftp_ignore_hostkey", toggle)
)]
pub struct RemoteFlags {
    /// Upload each finished file: none, s3, b2, gcs, azure, sftp [config: dump.remote.upload]
    #[arg(long, env = "PGBACK_UPLOAD", value_name = "STORE")]
    pub upload: Option<StoreKind>,
    /// Download the files matching the DBNAME globs into -b DIR instead of dumping
    #[arg(long, value_name = "STORE")]
    pub download: Option<StoreKind>,
    /// List the remote files matching the DBNAME globs instead of dumping
    #[arg(long, value_name = "STORE")]
    pub list_remote: Option<StoreKind>,
    /// Prefix of every remote name [config: dump.remote.upload_prefix]
    #[arg(long, env = "PGBACK_UPLOAD_PREFIX", value_name = "PREFIX")]
    pub upload_prefix: Option<String>,
    /// Remove local files once uploaded [config: dump.remote.delete_uploaded]
    #[arg(long, env = "PGBACK_DELETE_UPLOADED")]
    pub delete_uploaded: Option<bool>,
    /// Purge remote files by the local rules [config: dump.remote.purge_remote]
    #[arg(long, env = "PGBACK_PURGE_REMOTE")]
    pub purge_remote: Option<bool>,
    /// S3 region [config: dump.remote.s3_region]
    #[arg(long, env = "PGBACK_S3_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,
    /// S3 bucket [config: dump.remote.s3_bucket]
    #[arg(long, env = "PGBACK_S3_BUCKET", value_name = "BUCKET")]
    pub s3_bucket: Option<String>,
    /// S3-compatible endpoint [config: dump.remote.s3_endpoint]
    #[arg(long, env = "PGBACK_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// AWS profile of the shared config [config: dump.remote.s3_profile]
    #[arg(long, env = "PGBACK_S3_PROFILE", value_name = "NAME")]
    pub s3_profile: Option<String>,
    /// Access key id (the secret: AWS_SECRET_ACCESS_KEY) [config: dump.remote.s3_key_id]
    #[arg(long, env = "PGBACK_S3_KEY_ID", value_name = "ID")]
    pub s3_key_id: Option<String>,
    /// Path-style S3 requests [config: dump.remote.s3_force_path]
    #[arg(long, env = "PGBACK_S3_FORCE_PATH")]
    pub s3_force_path: Option<bool>,
    /// HTTPS for an endpoint without a scheme [config: dump.remote.s3_tls]
    #[arg(long, env = "PGBACK_S3_TLS")]
    pub s3_tls: Option<bool>,
    /// B2 bucket [config: dump.remote.b2_bucket]
    #[arg(long, env = "PGBACK_B2_BUCKET", value_name = "BUCKET")]
    pub b2_bucket: Option<String>,
    /// B2 key id (the key: B2_APPLICATION_KEY) [config: dump.remote.b2_key_id]
    #[arg(long, env = "PGBACK_B2_KEY_ID", value_name = "ID")]
    pub b2_key_id: Option<String>,
    /// Path-style B2 requests [config: dump.remote.b2_force_path]
    #[arg(long, env = "PGBACK_B2_FORCE_PATH")]
    pub b2_force_path: Option<bool>,
    /// Parts of one file sent at once to B2 [config: dump.remote.b2_concurrent_connections]
    #[arg(
        long,
        env = "PGBACK_B2_CONCURRENT_CONNECTIONS",
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub b2_concurrent_connections: Option<u32>,
    /// B2 region [config: dump.remote.b2_region]
    #[arg(long, env = "PGBACK_B2_REGION", value_name = "REGION")]
    pub b2_region: Option<String>,
    /// B2 S3-compatible endpoint [config: dump.remote.b2_endpoint]
    #[arg(long, env = "PGBACK_B2_ENDPOINT", value_name = "URL")]
    pub b2_endpoint: Option<String>,
    /// GCS bucket [config: dump.remote.gcs_bucket]
    #[arg(long, env = "PGBACK_GCS_BUCKET", value_name = "BUCKET")]
    pub gcs_bucket: Option<String>,
    /// GCS API URL [config: dump.remote.gcs_endpoint]
    #[arg(long, env = "PGBACK_GCS_ENDPOINT", value_name = "URL")]
    pub gcs_endpoint: Option<String>,
    /// GCS credentials file [config: dump.remote.gcs_keyfile]
    #[arg(long, env = "PGBACK_GCS_KEYFILE", value_name = "FILE")]
    pub gcs_keyfile: Option<String>,
    /// Azure container [config: dump.remote.azure_container]
    #[arg(long, env = "PGBACK_AZURE_CONTAINER", value_name = "NAME")]
    pub azure_container: Option<String>,
    /// Azure storage account [config: dump.remote.azure_account]
    #[arg(long, env = "PGBACK_AZURE_ACCOUNT", value_name = "NAME")]
    pub azure_account: Option<String>,
    /// Azure blob endpoint [config: dump.remote.azure_endpoint]
    #[arg(long, env = "PGBACK_AZURE_ENDPOINT", value_name = "URL")]
    pub azure_endpoint: Option<String>,
    /// SSH server [config: dump.remote.sftp_host]
    #[arg(long, env = "PGBACK_SFTP_HOST", value_name = "HOST")]
    pub sftp_host: Option<String>,
    /// SSH port [config: dump.remote.sftp_port]
    #[arg(
        long,
        env = "PGBACK_SFTP_PORT",
        value_name = "PORT",
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub sftp_port: Option<u16>,
    /// SSH user [config: dump.remote.sftp_user]
    #[arg(long, env = "PGBACK_SFTP_USER", value_name = "USER")]
    pub sftp_user: Option<String>,
    /// Remote directory [config: dump.remote.sftp_directory]
    #[arg(long, env = "PGBACK_SFTP_DIRECTORY", value_name = "DIR")]
    pub sftp_directory: Option<String>,
    /// Private key file (passphrase: PGBK_SSH_PASS) [config: dump.remote.sftp_identity]
    #[arg(long, env = "PGBACK_SFTP_IDENTITY", value_name = "FILE")]
    pub sftp_identity: Option<String>,
    /// Accept a host key known_hosts lacks [config: dump.remote.sftp_ignore_hostkey]
    #[arg(long, env = "PGBACK_SFTP_IGNORE_HOSTKEY")]
    pub sftp_ignore_hostkey: Option<bool>,
}

impl RemoteSettings {
    /// Lays the flags (and variables) actually given over these settings.
    pub fn apply_flags(&mut self, flags: &RemoteFlags) {
        layer!(self, flags;
            upload,
            download,
            list_remote,
            upload_prefix,
            delete_uploaded,
            purge_remote,
            s3_region,
            s3_bucket,
            s3_endpoint,
            s3_profile,
            s3_key_id,
            s3_force_path,
            s3_tls,
            b2_bucket,
            b2_key_id,
            b2_force_path,
            b2_concurrent_connections,
            b2_region,
            b2_endpoint,
            gcs_bucket,
            gcs_endpoint,
            gcs_keyfile,
            azure_container,
            azure_account,
            azure_endpoint,
            sftp_host,
            sftp_port,
            sftp_user,
            sftp_directory,
            sftp_identity,
            sftp_ignore_hostkey
        );
    }
}

/// pg_back's booleans: TOML `true`/`false` or the strings `yes`/`no` (and the other spellings
/// of [`crate::config::values::parse_bool`]).
fn yes_no<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct YesNo;
    impl Visitor<'_> for YesNo {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("true, false, \"yes\" or \"no\"")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            crate::config::values::parse_bool(v).map_err(E::custom)
        }
    }
    d.deserialize_any(YesNo)
}

/// A TCP port as an integer or a string (pg_back keeps it as text).
fn port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    struct Port;
    impl Visitor<'_> for Port {
        type Value = u16;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a TCP port from 1 to 65535")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u16, E> {
            u16::try_from(v)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| E::custom(format!("invalid port {v}: expected 1 to 65535")))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u16, E> {
            self.visit_i64(i64::try_from(v).unwrap_or(-1))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u16, E> {
            if v.trim().is_empty() {
                return Ok(SSH_PORT);
            }
            match v.trim().parse::<i64>() {
                Ok(n) => self.visit_i64(n),
                Err(_) => Err(E::custom(format!(
                    "invalid port {v:?}: expected 1 to 65535"
                ))),
            }
        }
    }
    d.deserialize_any(Port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_back_keys_parse_with_yes_no_and_text_ports() {
        let text = r#"
            upload = "s3"
            upload_prefix = "nightly"
            delete_uploaded = true
            s3_bucket = "b"
            s3_force_path = "yes"
            s3_tls = "no"
            sftp_port = "2222"
            b2_concurrent_connections = 3
            azure_key = "k3y"
        "#;
        let settings: RemoteSettings = toml::from_str(text).unwrap();
        assert_eq!(settings.upload, StoreKind::S3);
        assert_eq!(settings.download, StoreKind::None);
        assert!(settings.s3_force_path && !settings.s3_tls);
        assert_eq!(settings.sftp_port, 2222);
        assert_eq!(settings.b2_concurrent_connections, 3);
        assert_eq!(settings.secret_keys(), vec!["azure_key"]);
        assert!(!format!("{settings:?}").contains("k3y"));
        let written = toml::to_string(&settings).unwrap();
        assert!(!written.contains("k3y") && !written.contains("azure_key"));
    }

    #[test]
    fn bad_values_are_errors() {
        for bad in [
            "upload = \"ftp\"",
            "s3_tls = \"maybe\"",
            "sftp_port = 0",
            "sftp_port = \"ssh\"",
            "s3_bucket_name = \"x\"",
        ] {
            assert!(toml::from_str::<RemoteSettings>(bad).is_err(), "{bad}");
        }
        assert_eq!("AZURE".parse::<StoreKind>(), Ok(StoreKind::Azure));
    }
}
