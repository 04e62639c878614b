//! `[dump.encryption]`: pg_back's encryption keys (`encrypt`, `encrypt_keep_src`,
//! `cipher_public_key`, `cipher_pass`, `cipher_private_key`), their flags (`--encrypt`,
//! `--no-encrypt`, `--encrypt-keep-src`, `--no-encrypt-keep-src`, `--cipher-public-key`,
//! `--cipher-identity`) laid over them by [`EncryptionConfig::apply_flags`], and the keys a run
//! encrypts or decrypts with. Secrets never come from the command line: the passphrase comes
//! from `PGBK_CIPHER_PASS` or `cipher_pass` in a configuration file others cannot read, the
//! private key from an identity file only its owner can read.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::flags::{either, negatable};
use crate::crypt::keys::config_origin;
use crate::crypt::{CryptError, DecryptKey, EncryptKey};
use crate::exit::{ExitStatus, Failure};
use crate::secret::{check_config_file, Secret, SecretError};

/// pg_back's variable for the passphrase; removed from pgback's environment once read, so
/// that pg_dump and the hooks never inherit it.
pub const PASSPHRASE_VAR: &str = "PGBK_CIPHER_PASS";

/// The prefix of an age identity, which tells a key written into `cipher_private_key` from the
/// path of an identity file.
const IDENTITY_PREFIX: &str = "AGE-SECRET-KEY-1";

/// `[dump.encryption]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptionConfig {
    /// Encrypt every file written (age).
    pub encrypt: bool,
    /// Keep the plaintext beside the encrypted files (both written from the one stream).
    pub encrypt_keep_src: bool,
    /// age public keys (`age1...`) separated by commas or blanks; when set, files are encrypted
    /// to them instead of with a passphrase.
    pub cipher_public_key: String,
    /// The passphrase, in a configuration file not readable by others; `PGBK_CIPHER_PASS` is
    /// read when this is not set. Never written back out (`--convert-pg-back-config`).
    #[serde(skip_serializing)]
    pub cipher_pass: Option<Secret>,
    /// For `--decrypt`: the path of an identity file (`age-keygen -o`, readable by its owner
    /// only), or, as pg_back has it, the identity itself (`AGE-SECRET-KEY-1...`), then in a
    /// configuration file not readable by others.
    pub cipher_private_key: String,
}

impl PartialEq for EncryptionConfig {
    fn eq(&self, other: &Self) -> bool {
        let pass = |c: &Self| c.cipher_pass.as_ref().map(|s| s.expose().to_owned());
        self.encrypt == other.encrypt
            && self.encrypt_keep_src == other.encrypt_keep_src
            && self.cipher_public_key == other.cipher_public_key
            && self.cipher_private_key == other.cipher_private_key
            && pass(self) == pass(other)
    }
}

/// The flags of `pgback` that override `[dump.encryption]`; `None` = not given. Each also has a
/// `PGBACK_<KEY>` variable. There is no flag for a secret: see `dump::secret_flags`.
#[derive(Clone, Debug, Default, PartialEq, clap::Args)]
#[command(
    mut_arg("encrypt", |arg| negatable(arg, "PGBACK_ENCRYPT")),
    mut_arg("encrypt_keep_src", |arg| negatable(arg, "PGBACK_ENCRYPT_KEEP_SRC"))
)]
pub struct EncryptionFlags {
    /// Encrypt every file written, with age [config: dump.encryption.encrypt] [env:
    /// PGBACK_ENCRYPT]
    #[arg(long, overrides_with = "no_encrypt")]
    pub encrypt: Option<bool>,
    /// Do not encrypt
    #[arg(long)]
    pub no_encrypt: bool,
    /// Keep the plaintext files too [config: dump.encryption.encrypt_keep_src] [env:
    /// PGBACK_ENCRYPT_KEEP_SRC]
    #[arg(long, overrides_with = "no_encrypt_keep_src")]
    pub encrypt_keep_src: Option<bool>,
    /// Do not keep the plaintext files
    #[arg(long)]
    pub no_encrypt_keep_src: bool,
    /// age public keys (age1...) to encrypt to, comma-separated; without one, the passphrase
    /// of PGBK_CIPHER_PASS is used [config: dump.encryption.cipher_public_key]
    #[arg(long, env = "PGBACK_CIPHER_PUBLIC_KEY", value_name = "KEYS")]
    pub cipher_public_key: Option<String>,
    /// Identity file (AGE-SECRET-KEY-1..., mode 0600) for --decrypt [config:
    /// dump.encryption.cipher_private_key]
    #[arg(long, env = "PGBACK_CIPHER_IDENTITY", value_name = "FILE")]
    pub cipher_identity: Option<PathBuf>,
}

/// The encryption settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    /// Encrypting (or decrypting) without any key.
    #[error("{action} needs a key: a passphrase or {what}")]
    NoKey {
        /// `--encrypt` or `--decrypt`.
        action: &'static str,
        /// The other kind of key it takes.
        what: &'static str,
    },
    /// Both a passphrase and a key in the configuration: which one is meant?
    #[error("{0} and cipher_pass are both set: give one of them")]
    BothKeys(&'static str),
    /// `--encrypt` with `--decrypt`.
    #[error("--encrypt and --decrypt cannot be used together")]
    EncryptAndDecrypt,
    /// A key does not parse.
    #[error(transparent)]
    Crypt(#[from] CryptError),
    /// A secret could not be read, or sits in a file others can read.
    #[error(transparent)]
    Secret(#[from] SecretError),
}

impl Failure for EncryptionError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            EncryptionError::Crypt(e) => e.exit_status(),
            EncryptionError::Secret(e) => e.exit_status(),
            _ => ExitStatus::Usage,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            EncryptionError::NoKey { .. } => Some(format!(
                "set the passphrase in {PASSPHRASE_VAR} (or dump.encryption.cipher_pass in a \
                 configuration file only its owner can read)"
            )),
            EncryptionError::Crypt(e) => e.hint(),
            EncryptionError::Secret(e) => e.hint(),
            _ => None,
        }
    }
}

/// Reads `PGBK_CIPHER_PASS` and removes it from the process environment, so that no child
/// (pg_dump, pg_dumpall, the hooks) inherits it. Call it before any thread starts.
pub fn take_passphrase_from_env() -> Result<Option<Secret>, SecretError> {
    let secret = Secret::from_env(PASSPHRASE_VAR);
    std::env::remove_var(PASSPHRASE_VAR);
    secret
}

impl EncryptionConfig {
    /// Lays the flags (and variables) actually given over the file's values.
    pub fn apply_flags(&mut self, flags: &EncryptionFlags) {
        if let Some(value) = either(flags.encrypt, flags.no_encrypt) {
            self.encrypt = value;
        }
        if let Some(value) = either(flags.encrypt_keep_src, flags.no_encrypt_keep_src) {
            self.encrypt_keep_src = value;
        }
        if let Some(keys) = &flags.cipher_public_key {
            self.cipher_public_key = keys.clone();
        }
        if let Some(path) = &flags.cipher_identity {
            self.cipher_private_key = path.display().to_string();
        }
    }

    /// Refuses a configuration file that holds a secret (`cipher_pass`, an identity in
    /// `cipher_private_key`) and that others can read.
    pub fn check_file(&self, config_file: Option<&Path>) -> Result<(), SecretError> {
        let Some(path) = config_file else {
            return Ok(());
        };
        if self.cipher_pass.is_some() {
            check_config_file(path, "dump.encryption.cipher_pass")?;
        }
        if self.holds_identity() {
            check_config_file(path, "dump.encryption.cipher_private_key")?;
        }
        Ok(())
    }

    fn holds_identity(&self) -> bool {
        self.cipher_private_key
            .trim_start()
            .starts_with(IDENTITY_PREFIX)
    }

    fn passphrase(&self, from_env: Option<&Secret>) -> Option<Secret> {
        self.cipher_pass.clone().or_else(|| from_env.cloned())
    }

    /// The key files are encrypted with when `encrypt` is on: the public keys when given
    /// (`PGBK_CIPHER_PASS` is then ignored), else the passphrase of `cipher_pass` or
    /// `PGBK_CIPHER_PASS`.
    pub fn encrypt_key(
        &self,
        from_env: Option<&Secret>,
    ) -> Result<Option<EncryptKey>, EncryptionError> {
        if !self.encrypt {
            return Ok(None);
        }
        if !self.cipher_public_key.trim().is_empty() {
            if self.cipher_pass.is_some() {
                return Err(EncryptionError::BothKeys("cipher_public_key"));
            }
            return Ok(Some(EncryptKey::parse_recipients(&self.cipher_public_key)?));
        }
        match self.passphrase(from_env) {
            Some(pass) => Ok(Some(EncryptKey::passphrase(pass)?)),
            None => Err(EncryptionError::NoKey {
                action: "--encrypt",
                what: "age public keys (cipher_public_key)",
            }),
        }
    }

    /// The key `--decrypt` uses: the identities of `cipher_private_key` (a file, or the
    /// identity itself in `config_file`), else the passphrase.
    pub fn decrypt_key(
        &self,
        from_env: Option<&Secret>,
        config_file: Option<&Path>,
    ) -> Result<DecryptKey, EncryptionError> {
        let private = self.cipher_private_key.trim();
        if !private.is_empty() {
            if self.cipher_pass.is_some() {
                return Err(EncryptionError::BothKeys("cipher_private_key"));
            }
            if self.holds_identity() {
                let origin = config_origin(
                    config_file.unwrap_or(Path::new("configuration")),
                    "dump.encryption.cipher_private_key",
                );
                let text = Secret::new(private.to_string());
                return Ok(DecryptKey::from_identity_text(&text, &origin)?);
            }
            return Ok(DecryptKey::from_identity_file(Path::new(private))?);
        }
        match self.passphrase(from_env) {
            Some(pass) => Ok(DecryptKey::passphrase(&pass)?),
            None => Err(EncryptionError::NoKey {
                action: "--decrypt",
                what: "an identity file (--cipher-identity)",
            }),
        }
    }

    /// `--convert-pg-back-config`: sets the key of pg_back.conf `key` to `value`; `Ok(false)`
    /// when `key` is not an encryption key. The secrets are not carried over (the TOML is
    /// printed): `Err` names where they go instead.
    pub fn convert_pg_back_key(&mut self, key: &str, value: &str) -> Result<bool, String> {
        match key {
            "encrypt" => self.encrypt = parse_switch(key, value)?,
            "encrypt_keep_source" | "encrypt_keep_src" => {
                self.encrypt_keep_src = parse_switch(key, value)?
            }
            "cipher_public_key" => self.cipher_public_key = value.to_string(),
            "cipher_pass" if !value.is_empty() => {
                return Err(format!(
                    "cipher_pass is a secret and is not converted: put it in {PASSPHRASE_VAR}, or \
                     set dump.encryption.cipher_pass in a configuration file others cannot read"
                ))
            }
            "cipher_private_key" if value.starts_with(IDENTITY_PREFIX) => {
                return Err(
                    "cipher_private_key is a secret and is not converted: save the \
                     identity in a file (chmod 600) and set dump.encryption.cipher_private_key \
                     to its path"
                        .to_string(),
                )
            }
            "cipher_private_key" => self.cipher_private_key = value.to_string(),
            "cipher_pass" => {}
            _ => return Ok(false),
        }
        Ok(true)
    }
}

fn parse_switch(key: &str, value: &str) -> Result<bool, String> {
    if value.trim().is_empty() {
        return Ok(false);
    }
    super::values::parse_bool(value).map_err(|e| format!("{key}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        encryption: EncryptionFlags,
    }

    fn flags(args: &[&str]) -> EncryptionFlags {
        let argv = std::iter::once("pgback").chain(args.iter().copied());
        Flags::try_parse_from(argv).unwrap().encryption
    }

    fn public_key() -> String {
        crate::crypt::keys::new_x25519_identity()
            .to_public()
            .to_string()
    }

    #[test]
    fn flags_lay_over_the_file_and_the_later_negation_wins() {
        let mut config = EncryptionConfig {
            encrypt: true,
            encrypt_keep_src: true,
            ..Default::default()
        };
        config.apply_flags(&flags(&["--no-encrypt", "--no-encrypt-keep-src"]));
        assert!(!config.encrypt && !config.encrypt_keep_src);
        config.apply_flags(&flags(&[
            "--no-encrypt",
            "--encrypt",
            "--cipher-identity",
            "k",
        ]));
        assert!(config.encrypt);
        assert_eq!(config.cipher_private_key, "k");
        config.apply_flags(&flags(&["--encrypt", "--no-encrypt"]));
        assert!(!config.encrypt);
        config.apply_flags(&flags(&["--encrypt=yes"]));
        assert!(config.encrypt);
    }

    #[test]
    fn which_key_encrypts() {
        let env = Secret::new("from env".into());
        let off = EncryptionConfig::default();
        assert!(off.encrypt_key(Some(&env)).unwrap().is_none());
        let mut on = EncryptionConfig {
            encrypt: true,
            ..Default::default()
        };
        assert!(matches!(
            on.encrypt_key(Some(&env)).unwrap(),
            Some(EncryptKey::Passphrase(p)) if p.expose() == "from env"
        ));
        let error = on.encrypt_key(None).unwrap_err();
        assert_eq!(error.exit_status(), ExitStatus::Usage);
        assert!(error.hint().unwrap().contains(PASSPHRASE_VAR));
        on.cipher_public_key = format!("{}, {}", public_key(), public_key());
        assert!(matches!(
            on.encrypt_key(Some(&env)).unwrap(),
            Some(EncryptKey::Recipients(r)) if r.len() == 2
        ));
        on.cipher_pass = Some(Secret::new("in file".into()));
        assert!(matches!(
            on.encrypt_key(None).unwrap_err(),
            EncryptionError::BothKeys(_)
        ));
        on.cipher_public_key = "age1nope".into();
        on.cipher_pass = None;
        assert!(matches!(
            on.encrypt_key(None).unwrap_err(),
            EncryptionError::Crypt(_)
        ));
    }

    #[test]
    fn which_key_decrypts_and_where_identities_may_live() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let identity = crate::crypt::keys::new_x25519_identity();
        let text = {
            use age::secrecy::ExposeSecret;
            identity.to_string().expose_secret().to_string()
        };
        let file = tmp.path().join("key.txt");
        std::fs::write(&file, format!("{text}\n")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut config = EncryptionConfig {
            cipher_private_key: file.display().to_string(),
            ..Default::default()
        };
        let error = config.decrypt_key(None, None).unwrap_err();
        assert!(error.to_string().contains("accessible by group or others"));
        assert!(!error.to_string().contains(&text[20..]));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            config.decrypt_key(None, None).unwrap(),
            DecryptKey::Identities(_)
        ));
        // The identity itself, in a configuration file others cannot read.
        let toml = tmp.path().join("c.toml");
        std::fs::write(&toml, "").unwrap();
        std::fs::set_permissions(&toml, std::fs::Permissions::from_mode(0o644)).unwrap();
        config.cipher_private_key = text.clone();
        let error = config.check_file(Some(&toml)).unwrap_err();
        assert!(error
            .to_string()
            .contains("dump.encryption.cipher_private_key"));
        std::fs::set_permissions(&toml, std::fs::Permissions::from_mode(0o600)).unwrap();
        config.check_file(Some(&toml)).unwrap();
        assert!(config.decrypt_key(None, Some(&toml)).is_ok());
        config.cipher_private_key.clear();
        let env = Secret::new("pw".into());
        assert!(matches!(
            config.decrypt_key(Some(&env), None).unwrap(),
            DecryptKey::Passphrase(_)
        ));
        assert!(matches!(
            config.decrypt_key(None, None).unwrap_err(),
            EncryptionError::NoKey { .. }
        ));
    }

    #[test]
    fn the_converter_never_prints_a_secret() {
        let mut config = EncryptionConfig::default();
        assert_eq!(config.convert_pg_back_key("encrypt", "true"), Ok(true));
        assert_eq!(
            config.convert_pg_back_key("encrypt_keep_source", "yes"),
            Ok(true)
        );
        assert_eq!(config.convert_pg_back_key("cipher_pass", ""), Ok(true));
        let error = config
            .convert_pg_back_key("cipher_pass", "hunter2")
            .unwrap_err();
        assert!(error.contains(PASSPHRASE_VAR) && !error.contains("hunter2"));
        let error = config
            .convert_pg_back_key("cipher_private_key", "AGE-SECRET-KEY-1XYZ")
            .unwrap_err();
        assert!(!error.contains("1XYZ"), "{error}");
        assert_eq!(config.convert_pg_back_key("jobs", "2"), Ok(false));
        assert!(config.convert_pg_back_key("encrypt", "maybe").is_err());
        assert!(config.encrypt && config.encrypt_keep_src);
        config.cipher_pass = Some(Secret::new("hunter2".into()));
        let toml = toml::to_string(&config).unwrap();
        assert!(!toml.contains("hunter2"), "{toml}");
    }
}
