//! The API contract, proved by a client nobody here wrote: schemathesis reads a live
//! agent's `GET /openapi.json` and sends generated requests (valid and invalid) to every
//! operation, with the cluster's credentials and every check on. It fails on a server
//! error the document does not declare, a status code the document does not list, an
//! answer that breaks its schema, a valid request rejected or an invalid one accepted.
//! The adjustments to the checks, each with its reason, are in
//! `tests/schemathesis/schemathesis.toml`; the operations left out are below.
//!
//! schemathesis comes from PyPI: `.ci/run` installs it into a virtual environment and
//! points `RALE_SCHEMATHESIS` at its `st`; otherwise `st` must be on `PATH`
//! (`pip install schemathesis==4.32.5`).
//! Run: `cargo test -p rale-e2e --test ramd_api_contract -- --nocapture`

// The determinism lints of clippy.toml apply to rale::decide only.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};
use rale_e2e::ramd_cluster::{ClusterOptions, RamdCluster, serial};

/// Examples generated per operation and phase: enough to reach each operation's error
/// paths, few enough for CI (about a minute for 103 operations).
const EXAMPLES: &str = "10";

/// Operations left out, with why: (regular expression on the path, reason).
const EXCLUDED: &[(&str, &str)] = &[
    (
        "^/api/v1/members",
        "membership changes: generated members are agents that do not exist; adding them \
         takes the consensus majority away and would tear the cluster down (tested with \
         real agents in ramd_members.rs)",
    ),
    (
        "^/api/v1/backup/restore$",
        "a restore writes into the data directory its request names: generated paths \
         could be anywhere on this machine (restores are tested with real tools in \
         ramd_backup.rs)",
    ),
];

/// Every node backs up with a custom tool whose hooks do nothing, so that the backup
/// operations (start, jobs, list, status, schedules) answer for real.
const BACKUP_TOOL: &str = r#"
[backup]
tool = "custom"
job_dir = "{node_dir}/backup-jobs"

[backup.custom]
state_dir = "{node_dir}/backup-hooks"
backup = "true"
restore = "false"
"#;

/// The schemathesis command line tool.
fn schemathesis() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("RALE_SCHEMATHESIS") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("st"))
        .find(|candidate| candidate.is_file())
        .context(
            "schemathesis not found: run .ci/run (it installs it), or `pip install \
             schemathesis==4.32.5` and put its `st` on PATH, or set RALE_SCHEMATHESIS",
        )
}

/// A number from schemathesis's summary, e.g. `Tested: 103`.
fn summary_number(output: &str, label: &str) -> Option<u64> {
    output.lines().find_map(|line| {
        line.trim()
            .strip_prefix(label)?
            .trim()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemathesis_finds_nothing_the_document_does_not_say() -> anyhow::Result<()> {
    let st = schemathesis()?;
    let _guard = serial().await;
    let c = RamdCluster::start_opts(ClusterOptions {
        node_toml: Some(BACKUP_TOOL.into()),
        ..ClusterOptions::new(3)
    })
    .await?;
    let (user, password) = c.api_auth()?;
    let name = c.names().first().cloned().context("no node")?;
    let url = c.node(&name)?.api_url.clone();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis/schemathesis.toml");
    let mut cmd = Command::new(&st);
    // schemathesis keeps a cache in its working directory: the cluster's, not the tree.
    cmd.current_dir(c.dir())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{url}/openapi.json"))
        .args(["--auth", &format!("{user}:{password}")])
        .args(["--checks", "all", "--max-examples", EXAMPLES])
        .args(["--request-timeout", "60"])
        .env("NO_COLOR", "1");
    // schemathesis keeps only the last of several --exclude-path-regex: one alternation.
    let excluded: Vec<&str> = EXCLUDED.iter().map(|(path, _why)| *path).collect();
    cmd.args(["--exclude-path-regex", &excluded.join("|")]);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await?
        .context("running schemathesis")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    let tested = summary_number(&stdout, "Tested:").unwrap_or(0);
    ensure!(
        out.status.success(),
        "schemathesis found {} against {url} (exit {:?}); the report is above; replay with \
         its `Seed:` line (`st run … --generation-seed SEED`)",
        if stdout.contains("Failures:") {
            "failures"
        } else {
            "errors"
        },
        out.status.code()
    );
    ensure!(
        tested >= 100,
        "schemathesis tested only {tested} operations: the document lost some"
    );
    Ok(())
}

#[test]
fn summary_numbers_are_read() {
    let text = "API Operations:\n  Selected: 103/113\n  Tested: 103\n";
    assert_eq!(summary_number(text, "Tested:"), Some(103));
    assert_eq!(summary_number(text, "Selected:"), Some(103));
    assert_eq!(summary_number(text, "Errored:"), None);
}
