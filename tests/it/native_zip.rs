//! `pgback --native -Z` (outside the matrix: the compression is pgback's own, the same on every
//! major; run on 10 to 18 through `PG_BINDIR`): the native fixture and a larger table dumped with
//! gzip, lz4 and zstd (and once encrypted), each set restored by `pgback --restore` with no
//! client tool reachable (pgback decompresses, loads natively) and compared with the source as
//! the fidelity test does; each file is what `gzip -d`, `lz4 -d` and `zstd -d` read, and one
//! is restored by `zstd -dc` and `psql -f`. A level the method does not take is refused.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::cluster::{self, Cluster, ClusterOptions};
use crate::matrix::native::{
    data_of, pgback, prefix, psql_file, schema_of, source_cluster, PASSPHRASE,
};
use crate::restore_dump::file_of;
use crate::util::TestCommand;

/// The databases dumped: the native fixture, and one table of 200,000 rows (many chunks of
/// the compressing reader).
const DATABASES: [&str; 2] = ["native", "zipbig"];

/// Each set: its directory, `-Z`, the suffix of its files, whether it is encrypted.
const SETS: [(&str, &str, &str, bool); 4] = [
    ("gzip", "gzip:1", ".sql.gz", false),
    ("lz4", "lz4", ".sql.lz4", false),
    ("zstd", "zstd:3", ".sql.zst", false),
    ("sealed", "5", ".sql.gz.age", true),
];

/// `program -dc file` (a decompressing CLI), its stdout.
fn decompressed_by_cli(program: &str, file: &Path) -> Vec<u8> {
    let output = Command::new(program).arg("-dc").arg(file).output().unwrap();
    assert!(
        output.status.success(),
        "{program} -dc {}: {output:?}",
        file.display()
    );
    output.stdout
}

/// The native dump of `db` in `dir`, uncompressed (never written so).
fn plain_dump_in(dir: &Path, db: &str) -> Option<String> {
    crate::dump::files_in(dir).into_iter().find(|name| {
        name.starts_with(&prefix(db)) && name.ends_with(".sql") && !name.ends_with(".createdb.sql")
    })
}

/// Drops what a restore created in `target`, for the next one.
fn drop_restored(target: &Cluster) {
    for db in DATABASES {
        target.psql(&format!("DROP DATABASE {db}"));
    }
    target.psql("DROP TABLESPACE nat_space");
}

#[test]
fn compressed_native_dumps_restore_without_client_tools() {
    let backups = cluster::scratch_dir();
    let space = backups.path().join("space");
    let source = source_cluster(&space);
    source.psql("CREATE DATABASE zipbig");
    source
        .try_psql_in(
            "zipbig",
            "CREATE TABLE big (id int PRIMARY KEY, note text); \
             INSERT INTO big SELECT g, repeat(md5(g::text), 1 + g % 3) \
             FROM generate_series(1, 200000) g",
        )
        .unwrap();

    // A level its method does not take: refused before anything is written.
    for (spec, needle) in [
        (
            "zstd:23",
            "invalid -Z \"zstd:23\": zstd levels are 1 to 22 (database \"native\")",
        ),
        ("lz4:3", "--native writes lz4 at its one (fast) level"),
    ] {
        let dir = backups
            .path()
            .join(format!("bad-{}", spec.replace(':', "-")));
        let refused = pgback(&source, &dir, &["--native", "-Z", spec, "native"], false);
        refused.assert_code(2, &format!("pgback --native -Z {spec}"));
        refused.assert_stderr(needle);
        refused.assert_stderr("hint: give -Z a level in the method's range");
        assert_eq!(crate::dump::files_in(&dir), Vec::<String>::new());
    }

    // Each set with no client tool reachable.
    let empty_path = backups.path().join("empty-path");
    std::fs::create_dir_all(&empty_path).unwrap();
    for (name, spec, suffix, sealed) in SETS {
        let dir = backups.path().join(name);
        let mut args = vec!["--native", "-Z", spec];
        if sealed {
            args.push("--encrypt");
        }
        args.extend(DATABASES);
        let run = match sealed {
            false => pgback(&source, &dir, &args, false),
            true => TestCommand::new(&source, "pgback")
                .args(["-d", &source.conninfo_socket()])
                .args(["-b", &dir.display().to_string(), "-S", "sha256"])
                .args(&args)
                .env("PGBK_CIPHER_PASS", PASSPHRASE)
                .env("PATH", &empty_path)
                .limit(Duration::from_secs(300))
                .run(),
        };
        run.assert_ok(&format!("pgback --native -Z {spec}"));
        for db in DATABASES {
            file_of(&dir, &prefix(db), suffix);
            assert_eq!(
                plain_dump_in(&dir, db),
                None,
                "{name}: no plain dump of {db}"
            );
        }
    }

    // What the CLIs read: the native dump, well smaller than its SQL (md5s: lz4 gets 0.6).
    for (name, program, suffix) in [
        ("gzip", "gzip", ".sql.gz"),
        ("lz4", "lz4", ".sql.lz4"),
        ("zstd", "zstd", ".sql.zst"),
    ] {
        let file = file_of(&backups.path().join(name), "zipbig_", suffix);
        let sql = decompressed_by_cli(program, &file);
        assert!(
            sql.starts_with(b"-- pgback native dump, format 1, marker "),
            "{program}: {:?}",
            String::from_utf8_lossy(&sql[..200.min(sql.len())])
        );
        assert!(sql.len() > 10_000_000, "{program}: {} bytes", sql.len());
        let packed = std::fs::metadata(&file).unwrap().len() as usize;
        assert!(
            packed * 3 < sql.len() * 2,
            "{program}: {packed} of {}",
            sql.len()
        );
    }

    // One tablespace directory serves one cluster at a time (the globals create it).
    source.psql("DROP TABLESPACE nat_space");
    let expected: Vec<(String, String)> = DATABASES
        .iter()
        .map(|db| (schema_of(&source, db), data_of(&source, db)))
        .collect();
    assert!(
        expected[1].1.contains("public.big 200000:"),
        "{:?}",
        expected[1]
    );
    let target = Cluster::start(ClusterOptions::default().without_archive());
    let compare = |how: &str| {
        for (db, (schema, data)) in DATABASES.iter().zip(&expected) {
            assert_eq!(
                &schema_of(&target, db),
                schema,
                "{db}: schema restored by {how}"
            );
            assert_eq!(&data_of(&target, db), data, "{db}: rows restored by {how}");
        }
    };
    for (name, spec, suffix, _) in SETS {
        let dir = backups.path().join(name);
        let restore = |extra: &[&str]| {
            TestCommand::new(&target, "pgback")
                .arg("--restore")
                .arg(&dir)
                .args(["-d", &target.conninfo_socket()])
                .args(extra)
                .env("PATH", &empty_path)
                .env("PGBK_CIPHER_PASS", PASSPHRASE)
                .limit(Duration::from_secs(300))
                .run()
        };
        let plan = restore(&["--dry-run"]);
        plan.assert_ok(&format!("pgback --restore --dry-run of the -Z {spec} set"));
        assert!(
            !plan.stdout.contains("$ "),
            "no command in the plan\n{plan}"
        );
        for db in DATABASES {
            let line = format!("native load (no psql): {}", prefix(db));
            assert!(plan.stdout.contains(&line), "{line:?}\n{plan}");
        }
        let method = if suffix.contains(".gz") { "gzip" } else { name };
        let line = format!("{suffix} (decompressed by pgback: {method}) into ");
        assert!(plan.stdout.contains(&line), "{line:?}\n{plan}");
        let restored = restore(&[]);
        restored.assert_ok(&format!("pgback --restore of the -Z {spec} set"));
        for db in DATABASES {
            restored.assert_stderr(&format!("[{db}] loaded natively: "));
        }
        compare(&format!("pgback --restore of -Z {spec}"));
        drop_restored(&target);
    }

    // The zstd set with the CLIs: zstd -dc, then psql -f.
    let dir = backups.path().join("zstd");
    psql_file(
        &target,
        "postgres",
        &file_of(&dir, "pg_globals_", ".sql"),
        false,
    );
    for db in DATABASES {
        psql_file(
            &target,
            "postgres",
            &file_of(&dir, &prefix(db), ".createdb.sql"),
            true,
        );
        let sql = backups.path().join(format!("{db}.sql"));
        let packed = file_of(&dir, &prefix(db), ".sql.zst");
        std::fs::write(&sql, decompressed_by_cli("zstd", &packed)).unwrap();
        psql_file(&target, db, &sql, true);
        std::fs::remove_file(&sql).unwrap();
    }
    compare("zstd -dc | psql -f");
}
