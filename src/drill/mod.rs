//! `pgdrill`: proves that a snapshot or copy restores. It clones DATADIR (never writing it),
//! puts the backup's label and map into the clone, recovers it with a throwaway server that
//! cannot reach the outside world, stops at the first consistent point, promotes, checks every
//! database with amcheck (plus `--sql` and `--exec`), stops the server and removes the clone.
//! [`run`] takes these steps in order: read DATADIR, clone, prepare, recover, check, clean up.
//!
//! Uses: base, config, metrics, server, wal, checksum, shutdown, exit.
//!
//! - `command`: the command line (clap), kept here so a man-page generator can reach it, and
//!   the one call the binary makes.
//! - `label`: `backup_label`, `tablespace_map`, `pg_control`, LSNs and WAL segment names.
//! - `prepare`: reading DATADIR, planning tablespaces, preparing the clone.
//! - `clone`: the private work directory and the clone (overlay, reflink, copy).
//! - `settings`: the throwaway server's settings, as pure builders.
//! - `postmaster`: finding, starting, waiting for and stopping the server.
//! - `serverlog`: what the server log says (ready, consistent LSN, missing WAL).
//! - `checks`: amcheck, `--sql`, `--exec`.
//! - `report`: the report, as text or JSON.
//! - `tar_input`: a `pgbase -F t` backup verified, decrypted, decompressed and unpacked
//!   into a staging directory, which is then drilled.

mod checks;
mod clone;
mod command;
mod error;
mod label;
mod postmaster;
mod prepare;
mod report;
mod serverlog;
mod settings;
mod tar_input;

pub use command::{run_pgdrill, DrillArgs};

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use clone::CloneMethod;
pub use error::{DrillError, NOT_RECOVERED};
pub use report::Report;
pub use settings::WalSource;

use clone::{Owner, Workspace};
use label::{BackupLabel, ControlFile};
use postmaster::{Binaries, NotReady, Postmaster};
use prepare::Tablespace;
use report::LabelSummary;
use serverlog::RecoveryFailure;

use crate::shutdown::shutdown_signal;

/// What to drill and how, validated from the command line.
#[derive(Clone, Debug)]
pub struct DrillRequest {
    /// The snapshot or copy; only read.
    pub data_dir: PathBuf,
    /// `backup_label` from elsewhere (else DATADIR's).
    pub backup_label: Option<PathBuf>,
    /// `tablespace_map` from elsewhere (else DATADIR's, when it has one).
    pub tablespace_map: Option<PathBuf>,
    /// `-T OLD=NEW`: a tablespace recorded at OLD has its snapshot at NEW.
    pub tablespace_mappings: Vec<(PathBuf, PathBuf)>,
    /// Where the WAL comes from; `None` for a tar backup that carries its own.
    pub wal: Option<WalSource>,
    /// The age identity file for an encrypted tar backup.
    pub cipher_identity: Option<PathBuf>,
    pub pg_bindir: Option<PathBuf>,
    pub clone: CloneMethod,
    /// Where the clone goes (default: a private directory under `$TMPDIR`).
    pub work_dir: Option<PathBuf>,
    /// Queries that must return true.
    pub sql: Vec<String>,
    /// The database for `--sql` and `PGDATABASE` of `--exec`.
    pub dbname: String,
    /// Keep the (stopped) clone.
    pub keep: bool,
    /// Limit for reaching consistency; `None` = none.
    pub timeout: Option<Duration>,
    /// A command to run against the recovered clone.
    pub exec: Option<Vec<OsString>>,
}

/// Runs one drill and returns its report (`exit_code` says how it ended). SIGINT and SIGTERM
/// stop it; the server and the clone are cleaned up on every path.
pub fn run(request: &DrillRequest) -> Report {
    let started = Instant::now();
    let mut report = Report {
        data_dir: request.data_dir.clone(),
        ..Report::default()
    };
    let result = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(async {
            tokio::select! {
                result = drill(request, &mut report) => result,
                signal = shutdown_signal() => Err(DrillError::Interrupted(signal)),
            }
        }),
        Err(error) => Err(DrillError::Internal(format!("async runtime: {error}"))),
    };
    if let Err(error) = result {
        report.exit_code = error.exit_code();
        report.error = Some(error_line(&error));
        report.hint = error.hint();
    }
    report.seconds.total = started.elapsed().as_secs_f64();
    report
}

/// The error and its sources on one line.
fn error_line(error: &DrillError) -> String {
    let line = crate::exit::report("pgdrill", error, None);
    line.strip_prefix("pgdrill: ").unwrap_or(&line).to_string()
}

/// The clone methods to try, in order; overlay is never put over a live server's directory.
fn clone_order(
    request: &DrillRequest,
    notes: &mut Vec<String>,
) -> Result<Vec<CloneMethod>, DrillError> {
    let live = clone::live_postmaster(&request.data_dir);
    Ok(match (request.clone, live) {
        (CloneMethod::Overlay, Some(pid)) => {
            return Err(DrillError::InUse {
                path: request.data_dir.clone(),
                pid,
            })
        }
        (CloneMethod::Auto, Some(pid)) => {
            notes.push(format!(
                "DATADIR is in use by a running server (pid {pid}): no overlay over it"
            ));
            vec![CloneMethod::Reflink, CloneMethod::Copy]
        }
        (CloneMethod::Auto, None) => vec![
            CloneMethod::Overlay,
            CloneMethod::Reflink,
            CloneMethod::Copy,
        ],
        (method, _) => vec![method],
    })
}

/// A role name worth trying: the owner's name, then `postgres`.
fn role_candidates(owner: &Owner) -> Vec<String> {
    let mut roles: Vec<String> = owner.name.iter().cloned().collect();
    if !roles.iter().any(|role| role == "postgres") {
        roles.push("postgres".into());
    }
    roles
}

/// What DATADIR holds, read before anything is cloned.
struct Source {
    /// From `PG_VERSION`.
    major: u32,
    /// The label's text, written into the clone as it is.
    label_text: String,
    /// The label parsed: where recovery starts, which segment it needs first.
    label: BackupLabel,
    /// The backup came with a tablespace map.
    has_map: bool,
    /// The copy's pg_control: a label later than its checkpoint belongs to another backup.
    control: ControlFile,
    /// Who owns DATADIR: the clone and the server run as them.
    owner: Owner,
    /// The server of DATADIR's major version.
    binaries: Binaries,
    /// `pg_amcheck` on 14+; `bt_index_check` through SQL before.
    pg_amcheck: Option<PathBuf>,
    /// The tablespaces to clone beside the data directory.
    tablespaces: Vec<Tablespace>,
    /// The clone methods to try, in order.
    clone_order: Vec<CloneMethod>,
}

/// The recovered clone's server and where it listens.
struct Recovered {
    server: Postmaster,
    socket_dir: PathBuf,
    port: u16,
}

/// The drill in its steps: read DATADIR, clone it, prepare the clone, recover it, check it,
/// clean up. Every step records what it learnt in `report`.
async fn drill(request: &DrillRequest, report: &mut Report) -> Result<(), DrillError> {
    let mut staged_request = None;
    let staged = if tar_input::is_tar_backup(&request.data_dir) {
        let stage = tar_input::StageRequest {
            backup: request.data_dir.clone(),
            wal: request.wal.clone(),
            cipher_identity: request.cipher_identity.clone(),
            work_dir: request.work_dir.clone(),
            keep: request.keep,
        };
        // The unpacking cannot be cancelled from here: a signal (which run() stops on) also
        // sets the flag its reads check, so it ends within one read and its Drop cleans up.
        crate::shutdown::stop_on_signals()
            .map_err(|e| DrillError::Internal(format!("signal handler: {e}")))?;
        let (staged, notes) = tokio::task::spawn_blocking(move || {
            let mut notes = Vec::new();
            (tar_input::stage(&stage, &mut notes), notes)
        })
        .await
        .map_err(|e| DrillError::Internal(format!("unpacking the tar backup: {e}")))?;
        report.notes.extend(notes);
        let staged = staged?;
        // Each tablespace is read from its staged directory, whatever -T says of it.
        let mut tablespace_mappings = staged.tablespace_mappings.clone();
        tablespace_mappings.extend(
            request
                .tablespace_mappings
                .iter()
                .filter(|(old, _)| !staged.tablespace_mappings.iter().any(|(o, _)| o == old))
                .cloned(),
        );
        staged_request = Some(DrillRequest {
            data_dir: staged.data_dir.clone(),
            wal: Some(staged.wal.clone()),
            tablespace_mappings,
            ..request.clone()
        });
        Some(staged)
    } else {
        None
    };
    let request = staged_request.as_ref().unwrap_or(request);
    let source = read_source(request, report)?;
    let clone_started = Instant::now();
    let (workspace, tablespace_clones) = clone(request, &source, report).await?;
    prepare(request, &source, &workspace, tablespace_clones, report).await?;
    report.seconds.clone = clone_started.elapsed().as_secs_f64();
    let recovered = recover(request, &source, &workspace, report).await?;
    check(request, &source, &recovered, report).await?;
    clean_up(request, recovered.server, workspace, report).await?;
    drop(staged);
    verdict(report)
}

/// Reads DATADIR (version, label, map, pg_control, owner) and finds the server; refuses what
/// cannot be drilled before anything is cloned.
fn read_source(request: &DrillRequest, report: &mut Report) -> Result<Source, DrillError> {
    let data_dir = &request.data_dir;
    let major = prepare::read_major(data_dir)?;
    report.major = Some(major);
    if major < 10 {
        return Err(DrillError::Unsupported { major });
    }
    let (label_text, label, label_path) =
        prepare::read_label(data_dir, request.backup_label.as_deref())?;
    report.backup_label = Some(LabelSummary {
        path: label_path,
        label: label.label.clone(),
        start_lsn: label.start.to_string(),
        start_wal_file: label.start_file.clone(),
        checkpoint_lsn: label.checkpoint.to_string(),
        start_time: label.start_time.clone(),
    });
    let map = prepare::read_map(data_dir, request.tablespace_map.as_deref())?;
    let control = ControlFile::read(data_dir).map_err(|reason| DrillError::NotDataDirectory {
        path: data_dir.clone(),
        reason,
    })?;
    if label.checkpoint > control.checkpoint {
        return Err(DrillError::ForeignLabel(format!(
            "its checkpoint {} is later than the last one this copy's pg_control knows ({}): \
             the copy was taken before that backup started",
            label.checkpoint, control.checkpoint
        )));
    }
    let owner = Owner::of(data_dir)?;
    if nix::unistd::geteuid().is_root() && owner.uid == 0 {
        return Err(DrillError::RootOwned {
            path: data_dir.clone(),
        });
    }
    let binaries = postmaster::find_binaries(major, request.pg_bindir.as_deref())?;
    report.postgres = Some(binaries.version.clone());
    let pg_amcheck = match major {
        14.. => Some(postmaster::find_pg_amcheck(&binaries.bindir).ok_or(DrillError::NoPgAmcheck)?),
        _ => None,
    };
    let tablespaces = prepare::plan_tablespaces(
        data_dir,
        map.as_deref(),
        &request.tablespace_mappings,
        &mut report.notes,
    )?;
    let clone_order = clone_order(request, &mut report.notes)?;
    Ok(Source {
        major,
        label_text,
        label,
        has_map: map.is_some(),
        control,
        owner,
        binaries,
        pg_amcheck,
        tablespaces,
        clone_order,
    })
}

/// Clones DATADIR and each tablespace into a private work directory; returns it and the
/// tablespaces' clones (OID, directory).
async fn clone(
    request: &DrillRequest,
    source: &Source,
    report: &mut Report,
) -> Result<(Workspace, Vec<(String, PathBuf)>), DrillError> {
    let mut workspace =
        Workspace::create(request.work_dir.as_deref(), &source.owner, request.keep)?;
    if request.keep {
        report.kept = Some(workspace.clone_root().to_path_buf());
    }
    let order = &source.clone_order;
    let data = workspace.data_dir();
    let method = workspace
        .clone_tree(
            order,
            &request.data_dir,
            &data,
            &source.owner,
            &mut report.notes,
        )
        .await?;
    report.clone = Some(method);
    let mut tablespace_clones = Vec::new();
    for tablespace in &source.tablespaces {
        let dest = workspace.tablespace_dir(&tablespace.oid);
        workspace
            .clone_tree(
                order,
                &tablespace.source,
                &dest,
                &source.owner,
                &mut report.notes,
            )
            .await?;
        tablespace_clones.push((tablespace.oid.clone(), dest));
    }
    Ok((workspace, tablespace_clones))
}

/// Puts the label, the map's links and the recovery settings into the clone.
async fn prepare(
    request: &DrillRequest,
    source: &Source,
    workspace: &Workspace,
    tablespace_clones: Vec<(String, PathBuf)>,
    report: &mut Report,
) -> Result<(), DrillError> {
    let files = prepare::CloneFiles {
        major: source.major,
        label_text: &source.label_text,
        has_map: source.has_map,
        tablespaces: tablespace_clones,
        wal: request
            .wal
            .as_ref()
            .ok_or_else(|| DrillError::Internal("no WAL source".to_owned()))?,
    };
    let notes = prepare::prepare_clone(&workspace.data_dir(), &files, &source.owner).await?;
    report.notes.extend(notes);
    Ok(())
}

/// Starts the throwaway server on the clone and waits until it is consistent and promoted;
/// a recovery that fails is explained from the server log.
async fn recover(
    request: &DrillRequest,
    source: &Source,
    workspace: &Workspace,
    report: &mut Report,
) -> Result<Recovered, DrillError> {
    let data = workspace.data_dir();
    let socket_dir = workspace.socket_dir();
    let port = free_port();
    let paths = settings::ServerPaths {
        data_dir: &data,
        socket_dir: &socket_dir,
        port,
    };
    let options = settings::server_options(source.major, &paths);
    let recovery_started = Instant::now();
    let mut server = Postmaster::start(
        &source.binaries,
        &data,
        &options,
        &workspace.log_file(),
        &source.owner,
    )?;
    let deadline = request.timeout.map(|timeout| recovery_started + timeout);
    let waited = server.wait_ready(deadline).await;
    report.seconds.recovery = recovery_started.elapsed().as_secs_f64();
    // A label from an earlier backup gets the clone "consistent" before the checkpoint the
    // copy's pg_control names (the server may then trip over pages from its future).
    let log = server.log();
    let facts = serverlog::recovery_facts(&log);
    report.consistent_lsn = facts.consistent_at.map(|lsn| lsn.to_string());
    let checkpoint = source.control.checkpoint;
    if let Some(consistent) = facts.consistent_at.filter(|lsn| *lsn < checkpoint) {
        report.server_log_tail = serverlog::tail(&log, 15);
        return Err(DrillError::ForeignLabel(format!(
            "recovery was consistent at {consistent}, before the checkpoint {checkpoint} that \
             this copy's pg_control names: the copy holds changes from after that backup ended"
        )));
    }
    if let Err(not_ready) = waited {
        report.server_log_tail = serverlog::tail(&log, 15);
        return Err(not_recovered(
            request,
            &source.label,
            &log,
            not_ready,
            report,
        ));
    }
    report.recovery_seconds = Some(report.seconds.recovery);
    report.timeline = facts.new_timeline;
    report.consistent = true;
    Ok(Recovered {
        server,
        socket_dir,
        port,
    })
}

/// Why the server did not become ready: the timeout, missing WAL, or what the log says.
fn not_recovered(
    request: &DrillRequest,
    label: &BackupLabel,
    log: &str,
    not_ready: NotReady,
    report: &Report,
) -> DrillError {
    match not_ready {
        NotReady::TimedOut => DrillError::Timeout {
            seconds: request.timeout.map_or(0, |t| t.as_secs()),
            last: report.server_log_tail.last().cloned().unwrap_or_default(),
        },
        NotReady::Exited => match serverlog::recovery_failure(log, label) {
            RecoveryFailure::MissingWal {
                fatal,
                segment,
                wal_end,
            } => DrillError::MissingWal {
                segment,
                wal_end: wal_end.map(|lsn| lsn.to_string()),
                fatal,
                wal_source: match &request.wal {
                    Some(WalSource::Archive(dir)) => {
                        format!("the WAL archive {}", dir.display())
                    }
                    _ => "the restore command's source".to_string(),
                },
            },
            RecoveryFailure::Other { fatal } => DrillError::RecoveryFailed(fatal),
        },
    }
}

/// amcheck on every database, then the `--sql` checks and the `--exec` command.
async fn check(
    request: &DrillRequest,
    source: &Source,
    recovered: &Recovered,
    report: &mut Report,
) -> Result<(), DrillError> {
    let checks_started = Instant::now();
    let (target, version) = checks::find_target(
        &recovered.socket_dir,
        recovered.port,
        &role_candidates(&source.owner),
    )
    .await?;
    for database in checks::databases(&target).await? {
        let check = match &source.pg_amcheck {
            Some(pg_amcheck) => checks::pg_amcheck(pg_amcheck, &target, &database).await,
            None => checks::btree_check(&target, &database, version).await,
        };
        report.databases.push(check);
    }
    if source.major < 14 {
        report.notes.push(format!(
            "PostgreSQL {} has no heap check (verify_heapam came with 14): B-tree indexes \
             were checked",
            source.major
        ));
    }
    for query in &request.sql {
        report
            .sql
            .push(checks::sql_check(&target, &request.dbname, query).await);
    }
    if let Some(argv) = &request.exec {
        report.exec = Some(checks::exec(argv, &target, &request.dbname).await);
    }
    report.seconds.checks = checks_started.elapsed().as_secs_f64();
    Ok(())
}

/// Stops the server and removes the clone (or keeps it, `--keep`).
async fn clean_up(
    request: &DrillRequest,
    mut server: Postmaster,
    workspace: Workspace,
    report: &mut Report,
) -> Result<(), DrillError> {
    let cleanup_started = Instant::now();
    server.stop(request.keep).await;
    if let Some(kept) = workspace.finish()? {
        report.notes.extend(kept);
    }
    report.seconds.cleanup = cleanup_started.elapsed().as_secs_f64();
    Ok(())
}

/// The drill fails when any check found something.
fn verdict(report: &mut Report) -> Result<(), DrillError> {
    let failed = report.collect_findings();
    if failed > 0 {
        return Err(DrillError::ChecksFailed {
            count: failed,
            first: report.findings.first().cloned().unwrap_or_default(),
        });
    }
    Ok(())
}

/// A port number for the socket's name: the socket directory is private, so any port is free
/// there; one free on TCP too keeps log lines and `ps` unambiguous.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or(5432)
}
