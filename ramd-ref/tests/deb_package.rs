//! The Debian package `rale`: `packaging/deb/build.sh` builds it with cargo-deb, and its
//! contents (`dpkg-deb -c`) and control fields (`dpkg-deb -f`) are what docs/packaging.md
//! promises: both binaries, the systemd unit running `/usr/bin/ramd`, the default
//! configuration as a conffile under `/etc/rale/`, completions for three shells, manual
//! pages, the alert rules and the dashboard.
//!
//! It builds release binaries, so it is ignored by default:
//! `cargo test -p ramd-ref --test deb_package -- --ignored --nocapture`. Without
//! cargo-deb (`cargo install cargo-deb --locked`) or dpkg-deb it says so and passes; CI
//! does not install cargo-deb (compiling it does not fit the CI time budget).
//! `RALE_DEB=path/to/rale.deb` inspects an existing package instead of building one.

use std::path::{Path, PathBuf};
use std::process::Command;

fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn build() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RALE_DEB") {
        return Some(PathBuf::from(p));
    }
    if !have("cargo-deb") {
        eprintln!("SKIP: cargo-deb is not installed (cargo install cargo-deb --locked)");
        return None;
    }
    let said = run(Command::new(repo().join("packaging/deb/build.sh")).current_dir(repo()));
    let path = said
        .lines()
        .rev()
        .find(|l| l.trim_end().ends_with(".deb"))?;
    Some(PathBuf::from(path.trim()))
}

fn contents(deb: &Path) -> Vec<String> {
    run(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5).map(str::to_owned))
        .collect()
}

#[test]
#[ignore = "builds release binaries and the .deb (needs cargo-deb); run with --ignored"]
fn package_holds_what_the_docs_promise() {
    if !have("dpkg-deb") {
        eprintln!("SKIP: dpkg-deb is not installed");
        return;
    }
    let Some(deb) = build() else { return };
    let files = contents(&deb);
    eprintln!("{}:\n  {}", deb.display(), files.join("\n  "));
    for wanted in [
        "./usr/bin/ramd",
        "./usr/bin/ramctrl",
        "./usr/lib/systemd/system/ramd.service",
        "./etc/rale/ramd.toml",
        "./usr/share/bash-completion/completions/ramctrl",
        "./usr/share/bash-completion/completions/ramd",
        "./usr/share/zsh/vendor-completions/_ramctrl",
        "./usr/share/fish/vendor_completions.d/ramctrl.fish",
        "./usr/share/man/man1/ramctrl.1.gz",
        "./usr/share/man/man1/ramctrl-config-generate.1.gz",
        "./usr/share/man/man8/ramd.8.gz",
        "./usr/share/doc/rale/copyright",
        "./usr/share/doc/rale/changelog.Debian.gz",
        "./usr/share/rale/prometheus/rale-alerts.yml",
        "./usr/share/rale/grafana/rale-dashboard.json",
    ] {
        assert!(files.iter().any(|f| f == wanted), "{wanted} missing");
    }
    let field = |name: &str| run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name));
    assert_eq!(field("Package").trim(), "rale");
    assert_eq!(field("Section").trim(), "database");
    // The default configuration is a conffile (upgrades keep local edits), and the unit
    // runs the packaged binary.
    let tmp = tempfile::tempdir().expect("temp dir");
    run(Command::new("dpkg-deb").arg("-R").arg(&deb).arg(tmp.path()));
    let conffiles =
        std::fs::read_to_string(tmp.path().join("DEBIAN/conffiles")).expect("conffiles");
    assert!(
        conffiles.lines().any(|l| l == "/etc/rale/ramd.toml"),
        "{conffiles}"
    );
    let unit = std::fs::read_to_string(tmp.path().join("usr/lib/systemd/system/ramd.service"))
        .expect("unit");
    assert!(
        unit.contains("ExecStart=/usr/bin/ramd --config /etc/rale/ramd.toml"),
        "{unit}"
    );
    assert!(!unit.contains("/usr/local/bin"), "{unit}");
}
