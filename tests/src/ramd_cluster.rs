//! A fixture that runs real `ramd` agents: one [`RamdCluster`] is a
//! [`ramd_ref::demo::Playground`] of N nodes on loopback (ports chosen at run time, a
//! private directory under `/tmp`) plus the helpers end-to-end tests need: the cluster
//! view over the REST API, writes and reads over SQL, killing and restarting agents and
//! postmasters the fixture itself started, switchover.
//!
//! Dropping the cluster stops every agent and postmaster it started. The directory (with
//! each node's `ramd.log`) is removed unless the test panicked or `RALE_E2E_KEEP` is set;
//! then its path is printed.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use rale_e2e::ramd_cluster::RamdCluster;
//!
//! let _serial = rale_e2e::ramd_cluster::serial().await;
//! let cluster = RamdCluster::start(3, None).await?;
//! let primary = cluster.primary().await?;
//! cluster.write(&primary, 1).await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ramd_ref::api::types::{ClusterStatus, HistoryEntryView, NodeStatus, PatroniCluster};
use ramd_ref::demo::{DemoConsensus, DemoNode, DemoOptions, Playground};
use tokio_postgres::NoTls;

/// The table every helper writes to and reads from.
pub const TABLE: &str = "rale_e2e_rows";

/// How long a cluster may take to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(180);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Serialises the tests of one test binary: hold the guard for the whole test, so that
/// two clusters never compete for the machine's cores.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// The `ramd` binary of this workspace: `RALE_RAMD_BIN`, else `target/<profile>/ramd`
/// next to the test executable (`target/<profile>/deps/…`). Under `cargo test` (env
/// `CARGO` set) it is brought up to date once per process with
/// `cargo build -p ramd-ref --bin ramd`; otherwise it is built only when missing.
pub fn ramd_binary() -> anyhow::Result<PathBuf> {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    if let Some(p) = std::env::var_os("RALE_RAMD_BIN") {
        return Ok(PathBuf::from(p));
    }
    BUILT
        .get_or_init(|| locate_or_build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

fn locate_or_build() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    let deps = exe
        .parent()
        .context("the test executable has no directory")?;
    let profile_dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().context("deps has no parent")?
    } else {
        deps
    };
    let candidate = profile_dir.join("ramd");
    let cargo = std::env::var_os("CARGO");
    if candidate.exists() && cargo.is_none() {
        return Ok(candidate);
    }
    let cargo = cargo.unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(&cargo);
    cmd.args(["build", "-p", "ramd-ref", "--bin", "ramd"]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    if let Some(target) = profile_dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    let status = cmd
        .status()
        .with_context(|| format!("running {cargo:?} build -p ramd-ref --bin ramd"))?;
    ensure!(status.success(), "building ramd failed ({status})");
    ensure!(
        candidate.exists(),
        "ramd was built but {} does not exist",
        candidate.display()
    );
    Ok(candidate)
}

/// How [`RamdCluster::start_opts`] starts a cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// Number of agents.
    pub nodes: usize,
    /// Extra `[bootstrap]` lines (the cluster-wide configuration), e.g.
    /// `lease_ttl = "5s"`.
    pub bootstrap_toml: Option<String>,
    /// Extra TOML tables appended to every node's configuration, a template with
    /// `{name}`, `{node_dir}`, `{data_dir}`, `{pg_port}`, `{api_port}` and
    /// `{cluster_dir}` filled per node (see [`ramd_ref::launch::node_toml`]).
    pub node_toml: Option<String>,
    /// HTTPS for the API and Raft RPCs (see [`RamdCluster::start_tls`]).
    pub tls: bool,
    /// The consensus backend: the embedded Raft (default) or a local three-member etcd
    /// started beside the agents ([`RamdCluster::etcd`]).
    pub consensus: DemoConsensus,
}

impl ClusterOptions {
    /// `nodes` agents, no extra configuration, plain HTTP.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            ..Self::default()
        }
    }
}

/// A running cluster of `ramd` agents; see the [module docs](self).
pub struct RamdCluster {
    playground: Option<Playground>,
    http: reqwest::Client,
    dir: PathBuf,
    keep: bool,
}

impl RamdCluster {
    /// Starts `nodes` agents (extra `[bootstrap]` TOML lines for the cluster-wide
    /// configuration, e.g. `lease_ttl = "5s"`), waits until the primary accepts a write
    /// and every replica streams, then creates [`TABLE`] and waits until every replica
    /// has it.
    pub async fn start(nodes: usize, bootstrap_toml: Option<&str>) -> anyhow::Result<Self> {
        Self::start_with(nodes, bootstrap_toml, false).await
    }

    /// Like [`RamdCluster::start`], with every agent's API and Raft RPCs on HTTPS (a CA
    /// generated for the cluster, see [`RamdCluster::ca_cert`]); the fixture's own
    /// requests trust that CA.
    pub async fn start_tls(nodes: usize, bootstrap_toml: Option<&str>) -> anyhow::Result<Self> {
        Self::start_with(nodes, bootstrap_toml, true).await
    }

    /// Like [`RamdCluster::start`] with every option of [`ClusterOptions`], e.g. extra
    /// per-node TOML such as a `[backup]` section (`tests/tests/ramd_backup.rs` has one
    /// for pgBackRest):
    ///
    /// ```no_run
    /// # async fn demo() -> anyhow::Result<()> {
    /// use rale_e2e::ramd_cluster::{ClusterOptions, RamdCluster};
    ///
    /// const BACKUP: &str = r#"
    /// [backup]
    /// tool = "custom"
    /// job_dir = "{node_dir}/jobs"
    /// [backup.custom]
    /// state_dir = "{node_dir}/hooks"
    /// backup = "true"
    /// restore = "true"
    /// "#;
    /// let cluster = RamdCluster::start_opts(ClusterOptions {
    ///     node_toml: Some(BACKUP.into()),
    ///     ..ClusterOptions::new(3)
    /// })
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub async fn start_opts(opts: ClusterOptions) -> anyhow::Result<Self> {
        Self::start_from(&opts).await
    }

    async fn start_with(
        nodes: usize,
        bootstrap_toml: Option<&str>,
        tls: bool,
    ) -> anyhow::Result<Self> {
        Self::start_from(&ClusterOptions {
            bootstrap_toml: bootstrap_toml.map(str::to_string),
            tls,
            ..ClusterOptions::new(nodes)
        })
        .await
    }

    async fn start_from(o: &ClusterOptions) -> anyhow::Result<Self> {
        let (nodes, tls) = (o.nodes, o.tls);
        crate::init_tracing();
        let ramd = ramd_binary()?;
        let tmp = tempfile::Builder::new()
            .prefix("rale-ramd-")
            .tempdir_in("/tmp")
            .context("creating the cluster directory")?;
        let dir = tmp.keep();
        let opts = DemoOptions {
            nodes,
            dir: Some(dir.clone()),
            keep: true,
            bootstrap_toml: o.bootstrap_toml.clone(),
            node_toml: o.node_toml.clone(),
            ready_timeout: READY_TIMEOUT,
            ramd_bin: Some(ramd),
            tls,
            consensus: o.consensus,
            ..DemoOptions::default()
        };
        let mut cluster = Self {
            playground: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .context("building the HTTP client")?,
            dir: dir.clone(),
            keep: false,
        };
        let playground = Playground::start(&opts)?;
        if tls {
            cluster.http = playground
                .http_client(Duration::from_secs(5))
                .context("building the HTTPS client")?;
        }
        cluster.playground = Some(playground);
        eprintln!("fixture: {nodes} ramd agents in {}", dir.display());
        match cluster.settle().await {
            Ok(()) => Ok(cluster),
            Err(e) => {
                cluster.keep_dir();
                Err(e)
            }
        }
    }

    async fn settle(&mut self) -> anyhow::Result<()> {
        let cluster = self;
        cluster
            .pg_mut()?
            .wait_ready(READY_TIMEOUT)
            .await
            .context("waiting for the cluster to become ready")?;
        let primary = cluster.primary().await?;
        cluster
            .sql(
                &primary,
                &format!("CREATE TABLE IF NOT EXISTS {TABLE} (id bigint PRIMARY KEY)"),
            )
            .await?;
        for name in cluster.names() {
            cluster
                .wait_for(&format!("{TABLE} on {name}"), crate::WAIT, || async {
                    Ok(cluster.count_rows(&name).await.ok().map(|_| ()))
                })
                .await?;
        }
        Ok(())
    }

    /// Keeps the directory (with every `ramd.log`) after drop, e.g. when a test failed.
    pub fn keep_dir(&mut self) {
        self.keep = true;
    }

    fn pg(&self) -> anyhow::Result<&Playground> {
        self.playground.as_ref().context("the cluster is stopped")
    }

    /// The local etcd of a cluster started with [`DemoConsensus::Etcd`]: to stop and
    /// start its members.
    pub fn etcd(&mut self) -> anyhow::Result<&mut rale::testing::etcd_server::EtcdServers> {
        self.pg_mut()?
            .etcd()
            .context("this cluster runs the embedded Raft, not etcd")
    }

    fn pg_mut(&mut self) -> anyhow::Result<&mut Playground> {
        self.playground.as_mut().context("the cluster is stopped")
    }

    /// The cluster's directory (one sub-directory per node, with its `ramd.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate the agents' HTTPS certificates chain to (TLS clusters only).
    pub fn ca_cert(&self) -> Option<PathBuf> {
        self.playground
            .as_ref()
            .and_then(|p| p.report.ca_cert.clone())
    }

    /// The API credentials (user, password) of the cluster.
    pub fn api_auth(&self) -> anyhow::Result<(String, String)> {
        let auth = &self.pg()?.report.auth;
        Ok((auth.user.clone(), auth.password.clone()))
    }

    /// The node names, `node1` … `nodeN`.
    pub fn names(&self) -> Vec<String> {
        self.playground
            .as_ref()
            .map(|p| p.report.nodes.iter().map(|n| n.name.clone()).collect())
            .unwrap_or_default()
    }

    /// Node `name`'s description (ports, DSN, data directory, agent PID).
    pub fn node(&self, name: &str) -> anyhow::Result<&DemoNode> {
        self.pg()?
            .report
            .nodes
            .iter()
            .find(|n| n.name == name)
            .with_context(|| format!("no node {name}"))
    }

    fn index(&self, name: &str) -> anyhow::Result<usize> {
        self.pg()?
            .report
            .nodes
            .iter()
            .position(|n| n.name == name)
            .with_context(|| format!("no node {name}"))
    }

    /// Node `name`'s agent log so far.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name).join("ramd.log")).unwrap_or_default()
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        path: &str,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.node(name)?.api_url);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        resp.json()
            .await
            .with_context(|| format!("decoding GET {url}"))
    }

    /// `GET /cluster` (Patroni's shape) from node `name`'s agent.
    pub async fn cluster_from(&self, name: &str) -> anyhow::Result<PatroniCluster> {
        self.get_json(name, "/cluster").await
    }

    /// `GET /cluster` from the first agent that answers with every member listed.
    pub async fn cluster(&self) -> anyhow::Result<PatroniCluster> {
        let mut last = None;
        for name in self.names() {
            match self.cluster_from(&name).await {
                Ok(c) if c.members.len() == self.names().len() => return Ok(c),
                Ok(c) => last = Some(anyhow::anyhow!("{name} lists {} members", c.members.len())),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no node")))
    }

    /// `GET /patroni` (this node's status) from node `name`'s agent.
    pub async fn get_node_status(&self, name: &str) -> anyhow::Result<NodeStatus> {
        self.get_json(name, "/patroni").await
    }

    /// `GET /api/v1/cluster/status` from node `name`'s agent.
    pub async fn status_from(&self, name: &str) -> anyhow::Result<ClusterStatus> {
        self.get_json(name, "/api/v1/cluster/status").await
    }

    /// `GET /api/v1/cluster/status` from the first agent that answers with consensus ok.
    pub async fn status(&self) -> anyhow::Result<ClusterStatus> {
        let mut last = None;
        for name in self.names() {
            match self.status_from(&name).await {
                Ok(s) if s.consensus.ok => return Ok(s),
                Ok(s) => last = Some(anyhow::anyhow!("{name}: consensus not ok: {s:?}")),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no node")))
    }

    /// `GET /api/v1/history` from the first agent that answers.
    pub async fn history(&self) -> anyhow::Result<Vec<HistoryEntryView>> {
        let mut last = None;
        for name in self.names() {
            match self.get_json(&name, "/api/v1/history").await {
                Ok(h) => return Ok(h),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no node")))
    }

    /// The member `/cluster` shows as leader (exactly one), from any agent.
    pub async fn primary(&self) -> anyhow::Result<String> {
        let c = self.cluster().await?;
        let leaders: Vec<_> = c.members.iter().filter(|m| m.role == "leader").collect();
        match leaders.as_slice() {
            [one] => Ok(one.name.clone()),
            _ => bail!("not exactly one leader: {:?}", c.members),
        }
    }

    /// Polls `probe` every 200 ms until it returns `Ok(Some(v))`, at most `timeout`.
    pub async fn wait_for<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        probe: F,
    ) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
    {
        let r = crate::wait_until(what, timeout, probe).await;
        if r.is_err() {
            eprintln!(
                "fixture: gave up waiting for {what}; logs in {}",
                self.dir.display()
            );
        }
        r
    }

    /// Waits until `/cluster` (from any agent) shows `name` as a streaming replica.
    pub async fn wait_streaming(&self, name: &str, timeout: Duration) -> anyhow::Result<()> {
        self.wait_for(&format!("{name} streaming"), timeout, || async {
            let c = self.cluster().await?;
            Ok(c.members
                .iter()
                .any(|m| m.name == name && m.role != "leader" && m.state == "streaming")
                .then_some(()))
        })
        .await
    }

    /// Waits until a node other than those in `not` is the only leader and accepts a
    /// write of `id`; returns its name.
    pub async fn wait_writable_leader(
        &self,
        not: &[&str],
        id: i64,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        self.wait_for("a writable leader", timeout, || async {
            let p = self.primary().await?;
            if not.contains(&p.as_str()) {
                return Ok(None);
            }
            self.write(&p, id).await?;
            Ok(Some(p))
        })
        .await
    }

    /// The PID of node `name`'s agent.
    pub fn agent_pid(&self, name: &str) -> anyhow::Result<u32> {
        Ok(self.node(name)?.pid)
    }

    /// Sends `signal` to node `name`'s agent (a process this fixture started); after
    /// `SIGKILL` waits until it is gone. Returns its PID.
    pub fn kill_agent(&mut self, name: &str, signal: Signal) -> anyhow::Result<u32> {
        let i = self.index(name)?;
        self.pg_mut()?.agents().signal(i, signal)
    }

    /// Sends `SIGTERM` to node `name`'s agent (a clean shutdown: a primary stops
    /// PostgreSQL and releases its lease) and waits up to `timeout` until it exited.
    pub fn stop_agent(&mut self, name: &str, timeout: Duration) -> anyhow::Result<u32> {
        let pid = self.kill_agent(name, Signal::SIGTERM)?;
        self.wait_agent_exit(name, timeout)?;
        Ok(pid)
    }

    /// Waits up to `timeout` until node `name`'s agent process has exited.
    pub fn wait_agent_exit(&mut self, name: &str, timeout: Duration) -> anyhow::Result<()> {
        let i = self.index(name)?;
        self.pg_mut()?.agents().wait_exit(i, timeout)
    }

    /// Starts node `name`'s agent again with the same configuration; returns its PID.
    pub fn restart_agent(&mut self, name: &str) -> anyhow::Result<u32> {
        let i = self.index(name)?;
        self.pg_mut()?.restart_agent(i)
    }

    /// The postmaster PID of node `name` (first line of `postmaster.pid` in its data
    /// directory, which this fixture owns).
    pub fn postmaster_pid(&self, name: &str) -> anyhow::Result<i32> {
        let data_dir = &self.node(name)?.data_dir;
        rale::pg::postmaster_pid(data_dir)
            .with_context(|| format!("no PID in {}/postmaster.pid", data_dir.display()))
    }

    /// Sends `signal` to node `name`'s postmaster; returns its PID.
    pub fn kill_postmaster(&self, name: &str, signal: Signal) -> anyhow::Result<i32> {
        let pid = self.postmaster_pid(name)?;
        kill(Pid::from_raw(pid), signal)
            .with_context(|| format!("kill -{signal} {pid} (postmaster of {name})"))?;
        Ok(pid)
    }

    async fn connect(&self, name: &str) -> anyhow::Result<tokio_postgres::Client> {
        let dsn = format!("{} connect_timeout=1", self.node(name)?.dsn);
        let (client, conn) =
            tokio::time::timeout(Duration::from_secs(5), tokio_postgres::connect(&dsn, NoTls))
                .await
                .with_context(|| format!("connecting to {name} timed out"))?
                .with_context(|| format!("connecting to {name}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Runs SQL statements on node `name`.
    pub async fn sql(&self, name: &str, sql: &str) -> anyhow::Result<()> {
        let client = self.connect(name).await?;
        tokio::time::timeout(Duration::from_secs(10), client.batch_execute(sql))
            .await
            .with_context(|| format!("{name}: `{sql}` timed out"))?
            .with_context(|| format!("{name}: `{sql}`"))
    }

    /// Inserts row `id` into [`TABLE`] on node `name` (fails unless it is writable).
    pub async fn write(&self, name: &str, id: i64) -> anyhow::Result<()> {
        self.sql(name, &format!("INSERT INTO {TABLE} (id) VALUES ({id})"))
            .await
    }

    /// Inserts row `id` on the first node that accepts it; returns that node.
    pub async fn try_write_any(&self, id: i64) -> anyhow::Result<String> {
        let mut last = None;
        for name in self.names() {
            match self.write(&name, id).await {
                Ok(()) => return Ok(name),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no node")))
    }

    /// Every id in [`TABLE`] on node `name`.
    pub async fn ids(&self, name: &str) -> anyhow::Result<BTreeSet<i64>> {
        let client = self.connect(name).await?;
        let rows = tokio::time::timeout(
            Duration::from_secs(10),
            client.query(&format!("SELECT id FROM {TABLE}"), &[]),
        )
        .await
        .with_context(|| format!("{name}: reading {TABLE} timed out"))?
        .with_context(|| format!("{name}: reading {TABLE}"))?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0)).collect())
    }

    /// The number of rows in [`TABLE`] on node `name`.
    pub async fn count_rows(&self, name: &str) -> anyhow::Result<i64> {
        let client = self.connect(name).await?;
        let row = tokio::time::timeout(
            Duration::from_secs(10),
            client.query_one(&format!("SELECT count(*) FROM {TABLE}"), &[]),
        )
        .await
        .with_context(|| format!("{name}: counting timed out"))?
        .with_context(|| format!("{name}: counting {TABLE}"))?;
        Ok(row.get(0))
    }

    /// Waits until node `name` has row `id`.
    pub async fn wait_row(&self, name: &str, id: i64, timeout: Duration) -> anyhow::Result<()> {
        self.wait_for(&format!("row {id} on {name}"), timeout, || async {
            Ok(self.ids(name).await?.contains(&id).then_some(()))
        })
        .await
    }

    /// The API credentials the cluster was started with: user and password.
    pub fn credentials(&self) -> anyhow::Result<(String, String)> {
        let auth = &self.pg()?.report.auth;
        Ok((auth.user.clone(), auth.password.clone()))
    }

    /// An authenticated API request to node `via`'s agent: status code and body text.
    pub async fn api_request(
        &self,
        via: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<(u16, String)> {
        let body = body.map(|b| b.to_string());
        self.send(via, method, path, body.as_deref(), true).await
    }

    /// `POST /switchover {leader, candidate}` with the cluster's credentials to node
    /// `via`'s agent; returns the HTTP status and body.
    pub async fn switchover(
        &self,
        via: &str,
        leader: &str,
        candidate: &str,
    ) -> anyhow::Result<(u16, String)> {
        let body = serde_json::json!({ "leader": leader, "candidate": candidate });
        self.api_request(via, reqwest::Method::POST, "/switchover", Some(body))
            .await
    }

    /// A request with a raw body (e.g. malformed JSON) to node `via`'s agent, with the
    /// cluster's credentials when `auth`: status code and body text.
    pub async fn api_raw(
        &self,
        via: &str,
        method: reqwest::Method,
        path: &str,
        body: &str,
        auth: bool,
    ) -> anyhow::Result<(u16, String)> {
        self.send(via, method, path, Some(body), auth).await
    }

    /// One request (JSON body when given), bounded by 120 s: operations such as a
    /// switchover answer only when done.
    async fn send(
        &self,
        via: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
        auth: bool,
    ) -> anyhow::Result<(u16, String)> {
        let url = format!("{}{path}", self.node(via)?.api_url);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .timeout(Duration::from_secs(120));
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_owned());
        }
        if auth {
            let a = &self.pg()?.report.auth;
            req = req.basic_auth(&a.user, Some(&a.password));
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let code = resp.status().as_u16();
        Ok((code, resp.text().await.unwrap_or_default()))
    }

    /// The first column of the first row of `sql` on node `name`, as text (`SHOW …`,
    /// `SELECT …::text`); `None` when the query returns no row or NULL.
    pub async fn query_text(&self, name: &str, sql: &str) -> anyhow::Result<Option<String>> {
        let client = self.connect(name).await?;
        let msgs = tokio::time::timeout(Duration::from_secs(10), client.simple_query(sql))
            .await
            .with_context(|| format!("{name}: `{sql}` timed out"))?
            .with_context(|| format!("{name}: `{sql}`"))?;
        Ok(msgs
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_owned)),
                _ => None,
            })
            .flatten())
    }
}

impl Drop for RamdCluster {
    fn drop(&mut self) {
        if let Some(mut p) = self.playground.take() {
            p.stop();
        }
        if self.keep || std::thread::panicking() || std::env::var_os("RALE_E2E_KEEP").is_some() {
            eprintln!("fixture: kept {} (ramd.log per node)", self.dir.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("fixture: removing {} failed: {e}", self.dir.display());
        }
    }
}
