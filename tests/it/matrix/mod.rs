//! The version matrix: every test in this module runs against each PostgreSQL major 10 to 18.
//!
//! `scripts/test` runs `cargo test --test it -- matrix::` once per major with `PG_BINDIR`
//! pointing at that major's server; a test joins the matrix by living here. Everything else in
//! `tests/it/` runs on the default server only (Debian's 15 in CI).

mod archive;
pub(crate) mod drill;
mod drill_failures;
mod faults;
mod field;
mod hooks;
mod named;
pub(crate) mod native;
mod native_extension;
mod pgback;
pub(crate) mod pgbase;
mod pgbase_faults;
mod pgbase_tar;
mod restore;
pub(crate) mod standby;
