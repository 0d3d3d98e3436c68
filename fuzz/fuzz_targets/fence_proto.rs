#![no_main]
//! Fuzzes the commit fence's parser of what a PostgreSQL server sends on a replication
//! connection (`XLogData`, keepalives) and of standby status updates: decoding may
//! refuse, never panic, and what decodes encodes back to a message that decodes equal.
use libfuzzer_sys::fuzz_target;
use ramd_ref::fence::proto::{ServerMessage, StandbyStatus};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ServerMessage::decode(data) {
        let _ = m.received_up_to();
        let again = ServerMessage::decode(&m.encode()).expect("an encoded message decodes");
        assert_eq!(again, m);
    }
    if let Ok(s) = StandbyStatus::decode(data) {
        let again = StandbyStatus::decode(&s.encode()).expect("an encoded status decodes");
        assert_eq!(again, s);
    }
});
