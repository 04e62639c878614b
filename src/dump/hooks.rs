//! Pre- and post-backup hooks: a command line split like a shell would (quotes, backslashes)
//! but run without one, told the outcome through `PGBACK_*` environment variables.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::exit::{ExitStatus, Failure};
use crate::process::{run_child, ChildError, ChildName, Finished};

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// Before anything else; its failure stops the run.
    Pre,
    /// After everything, on every path once the pre hook ran.
    Post,
}

impl std::fmt::Display for HookKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HookKind::Pre => "pre-backup hook",
            HookKind::Post => "post-backup hook",
        })
    }
}

/// A hook that could not be split, started, or that failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// Unbalanced quotes or a trailing backslash.
    #[error("{kind}: cannot split {command:?}: {reason}")]
    Split {
        /// Which hook.
        kind: HookKind,
        /// The command as configured.
        command: String,
        /// What the splitter said.
        reason: String,
    },
    /// The program could not be started, failed (its last stderr lines kept) or ran too long.
    #[error("{kind}: {source}")]
    Run {
        /// Which hook.
        kind: HookKind,
        /// What happened to the program.
        #[source]
        source: ChildError,
    },
}

impl Failure for HookError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            HookError::Split { .. } => ExitStatus::Usage,
            HookError::Run {
                source: ChildError::Timeout { .. },
                ..
            } => ExitStatus::Timeout,
            HookError::Run { .. } => ExitStatus::BackupFailed,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            HookError::Split { .. } => Some(
                "hooks are split like a shell would but run without one: balance the quotes".into(),
            ),
            HookError::Run {
                source: ChildError::Spawn { .. },
                ..
            } => Some("give the hook's full path, or fix its permissions".into()),
            HookError::Run { .. } => None,
        }
    }
}

/// Splits a hook command line into program and arguments.
pub fn split_command(kind: HookKind, command: &str) -> Result<Vec<String>, HookError> {
    let argv = shell_words::split(command).map_err(|e| HookError::Split {
        kind,
        command: command.to_string(),
        reason: e.to_string(),
    })?;
    if argv.is_empty() {
        return Err(HookError::Split {
            kind,
            command: command.to_string(),
            reason: "empty command".into(),
        });
    }
    Ok(argv)
}

/// The environment a hook is told the outcome through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookOutcome {
    /// `success` or `failure` (post hook only).
    pub success: Option<bool>,
    /// Files written by the run.
    pub files: Vec<String>,
    /// Databases whose dump failed.
    pub failed_databases: Vec<String>,
}

impl HookOutcome {
    /// `PGBACK_STATUS`, `PGBACK_FILES` and `PGBACK_FAILED_DATABASES` (newline-separated lists:
    /// a newline is the one character neither a path written here nor a database name
    /// usually holds; names that do hold one are still passed whole within their line).
    pub fn env(&self, kind: HookKind) -> Vec<(String, String)> {
        let mut env = vec![(
            "PGBACK_HOOK".to_string(),
            match kind {
                HookKind::Pre => "pre",
                HookKind::Post => "post",
            }
            .to_string(),
        )];
        if let Some(success) = self.success {
            env.push((
                "PGBACK_STATUS".into(),
                if success { "success" } else { "failure" }.into(),
            ));
            env.push(("PGBACK_FILES".into(), self.files.join("\n")));
            env.push((
                "PGBACK_FAILED_DATABASES".into(),
                self.failed_databases.join("\n"),
            ));
        }
        env
    }
}

/// Runs a hook (no shell), logging its output lines, and waits at most `timeout`.
pub async fn run_hook(
    kind: HookKind,
    command: &str,
    outcome: &HookOutcome,
    timeout: Duration,
) -> Result<(), HookError> {
    let argv = split_command(kind, command)?;
    let program = &argv[0];
    tracing::info!("running {kind}: {program}");
    let mut child = tokio::process::Command::new(program);
    child.args(&argv[1..]).envs(outcome.env(kind));
    let label = kind.to_string();
    let log_stdout = |out| async move {
        let mut lines = BufReader::new(out).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!("[{kind}] {line}");
        }
    };
    let name = ChildName {
        program: &format!("{program:?}"),
        label: &label,
    };
    run_child(child, name, Some(timeout), log_stdout)
        .await
        .and_then(Finished::success)
        .map_err(|source| HookError::Run { kind, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(
            split_command(
                HookKind::Pre,
                r#"/usr/bin/notify --msg "backup done" 'it''s' a\ b"#
            )
            .unwrap(),
            ["/usr/bin/notify", "--msg", "backup done", "its", "a b"]
        );
        // No shell: these are plain arguments.
        assert_eq!(
            split_command(HookKind::Pre, "echo $HOME; rm -rf /").unwrap(),
            ["echo", "$HOME;", "rm", "-rf", "/"]
        );
        assert!(split_command(HookKind::Pre, "echo 'open").is_err());
        assert!(split_command(HookKind::Post, "   ").is_err());
    }

    #[test]
    fn outcome_environment() {
        let outcome = HookOutcome {
            success: Some(false),
            files: vec!["/b/a.dump".into(), "/b/b.dump".into()],
            failed_databases: vec!["x=y z".into()],
        };
        let env = outcome.env(HookKind::Post);
        assert!(env.contains(&("PGBACK_STATUS".into(), "failure".into())));
        assert!(env.contains(&("PGBACK_FILES".into(), "/b/a.dump\n/b/b.dump".into())));
        assert!(env.contains(&("PGBACK_FAILED_DATABASES".into(), "x=y z".into())));
        assert_eq!(
            HookOutcome::default().env(HookKind::Pre),
            [("PGBACK_HOOK".to_string(), "pre".to_string())]
        );
    }

    #[tokio::test]
    async fn runs_without_a_shell_and_reports_failure() {
        let run = |kind, command, timeout| async move {
            run_hook(kind, command, &HookOutcome::default(), timeout)
                .await
                .map_err(|e| match e {
                    HookError::Run { source, .. } => source,
                    other => panic!("{other:?}"),
                })
        };
        let long = Duration::from_secs(10);
        assert!(run(HookKind::Pre, "true", long).await.is_ok());
        match run(HookKind::Post, "sh -c 'echo boom >&2; exit 3'", long).await {
            Err(ChildError::Failed { stderr, .. }) => assert_eq!(stderr, "boom"),
            other => panic!("{other:?}"),
        }
        let missing = run(HookKind::Pre, "/nonexistent/hook", long).await;
        assert!(matches!(missing, Err(ChildError::Spawn { .. })));
        let slow = run(HookKind::Pre, "sleep 5", Duration::from_millis(100)).await;
        assert!(matches!(slow, Err(ChildError::Timeout { .. })));
    }

    #[tokio::test]
    async fn post_hook_sees_the_outcome() {
        let outcome = HookOutcome {
            success: Some(true),
            files: vec![],
            failed_databases: vec![],
        };
        let result = run_hook(
            HookKind::Post,
            r#"sh -c 'test "$PGBACK_STATUS" = success && test "$PGBACK_HOOK" = post'"#,
            &outcome,
            Duration::from_secs(10),
        )
        .await;
        assert!(result.is_ok(), "{result:?}");
    }
}
