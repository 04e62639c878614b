//! The metrics of a pgback dump run (`--metrics-file`): bytes written, one series per database.

use super::report::RunReport;
use crate::metrics::{DatabaseMetrics, RunMetrics};

/// The run's bytes (every file, server-level ones included) and each database's outcome.
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
    metrics.bytes(total)
}
