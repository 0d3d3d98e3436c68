//! `ramd` end to end: the REST API as an operator uses it, on a real 3-node cluster —
//! health checks per role, cluster/history/metrics/nodes/members reads, a configuration
//! round trip, pause and resume, credentials refused, a switchover seen through
//! `GET /primary`, the node's file reloaded without a restart (password rotation on
//! SIGHUP, a client-network allow-list through `POST /reload`) — and the same cluster
//! shape served over HTTPS with a private CA.
//! Run: `cargo test -p rale-e2e --test ramd_api -- --nocapture`

// The determinism lints of clippy.toml apply to rale::decide only.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use rale_e2e::WAIT;
use rale_e2e::ramd_cluster::{RamdCluster, serial};
use ramd_ref::client::{Answer, Client, ClientConfig};
use ramd_ref::config::Password;
use reqwest::Method;
use serde_json::{Value, json};

/// A client of every agent with (or without) the cluster's credentials.
fn client(c: &RamdCluster, with_auth: bool) -> anyhow::Result<Client> {
    let (user, password) = c.api_auth()?;
    let urls = c
        .names()
        .iter()
        .map(|n| c.node(n).map(|d| d.api_url.clone()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ca_cert_pem = c
        .ca_cert()
        .map(std::fs::read)
        .transpose()
        .context("reading the cluster CA")?;
    Ok(Client::new(ClientConfig {
        urls,
        username: user,
        password: with_auth.then(|| Password::new(password)),
        ca_cert_pem,
        request_timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(5),
    })?)
}

/// One request to node `name`'s agent.
async fn at(
    api: &Client,
    c: &RamdCluster,
    name: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Answer> {
    let url = c.node(name)?.api_url.clone();
    Ok(api.request_to(&url, method, path, body.as_ref()).await?)
}

fn text(a: &Answer) -> String {
    String::from_utf8_lossy(&a.body).into_owned()
}

fn json_of(a: &Answer) -> anyhow::Result<Value> {
    serde_json::from_slice(&a.body).with_context(|| format!("not JSON: {}", text(a)))
}

async fn status_of(api: &Client, c: &RamdCluster, name: &str, path: &str) -> anyhow::Result<u16> {
    Ok(at(api, c, name, Method::GET, path, None)
        .await?
        .status
        .as_u16())
}

/// Health checks answer by role on every node.
async fn health_by_role(api: &Client, c: &RamdCluster, primary: &str) -> anyhow::Result<()> {
    for name in c.names() {
        let is_primary = name == primary;
        let p = status_of(api, c, &name, "/primary").await?;
        let r = status_of(api, c, &name, "/replica").await?;
        let h = status_of(api, c, &name, "/health").await?;
        eprintln!("{name}: /primary {p} /replica {r} /health {h}");
        ensure!(
            p == if is_primary { 200 } else { 503 },
            "{name} /primary {p}"
        );
        ensure!(
            r == if is_primary { 503 } else { 200 },
            "{name} /replica {r}"
        );
        ensure!(h == 200, "{name} /health {h}");
    }
    Ok(())
}

async fn operator_session(c: &RamdCluster) -> anyhow::Result<()> {
    let api = client(c, true)?;
    let anonymous = client(c, false)?;
    let primary = c.primary().await?;
    let replicas: Vec<String> = c.names().into_iter().filter(|n| *n != primary).collect();
    // Replicas report streaming once the fixture is ready; /replica needs it.
    for r in &replicas {
        c.wait_streaming(r, WAIT).await?;
    }
    health_by_role(&api, c, &primary).await?;

    // Reads.
    let cluster = json_of(&at(&api, c, &replicas[0], Method::GET, "/cluster", None).await?)?;
    let members = cluster["members"].as_array().context("members")?;
    ensure!(members.len() == 3, "{cluster}");
    let leaders: Vec<&Value> = members
        .iter()
        .filter(|m| m["role"] == "leader" || m["role"] == "primary")
        .collect();
    ensure!(
        leaders.len() == 1 && leaders[0]["name"] == primary.as_str(),
        "{cluster}"
    );
    let history = at(&api, c, &primary, Method::GET, "/history", None).await?;
    ensure!(history.status == 200, "/history {}", history.status);
    ensure!(json_of(&history)?.is_array(), "{}", text(&history));
    let metrics = at(&api, c, &primary, Method::GET, "/metrics", None).await?;
    ensure!(metrics.status == 200, "/metrics {}", metrics.status);
    let m = text(&metrics);
    for name in [
        "patroni_primary",
        "patroni_postgres_running",
        "patroni_postgres_timeline",
        "patroni_xlog_location",
        "rale_consensus_ok",
        "rale_consensus_term",
        "rale_build_info",
    ] {
        ensure!(m.contains(name), "/metrics lacks {name}");
    }
    promtool_check(&m)?;
    let nodes = json_of(&at(&api, c, &replicas[1], Method::GET, "/api/v1/nodes", None).await?)?;
    let nodes = nodes.as_array().context("nodes is an array")?;
    ensure!(nodes.len() == 3, "{nodes:?}");
    let voters = api.members().await?.voters;
    ensure!(voters.len() == 3, "members: {voters:?}");

    // Credentials: reads are open, writes are not.
    let refused = at(
        &anonymous,
        c,
        &primary,
        Method::PATCH,
        "/config",
        Some(json!({"maximum_lag_on_failover_bytes": 1})),
    )
    .await?;
    ensure!(
        refused.status == 401,
        "PATCH without credentials: {}",
        refused.status
    );
    ensure!(
        refused.headers.contains_key("www-authenticate"),
        "401 without a Basic challenge"
    );
    let refused = at(&anonymous, c, &primary, Method::POST, "/api/v1/pause", None).await?;
    ensure!(
        refused.status == 401,
        "pause without credentials: {}",
        refused.status
    );
    let refused = at(
        &anonymous,
        c,
        &primary,
        Method::POST,
        "/switchover",
        Some(json!({"leader": primary, "candidate": replicas[0]})),
    )
    .await?;
    ensure!(
        refused.status == 401,
        "switchover without credentials: {}",
        refused.status
    );

    // Configuration round trip: change one value through a replica, read it on another.
    let (before, version) = api.config().await?;
    let lag_bytes = 3 * 1024 * 1024 + 7;
    ensure!(
        before["maximum_lag_on_failover_bytes"] != json!(lag_bytes),
        "{before}"
    );
    let (applied, new_version) = api
        .patch_config(
            &json!({"maximum_lag_on_failover_bytes": lag_bytes}),
            version,
        )
        .await?;
    ensure!(
        applied["maximum_lag_on_failover_bytes"] == json!(lag_bytes),
        "{applied}"
    );
    ensure!(
        new_version > version,
        "version {version:?} -> {new_version:?}"
    );
    let read_back = json_of(&at(&api, c, &replicas[1], Method::GET, "/config", None).await?)?;
    ensure!(
        read_back["maximum_lag_on_failover_bytes"] == json!(lag_bytes),
        "{read_back}"
    );
    // A stale version is refused.
    let stale = api
        .patch_config(&json!({"maximum_lag_on_failover_bytes": 1}), version)
        .await;
    ensure!(stale.is_err(), "a patch on a stale version was accepted");

    // Maintenance mode on and off.
    let paused = api.pause().await?;
    ensure!(paused.paused == Some(true), "{paused:?}");
    ensure!(
        api.cluster_status().await?.paused,
        "status does not show paused"
    );
    let again = at(&api, c, &primary, Method::POST, "/api/v1/pause", None).await?;
    ensure!(
        again.status == 409,
        "second pause: {} {}",
        again.status,
        text(&again)
    );
    let resumed = api.resume().await?;
    ensure!(resumed.paused == Some(false), "{resumed:?}");
    ensure!(!api.cluster_status().await?.paused, "still paused");

    // Switchover to a named replica, watched through GET /primary.
    let candidate = replicas[0].clone();
    c.write(&primary, 1).await?;
    c.wait_row(&candidate, 1, WAIT).await?;
    let t = Instant::now();
    let answer = at(
        &api,
        c,
        &replicas[1],
        Method::POST,
        "/switchover",
        Some(json!({"leader": primary, "candidate": candidate})),
    )
    .await?;
    ensure!(
        answer.status == 200,
        "switchover: {} {}",
        answer.status,
        text(&answer)
    );
    c.wait_for(
        &format!("GET /primary 200 on {candidate}"),
        WAIT,
        || async {
            Ok((status_of(&api, c, &candidate, "/primary").await.ok() == Some(200)).then_some(()))
        },
    )
    .await?;
    eprintln!(
        "FIGURE api switchover: request -> /primary 200 on {candidate}: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    c.wait_for(&format!("GET /primary 503 on {primary}"), WAIT, || async {
        Ok((status_of(&api, c, &primary, "/primary").await.ok() == Some(503)).then_some(()))
    })
    .await?;
    let history = api.history().await?;
    ensure!(
        history.iter().any(|h| h.kind == "switchover"),
        "no switchover in {history:?}"
    );
    file_reload(c, &replicas[1]).await
}

/// `POST /reload` on node `name` with these credentials; the HTTP status.
async fn reload_as(c: &RamdCluster, name: &str, user: &str, password: &str) -> anyhow::Result<u16> {
    let url = format!("{}/reload", c.node(name)?.api_url);
    let resp = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?
        .post(&url)
        .basic_auth(user, Some(password))
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    Ok(resp.status().as_u16())
}

/// The node's own file reloads without a restart: a rotated API password (SIGHUP), then
/// a client-network allow-list (`POST /reload`), then back (SIGHUP).
async fn file_reload(c: &RamdCluster, name: &str) -> anyhow::Result<()> {
    let (user, old) = c.credentials()?;
    let path = c.node(name)?.config.clone();
    let original = std::fs::read_to_string(&path)?;
    let rotated = "rotated-Secret-42";
    let old_line = format!("password = \"{old}\"");
    ensure!(
        original.contains(&old_line),
        "no password line in {}",
        path.display()
    );
    let hup = || -> anyhow::Result<()> {
        let pid = i32::try_from(c.agent_pid(name)?)?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGHUP,
        )?;
        Ok(())
    };
    let pid = c.agent_pid(name)?;
    std::fs::write(
        &path,
        original.replace(&old_line, &format!("password = \"{rotated}\"")),
    )?;
    hup()?;
    c.wait_for("the old password refused after SIGHUP", WAIT, || async {
        Ok((reload_as(c, name, &user, &old).await? == 401).then_some(()))
    })
    .await?;
    let code = reload_as(c, name, &user, rotated).await?;
    ensure!(code == 202, "the rotated password: {code}");

    // An allow-list without loopback, applied through POST /reload: writes from here are
    // refused with 403 (reads stay open).
    let listen_line = original
        .lines()
        .find(|l| l.starts_with("listen = "))
        .context("listen line")?
        .to_owned();
    std::fs::write(
        &path,
        original
            .replace(&old_line, &format!("password = \"{rotated}\""))
            .replace(
                &listen_line,
                &format!("{listen_line}\nallow_networks = [\"10.0.0.0/8\"]"),
            ),
    )?;
    ensure!(reload_as(c, name, &user, rotated).await? == 202, "reload");
    let code = reload_as(c, name, &user, rotated).await?;
    ensure!(code == 403, "a write from outside the allow-list: {code}");
    ensure!(
        c.get_node_status(name).await.is_ok(),
        "reads are open with an allow-list"
    );

    // Back to the original file; the agent never restarted.
    std::fs::write(&path, &original)?;
    hup()?;
    c.wait_for("the original password accepted again", WAIT, || async {
        Ok((reload_as(c, name, &user, &old).await? == 202).then_some(()))
    })
    .await?;
    ensure!(c.agent_pid(name)? == pid, "the agent restarted");
    Ok(())
}

#[tokio::test]
async fn operator_uses_the_rest_api() -> anyhow::Result<()> {
    let _serial = serial().await;
    let t = Instant::now();
    let mut c = RamdCluster::start(3, None).await?;
    eprintln!("FIGURE cluster ready: {:.1} s", t.elapsed().as_secs_f64());
    let result = operator_session(&c).await;
    if result.is_err() {
        c.keep_dir();
    }
    eprintln!("FIGURE ramd_api total: {:.1} s", t.elapsed().as_secs_f64());
    result
}

#[tokio::test]
async fn cluster_over_https() -> anyhow::Result<()> {
    let _serial = serial().await;
    let t = Instant::now();
    // Ready means: a leader elected and the lease taken over Raft RPCs on HTTPS.
    let mut c = RamdCluster::start_tls(3, None).await?;
    eprintln!(
        "FIGURE TLS cluster ready: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let result = async {
        let primary = c.primary().await?;
        for name in c.names() {
            let url = &c.node(&name)?.api_url;
            ensure!(url.starts_with("https://"), "{name}: {url}");
        }
        let api = client(&c, true)?;
        let status = api.cluster_status().await?;
        ensure!(
            status.leader.as_deref() == Some(primary.as_str()),
            "{status:?}"
        );
        ensure!(api.members().await?.voters.len() == 3, "members");
        // A write over HTTPS, proposed through consensus.
        ensure!(api.pause().await?.paused == Some(true), "pause");
        ensure!(api.resume().await?.paused == Some(false), "resume");
        // Without the CA, a client refuses the agents' certificates.
        let (user, password) = c.api_auth()?;
        let untrusted = Client::new(ClientConfig {
            urls: vec![c.node(&primary)?.api_url.clone()],
            username: user,
            password: Some(Password::new(password)),
            connect_timeout: Duration::from_secs(5),
            ..ClientConfig::default()
        })?;
        let err = untrusted
            .cluster()
            .await
            .err()
            .context("an untrusted CA was accepted")?;
        ensure!(
            err.to_string().to_ascii_lowercase().contains("certificate"),
            "{err}"
        );
        Ok(())
    }
    .await;
    if result.is_err() {
        c.keep_dir();
    }
    result
}

/// `promtool check metrics` (from Debian's `prometheus` package, installed by `.ci/run`)
/// accepts the exposition. Without promtool on the machine the check says so and passes.
fn promtool_check(exposition: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not installed: skipping `promtool check metrics`");
        return Ok(());
    };
    child
        .stdin
        .take()
        .context("promtool stdin")?
        .write_all(exposition.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "promtool check metrics refused /metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("promtool check metrics: ok");
    Ok(())
}
