//! A `ramd` cluster inside a [`Network`]: node `i` runs `ip netns exec <its namespace>
//! ramd --config …`, and its agent runs its PostgreSQL (as the `postgres` user when root)
//! in the same namespace. Agents and PostgreSQL talk over the data network only; the test
//! reaches every node over its management link, whatever the data network's state.
//!
//! The cluster is launched by [`ramd_ref::launch`], like `ramctrl demo`'s; each node's
//! `ramd.toml` mirrors the playground's, with these differences: the API listens on `0.0.0.0:8008` inside the namespace and advertises
//! `http://<data ip>:8008`; PostgreSQL uses `host = <data ip>`, port 5432 and listens on
//! both its data and management addresses. Replication between members relies on the
//! `pg_hba.conf` RALE writes (it admits the other members' hosts from `[[peers]]`);
//! `hba_extra` only admits the test's clients on the data and management networks.
//!
//! Dropping the cluster stops the agents (SIGTERM, SIGKILL after 15 s), then the
//! [`Network`] kills what is left in its namespaces and deletes them. The directory (with
//! each node's `ramd.log`) is kept when the test panicked, [`NetnsCluster::keep_dir`] was
//! called or `RALE_E2E_KEEP` is set.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use rale_e2e::netns::cluster::NetnsCluster;
//!
//! let _serial = rale_e2e::ramd_cluster::serial().await;
//! let mut c = NetnsCluster::start(3, None).await?;
//! let primary = c.primary().await?;
//! c.partition(&[&[primary.as_str()]])?;
//! c.heal()?;
//! # Ok(()) }
//! ```

pub mod all_nodes;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ramd_ref::api::types::{ClusterStatus, HistoryEntryView, PatroniCluster};
use ramd_ref::launch::{Agents, ClusterSpec, NodeSpec, ReadyProbe};
use tokio_postgres::NoTls;

use super::{IP, Network};
use crate::ramd_cluster::{READY_TIMEOUT, TABLE, ramd_binary};
use crate::{REPLICATION_PASSWORD, SUPERUSER_PASSWORD};

/// The API port of every node (each node has its own namespace, so they never clash).
pub const API_PORT: u16 = 8008;
/// The PostgreSQL port of every node.
pub const PG_PORT: u16 = 5432;
/// The API user.
pub const API_USER: &str = "admin";
/// The API password.
pub const API_PASSWORD: &str = "rale-e2e-api";

/// One node of a [`NetnsCluster`].
#[derive(Clone, Debug)]
pub struct NetnsNode {
    /// Member name, `node1` … `nodeN`.
    pub name: String,
    /// Its namespace.
    pub netns: String,
    /// Its data-network address (agent API and PostgreSQL; what peers use).
    pub data_ip: Ipv4Addr,
    /// Its management address (what the test uses).
    pub mgmt_ip: Ipv4Addr,
    /// PostgreSQL data directory.
    pub data_dir: PathBuf,
    /// Its `ramd.toml`.
    pub config: PathBuf,
}

impl NetnsNode {
    /// The agent's API over the management link.
    pub fn mgmt_api_url(&self) -> String {
        format!("http://{}:{API_PORT}", self.mgmt_ip)
    }

    /// A libpq connection string to its PostgreSQL over the management link.
    pub fn mgmt_dsn(&self) -> String {
        format!(
            "host={} port={PG_PORT} user=postgres password={SUPERUSER_PASSWORD} dbname=postgres",
            self.mgmt_ip
        )
    }
}

/// A running `ramd` cluster in network namespaces; see the [module docs](self).
pub struct NetnsCluster {
    nodes: Vec<NetnsNode>,
    agents: Agents,
    http: reqwest::Client,
    dir: PathBuf,
    keep: bool,
    /// Node directories on a tmpfs of their own (see [`StartOptions::volume_mb`]), with
    /// the size each was mounted with, in KiB.
    volumes: Vec<(PathBuf, u64)>,
    /// Per node, the libfaketime offset file when [`StartOptions::faketime`] is set.
    clocks: Vec<PathBuf>,
    // Declared last: dropped after the agents are stopped.
    net: Network,
}

/// Optional fault hooks for [`NetnsCluster::start_with`].
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Put each node's directory (its PostgreSQL data directory, WAL included, its Raft
    /// store and its `ramd.log`) on a tmpfs of this many MiB of its own, so that a test can
    /// fill that node's disk ([`NetnsCluster::fill_volume`]). Needs root (`mount`).
    pub volume_mb: Option<u64>,
    /// Start each agent (and so its PostgreSQL) under libfaketime with an offset file,
    /// so that a test can step one node's wall clock ([`NetnsCluster::step_clock`]).
    /// Monotonic clocks are left alone, as a real wall-clock step leaves them.
    pub faketime: bool,
}

/// Where Debian's `faketime` package puts the multi-threaded libfaketime.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// The configuration files of a cluster of one node per node of `net`, in `dir`.
fn cluster_spec(net: &Network, dir: &Path, bootstrap: &str, faketime: bool) -> ClusterSpec {
    let nodes = net
        .nodes()
        .iter()
        .enumerate()
        .map(|(j, n)| {
            // `ip netns exec` enters the namespace and execs ramd (under libfaketime when
            // asked: `env` sets the preload for ramd and everything it starts).
            let mut wrapper = vec![IP.into(), "netns".into(), "exec".into(), n.netns.clone()];
            if faketime {
                wrapper.extend([
                    "env".into(),
                    format!("LD_PRELOAD={LIBFAKETIME}"),
                    format!(
                        "FAKETIME_TIMESTAMP_FILE={}",
                        clock_file(dir, &format!("node{}", j + 1)).display()
                    ),
                    "FAKETIME_DONT_FAKE_MONOTONIC=1".into(),
                    "FAKETIME_CACHE_DURATION=1".into(),
                ]);
            }
            NodeSpec {
                name: format!("node{}", j + 1),
                api_listen: SocketAddr::from(([0, 0, 0, 0], API_PORT)),
                api_url: format!("http://{}:{API_PORT}", n.data_ip),
                pg_host: n.data_ip.to_string(),
                pg_port: PG_PORT,
                hba_extra: vec![
                    format!("host all all {} scram-sha-256", net.data_cidr()),
                    format!("host all all {} scram-sha-256", net.mgmt_cidr()),
                ],
                pg_parameters: vec![
                    ("shared_buffers".into(), "32MB".into()),
                    ("max_connections".into(), "80".into()),
                    (
                        "listen_addresses".into(),
                        format!("{},{}", n.data_ip, n.mgmt_ip),
                    ),
                ],
                wrapper,
            }
        })
        .collect();
    ClusterSpec {
        dir: dir.to_owned(),
        generated_by: "rale_e2e::netns::cluster".into(),
        api_user: API_USER.into(),
        api_password: API_PASSWORD.into(),
        superuser_password: SUPERUSER_PASSWORD.into(),
        replication_password: REPLICATION_PASSWORD.into(),
        tls: None,
        bootstrap_toml: bootstrap.into(),
        node_toml: None,
        nodes,
    }
}

/// Node `name`'s libfaketime offset file in the cluster directory `dir`.
fn clock_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.faketime"))
}

impl NetnsCluster {
    /// Creates a [`Network`] of `n` nodes, starts one agent per node (extra `[bootstrap]`
    /// TOML lines in `bootstrap_toml`), waits until one node is primary and accepts a
    /// write and every other node streams, then creates [`TABLE`] everywhere.
    pub async fn start(n: usize, bootstrap_toml: Option<&str>) -> anyhow::Result<Self> {
        Self::start_with(n, bootstrap_toml, StartOptions::default()).await
    }

    /// [`NetnsCluster::start`] with fault hooks (own volumes, steppable clocks).
    pub async fn start_with(
        n: usize,
        bootstrap_toml: Option<&str>,
        options: StartOptions,
    ) -> anyhow::Result<Self> {
        crate::init_tracing();
        if options.faketime {
            anyhow::ensure!(
                Path::new(LIBFAKETIME).exists(),
                "{LIBFAKETIME} is missing (Debian package faketime)"
            );
        }
        let ramd = ramd_binary()?;
        let net = Network::create(n)?;
        let dir = tempfile::Builder::new()
            .prefix("rale-netns-")
            .tempdir_in("/tmp")
            .context("creating the cluster directory")?
            .keep();
        let spec = cluster_spec(
            &net,
            &dir,
            bootstrap_toml.unwrap_or_default(),
            options.faketime,
        );
        let nodes = net
            .nodes()
            .iter()
            .zip(&spec.nodes)
            .map(|(nn, n)| NetnsNode {
                name: n.name.clone(),
                netns: nn.netns.clone(),
                data_ip: nn.data_ip,
                mgmt_ip: nn.mgmt_ip,
                data_dir: spec.data_dir(n),
                config: spec.config_path(n),
            })
            .collect();
        let mut c = Self {
            nodes,
            agents: Agents::new(ramd),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .no_proxy()
                .build()
                .context("building the HTTP client")?,
            dir: dir.clone(),
            keep: false,
            volumes: Vec::new(),
            clocks: Vec::new(),
            net,
        };
        if options.faketime {
            for node in &spec.nodes {
                let file = clock_file(&dir, &node.name);
                std::fs::write(&file, "+0\n")
                    .with_context(|| format!("writing {}", file.display()))?;
                c.clocks.push(file);
            }
        }
        if let Some(mb) = options.volume_mb {
            for node in &spec.nodes {
                let at = dir.join(&node.name);
                std::fs::create_dir_all(&at)
                    .with_context(|| format!("creating {}", at.display()))?;
                let size_kib = mb * 1024;
                super::run(
                    "mount",
                    &[
                        "-t",
                        "tmpfs",
                        "-o",
                        &format!("size={size_kib}k,mode=0755"),
                        "rale-netns-vol",
                        &at.to_string_lossy(),
                    ],
                )?;
                c.volumes.push((at, size_kib));
            }
        }
        eprintln!(
            "netns: {n} nodes on {} (management {}) in {}",
            c.net.data_cidr(),
            c.net.mgmt_cidr(),
            dir.display()
        );
        let r = c.launch(&spec).await;
        match r {
            Ok(()) => Ok(c),
            Err(e) => {
                c.keep_dir();
                Err(e)
            }
        }
    }

    async fn launch(&mut self, spec: &ClusterSpec) -> anyhow::Result<()> {
        self.agents.launch(spec)?;
        let probe = ReadyProbe {
            http: self.http.clone(),
            api_urls: self.nodes.iter().map(NetnsNode::mgmt_api_url).collect(),
            dsns: self.nodes.iter().map(NetnsNode::mgmt_dsn).collect(),
            write_sql: "CREATE TABLE IF NOT EXISTS rale_netns_ready ()".into(),
        };
        self.agents.wait_ready(&probe, READY_TIMEOUT).await?;
        let primary = self.primary().await?;
        self.sql(
            &primary,
            &format!("CREATE TABLE IF NOT EXISTS {TABLE} (id bigint PRIMARY KEY)"),
        )
        .await?;
        for name in self.names() {
            self.wait_for(&format!("{TABLE} on {name}"), crate::WAIT, || async {
                Ok(self.ids(&name).await.ok().map(|_| ()))
            })
            .await?;
        }
        Ok(())
    }

    /// The network the nodes run in.
    pub fn net(&self) -> &Network {
        &self.net
    }

    /// Keeps the directory (with every `ramd.log`) after drop, e.g. when a test failed.
    pub fn keep_dir(&mut self) {
        self.keep = true;
    }

    /// The cluster's directory (one sub-directory per node, with its `ramd.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The node names, `node1` … `nodeN`.
    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Node `name`.
    pub fn node(&self, name: &str) -> anyhow::Result<&NetnsNode> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .with_context(|| format!("no node {name}"))
    }

    /// Node `name`'s index in [`NetnsCluster::net`] (0 for `node1`).
    pub fn index(&self, name: &str) -> anyhow::Result<usize> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .with_context(|| format!("no node {name}"))
    }

    /// Node `name`'s agent log so far.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name).join("ramd.log")).unwrap_or_default()
    }

    /// The PID of node `name`'s agent, while it runs.
    pub fn agent_pid(&self, name: &str) -> anyhow::Result<u32> {
        let i = self.index(name)?;
        self.agents
            .pid(i)
            .with_context(|| format!("{name}'s agent is not running"))
    }

    /// Sends `signal` to node `name`'s agent (a process this fixture started). After
    /// `SIGKILL` it waits (10 s bound) until the agent is gone and forgets it, so that
    /// [`NetnsCluster::restart_agent`] can start it again. Returns its PID.
    pub fn signal_agent(&mut self, name: &str, signal: Signal) -> anyhow::Result<u32> {
        let i = self.index(name)?;
        let pid = self.agents.signal(i, signal)?;
        if signal == Signal::SIGKILL {
            self.agents.forget(i);
        }
        Ok(pid)
    }

    /// Stops node `name`'s agent cleanly (SIGTERM; SIGKILL after `timeout`) and forgets
    /// it. Returns whether it exited on SIGTERM.
    pub fn stop_agent(&mut self, name: &str, timeout: Duration) -> anyhow::Result<bool> {
        let i = self.index(name)?;
        Ok(self.agents.stop(&[i], timeout).is_empty())
    }

    /// Sends SIGTERM to every running agent at once (a full cluster shutdown), waits at
    /// most `timeout` for all of them, SIGKILLs the rest and forgets them all. Returns the
    /// names of the agents that needed SIGKILL.
    pub fn stop_all_agents(&mut self, timeout: Duration) -> anyhow::Result<Vec<String>> {
        let killed = self.agents.stop_all(timeout);
        Ok(killed
            .into_iter()
            .filter_map(|i| self.nodes.get(i).map(|n| n.name.clone()))
            .collect())
    }

    /// Starts node `name`'s agent again with the same configuration (appending to its
    /// `ramd.log`); refuses while the previous one still runs. Returns its PID.
    pub fn restart_agent(&mut self, name: &str) -> anyhow::Result<u32> {
        let i = self.index(name)?;
        self.agents.restart(i)
    }

    /// Starts again every agent that exited on its own (not one this test killed or
    /// stopped), as the systemd unit's `Restart=always` would; returns what it did, one
    /// line per agent (name, exit status).
    pub fn restart_exited(&mut self) -> anyhow::Result<Vec<String>> {
        let mut done = Vec::new();
        for i in 0..self.nodes.len() {
            let status = match self.agents.child(i) {
                Some(child) => child.try_wait()?,
                None => None,
            };
            if let Some(status) = status {
                let name = self.nodes[i].name.clone();
                let pid = self.agents.restart(i)?;
                done.push(format!(
                    "{name}'s agent had exited ({status}); started again as pid {pid}"
                ));
            }
        }
        Ok(done)
    }

    /// The postmaster PID of node `name` (first line of `postmaster.pid` in its data
    /// directory, which this fixture owns).
    pub fn postmaster_pid(&self, name: &str) -> anyhow::Result<i32> {
        let data_dir = &self.node(name)?.data_dir;
        rale::pg::postmaster_pid(data_dir)
            .with_context(|| format!("no PID in {}/postmaster.pid", data_dir.display()))
    }

    /// Sends `signal` to node `name`'s postmaster (which runs inside the node's
    /// namespace, started by its agent); returns its PID.
    pub fn signal_postmaster(&self, name: &str, signal: Signal) -> anyhow::Result<i32> {
        let pid = self.postmaster_pid(name)?;
        let netns = &self.node(name)?.netns;
        let inside = super::run(IP, &["netns", "pids", netns])?;
        anyhow::ensure!(
            inside.lines().any(|l| l.trim() == pid.to_string()),
            "postmaster {pid} of {name} does not run in {netns} (stale postmaster.pid?)"
        );
        kill(Pid::from_raw(pid), signal)
            .with_context(|| format!("kill -{signal} {pid} (postmaster of {name})"))?;
        Ok(pid)
    }

    /// Sends `signal` to process `pid` after checking that it runs inside node `name`'s
    /// namespace (so it is one of the processes this test started).
    pub fn signal_in(&self, name: &str, pid: i32, signal: Signal) -> anyhow::Result<()> {
        let netns = &self.node(name)?.netns;
        let inside = super::run(IP, &["netns", "pids", netns])?;
        anyhow::ensure!(
            inside.lines().any(|l| l.trim() == pid.to_string()),
            "process {pid} does not run in {name}'s namespace {netns}"
        );
        kill(Pid::from_raw(pid), signal).with_context(|| format!("kill -{signal} {pid} ({name})"))
    }

    /// The PID of node `name`'s WAL receiver process (`pg_stat_wal_receiver.pid`), if it
    /// has one.
    pub async fn walreceiver_pid(&self, name: &str) -> anyhow::Result<Option<i32>> {
        let client = self.connect(name).await?;
        let row = tokio::time::timeout(
            Duration::from_secs(5),
            client.query_opt("SELECT pid FROM pg_stat_wal_receiver", &[]),
        )
        .await
        .with_context(|| format!("{name}: no answer within 5 s"))??;
        Ok(match row {
            Some(r) => r.try_get::<_, Option<i32>>(0)?,
            None => None,
        })
    }

    /// Fills node `name`'s disk: its volume ([`StartOptions::volume_mb`]) is shrunk to
    /// what it uses now plus `slack_kib`, so the next writes fail with "No space left on
    /// device". Returns the new size in KiB.
    pub fn fill_volume(&self, name: &str, slack_kib: u64) -> anyhow::Result<u64> {
        let at = self.dir.join(name);
        anyhow::ensure!(
            self.volumes.iter().any(|(v, _)| *v == at),
            "{name} has no volume of its own (StartOptions::volume_mb)"
        );
        let st =
            nix::sys::statvfs::statvfs(&at).with_context(|| format!("statvfs {}", at.display()))?;
        let used_kib = (st.blocks() - st.blocks_free()) * st.fragment_size() / 1024;
        let size_kib = used_kib + slack_kib;
        super::run(
            "mount",
            &[
                "-o",
                &format!("remount,size={size_kib}k"),
                &at.to_string_lossy(),
            ],
        )?;
        Ok(size_kib)
    }

    /// Gives node `name`'s volume its original size back.
    pub fn restore_volume(&self, name: &str) -> anyhow::Result<()> {
        let at = self.dir.join(name);
        let Some((_, size_kib)) = self.volumes.iter().find(|(v, _)| *v == at) else {
            bail!("{name} has no volume of its own (StartOptions::volume_mb)");
        };
        super::run(
            "mount",
            &[
                "-o",
                &format!("remount,size={size_kib}k"),
                &at.to_string_lossy(),
            ],
        )?;
        Ok(())
    }

    /// Steps node `name`'s wall clock to `offset_s` seconds from the real time (every
    /// process of the node sees it within about a second; [`StartOptions::faketime`]).
    pub fn step_clock(&self, name: &str, offset_s: i64) -> anyhow::Result<()> {
        let i = self.index(name)?;
        let file = self
            .clocks
            .get(i)
            .with_context(|| format!("{name} has no steppable clock (StartOptions::faketime)"))?;
        std::fs::write(file, format!("{offset_s:+}\n"))
            .with_context(|| format!("writing {}", file.display()))
    }

    /// Splits the data network into the given groups of node names (each on its own
    /// island); nodes in no group stay together on the shared segment.
    pub fn partition(&self, groups: &[&[&str]]) -> anyhow::Result<()> {
        let mut idx: Vec<Vec<usize>> = Vec::new();
        for g in groups {
            idx.push(
                g.iter()
                    .map(|n| self.index(n))
                    .collect::<anyhow::Result<_>>()?,
            );
        }
        let refs: Vec<&[usize]> = idx.iter().map(Vec::as_slice).collect();
        self.net.partition(&refs)
    }

    /// Reconnects every node to the shared segment.
    pub fn heal(&self) -> anyhow::Result<()> {
        self.net.heal()
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        path: &str,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.node(name)?.mgmt_api_url());
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

    /// `GET /cluster` from node `name`'s agent (its own view, possibly stale when it is
    /// cut off).
    pub async fn cluster_from(&self, name: &str) -> anyhow::Result<PatroniCluster> {
        self.get_json(name, "/cluster").await
    }

    /// `GET /cluster` from the first agent that answers with every member listed.
    pub async fn cluster(&self) -> anyhow::Result<PatroniCluster> {
        let mut last = None;
        for name in self.names() {
            match self.cluster_from(&name).await {
                Ok(c) if c.members.len() == self.nodes.len() => return Ok(c),
                Ok(c) => last = Some(anyhow::anyhow!("{name} lists {} members", c.members.len())),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no node")))
    }

    /// `GET /api/v1/cluster/status` from node `name`'s agent.
    pub async fn status_from(&self, name: &str) -> anyhow::Result<ClusterStatus> {
        self.get_json(name, "/api/v1/cluster/status").await
    }

    /// `GET /api/v1/history` from node `name`'s agent.
    pub async fn history_from(&self, name: &str) -> anyhow::Result<Vec<HistoryEntryView>> {
        self.get_json(name, "/api/v1/history").await
    }

    /// The leader in node `name`'s `/cluster` view, if exactly one.
    pub async fn leader_seen_by(&self, name: &str) -> anyhow::Result<Option<String>> {
        let c = self.cluster_from(name).await?;
        let leaders: Vec<_> = c.members.iter().filter(|m| m.role == "leader").collect();
        Ok(match leaders.as_slice() {
            [one] => Some(one.name.clone()),
            _ => None,
        })
    }

    /// The member `/cluster` shows as leader (exactly one), from any agent with a full
    /// view.
    pub async fn primary(&self) -> anyhow::Result<String> {
        let c = self.cluster().await?;
        let leaders: Vec<_> = c.members.iter().filter(|m| m.role == "leader").collect();
        match leaders.as_slice() {
            [one] => Ok(one.name.clone()),
            _ => bail!("not exactly one leader: {:?}", c.members),
        }
    }

    /// Polls `probe` until it returns `Ok(Some(v))`, at most `timeout`; says where the
    /// logs are when it gives up.
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
                "netns: gave up waiting for {what}; logs in {}",
                self.dir.display()
            );
        }
        r
    }

    /// Waits until node `via`'s `/cluster` shows `name` as a streaming replica.
    pub async fn wait_streaming(
        &self,
        name: &str,
        via: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_for(
            &format!("{name} streaming (seen by {via})"),
            timeout,
            || async {
                let c = self.cluster_from(via).await?;
                Ok(c.members
                    .iter()
                    .any(|m| m.name == name && m.role != "leader" && m.state == "streaming")
                    .then_some(()))
            },
        )
        .await
    }

    /// A new connection to node `name`'s PostgreSQL over its management link.
    pub async fn connect(&self, name: &str) -> anyhow::Result<tokio_postgres::Client> {
        let dsn = format!("{} connect_timeout=2", self.node(name)?.mgmt_dsn());
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

    /// Runs SQL statements on node `name` (10 s bound).
    pub async fn sql(&self, name: &str, sql: &str) -> anyhow::Result<()> {
        let client = self.connect(name).await?;
        tokio::time::timeout(Duration::from_secs(10), client.batch_execute(sql))
            .await
            .with_context(|| format!("{name}: `{sql}` timed out"))?
            .with_context(|| format!("{name}: `{sql}`"))
    }

    /// Inserts row `id` into [`TABLE`] on node `name`, bounded by `timeout`.
    pub async fn write_within(&self, name: &str, id: i64, timeout: Duration) -> anyhow::Result<()> {
        let client = self.connect(name).await?;
        let sql = format!("INSERT INTO {TABLE} (id) VALUES ({id})");
        tokio::time::timeout(timeout, client.batch_execute(&sql))
            .await
            .with_context(|| format!("{name}: insert {id} timed out"))?
            .with_context(|| format!("{name}: insert {id}"))
    }

    /// Inserts row `id` into [`TABLE`] on node `name` (10 s bound).
    pub async fn write(&self, name: &str, id: i64) -> anyhow::Result<()> {
        self.write_within(name, id, Duration::from_secs(10)).await
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

    /// Waits until node `name` has row `id`.
    pub async fn wait_row(&self, name: &str, id: i64, timeout: Duration) -> anyhow::Result<()> {
        self.wait_for(&format!("row {id} on {name}"), timeout, || async {
            Ok(self.ids(name).await?.contains(&id).then_some(()))
        })
        .await
    }

    /// Whether node `name`'s PostgreSQL is in recovery (`None` when it does not answer).
    pub async fn in_recovery(&self, name: &str) -> Option<bool> {
        let client = self.connect(name).await.ok()?;
        let row = tokio::time::timeout(
            Duration::from_secs(5),
            client.query_one("SELECT pg_is_in_recovery()", &[]),
        )
        .await
        .ok()?
        .ok()?;
        Some(row.get(0))
    }
}

impl Drop for NetnsCluster {
    fn drop(&mut self) {
        self.agents.stop_all(Duration::from_secs(15));
        let keep =
            self.keep || std::thread::panicking() || std::env::var_os("RALE_E2E_KEEP").is_some();
        if !self.volumes.is_empty() {
            // Nothing may hold a file on the volumes when they are unmounted.
            self.net.kill_leftovers();
            for (at, _) in &self.volumes {
                if keep {
                    let kept = at.with_extension("kept");
                    if let Err(e) = super::run(
                        "cp",
                        &["-a", &at.to_string_lossy(), &kept.to_string_lossy()],
                    ) {
                        eprintln!("netns: copying {} failed: {e:#}", at.display());
                    }
                }
                if let Err(e) = super::run("umount", &[&at.to_string_lossy()]) {
                    eprintln!("netns: unmounting {} failed ({e:#}); lazily", at.display());
                    let _ = super::run("umount", &["-l", &at.to_string_lossy()]);
                }
            }
        }
        if keep {
            eprintln!("netns: kept {} (ramd.log per node)", self.dir.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("netns: removing {} failed: {e}", self.dir.display());
        }
        // `net` drops next: leftover processes are killed, namespaces deleted.
    }
}
