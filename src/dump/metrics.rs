//! The metrics of a pgback dump run (`--metrics-file`): bytes written, one series per database,
//! and the upload's result.

use super::report::RunReport;
use crate::metrics::{DatabaseMetrics, RunMetrics, UploadMetrics};

/// The run's bytes (every file, server-level ones included), each database's outcome, and the
/// upload's (`--upload`).
pub fn run_metrics(metrics: RunMetrics, report: &RunReport) -> RunMetrics {
    let server_bytes: u64 = report.server_files.iter().map(|f| f.bytes).sum();
    let mut total = server_bytes;
    let mut metrics = metrics;
    for db in &report.databases {
        let bytes: u64 = db.files.iter().map(|f| f.bytes).sum();
        total += bytes;
        metrics = metrics.database(DatabaseMetrics {
            database: db.name.clone(),
            success: db.error.is_none(),
            bytes,
            duration: db.duration,
        });
    }
    if let Some(upload) = &report.upload {
        metrics = metrics.upload(UploadMetrics {
            target: upload.store.clone(),
            success: upload.failed == 0,
            bytes: upload.bytes,
            duration: upload.duration,
        });
    }
    metrics.bytes(total)
}
