//! `ramctrl demo`: a local N-node playground on loopback with real PostgreSQL.
//!
//! Generates one configuration per node in a directory, starts one `ramd` per node, waits
//! until the primary accepts a write and every replica streams, prints the nodes and what
//! to try next, and on Ctrl-C or SIGTERM stops every process it started and removes the
//! directory (unless `--keep`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::Rng;
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};

use crate::launch::{Agents, ClusterSpec, ReadyProbe, loopback_nodes};

/// Options of `ramctrl demo`.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Number of nodes (at least 1).
    pub nodes: usize,
    /// Directory to use (default: a new temporary directory).
    pub dir: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    pub json: bool,
    /// Keep the directory on exit.
    pub keep: bool,
    /// Extra `[bootstrap]` lines for every node's configuration (TOML).
    pub bootstrap_toml: Option<String>,
    /// Extra TOML appended to every node's configuration, after `[bootstrap]`: so it
    /// should consist of tables (`[backup]`, `[backup.pgbackrest]`, …). A template:
    /// [`node_toml`](crate::launch::node_toml) fills `{name}`, `{node_dir}`, `{data_dir}`,
    /// `{pg_port}`, `{api_port}` and `{cluster_dir}` for each node.
    pub node_toml: Option<String>,
    /// Give up when the cluster is not ready after this long.
    pub ready_timeout: Duration,
    /// The `ramd` binary to run (default: `RALE_RAMD_BIN`, then next to the current
    /// executable).
    pub ramd_bin: Option<PathBuf>,
    /// Serve every agent's API and Raft RPCs over HTTPS with a CA generated for the
    /// playground (`tls/ca.crt`, trusted by the agents through `api.tls_ca`).
    pub tls: bool,
    /// Where the agents keep the cluster state: the embedded Raft, or a local
    /// three-member etcd started beside them (`<dir>/etcd/`, stopped with them).
    pub consensus: DemoConsensus,
}

/// The consensus backend of a playground (`ramctrl demo --consensus raft|etcd`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DemoConsensus {
    /// The agents' embedded Raft.
    #[default]
    Raft,
    /// A local three-member etcd on loopback (`etcd` must be installed).
    Etcd,
}

impl std::str::FromStr for DemoConsensus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "raft" => Ok(Self::Raft),
            "etcd" => Ok(Self::Etcd),
            other => Err(format!("unknown consensus {other:?}: raft or etcd")),
        }
    }
}

/// etcd members a playground with `--consensus etcd` starts.
pub const DEMO_ETCD_MEMBERS: usize = 3;

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            dir: None,
            json: false,
            keep: false,
            bootstrap_toml: None,
            node_toml: None,
            ready_timeout: Duration::from_secs(120),
            ramd_bin: None,
            tls: false,
            consensus: DemoConsensus::Raft,
        }
    }
}

/// One node of the playground as printed.
#[derive(Clone, Debug, Serialize)]
pub struct DemoNode {
    /// Member name.
    pub name: String,
    /// `primary` or `replica` once ready.
    pub role: String,
    /// PostgreSQL port.
    pub pg_port: u16,
    /// libpq connection string that can write on this node when it is primary.
    pub dsn: String,
    /// Agent API URL.
    pub api_url: String,
    /// PostgreSQL data directory.
    pub data_dir: PathBuf,
    /// The node's `ramd` configuration file.
    pub config: PathBuf,
    /// The agent's PID.
    pub pid: u32,
}

/// Credentials of the playground's API.
#[derive(Clone, Debug, Serialize)]
pub struct DemoAuth {
    /// API user.
    pub user: String,
    /// API password.
    pub password: String,
}

/// What `--json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct DemoReport {
    /// The nodes.
    pub nodes: Vec<DemoNode>,
    /// API credentials.
    pub auth: DemoAuth,
    /// The playground directory.
    pub dir: PathBuf,
    /// The CA certificate to trust (`ramctrl --ca-cert`) when the playground runs TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// `raft` or `etcd`.
    pub consensus: DemoConsensus,
    /// With `--consensus etcd`: the client URLs of the local etcd members.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub etcd_endpoints: Vec<String>,
}

/// A running playground. Dropping it stops every agent it started (and their PostgreSQL).
pub struct Playground {
    agents: Agents,
    /// With `--consensus etcd`: the local etcd members (stopped after the agents).
    etcd: Option<rale::testing::etcd_server::EtcdServers>,
    /// What it runs.
    pub report: DemoReport,
    dir: PathBuf,
    keep: bool,
    _tmp: Option<tempfile::TempDir>,
}

/// What the primary must accept before the playground counts as ready.
const READY_WRITE: &str = "CREATE TABLE IF NOT EXISTS rale_demo (id bigserial PRIMARY KEY, at timestamptz DEFAULT now()); INSERT INTO rale_demo DEFAULT VALUES;";

fn secret(len: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

fn ramd_binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("RALE_RAMD_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating ramctrl")?;
    let dir = exe.parent().context("ramctrl has no parent directory")?;
    for candidate in [dir.join("ramd"), dir.join("../ramd")] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    bail!(
        "cannot find the ramd binary next to {}; set RALE_RAMD_BIN",
        exe.display()
    )
}

impl Playground {
    /// Writes the configurations and starts the agents (does not wait for readiness).
    pub fn start(opts: &DemoOptions) -> Result<Self> {
        if opts.nodes == 0 || opts.nodes > 9 {
            bail!("--nodes must be between 1 and 9");
        }
        let (dir, tmp) = match &opts.dir {
            Some(d) => {
                std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("rale-demo-")
                    .tempdir()
                    .context("creating a temporary directory")?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let password = secret(20);
        let su_password = secret(20);
        let repl_password = secret(20);
        let tls = if opts.tls {
            let tls_dir = dir.join("tls");
            std::fs::create_dir_all(&tls_dir)
                .with_context(|| format!("creating {}", tls_dir.display()))?;
            Some(crate::tls::generate_self_signed(
                &tls_dir,
                &["127.0.0.1", "localhost"],
            )?)
        } else {
            None
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (etcd, node_toml) = match opts.consensus {
            DemoConsensus::Raft => (None, opts.node_toml.clone()),
            DemoConsensus::Etcd => {
                let etcd = start_etcd(&dir.join("etcd"))?;
                let consensus = etcd_toml(&etcd.endpoints());
                let node_toml = match &opts.node_toml {
                    Some(extra) => format!("{consensus}\n{extra}"),
                    None => consensus,
                };
                (Some(etcd), Some(node_toml))
            }
        };
        let etcd_endpoints = etcd.as_ref().map(|e| e.endpoints()).unwrap_or_default();
        let spec = ClusterSpec {
            dir: dir.clone(),
            generated_by: "`ramctrl demo`".into(),
            api_user: "admin".into(),
            api_password: password.clone(),
            superuser_password: su_password,
            replication_password: repl_password,
            tls,
            bootstrap_toml: opts.bootstrap_toml.clone().unwrap_or_default(),
            node_toml,
            nodes: loopback_nodes(opts.nodes, scheme)?,
        };
        let ramd = match &opts.ramd_bin {
            Some(p) => p.clone(),
            None => ramd_binary()?,
        };
        let mut agents = Agents::new(ramd);
        agents.launch(&spec)?;
        let nodes = spec
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| DemoNode {
                name: n.name.clone(),
                role: "starting".into(),
                pg_port: n.pg_port,
                dsn: spec.dsn(n, "127.0.0.1"),
                api_url: n.api_url.clone(),
                data_dir: spec.data_dir(n),
                config: spec.config_path(n),
                pid: agents.pid(i).unwrap_or_default(),
            })
            .collect();
        Ok(Self {
            agents,
            etcd,
            report: DemoReport {
                nodes,
                auth: DemoAuth {
                    user: spec.api_user,
                    password,
                },
                dir: dir.clone(),
                ca_cert: spec.tls.map(|t| t.ca_cert),
                consensus: opts.consensus,
                etcd_endpoints,
            },
            dir,
            keep: opts.keep,
            _tmp: tmp,
        })
    }

    /// The agents, while the playground runs: to signal one, wait for its exit, or reach
    /// its process (by node index, 0-based).
    pub fn agents(&mut self) -> &mut Agents {
        &mut self.agents
    }

    /// Starts node `index`'s agent again with the same configuration (appending to its
    /// `ramd.log`) after it exited or was killed; returns the new PID. Fails while the
    /// previous agent still runs.
    pub fn restart_agent(&mut self, index: usize) -> Result<u32> {
        if !self.agents.holds_any() {
            bail!("the playground is stopped");
        }
        let pid = self.agents.restart(index)?;
        if let Some(n) = self.report.nodes.get_mut(index) {
            n.pid = pid;
        }
        Ok(pid)
    }

    /// The local etcd of a `--consensus etcd` playground: to stop and start its members.
    pub fn etcd(&mut self) -> Option<&mut rale::testing::etcd_server::EtcdServers> {
        self.etcd.as_mut()
    }

    /// Waits until one node is primary and accepts a write and every other node streams.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let probe = ReadyProbe {
            http: self.http_client(Duration::from_secs(2))?,
            api_urls: self
                .report
                .nodes
                .iter()
                .map(|n| n.api_url.clone())
                .collect(),
            dsns: self.report.nodes.iter().map(|n| n.dsn.clone()).collect(),
            write_sql: READY_WRITE.into(),
        };
        let members = self.agents.wait_ready(&probe, timeout).await?;
        for n in &mut self.report.nodes {
            n.role = members
                .iter()
                .find(|m| m.name == n.name)
                .map(|m| m.role.clone())
                .unwrap_or_default();
        }
        Ok(())
    }

    /// An HTTP client for the agents: trusts the playground's CA when it runs TLS.
    pub fn http_client(&self, timeout: Duration) -> Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if let Some(ca) = &self.report.ca_cert {
            let pem = crate::tls::read_ca_bundle(ca, "playground CA")?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(builder.build()?)
    }

    /// Human-readable description and what to try next.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "RALE playground in {} ({} nodes)\n",
            self.dir.display(),
            self.report.nodes.len()
        );
        let _ = writeln!(
            out,
            "{:<7} {:<8} {:>7}  {:<24} {:>7}  DATA DIR / CONFIG",
            "NODE", "ROLE", "PG PORT", "API", "PID"
        );
        for n in &self.report.nodes {
            let _ = writeln!(
                out,
                "{:<7} {:<8} {:>7}  {:<24} {:>7}  {}",
                n.name,
                n.role,
                n.pg_port,
                n.api_url,
                n.pid,
                n.data_dir.display()
            );
            let _ = writeln!(out, "{:<60}  {}", "", n.config.display());
        }
        let primary = self.report.nodes.iter().find(|n| n.role == "primary");
        let urls: Vec<&str> = self
            .report
            .nodes
            .iter()
            .map(|n| n.api_url.as_str())
            .collect();
        if !self.report.etcd_endpoints.is_empty() {
            let _ = writeln!(
                out,
                "\nConsensus: etcd at {} (prefix /rale/demo/; stopped with the playground)",
                self.report.etcd_endpoints.join(",")
            );
        }
        let _ = writeln!(
            out,
            "\nAPI credentials: user {} password {}",
            self.report.auth.user, self.report.auth.password
        );
        let _ = writeln!(out, "\nTry:");
        if let Some(p) = primary {
            let _ = writeln!(
                out,
                "  psql \"{}\"                      # write on the primary",
                p.dsn
            );
            let _ = writeln!(
                out,
                "  kill -9 {}   # kill the primary's agent; also kill its postmaster: head -1 {}/postmaster.pid",
                p.pid,
                p.data_dir.display()
            );
        }
        let ca = self
            .report
            .ca_cert
            .as_ref()
            .map(|c| format!(" --ca-cert {}", c.display()))
            .unwrap_or_default();
        let _ = writeln!(out, "  ramctrl --url {}{ca} list", urls.join(","));
        let _ = writeln!(
            out,
            "  ramctrl --url {}{ca} --user admin --password {} switchover",
            urls.join(","),
            self.report.auth.password
        );
        let _ = writeln!(
            out,
            "\nCtrl-C stops every process and removes the directory{}.",
            if self.keep { " (kept: --keep)" } else { "" }
        );
        out
    }

    /// Stops every agent (SIGTERM, then SIGKILL after 20 s) and their PostgreSQL servers.
    pub fn stop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        self.agents.stop_all(Duration::from_secs(20));
        // Agents stop PostgreSQL on SIGTERM; a postmaster left by a killed agent is stopped here.
        for n in &self.report.nodes {
            if let Some(pid) = rale::pg::postmaster_pid(&n.data_dir) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
            }
        }
        // etcd last: the agents needed it to stop cleanly. Dropping kills every member
        // by its PID.
        self.etcd = None;
        if self.keep {
            if let Some(t) = self._tmp.take() {
                let _ = t.keep();
            }
        } else if self._tmp.is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for Playground {
    fn drop(&mut self) {
        if self.agents.holds_any() {
            self.stop();
        }
    }
}

/// Starts the playground's etcd members under `dir` and waits until they are healthy.
fn start_etcd(dir: &std::path::Path) -> Result<rale::testing::etcd_server::EtcdServers> {
    use rale::testing::etcd_server::EtcdServers;
    let binary = EtcdServers::find_binary().context(
        "--consensus etcd needs the etcd binary (Debian: apt-get install etcd-server; or set RALE_ETCD)",
    )?;
    let etcd = EtcdServers::start(&binary, dir, DEMO_ETCD_MEMBERS)
        .with_context(|| format!("starting etcd in {}", dir.display()))?;
    etcd.wait_healthy(Duration::from_secs(60))
        .with_context(|| format!("waiting for etcd (logs in {})", dir.display()))?;
    Ok(etcd)
}

/// The `[consensus]` section of every node of an etcd playground.
pub fn etcd_toml(endpoints: &[String]) -> String {
    let list: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        "[consensus]\nbackend = \"etcd\"\ncluster = \"demo\"\nendpoints = [{}]\n",
        list.join(", ")
    )
}

/// Runs the playground in the foreground until Ctrl-C or SIGTERM.
pub async fn run(opts: DemoOptions) -> Result<()> {
    let mut pg = Playground::start(&opts)?;
    if !opts.json {
        eprintln!(
            "starting {} nodes in {} ...",
            opts.nodes,
            pg.report.dir.display()
        );
    }
    // Signals first: a SIGTERM or Ctrl-C while the cluster starts, or right after it is
    // reported ready, still stops every process the playground started.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let t = Instant::now();
    let ready = tokio::select! {
        r = pg.wait_ready(opts.ready_timeout) => Some(r),
        _ = term.recv() => None,
        _ = int.recv() => None,
    };
    match ready {
        Some(r) => r?,
        None => {
            pg.stop();
            return Ok(());
        }
    }
    if opts.json {
        println!("{}", serde_json::to_string(&pg.report)?);
    } else {
        println!("{}", pg.table());
        println!("(ready in {:.1} s)", t.elapsed().as_secs_f64());
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    if !opts.json {
        eprintln!("stopping the playground ...");
    }
    pg.stop();
    Ok(())
}
