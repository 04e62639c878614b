//! What `pgbase` hands back: the `--json` document of a backup or a restore, and the
//! Prometheus metrics of the run (`--metrics-file`).

use crate::base::restore::RestoreSummary;
use crate::base::run::BaseSummary;
use crate::dump::UploadReport;
use crate::metrics::{BackupMetrics, RunMetrics, UploadMetrics};

/// `pgbase --json` after a backup: where its WAL starts and ends, what was received, sent
/// and purged.
pub fn backup_json(summary: &BaseSummary, dir: &std::path::Path) -> serde_json::Value {
    serde_json::json!({
        "directory": dir,
        "server_version": summary.version.num(),
        "start_lsn": summary.start.lsn.to_string(),
        "end_lsn": summary.end.lsn.to_string(),
        "timeline": summary.start.timeline,
        "bytes": summary.bytes,
        "wal_segments": summary.wal_segments.len(),
        "seconds": summary.duration.as_secs_f64(),
        "upload": summary.upload.as_ref().map(|upload| serde_json::json!({
            "store": upload.store,
            "files": upload.files,
            "bytes": upload.bytes,
        })),
        "purged": summary.purged,
    })
}

/// `pgbase --restore --json`.
pub fn restore_json(summary: &RestoreSummary) -> serde_json::Value {
    serde_json::json!({
        "directory": summary.dir,
        "major": summary.major,
        "verified": summary.verified,
        "downloaded": summary.downloaded,
        "recovery_files": summary.recovery_files,
    })
}

/// The metrics of a finished backup: bytes, the backup's LSNs (labelled with `-l`), and the
/// upload.
pub fn backup_metrics(metrics: RunMetrics, summary: &BaseSummary, label: &str) -> RunMetrics {
    let mut metrics = metrics.bytes(summary.bytes).backup(BackupMetrics {
        name: label.to_owned(),
        start_lsn: Some(summary.start.lsn.0),
        stop_lsn: Some(summary.end.lsn.0),
        held: Some(summary.duration),
        wal_archived: None,
    });
    if let Some(upload) = &summary.upload {
        metrics = upload_metrics(metrics, upload);
    }
    metrics
}

/// The upload's series: its store, whether every file arrived, bytes, time.
pub fn upload_metrics(metrics: RunMetrics, upload: &UploadReport) -> RunMetrics {
    metrics.upload(UploadMetrics {
        target: upload.store.clone(),
        success: upload.failed == 0,
        bytes: upload.bytes,
        duration: upload.duration,
    })
}
