//! The one integration test binary: tests over real PostgreSQL servers started by [`cluster`],
//! running our binaries only through [`util`].
//!
//! Run with `cargo test --test it`; see `scripts/test` for installing PostgreSQL first.
//! `cargo test --test it -- matrix::` runs the version-matrix tests alone.

mod cluster;
mod conn;
mod crypt;
mod docs;
mod dump;
mod encrypt;
mod harness_selftest;
mod matrix;
mod native_globals;
mod native_snapshot;
mod native_zip;
mod offsite;
mod pgbase_offsite;
mod recipes;
mod remote;
mod restore_dump;
mod restore_encrypted;
mod restore_snapshot;
mod servers;
mod skipped;
mod state_table;
mod util;
mod watch;
