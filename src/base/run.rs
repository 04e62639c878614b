//! One `pgbase` run: check and mark the directory, connect, start the WAL stream's slot,
//! receive the archives and the manifest while the WAL streams, sync, and only then remove
//! the marker. SIGINT and SIGTERM drop both connections (the server drops the temporary slot)
//! and leave the marker.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::StreamExt as _;
use tokio::sync::oneshot;

use crate::args::Checkpoint;
use crate::backup::{check_off_note, ArchiveSource, BackupWal, CheckSession};
use crate::base::command::{Format, Request, WalMethod};
use crate::base::error::{BaseError, INCOMPLETE_MARKER};
use crate::base::offsite;
use crate::base::output::{create_private_dir, sync_all, HashedFile, Packing, PlainTree, TarFiles};
use crate::base::wal::{parse_segment_size, stream_wal, WalTarget};
use crate::compress::Side;
use crate::conn::ConnSettings;
use crate::dump::{FinalFiles, Offsite, UploadReport};
use crate::files::fsync_dir;
use crate::replication::{
    base_backup_command, BackupEvent, BackupPosition, BaseBackupOptions, ReplicationConnection,
};
use crate::server::ServerVersion;
use crate::shutdown::ShutdownSignals;
use crate::wal::Lsn;

/// What a finished backup holds.
#[derive(Clone, Debug)]
pub struct BaseSummary {
    /// The server's version.
    pub version: ServerVersion,
    /// Where its WAL starts.
    pub start: BackupPosition,
    /// Where its WAL must reach.
    pub end: BackupPosition,
    /// Archive bytes received.
    pub bytes: u64,
    /// WAL segments streamed (`-X stream`).
    pub wal_segments: Vec<String>,
    /// What `--upload` sent.
    pub upload: Option<UploadReport>,
    /// The backups the purge deleted.
    pub purged: Vec<String>,
    /// How long the backup took (to the last upload).
    pub duration: std::time::Duration,
}

/// Runs the backup until it is done or a signal arrives.
///
/// A failed or interrupted run removes what it wrote, as pg_basebackup does: `-D` and the `-T`
/// targets were new or empty, so everything in them is this run's. A run killed outright
/// (SIGKILL, power loss) leaves `pgbase.incomplete` in `-D` instead, as do `--no-clean` and
/// a `-X none` backup whose WAL is not archived.
///
/// With `--upload`, each file goes up once final; the run succeeds only when every one is
/// confirmed. A failed upload keeps the local backup, which is complete. The purge comes last.
pub async fn run(request: &Request, settings: &ConnSettings) -> Result<BaseSummary, BaseError> {
    let started = Instant::now();
    let mut signals = ShutdownSignals::new().map_err(BaseError::Internal)?;
    let mut offsite = None;
    let dirs = NewDirs {
        dir: &request.dir,
        mapping: &request.tablespace_mapping,
        no_clean: request.no_clean,
    };
    let mut summary = into_new_dirs(dirs, async {
        let interrupted = |signal: &'static str| BaseError::Interrupted {
            signal,
            dir: request.dir.clone(),
            kept: request.no_clean,
        };
        tokio::select! {
            result = offsite::start(request) => offsite = result?,
            Some(signal) = signals.next() => return Err(interrupted(signal.as_str())),
        }
        let finals = offsite
            .as_ref()
            .map(Offsite::final_files)
            .unwrap_or_default();
        tokio::select! {
            result = backup(request, settings, &finals) => result,
            Some(signal) = signals.next() => Err(interrupted(signal.as_str())),
        }
    })
    .await?;
    let store = offsite.as_ref().map(Offsite::store);
    if let Some(offsite) = offsite {
        summary.upload = Some(tokio::select! {
            result = offsite::finish(offsite, request) => result?,
            Some(signal) = signals.next() => return Err(BaseError::Upload {
                message: format!(
                    "interrupted by {}: the local backup in \"{}\" is complete, the remote \
                     one is not",
                    signal.as_str(),
                    request.dir.display()
                ),
                report: None,
            }),
        });
    }
    summary.purged = offsite::purge(request, store.as_deref()).await;
    summary.duration = started.elapsed();
    Ok(summary)
}

/// The directories a run writes into, new or empty.
pub struct NewDirs<'a> {
    /// `-D`.
    pub dir: &'a Path,
    /// The `-T` pairs; their targets are written too.
    pub mapping: &'a [(PathBuf, PathBuf)],
    /// `--no-clean`: a failed run leaves what it wrote.
    pub no_clean: bool,
}

/// Runs `work` on `dir` (new or empty: created 0700 and marked incomplete) and the `-T`
/// targets; when it fails, removes what it wrote, as pg_basebackup does: `dir` and the
/// targets were new or empty, so everything in them is this run's. Kept with `--no-clean`,
/// and when the failure keeps the backup (`-X none` whose WAL is not archived).
pub async fn into_new_dirs<T>(
    dirs: NewDirs<'_>,
    work: impl std::future::Future<Output = Result<T, BaseError>>,
) -> Result<T, BaseError> {
    let NewDirs {
        dir,
        mapping,
        no_clean,
    } = dirs;
    let mut ours = vec![(dir.to_path_buf(), dir.exists())];
    for (_, target) in mapping {
        if is_empty_or_absent(target) {
            ours.push((target.clone(), target.exists()));
        }
    }
    prepare_dir(dir)?;
    let result = work.await;
    if !no_clean && result.as_ref().is_err_and(|error| !error.keeps_backup()) {
        for (dir, existed) in &ours {
            remove_written(dir, *existed);
        }
    }
    result
}

/// Syncs `roots` (the data directory first), then removes its incomplete marker.
pub fn seal(roots: &[PathBuf]) -> Result<(), BaseError> {
    sync_all(roots)?;
    match roots.first() {
        Some(dir) => unmark(dir),
        None => Ok(()),
    }
}

/// Removes `dir`'s incomplete marker, durably: the backup is finished.
fn unmark(dir: &Path) -> Result<(), BaseError> {
    let marker = dir.join(INCOMPLETE_MARKER);
    fs::remove_file(&marker).map_err(BaseError::output(&marker))?;
    fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(BaseError::output(dir))
}

fn is_empty_or_absent(dir: &Path) -> bool {
    match fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(error) => error.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Removes `dir` (or, when it existed before the run, what is in it).
fn remove_written(dir: &Path, existed: bool) {
    let result = if existed {
        fs::read_dir(dir).and_then(|entries| {
            entries.into_iter().try_for_each(|entry| {
                let path = entry?.path();
                if path.is_dir() && !path.is_symlink() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                }
            })
        })
    } else {
        fs::remove_dir_all(dir)
    };
    match result {
        Ok(()) => tracing::info!(dir = %dir.display(), "removed the partial backup"),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "could not remove the partial backup")
        }
    }
}

/// `-D` must be new or empty; it is created (0700) and marked incomplete.
fn prepare_dir(dir: &Path) -> Result<(), BaseError> {
    if fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(BaseError::NotEmpty {
            dir: dir.to_path_buf(),
            tablespace: false,
        });
    }
    create_private_dir(dir)?;
    let marker = dir.join(INCOMPLETE_MARKER);
    fs::File::create(&marker)
        .and_then(|mut file| {
            file.write_all(b"pgbase has not finished this backup: do not restore it\n")?;
            file.sync_all()
        })
        .map_err(BaseError::output(&marker))
}

async fn backup(
    request: &Request,
    settings: &ConnSettings,
    finals: &FinalFiles,
) -> Result<BaseSummary, BaseError> {
    let mut main = ReplicationConnection::connect(settings).await?;
    let version_text = main.show("server_version_num").await?;
    let version = ServerVersion::parse(&version_text)
        .ok_or_else(|| BaseError::Stream(format!("bad server_version_num {version_text:?}")))?;
    if version.num() < 100000 {
        return Err(BaseError::Unsupported(version));
    }
    let server_compression = request
        .compression
        .filter(|c| c.side == Side::Server)
        .map(|c| (c.method.as_str(), c.level));
    if server_compression.is_some() && version.major() < 15 {
        return Err(BaseError::ServerCompression(version));
    }
    // -X none: archiving must be on before the backup starts; the same session checks the
    // archive once it ends.
    let archive_check = match (request.wal_method, &request.archive.source) {
        (WalMethod::None, source) if *source != ArchiveSource::Off => {
            let session = CheckSession::open(settings).await?;
            session.require_archiving()?;
            Some(session)
        }
        _ => None,
    };
    // The slot exists before the backup starts, so the WAL from its start is kept.
    let mut streaming = None;
    if request.wal_method == WalMethod::Stream {
        let mut connection = ReplicationConnection::connect(settings).await?;
        let identity = connection.identify_system().await?;
        tracing::debug!(
            system = identity.system_id,
            timeline = identity.timeline,
            "identified"
        );
        let size_text = connection.show("wal_segment_size").await?;
        let segment_size = parse_segment_size(&size_text)
            .ok_or_else(|| BaseError::Stream(format!("bad wal_segment_size {size_text:?}")))?;
        let slot = format!("pgbase_{}", std::process::id());
        connection.create_temporary_slot(&slot).await?;
        tracing::info!(slot, "temporary replication slot created");
        streaming = Some((connection, slot, segment_size));
    }
    let options = BaseBackupOptions {
        label: request.label.clone(),
        progress: request.progress,
        fast_checkpoint: request.checkpoint == Checkpoint::Fast,
        include_wal: request.wal_method == WalMethod::Fetch,
        manifest: request.manifest,
        max_rate: request.max_rate,
        // -X none: the archive check below waits, with a timeout and a clear report.
        wait_for_archive: false,
        compression: server_compression,
    };
    let command = base_backup_command(version, &options);
    tracing::debug!(command, "starting the base backup");
    let (start_tx, start_rx) = oneshot::channel();
    let (end_tx, end_rx) = oneshot::channel();
    let receive = receive_archives(
        &mut main, version, &command, request, finals, start_tx, end_tx,
    );
    let wal = async {
        let Some((connection, slot, segment_size)) = &mut streaming else {
            return Ok(None);
        };
        let target = match request.format {
            Format::Tar => {
                let packing = packing(request, finals);
                WalTarget::Tar(Box::new(HashedFile::packed(
                    request.dir.join(packing.file_name("pg_wal.tar")),
                    &packing,
                )?))
            }
            Format::Plain => {
                let dir = request.dir.join("pg_wal");
                create_private_dir(&dir)?;
                WalTarget::Dir(dir)
            }
        };
        // The timeline is known once the backup starts; the writer takes it from there.
        stream_wal(connection, slot, start_rx, end_rx, target, *segment_size).await
    };
    let ((start, end, bytes, mut roots), writer) = tokio::try_join!(receive, wal)?;
    let wal_segments = match writer {
        Some(writer) => writer.finish()?,
        None => Vec::new(),
    };
    main.close().await;
    if let Some((connection, _, _)) = streaming {
        connection.close().await;
    }
    match request.format {
        // Each tar file and checksum file was fsynced as it was finished; their names need
        // only the directory's fsync. A syncfs would also wait for every other writer's dirty
        // pages on the same file system.
        Format::Tar => fsync_dir(&request.dir).map_err(BaseError::output(&request.dir))?,
        Format::Plain => {
            roots.insert(0, request.dir.clone());
            sync_all(&roots)?;
        }
    }
    if request.wal_method == WalMethod::None {
        check_archive(request, archive_check, &start, &end).await?;
    }
    unmark(&request.dir)?;
    Ok(BaseSummary {
        version,
        start,
        end,
        bytes,
        wal_segments,
        upload: None,
        purged: Vec::new(),
        duration: std::time::Duration::ZERO,
    })
}

/// `-X none`: the hook pair's archive check on the WAL from the backup's start to its end.
async fn check_archive(
    request: &Request,
    session: Option<CheckSession>,
    start: &BackupPosition,
    end: &BackupPosition,
) -> Result<(), BaseError> {
    let mut progress = |line: &str| eprintln!("pgbase: {line}");
    let Some(session) = session else {
        progress(&check_off_note(start.lsn, end.lsn));
        return Ok(());
    };
    let wal = BackupWal {
        timeline: start.timeline,
        start: start.lsn,
        stop: end.lsn,
        name: "pgbase".to_owned(),
    };
    session
        .wait_for_wal(&request.archive, &wal, None, &mut progress)
        .await?;
    Ok(())
}

/// How the tar files are written: client-side compression, the checksum files.
fn packing(request: &Request, finals: &FinalFiles) -> Packing {
    Packing {
        finals: finals.clone(),
        algorithm: request.checksum_algo,
        compress: request
            .compression
            .filter(|c| c.side == Side::Client)
            .map(|c| (c.method, c.level)),
        key: request.encrypt.clone(),
    }
}

/// Where archive bytes go now.
enum Sink {
    Tar(Box<TarFiles>),
    Plain(PlainTree),
}

/// Receives the stream of `BASE_BACKUP`; returns the start, the end, the archive bytes and
/// the tablespace directories written.
async fn receive_archives(
    connection: &mut ReplicationConnection,
    version: ServerVersion,
    command: &str,
    request: &Request,
    finals: &FinalFiles,
    start_tx: oneshot::Sender<BackupPosition>,
    end_tx: oneshot::Sender<Lsn>,
) -> Result<(BackupPosition, BackupPosition, u64, Vec<std::path::PathBuf>), BaseError> {
    let mut sink = match request.format {
        Format::Tar => Sink::Tar(Box::new(TarFiles::new(
            &request.dir,
            packing(request, finals),
        ))),
        Format::Plain => Sink::Plain(PlainTree::new(&request.dir, &request.tablespace_mapping)),
    };
    let manifest_packing = match request.format {
        Format::Tar => packing(request, finals).uncompressed(),
        // pg_verifybackup refuses files the manifest does not list in a data directory.
        Format::Plain => Packing::hashed(Default::default()),
    };
    let mut stream = connection.base_backup(version, command).await?;
    let mut start_tx = Some(start_tx);
    let mut end_tx = Some(end_tx);
    let (mut start, mut end) = (None, None);
    let mut manifest: Option<HashedFile> = None;
    let mut in_manifest = false;
    let mut bytes = 0u64;
    let mut progress = Progress::new(request.progress);
    while let Some(event) = stream.next().await? {
        match event {
            BackupEvent::Start(position) => {
                tracing::info!(lsn = %position.lsn, timeline = position.timeline, "backup started");
                start = Some(position);
                if let Some(tx) = start_tx.take() {
                    let _ = tx.send(position);
                }
            }
            BackupEvent::Tablespaces(tablespaces) => {
                progress.total_kb = tablespaces
                    .iter()
                    .filter_map(|t| t.size_kb)
                    .fold(0, |total: i64, size| total.saturating_add(size));
                if let Sink::Plain(tree) = &sink {
                    let locations: Vec<String> = tablespaces
                        .iter()
                        .filter_map(|t| t.location.clone())
                        .collect();
                    tree.check_tablespaces(&locations)?;
                }
            }
            BackupEvent::Archive { name, location } => {
                in_manifest = false;
                match &mut sink {
                    Sink::Tar(files) => files.begin(&name)?,
                    Sink::Plain(tree) => tree.begin(&name, location.as_deref())?,
                }
            }
            BackupEvent::Manifest => {
                end_archive(&mut sink)?;
                in_manifest = true;
                manifest = Some(HashedFile::packed(
                    request
                        .dir
                        .join(manifest_packing.file_name("backup_manifest")),
                    &manifest_packing,
                )?);
            }
            BackupEvent::Data(data) => match (&mut manifest, in_manifest) {
                (Some(file), true) => file.write(&data)?,
                _ => {
                    bytes += data.len() as u64;
                    progress.show(bytes);
                    match &mut sink {
                        Sink::Tar(files) => files.data(&data)?,
                        Sink::Plain(tree) => tree.data(&data)?,
                    }
                }
            },
            BackupEvent::Progress(_) => {}
            BackupEvent::End(position) => {
                tracing::info!(lsn = %position.lsn, "backup ended");
                end = Some(position);
                if let Some(tx) = end_tx.take() {
                    let _ = tx.send(position.lsn);
                }
            }
        }
    }
    progress.done(bytes);
    end_archive(&mut sink)?;
    if let Some(file) = manifest {
        file.finish()?;
    }
    let (Some(start), Some(end)) = (start, end) else {
        return Err(BaseError::Stream(
            "BASE_BACKUP ended without its start and end positions".to_owned(),
        ));
    };
    let roots = match sink {
        Sink::Plain(tree) => tree.roots,
        Sink::Tar(_) => Vec::new(),
    };
    Ok((start, end, bytes, roots))
}

fn end_archive(sink: &mut Sink) -> Result<(), BaseError> {
    match sink {
        Sink::Tar(files) => files.end(),
        Sink::Plain(tree) => tree.end(),
    }
}

/// `-P`: bytes received against the server's estimate, at most once a second on stderr.
struct Progress {
    enabled: bool,
    total_kb: i64,
    shown: Option<Instant>,
}

impl Progress {
    fn new(enabled: bool) -> Progress {
        Progress {
            enabled,
            total_kb: 0,
            shown: None,
        }
    }

    fn show(&mut self, bytes: u64) {
        if !self.enabled || self.shown.is_some_and(|at| at.elapsed().as_secs() < 1) {
            return;
        }
        self.shown = Some(Instant::now());
        eprintln!("{}", progress_line(bytes, self.total_kb));
    }

    fn done(&mut self, bytes: u64) {
        if self.enabled {
            eprintln!("{}", progress_line(bytes, self.total_kb));
        }
    }
}

/// `12345/67890 kB (18%)`; the server's estimate can be passed, so the percentage stops at 100.
pub fn progress_line(bytes: u64, total_kb: i64) -> String {
    let done_kb = bytes / 1024;
    match u64::try_from(total_kb) {
        Ok(total) if total > 0 => format!(
            "pgbase: {done_kb}/{total} kB ({}%)",
            (done_kb * 100 / total).min(100)
        ),
        _ => format!("pgbase: {done_kb} kB"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_and_a_refused_directory() {
        assert_eq!(
            progress_line(2048 * 1024, 4096),
            "pgbase: 2048/4096 kB (50%)"
        );
        assert_eq!(
            progress_line(9000 * 1024, 4096),
            "pgbase: 9000/4096 kB (100%)"
        );
        assert_eq!(progress_line(1024, 0), "pgbase: 1 kB");
        let scratch = tempfile::tempdir().unwrap();
        fs::write(scratch.path().join("x"), "").unwrap();
        assert!(matches!(
            prepare_dir(scratch.path()),
            Err(BaseError::NotEmpty { .. })
        ));
        let fresh = scratch.path().join("new");
        prepare_dir(&fresh).unwrap();
        assert!(fresh.join(INCOMPLETE_MARKER).exists());
    }
}
