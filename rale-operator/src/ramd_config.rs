//! Each member's `ramd` configuration file (`docs/configuration.md`), rendered from the
//! spec.
//!
//! Member `i` of cluster `c` in namespace `ns` is the pod `c-i` of the StatefulSet; its
//! Raft id is `i + 1` and every member's `[[peers]]` lists `c-0 … c-(n-1)` by their
//! stable DNS names `c-i.c-agents.ns.svc` (the headless Service `c-agents`).
//!
//! No secret is written: the API password is read from a mounted Secret
//! (`password_file`), and the PostgreSQL passwords, which `ramd` only takes inline, are
//! appended by the pod's entrypoint (`packaging/docker/rale-entrypoint.sh`) from the
//! mounted Secrets. That is why `[postgresql]` is the file's last table.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::crd::{BackupTool, RaleClusterSpec};

/// The agents' REST API port (also the Raft traffic).
pub const API_PORT: u16 = 8008;
/// PostgreSQL's port.
pub const PG_PORT: u16 = 5432;
/// Mount point of the data volume.
pub const DATA_MOUNT: &str = "/var/lib/rale/data";
/// Mount point of the separate WAL volume.
pub const WAL_MOUNT: &str = "/var/lib/rale/wal";
/// Mount point of the backup repository.
pub const BACKUP_MOUNT: &str = "/var/lib/rale/backup";
/// Mount point of the ConfigMap with every member's file.
pub const CONFIG_MOUNT: &str = "/etc/rale/config";
/// Mount point of the Secrets (`<dir>/{superuser,replication,api}/password`).
pub const SECRETS_MOUNT: &str = "/etc/rale/secrets";
/// Mount point of the TLS Secret.
pub const TLS_MOUNT: &str = "/etc/rale/tls";
/// Directory (an `emptyDir`) where the entrypoint writes the final file and, with a
/// WAL volume, the wrappers of `initdb` and `pg_basebackup`.
pub const RUN_DIR: &str = "/run/rale";

/// The consensus members the files describe: each member's index and Raft id, and the
/// members that join a running cluster rather than found it.
///
/// A new cluster is [`Topology::initial`]: members `0 … n-1` with Raft ids `1 … n`, all
/// founding. A member added later gets a Raft id never used before and `join = true`:
/// it waits until the operator adds it through `POST /api/v1/members`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    /// `(index, raft_id)` of every member, in index order.
    pub members: Vec<(u32, u64)>,
    /// Indexes of the members that join a running cluster.
    pub joining: BTreeSet<u32>,
}

impl Topology {
    /// A new cluster of `n` founding members.
    pub fn initial(n: u32) -> Topology {
        Topology {
            members: (0..n).map(|i| (i, u64::from(i) + 1)).collect(),
            joining: BTreeSet::new(),
        }
    }

    /// The topology of `n` members given the Raft ids already assigned (`known`, by
    /// index; from the status), the next unused id, and how many members founded the
    /// cluster (ids `1 … initial`): members without an id get fresh ones, and every
    /// member whose id is not a founder's joins. With nothing known it is
    /// [`Topology::initial`].
    pub fn grow(n: u32, known: &BTreeMap<u32, u64>, next_raft_id: u64, initial: u32) -> Topology {
        if known.is_empty() {
            return Topology::initial(n);
        }
        let mut next = next_raft_id.max(known.values().copied().max().unwrap_or(0) + 1);
        let mut t = Topology::default();
        for i in 0..n {
            match known.get(&i) {
                Some(id) => {
                    t.members.push((i, *id));
                    if *id > u64::from(initial) {
                        t.joining.insert(i);
                    }
                }
                None => {
                    t.members.push((i, next));
                    t.joining.insert(i);
                    next += 1;
                }
            }
        }
        t
    }

    /// The Raft id of member `index`.
    pub fn raft_id(&self, index: u32) -> Option<u64> {
        self.members
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, id)| *id)
    }
}

/// Names and user names a member's file needs beyond the spec.
#[derive(Clone, Debug)]
pub struct MemberContext<'a> {
    /// The cluster's name.
    pub cluster: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// The member's index in the StatefulSet.
    pub index: u32,
    /// PostgreSQL parameters already accepted by [`crate::params::check`].
    pub parameters: &'a BTreeMap<String, String>,
    /// PostgreSQL superuser name.
    pub superuser: &'a str,
    /// Replication user name.
    pub replication_user: &'a str,
    /// REST API user name.
    pub api_user: &'a str,
    /// Every member and its Raft id.
    pub topology: &'a Topology,
}

/// The name of member `index` (its pod's name).
pub fn member_name(cluster: &str, index: u32) -> String {
    format!("{cluster}-{index}")
}

/// The headless Service giving members stable DNS names.
pub fn headless_service_name(cluster: &str) -> String {
    format!("{cluster}-agents")
}

/// The stable DNS name of member `index`.
pub fn member_host(cluster: &str, namespace: &str, index: u32) -> String {
    format!(
        "{}.{}.{namespace}.svc",
        member_name(cluster, index),
        headless_service_name(cluster)
    )
}

/// The REST API URL of member `index`.
pub fn member_api_url(cluster: &str, namespace: &str, index: u32, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!(
        "{scheme}://{}:{API_PORT}",
        member_host(cluster, namespace, index)
    )
}

/// A TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML key (bare when it can be).
fn key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        s.to_string()
    } else {
        q(s)
    }
}

/// The data directory of PostgreSQL inside the pod.
pub fn pg_data_dir() -> String {
    format!("{DATA_MOUNT}/pgdata")
}

/// The agent's state directory inside the pod.
pub fn state_dir() -> String {
    format!("{DATA_MOUNT}/agent")
}

/// Renders member `ctx.index`'s configuration for a cluster of `spec.instances` members.
pub fn render(spec: &RaleClusterSpec, ctx: &MemberContext<'_>) -> String {
    let tls = spec.tls.is_some();
    let name = member_name(ctx.cluster, ctx.index);
    let host = member_host(ctx.cluster, ctx.namespace, ctx.index);
    let mut o = String::new();
    // `write!` to a String cannot fail.
    let _ = writeln!(
        o,
        "# ramd configuration of {name}, member {} of RaleCluster {}/{}.\n\
         # Rendered by rale-operator; edits are overwritten. The entrypoint appends the\n\
         # PostgreSQL passwords to [postgresql] (the last table) from mounted Secrets.\n",
        ctx.index, ctx.namespace, ctx.cluster
    );
    let _ = writeln!(o, "name = {}", q(&name));
    let _ = writeln!(o, "state_dir = {}", q(&state_dir()));
    let _ = writeln!(o, "log_format = \"json\"\n");

    let _ = writeln!(o, "[api]");
    let _ = writeln!(o, "listen = \"0.0.0.0:{API_PORT}\"");
    let _ = writeln!(
        o,
        "url = {}",
        q(&member_api_url(ctx.cluster, ctx.namespace, ctx.index, tls))
    );
    let _ = writeln!(o, "username = {}", q(ctx.api_user));
    let _ = writeln!(
        o,
        "password_file = {}",
        q(&format!("{SECRETS_MOUNT}/api/password"))
    );
    if tls {
        let _ = writeln!(o, "tls_cert = {}", q(&format!("{TLS_MOUNT}/tls.crt")));
        let _ = writeln!(o, "tls_key = {}", q(&format!("{TLS_MOUNT}/tls.key")));
        let _ = writeln!(o, "tls_ca = {}", q(&format!("{TLS_MOUNT}/ca.crt")));
    }
    o.push('\n');

    let _ = writeln!(
        o,
        "[tags]\nnofailover = false\nnosync = false\nnoloadbalance = false\n"
    );

    for (i, raft_id) in &ctx.topology.members {
        let _ = writeln!(o, "[[peers]]");
        let _ = writeln!(o, "name = {}", q(&member_name(ctx.cluster, *i)));
        let _ = writeln!(o, "raft_id = {raft_id}");
        let _ = writeln!(
            o,
            "api_url = {}\n",
            q(&member_api_url(ctx.cluster, ctx.namespace, *i, tls))
        );
    }

    // Pods restart and reschedule: Raft timings of the `prod` profile.
    let _ = writeln!(
        o,
        "[consensus]\nheartbeat_interval = \"100ms\"\nelection_timeout_min = \"400ms\"\nelection_timeout_max = \"800ms\""
    );
    if ctx.topology.joining.contains(&ctx.index) {
        let _ = writeln!(
            o,
            "# Added to a running cluster: wait for POST /api/v1/members (the operator's)."
        );
        let _ = writeln!(o, "join = true");
    }
    o.push('\n');

    let _ = writeln!(
        o,
        "# Used once, when the cluster is created; afterwards the operator PATCHes /config."
    );
    let _ = writeln!(
        o,
        "[bootstrap]\nlease_ttl = \"5s\"\nrenew_interval = \"500ms\"\nloop_interval = \"100ms\"\nfence_margin = \"1s\"\nmember_ttl = \"5s\"\nmaximum_lag_on_failover_bytes = 16777216\n"
    );
    if let Some(sync) = &spec.synchronous {
        let _ = writeln!(o, "[bootstrap.synchronous]");
        let _ = writeln!(o, "mode = {}", q(sync.mode.as_str()));
        let _ = writeln!(o, "node_count = {}", sync.node_count);
        let _ = writeln!(o, "strict = {}\n", sync.strict);
    }
    if !ctx.parameters.is_empty() {
        let _ = writeln!(o, "[bootstrap.postgresql_parameters]");
        for (k, v) in ctx.parameters {
            let _ = writeln!(o, "{} = {}", key(k), q(v));
        }
        o.push('\n');
    }

    if let Some(b) = &spec.backup {
        let repo = format!(
            "{BACKUP_MOUNT}/{}",
            b.repository.sub_path.as_deref().unwrap_or(ctx.cluster)
        );
        let _ = writeln!(o, "[backup]");
        let tool = match b.tool {
            BackupTool::Pgbackrest => "pgbackrest",
            BackupTool::Barman => "barman",
        };
        let _ = writeln!(o, "tool = {}", q(tool));
        let _ = writeln!(
            o,
            "job_dir = {}\n",
            q(&format!("{}/backup-jobs", state_dir()))
        );
        match b.tool {
            BackupTool::Pgbackrest => {
                let _ = writeln!(o, "[backup.pgbackrest]");
                let _ = writeln!(o, "stanza = {}", q(ctx.cluster));
                let _ = writeln!(o, "repo_path = {}", q(&repo));
                let _ = writeln!(
                    o,
                    "base_dir = {}",
                    q(&format!("{}/pgbackrest", state_dir()))
                );
                let _ = writeln!(o, "pg_data_dir = {}", q(&pg_data_dir()));
                let _ = writeln!(o, "pg_port = {PG_PORT}");
                let _ = writeln!(
                    o,
                    "pg_socket_dir = {}\n",
                    q(&format!("{}/socket", state_dir()))
                );
            }
            BackupTool::Barman => {
                let _ = writeln!(o, "[backup.barman]");
                let _ = writeln!(o, "server_name = {}", q(ctx.cluster));
                let _ = writeln!(o, "base_dir = {}", q(&repo));
                let _ = writeln!(
                    o,
                    "conninfo = {}\n",
                    q(&format!(
                        "host={}/socket port={PG_PORT} user={} dbname=postgres",
                        state_dir(),
                        ctx.superuser
                    ))
                );
            }
        }
        for s in &b.schedules {
            let _ = writeln!(o, "[[backup.schedules]]");
            let _ = writeln!(o, "name = {}", q(&s.name));
            let _ = writeln!(o, "kind = {}", q(s.kind.as_str()));
            let _ = writeln!(o, "cron = {}", q(&s.cron));
            let _ = writeln!(o, "placement = {}\n", q(&s.placement));
        }
        if let Some(r) = &b.retention {
            let _ = writeln!(o, "[backup.retention]");
            if let Some(n) = r.full_count {
                let _ = writeln!(o, "full_count = {n}");
            }
            if let Some(n) = r.differential_count {
                let _ = writeln!(o, "differential_count = {n}");
            }
            if let Some(a) = &r.max_age {
                let _ = writeln!(o, "max_age = {}", q(a));
            }
            o.push('\n');
        }
    }

    let _ = writeln!(
        o,
        "[metrics]\nworkload = true\nworkload_interval = \"30s\"\nworkload_timeout = \"5s\"\n"
    );

    let _ = writeln!(o, "[postgresql]");
    let _ = writeln!(o, "data_dir = {}", q(&pg_data_dir()));
    let bin_dir = if spec.storage.wal.is_some() {
        // The entrypoint's wrappers add --waldir to initdb and pg_basebackup.
        format!("{RUN_DIR}/bin")
    } else {
        format!("/usr/lib/postgresql/{}/bin", spec.postgres_version)
    };
    let _ = writeln!(o, "bin_dir = {}", q(&bin_dir));
    let _ = writeln!(o, "host = {}", q(&host));
    let _ = writeln!(o, "port = {PG_PORT}");
    let _ = writeln!(o, "superuser = {}", q(ctx.superuser));
    let _ = writeln!(o, "replication_user = {}", q(ctx.replication_user));
    let default_hba = vec![
        "host all all 0.0.0.0/0 scram-sha-256".to_string(),
        "host all all ::/0 scram-sha-256".to_string(),
    ];
    let hba = spec.postgresql.pg_hba.as_ref().unwrap_or(&default_hba);
    // Pod addresses change with every restart: members are admitted by network, with
    // SCRAM, rather than by the addresses RALE derives from the peers' host names.
    let mut lines: Vec<String> = vec![
        format!(
            "host replication {} 0.0.0.0/0 scram-sha-256",
            ctx.replication_user
        ),
        format!(
            "host replication {} ::/0 scram-sha-256",
            ctx.replication_user
        ),
    ];
    lines.extend(hba.iter().cloned());
    let _ = writeln!(
        o,
        "hba_extra = [{}]",
        lines.iter().map(|l| q(l)).collect::<Vec<_>>().join(", ")
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::*;

    fn spec(instances: i32) -> RaleClusterSpec {
        serde_json::from_value(serde_json::json!({
            "instances": instances,
            "images": {"agent": "ramd:test"},
            "storage": {"size": "1Gi"},
        }))
        .expect("minimal spec")
    }

    fn ctx<'a>(
        params: &'a BTreeMap<String, String>,
        index: u32,
        topology: &'a Topology,
    ) -> MemberContext<'a> {
        MemberContext {
            topology,
            cluster: "pg",
            namespace: "db",
            index,
            parameters: params,
            superuser: "postgres",
            replication_user: "replicator",
            api_user: "admin",
        }
    }

    #[test]
    fn every_member_lists_every_peer_and_itself() {
        let p = BTreeMap::new();
        for n in [1, 3, 7] {
            let s = spec(n);
            let topo = Topology::initial(n as u32);
            for i in 0..n as u32 {
                let text = render(&s, &ctx(&p, i, &topo));
                let t: toml::Table = toml::from_str(&text).expect("valid TOML");
                assert_eq!(t["name"].as_str(), Some(member_name("pg", i).as_str()));
                let peers = t["peers"].as_array().expect("peers");
                assert_eq!(peers.len(), n as usize);
                for (j, peer) in peers.iter().enumerate() {
                    assert_eq!(peer["raft_id"].as_integer(), Some(j as i64 + 1));
                    assert_eq!(
                        peer["api_url"].as_str(),
                        Some(format!("http://pg-{j}.pg-agents.db.svc:8008").as_str())
                    );
                }
                assert_eq!(
                    t["postgresql"]["host"].as_str(),
                    Some(format!("pg-{i}.pg-agents.db.svc").as_str())
                );
            }
        }
    }

    #[test]
    fn postgresql_is_the_last_table_so_passwords_can_be_appended() {
        let p = BTreeMap::new();
        let mut s = spec(3);
        s.backup = Some(
            serde_json::from_value(serde_json::json!({
                "tool": "pgbackrest", "repository": {"claimName": "backups"},
                "schedules": [{"name": "nightly", "kind": "full", "cron": "0 30 2 * * *"}],
                "retention": {"fullCount": 2}
            }))
            .expect("backup"),
        );
        let topo = Topology::initial(3);
        let mut text = render(&s, &ctx(&p, 0, &topo));
        let last_table = text.lines().rfind(|l| l.starts_with('['));
        assert_eq!(last_table, Some("[postgresql]"));
        text.push_str("superuser_password = \"s\\\"x\"\nreplication_password = \"r\"\n");
        let t: toml::Table = toml::from_str(&text).expect("valid TOML");
        assert_eq!(t["postgresql"]["superuser_password"].as_str(), Some("s\"x"));
        assert_eq!(
            t["backup"]["pgbackrest"]["repo_path"].as_str(),
            Some("/var/lib/rale/backup/pg")
        );
        assert_eq!(
            t["backup"]["schedules"][0]["placement"].as_str(),
            Some("primary")
        );
    }

    #[test]
    fn tls_sync_and_parameters_are_rendered() {
        let mut p = BTreeMap::new();
        p.insert("shared_buffers".to_string(), "1GB".to_string());
        p.insert("log_line_prefix".to_string(), "%m \"x\" ".to_string());
        let mut s = spec(3);
        s.tls = Some(TlsSpec {
            secret_name: "pg-tls".into(),
        });
        s.synchronous = Some(SynchronousSpec {
            mode: SyncMode::Quorum,
            node_count: 2,
            strict: true,
        });
        let topo = Topology::initial(3);
        let t: toml::Table = toml::from_str(&render(&s, &ctx(&p, 1, &topo))).expect("valid TOML");
        assert_eq!(
            t["api"]["url"].as_str(),
            Some("https://pg-1.pg-agents.db.svc:8008")
        );
        assert_eq!(t["api"]["tls_ca"].as_str(), Some("/etc/rale/tls/ca.crt"));
        assert_eq!(
            t["bootstrap"]["synchronous"]["mode"].as_str(),
            Some("quorum")
        );
        assert_eq!(
            t["bootstrap"]["synchronous"]["node_count"].as_integer(),
            Some(2)
        );
        assert_eq!(
            t["bootstrap"]["postgresql_parameters"]["log_line_prefix"].as_str(),
            Some("%m \"x\" ")
        );
        assert!(t.get("backup").is_none());
        assert!(t["consensus"].get("join").is_none());
    }

    #[test]
    fn grown_members_get_fresh_raft_ids_and_join() {
        // Members 0-2 founded with ids 1-3; 3 and 4 once existed with ids 4 and 5 and
        // were removed: the next id is 6, never 4 again.
        let known = BTreeMap::from([(0, 1), (1, 2), (2, 3)]);
        let topo = Topology::grow(5, &known, 6, 3);
        assert_eq!(topo.members, [(0, 1), (1, 2), (2, 3), (3, 6), (4, 7)]);
        assert_eq!(topo.joining, BTreeSet::from([3, 4]));
        // Once recorded, a joined member keeps its id and still joins.
        let known = BTreeMap::from([(0, 1), (1, 2), (2, 3), (3, 6)]);
        let again = Topology::grow(4, &known, 8, 3);
        assert_eq!(again.members, [(0, 1), (1, 2), (2, 3), (3, 6)]);
        assert_eq!(again.joining, BTreeSet::from([3]));
        assert_eq!(
            Topology::grow(3, &BTreeMap::new(), 1, 3),
            Topology::initial(3)
        );
        let p = BTreeMap::new();
        let s = spec(5);
        let t: toml::Table = toml::from_str(&render(&s, &ctx(&p, 4, &topo))).expect("TOML");
        assert_eq!(t["consensus"]["join"].as_bool(), Some(true));
        let ids: Vec<i64> = t["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .filter_map(|p| p["raft_id"].as_integer())
            .collect();
        assert_eq!(ids, [1, 2, 3, 6, 7]);
        let t: toml::Table = toml::from_str(&render(&s, &ctx(&p, 0, &topo))).expect("TOML");
        assert!(t["consensus"].get("join").is_none());
    }
}
