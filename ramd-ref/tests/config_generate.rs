//! `ramctrl config generate` writes files that `ramd --config FILE --check` accepts: every
//! profile (dev, staging, prod), with and without TLS, with each backup tool; and it
//! refuses bad inputs with a usage error. (A cluster started from generated files:
//! `tests/tests/ops_generated_cluster.rs`.)
//!
//! Run: `cargo test -p ramd-ref --test config_generate`

use std::path::Path;
use std::process::Command;

fn ramctrl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ramctrl"))
        .args(args)
        .output()
        .expect("run ramctrl")
}

fn check(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ramd"))
        .arg("--config")
        .arg(config)
        .arg("--check")
        .output()
        .expect("run ramd --check");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

#[test]
fn every_profile_passes_ramd_check() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let base = tmp.path();
    // One certificate for every node (it names 127.0.0.1); the files are per node.
    let tls_dir = base.join("tls");
    std::fs::create_dir_all(&tls_dir).expect("tls dir");
    let tls = ramd_ref::tls::generate_self_signed(&tls_dir, &["127.0.0.1", "localhost"])
        .expect("certificates");
    for name in ["node1", "node2", "node3"] {
        std::fs::copy(&tls.cert, tls_dir.join(format!("{name}.crt"))).expect("copy cert");
        std::fs::copy(&tls.key, tls_dir.join(format!("{name}.key"))).expect("copy key");
    }
    let mut checked = 0;
    for profile in ["dev", "staging", "prod"] {
        for tls_on in [false, true] {
            for backup in ["none", "pgbackrest", "barman"] {
                if backup != "none" && !have(backup) {
                    eprintln!(
                        "SKIP: {backup} not installed; its [backup] section is checked by the unit tests only"
                    );
                    continue;
                }
                let out_dir = base.join(format!("{profile}-{tls_on}-{backup}"));
                let mut args = vec![
                    "config".to_owned(),
                    "generate".into(),
                    "--profile".into(),
                    profile.into(),
                    "--backup".into(),
                    backup.into(),
                    "--backup-dir".into(),
                    base.join("backup").display().to_string(),
                    "--data-dir".into(),
                    format!("{}/{{name}}/data", out_dir.display()),
                    "--state-dir".into(),
                    format!("{}/{{name}}/state", out_dir.display()),
                    "--tls-dir".into(),
                    tls_dir.display().to_string(),
                    "--out".into(),
                    out_dir.display().to_string(),
                ];
                if tls_on {
                    args.push("--tls".into());
                }
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                let out = ramctrl(&refs);
                assert!(
                    out.status.success(),
                    "{args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                for name in ["node1", "node2", "node3"] {
                    let file = out_dir.join(format!("{name}.toml"));
                    let mode = std::os::unix::fs::PermissionsExt::mode(
                        &std::fs::metadata(&file).expect("file").permissions(),
                    );
                    assert_eq!(mode & 0o077, 0, "{} is readable by others", file.display());
                    let (ok, said) = check(&file);
                    assert!(ok, "{profile} tls={tls_on} backup={backup} {name}: {said}");
                    checked += 1;
                }
                if profile == "prod" && tls_on && backup == "pgbackrest" {
                    let text = std::fs::read_to_string(out_dir.join("node1.toml")).expect("read");
                    assert!(text.contains("lease_ttl = \"5s\""), "{text}");
                    assert!(text.contains("mode = \"on\""), "{text}");
                    assert!(text.contains("https://127.0.0.1:8009"), "{text}");
                }
                // Existing files are not replaced without --force.
                let again = ramctrl(&refs);
                assert_eq!(again.status.code(), Some(1), "{:?}", again);
                assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
            }
        }
    }
    eprintln!("ramd --check accepted {checked} generated files");
    assert!(checked >= 18);
}

#[test]
fn bad_inputs_are_usage_errors() {
    for args in [
        &["config", "generate", "--profile", "qa"][..],
        &["config", "generate", "--backup", "tarball"],
        &[
            "config", "generate", "--names", "a,b", "--hosts", "h1,h2,h3",
        ],
        &["config", "generate", "--data-dir", "relative/{name}"],
        &["config", "generate", "--nodes", "0"],
    ] {
        let out = ramctrl(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
    // Without --out the files are printed, secrets included.
    let out = ramctrl(&["config", "generate", "--nodes", "2", "--profile", "dev"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("# ===== node2.toml ====="), "{text}");
    assert_eq!(text.matches("superuser_password = \"").count(), 2);
}
