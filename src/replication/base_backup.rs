//! `BASE_BACKUP`: the command text for each major (pure builders), and the stream of what the
//! server sends back, in both shapes:
//! - 10–14: result sets (start, tablespaces), one CopyOut per tablespace in the order of the
//!   tablespace rows, on 13+ one more CopyOut with the manifest, then the end result set;
//! - 15+ (asked with `TARGET 'client'` on 15; the only shape on 16+): the same result sets
//!   around a single CopyOut whose CopyData begin with a type byte: `n` a new archive (name,
//!   tablespace path), `d` data, `p` progress (int64), `m` the manifest follows.
//!
//! An `ErrorResponse` ends the stream with the server's message in every state, the copy too.

use bytes::{Buf as _, Bytes};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use crate::replication::error::ReplicationError;
use crate::replication::simple_query::{text_row, Row};
use crate::replication::startup::ReplicationConnection;
use crate::replication::wire::{message_name, unexpected};
use crate::server::ServerVersion;
use crate::wal::Lsn;

/// The checksums the server's manifest lists per file (`MANIFEST_CHECKSUMS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ManifestChecksums {
    /// No per-file checksums.
    #[value(name = "NONE", alias = "none")]
    None,
    /// CRC-32C, the server's default.
    #[value(name = "CRC32C", alias = "crc32c")]
    Crc32c,
    /// SHA-224.
    #[value(name = "SHA224", alias = "sha224")]
    Sha224,
    /// SHA-256.
    #[value(name = "SHA256", alias = "sha256")]
    Sha256,
    /// SHA-384.
    #[value(name = "SHA384", alias = "sha384")]
    Sha384,
    /// SHA-512.
    #[value(name = "SHA512", alias = "sha512")]
    Sha512,
}

impl ManifestChecksums {
    /// The server's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ManifestChecksums::None => "NONE",
            ManifestChecksums::Crc32c => "CRC32C",
            ManifestChecksums::Sha224 => "SHA224",
            ManifestChecksums::Sha256 => "SHA256",
            ManifestChecksums::Sha384 => "SHA384",
            ManifestChecksums::Sha512 => "SHA512",
        }
    }
}

/// What the backup asks of the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseBackupOptions {
    /// `backup_label`'s LABEL.
    pub label: String,
    /// Ask for size estimates (and, on 15+, progress messages).
    pub progress: bool,
    /// An immediate checkpoint rather than a spread one.
    pub fast_checkpoint: bool,
    /// Include the WAL the backup needs in the main archive (`-X fetch`).
    pub include_wal: bool,
    /// The manifest and its checksums (13+); `None` for no manifest.
    pub manifest: Option<ManifestChecksums>,
    /// The server's transfer limit in kB/s (`MAX_RATE`, 32 to 1048576); `None` for none.
    pub max_rate: Option<u32>,
    /// Wait at the end until the backup's WAL is archived (pg_basebackup's `-X none`);
    /// otherwise `NOWAIT` / `WAIT false`, for a backup that carries its WAL.
    pub wait_for_archive: bool,
    /// Server-side compression (15+): the method (`gzip`, `lz4`, `zstd`) and its level.
    pub compression: Option<(&'static str, Option<i32>)>,
}

/// Whether this major sends the single-COPY shape (`TARGET 'client'` on 15, always on 16+).
pub fn single_copy(version: ServerVersion) -> bool {
    version.num() >= 150000
}

/// Whether this major can send a backup manifest.
pub fn has_manifest(version: ServerVersion) -> bool {
    version.num() >= 130000
}

/// The `BASE_BACKUP` command for `version`: the 10–14 keyword syntax, or 15's parenthesised
/// option list with `TARGET 'client'`.
pub fn base_backup_command(version: ServerVersion, options: &BaseBackupOptions) -> String {
    let manifest = options.manifest.filter(|_| has_manifest(version));
    if single_copy(version) {
        let mut list = vec![format!("LABEL {}", quote_literal(&options.label))];
        if options.progress {
            list.push("PROGRESS".to_owned());
        }
        list.push(format!(
            "CHECKPOINT '{}'",
            if options.fast_checkpoint {
                "fast"
            } else {
                "spread"
            }
        ));
        if options.include_wal {
            list.push("WAL".to_owned());
        }
        if !options.wait_for_archive {
            list.push("WAIT false".to_owned());
        }
        if let Some(rate) = options.max_rate {
            list.push(format!("MAX_RATE {rate}"));
        }
        if let Some(checksums) = manifest {
            list.push("MANIFEST 'yes'".to_owned());
            list.push(format!("MANIFEST_CHECKSUMS '{}'", checksums.as_str()));
        }
        list.push("TARGET 'client'".to_owned());
        if let Some((method, level)) = options.compression {
            list.push(format!("COMPRESSION '{method}'"));
            if let Some(level) = level {
                list.push(format!("COMPRESSION_DETAIL 'level={level}'"));
            }
        }
        format!("BASE_BACKUP ({})", list.join(", "))
    } else {
        let mut text = format!("BASE_BACKUP LABEL {}", quote_literal(&options.label));
        if options.progress {
            text.push_str(" PROGRESS");
        }
        if options.fast_checkpoint {
            text.push_str(" FAST");
        }
        if options.include_wal {
            text.push_str(" WAL");
        }
        if !options.wait_for_archive {
            text.push_str(" NOWAIT");
        }
        if let Some(rate) = options.max_rate {
            text.push_str(&format!(" MAX_RATE {rate}"));
        }
        if let Some(checksums) = manifest {
            text.push_str(" MANIFEST 'yes' MANIFEST_CHECKSUMS '");
            text.push_str(checksums.as_str());
            text.push('\'');
        }
        text
    }
}

/// A string constant for the replication grammar: single quotes doubled (it has no
/// backslash escapes).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A WAL position and its timeline, as the start and end result sets give them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupPosition {
    pub lsn: Lsn,
    pub timeline: u32,
}

/// A row of the tablespace result set. The main data directory's row has no oid and no
/// location, and no size without PROGRESS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tablespace {
    /// The tablespace's oid; `None` for the main data directory.
    pub oid: Option<u32>,
    /// Where it lives on the server; `None` for the main data directory.
    pub location: Option<String>,
    /// The size estimate in kB, 64-bit; `None` without PROGRESS.
    pub size_kb: Option<i64>,
}

impl Tablespace {
    /// The archive's name as pg_basebackup names it: `base.tar` or `<oid>.tar`.
    pub fn archive_name(&self) -> String {
        match self.oid {
            Some(oid) => format!("{oid}.tar"),
            None => "base.tar".to_owned(),
        }
    }
}

/// One step of a base backup's stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupEvent {
    /// The start: the backup's WAL begins here.
    Start(BackupPosition),
    /// The tablespaces, the main data directory among them.
    Tablespaces(Vec<Tablespace>),
    /// A new archive begins; the [`BackupEvent::Data`] that follow are its bytes (a tar
    /// stream). `location` is the tablespace's path on the server, `None` for the main one.
    Archive {
        /// `base.tar` or `<oid>.tar`.
        name: String,
        /// The tablespace's location.
        location: Option<String>,
    },
    /// The manifest begins; the [`BackupEvent::Data`] that follow are its bytes.
    Manifest,
    /// Bytes of the current archive or manifest.
    Data(Bytes),
    /// The server's count of bytes sent so far (15+ with PROGRESS).
    Progress(u64),
    /// The end: the backup needs WAL up to here.
    End(BackupPosition),
}

/// A running `BASE_BACKUP`: call [`BaseBackup::next`] until it returns `None`.
pub struct BaseBackup<'a> {
    connection: &'a mut ReplicationConnection,
    single_copy: bool,
    result_sets: usize,
    rows: Option<Vec<Row>>,
    tablespaces: Vec<Tablespace>,
    copies: usize,
}

impl ReplicationConnection {
    /// Sends `command` (from [`base_backup_command`]) and returns its stream.
    pub async fn base_backup(
        &mut self,
        version: ServerVersion,
        command: &str,
    ) -> Result<BaseBackup<'_>, ReplicationError> {
        frontend::query(command, &mut self.wire.write)?;
        self.wire.flush().await?;
        Ok(BaseBackup {
            connection: self,
            single_copy: single_copy(version),
            result_sets: 0,
            rows: None,
            tablespaces: Vec::new(),
            copies: 0,
        })
    }
}

impl BaseBackup<'_> {
    /// The next event; `None` once the server is ready for the next command.
    pub async fn next(&mut self) -> Result<Option<BackupEvent>, ReplicationError> {
        loop {
            match self.connection.wire.expect_message().await? {
                Message::RowDescription(_) => self.rows = Some(Vec::new()),
                Message::DataRow(body) => match &mut self.rows {
                    Some(rows) => rows.push(text_row(&body)?),
                    None => return Err(unexpected("DataRow without RowDescription")),
                },
                Message::CommandComplete(_) => {
                    if let Some(rows) = self.rows.take() {
                        self.result_sets += 1;
                        return self.result_set(rows).map(Some);
                    }
                }
                Message::CopyOutResponse(_) => {
                    self.copies += 1;
                    if !self.single_copy {
                        return self.old_shape_copy().map(Some);
                    }
                }
                Message::CopyData(body) => {
                    let data = body.into_bytes();
                    if !self.single_copy {
                        return Ok(Some(BackupEvent::Data(data)));
                    }
                    if let Some(event) = frame(data)? {
                        return Ok(Some(event));
                    }
                }
                Message::CopyDone => {}
                Message::ReadyForQuery(_) => return Ok(None),
                other => return Err(unexpected(message_name(&other))),
            }
        }
    }

    fn result_set(&mut self, rows: Vec<Row>) -> Result<BackupEvent, ReplicationError> {
        match self.result_sets {
            1 => position(&rows, "start").map(BackupEvent::Start),
            2 => {
                self.tablespaces = rows.iter().map(tablespace).collect::<Result<_, _>>()?;
                Ok(BackupEvent::Tablespaces(self.tablespaces.clone()))
            }
            _ => position(&rows, "end").map(BackupEvent::End),
        }
    }

    /// Before 15: the n-th CopyOut is the n-th tablespace's archive, one more is the manifest.
    fn old_shape_copy(&self) -> Result<BackupEvent, ReplicationError> {
        match self.tablespaces.get(self.copies - 1) {
            Some(tablespace) => Ok(BackupEvent::Archive {
                name: tablespace.archive_name(),
                location: tablespace.location.clone(),
            }),
            None if self.copies == self.tablespaces.len() + 1 => Ok(BackupEvent::Manifest),
            None => Err(unexpected(
                "CopyOutResponse beyond the tablespaces and manifest",
            )),
        }
    }
}

/// One CopyData of the single-COPY shape; `None` for a frame that carries nothing.
pub fn frame(mut data: Bytes) -> Result<Option<BackupEvent>, ReplicationError> {
    if data.is_empty() {
        return Err(ReplicationError::Protocol("empty CopyData".to_owned()));
    }
    let kind = data.get_u8();
    match kind {
        b'n' => {
            let name = cstring(&mut data)?;
            let location = cstring(&mut data)?;
            Ok(Some(BackupEvent::Archive {
                name,
                location: Some(location).filter(|l| !l.is_empty()),
            }))
        }
        b'd' => Ok(Some(BackupEvent::Data(data))),
        b'p' if data.len() >= 8 => Ok(Some(BackupEvent::Progress(
            u64::try_from(data.get_i64()).unwrap_or(0),
        ))),
        b'm' => Ok(Some(BackupEvent::Manifest)),
        other => Err(ReplicationError::Protocol(format!(
            "unknown BASE_BACKUP frame type {:?}",
            char::from(other)
        ))),
    }
}

fn cstring(data: &mut Bytes) -> Result<String, ReplicationError> {
    let end = data
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| ReplicationError::Protocol("unterminated string in a frame".to_owned()))?;
    let text = String::from_utf8_lossy(&data[..end]).into_owned();
    data.advance(end + 1);
    Ok(text)
}

fn position(rows: &[Row], which: &str) -> Result<BackupPosition, ReplicationError> {
    let bad = || ReplicationError::Protocol(format!("bad {which} position from BASE_BACKUP"));
    let row = rows.first().ok_or_else(bad)?;
    let lsn = row
        .first()
        .and_then(|v| v.as_deref())
        .and_then(Lsn::parse)
        .ok_or_else(bad)?;
    let timeline = row
        .get(1)
        .and_then(|v| v.as_deref())
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(bad)?;
    Ok(BackupPosition { lsn, timeline })
}

fn tablespace(row: &Row) -> Result<Tablespace, ReplicationError> {
    let field = |i: usize| row.get(i).and_then(|v| v.as_deref());
    let bad = |what: &str| ReplicationError::Protocol(format!("bad tablespace {what} {row:?}"));
    Ok(Tablespace {
        oid: field(0)
            .map(|t| t.parse().map_err(|_| bad("oid")))
            .transpose()?,
        location: field(1).map(str::to_owned),
        size_kb: field(2)
            .map(|t| t.parse().map_err(|_| bad("size")))
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> BaseBackupOptions {
        BaseBackupOptions {
            label: "it's".to_owned(),
            progress: true,
            fast_checkpoint: true,
            include_wal: false,
            manifest: Some(ManifestChecksums::Sha256),
            max_rate: None,
            wait_for_archive: false,
            compression: None,
        }
    }

    #[test]
    fn each_major_gets_its_syntax() {
        assert_eq!(
            base_backup_command(ServerVersion(100023), &options()),
            "BASE_BACKUP LABEL 'it''s' PROGRESS FAST NOWAIT"
        );
        assert_eq!(
            base_backup_command(ServerVersion(130020), &options()),
            "BASE_BACKUP LABEL 'it''s' PROGRESS FAST NOWAIT MANIFEST 'yes' MANIFEST_CHECKSUMS 'SHA256'"
        );
        let spread_fetch = BaseBackupOptions {
            progress: false,
            fast_checkpoint: false,
            include_wal: true,
            manifest: None,
            max_rate: Some(32),
            ..options()
        };
        assert_eq!(
            base_backup_command(ServerVersion(140000), &spread_fetch),
            "BASE_BACKUP LABEL 'it''s' WAL NOWAIT MAX_RATE 32"
        );
        for version in [150000, 160004, 180001] {
            assert_eq!(
                base_backup_command(ServerVersion(version), &options()),
                "BASE_BACKUP (LABEL 'it''s', PROGRESS, CHECKPOINT 'fast', WAIT false, \
                 MANIFEST 'yes', MANIFEST_CHECKSUMS 'SHA256', TARGET 'client')"
            );
        }
        assert_eq!(
            base_backup_command(ServerVersion(170000), &spread_fetch),
            "BASE_BACKUP (LABEL 'it''s', CHECKPOINT 'spread', WAL, WAIT false, MAX_RATE 32, \
             TARGET 'client')"
        );
        let archived = BaseBackupOptions {
            wait_for_archive: true,
            manifest: None,
            ..options()
        };
        assert_eq!(
            base_backup_command(ServerVersion(120000), &archived),
            "BASE_BACKUP LABEL 'it''s' PROGRESS FAST"
        );
        assert_eq!(
            base_backup_command(ServerVersion(160000), &archived),
            "BASE_BACKUP (LABEL 'it''s', PROGRESS, CHECKPOINT 'fast', TARGET 'client')"
        );
        let compressed = BaseBackupOptions {
            compression: Some(("zstd", Some(3))),
            ..archived
        };
        assert_eq!(
            base_backup_command(ServerVersion(150000), &compressed),
            "BASE_BACKUP (LABEL 'it''s', PROGRESS, CHECKPOINT 'fast', TARGET 'client', \
             COMPRESSION 'zstd', COMPRESSION_DETAIL 'level=3')"
        );
        assert!(!single_copy(ServerVersion(140010)));
        assert!(single_copy(ServerVersion(150000)));
    }

    #[test]
    fn shapes_and_manifests_follow_the_version_number_not_the_major_name() {
        // 9.6's major() is 96: comparing majors would take it for a 16.
        assert!(!single_copy(ServerVersion(90624)));
        assert!(!has_manifest(ServerVersion(90624)));
        assert!(!single_copy(ServerVersion(140011)));
        assert!(single_copy(ServerVersion(150018)));
        assert!(!has_manifest(ServerVersion(120022)));
        assert!(has_manifest(ServerVersion(130023)));
    }

    #[test]
    fn frames_of_the_single_copy_shape() {
        let archive = frame(Bytes::from_static(b"n16384.tar\0/srv/ts\0")).unwrap();
        assert_eq!(
            archive,
            Some(BackupEvent::Archive {
                name: "16384.tar".to_owned(),
                location: Some("/srv/ts".to_owned()),
            })
        );
        let main = frame(Bytes::from_static(b"nbase.tar\0\0")).unwrap();
        assert_eq!(
            main,
            Some(BackupEvent::Archive {
                name: "base.tar".to_owned(),
                location: None,
            })
        );
        let data = frame(Bytes::from_static(b"dabc")).unwrap();
        assert_eq!(data, Some(BackupEvent::Data(Bytes::from_static(b"abc"))));
        let mut progress = vec![b'p'];
        progress.extend_from_slice(&(5_000_000_000i64).to_be_bytes());
        assert_eq!(
            frame(Bytes::from(progress)).unwrap(),
            Some(BackupEvent::Progress(5_000_000_000))
        );
        assert_eq!(
            frame(Bytes::from_static(b"m")).unwrap(),
            Some(BackupEvent::Manifest)
        );
        assert!(frame(Bytes::from_static(b"x")).is_err());
        assert!(frame(Bytes::from_static(b"nno-terminator")).is_err());
    }

    #[test]
    fn the_main_directory_row_is_all_null_and_sizes_are_64_bit() {
        let main = tablespace(&vec![None, None, None]).unwrap();
        assert_eq!(main.archive_name(), "base.tar");
        assert_eq!(main.location, None);
        let big = tablespace(&vec![
            Some("16384".to_owned()),
            Some("/srv/ts".to_owned()),
            Some("9000000000".to_owned()),
        ])
        .unwrap();
        assert_eq!(big.size_kb, Some(9_000_000_000));
        assert_eq!(big.archive_name(), "16384.tar");
        assert!(tablespace(&vec![Some("x".to_owned()), None, None]).is_err());
        let start = position(
            &[vec![Some("0/2000028".to_owned()), Some("1".to_owned())]],
            "start",
        );
        assert_eq!(
            start.unwrap(),
            BackupPosition {
                lsn: Lsn(0x2000028),
                timeline: 1
            }
        );
        assert!(position(&[vec![None, None]], "end").is_err());
    }
}
