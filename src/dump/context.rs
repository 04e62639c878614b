//! What every step of one run shares: the settings, the tools, the stamps handed out (which
//! purge must spare), the partial files to remove if the run is cut short, the progress
//! display, and running a tool whose output becomes a backup file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::process::{ChildStdout, Command};

use super::output::{self, WrittenFile};
use super::progress::Progress;
use super::report::DumpError;
use crate::config::DumpConfig;
use crate::conn::{ConnSettings, LIBPQ_ENV_VARS};
use crate::naming;
use crate::process::{run_child, ChildName};
use crate::programs::Tools;
use crate::pump::Source;
use crate::values::ChecksumAlgorithm;

/// The shared state of one run.
#[derive(Debug)]
pub struct RunContext {
    /// `[dump]` with every layer applied.
    pub dump: DumpConfig,
    /// The resolved connection (its dbname is the maintenance database).
    pub conn: ConnSettings,
    /// pg_dump and pg_dumpall, and the version that gates their options; `None` with
    /// `--native` when no database needs pg_dump.
    pub tools: Option<Tools>,
    run_stamp: String,
    stamps: Mutex<BTreeSet<String>>,
    partials: Mutex<BTreeSet<PathBuf>>,
    progress: Progress,
}

/// Where a tool's output goes.
#[derive(Debug, Clone, Copy)]
pub struct ToolOutput<'a> {
    /// The final path of the file (or dump directory).
    pub path: &'a Path,
    /// The checksum written beside it.
    pub checksum: ChecksumAlgorithm,
    /// pg_dump writes a directory itself (`-Fd`) instead of streaming to stdout.
    pub directory: bool,
}

impl RunContext {
    /// The context of a run starting now.
    pub fn new(
        dump: DumpConfig,
        conn: ConnSettings,
        tools: Option<Tools>,
        progress: Progress,
    ) -> RunContext {
        RunContext {
            run_stamp: naming::format_stamp(dump.timestamp_format, &naming::now()),
            dump,
            conn,
            tools,
            stamps: Mutex::new(BTreeSet::new()),
            partials: Mutex::new(BTreeSet::new()),
            progress,
        }
    }

    /// The client tools; a run that dumps with pg_dump found them before any dump.
    pub fn tools(&self) -> Result<&Tools, DumpError> {
        self.tools
            .as_ref()
            .ok_or_else(|| DumpError::Catalog("internal: pg_dump was not looked for".into()))
    }

    /// The stamp of a file started now (the run's own with `uniform_timestamp`).
    pub fn stamp(&self) -> String {
        let stamp = if self.dump.uniform_timestamp {
            self.run_stamp.clone()
        } else {
            naming::format_stamp(self.dump.timestamp_format, &naming::now())
        };
        if let Ok(mut stamps) = self.stamps.lock() {
            stamps.insert(stamp.clone());
        }
        stamp
    }

    /// Where the progress of running dumps goes.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Every stamp handed out: the run's own backups, which purge never deletes.
    pub fn stamps(&self) -> Vec<String> {
        self.stamps
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(super) fn track(&self, path: &Path, active: bool) {
        if let Ok(mut partials) = self.partials.lock() {
            if active {
                partials.insert(path.to_path_buf());
            } else {
                partials.remove(path);
            }
        }
    }

    /// Removes what writes cut short (by a signal) left under temporary names.
    pub fn remove_partials(&self) {
        if let Ok(partials) = self.partials.lock() {
            for path in partials.iter() {
                output::remove_partial(path);
            }
        }
    }

    /// A client tool connecting to `dbname` (as `user` when given) through the libpq
    /// environment only: no connection string, let alone a password, in its argv.
    pub fn command(&self, program: &Path, dbname: &str, user: Option<&str>) -> Command {
        let mut settings = self.conn.clone();
        settings.dbname = dbname.to_string();
        if let Some(user) = user {
            settings.user = user.to_string();
        }
        let mut command = Command::new(program);
        for var in LIBPQ_ENV_VARS {
            command.env_remove(var);
        }
        command.envs(settings.libpq_env());
        command
    }

    /// Runs a tool whose stdout becomes `out.path` (streamed through the checksum; for the
    /// directory format, pg_dump writes the directory itself), logging its stderr as
    /// `[label] line`. On failure nothing stays under the final or the temporary name.
    pub async fn run_to_file(
        &self,
        command: Command,
        name: ChildName<'_>,
        out: ToolOutput<'_>,
    ) -> Result<Option<WrittenFile>, DumpError> {
        output::remove_partial(out.path);
        self.track(out.path, true);
        let result = self.run_tracked(command, name, out).await;
        if result.is_err() {
            output::remove_partial(out.path);
        }
        self.track(out.path, false);
        result
    }

    async fn run_tracked(
        &self,
        command: Command,
        name: ChildName<'_>,
        out: ToolOutput<'_>,
    ) -> Result<Option<WrittenFile>, DumpError> {
        let mode = self.dump.backup_file_mode;
        let write = |stdout: ChildStdout| async move {
            if out.directory {
                return Ok(None);
            }
            let stdout = Source::child_stdout(stdout).map_err(|source| output::OutputError {
                path: out.path.to_path_buf(),
                source,
            })?;
            let mut progress = self.progress.start(name.label);
            output::write_streamed(out.path, stdout, out.checksum, mode, |total| {
                progress.update(total)
            })
            .await
            .map(Some)
        };
        let (written, ended) = run_child(command, name, None, write).await?.into_parts();
        // When writing failed (disk full...), the tool then failed on the closed pipe, which is
        // not the cause worth reporting.
        let written = written?;
        if let Err(failed) = ended {
            // The streamed file was renamed already when stdout ended: a failed dump must not
            // stay.
            if let Some(file) = &written {
                let _ = std::fs::remove_file(&file.path);
                if let Some(sum) = &file.checksum_path {
                    let _ = std::fs::remove_file(sum);
                }
            }
            return Err(failed.into());
        }
        if !out.directory {
            return Ok(written);
        }
        let (path, checksum) = (out.path.to_path_buf(), out.checksum);
        tokio::task::spawn_blocking(move || output::finish_directory(&path, checksum, mode))
            .await
            .map_err(|e| DumpError::Catalog(format!("internal: {e}")))?
            .map(Some)
            .map_err(DumpError::from)
    }
}
