//! The playground as a newcomer runs it: the real `ramctrl demo --json` binary in the
//! foreground, its one JSON object once the cluster is ready (nodes, generated
//! credentials), `ramctrl list` with those credentials, a write refused with wrong ones,
//! then Ctrl-C (SIGINT): every agent and server stops and the directory is removed.
//! Run: `cargo test -p rale-e2e --test ramctrl_demo -- --nocapture`

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use rale_e2e::ctl::{Ctl, ramctrl_binary};
use rale_e2e::ramd_cluster::{ramd_binary, serial};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Bound on the playground becoming ready (bootstrap plus two clones).
const READY: Duration = Duration::from_secs(180);

fn alive(pid: u32) -> bool {
    PathBuf::from(format!("/proc/{pid}")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playground_starts_answers_and_cleans_up() -> anyhow::Result<()> {
    let _serial = serial().await;
    let bin = ramctrl_binary()?;
    let t = Instant::now();
    let mut demo = tokio::process::Command::new(&bin)
        .args(["demo", "--json"])
        .env("RALE_RAMD_BIN", ramd_binary()?)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting ramctrl demo")?;
    let demo_pid = demo.id().context("demo pid")?;
    let stdout = demo.stdout.take().context("demo stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let report: Value = tokio::time::timeout(READY, async {
        while let Some(line) = lines.next_line().await? {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                return anyhow::Ok(v);
            }
        }
        anyhow::bail!("ramctrl demo ended without a report")
    })
    .await
    .context("the playground was not ready in time")??;
    eprintln!(
        "FIGURE playground ready (ramctrl demo --json): {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let nodes = report["nodes"].as_array().context("nodes")?;
    ensure!(nodes.len() == 3, "{report}");
    let primaries = nodes.iter().filter(|n| n["role"] == "primary").count();
    ensure!(primaries == 1, "one primary expected: {report}");
    let user = report["auth"]["user"].as_str().context("auth.user")?;
    let password = report["auth"]["password"]
        .as_str()
        .context("auth.password")?;
    ensure!(password.len() >= 16, "a weak generated password");
    let dir = PathBuf::from(report["dir"].as_str().context("dir")?);
    let agents: Vec<u32> = nodes
        .iter()
        .filter_map(|n| n["pid"].as_u64())
        .filter_map(|p| u32::try_from(p).ok())
        .collect();
    ensure!(agents.len() == 3, "{report}");
    let urls = nodes
        .iter()
        .filter_map(|n| n["api_url"].as_str())
        .collect::<Vec<_>>()
        .join(",");

    let ctl = Ctl {
        bin: bin.clone(),
        urls,
        user: user.to_owned(),
        password: password.to_owned(),
    };
    let list = ctl.ok(&["list"]).await?;
    for n in ["node1", "node2", "node3"] {
        ensure!(list.contains(n), "list lacks {n}: {list}");
    }
    let o = ctl
        .run_with(&ctl.urls, "not-the-password", &[], &["pause"])
        .await?;
    ensure!(o.code == 1, "a wrong password must be refused: {o:?}");

    // Ctrl-C: everything stops, the directory goes.
    let stopping = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(demo_pid)?),
        nix::sys::signal::Signal::SIGINT,
    )?;
    let status = tokio::time::timeout(Duration::from_secs(90), demo.wait())
        .await
        .context("ramctrl demo did not stop within 90 s of SIGINT")??;
    ensure!(status.success(), "ramctrl demo exited with {status}");
    eprintln!(
        "FIGURE playground stop (SIGINT -> exit): {:.1} s",
        stopping.elapsed().as_secs_f64()
    );
    for pid in &agents {
        ensure!(
            !alive(*pid),
            "agent {pid} still runs after the playground stopped"
        );
    }
    ensure!(!dir.exists(), "{} was not removed", dir.display());
    Ok(())
}
