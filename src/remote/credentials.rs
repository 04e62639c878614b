//! Where each backend's secrets come from, following each cloud's conventions: the process
//! environment (through [`Environment`], so tests need not touch it), AWS shared config and
//! credentials files with profiles, and the configuration file's secret keys. Never argv.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::StoreKind;
use crate::secret::Secret;

use super::error::RemoteError;

/// The environment the credentials are read from.
pub trait Environment: Send + Sync {
    /// A variable's value; `None` when unset, empty or not UTF-8.
    fn var(&self, name: &str) -> Option<String>;

    /// A variable holding a secret.
    fn secret(&self, name: &str) -> Option<Secret> {
        self.var(name).map(Secret::new)
    }

    /// The home directory (`~/.aws`, `~/.ssh`).
    fn home(&self) -> Option<PathBuf> {
        self.var("HOME").map(PathBuf::from)
    }
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }

    fn secret(&self, name: &str) -> Option<Secret> {
        Secret::from_env(name).ok().flatten()
    }
}

/// Static S3 credentials.
#[derive(Clone, Debug)]
pub struct AwsKeys {
    /// Access key id (not a secret; shown in messages).
    pub key_id: String,
    /// Secret access key.
    pub secret: Secret,
    /// Session token of temporary credentials.
    pub token: Option<Secret>,
    /// Where they came from, for messages: `s3_key_id`, `AWS_ACCESS_KEY_ID`, `profile prod`.
    pub origin: String,
}

/// S3 credentials and the region they imply.
#[derive(Clone, Debug, Default)]
pub struct AwsCredentials {
    /// Static keys; `None` leaves it to the instance's role (web identity, ECS, EC2 metadata).
    pub keys: Option<AwsKeys>,
    /// Region from `AWS_REGION`/`AWS_DEFAULT_REGION` or the profile, when the settings have none.
    pub region: Option<String>,
}

/// Resolves S3 credentials, first match wins: `s3_key_id` (secret from `s3_secret` or
/// `AWS_SECRET_ACCESS_KEY`), the `s3_profile` profile, `AWS_ACCESS_KEY_ID` with
/// `AWS_SECRET_ACCESS_KEY`, the `AWS_PROFILE` (else `default`) profile of the shared files.
pub fn aws_credentials(
    key_id: &str,
    config_secret: Option<&Secret>,
    profile: &str,
    env: &dyn Environment,
) -> Result<AwsCredentials, RemoteError> {
    let region = env
        .var("AWS_REGION")
        .or_else(|| env.var("AWS_DEFAULT_REGION"));
    if !key_id.is_empty() {
        let secret = config_secret
            .filter(|s| !s.is_empty())
            .cloned()
            .or_else(|| env.secret("AWS_SECRET_ACCESS_KEY"))
            .ok_or_else(|| RemoteError::Settings {
                store: StoreKind::S3,
                problem: format!("s3_key_id is {key_id} but no secret access key is set"),
                hint: Some(
                    "put it in AWS_SECRET_ACCESS_KEY, or s3_secret in a configuration file \
                     readable by its owner only"
                        .into(),
                ),
            })?;
        let keys = AwsKeys {
            key_id: key_id.to_string(),
            secret,
            token: env.secret("AWS_SESSION_TOKEN"),
            origin: "s3_key_id".into(),
        };
        return Ok(AwsCredentials {
            keys: Some(keys),
            region,
        });
    }
    if !profile.is_empty() {
        return profile_credentials(profile, true, region, env);
    }
    if let (Some(key_id), Some(secret)) = (
        env.var("AWS_ACCESS_KEY_ID"),
        env.secret("AWS_SECRET_ACCESS_KEY"),
    ) {
        let keys = AwsKeys {
            key_id,
            secret,
            token: env.secret("AWS_SESSION_TOKEN"),
            origin: "AWS_ACCESS_KEY_ID".into(),
        };
        return Ok(AwsCredentials {
            keys: Some(keys),
            region,
        });
    }
    match env.var("AWS_PROFILE") {
        Some(profile) => profile_credentials(&profile, true, region, env),
        None => profile_credentials("default", false, region, env),
    }
}

/// Reads one profile from the shared credentials file (`[name]`) and the shared config file
/// (`[profile name]`, or `[default]`); the credentials file wins for keys.
fn profile_credentials(
    profile: &str,
    required: bool,
    region: Option<String>,
    env: &dyn Environment,
) -> Result<AwsCredentials, RemoteError> {
    let home = env.home();
    let in_home = |rel: &str| home.as_ref().map(|h| h.join(rel));
    let credentials_file = env
        .var("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| in_home(".aws/credentials"));
    let config_file = env
        .var("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| in_home(".aws/config"));
    let config_section = if profile == "default" {
        "default".to_string()
    } else {
        format!("profile {profile}")
    };
    let mut values = BTreeMap::new();
    for (file, section) in [
        (config_file.as_deref(), config_section.as_str()),
        (credentials_file.as_deref(), profile),
    ] {
        if let Some(file) = file {
            values.extend(read_ini_section(file, section)?);
        }
    }
    let region = region.or_else(|| values.remove("region"));
    let key_id = values.remove("aws_access_key_id");
    let secret = values.remove("aws_secret_access_key").map(Secret::new);
    let token = values.remove("aws_session_token").map(Secret::new);
    match (key_id, secret) {
        (Some(key_id), Some(secret)) => Ok(AwsCredentials {
            keys: Some(AwsKeys {
                key_id,
                secret,
                token,
                origin: format!("profile {profile}"),
            }),
            region,
        }),
        _ if required => Err(RemoteError::Settings {
            store: StoreKind::S3,
            problem: format!(
                "AWS profile {profile:?} has no aws_access_key_id and aws_secret_access_key"
            ),
            hint: Some(format!(
                "add them to [{profile}] in {} (or AWS_SHARED_CREDENTIALS_FILE)",
                credentials_file
                    .as_deref()
                    .map_or("~/.aws/credentials".into(), |p| p.display().to_string())
            )),
        }),
        _ => Ok(AwsCredentials { keys: None, region }),
    }
}

/// The `key = value` pairs of `[section]` in an INI file; a missing file has none.
fn read_ini_section(path: &Path, section: &str) -> Result<BTreeMap<String, String>, RemoteError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(RemoteError::Settings {
                store: StoreKind::S3,
                problem: format!("cannot read {}: {e}", path.display()),
                hint: None,
            })
        }
    };
    Ok(ini_section(&text, section))
}

/// Parses `[section]` out of INI text (AWS's shared files: `#`/`;` comments, `key = value`).
fn ini_section(text: &str, section: &str) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.split_whitespace().collect::<Vec<_>>().join(" ") == section;
            continue;
        }
        if inside {
            if let Some((key, value)) = line.split_once('=') {
                values.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
    }
    values
}

/// B2 application key id and key: settings first, then Backblaze's own variables
/// `B2_APPLICATION_KEY_ID` and `B2_APPLICATION_KEY`.
pub fn b2_keys(
    key_id: &str,
    config_key: Option<&Secret>,
    env: &dyn Environment,
) -> Result<AwsKeys, RemoteError> {
    let (key_id, origin) = if key_id.is_empty() {
        (env.var("B2_APPLICATION_KEY_ID"), "B2_APPLICATION_KEY_ID")
    } else {
        (Some(key_id.to_string()), "b2_key_id")
    };
    let missing = |what: &str, var: &str, key: &str| RemoteError::Settings {
        store: StoreKind::B2,
        problem: format!("no {what}"),
        hint: Some(format!(
            "set {var}, or {key} in a configuration file readable by its owner only"
        )),
    };
    let key_id = key_id.ok_or_else(|| missing("key id", "B2_APPLICATION_KEY_ID", "b2_key_id"))?;
    let secret = config_key
        .filter(|s| !s.is_empty())
        .cloned()
        .or_else(|| env.secret("B2_APPLICATION_KEY"))
        .ok_or_else(|| missing("application key", "B2_APPLICATION_KEY", "b2_app_key"))?;
    Ok(AwsKeys {
        key_id,
        secret,
        token: None,
        origin: origin.into(),
    })
}

/// How to authenticate to Azure.
#[derive(Clone, Debug)]
pub enum AzureAuth {
    /// Shared key of the account.
    SharedKey(Secret),
    /// A SAS token (the query string, without `?`).
    Sas(Secret),
}

/// Azure account and authentication: `azure_account` or `AZURE_STORAGE_ACCOUNT`, with
/// `azure_key`, `AZURE_STORAGE_KEY` or `AZURE_STORAGE_SAS_TOKEN`.
pub fn azure_auth(
    account: &str,
    config_key: Option<&Secret>,
    env: &dyn Environment,
) -> Result<(Option<String>, Option<AzureAuth>), RemoteError> {
    let account = Some(account.to_string())
        .filter(|a| !a.is_empty())
        .or_else(|| env.var("AZURE_STORAGE_ACCOUNT"));
    let auth = config_key
        .filter(|s| !s.is_empty())
        .cloned()
        .or_else(|| env.secret("AZURE_STORAGE_KEY"))
        .map(AzureAuth::SharedKey)
        .or_else(|| {
            env.secret("AZURE_STORAGE_SAS_TOKEN").map(|sas| {
                let token = sas.expose().trim_start_matches('?').to_string();
                AzureAuth::Sas(Secret::new(token))
            })
        });
    Ok((account, auth))
}

/// The GCS credentials file: `gcs_keyfile`, else `GOOGLE_APPLICATION_CREDENTIALS`.
pub fn gcs_keyfile(keyfile: &str, env: &dyn Environment) -> Option<PathBuf> {
    Some(keyfile.to_string())
        .filter(|k| !k.is_empty())
        .or_else(|| env.var("GOOGLE_APPLICATION_CREDENTIALS"))
        .map(|k| expand_home(&k, env))
}

/// `~/x` made absolute with the environment's home directory.
pub fn expand_home(path: &str, env: &dyn Environment) -> PathBuf {
    match (path.strip_prefix("~/"), env.home()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Vars(BTreeMap<&'static str, String>);

    impl Environment for Vars {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    fn vars(pairs: &[(&'static str, &str)]) -> Vars {
        Vars(pairs.iter().map(|(k, v)| (*k, v.to_string())).collect())
    }

    #[test]
    fn ini_sections_and_comments() {
        let text = "[default]\naws_access_key_id = A\n# c\n[profile  prod]\nregion=eu-west-1\n\
                    ; x\naws_secret_access_key = S = 2\n";
        assert_eq!(ini_section(text, "default")["aws_access_key_id"], "A");
        let prod = ini_section(text, "profile prod");
        assert_eq!(prod["region"], "eu-west-1");
        assert_eq!(prod["aws_secret_access_key"], "S = 2");
        assert!(ini_section(text, "prod").is_empty());
    }

    #[test]
    fn aws_order_key_id_then_profile_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials");
        std::fs::write(
            &creds,
            "[prod]\naws_access_key_id=PK\naws_secret_access_key=PS\n[default]\n\
             aws_access_key_id=DK\naws_secret_access_key=DS\n",
        )
        .unwrap();
        let config = dir.path().join("config");
        std::fs::write(&config, "[profile prod]\nregion = eu-north-1\n").unwrap();
        let files = [
            ("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap()),
            ("AWS_CONFIG_FILE", config.to_str().unwrap()),
        ];
        let env = vars(&[files[0], files[1], ("AWS_SECRET_ACCESS_KEY", "ES")]);
        let c = aws_credentials("KID", None, "prod", &env).unwrap();
        let keys = c.keys.unwrap();
        assert_eq!((keys.key_id.as_str(), keys.secret.expose()), ("KID", "ES"));

        let c = aws_credentials("", None, "prod", &env).unwrap();
        assert_eq!(c.region.as_deref(), Some("eu-north-1"));
        assert_eq!(c.keys.unwrap().secret.expose(), "PS");

        let key_id = |env: &Vars| {
            aws_credentials("", None, "", env)
                .unwrap()
                .keys
                .unwrap()
                .key_id
        };
        let env = vars(&[
            files[0],
            files[1],
            ("AWS_ACCESS_KEY_ID", "EK"),
            ("AWS_SECRET_ACCESS_KEY", "ES"),
        ]);
        assert_eq!(key_id(&env), "EK");
        let env = vars(&[files[0], files[1]]);
        assert_eq!(key_id(&env), "DK");
        let missing = aws_credentials("", None, "nope", &env).unwrap_err();
        assert!(missing.to_string().contains("\"nope\""), "{missing}");

        let env = vars(&[]);
        assert!(aws_credentials("KID", None, "", &env).is_err());
        assert!(aws_credentials("", None, "", &env).unwrap().keys.is_none());
    }

    #[test]
    fn b2_and_azure_from_their_variables() {
        let env = vars(&[
            ("B2_APPLICATION_KEY_ID", "bk"),
            ("B2_APPLICATION_KEY", "bs"),
            ("AZURE_STORAGE_ACCOUNT", "acct"),
            ("AZURE_STORAGE_SAS_TOKEN", "?sv=1&sig=x"),
        ]);
        let keys = b2_keys("", None, &env).unwrap();
        assert_eq!((keys.key_id.as_str(), keys.secret.expose()), ("bk", "bs"));
        let (account, auth) = azure_auth("", None, &env).unwrap();
        assert_eq!(account.as_deref(), Some("acct"));
        assert!(matches!(auth, Some(AzureAuth::Sas(s)) if s.expose() == "sv=1&sig=x"));
        assert!(b2_keys("", None, &vars(&[])).is_err());
    }
}
