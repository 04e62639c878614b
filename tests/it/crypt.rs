//! Encryption against the real `age` CLI (Debian `age`) both ways, for a passphrase and for
//! recipients; wrong passphrase, wrong key, truncated and modified files; a pg_dump stream
//! encrypted on the fly that decrypts and restores (`pg_restore --list`), in custom and
//! directory format.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use safe_backup::crypt::{self, CryptError, DecryptKey, EncryptKey};
use safe_backup::exit::{ExitStatus, Failure};
use safe_backup::secret::Secret;
use safe_backup::values::ChecksumAlgorithm;

use crate::cluster::{self, Cluster, ClusterOptions};

const PASSPHRASE: &str = "correct horse battery staple";

/// The `age` or `age-keygen` binary; the test fails with a hint when it is missing.
pub(crate) fn age_tool(name: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} is missing: install Debian's `age` package (apt-get install age), or run scripts/test"
    );
    Command::new(name)
}

/// Runs `age` with a terminal (its passphrase prompt needs one) through util-linux `script`,
/// typing `input` at it. `args` must not need shell quoting.
pub(crate) fn age_with_tty(dir: &Path, args: &str, input: &str) -> std::process::Output {
    let mut child = Command::new("script")
        .args(["-qec", &format!("age {args}"), "/dev/null"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running script (bsdutils) for age's terminal");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub(crate) fn check(output: std::process::Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: {:?}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A fresh identity file (0600) and its public key, made by `age-keygen`.
pub(crate) fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    check(
        age_tool("age-keygen")
            .arg("-o")
            .arg(&path)
            .output()
            .unwrap(),
        "age-keygen",
    );
    let public = age_tool("age-keygen")
        .arg("-y")
        .arg(&path)
        .output()
        .unwrap();
    check(public.clone(), "age-keygen -y");
    (
        path,
        String::from_utf8(public.stdout).unwrap().trim().to_string(),
    )
}

/// Bytes that look like a dump: several of age's 64 KiB chunks and an odd tail.
fn sample(len: usize) -> Vec<u8> {
    let mut bytes = b"PGDMP".to_vec();
    bytes.extend((0..len).map(|i| (i * 31 % 253) as u8));
    bytes
}

/// Encrypts `plain` into `<dir>/<name>.age` through the streaming path.
fn encrypt_with(key: &EncryptKey, dir: &Path, name: &str, plain: &[u8]) -> PathBuf {
    let path = dir.join(format!("{name}.age"));
    let file = std::fs::File::create(&path).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(crypt::encrypt_stream(
            safe_backup::pump::Source::bytes(plain.to_vec()),
            key,
            file,
            None,
            ChecksumAlgorithm::Sha256,
            |_| {},
        ))
        .unwrap();
    path
}

fn passphrase_key() -> DecryptKey {
    DecryptKey::passphrase(&Secret::new(PASSPHRASE.into())).unwrap()
}

fn leftovers(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    names.sort();
    names
}

#[test]
fn age_cli_decrypts_what_we_encrypt_to_recipients() {
    let tmp = tempfile::tempdir().unwrap();
    let (identity, public) = keygen(tmp.path(), "key.txt");
    let (_, other) = keygen(tmp.path(), "other.txt");
    let key = EncryptKey::recipients(&[other, public]).unwrap();
    let plain = sample(300_000);
    let encrypted = encrypt_with(&key, tmp.path(), "db.dump", &plain);
    let out = tmp.path().join("by-cli");
    check(
        age_tool("age")
            .arg("-d")
            .arg("-i")
            .arg(&identity)
            .arg("-o")
            .arg(&out)
            .arg(&encrypted)
            .output()
            .unwrap(),
        "age -d -i",
    );
    assert_eq!(std::fs::read(&out).unwrap(), plain);
}

#[test]
fn age_cli_decrypts_what_we_encrypt_with_a_passphrase() {
    let tmp = tempfile::tempdir().unwrap();
    let key = EncryptKey::passphrase(Secret::new(PASSPHRASE.into())).unwrap();
    let plain = sample(200_000);
    encrypt_with(&key, tmp.path(), "db.dump", &plain);
    check(
        age_with_tty(
            tmp.path(),
            "-d -o by-cli db.dump.age",
            &format!("{PASSPHRASE}\n"),
        ),
        "age -d (passphrase)",
    );
    assert_eq!(std::fs::read(tmp.path().join("by-cli")).unwrap(), plain);
}

#[test]
fn we_decrypt_what_the_age_cli_encrypts() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = sample(150_000);
    std::fs::write(tmp.path().join("in"), &plain).unwrap();
    // Recipients: two -r, one of them ours.
    let (identity, public) = keygen(tmp.path(), "key.txt");
    let (_, other) = keygen(tmp.path(), "other.txt");
    check(
        age_tool("age")
            .args(["-r", &other, "-r", &public, "-o", "r.dump.age", "in"])
            .current_dir(tmp.path())
            .output()
            .unwrap(),
        "age -r",
    );
    let key = DecryptKey::from_identity_file(&identity).unwrap();
    let out = crypt::decrypt_file(&tmp.path().join("r.dump.age"), &key).unwrap();
    assert_eq!(out, tmp.path().join("r.dump"));
    assert_eq!(std::fs::read(&out).unwrap(), plain);
    // Passphrase (scrypt, the CLI's work factor).
    check(
        age_with_tty(
            tmp.path(),
            "-p -o p.dump.age in",
            &format!("{PASSPHRASE}\n{PASSPHRASE}\n"),
        ),
        "age -p",
    );
    let out = crypt::decrypt_file(&tmp.path().join("p.dump.age"), &passphrase_key()).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), plain);
}

#[test]
fn identity_files_readable_by_others_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let (identity, _) = keygen(tmp.path(), "key.txt");
    std::fs::set_permissions(&identity, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = DecryptKey::from_identity_file(&identity).unwrap_err();
    assert_eq!(error.exit_status(), ExitStatus::Usage);
    assert_eq!(
        error.hint().unwrap(),
        format!("chmod 600 {}", identity.display())
    );
    let secret = std::fs::read_to_string(&identity).unwrap();
    let secret_line = secret
        .lines()
        .find(|l| l.starts_with("AGE-SECRET"))
        .unwrap();
    assert!(!format!("{error} {error:?}").contains(secret_line));
}

/// Every failure: one error naming the file, a non-zero exit status, no output, no temp file.
fn assert_refused(path: &Path, key: &DecryptKey, expect: fn(&CryptError) -> bool) -> String {
    let error = crypt::decrypt_file(path, key).unwrap_err();
    assert!(expect(&error), "{}: unexpected {error:?}", path.display());
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(!message.contains('\n'), "{message}");
    assert!(!message.contains(PASSPHRASE), "{message}");
    assert_ne!(error.exit_status().code(), 0);
    let target = crypt::decrypted_path(path).unwrap();
    assert!(!target.exists(), "{} was left behind", target.display());
    assert_eq!(leftovers(path.parent().unwrap()), Vec::<String>::new());
    message
}

#[test]
fn wrong_keys_and_damaged_files_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (identity, public) = keygen(dir, "key.txt");
    let (stranger, _) = keygen(dir, "stranger.txt");
    let plain = sample(400_000);
    let to_key = encrypt_with(
        &EncryptKey::recipients(&[public]).unwrap(),
        dir,
        "k.dump",
        &plain,
    );
    let pass = EncryptKey::passphrase(Secret::new(PASSPHRASE.into())).unwrap();
    let with_pass = encrypt_with(&pass, dir, "p.dump", &plain);

    let wrong_pass = DecryptKey::passphrase(&Secret::new("not it".into())).unwrap();
    let message = assert_refused(&with_pass, &wrong_pass, |e| {
        matches!(e, CryptError::WrongPassphrase { .. })
    });
    assert!(message.ends_with("wrong passphrase"), "{message}");
    let stranger = DecryptKey::from_identity_file(&stranger).unwrap();
    assert_refused(&to_key, &stranger, |e| {
        matches!(e, CryptError::WrongKey { .. })
    });
    assert_refused(&to_key, &passphrase_key(), |e| {
        matches!(e, CryptError::NeedsIdentity { .. })
    });
    assert_refused(&with_pass, &stranger, |e| {
        matches!(e, CryptError::NeedsPassphrase { .. })
    });

    let right = DecryptKey::from_identity_file(&identity).unwrap();
    let bytes = std::fs::read(&to_key).unwrap();
    // Cut inside the payload, on a chunk boundary, inside the header.
    let chunk = 64 * 1024 + 16;
    let header = bytes.len() - plain.len() - 16 * plain.len().div_ceil(64 * 1024);
    for (name, cut) in [
        ("mid.dump.age", bytes.len() - 1000),
        ("boundary.dump.age", header + 2 * chunk),
        ("header.dump.age", 40),
        ("empty.dump.age", 0),
    ] {
        std::fs::write(dir.join(name), &bytes[..cut]).unwrap();
        assert_refused(&dir.join(name), &right, |e| {
            matches!(e, CryptError::Damaged { .. } | CryptError::NotAge { .. })
        });
    }
    // A flipped bit in the payload; another (valid base64) character in the header's MAC.
    let mac_at = bytes.windows(4).position(|w| w == b"--- ").unwrap() + 10;
    let other_char = if bytes[mac_at] == b'A' { b'B' } else { b'A' };
    for (name, at, value) in [
        (
            "payload.dump.age",
            bytes.len() - 70_000,
            bytes[bytes.len() - 70_000] ^ 1,
        ),
        ("mac.dump.age", mac_at, other_char),
    ] {
        let mut tampered = bytes.clone();
        tampered[at] = value;
        std::fs::write(dir.join(name), &tampered).unwrap();
        let message = assert_refused(&dir.join(name), &right, |e| {
            matches!(e, CryptError::Damaged { .. })
        });
        assert!(message.contains("truncated or was modified"), "{message}");
    }
    std::fs::write(dir.join("text.sql.age"), b"CREATE TABLE t ();\n").unwrap();
    assert_refused(&dir.join("text.sql.age"), &right, |e| {
        matches!(e, CryptError::NotAge { .. })
    });

    // The good files still decrypt, and replace a stale plaintext.
    std::fs::write(dir.join("k.dump"), b"stale").unwrap();
    crypt::decrypt_file(&to_key, &right).unwrap();
    assert_eq!(std::fs::read(dir.join("k.dump")).unwrap(), plain);
}

#[test]
fn decrypt_in_place_runs_jobs_and_reports_each_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = EncryptKey::passphrase(Secret::new(PASSPHRASE.into())).unwrap();
    let names = [
        "db1_2026-01-01T00:00:00Z.dump",
        "db2_2026-01-01T00:00:00Z.dump",
    ];
    for name in names {
        encrypt_with(&key, dir, name, name.as_bytes());
    }
    std::fs::write(dir.join("db3_2026-01-01T00:00:00Z.dump.age"), b"junk").unwrap();
    let report = crypt::decrypt_in_place(dir, &["db*".into()], &passphrase_key(), 2).unwrap();
    assert_eq!(report.decrypted.len(), 2, "{report:?}");
    assert_eq!(report.failures.len(), 1, "{report:?}");
    for name in names {
        assert_eq!(std::fs::read(dir.join(name)).unwrap(), name.as_bytes());
    }
    assert!(!dir.join("db3_2026-01-01T00:00:00Z.dump").exists());
    let none = crypt::decrypt_in_place(dir, &["nomatch".into()], &passphrase_key(), 2).unwrap();
    assert!(none.decrypted.is_empty() && none.failures.is_empty());
}

fn cluster_with_data() -> Cluster {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.psql(
        "CREATE TABLE secret_table (id int PRIMARY KEY, note text);
         INSERT INTO secret_table SELECT g, md5(g::text) FROM generate_series(1, 20000) g;",
    );
    cluster
}

pub(crate) fn pg_restore_list(cluster: &Cluster, dump: &Path) -> String {
    let output = cluster
        .command(cluster::pg_binaries().client_tool("pg_restore"))
        .arg("--list")
        .arg(dump)
        .output()
        .unwrap();
    check(output.clone(), "pg_restore --list");
    String::from_utf8(output.stdout).unwrap()
}

fn holds_dump_bytes(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes.starts_with(b"PGDMP") || bytes.windows(12).any(|w| w == b"secret_table")
}

#[tokio::test]
async fn a_custom_format_dump_streams_into_age_and_restores() {
    let cluster = cluster_with_data();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (identity, public) = keygen(dir, "key.txt");
    let key = EncryptKey::recipients(&[public]).unwrap();
    let dump = dir.join("db_2026-01-01T00:00:00Z.dump");
    let age_path = crypt::encrypted_path(&dump);

    let mut pg_dump = tokio::process::Command::from(
        cluster.command(cluster::pg_binaries().client_tool("pg_dump")),
    );
    let mut child = pg_dump
        .args(["-Fc", "-d", "postgres"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = safe_backup::pump::Source::child_stdout(child.stdout.take().unwrap()).unwrap();
    let done = crypt::encrypt_stream(
        stdout,
        &key,
        std::fs::File::create(&age_path).unwrap(),
        None,
        ChecksumAlgorithm::Sha256,
        |_| {},
    )
    .await
    .unwrap();
    assert!(child.wait().await.unwrap().success());
    assert!(done.plain_bytes > 100_000, "{done:?}");

    // Only ciphertext reached the disk.
    assert!(!dump.exists());
    assert!(!holds_dump_bytes(&age_path));
    // Both digests are right: the encrypted file's, and the plaintext's.
    let sha = |path: &Path| {
        let out = Command::new("sha256sum").arg(path).output().unwrap();
        String::from_utf8(out.stdout).unwrap()[..64].to_string()
    };
    assert_eq!(done.age_digest.as_deref(), Some(sha(&age_path).as_str()));

    let key = DecryptKey::from_identity_file(&identity).unwrap();
    let restored = tokio::task::spawn_blocking(move || crypt::decrypt_file(&age_path, &key))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(restored, dump);
    assert_eq!(done.plain_digest.as_deref(), Some(sha(&dump).as_str()));
    assert!(pg_restore_list(&cluster, &dump).contains("TABLE DATA public secret_table"));
}

#[test]
fn a_directory_dump_is_encrypted_file_by_file_and_decrypts_in_place() {
    let cluster = cluster_with_data();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let dump = dir.join("db_2026-01-01T00:00:00Z.d");
    check(
        cluster
            .command(cluster::pg_binaries().client_tool("pg_dump"))
            .args(["-Fd", "-d", "postgres", "-f"])
            .arg(&dump)
            .output()
            .unwrap(),
        "pg_dump -Fd",
    );
    let key = EncryptKey::passphrase(Secret::new(PASSPHRASE.into())).unwrap();
    let entries = crypt::encrypt_directory(
        &dump,
        &key,
        ChecksumAlgorithm::Sha256,
        Some(0o640),
        false,
        2,
    )
    .unwrap();
    assert!(entries.len() >= 2, "{entries:?}");
    for entry in std::fs::read_dir(&dump).unwrap() {
        let path = entry.unwrap().path();
        assert!(
            crypt::is_encrypted_name(path.file_name().unwrap()),
            "plaintext left: {}",
            path.display()
        );
        assert!(!holds_dump_bytes(&path), "{}", path.display());
    }
    assert!(entries
        .iter()
        .all(|e| e.age_digest.is_some() && !e.plain_path.exists()));

    let report = crypt::decrypt_in_place(dir, &["db_*".into()], &passphrase_key(), 2).unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.decrypted.len(), entries.len());
    assert!(pg_restore_list(&cluster, &dump).contains("TABLE DATA public secret_table"));
}
