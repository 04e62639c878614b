//! pgback's encryption: age files (the format of the `age` CLI and of pg_back), streamed so that
//! no plaintext byte of a dump touches the disk, and decrypted in place with `--decrypt`.
//!
//! Uses: secret, pump, checksum, files, glob, values, exit.
//!
//! # Layout
//! - `error`: [`CryptError`], what went wrong, never holding a secret.
//! - `keys`: passphrase or X25519 recipients to encrypt; passphrase or identities to decrypt.
//! - `naming`: `<file>.age`, `<file>.age.<algo>`, `<file>.<algo>.age`, as pg_back names them.
//! - `stream`: the encrypting sink and the async stream that feeds it from pg_dump's stdout.
//! - `files`: files encrypted after the fact (directory dumps) and decrypted in place, `-j`
//!   at a time.

mod error;
mod files;
mod keys;
mod naming;
mod stream;

pub use naming::{
    checksum_path, decrypted_path, encrypted_checksum_path, encrypted_path,
    encrypted_plain_checksum_path, is_encrypted_name,
};

pub use error::CryptError;
pub use files::{
    decrypt_file, decrypt_files, decrypt_in_place, encrypt_directory, encrypt_file, find_encrypted,
    open_decryptor, payload_error, DecryptReport, EncryptedEntry,
};
#[cfg(test)]
pub(crate) use keys::new_x25519_identity;
pub use keys::{config_origin, DecryptKey, EncryptKey};
pub use stream::{encrypt_stream, encrypt_to_vec, EncryptSink, EncryptedStream};
