//! Where the archive check looks: an archive directory (every archiver's name forms), a
//! `restore_command` (each segment fetched into a private directory, its page header checked)
//! and the server's archiver (`pg_stat_archiver`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::Client;

use crate::server::ServerVersion;
use crate::wal::{self, SegmentRange};

/// How often a directory is listed again while a segment is missing.
pub const RECHECK_DIRECTORY: Duration = Duration::from_millis(500);
/// How often `pg_stat_archiver` is read again, or the restore_command run again.
pub const RECHECK_SERVER: Duration = Duration::from_secs(1);

/// The first segment of `range` from `from` on that is not in `dir` (plain, compressed,
/// pgBackRest's `-sha1` names, also in pgBackRest's 16-digit subdirectories). A plain copy
/// shorter than a segment does not count yet: an archive_command's `cp` may still be writing it.
pub(super) fn first_missing_in(dir: &Path, range: &SegmentRange, from: u64) -> u64 {
    let mut listings: std::collections::HashMap<PathBuf, Vec<String>> = Default::default();
    let mut list = |dir: PathBuf| -> Vec<String> {
        listings
            .entry(dir.clone())
            .or_insert_with(|| {
                std::fs::read_dir(&dir)
                    .map(|entries| {
                        entries
                            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .clone()
    };
    for segment in from..=range.last {
        let name = range.name(segment);
        let present = [dir.to_path_buf(), dir.join(&name[..16])]
            .into_iter()
            .any(|dir| {
                list(dir.clone()).iter().any(|file| {
                    wal::is_archived_name(file, &name)
                        && (file != &name
                            || std::fs::metadata(dir.join(file))
                                .is_ok_and(|meta| meta.len() == range.segment_size))
                })
            });
        if !present {
            return segment;
        }
    }
    range.last + 1
}

/// The first segment the archiver has not archived yet, by `pg_stat_archiver`: segments are
/// archived in order, so `last_archived_wal` at or past a segment on this timeline (or any
/// file of a later timeline) means it is archived.
pub(super) async fn archived_by_server(
    client: &Client,
    range: &SegmentRange,
) -> Result<u64, (u64, String)> {
    let last: Option<String> = client
        .query_one("SELECT last_archived_wal FROM pg_stat_archiver", &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|error| {
            (
                range.first,
                format!("cannot read pg_stat_archiver, so it was not checked: {error}"),
            )
        })?;
    Ok(first_unarchived(last.as_deref(), range))
}

/// [`archived_by_server`]'s decision, pure.
pub fn first_unarchived(last_archived_wal: Option<&str>, range: &SegmentRange) -> u64 {
    let Some(last) = last_archived_wal else {
        return range.first;
    };
    let timeline = last
        .get(..8)
        .and_then(|tli| u32::from_str_radix(tli, 16).ok());
    match (
        timeline,
        last.get(..24)
            .and_then(|name| wal::parse_wal_file_name(name, range.segment_size)),
    ) {
        (_, Some((tli, segment))) if tli == range.timeline => (segment + 1).max(range.first),
        (Some(tli), _) if tli > range.timeline => range.last + 1,
        _ => range.first,
    }
}

/// A segment the restore_command returned wrong.
pub(super) struct WrongCopy {
    /// Which.
    pub segment: u64,
    /// What is wrong with it.
    pub problem: String,
    /// Shorter than a segment: perhaps a copy still being written into the archive (an
    /// archive_command's `cp` is not atomic), or a half-uploaded file for good.
    pub short: bool,
}

/// A copy shorter than a segment, seen by the last fetch: what the archiver said right after
/// it (the first segment it had not archived), and the problem, reported if the wait runs out
/// on that segment.
pub(super) struct ShortCopy {
    archived: Option<u64>,
    pub segment: u64,
    pub problem: String,
}

/// [`fetch_in_order`]'s outcome as the wait reads it: a short copy is taken as not there yet
/// (it may still be on its way into the archive), unless it is short again although the
/// archiver had archived it before this fetch, which makes it final.
pub(super) async fn short_copies(
    client: &Client,
    range: &SegmentRange,
    fetched: Result<u64, WrongCopy>,
    last_short: &mut Option<ShortCopy>,
) -> Result<u64, (u64, String)> {
    match fetched {
        Ok(first_missing) => Ok(first_missing),
        Err(wrong) if !wrong.short => Err((wrong.segment, wrong.problem)),
        Err(wrong) => {
            let archived_before = last_short.as_ref().is_some_and(|short| {
                short.segment == wrong.segment
                    && short.archived.is_some_and(|first| first > wrong.segment)
            });
            if archived_before {
                return Err((wrong.segment, wrong.problem));
            }
            *last_short = Some(ShortCopy {
                archived: archived_by_server(client, range).await.ok(),
                segment: wrong.segment,
                problem: wrong.problem,
            });
            Ok(wrong.segment)
        }
    }
}

/// Fetches segments from `from` on with the restore_command, in order, and checks each one's
/// header. Ok with the first one it could not fetch; Err with a segment that came back wrong.
pub(super) async fn fetch_in_order(
    command: &str,
    dir: &Path,
    range: &SegmentRange,
    from: u64,
    version: ServerVersion,
    left: Option<Duration>,
) -> Result<u64, WrongCopy> {
    let wrong = |segment, problem: String, short| WrongCopy {
        segment,
        problem,
        short,
    };
    let magic = wal::xlog_page_magic(version.major());
    for segment in from..=range.last {
        let name = range.name(segment);
        let target = dir.join(&name);
        let expanded = expand_restore_command(command, &name, &target, &range.name(range.first));
        // A hanging command is bounded by what is left of the timeout.
        let run = run_shell(&expanded);
        let status = match left.map(|left| left.max(RECHECK_SERVER)) {
            Some(left) => tokio::time::timeout(left, run).await.ok(),
            None => Some(run.await),
        };
        let fetched = matches!(status, Some(Ok(true))) && target.is_file();
        if !fetched {
            let _ = std::fs::remove_file(&target);
            return Ok(segment);
        }
        let header = read_header(&target);
        let size = std::fs::metadata(&target).map(|meta| meta.len());
        let _ = std::fs::remove_file(&target);
        // A restore refuses a copy of the wrong size ("archive file has wrong size").
        if let Ok(size) = size {
            if size != range.segment_size {
                return Err(wrong(
                    segment,
                    format!(
                        "the restore_command returned {size} bytes for it, not a whole segment of {}",
                        range.segment_size
                    ),
                    size < range.segment_size,
                ));
            }
        }
        let header = header.map_err(|error| {
            wrong(
                segment,
                format!("cannot read the fetched copy: {error}"),
                false,
            )
        })?;
        if let Some(magic) = magic {
            let timelines = wal::timelines_of(range, segment);
            wal::check_segment_header(&header, magic, timelines, segment, range.segment_size)
                .map_err(|problem| {
                    wrong(
                        segment,
                        format!("the restore_command returned a wrong file for it: {problem}"),
                        false,
                    )
                })?;
        }
    }
    Ok(range.last + 1)
}

/// Runs `script` with `sh`, as PostgreSQL runs a restore_command, but handed over on stdin:
/// the command (and whatever secret it holds) never shows in `sh`'s argv. Whether it
/// exited 0; the child is killed when the future is dropped (the timeout).
async fn run_shell(script: &str) -> std::io::Result<bool> {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).await?;
        stdin.write_all(b"\n").await?;
    }
    Ok(child.wait().await?.success())
}

fn read_header(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut header = Vec::with_capacity(wal::LONG_PAGE_HEADER_LEN);
    std::fs::File::open(path)?
        .take(wal::LONG_PAGE_HEADER_LEN as u64)
        .read_to_end(&mut header)?;
    Ok(header)
}

/// `restore_command` with `%f` (the segment's name), `%p` (where to put it), `%r` (the first
/// segment the backup needs) and `%%`, as PostgreSQL expands it.
pub fn expand_restore_command(command: &str, file: &str, path: &Path, restart: &str) -> String {
    let mut out = String::with_capacity(command.len() + 64);
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('f') => out.push_str(file),
            Some('p') => out.push_str(&path.to_string_lossy()),
            Some('r') => out.push_str(restart),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// A directory only this user can read (0700), removed with what it holds when dropped.
pub(super) struct PrivateDir(PathBuf);

impl PrivateDir {
    pub(super) fn create() -> std::io::Result<PrivateDir> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "safe-backup-wal-{}-{nanos:08x}",
            std::process::id()
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(PrivateDir(path))
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::Lsn;

    #[test]
    fn the_archivers_last_file_says_how_far_it_got() {
        let size = wal::DEFAULT_SEGMENT_SIZE;
        let range = SegmentRange::of_backup(2, Lsn(0x3000028), Lsn(0x5000100), size);
        assert_eq!((range.first, range.last), (3, 5));
        assert_eq!(first_unarchived(None, &range), 3);
        assert_eq!(
            first_unarchived(Some("000000020000000000000002"), &range),
            3
        );
        assert_eq!(
            first_unarchived(Some("000000020000000000000004"), &range),
            5
        );
        assert_eq!(
            first_unarchived(Some("000000020000000000000005"), &range),
            6
        );
        // The backup history file comes after its segment.
        assert_eq!(
            first_unarchived(Some("000000020000000000000005.00000028.backup"), &range),
            6
        );
        // An older timeline says nothing; a later one (or its history file) says all.
        assert_eq!(
            first_unarchived(Some("000000010000000000000009"), &range),
            3
        );
        assert_eq!(first_unarchived(Some("00000003.history"), &range), 6);
    }

    #[test]
    fn restore_commands_expand_as_postgres_does() {
        assert_eq!(
            expand_restore_command(
                "cp /a/%f \"%p\" # %r 100%% %x%",
                "000000010000000000000003",
                Path::new("/tmp/d/000000010000000000000003"),
                "000000010000000000000002"
            ),
            "cp /a/000000010000000000000003 \"/tmp/d/000000010000000000000003\" \
             # 000000010000000000000002 100% %x%"
        );
    }

    #[test]
    fn a_directory_holds_segments_in_every_archivers_form() {
        let dir =
            std::env::temp_dir().join(format!("safe-backup-archive-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("0000000100000000")).unwrap();
        let range =
            SegmentRange::of_backup(1, Lsn(0x2000000), Lsn(0x6000000), wal::DEFAULT_SEGMENT_SIZE);
        assert_eq!(first_missing_in(&dir, &range, range.first), 2);
        std::fs::write(dir.join("000000010000000000000002.zst"), b"").unwrap();
        std::fs::write(
            dir.join("0000000100000000")
                .join(format!("000000010000000000000003-{}.gz", "a".repeat(40))),
            b"",
        )
        .unwrap();
        // A plain copy counts once it is a whole segment (sparse here).
        let whole = |name: &str| {
            std::fs::File::create(dir.join(name))
                .and_then(|file| file.set_len(wal::DEFAULT_SEGMENT_SIZE))
                .unwrap()
        };
        whole("000000010000000000000005");
        assert_eq!(first_missing_in(&dir, &range, range.first), 4);
        std::fs::write(dir.join("000000010000000000000004.partial"), b"").unwrap();
        assert_eq!(first_missing_in(&dir, &range, 3), 4);
        // Still being copied: shorter than a segment.
        std::fs::write(dir.join("000000010000000000000004"), b"half").unwrap();
        assert_eq!(first_missing_in(&dir, &range, 4), 4);
        whole("000000010000000000000004");
        assert_eq!(first_missing_in(&dir, &range, 4), 6);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
