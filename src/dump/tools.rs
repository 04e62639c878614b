//! The argument vectors of the client tools pgback runs (pg_dump, pg_dumpall), built by pure
//! functions for the version [`crate::programs`] probed.

use std::path::Path;

use crate::config::{DatabaseDumpSettings, DumpConfig};
use crate::programs::{conninfo_dbname, Tools, UnusableTool};
use crate::server::ServerVersion;
use crate::values::{Compression, Format};

/// Checks every `compress_level` of the run (the global one and each database's) against
/// this pg_dump, before anything is dumped.
pub fn check_compression(tools: &Tools, dump: &DumpConfig) -> Result<(), UnusableTool> {
    let levels = std::iter::once(&dump.compress_level).chain(
        dump.databases
            .values()
            .filter_map(|db| db.compress_level.as_ref()),
    );
    for level in levels {
        compress_arg(level, tools.version).map_err(|reason| UnusableTool {
            program: tools.pg_dump.clone(),
            reason,
        })?;
    }
    Ok(())
}

/// The first pg_dump that takes `-Z method[:detail]`, with lz4 and zstd.
pub const PG_DUMP_COMPRESSION_METHODS: ServerVersion = ServerVersion(160000);

/// The argument of `--compress` for this pg_dump, or `None` for pg_dump's default. Older
/// pg_dumps take a level only: `gzip[:N]` becomes `N` (gzip's default 6 without one) and
/// `none` becomes `0`; lz4 and zstd, or a detail other than a level, need pg_dump 16.
pub fn compress_arg(
    compression: &Compression,
    version: ServerVersion,
) -> Result<Option<String>, String> {
    let Compression::Method { method, detail } = compression else {
        return Ok(compression.pg_dump_arg());
    };
    if version >= PG_DUMP_COMPRESSION_METHODS {
        return Ok(compression.pg_dump_arg());
    }
    let too_old = || {
        format!(
            "-Z {compression} needs pg_dump {} or later (this one is {version}); -Z 0..9 (gzip) \
             works with any",
            PG_DUMP_COMPRESSION_METHODS.major()
        )
    };
    let level = match (method.as_str(), detail.as_deref()) {
        ("none", _) => "0",
        ("gzip", None) => "6",
        ("gzip", Some(level)) if level.parse::<u8>().is_ok_and(|l| l <= 9) => level,
        _ => return Err(too_old()),
    };
    Ok(Some(level.to_string()))
}

/// pg_dump's arguments for one database (the database itself goes in `PGDATABASE`). Output:
/// stdout for every format but directory, which is written to `directory_target`.
pub fn pg_dump_args(
    settings: &DatabaseDumpSettings,
    version: ServerVersion,
    directory_target: Option<&Path>,
) -> Vec<String> {
    let mut args = vec![format!("-F{}", settings.format.letter()), "-w".to_string()];
    if settings.format == Format::Directory {
        if let Some(target) = directory_target {
            args.push(format!("--file={}", target.display()));
        }
        // pg_dump -j needs 9.3+.
        if settings.parallel_backup_jobs > 1 && version >= ServerVersion(90300) {
            args.push(format!("--jobs={}", settings.parallel_backup_jobs));
        }
    }
    for (flag, values) in [
        ("--schema", &settings.schemas),
        ("--exclude-schema", &settings.exclude_schemas),
        ("--table", &settings.tables),
        ("--exclude-table", &settings.exclude_tables),
    ] {
        for value in values {
            args.push(format!("{flag}={value}"));
        }
    }
    match settings.with_blobs {
        Some(true) => args.push("-b".into()),
        // -B appeared in pg_dump 10.
        Some(false) if version.num() >= 100000 => args.push("-B".into()),
        _ => {}
    }
    if settings.format != Format::Tar {
        // Tools::check_compression refused what this pg_dump cannot do; should it not have
        // run, pg_dump gets the value as given and refuses it itself (never a silent default).
        let arg = compress_arg(&settings.compress_level, version)
            .unwrap_or_else(|_| settings.compress_level.pg_dump_arg());
        if let Some(level) = arg {
            args.push(format!("--compress={level}"));
        }
    }
    args.extend(settings.pg_dump_options.iter().cloned());
    args
}

/// pg_dumpall's arguments for the globals (roles, tablespaces), to stdout; the connection comes
/// from the environment, the database to connect to from `-l`.
pub fn pg_dumpall_args(
    maintenance_db: &str,
    no_role_passwords: bool,
    version: ServerVersion,
) -> Vec<String> {
    let mut args = vec![
        "-g".to_string(),
        "-w".to_string(),
        format!("--database={}", conninfo_dbname(maintenance_db)),
    ];
    // --no-role-passwords appeared in 10.
    if no_role_passwords && version.num() >= 100000 {
        args.push("--no-role-passwords".into());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DumpConfig;
    use crate::values::Compression;

    #[test]
    fn pg_dump_argv() {
        let mut dump = DumpConfig::default();
        let v15 = ServerVersion(150004);
        assert_eq!(
            pg_dump_args(&dump.for_database("x"), v15, None),
            ["-Fc", "-w"]
        );
        dump.format = Format::Directory;
        dump.parallel_backup_jobs = 4;
        dump.compress_level = Compression::Level(5);
        dump.pg_dump_options = "--no-owner".into();
        let mut s = dump.for_database("x");
        s.schemas = vec!["-evil schema".into()];
        s.with_blobs = Some(false);
        assert_eq!(
            pg_dump_args(&s, v15, Some(Path::new("/b/x.d.partial"))),
            [
                "-Fd",
                "-w",
                "--file=/b/x.d.partial",
                "--jobs=4",
                "--schema=-evil schema",
                "-B",
                "--compress=5",
                "--no-owner"
            ]
        );
        s.format = Format::Tar;
        assert_eq!(
            pg_dump_args(&s, ServerVersion(90600), None),
            ["-Ft", "-w", "--schema=-evil schema", "--no-owner"]
        );
    }

    #[test]
    fn compression_for_each_pg_dump() {
        let v = |major: u32| ServerVersion(major * 10000);
        let arg = |text: &str, major| {
            let compression: Compression = text.parse().unwrap();
            compress_arg(&compression, v(major))
        };
        assert_eq!(arg("-1", 15), Ok(None));
        assert_eq!(arg("5", 15), Ok(Some("5".into())));
        assert_eq!(arg("gzip:3", 15), Ok(Some("3".into())));
        assert_eq!(arg("gzip", 15), Ok(Some("6".into())));
        assert_eq!(arg("none", 12), Ok(Some("0".into())));
        assert_eq!(arg("gzip:3", 16), Ok(Some("gzip:3".into())));
        assert_eq!(
            arg("zstd:level=9,long", 17),
            Ok(Some("zstd:level=9,long".into()))
        );
        for lacking in ["zstd", "lz4:4", "gzip:level=3"] {
            let reason = arg(lacking, 15).unwrap_err();
            assert!(reason.contains("needs pg_dump 16 or later"), "{reason}");
            assert!(reason.contains("this one is 15.0"), "{reason}");
        }
        let dump = DumpConfig {
            compress_level: "lz4".parse().unwrap(),
            ..Default::default()
        };
        let tools = Tools {
            pg_dump: "pg_dump".into(),
            pg_dumpall: "pg_dumpall".into(),
            version: v(15),
        };
        assert!(check_compression(&tools, &dump).is_err());
        let v16 = Tools {
            version: v(16),
            ..tools
        };
        assert!(check_compression(&v16, &dump).is_ok());
    }

    #[test]
    fn pg_dumpall_argv() {
        let v15 = ServerVersion(150000);
        assert_eq!(
            pg_dumpall_args("post'gres", true, v15),
            [
                "-g",
                "-w",
                "--database=dbname='post\\'gres'",
                "--no-role-passwords"
            ]
        );
        assert_eq!(
            pg_dumpall_args("postgres", true, ServerVersion(90600)).len(),
            3
        );
    }
}
