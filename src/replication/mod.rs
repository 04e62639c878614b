//! A small client of PostgreSQL's physical replication protocol on `postgres-protocol`
//! (rust-postgres's codec) over our own socket: tokio-postgres cannot open a replication
//! connection, and no crate speaks `BASE_BACKUP` on 10–18 (see the commit adding the crate).
//!
//! One operation per file, each with its own small state machine; every `ErrorResponse`, in
//! any state, becomes [`ReplicationError::Server`] with the server's message.
//!
//! # Layout
//! In dependency order: each file uses only files above it (tests aside).
//! - `error.rs`: [`ReplicationError`] with its exit status and hint, [`ServerError`].
//! - `wire.rs`: the socket (TCP, Unix, TLS), buffers, message decoding. Uses error.
//! - `startup.rs`: [`ReplicationConnection::connect`]: socket, TLS by `sslmode` (the rustls
//!   client of [`crate::conn`]), StartupMessage with `replication=true`, trust, cleartext,
//!   md5 and SCRAM-SHA-256 logins. Uses error, wire.
//! - `simple_query.rs`: [`ReplicationConnection::simple_query`], `identify_system` and `show`
//!   (slots too), text rows with NULLs. Uses error, wire, startup.
//! - `base_backup.rs`: the `BASE_BACKUP` command per major and [`BaseBackup`], its stream in
//!   both shapes. Uses error, wire, startup, simple_query.
//! - `start_replication.rs`: temporary physical slots and [`WalStream`]. Uses error, wire,
//!   startup, simple_query.

mod base_backup;
mod error;
mod simple_query;
mod start_replication;
mod startup;
mod wire;

pub use base_backup::{
    base_backup_command, has_manifest, quote_literal, single_copy, BackupEvent, BackupPosition,
    BaseBackup, BaseBackupOptions, ManifestChecksums, Tablespace,
};
pub use error::{ReplicationError, ServerError};
pub use simple_query::{ResultSet, Row, SystemIdentity};
pub use start_replication::{
    create_temporary_slot_command, is_slot_name, start_replication_command, WalEvent, WalStream,
};
pub use startup::ReplicationConnection;
