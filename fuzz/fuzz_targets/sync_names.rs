#![no_main]
//! Fuzzes the `synchronous_standby_names` parser: any input parses or errors without
//! panicking, and what parses prints canonical text that parses back to the same value.
//! Run: `cargo +nightly fuzz run sync_names` from the repository root.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rale_sync::names::check_round_trip(data);
});
