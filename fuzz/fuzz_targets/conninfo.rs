//! Fuzzes the conninfo / URI / pgpass / service-file parsers: no input may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        safe_backup::conn::fuzz_parsers(text);
    }
});
