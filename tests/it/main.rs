//! The one integration test binary: tests over real PostgreSQL servers started by [`cluster`].
//!
//! Run with `cargo test --test it`; see `scripts/test` for installing PostgreSQL first.

mod cluster;
mod conn;
mod dump;
mod faults;
mod harness_selftest;
mod hooks;
mod named;
mod remote;
mod restore;
mod servers;
