//! A cluster of `RaftConsensus` agents on loopback for the tests of this crate: each
//! agent has its Raft node and its HTTP server; agents can be killed (their server
//! answers 503 and closes connections, as a dead process's sockets would) and restarted
//! from their stores.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rale::NodeId;
use rale::consensus::Peer;
use rale::consensus::raft::{RaftConfig, RaftConsensus, router};
use rale::state::{Command, HistoryKind, Operation};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const TOKEN: &str = "test-cluster-secret";
/// Generous bound for anything that should take about a second.
pub const SETTLE: Duration = Duration::from_secs(15);

pub fn record(reason: &str) -> Command {
    Command {
        op: Operation::Record {
            kind: HistoryKind::Operation,
            node: None,
            actor: "test".into(),
            reason: reason.into(),
        },
        wall_ms: 0,
    }
}

/// One agent: its Raft node and its HTTP server.
pub struct Agent {
    pub config: RaftConfig,
    pub consensus: RaftConsensus,
    pub server: JoinHandle<()>,
    /// Set when killed: the server answers 503 and closes connections (as a dead
    /// process's sockets would), so pooled client connections are not reused.
    pub killed: Arc<AtomicBool>,
    pub alive: bool,
}

impl Agent {
    pub async fn start(config: RaftConfig, listener: TcpListener) -> Agent {
        let consensus = RaftConsensus::start(config.clone())
            .await
            .expect("Raft node starts");
        let killed = Arc::new(AtomicBool::new(false));
        let switch = killed.clone();
        let app = router(consensus.clone()).layer(middleware::from_fn(
            move |req: Request, next: Next| {
                let switch = switch.clone();
                async move {
                    if switch.load(Ordering::SeqCst) {
                        let mut resp: Response =
                            (StatusCode::SERVICE_UNAVAILABLE, "killed").into_response();
                        resp.headers_mut().insert(
                            header::CONNECTION,
                            header::HeaderValue::from_static("close"),
                        );
                        return resp;
                    }
                    next.run(req).await
                }
            },
        ));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Agent {
            config,
            consensus,
            server,
            killed,
            alive: true,
        }
    }

    pub async fn kill(&mut self) {
        if !self.alive {
            return;
        }
        self.alive = false;
        self.killed.store(true, Ordering::SeqCst);
        self.server.abort();
        let _ = self.consensus.shutdown().await;
    }

    /// Restarts the agent from its data directory on its old port.
    pub async fn restart(&mut self) {
        assert!(!self.alive, "restart only a killed agent");
        let addr = self
            .config
            .api_url
            .trim_start_matches("http://")
            .to_string();
        let started = Instant::now();
        let listener = loop {
            match TcpListener::bind(&addr).await {
                Ok(l) => break l,
                Err(e) if started.elapsed() < SETTLE => {
                    eprintln!("rebinding {addr}: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot rebind {addr}: {e}"),
            }
        };
        *self = Agent::start(self.config.clone(), listener).await;
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.killed.store(true, Ordering::SeqCst);
        self.server.abort();
    }
}

/// A cluster of agents on 127.0.0.1 with their stores in one temporary directory.
pub struct Cluster {
    pub _dir: TempDir,
    pub root: PathBuf,
    pub agents: Vec<Agent>,
}

pub fn name(i: u64) -> NodeId {
    NodeId::new(format!("n{i}")).expect("valid name")
}

pub fn config_for(root: &std::path::Path, id: u64, url: &str, peers: Vec<Peer>) -> RaftConfig {
    let mut c = RaftConfig::new(name(id), id, url, root.join(format!("n{id}")), peers);
    c.auth_token = Some(TOKEN.into());
    c
}

pub async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    (listener, format!("http://{addr}"))
}

impl Cluster {
    pub async fn start(n: u64) -> Cluster {
        Cluster::start_with(n, |_| {}).await
    }

    pub async fn start_with(n: u64, tweak: impl Fn(&mut RaftConfig)) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        let mut listeners = Vec::new();
        let mut peers = Vec::new();
        for id in 1..=n {
            let (l, url) = bind().await;
            listeners.push(l);
            peers.push(Peer {
                node: name(id),
                raft_id: id,
                api_url: url,
            });
        }
        let mut agents = Vec::new();
        for (listener, peer) in listeners.into_iter().zip(peers.clone()) {
            let mut config = config_for(&root, peer.raft_id, &peer.api_url, peers.clone());
            tweak(&mut config);
            agents.push(Agent::start(config, listener).await);
        }
        Cluster {
            _dir: dir,
            root,
            agents,
        }
    }

    pub fn agent(&self, node: &NodeId) -> usize {
        self.agents
            .iter()
            .position(|a| &a.config.node == node)
            .expect("known agent")
    }

    /// Waits until every live agent names the same leader; returns its index.
    pub async fn leader(&self) -> usize {
        let started = Instant::now();
        loop {
            let seen: Vec<Option<NodeId>> = self
                .agents
                .iter()
                .filter(|a| a.alive)
                .map(|a| a.consensus.status().leader)
                .collect();
            if let Some(Some(first)) = seen.first()
                && seen.iter().all(|l| l.as_ref() == Some(first))
            {
                let i = self.agent(first);
                if self.agents[i].alive {
                    return i;
                }
            }
            assert!(started.elapsed() < SETTLE, "no agreed leader: {seen:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn followers(&self, leader: usize) -> Vec<usize> {
        (0..self.agents.len())
            .filter(|i| *i != leader && self.agents[*i].alive)
            .collect()
    }
}

pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if check() {
            return started.elapsed();
        }
        assert!(started.elapsed() < SETTLE, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
