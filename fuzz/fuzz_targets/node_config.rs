#![no_main]
//! Fuzzes the node configuration file: arbitrary text through the parser and the
//! validation `ramd --check` and the start use (`NodeConfig::parse`). Nothing may panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ramd_ref::config::NodeConfig::parse(text);
    }
});
