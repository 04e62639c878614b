//! libpq conventions on top of tokio-postgres: conninfo strings and URIs, PG* variables,
//! `pg_service.conf`, `~/.pgpass`, the default socket directory and `sslmode` with rustls.
//!
//! Uses: exit.
//!
//! Three steps, kept apart like raw flags and validated settings:
//! - [`ConnParams`]: the keywords the user wrote (a conninfo string, a URI, or `set` calls),
//!   checked against the keywords safe-backup supports;
//! - [`ConnSettings::resolve`]: explicit params, the service file, the environment and libpq's
//!   defaults layered into one typed value;
//! - [`ConnSettings::connect`]: one host after the other, like libpq, each attempt named in the
//!   error when all of them fail.
//!
//! Secrets never leave through `Debug`, `Display`, [`ConnSettings::describe`] or an error
//! message; child processes get them through [`ConnSettings::libpq_env`].
//!
//! # Layout
//! In dependency order: each file uses only files above it (tests aside). [`ConnSettings`] is
//! declared in `settings.rs`; the files below add its methods in `impl` blocks of their own.
//! - `settings.rs`: [`ConnSettings`] and the types of its fields ([`HostTarget`], [`SslMode`],
//!   [`Password`], ...). Uses nothing else in `conn/`.
//! - `env.rs`: [`Environment`], the `PG*` variables, home directory and OS user. Uses nothing.
//! - `error.rs`: [`ConnError`] with its exit status and hint, [`Origin`], the wording of a
//!   tokio-postgres failure. Uses settings.
//! - `uri.rs`: the `postgresql://` URI parser. Uses error.
//! - `params.rs`: libpq's keywords (supported, refused, their `PG*` variables), value checks,
//!   [`ConnParams`] and the conninfo parser; back the other way [`quote_conninfo`],
//!   [`ConnSettings::describe`] and [`ConnSettings::libpq_env`]. Uses settings, error, uri.
//! - `service.rs`: `pg_service.conf`, its search path and sections. Uses env, error, params.
//! - `pgpass.rs`: `~/.pgpass` and [`ConnSettings::password_for`]. Uses settings.
//! - `resolve.rs`: [`ConnSettings::resolve`], the layering, one step per setting. Uses
//!   settings, env, error, params, service.
//! - `tls.rs`: the rustls client for each `sslmode`, PEM files, certificate verifiers. Uses
//!   settings, error.
//! - `session.rs`: [`Session`] and the task that drives the connection and reports
//!   [`SessionEvent`]s (NOTIFY, notices, the end). Uses settings, error.
//! - `connect.rs`: [`ConnSettings::connect`], host after host. Uses settings, error, session,
//!   and the methods pgpass.rs and tls.rs add to [`ConnSettings`].
//! - `testing.rs` (tests only): fixtures shared by the unit tests.

mod connect;
mod env;
mod error;
mod params;
mod pgpass;
mod resolve;
mod service;
mod session;
mod settings;
#[cfg(test)]
mod testing;
mod tls;
mod uri;

use std::path::Path;

pub use env::Environment;
pub use error::{AttemptFailure, ConnError, ConnectAttempt, Origin};
pub use params::{quote_conninfo, ConnParams, LIBPQ_ENV_VARS};
pub use session::{Session, SessionEvent};
pub use settings::{
    ChannelBinding, ConnSettings, HostTarget, Password, SslMode, TargetSessionAttrs,
};

/// Runs every parser that reads untrusted text (conninfo strings and URIs, the
/// layering onto an empty environment, a pgpass line, a service file) on `text`.
/// The entry point of the `fuzz/` targets; none of them may panic.
#[doc(hidden)]
pub fn fuzz_parsers(text: &str) {
    if let Ok(params) = ConnParams::parse(text) {
        let _ = ConnSettings::resolve(&params, &Environment::default());
        let _ = format!("{params:?}");
    }
    let _ = pgpass::pgpass_match(text, "localhost", "5432", "db", "user");
    let _ = service::parse_service_file(text, "svc", Path::new("fuzz"));
}
