//! The `Consensus` conformance suite against `EtcdConsensus` on a real three-member etcd
//! started on loopback (free ports, a temporary directory, every member killed by PID when
//! the test ends, even on failure). Handle `i` talks to etcd member `i` only, so that
//! isolating handle 0 is stopping etcd members 1 and 2, and restarting handle 1 is
//! killing and restarting etcd member 1. Skipped, with the reason printed, when `etcd`
//! is not installed.
//! Run: `cargo test -p rale --features etcd --test etcd_conformance -- --nocapture`
#![cfg(feature = "etcd")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rale::consensus::etcd::{EtcdConfig, EtcdConsensus};
use rale::consensus::{Consensus, Peer};
use rale::state::{Command, HistoryKind, Operation};
use rale::testing::consensus::{ConsensusCluster, run_suite};
use rale::testing::etcd_server::EtcdServers;
use rale::{Error, NodeId};

fn peers() -> Vec<Peer> {
    (1..=3)
        .map(|i| Peer {
            node: NodeId::new(format!("node{i}")).expect("valid name"),
            raft_id: i,
            api_url: format!("http://127.0.0.1:{}", 18000 + i),
        })
        .collect()
}

fn config(endpoints: Vec<String>, cluster: &str) -> EtcdConfig {
    let mut c = EtcdConfig::new(endpoints, cluster, peers());
    c.request_timeout = Duration::from_secs(2);
    c
}

async fn connect(endpoint: &str, cluster: &str) -> EtcdConsensus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match EtcdConsensus::connect(config(vec![endpoint.to_string()], cluster)).await {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                eprintln!("connecting to {endpoint}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("connecting to {endpoint}: {e}"),
        }
    }
}

struct EtcdCluster {
    servers: Mutex<EtcdServers>,
    handles: Mutex<Vec<Arc<dyn Consensus>>>,
    _dir: tempfile::TempDir,
}

impl EtcdCluster {
    async fn start() -> Option<Self> {
        let Some(binary) = EtcdServers::find_binary() else {
            eprintln!("SKIPPED: no etcd binary (install etcd-server or set RALE_ETCD)");
            return None;
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let servers = EtcdServers::start(&binary, dir.path(), 3).expect("starting etcd");
        servers
            .wait_healthy(Duration::from_secs(60))
            .expect("etcd healthy");
        let mut handles: Vec<Arc<dyn Consensus>> = Vec::new();
        for e in servers.endpoints() {
            handles.push(Arc::new(connect(&e, "conformance").await));
        }
        Some(Self {
            servers: Mutex::new(servers),
            handles: Mutex::new(handles),
            _dir: dir,
        })
    }

    fn endpoint(&self, i: usize) -> String {
        self.servers.lock().expect("lock").endpoints()[i].clone()
    }
}

#[async_trait]
impl ConsensusCluster for EtcdCluster {
    fn members(&self) -> Vec<Arc<dyn Consensus>> {
        self.handles.lock().expect("lock").clone()
    }

    async fn isolate(&self, i: usize, isolated: bool) -> bool {
        let mut s = self.servers.lock().expect("lock");
        for j in 0..s.members.len() {
            if j == i {
                continue;
            }
            if isolated {
                s.stop_member(j);
            } else {
                s.start_member(j).expect("restarting an etcd member");
            }
        }
        true
    }

    async fn restart(&self, i: usize) -> bool {
        {
            let mut s = self.servers.lock().expect("lock");
            s.stop_member(i);
            s.start_member(i).expect("restarting an etcd member");
        }
        let fresh: Arc<dyn Consensus> = Arc::new(connect(&self.endpoint(i), "conformance").await);
        self.handles.lock().expect("lock")[i] = fresh;
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_consensus_passes_the_consensus_suite() {
    let Some(cluster) = EtcdCluster::start().await else {
        return;
    };
    let t0 = Instant::now();
    let report = run_suite(&cluster).await;
    eprintln!(
        "EtcdConsensus: passed {:?}, skipped {:?} in {:.1} s",
        report.passed,
        report.skipped,
        t0.elapsed().as_secs_f64()
    );
    assert!(report.skipped.is_empty(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_identity_history_and_unreachable() {
    let Some(cluster) = EtcdCluster::start().await else {
        return;
    };
    let endpoints = cluster.servers.lock().expect("lock").endpoints();
    // Another cluster's name under the same prefix is refused, naming both.
    let mut other = config(endpoints.clone(), "another");
    other.prefix = rale::consensus::etcd::default_prefix("conformance");
    match EtcdConsensus::connect(other).await {
        Err(Error::IdentityMismatch {
            expected, found, ..
        }) => {
            assert!(expected.contains("another") && found.contains("conformance"));
        }
        other => panic!("expected an identity mismatch, got {other:?}"),
    }
    // Another database system identifier is refused too.
    let first = cluster.members()[0].clone();
    let claim = |op| Command { op, wall_ms: 1 };
    let node = NodeId::new("node1").expect("name");
    assert!(
        first
            .propose(claim(Operation::ClaimBootstrap { node: node.clone() }))
            .await
            .expect("claim")
            .is_applied()
    );
    assert!(
        first
            .propose(claim(Operation::CompleteBootstrap {
                node: node.clone(),
                system_id: 42
            }))
            .await
            .expect("complete")
            .is_applied()
    );
    let mut wrong = config(endpoints.clone(), "conformance");
    wrong.system_id = Some(43);
    match EtcdConsensus::connect(wrong).await {
        Err(Error::IdentityMismatch {
            expected, found, ..
        }) => {
            assert!(
                expected.contains("43") && found.contains("42"),
                "{expected} / {found}"
            );
        }
        other => panic!("expected a system identifier mismatch, got {other:?}"),
    }
    let mut right = config(endpoints.clone(), "conformance");
    right.system_id = Some(42);
    assert!(EtcdConsensus::connect(right).await.is_ok());
    // History entries are mirrored one key each.
    for k in 0..3 {
        first
            .propose(Command {
                op: Operation::Record {
                    kind: HistoryKind::Operation,
                    node: None,
                    actor: "test".into(),
                    reason: format!("entry {k}"),
                },
                wall_ms: 1,
            })
            .await
            .expect("record");
    }
    let state = first.read().await.expect("read");
    assert!(state.history.len() >= 3);
    let mut raw = etcd_client::Client::connect(&endpoints, None)
        .await
        .expect("a plain etcd client");
    let keys = raw
        .get(
            "/rale/conformance/",
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_keys_only(),
            ),
        )
        .await
        .expect("listing the prefix");
    let names: Vec<String> = keys
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect();
    for k in ["cluster", "state", "members"] {
        assert!(
            names.contains(&format!("/rale/conformance/{k}")),
            "{names:?}"
        );
    }
    let history = names.iter().filter(|n| n.contains("/history/")).count();
    assert_eq!(history, state.history.len(), "{names:?}");
    // Unreachable endpoints: a bounded NoMajority, not a hang.
    let t = Instant::now();
    let dead =
        EtcdConsensus::connect(config(vec!["http://127.0.0.1:1".into()], "conformance")).await;
    assert!(
        matches!(dead, Err(Error::NoMajority(_))),
        "unreachable etcd: {dead:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

/// etcd with authentication on: a wrong password is refused with `AccessDenied` naming
/// the endpoint; the right one connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_wrong_credentials_are_named() {
    let Some(binary) = EtcdServers::find_binary() else {
        eprintln!("SKIPPED: no etcd binary (install etcd-server or set RALE_ETCD)");
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let servers = EtcdServers::start(&binary, dir.path(), 1).expect("starting etcd");
    servers
        .wait_healthy(Duration::from_secs(60))
        .expect("etcd healthy");
    let endpoints = servers.endpoints();
    let mut admin = etcd_client::Client::connect(&endpoints, None)
        .await
        .expect("a plain etcd client");
    admin.user_add("root", "rootpw", None).await.expect("root");
    admin.user_grant_role("root", "root").await.expect("role");
    admin.auth_enable().await.expect("auth on");
    let mut wrong = config(endpoints.clone(), "auth");
    wrong.user = Some("root".into());
    wrong.password = Some("not the password".into());
    match EtcdConsensus::connect(wrong).await {
        Err(e @ Error::AccessDenied { .. }) => {
            let text = e.to_string();
            eprintln!("wrong password: {text}");
            assert!(text.contains(&endpoints[0]), "{text}");
        }
        other => panic!("expected AccessDenied, got {other:?}"),
    }
    let mut right = config(endpoints.clone(), "auth");
    right.user = Some("root".into());
    right.password = Some("rootpw".into());
    let c = EtcdConsensus::connect(right)
        .await
        .expect("the right password");
    assert!(c.has_majority());
}
