//! Replays the seed corpus of the `api_bodies` fuzz target (fuzz/corpus/api_bodies) on
//! stable Rust: every seed is checked as the body of every write endpoint without a
//! panic, and the valid seeds are accepted by the endpoint they were written for.
//! Run: cargo test -p ramd-ref --test fuzz_corpus

use std::path::Path;

use ramd_ref::api::bodies::{ENDPOINTS, check_all};

/// Seeds that must pass the named endpoint's checks.
const VALID: &[(&str, &str)] = &[
    ("switchover", "POST /switchover"),
    ("switchover_scheduled", "POST /switchover"),
    ("member_add", "POST /api/v1/members"),
    ("config_patch", "PATCH /config"),
    ("param_validate", "POST /api/v1/parameter/validate"),
    ("optimize", "POST /api/v1/parameter/optimize"),
    ("sync_add", "POST /api/v1/sync-standbys/add"),
    ("restart", "POST /restart"),
    ("commit_level", "POST /api/v1/sync-standbys/commit-level"),
    // An empty body reads as `{}`, like the API's extractor.
    ("empty", "POST /reinitialize"),
];

/// Seeds that the named endpoint must refuse.
const INVALID: &[(&str, &str)] = &[
    ("switchover_bad", "POST /switchover"),
    ("member_bad", "POST /api/v1/members"),
    ("config_bad", "PATCH /config"),
    ("param_bad", "POST /api/v1/parameter/validate"),
    ("nested", "PATCH /config"),
    ("not_utf8", "POST /api/v1/backup/start"),
];

fn verdict(data: &[u8], endpoint: &str) -> Result<(), String> {
    check_all(data)
        .into_iter()
        .find(|(e, _)| *e == endpoint)
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("unknown endpoint {endpoint}"))
}

#[test]
fn api_bodies_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/api_bodies");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory exists") {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file is readable");
        assert_eq!(check_all(&data).len(), ENDPOINTS.len());
        seen += 1;
    }
    assert!(seen >= 10, "expected the seed corpus in {}", dir.display());
    for (file, endpoint) in VALID {
        let data = std::fs::read(dir.join(file)).expect("seed exists");
        let v = verdict(&data, endpoint);
        assert!(v.is_ok(), "{file} refused by {endpoint}: {v:?}");
    }
    for (file, endpoint) in INVALID {
        let data = std::fs::read(dir.join(file)).expect("seed exists");
        assert!(
            verdict(&data, endpoint).is_err(),
            "{file} accepted by {endpoint}"
        );
    }
}

/// Replays the seed corpus of the `node_config` fuzz target (fuzz/corpus/node_config):
/// the parser and validation never panic, and the example file is valid.
#[test]
fn node_config_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/node_config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory exists") {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file is readable");
        if let Ok(text) = std::str::from_utf8(&data) {
            let parsed = ramd_ref::config::NodeConfig::parse(text);
            if path.ends_with("minimal.toml") {
                assert!(parsed.is_ok(), "{}: {parsed:?}", path.display());
            }
            if path.ends_with("duplicate_peer.toml") {
                assert!(parsed.is_err(), "{}", path.display());
            }
        }
        seen += 1;
    }
    assert!(seen >= 5, "expected the seed corpus in {}", dir.display());
}

/// Replays the seed corpus of the `fence_proto` fuzz target (fuzz/corpus/fence_proto):
/// what decodes round-trips, nothing panics.
#[test]
fn fence_proto_corpus_replays() {
    use ramd_ref::fence::proto::{ServerMessage, StandbyStatus};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/fence_proto");
    let mut decoded = 0;
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory exists") {
        let data = std::fs::read(entry.expect("corpus entry").path()).expect("readable");
        if let Ok(m) = ServerMessage::decode(&data) {
            assert_eq!(ServerMessage::decode(&m.encode()).ok(), Some(m));
            decoded += 1;
        }
        if let Ok(s) = StandbyStatus::decode(&data) {
            assert_eq!(StandbyStatus::decode(&s.encode()).ok(), Some(s));
            decoded += 1;
        }
        seen += 1;
    }
    assert!(
        seen >= 5 && decoded >= 3,
        "{seen} files, {decoded} decoded in {}",
        dir.display()
    );
}
