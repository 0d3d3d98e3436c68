//! Replays the seed corpus of the `lsn` fuzz target (fuzz/corpus/lsn) on stable Rust:
//! every input parses or errors, and what parses prints back to the same value.

use std::path::Path;

#[test]
fn lsn_corpus_round_trips() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/lsn");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory exists") {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file is readable");
        if let Ok(text) = std::str::from_utf8(&data)
            && let Ok(lsn) = text.parse::<rale::Lsn>()
        {
            assert_eq!(
                lsn.to_string().parse::<rale::Lsn>().ok(),
                Some(lsn),
                "{}",
                path.display()
            );
        }
        seen += 1;
    }
    assert!(seen >= 4, "expected the seed corpus in {}", dir.display());
}
