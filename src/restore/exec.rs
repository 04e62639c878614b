//! Running the restore's client tools (psql, pg_restore, a decompressor): an explicit argument
//! vector, never a shell; the connection through libpq's environment (password included),
//! never through argv; stderr logged as `[label] line` and its last lines kept for the error.
//!
//! Input reaches a tool as a file named in its argv, as bytes written to its stdin, or as a
//! stream ([`Input::Stream`]): the seam where a decrypting reader plugs in, so that an
//! encrypted dump is restored without its plaintext ever touching the disk.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::filter::TransactionTimeoutFilter;

use crate::conn::{ConnSettings, LIBPQ_ENV_VARS};
use crate::process::{keep_last_lines, ChildError};

/// One program with its arguments, as run and as shown in a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCommand {
    /// The program (`psql`, or a path under the bin directory).
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl ToolCommand {
    /// A command.
    pub fn new(program: PathBuf, args: Vec<String>) -> ToolCommand {
        ToolCommand { program, args }
    }

    /// The program's file name, for messages.
    pub fn name(&self) -> String {
        self.program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.program.display().to_string())
    }

    /// The command line, quoted for a POSIX shell (to read or to paste; never run by one).
    pub fn shell_line(&self) -> String {
        let program = self.program.display().to_string();
        std::iter::once(program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .map(|word| shell_words::quote(word).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a tool reads on stdin.
pub enum Input {
    /// Nothing (`/dev/null`).
    Null,
    /// These bytes, then end of file.
    Bytes(Vec<u8>),
    /// A stream, copied to its stdin: the seam for decryption.
    Stream(Box<dyn AsyncRead + Unpin + Send>),
    /// A script stream, copied through the filter that leaves `SET transaction_timeout` out.
    Filtered(Box<dyn AsyncRead + Unpin + Send>, TransactionTimeoutFilter),
}

/// A tool could not be run or failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// It could not be started, or failed (its last stderr lines kept): the one child error.
    #[error(transparent)]
    Child(#[from] ChildError),
    /// Feeding its stdin failed for another reason than the tool going away.
    #[error("feeding {program}: {source}")]
    Feed {
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The encrypted dump could not be decrypted to its end.
    #[error(transparent)]
    Decrypt(#[from] crate::crypt::CryptError),
    /// The decrypted dump does not match its plaintext checksum.
    #[error("{file} decrypts to other bytes than {checksum_file} holds")]
    PlainMismatch {
        /// The `.age` file.
        file: PathBuf,
        /// `<file>.<algo>.age`.
        checksum_file: PathBuf,
    },
    /// The native load of a native dump (no psql) failed.
    #[error("native load: {0}")]
    Native(String),
    /// Two tools of a pipeline failed.
    #[error("{first}; {second}")]
    Both {
        /// The producer's failure.
        first: Box<ToolError>,
        /// The consumer's failure.
        second: Box<ToolError>,
    },
}

fn command(tool: &ToolCommand, conn: &ConnSettings) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(&tool.program);
    for var in LIBPQ_ENV_VARS {
        command.env_remove(var);
    }
    command
        .args(&tool.args)
        .envs(conn.libpq_env())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn keep_stderr(stderr: Option<tokio::process::ChildStderr>, label: &str) -> String {
    match stderr {
        Some(stderr) => keep_last_lines(stderr, label).await,
        None => String::new(),
    }
}

/// Copies `input` into the child's stdin and closes it. A tool that exits early (psql with
/// ON_ERROR_STOP) closes the pipe: that is its failure to report, not ours.
async fn feed(
    stdin: Option<tokio::process::ChildStdin>,
    input: Input,
    program: &str,
) -> Result<(), ToolError> {
    let Some(mut stdin) = stdin else {
        return Ok(());
    };
    let result = match input {
        Input::Null => Ok(()),
        Input::Bytes(bytes) => stdin.write_all(&bytes).await,
        Input::Stream(mut reader) => tokio::io::copy(&mut reader, &mut stdin).await.map(drop),
        Input::Filtered(reader, filter) => copy_filtered(reader, &mut stdin, filter).await,
    };
    let result = result.and(stdin.shutdown().await);
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(ToolError::Feed {
            program: program.to_string(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Copies `reader` into `writer` chunk by chunk through `filter`: never more than a chunk (and
/// the few bytes the filter holds back) in memory.
async fn copy_filtered(
    mut reader: impl AsyncRead + Unpin,
    writer: &mut (impl tokio::io::AsyncWrite + Unpin),
    mut filter: TransactionTimeoutFilter,
) -> std::io::Result<()> {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(chunk.len());
    loop {
        let read = reader.read(&mut chunk).await?;
        out.clear();
        if read == 0 {
            filter.finish(&mut out);
            return writer.write_all(&out).await;
        }
        filter.push(&chunk[..read], &mut out);
        writer.write_all(&out).await?;
    }
}

fn spawn(
    tool: &ToolCommand,
    mut command: tokio::process::Command,
) -> Result<tokio::process::Child, ToolError> {
    command.spawn().map_err(|source| {
        ToolError::Child(ChildError::Spawn {
            program: tool.program.display().to_string(),
            source,
        })
    })
}

fn finish(
    tool: &ToolCommand,
    status: std::io::Result<std::process::ExitStatus>,
    stderr: String,
) -> Result<(), ToolError> {
    let status = status.map_err(|source| ChildError::Spawn {
        program: tool.name(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(ToolError::Child(ChildError::Failed {
            program: tool.name(),
            status,
            stderr,
        }))
    }
}

/// Runs `tool` against the server of `conn`, feeding it `input`.
pub async fn run_tool(
    tool: &ToolCommand,
    conn: &ConnSettings,
    input: Input,
    label: &str,
) -> Result<(), ToolError> {
    let mut command = command(tool, conn);
    command.stdin(match input {
        Input::Null => Stdio::null(),
        _ => Stdio::piped(),
    });
    let mut child = spawn(tool, command)?;
    let stdin = child.stdin.take();
    let stderr = child.stderr.take();
    let name = tool.name();
    let (fed, stderr, status) = tokio::join!(
        feed(stdin, input, &name),
        keep_stderr(stderr, label),
        child.wait()
    );
    finish(tool, status, stderr)?;
    fed
}

/// Runs `producer | consumer` (a decompressor or `pg_restore -f -` into psql) without a shell:
/// `input` goes to the producer's stdin, the producer's stdout is copied into the consumer's
/// stdin, through `filter` when there is one. When both fail, both are reported.
pub async fn run_piped(
    producer: &ToolCommand,
    consumer: &ToolCommand,
    input: Input,
    filter: Option<TransactionTimeoutFilter>,
    conn: &ConnSettings,
    label: &str,
) -> Result<(), ToolError> {
    let mut first = command(producer, conn);
    first
        .stdin(match input {
            Input::Null => Stdio::null(),
            _ => Stdio::piped(),
        })
        .stdout(Stdio::piped());
    let mut first = spawn(producer, first)?;
    let producer_name = producer.name();
    let first_stdin = first.stdin.take();
    let feed_producer = feed(first_stdin, input, &producer_name);
    let mut second = command(consumer, conn);
    second.stdin(Stdio::piped());
    let mut second = spawn(consumer, second)?;
    let source = first.stdout.take();
    let stdin = second.stdin.take();
    let consumer_name = consumer.name();
    let pump = async {
        let source: Box<dyn AsyncRead + Unpin + Send> = match source {
            Some(out) => Box::new(out),
            None => return Ok(()),
        };
        let input = match filter {
            Some(filter) => Input::Filtered(source, filter),
            None => Input::Stream(source),
        };
        feed(stdin, input, &consumer_name).await
    };
    let first_stderr = first.stderr.take();
    let second_stderr = second.stderr.take();
    let (fed, pumped, first_err, second_err, first_status, second_status) = tokio::join!(
        feed_producer,
        pump,
        keep_stderr(first_stderr, label),
        keep_stderr(second_stderr, label),
        first.wait(),
        second.wait()
    );
    let first_result = finish(producer, first_status, first_err);
    let second_result = finish(consumer, second_status, second_err);
    match (first_result, second_result) {
        (Err(a), Err(b)) => Err(ToolError::Both {
            first: Box::new(a),
            second: Box::new(b),
        }),
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(())) => fed.and(pumped),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{ConnParams, Environment};

    fn conn() -> ConnSettings {
        let params = ConnParams::parse("host=/nonexistent user=nobody dbname=none").unwrap();
        ConnSettings::resolve(&params, &Environment::default()).unwrap()
    }

    fn sh(script: &str, args: &[&str]) -> ToolCommand {
        let mut argv = vec!["-c".to_string(), script.to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        ToolCommand::new(PathBuf::from("sh"), argv)
    }

    /// The decryption seam end to end: a stream (here gzip bytes from memory) through a
    /// decompressor into a consumer, nothing written but what the consumer writes.
    #[tokio::test]
    async fn streams_flow_through_a_pipeline_and_failures_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let script = "SELECT 1;\n".repeat(10_000);
        let mut gzip = std::process::Command::new("gzip")
            .arg("-c")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = gzip.stdin.take().unwrap();
        let writer = std::thread::spawn({
            let script = script.clone();
            move || std::io::Write::write_all(&mut stdin, script.as_bytes())
        });
        let compressed = gzip.wait_with_output().unwrap().stdout;
        writer.join().unwrap().unwrap();
        let out = tmp.path().join("out.sql");
        let out_arg = out.display().to_string();
        let gunzip = ToolCommand::new(PathBuf::from("gzip"), vec!["-dc".into()]);
        run_piped(
            &gunzip,
            &sh("cat > \"$0\"", &[&out_arg]),
            Input::Stream(Box::new(std::io::Cursor::new(compressed))),
            None,
            &conn(),
            "test",
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), script);

        // The consumer fails: its own error, with its stderr.
        let error = run_piped(
            &gunzip,
            &sh("echo 'psql: ERROR: boom' >&2; exit 3", &[]),
            Input::Bytes(b"not gzip".to_vec()),
            None,
            &conn(),
            "test",
        )
        .await
        .unwrap_err();
        assert!(error.to_string().contains("boom"), "{error}");
        // Bytes on stdin, and the exit status of a lone tool.
        run_tool(
            &sh("test \"$(cat)\" = abc", &[]),
            &conn(),
            Input::Bytes(b"abc".to_vec()),
            "t",
        )
        .await
        .unwrap();
        let error = run_tool(&sh("exit 4", &[]), &conn(), Input::Null, "t")
            .await
            .unwrap_err();
        assert!(
            matches!(error, ToolError::Child(ChildError::Failed { .. })),
            "{error}"
        );
        let error = run_tool(
            &ToolCommand::new(PathBuf::from("/nonexistent/psql"), vec![]),
            &conn(),
            Input::Null,
            "t",
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, ToolError::Child(ChildError::Spawn { .. })),
            "{error}"
        );
    }

    /// A script through the filter between two tools: the one line left out, the rest (here
    /// far more than a chunk, with the same line again as data) unchanged.
    #[tokio::test]
    async fn a_piped_script_loses_its_transaction_timeout_line() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out.sql");
        let out_arg = out.display().to_string();
        let header = "SET lock_timeout = 0;\nSET transaction_timeout = 0;\nSET x = 1;\n";
        let rows = "SET transaction_timeout = 0;\n".repeat(10_000);
        let script = format!("{header}COPY t FROM stdin;\n{rows}");
        run_piped(
            &ToolCommand::new(PathBuf::from("cat"), vec![]),
            &sh("cat > \"$0\"", &[&out_arg]),
            Input::Bytes(script.clone().into_bytes()),
            Some(TransactionTimeoutFilter::new()),
            &conn(),
            "test",
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            script.replacen("SET transaction_timeout = 0;\n", "", 1)
        );
    }

    #[test]
    fn command_lines_quote_every_word() {
        let tool = ToolCommand::new(
            PathBuf::from("/usr/lib/postgresql/15/bin/pg_restore"),
            vec![
                "-d".into(),
                "dbname='x=y z'".into(),
                "-j".into(),
                "4".into(),
            ],
        );
        assert_eq!(
            tool.shell_line(),
            r"/usr/lib/postgresql/15/bin/pg_restore -d 'dbname='\''x=y z'\''' -j 4"
        );
        assert_eq!(tool.name(), "pg_restore");
    }
}
