//! `pgbase` offsite and back (outside the matrix: 15 to 25 s a test; run on 10 to 18 through
//! `PG_BINDIR`): a zstd-compressed, age-encrypted tar backup
//! taken under pgbench load goes up to moto (S3) as it is written (`--json` and
//! `--metrics-file` say so), `pgbase --restore --download s3` fetches it into a new data
//! directory and pgdrill proves it; a tablespace laid out where `-T` says, proven by pgdrill;
//! the refusals of `--restore` (a backup pgbase did not finish, a checksum that does not match,
//! a non-empty `-D`, the live tablespace's directory, a store that cannot be written);
//! the recovery files written only when asked; a backup configured by `[base]` and
//! `[dump.remote]`; the purge of the old tar backups beside `-D` and on the store, never a
//! directory that is not a tar backup; the store killed mid-upload; a restore stopped by
//! SIGTERM (what it wrote removed, the backup untouched) and its retry.

use std::fs;
use std::path::Path;

use crate::cluster::{self, Cluster};
use crate::crypt::keygen;
use crate::docs::doc_block;
use crate::matrix::drill::loaded_source;
use crate::matrix::pgbase::{major, names_in, prove, slots, tar_backup, with_tablespace};
use crate::servers::{self, ByteTap, Server};
use crate::util::{Run, TestCommand};
use crate::watch::{parse_metrics, sample};

const S3_SECRET: &str = "moto-secret-pgbase-Tz64";

/// pgback's S3 flags for moto, the bucket `pgbase` under the prefix `site1`.
fn s3_flags(moto: &Server) -> Vec<String> {
    s3_flags_at(moto.port())
}

/// [`s3_flags`] through `port` (moto's, or a tap's).
fn s3_flags_at(port: u16) -> Vec<String> {
    [
        "--s3-endpoint",
        &format!("http://127.0.0.1:{port}"),
        "--s3-bucket=pgbase",
        "--s3-region=us-east-1",
        "--s3-key-id=AKIDPGBASE",
        "--s3-force-path=yes",
        "--upload-prefix=site1",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `pgbase ARGS` against `source` with the store's secret in the environment.
fn pgbase(source: &Cluster, args: &[String]) -> TestCommand {
    TestCommand::new(source, "pgbase")
        .args(args)
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
        .limit(crate::matrix::drill::PROGRAM_LIMIT)
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("--json: {e}\n{run}"))
}

/// The backup's name in docs/restore.md's example, and so the test's `-D`.
const DOC_BACKUP: &str = "base-2026-12-07";

/// The arguments of docs/restore.md's `pgbase --restore` line: its `-D` becomes `restored`,
/// its identity file `identity`.
fn doc_restore_args(restored: &Path, identity: &str) -> Vec<String> {
    let block = doc_block("pgbase-restore");
    let line = block
        .lines()
        .find(|l| l.starts_with("pgbase "))
        .unwrap_or_else(|| panic!("no pgbase line in {block}"));
    let mut words = shell_words::split(line).unwrap().into_iter().skip(1);
    let mut args = Vec::new();
    while let Some(word) = words.next() {
        match word.as_str() {
            "-D" => {
                words.next();
                args.extend(["-D".to_owned(), restored.display().to_string()]);
            }
            "--cipher-identity" => {
                words.next();
                args.extend(["--cipher-identity".to_owned(), identity.to_owned()]);
            }
            _ => args.push(word),
        }
    }
    assert!(args.iter().any(|a| a == DOC_BACKUP), "{line}");
    args
}

/// `args` as owned strings.
fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

#[test]
fn an_uploaded_encrypted_backup_is_restored_from_the_bucket_and_proven() {
    let moto = servers::moto(&["pgbase"]);
    let keys = cluster::scratch_dir();
    let (identity, public) = keygen(keys.path(), "backup.key");
    let identity = identity.to_str().unwrap();
    let source = loaded_source(1);
    let scratch = cluster::scratch_dir();
    let out = scratch.path().join(DOC_BACKUP);
    let metrics = scratch.path().join("pgbase.prom");
    source.psql("INSERT INTO marker VALUES ('before pgbase')");
    let load = source.start_pgbench_load(2, 1);
    let committed = source.pgbench_history_rows();
    let mut args = owned(&[
        "-D",
        out.to_str().unwrap(),
        "-F",
        "t",
        "-c",
        "fast",
        "-Z",
        "zstd:3",
        "--encrypt",
        "--cipher-public-key",
        &public,
        "--upload",
        "s3",
        "--json",
        "--metrics-file",
        metrics.to_str().unwrap(),
    ]);
    args.extend(s3_flags(&moto));
    let run = pgbase(&source, &args).run();
    load.stop();
    run.assert_ok("pgbase --upload s3");
    assert!(!run.stderr.contains(S3_SECRET), "a secret leaked:\n{run}");
    assert_eq!(slots(&source), "0", "the temporary slot outlived pgbase");
    let local = names_in(&out);
    assert!(!local.iter().any(|n| n == "pgbase.incomplete"), "{local:?}");
    let report = json(&run);
    // Every file but the manifest's plaintext went up: archives, manifest, checksum files.
    assert_eq!(report["upload"]["files"], local.len(), "{report:#}");
    assert_eq!(report["upload"]["store"], "s3", "{report:#}");
    assert!(report["bytes"].as_u64().unwrap_or(0) > 0, "{report:#}");
    let samples = parse_metrics(&source, &metrics);
    assert_eq!(
        sample(&samples, "safe_backup_last_run_success{program=pgbase}"),
        1.0
    );
    assert!(
        sample(
            &samples,
            "safe_backup_upload_success{program=pgbase,target=s3}"
        ) == 1.0
    );

    // Back from the bucket, as docs/restore.md says: verified, decrypted, decompressed, laid
    // out; pgdrill proves it.
    let restored = scratch.path().join("restored");
    let mut args = doc_restore_args(&restored, identity);
    args.push("--json".into());
    args.extend(s3_flags(&moto));
    let run = pgbase(&source, &args).run();
    run.assert_ok("pgbase --restore --download s3");
    let report = json(&run);
    assert_eq!(report["downloaded"], local.len(), "{report:#}");
    assert!(report["verified"].as_u64().unwrap_or(0) >= 2, "{report:#}");
    assert_eq!(report["major"], major(&source), "{report:#}");
    assert!(restored.join("backup_label").is_file());
    assert!(!restored.join("pgbase.incomplete").exists());
    assert!(
        !names_in(scratch.path())
            .iter()
            .any(|n| n.starts_with(".pgbase-download")),
        "the downloaded copy was left behind"
    );
    prove(&source, &restored, committed, &[]);

    // A store that refuses the upload: nothing is reported done, nothing left behind.
    let refused = scratch.path().join("refused");
    let mut args = owned(&["-D", refused.to_str().unwrap(), "-F", "t", "-X", "fetch"]);
    args.extend(["--upload".into(), "s3".into()]);
    args.extend(
        s3_flags(&moto)
            .into_iter()
            .map(|f| f.replace("--s3-bucket=pgbase", "--s3-bucket=no-such-bucket")),
    );
    let run = pgbase(&source, &args).run();
    assert_ne!(
        run.code, 0,
        "an upload into a missing bucket succeeded\n{run}"
    );
    assert!(run.stderr.contains("no-such-bucket"), "{run}");
    assert!(
        !refused.exists(),
        "a refused run left {}",
        refused.display()
    );
}

/// `pgbase --restore DIR -D TARGET EXTRA...` of a local backup.
fn restore_local(source: &Cluster, backup: &Path, target: &Path, extra: &[&str]) -> Run {
    let mut args = owned(&[
        "--restore",
        backup.to_str().unwrap(),
        "-D",
        target.to_str().unwrap(),
    ]);
    args.extend(owned(extra));
    pgbase(source, &args).run()
}

/// An old tar backup (a `base.tar` ten days old) beside the real ones, or a directory that is
/// not one.
fn fake_backup(dir: &Path, file: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(file), b"x").unwrap();
    TestCommand::tool("touch")
        .args(["-d", "10 days ago"])
        .arg(dir.join(file))
        .run()
        .assert_ok("touch -d");
}

#[test]
fn restore_lays_out_tablespaces_refuses_what_it_cannot_trust_and_purge_keeps_what_is_not_a_backup()
{
    let moto = servers::moto(&["pgbase"]);
    let relocated = cluster::scratch_dir();
    let source = loaded_source(1);
    let live_tablespace = with_tablespace(&source);
    let oid = source.psql("SELECT oid FROM pg_tablespace WHERE spcname = 'ts'");
    // -T OLD=<relocated>/NAME: each restore's tablespace in a new directory.
    let mapping = |name: &str| {
        format!(
            "{}={}",
            live_tablespace.path().display(),
            relocated.path().join(name).display()
        )
    };
    let scratch = cluster::scratch_dir();
    let out = scratch.path().join("backup");
    tar_backup(&source, &out, &["-X", "fetch", "-Z", "gzip:1"])
        .run()
        .assert_ok("pgbase -F t -Z gzip:1 with a tablespace");
    assert!(
        out.join(format!("{oid}.tar.gz.sha256")).is_file(),
        "{:?}",
        names_in(&out)
    );

    // The tablespace where -T says, the link to it; pgdrill proves it. No recovery file.
    let plain = scratch.path().join("plain");
    restore_local(&source, &out, &plain, &["-T", &mapping("plain")])
        .assert_ok("pgbase --restore -T");
    let target = relocated.path().join("plain");
    assert_eq!(
        fs::read_link(plain.join("pg_tblspc").join(&oid)).unwrap(),
        target
    );
    assert!(names_in(&target)[0].starts_with(&format!("PG_{}", major(&source))));
    assert!(!plain.join("recovery.signal").exists());
    assert!(!plain.join("recovery.conf").exists());
    cluster::chown_tree_to_server_user(&target);
    prove(&source, &plain, 0, &["SELECT count(*) = 1000 FROM ts_rows"]);

    // Without -T, the tablespace's own directory is the live server's: refused, nothing left.
    let unmapped = scratch.path().join("unmapped");
    restore_local(&source, &out, &unmapped, &[])
        .assert_code(2, "pgbase --restore onto the live tablespace")
        .assert_stderr("relocate the tablespace with -T");
    assert!(
        !unmapped.exists(),
        "a refused restore left {}",
        unmapped.display()
    );

    // Recovery files only when asked, in the form of the server's version.
    let asked = scratch.path().join("asked");
    let command = "cp '/archive/%f' %p";
    let run = restore_local(
        &source,
        &out,
        &asked,
        &[
            "-T",
            &mapping("asked"),
            "--recovery-signal",
            "--restore-command",
            command,
        ],
    );
    run.assert_ok("pgbase --restore --recovery-signal --restore-command");
    let line = "restore_command = 'cp ''/archive/%f'' %p'";
    if major(&source) >= 12 {
        assert!(asked.join("recovery.signal").is_file());
        let auto = fs::read_to_string(asked.join("postgresql.auto.conf")).unwrap();
        assert!(auto.lines().any(|l| l == line), "{auto}");
    } else {
        let conf = fs::read_to_string(asked.join("recovery.conf")).unwrap();
        assert!(conf.lines().any(|l| l == line), "{conf}");
    }

    // A non-empty -D.
    restore_local(&source, &out, &plain, &[])
        .assert_code(2, "pgbase --restore into a non-empty -D")
        .assert_stderr("exists but is not empty");

    // A damaged archive is found before anything is unpacked.
    let damaged = scratch.path().join("damaged");
    fs::create_dir(&damaged).unwrap();
    for name in names_in(&out) {
        fs::copy(out.join(&name), damaged.join(&name)).unwrap();
    }
    let archive = damaged.join(format!("{oid}.tar.gz"));
    let mut bytes = fs::read(&archive).unwrap();
    bytes.push(0);
    fs::write(&archive, bytes).unwrap();
    let target = scratch.path().join("target");
    restore_local(&source, &damaged, &target, &["-T", &mapping("damaged")])
        .assert_code(1, "pgbase --restore of a damaged backup")
        .assert_stderr("does not match its checksum");
    assert!(
        !target.exists(),
        "a refused restore wrote {}",
        target.display()
    );
    assert!(!relocated.path().join("damaged").exists());

    // A backup pgbase did not finish.
    fs::remove_dir_all(&damaged).unwrap();
    fs::write(out.join("pgbase.incomplete"), b"").unwrap();
    restore_local(&source, &out, &target, &[])
        .assert_code(1, "pgbase --restore of an unfinished backup")
        .assert_stderr("pgbase did not finish this backup");
    assert!(
        !target.exists(),
        "a refused restore wrote {}",
        target.display()
    );
    fs::remove_file(out.join("pgbase.incomplete")).unwrap();

    // Purge: an upload, then a second backup purging everything older than now but itself,
    // locally and on the store. A directory that is not a tar backup (a data directory, the
    // restored ones) stays, whatever its age.
    // The first from a configuration file: [base] and pgback's [dump.remote], a flag over it.
    let config_dir = cluster::scratch_dir();
    let config = config_dir.path().join("config.toml");
    fs::write(
        &config,
        format!(
            "[base]\nformat = \"t\"\nwal_method = \"fetch\"\ncompress = \"lz4\"\n\
             [dump.remote]\nupload = \"s3\"\ns3_endpoint = \"{}\"\ns3_bucket = \"pgbase\"\n\
             s3_region = \"us-east-1\"\ns3_key_id = \"AKIDPGBASE\"\ns3_force_path = true\n\
             upload_prefix = \"elsewhere\"\n",
            moto.url()
        ),
    )
    .unwrap();
    let args = owned(&["-D", "first", "--upload-prefix=site1", "--config"]);
    pgbase(&source, &args)
        .arg(&config)
        .current_dir(scratch.path())
        .run()
        .assert_ok("pgbase --config with [base] and [dump.remote]");
    let first = names_in(&scratch.path().join("first"));
    assert!(first.iter().any(|n| n == "base.tar.lz4"), "{first:?}");
    fake_backup(&scratch.path().join("old"), "base.tar.gz");
    fake_backup(&scratch.path().join("olddata"), "PG_VERSION");
    let newest = scratch.path().join("newest");
    let mut args = owned(&[
        "-D",
        newest.to_str().unwrap(),
        "-F",
        "t",
        "-X",
        "fetch",
        "--upload",
        "s3",
        "--purge-remote=yes",
        "--purge-older-than",
        "0",
        "--purge-min-keep",
        "1",
        "--json",
    ]);
    args.extend(s3_flags(&moto));
    let run = pgbase(&source, &args).run();
    run.assert_ok("pgbase --purge-older-than 0 --purge-min-keep 1");
    let purged: Vec<String> = json(&run)["purged"]
        .as_array()
        .unwrap_or_else(|| panic!("no purged list\n{run}"))
        .iter()
        .map(|p| p.as_str().unwrap_or_default().to_owned())
        .collect();
    let left = names_in(scratch.path());
    assert_eq!(left, ["asked", "newest", "olddata", "plain"], "{purged:?}");
    assert!(
        purged.iter().any(|p| p.contains("site1/first/base.tar")),
        "the store's older backup was not purged: {purged:?}"
    );
    assert!(!purged.iter().any(|p| p.contains("newest")), "{purged:?}");
    let from_store = |name: &str| {
        let mut args = owned(&["--restore", name, "--download", "s3", "-T", &mapping(name)]);
        args.extend(["-D".to_owned(), target.display().to_string()]);
        args.extend(s3_flags(&moto));
        pgbase(&source, &args).run()
    };
    from_store("first")
        .assert_code(1, "pgbase --restore of a purged backup")
        .assert_stderr("holds nothing");
    from_store("newest").assert_ok("pgbase --restore of the newest backup from the store");
    assert_eq!(
        fs::read_link(target.join("pg_tblspc").join(&oid)).unwrap(),
        relocated.path().join("newest")
    );
}

#[test]
fn a_store_killed_mid_upload_fails_the_run_and_keeps_the_local_backup() {
    let mut moto = servers::moto(&["pgbase"]);
    let source = Cluster::start(crate::cluster::ClusterOptions::default().without_archive());
    source.psql(
        "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g + 1)::text) AS s \
         FROM generate_series(1, 400000) g",
    );
    let scratch = cluster::scratch_dir();
    let out = scratch.path().join("backup");
    let metrics = scratch.path().join("pgbase.prom");
    let tap = ByteTap::new(moto.port(), 6 * 1024 * 1024);
    let mut args = owned(&[
        "-D",
        out.to_str().unwrap(),
        "-F",
        "t",
        "-X",
        "fetch",
        "-c",
        "fast",
        "--upload",
        "s3",
        "--json",
        "--metrics-file",
        metrics.to_str().unwrap(),
    ]);
    args.extend(s3_flags_at(tap.port()));
    let running = pgbase(&source, &args).spawn();
    tap.wait_crossed(std::time::Duration::from_secs(90));
    moto.kill();
    let run = running.finish();
    run.assert_code(1, "pgbase --upload to a killed store")
        .assert_stderr("did not upload")
        .assert_stderr("the remote one is not");
    assert!(
        run.stdout.is_empty(),
        "a failed run printed its result:\n{run}"
    );
    assert!(!run.stderr.contains(S3_SECRET), "a secret leaked:\n{run}");
    // The local backup is complete: no marker, every file with its checksum.
    let local = names_in(&out);
    assert!(!local.iter().any(|n| n == "pgbase.incomplete"), "{local:?}");
    assert!(local.iter().any(|n| n == "base.tar.sha256"), "{local:?}");
    let samples = parse_metrics(&source, &metrics);
    assert_eq!(
        sample(&samples, "safe_backup_last_run_success{program=pgbase}"),
        0.0
    );
    assert_eq!(
        sample(
            &samples,
            "safe_backup_upload_success{program=pgbase,target=s3}"
        ),
        0.0
    );
}

/// A caller that gives up on a restore (SIGTERM) and retries: the first run ends with exit 1
/// and removes what it wrote, the backup untouched; the retry restores, and the data is there.
/// The backup is encrypted with a passphrase: each archive's scrypt holds the unpacking long
/// enough for the signal to land in it.
#[test]
fn a_restore_stopped_by_sigterm_removes_what_it_wrote_and_the_retry_restores() {
    const PASSPHRASE: &str = "restore-stop passphrase";
    let source = loaded_source(1);
    source.psql("INSERT INTO marker VALUES ('before pgbase')");
    let committed = source.pgbench_history_rows();
    let scratch = cluster::scratch_dir();
    let out = scratch.path().join("backup");
    tar_backup(&source, &out, &["-X", "stream", "--encrypt"])
        .env("PGBK_CIPHER_PASS", PASSPHRASE)
        .run()
        .assert_ok("pgbase --encrypt with a passphrase");
    let sizes = |dir: &Path| -> Vec<(String, u64)> {
        names_in(dir)
            .into_iter()
            .map(|name| (name.clone(), fs::metadata(dir.join(name)).unwrap().len()))
            .collect()
    };
    let backup_files = sizes(&out);
    let target = scratch.path().join("restored");
    let restore = |target: &Path| {
        pgbase(
            &source,
            &owned(&[
                "--restore",
                out.to_str().unwrap(),
                "-D",
                target.to_str().unwrap(),
            ]),
        )
        .env("PGBK_CIPHER_PASS", PASSPHRASE)
    };
    let running = restore(&target).spawn();
    // The marker appears once the checksums are verified and unpacking begins.
    crate::util::wait_for(
        "the restore to begin unpacking",
        std::time::Duration::from_secs(60),
        || target.join("pgbase.incomplete").exists(),
    );
    running.signal(nix::sys::signal::Signal::SIGTERM);
    let stopped = running.finish();
    stopped
        .assert_code(1, "pgbase --restore stopped by SIGTERM")
        .assert_stderr("interrupted by SIGTERM")
        .assert_stderr("the backup is untouched");
    assert_eq!(stopped.stderr.trim().lines().count(), 1, "{stopped}");
    assert!(
        !target.exists() || names_in(&target).is_empty(),
        "the stopped restore left {:?}",
        names_in(&target)
    );
    let after: Vec<(String, u64)> = names_in(&out)
        .into_iter()
        .map(|name| {
            let size = fs::metadata(out.join(&name)).unwrap().len();
            (name, size)
        })
        .collect();
    assert_eq!(
        after, backup_files,
        "the stopped restore changed the backup"
    );

    restore(&target).run().assert_ok("the retried restore");
    prove(&source, &target, committed, &[]);
}
