//! Operating RALE from its shipped assets (issue 21), end to end on real PostgreSQL:
//!
//! 1. `ramctrl config generate` writes a 3-node cluster's files (profile `dev`, on
//!    loopback, pgBackRest backups into the test directory); each passes
//!    `ramd --config FILE --check`; the cluster starts from them unchanged and becomes
//!    ready (a primary accepting writes, two streaming replicas);
//! 2. the live agents serve every metric name that the alert rules
//!    (`deploy/prometheus/rale-alerts.yml`) and the Grafana dashboard
//!    (`deploy/grafana/rale-dashboard.json`) query, and `promtool check metrics` accepts
//!    their `/metrics`;
//! 3. with extra databases on the primary (`RALE_OPS_DATABASES`, default 20: each copies
//!    `template1`, ~7.5 MB on each of the three nodes, so CI keeps it small; docs/metrics.md
//!    records a run with 100) the workload collection and a scrape are timed (`FIGURE`
//!    lines), and `GET /api/v1/cluster/metrics` reports the cluster with every standby's
//!    lag from the primary's view.
//!
//! Run: `RALE_OPS_DATABASES=100 cargo test -p rale-e2e --test ops_generated_cluster -- --nocapture`

#[path = "../../ramd-ref/tests/ops_common/mod.rs"]
mod ops_common;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rale_e2e::ramd_cluster::{READY_TIMEOUT, ramd_binary, serial};
use ramd_ref::launch::{Agents, ReadyProbe};
use serde_json::Value;

const NODES: u16 = 3;
/// Extra databases created on the primary unless `RALE_OPS_DATABASES` says otherwise.
const DATABASES_DEFAULT: usize = 20;

/// A base port such that `base .. base + NODES` are all free on 127.0.0.1 now.
fn consecutive_free_ports(avoid: &[u16]) -> anyhow::Result<u16> {
    for _ in 0..200 {
        let probe = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let base = probe.clamp(20_000, 60_000);
        let range: Vec<u16> = (base..base + NODES).collect();
        if range.iter().any(|p| avoid.contains(p)) {
            continue;
        }
        let held: Result<Vec<_>, _> = range
            .iter()
            .map(|p| TcpListener::bind(("127.0.0.1", *p)))
            .collect();
        if held.is_ok() {
            return Ok(base);
        }
    }
    bail!("no {NODES} consecutive free ports found")
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "{cmd:?} failed: {text}");
    Ok(text)
}

fn chmod_755(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", dir.display()))
}

fn secret(text: &str, key: &str) -> anyhow::Result<String> {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .with_context(|| format!("{key} in the generated file"))?;
    Ok(line
        .split('"')
        .nth(1)
        .with_context(|| format!("{key} value"))?
        .to_owned())
}

async fn get(http: &reqwest::Client, url: &str) -> anyhow::Result<(u16, String)> {
    let r = http.get(url).send().await.with_context(|| url.to_owned())?;
    Ok((r.status().as_u16(), r.text().await?))
}

fn promtool_check(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let Some(promtool) = ops_common::promtool() else {
        return Ok(());
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("promtool stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("promtool check metrics: clean");
    Ok(())
}

/// A cluster's generated files.
struct Generated {
    /// `(name, config file, log file)` per node.
    files: Vec<(String, PathBuf, PathBuf)>,
    names: Vec<String>,
    api_base: u16,
    pg_base: u16,
}

/// `ramctrl config generate --profile PROFILE` for [`NODES`] nodes on loopback under
/// `dir` (free consecutive ports, `extra` arguments appended), and `ramd --check` of
/// every file.
fn generate(
    ramd: &Path,
    ramctrl: &Path,
    dir: &Path,
    profile: &str,
    extra: &[&str],
) -> anyhow::Result<Generated> {
    let api_base = consecutive_free_ports(&[])?;
    let pg_base = consecutive_free_ports(&(api_base..api_base + NODES).collect::<Vec<_>>())?;
    let conf = dir.join("conf");
    let mut cmd = Command::new(ramctrl);
    cmd.args([
        "config",
        "generate",
        "--profile",
        profile,
        "--nodes",
        &NODES.to_string(),
        "--api-port",
        &api_base.to_string(),
        "--pg-port",
        &pg_base.to_string(),
        "--data-dir",
        &format!("{}/{{name}}/pgdata", dir.display()),
        "--state-dir",
        &format!("{}/{{name}}/state", dir.display()),
        "--out",
        &conf.display().to_string(),
    ])
    .args(extra);
    eprintln!("{}", run(&mut cmd)?);
    let names: Vec<String> = (1..=NODES).map(|i| format!("node{i}")).collect();
    let mut files = Vec::new();
    for name in &names {
        let node_dir = dir.join(name);
        std::fs::create_dir_all(&node_dir)?;
        chmod_755(&node_dir)?;
        let config = conf.join(format!("{name}.toml"));
        let checked = run(Command::new(ramd)
            .arg("--config")
            .arg(&config)
            .arg("--check"))?;
        ensure!(checked.contains("configuration is valid"), "{checked}");
        files.push((name.clone(), config, node_dir.join("ramd.log")));
    }
    Ok(Generated {
        files,
        names,
        api_base,
        pg_base,
    })
}

fn print_logs(files: &[(String, PathBuf, PathBuf)]) {
    for (name, _, log) in files {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        eprintln!("--- {name} ramd.log (last lines) ---");
        for l in tail.iter().rev() {
            eprintln!("{l}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_dev_cluster_serves_every_metric_the_assets_query() -> anyhow::Result<()> {
    let _serial = serial().await;
    rale_e2e::init_tracing();
    let databases: usize = match std::env::var("RALE_OPS_DATABASES") {
        Ok(v) => v.parse().context("RALE_OPS_DATABASES")?,
        Err(_) => DATABASES_DEFAULT,
    };
    let ramd = ramd_binary()?;
    let ramctrl = rale_e2e::ctl::ramctrl_binary()?;
    let tmp = tempfile::Builder::new()
        .prefix("rale-ops-")
        .tempdir_in("/tmp")?;
    let dir = tmp.path().to_path_buf();
    chmod_755(&dir)?;
    let Generated {
        files,
        names,
        api_base,
        pg_base,
    } = generate(
        &ramd,
        &ramctrl,
        &dir,
        "dev",
        &[
            "--backup",
            "pgbackrest",
            "--backup-dir",
            &format!("{}/backup", dir.display()),
        ],
    )?;
    std::fs::create_dir_all(dir.join("backup/pgbackrest"))?;
    if nix::unistd::geteuid().is_root() {
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.join("backup")))?;
    }
    let node1 = std::fs::read_to_string(&files[0].1)?;
    let su_password = secret(&node1, "superuser_password")?;
    eprintln!("generated {}:\n{node1}", files[0].1.display());

    let mut agents = Agents::new(ramd);
    let outcome = async {
        agents.launch_files(&files)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let api_urls: Vec<String> = (0..NODES)
            .map(|i| format!("http://127.0.0.1:{}", api_base + i))
            .collect();
        let probe = ReadyProbe {
            http: http.clone(),
            api_urls: api_urls.clone(),
            dsns: (0..NODES)
                .map(|i| {
                    format!(
                        "host=127.0.0.1 port={} user=postgres password={su_password} dbname=postgres",
                        pg_base + i
                    )
                })
                .collect(),
            write_sql: "CREATE TABLE IF NOT EXISTS ops_ready (id int)".into(),
        };
        let members = agents.wait_ready(&probe, READY_TIMEOUT).await?;
        eprintln!("ready from generated files: {members:?}");
        let primary = members
            .iter()
            .position(|m| m.role == "primary")
            .and_then(|p| names.iter().position(|n| *n == members[p].name))
            .context("a primary")?;
        let (client, conn) = tokio_postgres::connect(&probe.dsns[primary], tokio_postgres::NoTls).await?;
        let conn_task = tokio::spawn(conn);
        let started = Instant::now();
        for i in 0..databases {
            client
                .batch_execute(&format!("CREATE DATABASE ops_db_{i:03}"))
                .await?;
        }
        eprintln!("created {databases} databases in {:?}", started.elapsed());
        drop(client);
        conn_task.abort();

        // The next collections see them (dev profile: every 10 s).
        let summary_url = format!("{}/api/v1/cluster/metrics", api_urls[primary]);
        let deadline = Instant::now() + Duration::from_secs(90);
        let summary: Value = loop {
            let (code, text) = get(&http, &summary_url).await?;
            ensure!(code == 200, "GET {summary_url}: {code} {text}");
            let v: Value = serde_json::from_str(&text)?;
            let w = &v["workload"];
            if w["databases"].as_u64().unwrap_or(0) as usize > databases
                && w["standbys"].as_array().is_some_and(|s| {
                    s.iter().filter(|x| x["name"] != "rale_fence").count() == usize::from(NODES) - 1
                })
            {
                break v;
            }
            ensure!(Instant::now() < deadline, "workload never showed {databases} databases: {text}");
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        eprintln!("GET /api/v1/cluster/metrics on the primary:\n{}", serde_json::to_string_pretty(&summary)?);
        ensure!(
            summary["leader"].as_str() == Some(names[primary].as_str()),
            "{summary}"
        );
        ensure!(summary["members_running"] == 3, "{summary}");
        let standbys: BTreeSet<String> = summary["workload"]["standbys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect();
        for (i, n) in names.iter().enumerate() {
            if i != primary {
                ensure!(standbys.contains(n), "{n} missing from the primary's standbys {standbys:?}");
            }
        }

        // Scrape cost at 100 databases: 20 scrapes of the primary.
        let metrics_url = format!("{}/metrics", api_urls[primary]);
        let mut durations = Vec::new();
        let mut text = String::new();
        for _ in 0..20 {
            let t = Instant::now();
            let (code, body) = get(&http, &metrics_url).await?;
            durations.push(t.elapsed());
            ensure!(code == 200, "GET /metrics {code}");
            text = body;
        }
        durations.sort();
        let collect = text
            .lines()
            .find(|l| l.starts_with("rale_workload_collect_duration_seconds{"))
            .and_then(|l| l.rsplit(' ').next())
            .context("collection duration")?
            .to_owned();
        let series = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
        eprintln!(
            "FIGURE scrape at {} databases: median {:?}, max {:?} over 20 scrapes; {} bytes, {series} series; collection {collect} s",
            databases + 3,
            durations[durations.len() / 2],
            durations[durations.len() - 1],
            text.len(),
        );
        promtool_check(&text)?;

        // Every name the assets query, served by the live agents.
        let mut served = ops_common::exposition_names(&text);
        for (i, url) in api_urls.iter().enumerate() {
            if i != primary {
                let (_, body) = get(&http, &format!("{url}/metrics")).await?;
                promtool_check(&body)?;
                served.extend(ops_common::exposition_names(&body));
            }
        }
        let queried = ops_common::queried_by_assets();
        let missing: Vec<&String> = queried
            .iter()
            .filter(|n| *n != "up" && !served.contains(*n))
            .collect();
        ensure!(missing.is_empty(), "queried by the rules or the dashboard but not served: {missing:?}");
        eprintln!(
            "FIGURE metric check: {} names queried by the alert rules and the dashboard, all served by the live agents ({} names served)",
            queried.len(),
            served.len()
        );
        Ok::<(), anyhow::Error>(())
    }
    .await;
    let stopped = agents.stop_all(Duration::from_secs(30));
    if outcome.is_err() {
        print_logs(&files);
    }
    eprintln!("agents stopped (SIGKILL needed for: {stopped:?})");
    drop(tmp);
    outcome
}

/// The `staging` and `prod` profiles start too, from their generated files with only
/// `shared_buffers` made small for this machine (`--shared-buffers 64MB`): `prod` has
/// reads behind credentials (`read_open = false`), synchronous replication on and a 5 s
/// lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_staging_and_prod_clusters_start() -> anyhow::Result<()> {
    use base64::Engine;
    let _serial = serial().await;
    rale_e2e::init_tracing();
    let ramd = ramd_binary()?;
    let ramctrl = rale_e2e::ctl::ramctrl_binary()?;
    for profile in ["staging", "prod"] {
        let tmp = tempfile::Builder::new()
            .prefix("rale-ops-")
            .tempdir_in("/tmp")?;
        let dir = tmp.path().to_path_buf();
        chmod_755(&dir)?;
        let g = generate(
            &ramd,
            &ramctrl,
            &dir,
            profile,
            &["--shared-buffers", "64MB"],
        )?;
        let text = std::fs::read_to_string(&g.files[0].1)?;
        let su_password = secret(&text, "superuser_password")?;
        let api_password = secret(&text, "password")?;
        let mut headers = reqwest::header::HeaderMap::new();
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("admin:{api_password}"));
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(&format!("Basic {token}"))?,
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .default_headers(headers)
            .build()?;
        let api_urls: Vec<String> = (0..NODES)
            .map(|i| format!("http://127.0.0.1:{}", g.api_base + i))
            .collect();
        let probe = ReadyProbe {
            http: http.clone(),
            api_urls: api_urls.clone(),
            dsns: (0..NODES)
                .map(|i| {
                    format!(
                        "host=127.0.0.1 port={} user=postgres password={su_password} dbname=postgres",
                        g.pg_base + i
                    )
                })
                .collect(),
            write_sql: "CREATE TABLE IF NOT EXISTS ops_ready (id int)".into(),
        };
        let mut agents = Agents::new(ramd.clone());
        let outcome = async {
            agents.launch_files(&g.files)?;
            let started = Instant::now();
            let members = agents.wait_ready(&probe, READY_TIMEOUT).await?;
            eprintln!(
                "{profile}: ready in {:?} from generated files: {members:?}",
                started.elapsed()
            );
            let primary = members
                .iter()
                .find(|m| m.role == "primary")
                .and_then(|m| g.names.iter().position(|n| *n == m.name))
                .context("a primary")?;
            // The workload collector reports the server (prod: every 30 s).
            let deadline = Instant::now() + Duration::from_secs(75);
            let metrics = loop {
                let (code, body) = get(&http, &format!("{}/metrics", api_urls[primary])).await?;
                ensure!(code == 200, "{profile}: GET /metrics {code}");
                if body
                    .lines()
                    .any(|l| l.starts_with("pg_up{") && l.ends_with(" 1"))
                {
                    break body;
                }
                ensure!(Instant::now() < deadline, "{profile}: pg_up never 1");
                tokio::time::sleep(Duration::from_secs(1)).await;
            };
            promtool_check(&metrics)?;
            let sync_mode = if profile == "prod" { " 1" } else { " 0" };
            ensure!(
                metrics
                    .lines()
                    .any(|l| l.starts_with("rale_synchronous_mode{") && l.ends_with(sync_mode)),
                "{profile}: synchronous mode"
            );
            if profile == "prod" {
                // Reads need credentials.
                let anonymous = reqwest::Client::new()
                    .get(format!("{}/metrics", api_urls[primary]))
                    .send()
                    .await?
                    .status()
                    .as_u16();
                ensure!(
                    anonymous == 401,
                    "prod: anonymous GET /metrics answered {anonymous}"
                );
            }
            let (code, body) = get(
                &http,
                &format!("{}/api/v1/cluster/metrics", api_urls[primary]),
            )
            .await?;
            ensure!(code == 200, "{profile}: cluster metrics {code}");
            let v: Value = serde_json::from_str(&body)?;
            ensure!(
                v["leader"].as_str() == Some(g.names[primary].as_str()),
                "{profile}: {v}"
            );
            eprintln!(
                "FIGURE {profile}: cluster from generated files ready in {:?}",
                started.elapsed()
            );
            Ok::<(), anyhow::Error>(())
        }
        .await;
        let killed = agents.stop_all(Duration::from_secs(30));
        if outcome.is_err() {
            print_logs(&g.files);
        }
        eprintln!("{profile}: agents stopped (SIGKILL needed for: {killed:?})");
        drop(tmp);
        outcome?;
    }
    Ok(())
}
