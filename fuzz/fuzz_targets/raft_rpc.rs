#![no_main]
//! Fuzzes the bodies of the consensus RPCs an agent accepts from its peers (vote,
//! append, snapshot, forwarded proposals and membership changes): decoding may refuse,
//! never panic, and what decodes survives a round trip.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let accepted = rale::consensus::raft::check_rpc_bodies(data);
    assert!(accepted <= 6);
});
