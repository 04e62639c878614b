//! pgback's encryption: age files (the format of the `age` CLI and of pg_back), streamed so that
//! no plaintext byte of a dump touches the disk, and decrypted in place with `--decrypt`.
//!
//! # Layout
//! - [`error`]: [`CryptError`], what went wrong, never holding a secret.
//! - [`keys`]: passphrase or X25519 recipients to encrypt; passphrase or identities to decrypt.
//! - [`naming`]: `<file>.age`, `<file>.age.<algo>`, `<file>.<algo>.age`, as pg_back names them.
//! - [`stream`]: the encrypting sink and the async stream that feeds it from pg_dump's stdout.
//! - [`files`]: files encrypted after the fact (directory dumps) and decrypted in place, `-j`
//!   at a time.

pub mod error;
pub mod files;
pub mod keys;
pub mod naming;
pub mod stream;

pub use error::CryptError;
pub use files::{
    decrypt_file, decrypt_files, decrypt_in_place, encrypt_directory, encrypt_file, find_encrypted,
    open_decryptor, payload_error, DecryptReport, EncryptedEntry,
};
pub use keys::{DecryptKey, EncryptKey};
pub use stream::{encrypt_stream, encrypt_to_vec, EncryptSink, EncryptedStream};
