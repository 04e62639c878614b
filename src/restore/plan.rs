//! The restore plan: which files, in which order, with which commands. Built before anything
//! is touched, printed by `--dry-run`, then executed step by step. The argument vectors come
//! from pure functions.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use super::decrypt::EncryptedSource;
use super::exec::ToolCommand;
use super::set::{DumpFormat, PlainCompression};
use crate::checksum::Verified;
use crate::exit::quoted_list;
use crate::files::file_name;
use crate::programs::{conninfo_dbname, tool_path};
use crate::server::{quote_ident, ServerVersion};

/// What happens to a database on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseAction {
    /// It does not exist: created from its createdb.sql.
    Create,
    /// It exists and holds nothing of its own: restored into, owner/ACL/settings applied.
    IntoEmpty,
    /// It holds objects and `--clean` was given: pg_restore drops what the dump holds first.
    Clean {
        /// What it held, e.g. `3 relations`.
        objects: String,
    },
}

impl DatabaseAction {
    /// A short word for plans and summaries.
    pub fn name(&self) -> &'static str {
        match self {
            DatabaseAction::Create => "create",
            DatabaseAction::IntoEmpty => "into existing (empty)",
            DatabaseAction::Clean { .. } => "clean",
        }
    }
}

/// Where an SQL step's script comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlInput {
    /// The file, named in psql's argv.
    File(PathBuf),
    /// A script derived from a file (existing roles or the CREATE left out), fed on stdin.
    Derived {
        /// The file it comes from.
        from: PathBuf,
        /// The script.
        script: String,
        /// What was changed, for the plan.
        change: String,
    },
}

/// One psql run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlStep {
    /// The command.
    pub command: ToolCommand,
    /// Its script.
    pub input: SqlInput,
}

/// How the data of one database is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadStep {
    /// The decompressor piped into psql, for compressed plain dumps.
    pub decompress: Option<ToolCommand>,
    /// pg_restore or psql.
    pub command: ToolCommand,
}

/// Everything done for one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabasePlan {
    /// The database.
    pub name: String,
    /// Its dump.
    pub dump: PathBuf,
    /// The dump's format.
    pub format: DumpFormat,
    /// Create, restore into, or clean.
    pub action: DatabaseAction,
    /// createdb.sql (or its rewrite) run first.
    pub prepare: SqlStep,
    /// The data.
    pub load: LoadStep,
    /// An encrypted dump: decrypted in memory into the load step's stdin.
    pub stream: Option<EncryptedSource>,
}

/// The whole restore, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePlan {
    /// The backup directory.
    pub dir: PathBuf,
    /// The set's stamp.
    pub stamp: String,
    /// The target, without any secret (`host=.. port=.. user=.. dbname=..`).
    pub target: String,
    /// The files checked against their checksum files, in order.
    pub verified: Vec<Verified>,
    /// The globals, when the set has them.
    pub globals: Option<SqlStep>,
    /// Roles of the globals that exist on the target: not created again.
    pub existing_roles: Vec<String>,
    /// The databases, in order.
    pub databases: Vec<DatabasePlan>,
    /// `pg_settings`, `hba_file`, `ident_file`: never applied.
    pub unapplied: Vec<PathBuf>,
    /// Things worth knowing (fewer jobs than asked, missing createdb.sql, unverified set).
    pub notes: Vec<String>,
}

/// The tools and options the plan's commands use.
#[derive(Debug, Clone)]
pub struct CommandSettings {
    /// Where psql and pg_restore are (`""`: PATH).
    pub bin_directory: String,
    /// The maintenance database (globals, createdb.sql).
    pub maintenance_db: String,
    /// pg_restore jobs asked for.
    pub jobs: u32,
    /// pg_restore's version, when it was probed.
    pub pg_restore_version: Option<ServerVersion>,
}

/// `psql -X -q -v ON_ERROR_STOP=1 -d <db> -f <file or ->`.
pub fn psql_command(settings: &CommandSettings, dbname: &str, file: Option<&Path>) -> ToolCommand {
    ToolCommand::new(
        tool_path(&settings.bin_directory, "psql"),
        vec![
            "-X".into(),
            "-q".into(),
            "-v".into(),
            "ON_ERROR_STOP=1".into(),
            "-d".into(),
            conninfo_dbname(dbname),
            "-f".into(),
            file.map_or_else(|| "-".to_string(), |f| f.display().to_string()),
        ],
    )
}

/// Whether this pg_restore can restore a custom dump written to a pipe (no data offsets) with
/// several jobs: 12.0 to 12.3 cannot (fixed in 12.4 and 13 by seeking and remembering the
/// offsets it finds; before 12 the order of a parallel restore never needed them).
pub fn parallel_custom_ok(version: Option<ServerVersion>) -> bool {
    !matches!(version, Some(v) if (120000..120004).contains(&v.num()))
}

/// The pg_restore jobs for a format, and why fewer than asked when so.
pub fn restore_jobs(
    format: DumpFormat,
    asked: u32,
    version: Option<ServerVersion>,
) -> (u32, Option<String>) {
    let asked = asked.max(1);
    match format {
        DumpFormat::Tar if asked > 1 => (
            1,
            Some("pg_restore restores tar archives with one job only".into()),
        ),
        DumpFormat::Custom if asked > 1 && !parallel_custom_ok(version) => (
            1,
            Some(format!(
                "pg_restore {} cannot restore a streamed custom dump with several jobs (12.4 can)",
                version.map(|v| v.to_string()).unwrap_or_default()
            )),
        ),
        _ => (asked, None),
    }
}

/// The load step of one dump: pg_restore reading the file itself (seekable, so parallel
/// restore works on dumps pgback streamed through a pipe) or psql, behind a decompressor
/// when the plain dump is compressed.
pub fn load_step(
    settings: &CommandSettings,
    dbname: &str,
    dump: &Path,
    format: DumpFormat,
    clean: bool,
) -> (LoadStep, Option<String>) {
    match format {
        DumpFormat::Plain(compression) => {
            let decompress = compression.decompressor().map(|program| {
                ToolCommand::new(
                    PathBuf::from(program),
                    vec!["-dc".into(), dump.display().to_string()],
                )
            });
            let file = (compression == PlainCompression::None).then_some(dump);
            (
                LoadStep {
                    decompress,
                    command: psql_command(settings, dbname, file),
                },
                None,
            )
        }
        _ => {
            let (jobs, note) = restore_jobs(format, settings.jobs, settings.pg_restore_version);
            let mut args = vec![
                "-d".to_string(),
                conninfo_dbname(dbname),
                "-w".into(),
                "--exit-on-error".into(),
            ];
            if jobs > 1 {
                args.push("-j".into());
                args.push(jobs.to_string());
            }
            if clean {
                args.push("--clean".into());
                args.push("--if-exists".into());
            }
            args.push(dump.display().to_string());
            (
                LoadStep {
                    decompress: None,
                    command: ToolCommand::new(
                        tool_path(&settings.bin_directory, "pg_restore"),
                        args,
                    ),
                },
                note.map(|n| format!("{dbname:?}: {n}")),
            )
        }
    }
}

/// The load step of a dump that arrives as a stream on stdin instead of a file: the seam for
/// encrypted sets, whose decrypting reader is fed to the command as
/// [`Input::Stream`](super::exec::Input::Stream) (to the decompressor's stdin for a compressed
/// plain dump), so that no plaintext reaches the disk. pg_restore reads a custom or tar dump
/// from stdin with one job (it cannot restore in parallel from a pipe); a directory dump is
/// no stream (`None`): its files would be decrypted one by one.
pub fn stream_load_step(
    settings: &CommandSettings,
    dbname: &str,
    format: DumpFormat,
    clean: bool,
) -> Option<LoadStep> {
    match format {
        DumpFormat::Directory => None,
        DumpFormat::Plain(compression) => Some(LoadStep {
            decompress: compression
                .decompressor()
                .map(|program| ToolCommand::new(PathBuf::from(program), vec!["-dc".into()])),
            command: psql_command(settings, dbname, None),
        }),
        DumpFormat::Custom | DumpFormat::Tar => {
            let mut args = vec![
                "-d".to_string(),
                conninfo_dbname(dbname),
                "-w".into(),
                "--exit-on-error".into(),
            ];
            if clean {
                args.push("--clean".into());
                args.push("--if-exists".into());
            }
            args.push(format!("--format={}", format.name()));
            Some(LoadStep {
                decompress: None,
                command: ToolCommand::new(tool_path(&settings.bin_directory, "pg_restore"), args),
            })
        }
    }
}

/// `CREATE DATABASE <db> TEMPLATE template0;`, for a set without createdb.sql.
pub fn bare_create_database(dbname: &str) -> String {
    format!(
        "CREATE DATABASE {} TEMPLATE template0;\n",
        quote_ident(dbname)
    )
}

fn write_sql_step(out: &mut String, step: &SqlStep) {
    match &step.input {
        SqlInput::File(_) => {
            let _ = writeln!(out, "      $ {}", step.command.shell_line());
        }
        SqlInput::Derived { script, change, .. } if script.is_empty() => {
            let _ = writeln!(out, "      ({change})");
        }
        SqlInput::Derived { from, change, .. } => {
            let _ = writeln!(
                out,
                "      $ {} < {}   # {change}",
                step.command.shell_line(),
                shell_words::quote(&from.display().to_string())
            );
        }
    }
}

impl fmt::Display for RestorePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "restore plan: dump set {} of {} into {}",
            self.stamp,
            self.dir.display(),
            self.target
        );
        let checked: Vec<&Verified> = self
            .verified
            .iter()
            .filter(|v| !v.checksum_files.is_empty())
            .collect();
        if checked.is_empty() {
            let _ = writeln!(
                out,
                "  0. verify: no checksum files in this set: nothing verified"
            );
        } else {
            let _ = writeln!(out, "  0. verify: every file matches its checksum file");
            for v in checked {
                let sums: Vec<String> = v.checksum_files.iter().map(|c| file_name(c)).collect();
                let _ = writeln!(out, "      {} ({})", v.file.display(), sums.join(", "));
            }
        }
        let mut step = 1;
        if let Some(globals) = &self.globals {
            let _ = writeln!(out, "  {step}. globals (roles, tablespaces)");
            if !self.existing_roles.is_empty() {
                let _ = writeln!(
                    out,
                    "      existing roles, not created again: {}",
                    quoted_list(&self.existing_roles)
                );
            }
            write_sql_step(&mut out, globals);
            step += 1;
        }
        for db in &self.databases {
            let _ = writeln!(
                out,
                "  {step}. database {:?}: {}, {} dump {}",
                db.name,
                db.action.name(),
                db.format.name(),
                db.dump.display()
            );
            if let DatabaseAction::Clean { objects } = &db.action {
                let _ = writeln!(
                    out,
                    "      it holds {objects}: pg_restore --clean drops what the dump holds first"
                );
            }
            write_sql_step(&mut out, &db.prepare);
            let decrypt = match &db.stream {
                Some(source) => format!(
                    "decrypt {} (in memory{}) | ",
                    shell_words::quote(&source.file.display().to_string()),
                    source
                        .plain_checksum
                        .as_ref()
                        .map(|c| format!(
                            ", plaintext checked against {}",
                            file_name(&c.checksum_file)
                        ))
                        .unwrap_or_default()
                ),
                None => String::new(),
            };
            match &db.load.decompress {
                Some(decompress) => {
                    let _ = writeln!(
                        out,
                        "      $ {decrypt}{} | {}",
                        decompress.shell_line(),
                        db.load.command.shell_line()
                    );
                }
                None => {
                    let _ = writeln!(out, "      $ {decrypt}{}", db.load.command.shell_line());
                }
            }
            step += 1;
        }
        if !self.unapplied.is_empty() {
            let _ = writeln!(out, "  not applied (apply by hand if wanted):");
            for path in &self.unapplied {
                let _ = writeln!(out, "      {}", path.display());
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(jobs: u32, version: Option<ServerVersion>) -> CommandSettings {
        CommandSettings {
            bin_directory: "/pg/bin".into(),
            maintenance_db: "postgres".into(),
            jobs,
            pg_restore_version: version,
        }
    }

    #[test]
    fn load_commands_per_format() {
        let v15 = Some(ServerVersion(150004));
        let (custom, note) = load_step(
            &settings(4, v15),
            "x=y z",
            Path::new("/b/x.dump"),
            DumpFormat::Custom,
            false,
        );
        assert_eq!(note, None);
        assert_eq!(custom.command.program, PathBuf::from("/pg/bin/pg_restore"));
        assert_eq!(
            custom.command.args,
            [
                "-d",
                "dbname='x=y z'",
                "-w",
                "--exit-on-error",
                "-j",
                "4",
                "/b/x.dump"
            ]
        );
        let (tar, note) = load_step(
            &settings(4, v15),
            "a",
            Path::new("/b/a.tar"),
            DumpFormat::Tar,
            true,
        );
        assert_eq!(
            tar.command.args,
            [
                "-d",
                "dbname=a",
                "-w",
                "--exit-on-error",
                "--clean",
                "--if-exists",
                "/b/a.tar"
            ]
        );
        assert!(note.unwrap().contains("one job"));
        let (plain, _) = load_step(
            &settings(4, v15),
            "a",
            Path::new("/b/a.sql"),
            DumpFormat::Plain(PlainCompression::None),
            false,
        );
        assert_eq!(plain.decompress, None);
        assert_eq!(
            plain.command.args,
            [
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                "dbname=a",
                "-f",
                "/b/a.sql"
            ]
        );
        let (gz, _) = load_step(
            &settings(1, v15),
            "a",
            Path::new("/b/a.sql.gz"),
            DumpFormat::Plain(PlainCompression::Gzip),
            false,
        );
        let decompress = gz.decompress.unwrap();
        assert_eq!(decompress.args, ["-dc", "/b/a.sql.gz"]);
        assert_eq!(gz.command.args.last().map(String::as_str), Some("-"));
    }

    #[test]
    fn parallel_restore_of_streamed_custom_dumps() {
        let v = |major: u32, minor: u32| Some(ServerVersion(major * 10000 + minor));
        assert!(parallel_custom_ok(v(11, 0)));
        assert!(!parallel_custom_ok(v(12, 3)));
        assert!(parallel_custom_ok(v(12, 4)));
        assert!(parallel_custom_ok(v(15, 0)));
        assert_eq!(restore_jobs(DumpFormat::Custom, 4, v(12, 2)).0, 1);
        assert_eq!(restore_jobs(DumpFormat::Custom, 4, v(16, 2)), (4, None));
        assert_eq!(restore_jobs(DumpFormat::Directory, 0, v(16, 2)), (1, None));
        assert_eq!(restore_jobs(DumpFormat::Tar, 1, v(16, 2)), (1, None));
    }

    #[test]
    fn streamed_loads_for_encrypted_sets() {
        let v15 = Some(ServerVersion(150004));
        let custom = stream_load_step(&settings(4, v15), "b1", DumpFormat::Custom, false).unwrap();
        assert_eq!(
            custom.command.args,
            [
                "-d",
                "dbname=b1",
                "-w",
                "--exit-on-error",
                "--format=custom"
            ]
        );
        let gz = stream_load_step(
            &settings(4, v15),
            "b1",
            DumpFormat::Plain(PlainCompression::Zstd),
            false,
        )
        .unwrap();
        assert_eq!(gz.decompress.unwrap().args, ["-dc"]);
        assert_eq!(gz.command.args.last().map(String::as_str), Some("-"));
        assert_eq!(
            stream_load_step(&settings(4, v15), "b1", DumpFormat::Directory, false),
            None
        );
    }

    #[test]
    fn bare_create() {
        assert_eq!(
            bare_create_database("a\"b"),
            "CREATE DATABASE \"a\"\"b\" TEMPLATE template0;\n"
        );
    }
}
