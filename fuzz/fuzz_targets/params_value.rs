#![no_main]
//! Fuzzes the parameter value parser: the first byte picks a PostgreSQL major and a
//! parameter, the rest is the value text. Validation must never panic, and whatever it
//! accepts must normalize idempotently (see `rale_params::fuzz_value`).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rale_params::fuzz_value(data);
});
