#![no_main]
//! Fuzzes the request bodies of the agent API's write endpoints: the same bytes are
//! decoded and checked as the body of every endpoint (`ramd_ref::api::bodies`). Nothing
//! may panic, and whatever decodes must survive an encode/decode round trip.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let results = ramd_ref::api::bodies::check_all(data);
    assert_eq!(results.len(), ramd_ref::api::bodies::ENDPOINTS.len());
});
