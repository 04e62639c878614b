//! Remote storage for `pgback`: upload, list, download and delete on S3, B2 (its S3 API), GCS,
//! Azure Blob and SFTP, behind one [`RemoteStore`], plus an [`Uploader`] that sends files up
//! as soon as they are final while other dumps go on.
//!
//! Uses: config, secret, exit.
//!
//! Every remote name is `upload_prefix/key` on every backend; `key` is the file's path relative
//! to the backup directory, with forward slashes ([`remote_key`]). Listings return keys relative
//! to the prefix again, so remote and local names compare directly.
//!
//! - [`RemoteSettings`]: the pg_back keys and flags (in `crate::config`).
//! - `object`: S3, B2, Azure (and GCS reads) through `object_store`; `gcs`: GCS's resumable
//!   upload; `sftp` and `ssh`: russh and russh-sftp; `local`: temp files and part reads;
//!   `credentials`: where secrets come from; `error`: typed, scrubbed errors.

mod credentials;
mod error;
mod gcs;
mod local;
mod object;
mod sftp;
mod ssh;
mod store;
mod types;
mod uploader;

pub use crate::config::{RemoteSettings, StoreKind};
pub use credentials::{Environment, ProcessEnvironment};
pub use error::{Cause, CauseKind, RemoteError};
pub use uploader::{UploadOutcome, UploadQueue, Uploader, UploaderOptions};

pub use store::{remote_key, RemoteStore};
pub use types::{RemoteEntry, Tuning, Uploaded};
