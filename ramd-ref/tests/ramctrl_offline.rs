//! `ramctrl` without a cluster: `params validate` uses the built-in catalog when no agent
//! answers or `--version` is given, and says so; a value starting with `-` is a value.

use std::process::Command;

fn ramctrl(args: &[&str]) -> (i32, String, String) {
    // Port 9 on loopback: nothing listens there, so no agent answers.
    let out = Command::new(env!("CARGO_BIN_EXE_ramctrl"))
        .args(["--url", "http://127.0.0.1:9", "--timeout", "5s"])
        .args(args)
        .env_remove("RALE_URL")
        .output()
        .expect("running ramctrl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn params_validate_works_without_a_cluster() {
    let (code, out, err) = ramctrl(&["params", "validate", "random_page_cost", "-1"]);
    assert_eq!(code, 1, "a refused value exits 1: {out}{err}");
    assert!(out.contains("invalid for PostgreSQL 15"), "{out}");
    assert!(
        err.contains("built-in catalog") && err.contains("no agent answered"),
        "{err}"
    );

    let (code, out, err) = ramctrl(&["params", "validate", "random_page_cost", "1.1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("valid for PostgreSQL 15"), "{out}");

    let (code, out, err) = ramctrl(&["params", "validate", "work_mem", "64MB", "--version", "13"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("PostgreSQL 13"), "{out}");
    assert!(err.contains("--version given"), "{err}");

    let (code, _, err) = ramctrl(&["params", "validate", "work_mem", "64MB", "--version", "9"]);
    assert_eq!(code, 2, "an unknown major is a usage error: {err}");
}
