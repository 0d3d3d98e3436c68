//! `ramd` end to end: growing and shrinking a running cluster. A fourth agent started with
//! the existing members as its peers waits to be added; `ramctrl member add` (`POST
//! /api/v1/members`) adds it (learner, then voter), its agent clones its PostgreSQL from
//! the primary and streams; `ramctrl member remove` (`DELETE /api/v1/members/{name}`)
//! removes it again. Refusals through the API: removing the primary, an unknown member, a
//! duplicate add — and nothing changes after them.
//! Run: `cargo test -p rale-e2e --test ramd_members -- --nocapture`

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use rale_e2e::WAIT;
use rale_e2e::ctl::Ctl;
use rale_e2e::ramd_cluster::{RamdCluster, ramd_binary, serial};
use reqwest::Method;
use serde_json::{Value, json};

/// The extra agent: stopped with SIGTERM (it stops its PostgreSQL), then SIGKILL.
struct Extra {
    child: Child,
}

impl Drop for Extra {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(0));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// node1's configuration turned into a fourth member's: `[consensus] join = true` (it
/// waits to be added instead of founding a cluster), the peers plus itself.
fn fourth_config(dir: &Path, api_port: u16, pg_port: u16) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(dir.join("node1/ramd.toml"))?;
    let mut cfg: toml::Table = text.parse().context("node1's ramd.toml")?;
    let me = dir.join("node4");
    cfg.insert("name".into(), "node4".into());
    cfg.insert(
        "state_dir".into(),
        me.join("state").display().to_string().into(),
    );
    let api = cfg
        .get_mut("api")
        .and_then(|v| v.as_table_mut())
        .context("[api]")?;
    api.insert("listen".into(), format!("127.0.0.1:{api_port}").into());
    api.remove("url");
    let pg = cfg
        .get_mut("postgresql")
        .and_then(|v| v.as_table_mut())
        .context("[postgresql]")?;
    pg.insert(
        "data_dir".into(),
        me.join("pgdata").display().to_string().into(),
    );
    pg.insert("port".into(), i64::from(pg_port).into());
    pg.remove("socket_dir");
    let mut consensus = toml::Table::new();
    consensus.insert("join".into(), true.into());
    cfg.insert("consensus".into(), consensus.into());
    let mut me = toml::Table::new();
    me.insert("name".into(), "node4".into());
    me.insert("raft_id".into(), 4.into());
    me.insert(
        "api_url".into(),
        format!("http://127.0.0.1:{api_port}").into(),
    );
    cfg.get_mut("peers")
        .and_then(|v| v.as_array_mut())
        .context("[[peers]]")?
        .push(me.into());
    Ok(toml::to_string(&cfg)?)
}

async fn members(c: &RamdCluster, via: &str) -> anyhow::Result<Value> {
    let (code, text) = c
        .api_request(via, Method::GET, "/api/v1/members", None)
        .await?;
    ensure!(code == 200, "GET members: {code} {text}");
    Ok(serde_json::from_str(&text)?)
}

fn voter_names(m: &Value) -> Vec<String> {
    m["voters"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

async fn body(c: &RamdCluster) -> anyhow::Result<()> {
    let primary = c.primary().await?;
    let dir = c.dir().to_path_buf();
    let (api_port, pg_port) = (free_port()?, free_port()?);
    std::fs::create_dir_all(dir.join("node4"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("node4"), std::fs::Permissions::from_mode(0o755))?;
    }
    let config = dir.join("node4/ramd.toml");
    std::fs::write(&config, fourth_config(&dir, api_port, pg_port)?)?;
    let log = std::fs::File::create(dir.join("node4/ramd.log"))?;
    let child = Command::new(ramd_binary()?)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting the fourth agent")?;
    let _extra = Extra { child };
    let api_url = format!("http://127.0.0.1:{api_port}");

    // Refusals first: nothing changes.
    let (code, text) = c
        .api_request(
            &primary,
            Method::DELETE,
            &format!("/api/v1/members/{primary}"),
            None,
        )
        .await?;
    ensure!(code == 409, "removing the primary: {code} {text}");
    let (code, text) = c
        .api_request(&primary, Method::DELETE, "/api/v1/members/nobody", None)
        .await?;
    ensure!(code == 404, "removing an unknown member: {code} {text}");
    let (code, text) = c
        .api_request(
            &primary,
            Method::POST,
            "/api/v1/members",
            Some(json!({"name": "node2", "raft_id": 2, "api_url": "http://127.0.0.1:1"})),
        )
        .await?;
    ensure!(
        code == 409,
        "adding an existing member again: {code} {text}"
    );
    ensure!(
        voter_names(&members(c, &primary).await?).len() == 3,
        "a refusal changed the members"
    );

    // Add the fourth member.
    let added = Instant::now();
    let ctl = Ctl::for_cluster(c)?;
    ctl.ok(&[
        "member",
        "add",
        "node4",
        "--raft-id",
        "4",
        "--api-url",
        &api_url,
    ])
    .await?;
    let m = members(c, &primary).await?;
    ensure!(
        voter_names(&m).contains(&"node4".to_string()),
        "node4 is not a voter: {m}"
    );
    c.wait_for("node4 streaming", Duration::from_secs(180), || async {
        let cl = c.cluster_from(&primary).await?;
        Ok(cl
            .members
            .iter()
            .any(|m| m.name == "node4" && m.state == "streaming")
            .then_some(()))
    })
    .await?;
    eprintln!(
        "node4 added and streaming {:.1} s after POST /api/v1/members",
        added.elapsed().as_secs_f64()
    );
    c.write(&primary, 4444).await?;
    let dsn = c.node("node1")?.dsn.replace(
        &format!("port={}", port_of(&c.node("node1")?.dsn)?),
        &format!("port={pg_port}"),
    );
    c.wait_for("the row on node4", WAIT, || async {
        let Ok((client, conn)) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await else {
            return Ok(None);
        };
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let rows = client
            .query(
                &format!(
                    "SELECT 1 FROM {} WHERE id = 4444",
                    rale_e2e::ramd_cluster::TABLE
                ),
                &[],
            )
            .await;
        Ok(rows.ok().filter(|r| !r.is_empty()).map(|_| ()))
    })
    .await?;

    // Remove it again.
    let listed = ctl.ok(&["member", "list"]).await?;
    ensure!(
        listed.contains("node4"),
        "member list lacks node4: {listed}"
    );
    // Its agent still runs: refused, and nothing changes.
    let refused = ctl
        .refused(
            1, // ramctrl: refused
            &["member", "remove", "node4", "--force"],
        )
        .await?;
    ensure!(
        refused.stderr.contains("still reports"),
        "refusal does not say why: {}",
        refused.stderr
    );
    ensure!(
        voter_names(&members(c, &primary).await?).len() == 4,
        "a refused removal changed the members"
    );
    // Forced: removed, and the agent still running there stops taking part.
    ctl.ok(&["member", "remove", "node4", "--force", "--even-if-running"])
        .await?;
    let m = members(c, &primary).await?;
    ensure!(voter_names(&m).len() == 3, "node4 still a member: {m}");
    let node4 = reqwest::Client::new();
    c.wait_for("node4 saying it was removed", WAIT, || async {
        let Ok(r) = node4
            .get(format!("{api_url}/patroni"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
        else {
            return Ok(None);
        };
        let text = r.text().await.unwrap_or_default();
        Ok(text.contains("removed from the cluster").then_some(()))
    })
    .await?;
    let cl = c.cluster_from(&primary).await?;
    ensure!(
        !cl.members.iter().any(|m| m.name == "node4"),
        "the removed node4 still appears in /cluster: {:?}",
        cl.members
    );
    ensure!(c.primary().await? == primary, "the primary changed");
    c.write(&primary, 4445).await?;
    Ok(())
}

fn port_of(dsn: &str) -> anyhow::Result<u16> {
    dsn.split_whitespace()
        .find_map(|kv| kv.strip_prefix("port="))
        .context("port in dsn")?
        .parse()
        .context("port number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_and_remove_a_member_on_a_running_cluster() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut c = RamdCluster::start(3, None).await?;
    let r = body(&c).await;
    if r.is_err() {
        c.keep_dir();
    }
    r
}
