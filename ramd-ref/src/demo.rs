//! `ramctrl demo`: a local N-node playground on loopback with real PostgreSQL.
//!
//! Generates one configuration per node in a directory, starts one `ramd` per node, waits
//! until the primary accepts a write and every replica streams, prints the nodes and what
//! to try next, and on Ctrl-C or SIGTERM stops every process it started and removes the
//! directory (unless `--keep`).

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::Rng;
use serde::Serialize;
use serde_json::Value;
use tokio::signal::unix::{SignalKind, signal};

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
    /// [`node_toml`] fills `{name}`, `{node_dir}`, `{data_dir}`, `{pg_port}`,
    /// `{api_port}` and `{cluster_dir}` for each node.
    pub node_toml: Option<String>,
    /// Give up when the cluster is not ready after this long.
    pub ready_timeout: Duration,
    /// The `ramd` binary to run (default: `RALE_RAMD_BIN`, then next to the current
    /// executable).
    pub ramd_bin: Option<PathBuf>,
    /// Serve every agent's API and Raft RPCs over HTTPS with a CA generated for the
    /// playground (`tls/ca.crt`, trusted by the agents through `api.tls_ca`).
    pub tls: bool,
}

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
}

/// A running playground. Dropping it stops every agent it started (and their PostgreSQL).
pub struct Playground {
    children: Vec<Child>,
    /// What it runs.
    pub report: DemoReport,
    dir: PathBuf,
    keep: bool,
    ramd: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

/// `count` distinct free loopback ports. The listeners stay bound until every port is
/// chosen, so the kernel cannot hand out the same port twice.
fn free_ports(count: usize) -> Result<Vec<u16>> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        held.push(TcpListener::bind("127.0.0.1:0").context("finding a free port")?);
    }
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

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

/// Fills the placeholders of a [`DemoOptions::node_toml`] template for one node:
/// `{name}` (`node1` …), `{node_dir}` (the node's directory, holding `ramd.toml`,
/// `ramd.log` and `state/`), `{data_dir}` (its PostgreSQL data directory), `{pg_port}`,
/// `{api_port}` and `{cluster_dir}` (the playground directory). Other text, including
/// other braces, is kept as is.
pub fn node_toml(
    template: &str,
    name: &str,
    node_dir: &Path,
    data_dir: &Path,
    pg_port: u16,
    api_port: u16,
    cluster_dir: &Path,
) -> String {
    template
        .replace("{name}", name)
        .replace("{node_dir}", &node_dir.display().to_string())
        .replace("{data_dir}", &data_dir.display().to_string())
        .replace("{pg_port}", &pg_port.to_string())
        .replace("{api_port}", &api_port.to_string())
        .replace("{cluster_dir}", &cluster_dir.display().to_string())
}

fn make_traversable(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if nix::unistd::geteuid().is_root() {
        // PostgreSQL runs as the `postgres` user and must reach its data directory.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", dir.display()))?;
    }
    Ok(())
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
        make_traversable(&dir)?;
        let password = secret(20);
        let su_password = secret(20);
        let repl_password = secret(20);
        let mut ports = Vec::new();
        let free = free_ports(2 * opts.nodes)?;
        for pair in free.chunks(2) {
            ports.push((pair[0], pair[1]));
        }
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
        let tls_toml = tls
            .as_ref()
            .map(|t| {
                format!(
                    "tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_ca = \"{}\"\n",
                    t.cert.display(),
                    t.key.display(),
                    t.ca_cert.display()
                )
            })
            .unwrap_or_default();
        let mut peers = String::new();
        for (i, (api, _)) in ports.iter().enumerate() {
            let _ = write!(
                peers,
                "[[peers]]\nname = \"node{}\"\nraft_id = {}\napi_url = \"{scheme}://127.0.0.1:{api}\"\n\n",
                i + 1,
                i + 1
            );
        }
        let ramd = match &opts.ramd_bin {
            Some(p) => p.clone(),
            None => ramd_binary()?,
        };
        let mut nodes = Vec::new();
        let mut children = Vec::new();
        for (i, (api, pgport)) in ports.iter().enumerate() {
            let name = format!("node{}", i + 1);
            let ndir = dir.join(&name);
            std::fs::create_dir_all(&ndir)?;
            make_traversable(&ndir)?;
            let data_dir = ndir.join("pgdata");
            let config_path = ndir.join("ramd.toml");
            let bootstrap = opts.bootstrap_toml.clone().unwrap_or_default();
            let extra = opts
                .node_toml
                .as_deref()
                .map(|t| node_toml(t, &name, &ndir, &data_dir, *pgport, *api, &dir))
                .unwrap_or_default();
            let text = format!(
                "# Generated by `ramctrl demo`.\nname = \"{name}\"\nstate_dir = \"{state}\"\n\n\
                 [api]\nlisten = \"127.0.0.1:{api}\"\nusername = \"admin\"\npassword = \"{password}\"\n{tls_toml}\n\
                 [postgresql]\ndata_dir = \"{data}\"\nhost = \"127.0.0.1\"\nport = {pgport}\n\
                 superuser_password = \"{su_password}\"\nreplication_password = \"{repl_password}\"\n\n\
                 [postgresql.parameters]\nshared_buffers = \"32MB\"\nmax_connections = \"50\"\n\n\
                 {peers}[bootstrap]\n{bootstrap}\n{extra}",
                state = ndir.join("state").display(),
                data = data_dir.display(),
            );
            std::fs::write(&config_path, text)
                .with_context(|| format!("writing {}", config_path.display()))?;
            let log = std::fs::File::create(ndir.join("ramd.log"))?;
            let child = Command::new(&ramd)
                .arg("--config")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", ramd.display()))?;
            nodes.push(DemoNode {
                name: name.clone(),
                role: "starting".into(),
                pg_port: *pgport,
                dsn: format!("host=127.0.0.1 port={pgport} user=postgres password={su_password} dbname=postgres"),
                api_url: format!("{scheme}://127.0.0.1:{api}"),
                data_dir,
                config: config_path,
                pid: child.id(),
            });
            children.push(child);
        }
        Ok(Self {
            children,
            report: DemoReport {
                nodes,
                auth: DemoAuth {
                    user: "admin".into(),
                    password,
                },
                dir: dir.clone(),
                ca_cert: tls.map(|t| t.ca_cert),
            },
            dir,
            keep: opts.keep,
            ramd,
            _tmp: tmp,
        })
    }

    /// The agent process of node `index` (0-based), while the playground runs.
    pub fn agent(&mut self, index: usize) -> Option<&mut Child> {
        self.children.get_mut(index)
    }

    /// Starts node `index`'s agent again with the same configuration (appending to its
    /// `ramd.log`) after it exited or was killed; returns the new PID. Fails while the
    /// previous agent still runs.
    pub fn restart_agent(&mut self, index: usize) -> Result<u32> {
        let node = self
            .report
            .nodes
            .get(index)
            .context("no such node")?
            .clone();
        let child = self
            .children
            .get_mut(index)
            .context("the playground is stopped")?;
        if child.try_wait()?.is_none() {
            bail!("the agent of {} (pid {}) still runs", node.name, child.id());
        }
        let log_path = self.dir.join(&node.name).join("ramd.log");
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let new = Command::new(&self.ramd)
            .arg("--config")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.ramd.display()))?;
        let pid = new.id();
        *child = new;
        if let Some(n) = self.report.nodes.get_mut(index) {
            n.pid = pid;
        }
        Ok(pid)
    }

    /// Waits until one node is primary and accepts a write and every other node streams.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let client = self.http_client(Duration::from_secs(2))?;
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no agent answered yet");
        while Instant::now() < deadline {
            for (i, c) in self.children.iter_mut().enumerate() {
                if let Ok(Some(status)) = c.try_wait() {
                    bail!(
                        "ramd of node{} exited early ({status}); see {}",
                        i + 1,
                        self.dir
                            .join(format!("node{}", i + 1))
                            .join("ramd.log")
                            .display()
                    );
                }
            }
            match self.cluster_roles(&client).await {
                Ok(roles) => {
                    let leaders: Vec<_> = roles.iter().filter(|(_, r, _)| r == "primary").collect();
                    let streaming = roles
                        .iter()
                        .filter(|(_, r, s)| r == "replica" && s == "streaming")
                        .count();
                    if leaders.len() == 1 && streaming + 1 == self.report.nodes.len() {
                        let leader = leaders[0].0.clone();
                        if self.try_write(&leader).await.is_ok() {
                            for n in &mut self.report.nodes {
                                n.role = roles
                                    .iter()
                                    .find(|(name, _, _)| *name == n.name)
                                    .map(|(_, r, _)| r.clone())
                                    .unwrap_or_default();
                            }
                            return Ok(());
                        }
                    }
                    last = format!("{roles:?}");
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("cluster not ready after {timeout:?}; last view: {last}")
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

    async fn cluster_roles(
        &self,
        client: &reqwest::Client,
    ) -> Result<Vec<(String, String, String)>> {
        let mut last_err = None;
        for n in &self.report.nodes {
            match client.get(format!("{}/cluster", n.api_url)).send().await {
                Ok(resp) => {
                    let v: Value = resp.json().await?;
                    let members = v
                        .get("members")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    if members.len() < self.report.nodes.len() {
                        last_err = Some(anyhow::anyhow!(
                            "{} of {} members known",
                            members.len(),
                            self.report.nodes.len()
                        ));
                        continue;
                    }
                    return Ok(members
                        .iter()
                        .map(|m| {
                            let s = |k: &str| {
                                m.get(k)
                                    .and_then(Value::as_str)
                                    .unwrap_or_default()
                                    .to_string()
                            };
                            let role = match s("role").as_str() {
                                "leader" | "primary" | "master" => "primary".to_string(),
                                "replica" | "sync_standby" | "quorum_standby" => {
                                    "replica".to_string()
                                }
                                other => other.to_string(),
                            };
                            (s("name"), role, s("state"))
                        })
                        .collect());
                }
                Err(e) => last_err = Some(e.into()),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no node")))
    }

    async fn try_write(&self, leader: &str) -> Result<()> {
        let node = self
            .report
            .nodes
            .iter()
            .find(|n| n.name == leader)
            .context("unknown leader")?;
        let (client, conn) = tokio_postgres::connect(
            &format!("{} connect_timeout=2", node.dsn),
            tokio_postgres::NoTls,
        )
        .await?;
        let task = tokio::spawn(conn);
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS rale_demo (id bigserial PRIMARY KEY, at timestamptz DEFAULT now()); INSERT INTO rale_demo DEFAULT VALUES;")
            .await?;
        drop(client);
        task.abort();
        Ok(())
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
        for c in &self.children {
            if let Ok(pid) = i32::try_from(c.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for c in &mut self.children {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !matches!(c.try_wait(), Ok(Some(_))) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.children.clear();
        // Agents stop PostgreSQL on SIGTERM; a postmaster left by a killed agent is stopped here.
        for n in &self.report.nodes {
            if let Some(pid) = rale::pg::postmaster_pid(&n.data_dir) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
            }
        }
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
        if !self.children.is_empty() {
            self.stop();
        }
    }
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
    let t = Instant::now();
    pg.wait_ready(opts.ready_timeout).await?;
    if opts.json {
        println!("{}", serde_json::to_string(&pg.report)?);
    } else {
        println!("{}", pg.table());
        println!("(ready in {:.1} s)", t.elapsed().as_secs_f64());
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_toml_fills_every_placeholder() {
        let t = "[backup]\njob_dir = \"{node_dir}/jobs\"\n# {name} {data_dir} {pg_port} {api_port} {cluster_dir}/repo {other}\n";
        let text = node_toml(
            t,
            "node2",
            Path::new("/c/node2"),
            Path::new("/c/node2/pgdata"),
            5433,
            8009,
            Path::new("/c"),
        );
        assert_eq!(
            text,
            "[backup]\njob_dir = \"/c/node2/jobs\"\n# node2 /c/node2/pgdata 5433 8009 /c/repo {other}\n"
        );
    }
}
