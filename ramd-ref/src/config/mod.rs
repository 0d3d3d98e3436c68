//! The per-node configuration file of `ramd` (TOML). Every field is documented in
//! `docs/configuration.md`; durations are human strings (`"250ms"`, `"3s"`).
//!
//! The `[backup]` section is in [`backup`]; the API's access rules that the `[api]`
//! section describes are in [`auth`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use rale::consensus::Peer;
use rale::decide::NodeIdentity;
use rale::{DynamicConfig, NodeId, Tags};
use serde::{Deserialize, Serialize};

pub mod auth;
pub mod backup;
pub mod generate;

pub use auth::{AuthConfig, Password};
pub use backup::{BackupConfig, ToolKind};

/// The whole file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This member's name (1–63 of `[A-Za-z0-9_.-]`).
    pub name: NodeId,
    /// Directory for the agent's own state: the consensus log and snapshots, jobs.
    pub state_dir: PathBuf,
    /// REST API (also carries the consensus traffic).
    pub api: ApiConfig,
    /// The local PostgreSQL.
    pub postgresql: PgConfig,
    /// Consensus members at bootstrap (every node lists the same set, itself included).
    pub peers: Vec<PeerConfig>,
    /// Consensus timings.
    #[serde(default)]
    pub consensus: ConsensusConfig,
    /// This member's tags.
    #[serde(default)]
    pub tags: Tags,
    /// Initial cluster-wide dynamic configuration, used only when the cluster is created;
    /// afterwards the copy in consensus rules (change it with `PATCH /config`).
    #[serde(default)]
    pub bootstrap: DynamicConfig,
    /// Log format: `text` (default) or `json`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Backups of this node (optional): tool, job directory, schedules, retention; see
    /// [`backup`].
    #[serde(default)]
    pub backup: Option<BackupConfig>,
    /// Scripts run when PostgreSQL starts, stops, restarts, reloads or changes role; see
    /// `ramd_ref::callbacks`.
    #[serde(default)]
    pub callbacks: crate::callbacks::CallbacksConfig,
    /// Workload metrics of the local server (`[metrics]`: `workload`,
    /// `workload_interval`, `workload_timeout`); see [`crate::workload`].
    #[serde(default)]
    pub metrics: crate::workload::WorkloadConfig,
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// REST API settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on, e.g. `127.0.0.1:8008`.
    pub listen: SocketAddr,
    /// URL other members and clients use to reach this API (default `http://<listen>`).
    pub url: Option<String>,
    /// User name for HTTP basic authentication of state-changing requests.
    #[serde(default)]
    pub username: Option<String>,
    /// Password (prefer `password_file`). Never logged.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// File holding the password (first line).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Shared secret authenticating consensus traffic between agents (default: derived
    /// from the API credentials when set).
    #[serde(default, skip_serializing)]
    pub cluster_token: Option<String>,
    /// TLS certificate (PEM) for the API; TLS is on when both cert and key are set.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM bundle) this agent trusts when it connects to other agents
    /// over `https://` (Raft RPCs, forwarded requests), in addition to the public web
    /// roots. Needed when the members' certificates come from a private CA.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// Reads (`GET`) need no credentials. The Patroni health checks (`/primary`,
    /// `/replica`, …) stay open either way: load balancers probe them.
    #[serde(default = "default_true")]
    pub read_open: bool,
    /// Client networks (CIDR, e.g. `10.0.0.0/8`, `::1/128`) allowed to change state;
    /// empty: any network (credentials are still required).
    #[serde(default)]
    pub allow_networks: Vec<ipnet::IpNet>,
    /// Web origins (`https://console.example:8443`) whose pages may change state through
    /// a browser; empty (the default): cross-origin browser requests that change state
    /// are refused.
    #[serde(default)]
    pub allow_origins: Vec<String>,
}

fn default_true() -> bool {
    true
}

impl ApiConfig {
    /// The advertised URL (default `https://<listen>` with TLS, else `http://<listen>`).
    pub fn url(&self) -> String {
        let scheme = if self.tls_enabled() { "https" } else { "http" };
        self.url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}", self.listen))
    }

    /// Whether the API is served over TLS (`tls_cert` and `tls_key` both set).
    pub fn tls_enabled(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// Checks the TLS settings: `tls_cert` and `tls_key` come together.
    pub fn validate_tls(&self) -> Result<()> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bail!("api.tls_cert and api.tls_key must be set together (TLS needs both)");
        }
        Ok(())
    }

    /// The access rules of the API this section describes (reads the password file).
    pub fn auth(&self) -> Result<AuthConfig> {
        Ok(AuthConfig {
            username: self.username.clone().unwrap_or_else(|| "rale".into()),
            password: self.password()?.map(Password::new),
            read_open: self.read_open,
            allow_networks: self.allow_networks.clone(),
            allow_origins: self.allow_origins.clone(),
        })
    }

    /// The password from `password` or `password_file`.
    pub fn password(&self) -> Result<Option<String>> {
        if let Some(p) = &self.password {
            return Ok(Some(p.clone()));
        }
        match &self.password_file {
            Some(f) => {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading api.password_file {}", f.display()))?;
                Ok(Some(text.lines().next().unwrap_or_default().to_string()))
            }
            None => Ok(None),
        }
    }
}

/// A secret given inline or in a file (first line); exactly one of them.
fn inline_or_file(value: &Option<String>, file: &Option<PathBuf>, what: &str) -> Result<String> {
    match (value, file) {
        (Some(_), Some(_)) => bail!("postgresql.{what} and postgresql.{what}_file: set one"),
        (Some(v), None) => Ok(v.clone()),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading postgresql.{what}_file {}", f.display()))?;
            let first = text.lines().next().unwrap_or_default();
            ensure!(
                !first.is_empty(),
                "postgresql.{what}_file {} is empty",
                f.display()
            );
            Ok(first.to_string())
        }
        (None, None) => bail!("postgresql.{what} (or {what}_file) is required"),
    }
}

impl PgConfig {
    /// The superuser's password, from `superuser_password` or `superuser_password_file`.
    pub fn superuser_password(&self) -> Result<String> {
        inline_or_file(
            &self.superuser_password,
            &self.superuser_password_file,
            "superuser_password",
        )
    }

    /// The replication user's password, from `replication_password` or
    /// `replication_password_file`.
    pub fn replication_password(&self) -> Result<String> {
        inline_or_file(
            &self.replication_password,
            &self.replication_password_file,
            "replication_password",
        )
    }
}

/// The local PostgreSQL.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Directory of the server binaries (default: `pg_config --bindir`, then the newest
    /// `/usr/lib/postgresql/*/bin`).
    #[serde(default)]
    pub bin_dir: Option<PathBuf>,
    /// Address PostgreSQL listens on and other members connect to.
    #[serde(default = "default_host")]
    pub host: String,
    /// Port.
    pub port: u16,
    /// Unix socket directory (default: the data directory's parent).
    #[serde(default)]
    pub socket_dir: Option<PathBuf>,
    /// OS user that runs PostgreSQL when the agent runs as root (default `postgres`).
    #[serde(default)]
    pub os_user: Option<String>,
    /// Superuser the agent connects as.
    #[serde(default = "default_superuser")]
    pub superuser: String,
    /// Its password (or `superuser_password_file`). Never logged.
    #[serde(default, skip_serializing)]
    pub superuser_password: Option<String>,
    /// File holding the superuser's password (first line), e.g. a mounted Secret.
    #[serde(default)]
    pub superuser_password_file: Option<PathBuf>,
    /// Replication user.
    #[serde(default = "default_replication_user")]
    pub replication_user: String,
    /// Its password (or `replication_password_file`). Never logged.
    #[serde(default, skip_serializing)]
    pub replication_password: Option<String>,
    /// File holding the replication user's password (first line).
    #[serde(default)]
    pub replication_password_file: Option<PathBuf>,
    /// Extra `postgresql.conf` parameters for this node.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// Extra `pg_hba.conf` lines (applications, other networks), placed before RALE's
    /// rules. The other members' hosts (from `[[peers]] api_url`) are admitted for
    /// replication and the superuser without being listed here.
    #[serde(default)]
    pub hba_extra: Vec<String>,
    /// How long one status probe may take.
    #[serde(default = "default_status_timeout", with = "humantime_serde")]
    pub status_timeout: Duration,
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_superuser() -> String {
    "postgres".into()
}
fn default_replication_user() -> String {
    "replicator".into()
}
fn default_status_timeout() -> Duration {
    Duration::from_millis(1000)
}

/// A consensus member.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Member name.
    pub name: NodeId,
    /// Numeric consensus id, unique, never reused.
    pub raft_id: u64,
    /// Its API URL.
    pub api_url: String,
}

impl From<&PeerConfig> for Peer {
    fn from(p: &PeerConfig) -> Peer {
        Peer {
            node: p.name.clone(),
            raft_id: p.raft_id,
            api_url: p.api_url.clone(),
        }
    }
}

/// Which store holds the cluster state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Embedded Raft between the agents (openraft; the default).
    #[default]
    Raft,
    /// An external etcd v3 cluster (`endpoints`, `cluster`, `prefix`, `tls`, `user`).
    Etcd,
}

/// Consensus: the backend, the embedded Raft's timings, the etcd connection.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsensusConfig {
    /// `raft` (default) or `etcd`.
    pub backend: Backend,
    /// etcd: client URLs of the etcd members (`http://10.0.0.1:2379`, or `https://…`
    /// with `[consensus.tls]`).
    pub endpoints: Vec<String>,
    /// etcd: the cluster's name; stored under the prefix by the first agent, and an
    /// agent configured with another name is refused. Required with etcd.
    pub cluster: Option<String>,
    /// etcd: key prefix of this cluster (default `/rale/<cluster>/`).
    pub prefix: Option<String>,
    /// etcd: user name, when etcd has authentication on.
    pub user: Option<String>,
    /// etcd: password of `user` (prefer `password_file`). Never logged.
    #[serde(skip_serializing)]
    pub password: Option<String>,
    /// etcd: file holding the password of `user` (first line).
    pub password_file: Option<PathBuf>,
    /// etcd: TLS files (`ca_file`, `cert_file`, `key_file`, `server_name`).
    pub tls: Option<rale::consensus::etcd::EtcdTls>,
    /// etcd: bound on each request (default 2 s).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Leader heartbeat period.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Lower bound of the randomised election timeout.
    #[serde(with = "humantime_serde")]
    pub election_timeout_min: Duration,
    /// Upper bound of the randomised election timeout.
    #[serde(with = "humantime_serde")]
    pub election_timeout_max: Duration,
    /// This node joins a running cluster instead of founding one: it waits until a
    /// member adds it (`POST /api/v1/members`, `ramctrl members add`). Its `[[peers]]`
    /// list the running members and itself.
    #[serde(default)]
    pub join: bool,
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(200),
            election_timeout_max: Duration::from_millis(400),
            join: false,
            backend: Backend::Raft,
            endpoints: Vec::new(),
            cluster: None,
            prefix: None,
            user: None,
            password: None,
            password_file: None,
            tls: None,
            request_timeout: Duration::from_secs(2),
        }
    }
}

impl ConsensusConfig {
    /// The rules between `backend` and the etcd settings: etcd needs `endpoints` and
    /// `cluster`, and the etcd settings are refused with `raft` (a file that sets them
    /// most likely meant etcd). The etcd settings themselves are checked by
    /// [`ConsensusConfig::etcd_config`].
    fn validate_backend(&self) -> Result<()> {
        match self.backend {
            Backend::Raft => {
                let etcd_only = [
                    ("endpoints", !self.endpoints.is_empty()),
                    ("cluster", self.cluster.is_some()),
                    ("prefix", self.prefix.is_some()),
                    ("user", self.user.is_some()),
                    ("password", self.password.is_some()),
                    ("password_file", self.password_file.is_some()),
                    ("tls", self.tls.is_some()),
                ];
                if let Some((name, _)) = etcd_only.iter().find(|(_, set)| *set) {
                    bail!(
                        "consensus.{name} is an etcd setting but consensus.backend is \"raft\" \
                         (set backend = \"etcd\" to use etcd)"
                    );
                }
            }
            Backend::Etcd => {
                if self.endpoints.is_empty() {
                    bail!("consensus.backend = \"etcd\" needs consensus.endpoints");
                }
                if self.cluster.as_deref().is_none_or(|c| c.trim().is_empty()) {
                    bail!(
                        "consensus.backend = \"etcd\" needs consensus.cluster, the cluster's \
                         name (every agent of the cluster sets the same)"
                    );
                }
                if self.password.is_some() && self.password_file.is_some() {
                    bail!("consensus.password and consensus.password_file: set one");
                }
            }
        }
        Ok(())
    }

    /// The etcd connection settings of this node (reads `password_file`), validated with
    /// [`rale::consensus::etcd::EtcdConfig::validate`]: `ramd --check` and the daemon's
    /// start call this same function.
    pub fn etcd_config(&self, peers: Vec<Peer>) -> Result<rale::consensus::etcd::EtcdConfig> {
        let cluster = self.cluster.clone().unwrap_or_default();
        let mut c = rale::consensus::etcd::EtcdConfig::new(self.endpoints.clone(), cluster, peers);
        if let Some(p) = &self.prefix {
            c.prefix = p.clone();
        }
        c.user = self.user.clone();
        c.password = match (&self.password, &self.password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(f)) => Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("consensus.password_file {}", f.display()))?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ),
            (None, None) => None,
        };
        c.tls = self.tls.clone();
        c.request_timeout = self.request_timeout;
        c.validate()?;
        Ok(c)
    }
}

impl NodeConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading configuration {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("configuration {}", path.display()))
    }

    /// Parses and validates the text of a configuration file (what [`NodeConfig::load`]
    /// does after reading it; the `node_config` fuzz target runs it on arbitrary text).
    pub fn parse(text: &str) -> Result<Self> {
        let cfg: NodeConfig = toml::from_str(text).context("parsing")?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks cross-field rules.
    pub fn validate(&self) -> Result<()> {
        let me = self.peers.iter().find(|p| p.name == self.name);
        if me.is_none() {
            bail!("peers must list this node ({}) itself", self.name);
        }
        let mut ids: Vec<u64> = self.peers.iter().map(|p| p.raft_id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != self.peers.len() {
            bail!("peers have duplicate raft_id values");
        }
        self.api.validate_tls()?;
        if self.consensus.election_timeout_min >= self.consensus.election_timeout_max {
            bail!("consensus.election_timeout_min must be below election_timeout_max");
        }
        if self.consensus.heartbeat_interval * 2 > self.consensus.election_timeout_min {
            bail!("consensus.heartbeat_interval must be at most half of election_timeout_min");
        }
        self.consensus.validate_backend()?;
        self.bootstrap
            .validate()
            .context("invalid [bootstrap] dynamic configuration")?;
        if let Err(why) = self.metrics.validate() {
            bail!("{why}");
        }
        Ok(())
    }

    /// The node identity this configuration describes (name, API URL, PostgreSQL
    /// address, tags).
    pub fn identity(&self) -> NodeIdentity {
        NodeIdentity {
            node: self.name.clone(),
            api_url: self.api.url(),
            pg_host: self.postgresql.host.clone(),
            pg_port: self.postgresql.port,
            tags: self.tags.clone(),
        }
    }

    /// This node's consensus id.
    pub fn raft_id(&self) -> u64 {
        self.peers
            .iter()
            .find(|p| p.name == self.name)
            .map(|p| p.raft_id)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let text = include_str!("../../../docs/ramd.example.toml");
        let cfg: NodeConfig = toml::from_str(text).expect("example parses");
        assert!(cfg.validate().is_ok());
        assert_eq!(cfg.bootstrap.lease_ttl, Duration::from_millis(1500));
        assert_eq!(cfg.raft_id(), 1);
    }

    #[test]
    fn tls_keys_come_together_and_switch_the_scheme() {
        let base = include_str!("../../../docs/ramd.example.toml");
        let with = |extra: &str| -> NodeConfig {
            let text = base.replace("[api]\n", &format!("[api]\n{extra}\n"));
            toml::from_str(&text).expect("parses")
        };
        let plain = with("");
        assert!(!plain.api.tls_enabled());
        let both = with("tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\ntls_ca = \"/ca.pem\"");
        assert!(both.validate().is_ok());
        assert!(both.api.tls_enabled());
        if both.api.url.is_none() {
            assert!(both.api.url().starts_with("https://"), "{}", both.api.url());
        }
        let half = with("tls_cert = \"/c.pem\"");
        let err = half
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("tls_key"), "{err}");
    }

    #[test]
    fn postgresql_passwords_come_inline_or_from_a_file() {
        let text = include_str!("../../../docs/ramd.example.toml");
        let mut cfg: NodeConfig = toml::from_str(text).expect("example parses");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("su");
        std::fs::write(&file, "from-file\nignored\n").expect("write");
        cfg.postgresql.superuser_password = None;
        cfg.postgresql.superuser_password_file = Some(file.clone());
        assert_eq!(
            cfg.postgresql.superuser_password().ok().as_deref(),
            Some("from-file")
        );
        cfg.postgresql.superuser_password = Some("inline".into());
        let both = cfg.postgresql.superuser_password().expect_err("both set");
        assert!(both.to_string().contains("set one"), "{both}");
        cfg.postgresql.superuser_password = None;
        cfg.postgresql.superuser_password_file = Some(dir.path().join("missing"));
        let missing = format!(
            "{:#}",
            cfg.postgresql.superuser_password().expect_err("missing")
        );
        assert!(missing.contains("superuser_password_file"), "{missing}");
        cfg.postgresql.replication_password = None;
        cfg.postgresql.replication_password_file = None;
        let none = cfg.postgresql.replication_password().expect_err("required");
        assert!(none.to_string().contains("required"), "{none}");
    }

    #[test]
    fn missing_self_in_peers_is_rejected() {
        let text = include_str!("../../../docs/ramd.example.toml")
            .replace("name = \"node1\"\nstate_dir", "name = \"node9\"\nstate_dir");
        let cfg: NodeConfig = toml::from_str(&text).expect("parses");
        let err = cfg
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("node9"), "{err}");
    }

    /// The example file with its `[consensus]` table replaced by `section`.
    fn with_consensus(section: &str) -> NodeConfig {
        let base = include_str!("../../../docs/ramd.example.toml");
        let start = base
            .find("[consensus]")
            .expect("the example has [consensus]");
        let end = base[start + 1..]
            .find("\n[")
            .map(|i| start + 1 + i + 1)
            .unwrap_or(base.len());
        let text = format!("{}{section}\n{}", &base[..start], &base[end..]);
        toml::from_str(&text).expect("parses")
    }

    #[test]
    fn etcd_backend_is_checked() {
        let err = |c: &NodeConfig| {
            c.validate()
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default()
        };
        let ok = with_consensus(
            "[consensus]\nbackend = \"etcd\"\ncluster = \"main\"\nendpoints = [\"http://127.0.0.1:2379\"]\n",
        );
        assert!(ok.validate().is_ok(), "{}", err(&ok));
        let peers = ok.peers.iter().map(Peer::from).collect();
        let etcd = ok
            .consensus
            .etcd_config(peers)
            .expect("valid etcd settings");
        assert_eq!(etcd.prefix, "/rale/main/");
        let no_cluster = with_consensus(
            "[consensus]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\n",
        );
        assert!(err(&no_cluster).contains("consensus.cluster"));
        let no_endpoints = with_consensus("[consensus]\nbackend = \"etcd\"\ncluster = \"x\"\n");
        assert!(err(&no_endpoints).contains("consensus.endpoints"));
        let raft_with_etcd = with_consensus("[consensus]\nendpoints = [\"http://h:2379\"]\n");
        assert!(err(&raft_with_etcd).contains("etcd setting"));
        let https_without_tls = with_consensus(
            "[consensus]\nbackend = \"etcd\"\ncluster = \"x\"\nendpoints = [\"https://h:2379\"]\n",
        );
        let peers = https_without_tls.peers.iter().map(Peer::from).collect();
        let e = https_without_tls
            .consensus
            .etcd_config(peers)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(e.contains("[consensus.tls]"), "{e}");
    }
}
