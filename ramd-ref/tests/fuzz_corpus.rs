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
