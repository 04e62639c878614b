//! The commands of a restore plan: psql, pg_restore and the decompressors, their argument
//! vectors built by pure functions from the dump's format, the jobs asked for, pg_restore's
//! version and the target's: pg_restore 17+ into a server 10 to 16 writes a script
//! (`pg_restore -f -`) that psql runs, without the `SET transaction_timeout` those servers reject.

use std::path::{Path, PathBuf};

use super::exec::ToolCommand;
use super::set::{DumpFormat, PlainCompression};
use crate::programs::{conninfo_dbname, tool_path};
use crate::server::{quote_ident, ServerVersion};

/// How the data of one database is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadStep {
    /// What is piped into psql: the decompressor of a compressed plain dump, or
    /// `pg_restore -f -` writing the script of a custom, directory or tar dump.
    pub producer: Option<ToolCommand>,
    /// The script's `SET transaction_timeout = 0;` is left out on its way into psql.
    pub without_transaction_timeout: bool,
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
    /// The target server's version, when it was read.
    pub server_version: Option<ServerVersion>,
}

/// The first major whose pg_restore writes `SET transaction_timeout = 0;` (a setting 17 added).
pub const TRANSACTION_TIMEOUT_MAJOR: u32 = 17;

/// Whether pg_restore must write a script for psql instead of restoring itself: pg_restore 17+
/// always sets `transaction_timeout`, which a server before 17 rejects, and only the script
/// lets that line be left out.
pub fn restores_as_script(
    pg_restore: Option<ServerVersion>,
    server: Option<ServerVersion>,
) -> bool {
    matches!(
        (pg_restore, server),
        (Some(tool), Some(server))
            if tool.num() >= TRANSACTION_TIMEOUT_MAJOR * 10000
                && server.num() < TRANSACTION_TIMEOUT_MAJOR * 10000
    )
}

/// Whether a plain dump must go through the filter: pg_dump 17+ writes `SET
/// transaction_timeout = 0;` into every plain dump's header, also of an older server, and a
/// server before 17 rejects it (psql stops there with `ON_ERROR_STOP`). The filter drops only
/// that header line, so it is safe whichever pg_dump wrote the file.
pub fn plain_needs_filter(server: Option<ServerVersion>) -> bool {
    server.is_some_and(|server| server.num() < TRANSACTION_TIMEOUT_MAJOR * 10000)
}

/// Why a database restores as a script, for the plan's notes.
fn script_note(settings: &CommandSettings, dbname: &str, jobs: u32) -> String {
    let tool = settings
        .pg_restore_version
        .map(|v| v.to_string())
        .unwrap_or_default();
    let server = settings
        .server_version
        .map(ServerVersion::major)
        .unwrap_or(0);
    let jobs = match jobs > 1 {
        true => format!(", one job instead of {jobs} (a script is one stream)"),
        false => String::new(),
    };
    format!(
        "{dbname:?}: pg_restore {tool} always sets transaction_timeout, which PostgreSQL {server} rejects: \
         its script (pg_restore -f -) goes into psql without that line{jobs}"
    )
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
            let filtered = plain_needs_filter(settings.server_version);
            // Filtered, psql reads the file from stdin (the restore opens it).
            let file = (compression == PlainCompression::None && !filtered).then_some(dump);
            (
                LoadStep {
                    producer: decompress,
                    without_transaction_timeout: filtered,
                    command: psql_command(settings, dbname, file),
                },
                None,
            )
        }
        _ if restores_as_script(settings.pg_restore_version, settings.server_version) => {
            let source = dump.display().to_string();
            (
                script_load_step(settings, dbname, clean, source),
                Some(script_note(settings, dbname, settings.jobs)),
            )
        }
        _ => {
            let (jobs, note) = restore_jobs(format, settings.jobs, settings.pg_restore_version);
            let source = dump.display().to_string();
            (
                LoadStep {
                    producer: None,
                    without_transaction_timeout: false,
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
/// no stream (`None`): its files would be decrypted one by one. pg_restore 17+ into a server
/// before 17 writes the script from stdin for psql, as [`load_step`] does from the file.
pub fn stream_load_step(
    settings: &CommandSettings,
    dbname: &str,
    format: DumpFormat,
    clean: bool,
) -> Option<(LoadStep, Option<String>)> {
    match format {
        DumpFormat::Directory => None,
        DumpFormat::Plain(compression) => Some((
            LoadStep {
                producer: compression
                    .decompressor()
                    .map(|program| ToolCommand::new(PathBuf::from(program), vec!["-dc".into()])),
                without_transaction_timeout: plain_needs_filter(settings.server_version),
                command: psql_command(settings, dbname, None),
            },
            None,
        )),
        DumpFormat::Custom | DumpFormat::Tar
            if restores_as_script(settings.pg_restore_version, settings.server_version) =>
        {
            let source = format!("--format={}", format.name());
            Some((
                script_load_step(settings, dbname, clean, source),
                Some(script_note(settings, dbname, 1)),
            ))
        }
        DumpFormat::Custom | DumpFormat::Tar => Some((
            LoadStep {
                producer: None,
                without_transaction_timeout: false,
                command: pg_restore_command(
                    settings,
                    dbname,
                    1,
                    clean,
                    format!("--format={}", format.name()),
                ),
            },
            None,
        )),
    }
}

/// `pg_restore -f - [--clean --if-exists] <source> | psql ... -f -`, the script's
/// `SET transaction_timeout = 0;` left out between them. pg_restore connects to nothing:
/// `-d`, `-w`, `--exit-on-error` and `-j` do not apply to a script; psql's ON_ERROR_STOP
/// stops at the first error.
fn script_load_step(
    settings: &CommandSettings,
    dbname: &str,
    clean: bool,
    source: String,
) -> LoadStep {
    let mut args = vec!["-f".to_string(), "-".into()];
    if clean {
        args.push("--clean".into());
        args.push("--if-exists".into());
    }
    args.push(source);
    LoadStep {
        producer: Some(ToolCommand::new(
            tool_path(&settings.bin_directory, "pg_restore"),
            args,
        )),
        without_transaction_timeout: true,
        command: psql_command(settings, dbname, None),
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
            server_version: Some(ServerVersion(150_004)),
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
        // Into 17+, psql reads the file itself; before 17 it goes through the filter (below).
        let into_17 = CommandSettings {
            server_version: Some(ServerVersion(170_002)),
            ..settings(4, v15)
        };
        let (plain, _) = load_step(
            &into_17,
            "a",
            Path::new("/b/a.sql"),
            DumpFormat::Plain(PlainCompression::None),
            false,
        );
        assert_eq!(plain.producer, None);
        assert!(!plain.without_transaction_timeout);
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
        let decompress = gz.producer.unwrap();
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
        let (custom, note) =
            stream_load_step(&settings(4, v15), "b1", DumpFormat::Custom, false).unwrap();
        assert_eq!(note, None);
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
        .unwrap()
        .0;
        assert_eq!(gz.producer.unwrap().args, ["-dc"]);
        assert_eq!(gz.command.args.last().map(String::as_str), Some("-"));
        assert_eq!(
            stream_load_step(&settings(4, v15), "b1", DumpFormat::Directory, false),
            None
        );
    }

    #[test]
    fn pg_restore_17_and_later_into_16_and_earlier_writes_a_script() {
        let tool = |major: u32| Some(ServerVersion(major * 10000 + 1));
        let server = |num| Some(ServerVersion(num));
        assert!(restores_as_script(tool(17), server(160_009)));
        assert!(restores_as_script(tool(18), server(100_023)));
        assert!(!restores_as_script(tool(18), server(170_005)));
        assert!(!restores_as_script(tool(16), server(100_023)));
        assert!(!restores_as_script(None, server(100_023)));
        assert!(!restores_as_script(tool(18), None));

        let mut into_14 = settings(4, tool(18));
        into_14.server_version = server(140_013);
        let (custom, note) = load_step(
            &into_14,
            "x=y z",
            Path::new("/b/x.dump"),
            DumpFormat::Custom,
            true,
        );
        let producer = custom.producer.unwrap();
        assert_eq!(producer.program, PathBuf::from("/pg/bin/pg_restore"));
        assert_eq!(
            producer.args,
            ["-f", "-", "--clean", "--if-exists", "/b/x.dump"]
        );
        assert!(custom.without_transaction_timeout);
        assert_eq!(custom.command.program, PathBuf::from("/pg/bin/psql"));
        assert_eq!(
            custom.command.args,
            [
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                "dbname='x=y z'",
                "-f",
                "-"
            ]
        );
        assert_eq!(
            note.unwrap(),
            "\"x=y z\": pg_restore 18.1 always sets transaction_timeout, which PostgreSQL 14 \
             rejects: its script (pg_restore -f -) goes into psql without that line, one job \
             instead of 4 (a script is one stream)"
        );
        let (directory, _) = load_step(
            &into_14,
            "a",
            Path::new("/b/a.d"),
            DumpFormat::Directory,
            false,
        );
        assert_eq!(directory.producer.unwrap().args, ["-f", "-", "/b/a.d"]);
        let (plain, note) = load_step(
            &into_14,
            "a",
            Path::new("/b/a.sql"),
            DumpFormat::Plain(PlainCompression::None),
            false,
        );
        // pg_dump 17+ writes the line into plain dumps too: filtered, read from stdin.
        assert_eq!(
            (plain.producer, plain.without_transaction_timeout, note),
            (None, true, None)
        );
        assert!(!plain.command.args.contains(&"/b/a.sql".to_string()));
        assert!(plain_needs_filter(Some(ServerVersion(160004))));
        assert!(!plain_needs_filter(Some(ServerVersion(170000))));
        assert!(!plain_needs_filter(None));
        let (tar, note) = stream_load_step(&into_14, "a", DumpFormat::Tar, false).unwrap();
        assert_eq!(tar.producer.unwrap().args, ["-f", "-", "--format=tar"]);
        assert!(tar.without_transaction_timeout);
        assert!(!note.unwrap().contains("one job"));
    }

    #[test]
    fn bare_create() {
        assert_eq!(
            bare_create_database("a\"b"),
            "CREATE DATABASE \"a\"\"b\" TEMPLATE template0;\n"
        );
    }
}
