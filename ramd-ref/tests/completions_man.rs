//! Shell completions and manual pages are generated from the command definitions of
//! `ramctrl` and `ramd` (clap_complete, clap_mangen), offline; the Debian package ships
//! them (docs/packaging.md).
//!
//! Run: `cargo test -p ramd-ref --test completions_man`

use std::process::Command;

fn output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        // No agent is reachable at this URL: generation must not need one.
        .env("RALE_URL", "http://127.0.0.1:9")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

const RAMCTRL: &str = env!("CARGO_BIN_EXE_ramctrl");
const RAMD: &str = env!("CARGO_BIN_EXE_ramd");

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let ctl = output(RAMCTRL, &["completions", shell]);
        for word in ["switchover", "edit-config", "generate", "profile"] {
            assert!(
                ctl.contains(word),
                "ramctrl {shell} completion lacks {word}"
            );
        }
        let daemon = output(RAMD, &["--completions", shell]);
        assert!(
            daemon.contains("config") && daemon.contains("check"),
            "ramd {shell}"
        );
    }
    // The generators themselves are hidden from help and completion.
    let help = output(RAMCTRL, &["--help"]);
    assert!(
        !help.contains("manpages") && !help.contains("completions"),
        "{help}"
    );
}

#[test]
fn manual_pages() {
    let dir = tempfile::tempdir().expect("temp dir");
    output(RAMCTRL, &["manpages", &dir.path().display().to_string()]);
    output(RAMD, &["--manpages", &dir.path().display().to_string()]);
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for page in [
        "ramctrl.1",
        "ramctrl-switchover.1",
        "ramctrl-config-generate.1",
        "ramd.8",
    ] {
        assert!(
            pages.iter().any(|p| p == page),
            "{page} missing from {pages:?}"
        );
    }
    let ramd = std::fs::read_to_string(dir.path().join("ramd.8")).expect("ramd.8");
    assert!(
        ramd.starts_with(".ie") || ramd.contains(".TH ramd 8"),
        "{ramd}"
    );
    assert!(ramd.contains("config"), "{ramd}");
    let ctl = std::fs::read_to_string(dir.path().join("ramctrl.1")).expect("ramctrl.1");
    assert!(ctl.contains(".TH ramctrl 1"), "{ctl}");
    eprintln!("{} manual pages: {}", pages.len(), pages.join(" "));
}
