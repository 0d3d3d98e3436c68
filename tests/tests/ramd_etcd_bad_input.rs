//! `ramd` started on bad etcd settings (issue 17, "Bad input"), each against a real
//! one-member etcd started by the test (or none):
//! - unreachable endpoints: it keeps running and logs a retry line naming the endpoint;
//! - another cluster's data under the prefix: it refuses to start, naming both clusters;
//! - a wrong password on an etcd with authentication on: it refuses to start, naming the
//!   endpoint and the cause.
//!
//! Every `ramd` and etcd is stopped by its PID when the test ends. Skipped with a printed
//! reason when `etcd` is not installed.
//! Run: `cargo test -p rale-e2e --test ramd_etcd_bad_input -- --nocapture`

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rale::NodeId;
use rale::consensus::Peer;
use rale::consensus::etcd::{EtcdConfig, EtcdConsensus};
use rale::testing::etcd_server::EtcdServers;

/// A `ramd` child killed (by PID) when dropped.
struct Ramd {
    child: Child,
    log: PathBuf,
}

impl Drop for Ramd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Ramd {
    fn start(dir: &Path, endpoints: &[String], cluster: &str, extra: &str) -> anyhow::Result<Self> {
        let free = |n| -> anyhow::Result<u16> {
            let _ = n;
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        };
        let (api, pg) = (free(0)?, free(1)?);
        let endpoints: Vec<String> = endpoints.iter().map(|e| format!("{e:?}")).collect();
        let toml = format!(
            r#"name = "node1"
state_dir = "{dir}/state"
[api]
listen = "127.0.0.1:{api}"
username = "admin"
password = "an-api-password"
[postgresql]
data_dir = "{dir}/pgdata"
host = "127.0.0.1"
port = {pg}
superuser = "postgres"
superuser_password = "su-pw"
replication_user = "replicator"
replication_password = "repl-pw"
[[peers]]
name = "node1"
raft_id = 1
api_url = "http://127.0.0.1:{api}"
[consensus]
backend = "etcd"
endpoints = [{endpoints}]
cluster = "{cluster}"
prefix = "/rale/main/"
{extra}
"#,
            dir = dir.display(),
            endpoints = endpoints.join(", "),
        );
        let config = dir.join("ramd.toml");
        std::fs::write(&config, toml)?;
        let log = dir.join("ramd.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new(rale_e2e::ramd_cluster::ramd_binary()?)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting ramd")?;
        Ok(Self { child, log })
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `needle`; fails if ramd exits first or after `limit`.
    fn wait_line(&mut self, needle: &str, limit: Duration) -> anyhow::Result<String> {
        let t = Instant::now();
        while t.elapsed() < limit {
            let text = self.log_text();
            if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                return Ok(line.to_string());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("ramd exited ({status}) without logging {needle:?}:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "no {needle:?} in ramd's log within {limit:?}:\n{}",
            self.log_text()
        )
    }

    /// Waits until ramd exits; returns its exit code and log.
    fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<(Option<i32>, String)> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Some(status) = self.child.try_wait()? {
                return Ok((status.code(), self.log_text()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("ramd did not exit within {limit:?}:\n{}", self.log_text())
    }
}

fn peers() -> Vec<Peer> {
    vec![Peer {
        node: NodeId::new("node1").expect("valid"),
        raft_id: 1,
        api_url: "http://127.0.0.1:1".into(),
    }]
}

/// The directory must be readable by the `postgres` user ramd runs PostgreSQL as.
fn tempdir() -> anyhow::Result<tempfile::TempDir> {
    let d = tempfile::tempdir()?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramd_refuses_bad_etcd_settings_with_a_clear_message() -> anyhow::Result<()> {
    let Some(binary) = EtcdServers::find_binary() else {
        eprintln!("SKIPPED: no etcd binary (install etcd-server or set RALE_ETCD)");
        return Ok(());
    };
    let _serial = rale_e2e::ramd_cluster::serial().await;

    // 1. Unreachable endpoints: retry lines, no exit.
    let dir = tempdir()?;
    let dead = vec![format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    )];
    let mut ramd = Ramd::start(dir.path(), &dead, "main", "")?;
    let line = ramd.wait_line("etcd unreachable; retrying", Duration::from_secs(30))?;
    ensure!(
        line.contains(&dead[0]),
        "the retry line names no endpoint: {line}"
    );
    std::thread::sleep(Duration::from_secs(2));
    ensure!(
        ramd.child.try_wait()?.is_none(),
        "ramd exited with etcd unreachable"
    );
    eprintln!("unreachable: {line}");
    drop(ramd);

    // 2. Another cluster's data under the prefix.
    let etcd_dir = tempdir()?;
    let servers = EtcdServers::start(&binary, etcd_dir.path(), 1)?;
    servers.wait_healthy(Duration::from_secs(60))?;
    let endpoints = servers.endpoints();
    let mut other = EtcdConfig::new(endpoints.clone(), "billing", peers());
    other.prefix = "/rale/main/".into();
    let billing = EtcdConsensus::connect(other)
        .await
        .context("writing cluster billing's identity")?;
    drop(billing);
    let dir = tempdir()?;
    let mut ramd = Ramd::start(dir.path(), &endpoints, "main", "")?;
    let (code, log) = ramd.wait_exit(Duration::from_secs(60))?;
    ensure!(
        code.is_some_and(|c| c != 0),
        "ramd exited with {code:?}:\n{log}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("identity mismatch"))
        .with_context(|| format!("no identity line:\n{log}"))?;
    ensure!(
        line.contains("\"main\"") && line.contains("\"billing\"") && line.contains(&endpoints[0]),
        "the refusal does not name both clusters and the endpoint: {line}"
    );
    eprintln!("identity (exit {code:?}): {line}");

    // 3. Authentication on, a wrong password.
    let http = reqwest::Client::new();
    for (path, body) in [
        (
            "/v3/auth/user/add",
            r#"{"name":"root","password":"rootpw"}"#,
        ),
        ("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#),
        ("/v3/auth/enable", "{}"),
    ] {
        let resp = http
            .post(format!("{}{path}", endpoints[0]))
            .body(body)
            .send()
            .await?;
        ensure!(resp.status().is_success(), "{path}: {}", resp.status());
    }
    let dir = tempdir()?;
    let mut ramd = Ramd::start(
        dir.path(),
        &endpoints,
        "main",
        "user = \"root\"\npassword = \"not-the-password\"",
    )?;
    let (code, log) = ramd.wait_exit(Duration::from_secs(60))?;
    ensure!(
        code.is_some_and(|c| c != 0),
        "ramd exited with {code:?}:\n{log}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("refused access"))
        .with_context(|| format!("no refusal line:\n{log}"))?;
    ensure!(
        line.contains(&endpoints[0]) && line.contains("authentication failed"),
        "the refusal names neither the endpoint nor the cause: {line}"
    );
    eprintln!("credentials (exit {code:?}): {line}");
    drop(servers);
    Ok(())
}
