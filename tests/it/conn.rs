//! libpq conventions end to end: pgpass, service files, PGPASSWORD, over TCP with password authentication.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::cluster::{scratch_dir, Cluster, ClusterOptions};
use crate::util::{coprocesses, the_coprocess, Run, TestCommand};

/// Runs `program` over TCP (password authentication) with extra environment.
fn run_tcp(cluster: &Cluster, program: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = TestCommand::new(cluster, program)
        .env("PGHOST", "127.0.0.1")
        .args(["--fast"].iter().filter(|_| program == "pgpre"))
        .args(args)
        .limit(Duration::from_secs(30));
    for (key, value) in env {
        command = command.env(key, value);
    }
    command.run()
}

#[test]
fn pgpass_supplies_the_password_only_when_private() {
    let cluster = Cluster::start(ClusterOptions::default());
    let dir = scratch_dir();
    let passfile = dir.path().join("pgpass");
    // An escaped colon in the password field, a wildcard database.
    std::fs::write(
        &passfile,
        format!(
            "# comment\n127.0.0.1:{}:*:postgres:{}\n",
            cluster.port(),
            cluster.password().replace(':', "\\:")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o644)).unwrap();
    let passfile = passfile.to_string_lossy().into_owned();
    let refused = run_tcp(&cluster, "pgpre", &[], &[("PGPASSFILE", &passfile)]);
    refused.assert_code(3, "pgpass readable by others is ignored");
    refused.assert_stderr("hint:");
    assert!(coprocesses(&cluster).is_empty());
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    run_tcp(&cluster, "pgpre", &[], &[("PGPASSFILE", &passfile)]).assert_ok("pgpre with pgpass");
    run_tcp(&cluster, "pgpost", &[], &[("PGPASSFILE", &passfile)]).assert_ok("pgpost with pgpass");
}

#[test]
fn service_file_and_pgpassword() {
    let cluster = Cluster::start(ClusterOptions::default());
    let dir = scratch_dir();
    let services = dir.path().join("pg_service.conf");
    std::fs::write(
        &services,
        format!(
            "[nightly]\nhost=127.0.0.1\nport={}\nuser=postgres\ndbname=postgres\n",
            cluster.port()
        ),
    )
    .unwrap();
    let services = services.to_string_lossy().into_owned();
    let env = [
        ("PGSERVICEFILE", services.as_str()),
        ("PGPASSWORD", cluster.password()),
        ("PGHOST", ""),
        ("PGPORT", ""),
    ];
    run_tcp(&cluster, "pgpre", &["-d", "service=nightly"], &env).assert_ok("pgpre via service");
    run_tcp(&cluster, "pgpost", &["-d", "service=nightly"], &env).assert_ok("pgpost via service");
    run_tcp(&cluster, "pgpre", &["-d", "service=missing"], &env)
        .assert_code(2, "unknown service")
        .assert_stderr("missing");
}

#[test]
fn passwords_never_reach_errors_or_argv() {
    let cluster = Cluster::start(ClusterOptions::default());
    let secret = "not-the-password-7f3a";
    let wrong = run_tcp(&cluster, "pgpre", &[], &[("PGPASSWORD", secret)]);
    wrong.assert_code(3, "wrong password");
    wrong.assert_stderr("password authentication failed");
    assert!(!wrong.stderr.contains(secret), "{wrong:#?}");
    let in_argv = run_tcp(
        &cluster,
        "pgpre",
        &["-d", &format!("host=127.0.0.1 password={secret}")],
        &[],
    );
    in_argv.assert_code(2, "password in -d");
    in_argv.assert_stderr("refusing a password in -d");
    assert!(!in_argv.stderr.contains(secret), "{in_argv:#?}");
    // With PGPASSWORD the co-process runs, and neither its command line nor its
    // log (at info level) holds the secret.
    let logs = crate::cluster::scratch_dir();
    let log_file = logs.path().join("coprocess.log");
    run_tcp(
        &cluster,
        "pgpre",
        &["--log-file", log_file.to_str().unwrap()],
        &[("PGPASSWORD", cluster.password())],
    )
    .assert_ok("pgpre");
    let coprocess = the_coprocess(&cluster);
    let cmdline = std::fs::read(format!("/proc/{coprocess}/cmdline")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(cluster.password()));
    let json = run_tcp(
        &cluster,
        "pgpost",
        &["--json"],
        &[("PGPASSWORD", cluster.password())],
    );
    json.assert_ok("pgpost --json");
    let log = std::fs::read_to_string(&log_file).expect("co-process log");
    assert!(log.contains("complete"), "{log}");
    assert!(!log.contains(cluster.password()), "{log}");
    assert!(json.stdout.contains("\"backup_label\""));
    assert!(!json.stdout.contains(cluster.password()));
    assert!(!json.stderr.contains(cluster.password()));
}
