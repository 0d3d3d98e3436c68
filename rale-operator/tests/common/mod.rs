//! Helpers shared by the offline tests: finding external tools, writing YAML files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("rale-operator sits in the workspace")
        .to_path_buf()
}

/// The tool `name` (or the path in environment variable `env`) when it runs with
/// `version_arg`; `None` prints why the calling test is skipped.
pub fn tool(name: &str, env: &str, version_arg: &str) -> Option<PathBuf> {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(name));
    match Command::new(&path).arg(version_arg).output() {
        Ok(o) if o.status.success() => Some(path),
        _ => {
            println!(
                "SKIPPED: {name} not found (set {env} or put it on PATH; docs/kubernetes.md, \"Tests\", says how to install it)"
            );
            None
        }
    }
}

/// Runs `cmd`, returning (success, stdout + stderr).
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The Kubernetes version the objects are validated against (the `k8s-openapi`
/// feature the crate is built with).
pub const KUBERNETES_VERSION: &str = "1.33.0";
