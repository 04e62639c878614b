//! pg_back's flags that carry a secret (`--cipher-pass`, `--cipher-private-key`, `--s3-secret`,
//! `--b2-app-key`, `--azure-key`, `--sftp-password`): every local user can read a command line
//! in `ps` and `/proc/<pid>/cmdline`, so pgback refuses them before doing anything, with one line
//! and a hint naming where the secret goes instead. Their values are never kept nor shown.

use crate::exit::{ExitStatus, Failure};

/// A secret flag and where its secret goes instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretFlag {
    /// The flag, as pg_back spells it.
    pub flag: &'static str,
    /// Where the secret goes: the hint.
    pub instead: &'static str,
}

/// Every flag refused, with its hint.
pub const SECRET_FLAGS: [SecretFlag; 6] = [
    SecretFlag {
        flag: "--cipher-pass",
        instead: "put the passphrase in PGBK_CIPHER_PASS, or in dump.encryption.cipher_pass of a \
                  configuration file others cannot read (chmod 600)",
    },
    SecretFlag {
        flag: "--cipher-private-key",
        instead: "save the identity (AGE-SECRET-KEY-1...) in a file only you can read (chmod 600) \
                  and name it with --cipher-identity FILE or dump.encryption.cipher_private_key",
    },
    SecretFlag {
        flag: "--s3-secret",
        instead: "use AWS_SECRET_ACCESS_KEY (with AWS_ACCESS_KEY_ID), or a profile of the AWS \
                  shared credentials file (AWS_PROFILE)",
    },
    SecretFlag {
        flag: "--b2-app-key",
        instead: "put the application key in B2_APPLICATION_KEY",
    },
    SecretFlag {
        flag: "--azure-key",
        instead: "put the account key in AZURE_STORAGE_KEY (with AZURE_STORAGE_ACCOUNT), or use a \
                  SAS URL",
    },
    SecretFlag {
        flag: "--sftp-password",
        instead: "put the password in PGBK_SSH_PASS, or use an identity file or ssh-agent",
    },
];

/// A secret flag was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing {}: a secret on the command line is visible to every local user",
    .0.flag
)]
pub struct SecretOnCommandLine(pub SecretFlag);

impl Failure for SecretOnCommandLine {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Usage
    }

    fn hint(&self) -> Option<String> {
        Some(self.0.instead.to_string())
    }
}

/// What clap keeps of a refused flag's value: nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discarded;

/// Drops the value without looking at it.
impl std::str::FromStr for Discarded {
    type Err = std::convert::Infallible;

    fn from_str(_: &str) -> Result<Discarded, Self::Err> {
        Ok(Discarded)
    }
}

/// The refused flags, hidden from `--help`: accepted by the parser (`--flag`, `--flag VALUE`,
/// `--flag=VALUE`) only so that [`SecretFlags::refusal`] can name them, whatever else the
/// command line holds. Flattened into pgback's arguments.
// The same settings for each named flag: clippy reads the repeated function as a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(Clone, Debug, Default, PartialEq, clap::Args)]
#[command(
    mut_arg("cipher_pass", hidden_secret),
    mut_arg("cipher_private_key", hidden_secret),
    mut_arg("s3_secret", hidden_secret),
    mut_arg("b2_app_key", hidden_secret),
    mut_arg("azure_key", hidden_secret),
    mut_arg("sftp_password", hidden_secret)
)]
pub struct SecretFlags {
    #[arg(long)]
    cipher_pass: Option<Discarded>,
    #[arg(long)]
    cipher_private_key: Option<Discarded>,
    #[arg(long)]
    s3_secret: Option<Discarded>,
    #[arg(long)]
    b2_app_key: Option<Discarded>,
    #[arg(long)]
    azure_key: Option<Discarded>,
    #[arg(long)]
    sftp_password: Option<Discarded>,
}

fn hidden_secret(arg: clap::Arg) -> clap::Arg {
    arg.hide(true)
        .num_args(0..=1)
        .allow_hyphen_values(true)
        .default_missing_value("")
}

impl SecretFlags {
    /// The first secret flag given, in [`SECRET_FLAGS`]'s order.
    pub fn refusal(&self) -> Option<SecretOnCommandLine> {
        let given = [
            self.cipher_pass,
            self.cipher_private_key,
            self.s3_secret,
            self.b2_app_key,
            self.azure_key,
            self.sftp_password,
        ];
        SECRET_FLAGS
            .iter()
            .zip(given)
            .find(|(_, value)| value.is_some())
            .map(|(flag, _)| SecretOnCommandLine(*flag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::report;
    use clap::Parser;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        secrets: SecretFlags,
        #[arg(long)]
        other: Option<String>,
    }

    #[test]
    fn every_secret_flag_is_refused_in_every_spelling_without_its_value() {
        for secret in SECRET_FLAGS {
            for argv in [
                vec![secret.flag.to_string(), "hunter2".into()],
                vec![format!("{}=hunter2", secret.flag)],
                vec![secret.flag.to_string()],
                vec![
                    secret.flag.into(),
                    "-hunter2".into(),
                    "--other".into(),
                    "x".into(),
                ],
            ] {
                let args =
                    Args::try_parse_from(std::iter::once("pgback".into()).chain(argv)).unwrap();
                let refusal = args.secrets.refusal().unwrap();
                assert_eq!(refusal.0, secret);
                let text = report("pgback", &refusal, refusal.hint().as_deref());
                assert!(!text.contains("hunter2"), "{text}");
                assert_eq!(text.lines().count(), 2, "{text}");
                assert!(text.starts_with(&format!("pgback: refusing {}", secret.flag)));
                assert_eq!(refusal.exit_status(), ExitStatus::Usage);
            }
        }
        let none = Args::try_parse_from(["pgback", "--other=--cipher-pass"]).unwrap();
        assert!(none.secrets.refusal().is_none(), "a value, not a flag");
    }
}
