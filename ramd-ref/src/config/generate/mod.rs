//! Configuration generation: complete, commented `ramd` files for every node of a
//! cluster from a few inputs (names, hosts, ports, directories, an environment profile,
//! TLS, a backup tool), with generated secrets. `ramctrl config generate` writes them;
//! every file passes `ramd --config FILE --check` once its directories and binaries
//! exist. `docs/configuration.md` shows the profiles.
//!
//! ```
//! use ramd_ref::config::generate::{ClusterSpec, Profile, Secrets, generate};
//! let spec = ClusterSpec::local(3, "/var/lib/rale", Profile::Dev);
//! let files = generate(&spec, &Secrets::fixed("s3cret")).expect("valid inputs");
//! assert_eq!(files.len(), 3);
//! let first = ramd_ref::config::NodeConfig::parse(&files[0].text).expect("it parses");
//! assert_eq!(first.peers.len(), 3);
//! ```

use std::fmt::Write as _;

use rand::Rng;

mod backup;
mod profile;

pub use backup::BackupChoice;
use backup::backup_section;
pub use profile::Profile;
use profile::timings;

/// Why the inputs cannot make a cluster.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum GenerateError {
    /// No node, or more than [`NODES_MAX`].
    #[error("a cluster has 1 to {NODES_MAX} nodes, not {0}")]
    NodeCount(usize),
    /// A name is not a valid member name, or repeats.
    #[error("node name {0:?}: {1}")]
    Name(String, String),
    /// `hosts` has neither one entry nor one per node.
    #[error("give one host for every node or a single host for all ({hosts} hosts, {nodes} nodes)")]
    Hosts {
        /// Hosts given.
        hosts: usize,
        /// Nodes.
        nodes: usize,
    },
    /// Ports would pass 65535.
    #[error("ports from {0} for {1} nodes pass 65535")]
    Ports(u16, usize),
    /// A directory template that is not absolute.
    #[error("{0} must be an absolute path (it may contain {{name}})")]
    Path(&'static str),
    /// An unknown profile or backup tool name.
    #[error("{0}")]
    Choice(String),
}

/// Most nodes one generation makes.
pub const NODES_MAX: usize = 64;

/// The inputs.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Member names, in order (raft ids 1, 2, …).
    pub names: Vec<String>,
    /// One host per node, or one for all (then ports count up from the bases).
    pub hosts: Vec<String>,
    /// API port of the first node.
    pub api_port: u16,
    /// PostgreSQL port of the first node.
    pub pg_port: u16,
    /// Data directory; `{name}` is replaced by the node's name.
    pub data_dir: String,
    /// Agent state directory; `{name}` as above.
    pub state_dir: String,
    /// PostgreSQL binaries (default: found at start).
    pub bin_dir: Option<String>,
    /// Environment profile.
    pub profile: Profile,
    /// Serve the API over HTTPS, with certificates under `tls_dir`.
    pub tls: bool,
    /// Where the certificates are (`{name}.crt`, `{name}.key`, `ca.crt`).
    pub tls_dir: String,
    /// Backups.
    pub backup: BackupChoice,
    /// Directory shared by every node for backups (pgBackRest repository, Barman home).
    pub backup_dir: String,
    /// `shared_buffers` of every node instead of the profile's (size it to the host).
    pub shared_buffers: Option<String>,
}

impl ClusterSpec {
    /// `n` nodes `node1…` on 127.0.0.1 (API 8008+, PostgreSQL 5432+), directories under
    /// `base`, no TLS, no backups.
    pub fn local(n: usize, base: &str, profile: Profile) -> Self {
        Self {
            names: (1..=n).map(|i| format!("node{i}")).collect(),
            hosts: vec!["127.0.0.1".into()],
            api_port: 8008,
            pg_port: 5432,
            data_dir: format!("{base}/{{name}}/data"),
            state_dir: format!("{base}/{{name}}/state"),
            bin_dir: None,
            profile,
            tls: false,
            tls_dir: "/etc/rale/tls".into(),
            backup: BackupChoice::None,
            backup_dir: format!("{base}/backup"),
            shared_buffers: None,
        }
    }
}

/// The generated secrets (the same in every node's file).
#[derive(Clone)]
pub struct Secrets {
    /// API password (HTTP Basic, user `admin`).
    pub api_password: String,
    /// Consensus traffic token.
    pub cluster_token: String,
    /// PostgreSQL superuser password.
    pub superuser_password: String,
    /// PostgreSQL replication password.
    pub replication_password: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

fn random_secret(rng: &mut impl Rng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    (0..32)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

impl Secrets {
    /// Fresh random secrets (32 characters each, ~187 bits).
    pub fn random() -> Self {
        let mut rng = rand::thread_rng();
        Self {
            api_password: random_secret(&mut rng),
            cluster_token: random_secret(&mut rng),
            superuser_password: random_secret(&mut rng),
            replication_password: random_secret(&mut rng),
        }
    }

    /// Every secret derived from `seed` (tests and documentation only).
    pub fn fixed(seed: &str) -> Self {
        Self {
            api_password: format!("{seed}-api"),
            cluster_token: format!("{seed}-token"),
            superuser_password: format!("{seed}-superuser"),
            replication_password: format!("{seed}-replication"),
        }
    }
}

/// One node's file.
#[derive(Clone, Debug)]
pub struct GeneratedFile {
    /// The node's name; the file is `<name>.toml`.
    pub name: String,
    /// Its TOML text.
    pub text: String,
}

struct Node {
    name: String,
    host: String,
    api_port: u16,
    pg_port: u16,
}

fn nodes(spec: &ClusterSpec) -> Result<Vec<Node>, GenerateError> {
    let n = spec.names.len();
    if n == 0 || n > NODES_MAX {
        return Err(GenerateError::NodeCount(n));
    }
    for (i, name) in spec.names.iter().enumerate() {
        rale::NodeId::new(name.clone())
            .map_err(|e| GenerateError::Name(name.clone(), e.to_string()))?;
        if spec.names[..i].contains(name) {
            return Err(GenerateError::Name(name.clone(), "given twice".into()));
        }
    }
    let shared_host = match spec.hosts.len() {
        1 => true,
        h if h == n => spec.hosts.iter().all(|x| *x == spec.hosts[0]) && n > 1,
        h => return Err(GenerateError::Hosts { hosts: h, nodes: n }),
    };
    for (what, t) in [("data_dir", &spec.data_dir), ("state_dir", &spec.state_dir)] {
        if !t.starts_with('/') {
            return Err(GenerateError::Path(what));
        }
    }
    let port = |base: u16, i: usize| -> Result<u16, GenerateError> {
        let offset = if shared_host { i } else { 0 };
        u16::try_from(usize::from(base) + offset).map_err(|_| GenerateError::Ports(base, n))
    };
    spec.names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            Ok(Node {
                name: name.clone(),
                host: spec.hosts.get(i).unwrap_or(&spec.hosts[0]).clone(),
                api_port: port(spec.api_port, i)?,
                pg_port: port(spec.pg_port, i)?,
            })
        })
        .collect()
}

pub(super) fn q(s: &str) -> String {
    // TOML basic string.
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One file per node, in the order of `spec.names`.
pub fn generate(
    spec: &ClusterSpec,
    secrets: &Secrets,
) -> Result<Vec<GeneratedFile>, GenerateError> {
    let nodes = nodes(spec)?;
    let scheme = if spec.tls { "https" } else { "http" };
    let t = timings(spec.profile);
    let mut peers = String::new();
    for (i, n) in nodes.iter().enumerate() {
        let _ = writeln!(
            peers,
            "[[peers]]\nname = {}\nraft_id = {}\napi_url = {}\n",
            q(&n.name),
            i + 1,
            q(&format!("{scheme}://{}", host_port(&n.host, n.api_port)))
        );
    }
    let sync_on = spec.profile == Profile::Prod && nodes.len() >= 2;
    nodes
        .iter()
        .map(|n| {
            let dir = |template: &str| template.replace("{name}", &n.name);
            let state_dir = dir(&spec.state_dir);
            let data_dir = dir(&spec.data_dir);
            let mut s = String::new();
            let _ = writeln!(
                s,
                "# ramd configuration of {name}, profile {profile}, generated by `ramctrl config generate`\n\
                 # for a {count}-node cluster. Check it with: ramd --config {name}.toml --check\n\
                 # It holds secrets (the same in every node's file): keep it mode 0600, owned by\n\
                 # the user ramd runs as. Durations are human strings; docs/configuration.md has\n\
                 # every key.\n",
                name = n.name,
                profile = spec.profile.name(),
                count = nodes.len(),
            );
            let _ = writeln!(s, "name = {}", q(&n.name));
            let _ = writeln!(s, "state_dir = {}   # consensus log, snapshots, jobs, socket", q(&state_dir));
            let _ = writeln!(s, "log_format = {}", q(t.log_format));
            let _ = writeln!(s);
            let _ = writeln!(s, "[api]");
            let listen = if n.host == "localhost" { "127.0.0.1" } else { &n.host };
            let _ = writeln!(s, "listen = {}   # also carries consensus traffic", q(&host_port(listen, n.api_port)));
            let _ = writeln!(s, "url = {}", q(&format!("{scheme}://{}", host_port(&n.host, n.api_port))));
            let _ = writeln!(s, "username = \"admin\"");
            let _ = writeln!(s, "password = {}   # or password_file = \"/etc/rale/api-password\"", q(&secrets.api_password));
            let _ = writeln!(s, "cluster_token = {}   # the same on every node", q(&secrets.cluster_token));
            let _ = writeln!(
                s,
                "read_open = {}   # false: GETs need credentials too (health checks stay open)",
                t.read_open
            );
            if spec.tls {
                let _ = writeln!(s, "tls_cert = {}", q(&format!("{}/{}.crt", spec.tls_dir, n.name)));
                let _ = writeln!(s, "tls_key = {}", q(&format!("{}/{}.key", spec.tls_dir, n.name)));
                let _ = writeln!(s, "tls_ca = {}   # CA of the members' certificates", q(&format!("{}/ca.crt", spec.tls_dir)));
            } else {
                let _ = writeln!(s, "# tls_cert = {}   # set cert and key: HTTPS only", q(&format!("{}/{}.crt", spec.tls_dir, n.name)));
                let _ = writeln!(s, "# tls_key = {}", q(&format!("{}/{}.key", spec.tls_dir, n.name)));
            }
            let _ = writeln!(s, "# allow_networks = [\"10.0.0.0/8\"]   # who may change state (default: any network)");
            let _ = writeln!(s);
            let _ = writeln!(s, "[postgresql]");
            let _ = writeln!(s, "data_dir = {}", q(&data_dir));
            match &spec.bin_dir {
                Some(b) => {
                    let _ = writeln!(s, "bin_dir = {}", q(b));
                }
                None => {
                    let _ = writeln!(s, "# bin_dir = \"/usr/lib/postgresql/15/bin\"   # default: pg_config, then the newest installed");
                }
            }
            let _ = writeln!(s, "host = {}   # other members connect here", q(&n.host));
            let _ = writeln!(s, "port = {}", n.pg_port);
            let _ = writeln!(s, "superuser = \"postgres\"");
            let _ = writeln!(s, "superuser_password = {}", q(&secrets.superuser_password));
            let _ = writeln!(s, "replication_user = \"replicator\"");
            let _ = writeln!(s, "replication_password = {}", q(&secrets.replication_password));
            let _ = writeln!(s, "# os_user = \"postgres\"   # when ramd runs as root");
            let _ = writeln!(s, "# hba_extra = [\"host all all 10.0.0.0/8 scram-sha-256\"]   # applications");
            let _ = writeln!(s);
            let _ = writeln!(s, "[postgresql.parameters]   # this node only; cluster-wide: [bootstrap.postgresql_parameters]");
            let shared_buffers = spec.shared_buffers.as_deref().unwrap_or(t.shared_buffers);
            let _ = writeln!(s, "shared_buffers = {}", q(shared_buffers));
            let _ = writeln!(s);
            let _ = writeln!(s, "[tags]\nnofailover = false\nnosync = false\nnoloadbalance = false\n# failover_priority = 1\n");
            s.push_str(&peers);
            let _ = writeln!(s, "[consensus]   # Raft timings ({} profile)", spec.profile.name());
            let _ = writeln!(s, "heartbeat_interval = {}", q(t.heartbeat));
            let _ = writeln!(s, "election_timeout_min = {}", q(t.election_min));
            let _ = writeln!(s, "election_timeout_max = {}", q(t.election_max));
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "# Cluster-wide settings used once, when the cluster is created (afterwards:\n\
                 # ramctrl edit-config / PATCH /config). docs/timings.md explains each timing.\n\
                 [bootstrap]"
            );
            let _ = writeln!(s, "lease_ttl = {}   # failover after node loss takes about this long", q(t.lease_ttl));
            let _ = writeln!(s, "renew_interval = {}", q(t.renew_interval));
            let _ = writeln!(s, "loop_interval = {}", q(t.loop_interval));
            let _ = writeln!(s, "fence_margin = {}", q(t.fence_margin));
            let _ = writeln!(s, "member_ttl = {}", q(t.member_ttl));
            let _ = writeln!(s, "publish_interval = {}", q(t.publish_interval));
            let _ = writeln!(s, "detach_timeout = {}", q(t.detach_timeout));
            let _ = writeln!(s, "maximum_lag_on_failover_bytes = {}", t.maximum_lag_on_failover_bytes);
            let _ = writeln!(s);
            let _ = writeln!(s, "[bootstrap.synchronous]");
            if sync_on {
                let _ = writeln!(s, "mode = \"on\"        # FIRST 1: no acknowledged commit is lost in a failover");
                let _ = writeln!(s, "node_count = 1");
                let _ = writeln!(s, "strict = false     # true: writes block rather than run without a sync standby");
            } else {
                let _ = writeln!(s, "mode = \"off\"       # on: FIRST n, quorum: ANY n");
                let _ = writeln!(s, "# node_count = 1");
                let _ = writeln!(s, "# strict = false");
            }
            let _ = writeln!(s);
            let _ = writeln!(s, "[metrics]   # workload metrics on /metrics (docs/metrics.md)");
            let _ = writeln!(s, "workload = true");
            let _ = writeln!(s, "workload_interval = {}", q(t.metrics_interval));
            let _ = writeln!(s, "workload_timeout = \"5s\"");
            let _ = writeln!(s);
            let _ = writeln!(s, "[callbacks]   # `script <event> <role> <cluster>`, in the background");
            let _ = writeln!(s, "# on_role_change = \"/usr/local/bin/rale-vip\"");
            let _ = writeln!(s, "timeout = \"30s\"");
            backup_section(&mut s, spec, &state_dir, &data_dir, n.pg_port);
            Ok(GeneratedFile {
                name: n.name.clone(),
                text: s,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;

    fn spec(profile: Profile) -> ClusterSpec {
        let mut s = ClusterSpec::local(3, "/srv/rale", profile);
        s.names = vec!["db1".into(), "db2".into(), "db3".into()];
        s.hosts = vec!["10.0.0.1".into(), "10.0.0.2".into(), "10.0.0.3".into()];
        s
    }

    #[test]
    fn every_profile_tls_and_backup_parses_and_validates() {
        for profile in [Profile::Dev, Profile::Staging, Profile::Prod] {
            for tls in [false, true] {
                for backup in [
                    BackupChoice::None,
                    BackupChoice::PgBackRest,
                    BackupChoice::Barman,
                ] {
                    let mut sp = spec(profile);
                    sp.tls = tls;
                    sp.backup = backup;
                    let files = generate(&sp, &Secrets::random()).expect("generates");
                    assert_eq!(files.len(), 3);
                    for f in &files {
                        let cfg = NodeConfig::parse(&f.text).unwrap_or_else(|e| {
                            panic!("{profile:?} {tls} {backup:?}: {e:#}\n{}", f.text)
                        });
                        assert_eq!(cfg.name.as_str(), f.name);
                        assert_eq!(cfg.api.tls_enabled(), tls);
                        assert_eq!(cfg.backup.is_some(), backup != BackupChoice::None);
                        assert_eq!(cfg.peers.len(), 3);
                        assert!(cfg.api.url().starts_with(if tls {
                            "https://"
                        } else {
                            "http://"
                        }));
                    }
                }
            }
        }
    }

    #[test]
    fn one_host_counts_ports_up_and_many_hosts_share_them() {
        let local = generate(
            &ClusterSpec::local(3, "/r", Profile::Dev),
            &Secrets::fixed("x"),
        )
        .expect("generates");
        let ports: Vec<u16> = local
            .iter()
            .map(|f| NodeConfig::parse(&f.text).expect("parses").postgresql.port)
            .collect();
        assert_eq!(ports, [5432, 5433, 5434]);
        let spread = generate(&spec(Profile::Prod), &Secrets::fixed("x")).expect("generates");
        let cfg = NodeConfig::parse(&spread[2].text).expect("parses");
        assert_eq!(cfg.postgresql.port, 5432);
        assert_eq!(cfg.api.listen.to_string(), "10.0.0.3:8008");
        assert_eq!(cfg.bootstrap.lease_ttl, std::time::Duration::from_secs(5));
        assert_eq!(cfg.bootstrap.synchronous.mode, rale_sync::SyncMode::On);
        assert_eq!(
            cfg.postgresql.data_dir,
            std::path::PathBuf::from("/srv/rale/db3/data")
        );
    }

    #[test]
    fn bad_inputs_are_refused() {
        let mut s = spec(Profile::Dev);
        s.hosts = vec!["a".into(), "b".into()];
        assert!(matches!(
            generate(&s, &Secrets::fixed("x")),
            Err(GenerateError::Hosts { .. })
        ));
        let mut s = spec(Profile::Dev);
        s.names[2] = "db1".into();
        assert!(matches!(
            generate(&s, &Secrets::fixed("x")),
            Err(GenerateError::Name(..))
        ));
        let mut s = ClusterSpec::local(3, "/r", Profile::Dev);
        s.api_port = 65534;
        assert!(matches!(
            generate(&s, &Secrets::fixed("x")),
            Err(GenerateError::Ports(..))
        ));
        let s = ClusterSpec::local(0, "/r", Profile::Dev);
        assert!(matches!(
            generate(&s, &Secrets::fixed("x")),
            Err(GenerateError::NodeCount(0))
        ));
        assert!("qa".parse::<Profile>().is_err());
        assert!("wal-g".parse::<BackupChoice>().is_err());
    }

    #[test]
    fn secrets_are_random_and_quoted() {
        let a = Secrets::random();
        let b = Secrets::random();
        assert_ne!(a.api_password, b.api_password);
        assert_eq!(a.superuser_password.len(), 32);
        assert_eq!(q("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert!(!format!("{a:?}").contains(&a.api_password));
    }
}
