//! pgback's remote storage end to end, for each backend on its real server on loopback
//! ([`crate::servers`]): an encrypted run with `--upload` (only `.age` files and their
//! checksums go up), `--list-remote` filtered by a glob, `--download --decrypt` into an empty
//! directory (verified against the checksum files, then decrypted), `pg_restore` into a fresh
//! cluster compared with the source, `--purge-remote=yes` with min-keep, and the server killed
//! mid-upload (exit 1, the file and cause named, local files kept).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cluster::{self, Cluster, ClusterOptions};
use crate::crypt::keygen;
use crate::servers::{self, current_user, ByteTap, Server, AZURITE_ACCOUNT, AZURITE_KEY};
use crate::util::{Run, TestCommand};
use crate::watch::{parse_metrics, sample};

/// How long one pgback run may take.
const PGBACK_LIMIT: Duration = Duration::from_secs(150);
const S3_SECRET: &str = "moto-secret-offsite-Hq27";
const B2_SECRET: &str = "b2-app-key-offsite-Pw81";
const MIB: u64 = 1024 * 1024;

/// One backend: its flags and environment for a server reached at `port`.
#[derive(Clone, Copy)]
enum Backend {
    S3,
    B2,
    Gcs,
    Azure,
    Sftp,
}

/// A started server and what pgback needs to reach it.
struct Remote {
    server: Server,
    kind: Backend,
    /// SFTP: the sshd's identity, directory and known_hosts line (by port).
    sftp: Option<SftpBits>,
    home: tempfile::TempDir,
}

struct SftpBits {
    identity: PathBuf,
    root: PathBuf,
    known_hosts_line: String,
    port: u16,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::S3 => "s3",
            Backend::B2 => "b2",
            Backend::Gcs => "gcs",
            Backend::Azure => "azure",
            Backend::Sftp => "sftp",
        }
    }

    fn start(self) -> Remote {
        let home = tempfile::tempdir().expect("a home directory");
        fs::create_dir(home.path().join(".ssh")).expect("creating ~/.ssh");
        let (server, sftp) = match self {
            Backend::S3 => (servers::moto(&["pgback"]), None),
            Backend::B2 => (servers::moto(&["pgback-b2"]), None),
            Backend::Gcs => (servers::fake_gcs(&["pgback-gcs"]), None),
            Backend::Azure => (servers::azurite(&["pgback"]), None),
            Backend::Sftp => {
                let sshd = servers::sshd();
                let port = sshd.server.port();
                let bits = SftpBits {
                    identity: sshd.identity,
                    root: sshd.root,
                    known_hosts_line: sshd.known_hosts_line,
                    port,
                };
                (sshd.server, Some(bits))
            }
        };
        if let Some(bits) = &sftp {
            fs::write(home.path().join(".ssh/known_hosts"), &bits.known_hosts_line)
                .expect("writing known_hosts");
        }
        Remote {
            server,
            kind: self,
            sftp,
            home,
        }
    }
}

impl Remote {
    /// The flags selecting this store through `port` (the server's own, or a tap's).
    fn flags(&self, mode: &str, port: u16) -> Vec<String> {
        let url = format!("http://127.0.0.1:{port}");
        let kind = self.kind.name();
        let mut flags = vec![format!("--{mode}"), kind.to_string()];
        let more: Vec<String> = match self.kind {
            Backend::S3 => vec![
                "--s3-endpoint".into(),
                url,
                "--s3-bucket=pgback".into(),
                "--s3-region=us-east-1".into(),
                "--s3-key-id=AKIDOFFSITE".into(),
                "--s3-force-path=yes".into(),
                "--upload-prefix=nightly/host1".into(),
            ],
            Backend::B2 => vec![
                "--b2-endpoint".into(),
                url,
                "--b2-bucket=pgback-b2".into(),
                "--b2-key-id=0042offsite".into(),
                "--b2-force-path".into(),
                "--upload-prefix=b2/nightly".into(),
            ],
            Backend::Gcs => vec![
                "--gcs-endpoint".into(),
                format!("{url}/storage/v1/"),
                "--gcs-bucket=pgback-gcs".into(),
                "--upload-prefix=gcs/nightly".into(),
            ],
            Backend::Azure => vec![
                "--azure-endpoint".into(),
                format!("{url}/{AZURITE_ACCOUNT}"),
                "--azure-container=pgback".into(),
                format!("--azure-account={AZURITE_ACCOUNT}"),
                "--upload-prefix=azure/nightly".into(),
            ],
            Backend::Sftp => {
                let bits = self.sftp.as_ref().expect("sftp settings");
                let mut flags = vec![
                    "--sftp-host=127.0.0.1".into(),
                    format!("--sftp-port={port}"),
                    format!("--sftp-user={}", current_user()),
                    format!("--sftp-directory={}", bits.root.display()),
                    format!("--sftp-identity={}", bits.identity.display()),
                    "--upload-prefix=sftp/nightly".into(),
                ];
                if port != bits.port {
                    // Through the tap, the host key is recorded under another port.
                    flags.push("--sftp-ignore-hostkey=yes".into());
                }
                flags
            }
        };
        flags.extend(more);
        flags
    }

    /// pgback against `cluster` with this store's credentials in the environment.
    fn pgback(&self, cluster: &Cluster, args: &[String]) -> TestCommand {
        let pg_dump = cluster::pg_binaries().client_tool("pg_dump");
        let bindir = pg_dump.parent().unwrap_or(Path::new("/")).to_path_buf();
        let command = TestCommand::new(cluster, "pgback")
            .args(["-d", &cluster.conninfo_socket(), "-B"])
            .arg(bindir)
            .args(args)
            .env("HOME", self.home.path())
            .limit(PGBACK_LIMIT);
        match self.kind {
            Backend::S3 => command.env("AWS_SECRET_ACCESS_KEY", S3_SECRET),
            Backend::B2 => command.env("B2_APPLICATION_KEY", B2_SECRET),
            Backend::Azure => command.env("AZURE_STORAGE_KEY", AZURITE_KEY),
            Backend::Gcs | Backend::Sftp => command,
        }
    }

    fn secrets(&self) -> Vec<&'static str> {
        match self.kind {
            Backend::S3 => vec![S3_SECRET],
            Backend::B2 => vec![B2_SECRET],
            Backend::Azure => vec![AZURITE_KEY],
            Backend::Gcs | Backend::Sftp => vec![],
        }
    }

    fn assert_no_secret(&self, run: &Run) {
        for secret in self.secrets() {
            assert!(
                !run.stderr.contains(secret) && !run.stdout.contains(secret),
                "a secret leaked:\n{run}"
            );
        }
    }

    /// `--list-remote` with `globs`: the names printed.
    fn list(&self, cluster: &Cluster, globs: &[&str]) -> Vec<String> {
        let mut args = self.flags("list-remote", self.server.port());
        args.extend(globs.iter().map(|g| g.to_string()));
        let run = self.pgback(cluster, &args).run();
        run.assert_ok("--list-remote");
        self.assert_no_secret(&run);
        run.stdout.lines().map(str::to_string).collect()
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("reading a backup directory")
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fn table_digest(cluster: &Cluster, db: &str) -> String {
    cluster
        .try_psql_in(
            db,
            "SELECT count(*) || ':' || md5(string_agg(s, ',' ORDER BY i)) FROM t",
        )
        .expect("reading t")
}

/// `app` with a table `t`.
fn source_cluster() -> Cluster {
    let source = Cluster::start(ClusterOptions::default().without_archive());
    source.psql("CREATE DATABASE app");
    source
        .try_psql_in(
            "app",
            "CREATE TABLE t(i int primary key, s text); \
             INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 2000) g",
        )
        .expect("filling app");
    source
}

/// Restores `app` from the files in `dir` (createdb.sql, then the custom dump) into a fresh
/// cluster and compares `t`.
fn restore_and_compare(source: &Cluster, dir: &Path) {
    let names = files_in(dir);
    let find = |suffix: &str| {
        let name = names
            .iter()
            .find(|n| n.starts_with("app_") && n.ends_with(suffix))
            .unwrap_or_else(|| panic!("no app_*{suffix} in {names:?}"));
        dir.join(name)
    };
    let target = Cluster::start(ClusterOptions::default().without_archive());
    let psql = cluster::pg_binaries().client_tool("psql");
    TestCommand::program(&target, &psql)
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(find(".createdb.sql"))
        .run()
        .assert_ok("createdb.sql");
    TestCommand::program(&target, cluster::pg_binaries().client_tool("pg_restore"))
        .args(["--exit-on-error", "-d", "app"])
        .arg(find(".dump"))
        .limit(PGBACK_LIMIT)
        .run()
        .assert_ok("pg_restore");
    assert_eq!(table_digest(&target, "app"), table_digest(source, "app"));
}

/// Stamps of `app` in remote names.
fn app_stamps(names: &[String]) -> Vec<String> {
    let mut stamps: Vec<String> = names
        .iter()
        .filter_map(|n| {
            n.strip_prefix("app_")?
                .split_once('.')
                .map(|(s, _)| s.to_string())
        })
        .collect();
    stamps.sort();
    stamps.dedup();
    stamps
}

/// The whole way out and back on one backend.
fn offsite_round_trip(backend: Backend) {
    let mut remote = backend.start();
    let source = source_cluster();
    let port = remote.server.port();
    let backups = tempfile::tempdir().expect("a backup directory");
    let dir = backups.path().display().to_string();

    // 1. An encrypted run with upload: every final file goes up (globals and all), encrypted.
    let keys = tempfile::tempdir().expect("a key directory");
    let (identity, public) = keygen(keys.path(), "identity.txt");
    let encrypt = [
        "--encrypt".to_string(),
        "--cipher-public-key".into(),
        public,
    ];
    let mut args = vec!["-b".to_string(), dir.clone(), "-S".into(), "sha256".into()];
    // The plaintext kept by --encrypt-keep-src stays local.
    args.extend(encrypt.iter().cloned());
    args.push("--encrypt-keep-src".into());
    args.extend(remote.flags("upload", port));
    let metrics = keys.path().join("pgback.prom");
    args.extend(["--metrics-file".into(), metrics.display().to_string()]);
    args.push("app".into());
    let run = remote.pgback(&source, &args).run();
    run.assert_ok("a run with --upload");
    remote.assert_no_secret(&run);
    // The upload's result is in the metrics file.
    let samples = parse_metrics(&source, &metrics);
    let target = format!("{{program=pgback,target={}}}", backend.name());
    assert_eq!(
        sample(&samples, &format!("safe_backup_upload_success{target}")),
        1.0
    );
    assert!(sample(&samples, &format!("safe_backup_upload_bytes{target}")) > 0.0);
    // Lock files stay local (the listing below must not hold them).
    let local = files_in(backups.path());

    // 2. The listing, filtered by a glob, holds what was written for app.
    let listed = remote.list(&source, &["app_*"]);
    let local_app: Vec<String> = local
        .iter()
        .filter(|n| n.starts_with("app_") && (n.ends_with(".age") || n.ends_with(".age.sha256")))
        .cloned()
        .collect();
    assert_eq!(listed, local_app, "listing");
    assert!(
        local
            .iter()
            .any(|n| n.starts_with("app_") && n.ends_with(".dump")),
        "the plaintext is kept locally: {local:?}"
    );
    assert!(
        listed.iter().any(|n| n.ends_with(".dump.age"))
            && listed.iter().any(|n| n.ends_with(".dump.age.sha256"))
            && listed.iter().any(|n| n.ends_with(".dump.sha256.age"))
            && listed
                .iter()
                .all(|n| n.ends_with(".age") || n.ends_with(".age.sha256")),
        "only encrypted files and their checksums: {listed:?}"
    );
    let everything = remote.list(&source, &[]);
    assert!(
        everything.iter().any(|n| n.starts_with("pg_globals_")),
        "{everything:?}"
    );
    assert!(
        !everything.iter().any(|n| n.ends_with(".lock")),
        "{everything:?}"
    );

    // 3. Download into an empty directory, verified against the checksum files, then
    //    decrypted in place.
    // `--download` of app's files into `dir`, then `--decrypt` with `identity` when given.
    let download = |dir: &Path, identity: Option<&Path>| {
        let mut args = vec!["-b".to_string(), dir.display().to_string()];
        args.extend(remote.flags("download", port));
        if let Some(identity) = identity {
            args.extend(["--decrypt".into(), "--cipher-identity".into()]);
            args.push(identity.display().to_string());
        }
        args.push("app_*".into());
        remote.pgback(&source, &args).run()
    };
    let fetched = tempfile::tempdir().expect("a download directory");
    let run = download(fetched.path(), Some(&identity));
    run.assert_ok("--download --decrypt");
    let downloaded = files_in(fetched.path());
    for name in &local_app {
        assert!(
            downloaded.contains(name),
            "{name} downloaded: {downloaded:?}"
        );
        assert_eq!(
            fs::read(fetched.path().join(name)).expect("a downloaded file"),
            fs::read(backups.path().join(name)).expect("a local file"),
            "{name}"
        );
        // Each .age file (the dump, createdb.sql, the encrypted checksum) has its plaintext.
        if let Some(plain) = name.strip_suffix(".age") {
            assert!(
                downloaded.iter().any(|n| n == plain),
                "{plain}: {downloaded:?}"
            );
        }
    }

    let first_dump = local_app
        .iter()
        .find(|n| n.ends_with(".dump.age"))
        .expect("the dump")
        .clone();
    if let Some(bits) = &remote.sftp {
        // A remote file that changed is refused by its checksum.
        let remote_file = bits.root.join("sftp/nightly").join(&first_dump);
        let mut bytes = fs::read(&remote_file).expect("the remote dump");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&remote_file, &bytes).expect("corrupting the remote dump");
        let again = tempfile::tempdir().expect("a download directory");
        let run = download(again.path(), None);
        run.assert_code(1, "a corrupted download");
        run.assert_stderr("does not match its checksum");
        bytes[last] ^= 0xff;
        fs::write(&remote_file, &bytes).expect("mending the remote dump");
    }

    // A wrong identity: exit 1 naming the cause, the fetched files kept encrypted, no plaintext.
    let (wrong, _) = keygen(keys.path(), "wrong.txt");
    let refused = tempfile::tempdir().expect("a download directory");
    let run = download(refused.path(), Some(&wrong));
    run.assert_code(1, "--download --decrypt with a wrong identity");
    run.assert_stderr("cannot decrypt");
    assert_eq!(
        files_in(refused.path()),
        local_app,
        "only the encrypted files"
    );

    // 4. Restore what came back and compare.
    restore_and_compare(&source, fetched.path());

    // 5. A second run with --purge-remote=yes, min-keep 1, everything older than now: the
    //    first run's files go, the second's stay.
    std::thread::sleep(Duration::from_millis(1100));
    let mut args = vec![
        "-b".to_string(),
        dir.clone(),
        "-S".into(),
        "sha256".into(),
        "-K".into(),
        "1".into(),
        "-P".into(),
        "0".into(),
        "--purge-remote=yes".into(),
    ];
    args.extend(encrypt.iter().cloned());
    args.extend(remote.flags("upload", port));
    args.push("app".into());
    remote
        .pgback(&source, &args)
        .run()
        .assert_ok("a run with --purge-remote=yes");
    let after = remote.list(&source, &["app_*"]);
    let stamps = app_stamps(&after);
    assert_eq!(stamps.len(), 1, "one app backup left: {after:?}");
    assert!(
        !after.contains(&first_dump),
        "the first run's dump is purged: {after:?}"
    );
    assert_eq!(app_stamps(&files_in(backups.path())), stamps, "local purge");

    // 6. The server killed mid-upload: exit 1, file and cause named, local files kept.
    source
        .try_psql_in(
            "app",
            "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g + 1)::text) AS s \
             FROM generate_series(1, 400000) g",
        )
        .expect("a big table");
    let tap = ByteTap::new(port, 6 * MIB);
    let killed = tempfile::tempdir().expect("a backup directory");
    let mut args = vec![
        "-b".to_string(),
        killed.path().display().to_string(),
        "-Z".into(),
        "0".into(),
        "--dump-only".into(),
    ];
    args.extend(remote.flags("upload", tap.port()));
    let killed_metrics = keys.path().join("killed.prom");
    args.extend([
        "--metrics-file".into(),
        killed_metrics.display().to_string(),
    ]);
    args.push("app".into());
    let running = remote.pgback(&source, &args).spawn();
    tap.wait_crossed(Duration::from_secs(90));
    remote.server.kill();
    let run = running.finish();
    run.assert_code(1, "an upload to a killed server");
    remote.assert_no_secret(&run);
    run.assert_stderr("upload of ");
    run.assert_stderr(&format!("{}://", backend.name()));
    run.assert_stderr("nothing was purged");
    let samples = parse_metrics(&source, &killed_metrics);
    let target = format!("{{program=pgback,target={}}}", backend.name());
    assert_eq!(
        sample(&samples, &format!("safe_backup_upload_success{target}")),
        0.0
    );
    let kept = files_in(killed.path());
    assert!(
        kept.iter()
            .any(|n| n.starts_with("app_") && n.ends_with(".dump")),
        "the local dump is kept: {kept:?}"
    );
}

#[test]
fn offsite_s3() {
    offsite_round_trip(Backend::S3);
}

#[test]
fn offsite_b2() {
    offsite_round_trip(Backend::B2);
}

#[test]
fn offsite_gcs() {
    offsite_round_trip(Backend::Gcs);
}

#[test]
fn offsite_azure() {
    offsite_round_trip(Backend::Azure);
}

#[test]
fn offsite_sftp() {
    offsite_round_trip(Backend::Sftp);
}

/// A configuration file holding a remote secret must not be readable by others: refused with
/// the key named and a hint, the secret never shown; once private, its secret is used.
#[test]
fn remote_secrets_only_from_a_private_config_file() {
    use std::os::unix::fs::PermissionsExt;
    let remote = Backend::S3.start();
    let source = source_cluster();
    let tmp = tempfile::tempdir().expect("a directory");
    let config = tmp.path().join("config.toml");
    fs::write(
        &config,
        format!(
            "[dump.remote]\nlist_remote = \"s3\"\ns3_bucket = \"pgback\"\n\
             s3_endpoint = \"http://127.0.0.1:{}\"\ns3_region = \"us-east-1\"\n\
             s3_key_id = \"AKIDOFFSITE\"\ns3_force_path = true\ns3_secret = \"{S3_SECRET}\"\n",
            remote.server.port()
        ),
    )
    .expect("writing the config");
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).expect("chmod 644");
    let pg_dump = cluster::pg_binaries().client_tool("pg_dump");
    let list = || {
        TestCommand::new(&source, "pgback")
            .args(["-c"])
            .arg(&config)
            .args(["-B"])
            .arg(pg_dump.parent().expect("a bin directory"))
            .env("HOME", remote.home.path())
            .limit(PGBACK_LIMIT)
            .run()
    };
    let refused = list();
    refused
        .assert_code(2, "an exposed config with s3_secret")
        .assert_stderr("dump.remote.s3_secret")
        .assert_stderr("chmod o-r");
    remote.assert_no_secret(&refused);
    fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).expect("chmod 600");
    let listed = list();
    listed.assert_ok("--list-remote with the secret from a private config");
    remote.assert_no_secret(&listed);
    // `list_remote` of the file lists (an empty bucket) instead of dumping.
    assert!(
        listed.stdout.is_empty() && !listed.stderr.contains("dumping"),
        "{listed}"
    );
}

/// A DBNAME glob that does not parse stops `--download` and `--list-remote` before the store
/// is read: exit 2, the pattern named, nothing fetched (the bucket holds a file `*` would take).
#[test]
fn a_malformed_glob_is_refused() {
    let remote = Backend::S3.start();
    let port = remote.server.port();
    let status = servers::http(
        port,
        "PUT",
        "/pgback/nightly/host1/app_2026-01-01T00:00:00Z.dump",
        &[],
        b"not a dump",
    );
    assert_eq!(status, Some(200), "putting a file into the bucket");
    let source = source_cluster();
    let fetched = tempfile::tempdir().expect("a download directory");
    for mode in ["download", "list-remote"] {
        let mut args = vec!["-b".to_string(), fetched.path().display().to_string()];
        args.extend(remote.flags(mode, port));
        args.extend(["app_*".to_string(), "[x".to_string()]);
        let run = remote.pgback(&source, &args).run();
        run.assert_code(2, &format!("--{mode} '[x'"))
            .assert_stderr("invalid pattern \"[x\"")
            .assert_stderr("hint:");
        assert!(run.stdout.is_empty(), "nothing listed:\n{run}");
        remote.assert_no_secret(&run);
    }
    assert!(
        files_in(fetched.path()).is_empty(),
        "nothing downloaded: {:?}",
        files_in(fetched.path())
    );
    // The same store and a good glob do fetch the file: the refusal above was the glob's.
    let mut args = vec!["-b".to_string(), fetched.path().display().to_string()];
    args.extend(remote.flags("download", port));
    args.push("app_*".into());
    remote
        .pgback(&source, &args)
        .run()
        .assert_ok("--download app_*");
    assert_eq!(files_in(fetched.path()), ["app_2026-01-01T00:00:00Z.dump"]);
}
