//! Replays every seed of `fuzz/corpus/params_value/` through the fuzz target's function, so
//! the corpus is exercised on stable Rust in CI.

#[test]
fn replay_params_value_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/params_value");
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let data =
            std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        rale_params::fuzz_value(&data);
        n += 1;
    }
    assert!(
        n >= 20,
        "expected a seed corpus, found {n} files in {}",
        dir.display()
    );
}
