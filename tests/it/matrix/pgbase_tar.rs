//! `pgbase -F t` packed on the way, on every major: client-side zstd and age encryption
//! under pgbench load (checksum files of the ciphertext on disk, one file decrypted with the
//! age CLI, the backup directory proven by pgdrill as it is); client-side lz4 and gzip read
//! by `lz4 -d` and `gzip -d`; `-Z server-gzip` on 15+ and its refusal on older servers.

use std::fs;
use std::path::Path;

use crate::cluster::{self, Cluster, ClusterOptions};
use crate::crypt::keygen;
use crate::matrix::drill::{loaded_source, pgdrill};
use crate::matrix::pgbase::{
    fetched_verifybackup, major, names_in, prove_with, slots, tar_backup, tar_backup_under_load,
    verify_backup, with_tablespace,
};
use crate::util::{self, TestCommand};

/// The files of a tar backup, each archive with `suffix`, the manifest with `sealed`
/// (`.age` or nothing), and their checksum files.
fn expected_files(source: &Cluster, suffix: &str, sealed: &str) -> Vec<String> {
    let mut names = vec![];
    for archive in ["base.tar", "pg_wal.tar"] {
        names.push(format!("{archive}{suffix}"));
        names.push(format!("{archive}{suffix}.sha256"));
    }
    if major(source) >= 13 {
        names.push(format!("backup_manifest{sealed}"));
        names.push(format!("backup_manifest{sealed}.sha256"));
    }
    names.sort();
    names
}

fn check_sums(out: &Path, names: &[String]) {
    let sums: Vec<&String> = names.iter().filter(|n| n.ends_with(".sha256")).collect();
    TestCommand::tool("sha256sum")
        .arg("-c")
        .args(&sums)
        .current_dir(out)
        .run()
        .assert_ok("sha256sum -c");
}

/// `age -d -i IDENTITY -o OUT IN`, the CLI.
fn age_decrypt(identity: &Path, encrypted: &Path, plain: &Path) {
    util::tool(
        "age",
        &[
            "-d".as_ref(),
            "-i".as_ref(),
            identity.as_os_str(),
            "-o".as_ref(),
            plain.as_os_str(),
            encrypted.as_os_str(),
        ],
    );
}

#[test]
fn a_zstd_encrypted_tar_backup_streamed_under_load_restores() {
    let keys = cluster::scratch_dir();
    let (identity, public) = keygen(keys.path(), "backup.key");
    let (source, scratch, out, committed) =
        tar_backup_under_load(&["-Z", "zstd:3", "--encrypt", "--cipher-public-key", &public]);
    let expected = expected_files(&source, ".zst.age", ".age");
    assert_eq!(names_in(&out), expected);
    check_sums(&out, &expected);

    // One file with the age CLI.
    let listing = scratch.path().join("base.tar.zst");
    age_decrypt(&identity, &out.join("base.tar.zst.age"), &listing);
    let names = util::tool(
        "tar",
        &["--zstd".as_ref(), "-tf".as_ref(), listing.as_os_str()],
    );
    assert!(names.lines().any(|l| l == "backup_label"), "{names}");
    if major(&source) >= 13 {
        let manifest = scratch.path().join("backup_manifest");
        age_decrypt(&identity, &out.join("backup_manifest.age"), &manifest);
        let text = fs::read_to_string(&manifest).unwrap();
        assert!(
            text.contains("\"PostgreSQL-Backup-Manifest-Version\""),
            "{text}"
        );
    }

    // pgdrill takes the backup directory as it is: no --wal-archive, nothing written into it.
    let before = names_in(&out);
    let key = ["--cipher-identity", identity.to_str().unwrap()];
    prove_with(&source, &out, &key, committed, &[]);
    assert_eq!(names_in(&out), before, "pgdrill wrote into the backup");

    // A damaged file is found by its checksum before anything is unpacked.
    let wal = out.join("pg_wal.tar.zst.age");
    let mut bytes = fs::read(&wal).unwrap();
    bytes.push(0);
    fs::write(&wal, bytes).unwrap();
    let tmp = cluster::scratch_dir();
    let mut args = vec![out.to_str().unwrap()];
    args.extend(key);
    let drill = pgdrill(&source, tmp.path(), &args);
    assert_eq!(drill.code(), 1, "{}", drill.describe());
    let error = drill.report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("does not match its checksum"),
        "{}",
        drill.describe()
    );

    // A backup pgbase did not finish is refused, whatever else it holds.
    fs::write(out.join("pgbase.incomplete"), b"").unwrap();
    let drill = pgdrill(&source, tmp.path(), &args);
    assert_eq!(drill.code(), 1, "{}", drill.describe());
    let error = drill.report["error"].as_str().unwrap_or_default();
    assert!(error.contains("did not finish"), "{}", drill.describe());
}

/// The entries of the tar stream that `command` (a decompressor writing to stdout) reads.
fn listing(command: &str, archive: &Path) -> Vec<String> {
    let script = format!("{command} {} | tar -tf -", archive.display());
    let names = util::tool("sh", &["-ec".as_ref(), script.as_ref()]);
    names.lines().map(str::to_owned).collect()
}

#[test]
fn client_lz4_and_gzip_are_read_by_their_clis_server_gzip_needs_15() {
    let source = Cluster::start(ClusterOptions::default().without_archive());
    let scratch = cluster::scratch_dir();
    for (spec, file, command) in [
        ("lz4", "base.tar.lz4", "lz4 -dc"),
        ("1", "base.tar.gz", "gzip -dc"),
    ] {
        let out = scratch.path().join(spec);
        tar_backup(&source, &out, &["-X", "fetch", "-Z", spec])
            .run()
            .assert_ok(&format!("pgbase -Z {spec}"));
        assert!(out.join(format!("{file}.sha256")).is_file());
        let names = listing(command, &out.join(file));
        assert!(names.iter().any(|l| l == "backup_label"), "{names:?}");
    }

    let out = scratch.path().join("backup");
    let run = tar_backup(&source, &out, &["-X", "fetch", "-Z", "server-gzip:1"]).run();
    if major(&source) < 15 {
        run.assert_code(2, "pgbase -Z server-gzip before 15")
            .assert_stderr("-Z server-... needs PostgreSQL 15 or later")
            .assert_stderr("hint: compress on this side instead");
        assert!(!out.exists(), "a refused run left {}", out.display());
    } else {
        run.assert_ok("pgbase -Z server-gzip");
        server_gzip_is_a_tar_with_its_wal(&out);
    }
}

/// What `-Z server-gzip:1 -X fetch` wrote: `base.tar.gz` (with the fetched WAL) and the
/// manifest, each with its checksum file.
fn server_gzip_is_a_tar_with_its_wal(out: &Path) {
    let mut expected = vec!["base.tar.gz".to_owned(), "base.tar.gz.sha256".to_owned()];
    expected.extend([
        "backup_manifest".to_owned(),
        "backup_manifest.sha256".to_owned(),
    ]);
    expected.sort();
    assert_eq!(names_in(out), expected);
    check_sums(out, &expected);
    let names = listing("gzip -dc", &out.join("base.tar.gz"));
    assert!(names.iter().any(|l| l == "backup_label"), "{names:?}");
    assert!(
        names.iter().any(|l| l.starts_with("pg_wal/0000000")),
        "{names:?}"
    );
}

#[test]
fn a_tar_backup_with_a_tablespace_is_proven_by_pgdrill_and_pg_verifybackup() {
    let scratch = cluster::scratch_dir();
    let source = loaded_source(1);
    let live_tablespace = with_tablespace(&source);
    let committed = source.pgbench_history_rows();
    let oid = source.psql("SELECT oid FROM pg_tablespace WHERE spcname = 'ts'");
    let out = scratch.path().join("backup");
    tar_backup(&source, &out, &["-X", "stream"])
        .run()
        .assert_ok("pgbase -F t with a tablespace");
    assert_eq!(slots(&source), "0");
    let names = names_in(&out);
    for name in [format!("{oid}.tar"), format!("{oid}.tar.sha256")] {
        assert!(names.contains(&name), "{name} missing: {names:?}");
    }
    if major(&source) >= 13 {
        // 18's tool reads tar backups, uncompressed or gzip (the wheel has no lz4 or zstd).
        let gzipped = scratch.path().join("gzipped");
        tar_backup(&source, &gzipped, &["-X", "stream", "-Z", "gzip:1"])
            .run()
            .assert_ok("pgbase -F t -Z gzip:1 with a tablespace");
        assert!(names_in(&gzipped).contains(&format!("{oid}.tar.gz")));
        for dir in [&out, &gzipped] {
            let verified = verify_backup(&source, dir, true);
            eprintln!("pg_verifybackup {}: {verified:?}", dir.display());
            // Only 18's tool reads a tar backup: required wherever scripts/fetch-postgres ran
            // (scripts/test runs it first), but for 17 (see verify_backup).
            if major(&source) != 17 && fetched_verifybackup().is_file() {
                assert!(
                    verified.is_some(),
                    "no pg_verifybackup for {}",
                    major(&source)
                );
            }
        }
    }
    // Dropped after the backup: the drill can only find the rows in <oid>.tar.
    source.psql("DROP TABLE ts_rows");
    let before = names_in(live_tablespace.path());
    prove_with(
        &source,
        &out,
        &[],
        committed,
        &["SELECT count(*) = 1000 FROM ts_rows"],
    );
    assert_eq!(names_in(&out), names, "pgdrill wrote into the backup");
    assert_eq!(names_in(live_tablespace.path()), before);
}
