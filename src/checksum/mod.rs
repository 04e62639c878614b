//! Checksums: computed while the bytes are written (`hash`), and checked against checksum
//! files that `sha256sum -c` accepts (`verify`), as `pgback --restore` and `--download` do.
//!
//! Uses: files, shutdown, values.

mod hash;
mod verify;

pub use hash::{
    checksum_line, copy_hashed, hash_file, write_checksum_file, ChecksumWriter, Hasher,
};
pub use verify::{
    checksum_files, parse_checksum_line, verify_all, verify_file, ChecksumLine, Verified,
    VerifyError, ALGORITHMS,
};
