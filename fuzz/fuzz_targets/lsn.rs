#![no_main]
//! Fuzzes the LSN parser: any input parses or errors, and what parses prints back the same.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(lsn) = text.parse::<rale::Lsn>() {
            let again: rale::Lsn = lsn.to_string().parse().expect("printed LSN parses");
            assert_eq!(again, lsn);
        }
    }
});
