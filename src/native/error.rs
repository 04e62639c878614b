//! The errors of a native export.

use super::inventory::Refusal;
use super::output::OutputClosed;

/// A native export failed, or refused its database.
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    /// A catalog read or a COPY failed.
    #[error("{what}: {}", describe(.source))]
    Query {
        /// What was being read.
        what: &'static str,
        /// The server's or the driver's error.
        source: tokio_postgres::Error,
    },
    /// The database holds objects a native dump cannot reproduce.
    #[error("{} object(s) a native dump cannot reproduce: {}", .0.len(), list(.0))]
    Refused(Vec<Refusal>),
    /// The dump's marker could not be drawn.
    #[error("reading /dev/urandom: {0}")]
    Random(std::io::Error),
    /// A native dump could not be loaded (not one, cut short, not UTF-8).
    #[error("{0}")]
    Load(String),
    /// The file could not take the output.
    #[error(transparent)]
    Output(#[from] OutputClosed),
}

fn list(refusals: &[Refusal]) -> String {
    refusals
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The server's message (and detail) when there is one, else the driver's text.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        None => error.to_string(),
    }
}

/// Wraps a driver error with what was being read.
pub fn query(what: &'static str) -> impl Fn(tokio_postgres::Error) -> NativeError {
    move |source| NativeError::Query { what, source }
}
