//! The commands of a restore plan: psql, pg_restore and the decompressors, their argument
//! vectors built by pure functions from the dump's format, the jobs asked for and pg_restore's
//! version.

use std::path::{Path, PathBuf};

use super::exec::ToolCommand;
use super::set::{DumpFormat, PlainCompression};
use crate::programs::{conninfo_dbname, tool_path};
use crate::server::quote_ident;
use crate::server::ServerVersion;

/// How the data of one database is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadStep {
    /// The decompressor piped into psql, for compressed plain dumps.
    pub decompress: Option<ToolCommand>,
    /// pg_restore or psql.
    pub command: ToolCommand,
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
            let source = dump.display().to_string();
            (
                LoadStep {
                    decompress: None,
                    command: pg_restore_command(settings, dbname, jobs, clean, source),
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
        DumpFormat::Custom | DumpFormat::Tar => Some(LoadStep {
            decompress: None,
            command: pg_restore_command(
                settings,
                dbname,
                1,
                clean,
                format!("--format={}", format.name()),
            ),
        }),
    }
}

/// `pg_restore -d <db> -w --exit-on-error [-j N] [--clean --if-exists] <source>`, where the
/// source is the dump file or, for a dump on stdin, `--format=..`.
fn pg_restore_command(
    settings: &CommandSettings,
    dbname: &str,
    jobs: u32,
    clean: bool,
    source: String,
) -> ToolCommand {
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
    args.push(source);
    ToolCommand::new(tool_path(&settings.bin_directory, "pg_restore"), args)
}

/// `CREATE DATABASE <db> TEMPLATE template0;`, for a set without createdb.sql.
pub fn bare_create_database(dbname: &str) -> String {
    format!(
        "CREATE DATABASE {} TEMPLATE template0;\n",
        quote_ident(dbname)
    )
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
