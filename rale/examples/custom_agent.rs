//! Agents assembled with the builder from non-default pieces: an in-memory consensus
//! ([`MemConsensus`]) instead of the built-in Raft, in-memory PostgreSQL servers
//! ([`MemPostgres`]) instead of local ones, and hooks of our own that print what each
//! loop decided. Three agents bootstrap a cluster on the host's clocks; then the
//! primary's node "dies" (its agent stops, its server crashes, it drops off consensus)
//! and another agent takes over.
//!
//! ```text
//! cargo run -p rale --example custom_agent --features agent
//! ```
//!
//! CI runs it as a test (`cargo test -p rale --features agent --example custom_agent`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rale::agent::{Agent, AgentHooks, IterationReport, SystemRuntime};
use rale::decide::{DecisionKind, NodeIdentity};
use rale::pg::StopMode;
use rale::pg::memory::{MemPostgres, MemPostgresWorld};
use rale::{Consensus, MemConsensus, NodeId, PostgresControl};

/// Prints every decision that changed something, once.
struct Printer {
    last: Mutex<BTreeMap<NodeId, String>>,
}

impl AgentHooks for Printer {
    fn after_iteration(&self, r: &IterationReport) {
        if matches!(r.decision.kind, DecisionKind::Steady | DecisionKind::Renew) {
            return;
        }
        let line = format!("{:?}: {}", r.decision.kind, r.decision.reason);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.get(&r.identity.node) != Some(&line) {
            println!("  {:<3} {line}", r.identity.node);
            last.insert(r.identity.node.clone(), line);
        }
    }
}

struct Node {
    pg: MemPostgres,
    consensus: MemConsensus,
    task: tokio::task::JoinHandle<()>,
}

/// Waits (bounded) until `f` holds.
async fn until<F: Fn() -> bool>(what: &str, limit: Duration, f: F) -> Result<(), String> {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > limit {
            return Err(format!("{what}: not within {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn primary_of(consensus: &MemConsensus) -> Option<NodeId> {
    consensus.read().await.ok()?.holder().cloned()
}

async fn run() -> Result<(NodeId, NodeId), String> {
    let world = MemPostgresWorld::default();
    let consensus = MemConsensus::new();
    let hooks = Arc::new(Printer {
        last: Mutex::new(BTreeMap::new()),
    });
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let mut nodes = Vec::new();
    for i in 1..=3u16 {
        let name = format!("n{i}");
        let pg = world.server(&name).map_err(|e| e.to_string())?;
        let handle = consensus.handle();
        let identity = NodeIdentity {
            node: NodeId::new(&name).map_err(|e| e.to_string())?,
            api_url: format!("http://127.0.0.1:{}", 8007 + i),
            pg_host: "memory".into(),
            pg_port: 5431 + i,
            tags: Default::default(),
        };
        let agent = Agent::builder(
            identity,
            Arc::new(handle.clone()),
            Arc::new(pg.clone()),
            Arc::new(SystemRuntime),
        )
        .hooks(hooks.clone())
        .build();
        let rx = shutdown.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = agent.run(rx).await {
                eprintln!("agent stopped: {e}");
            }
        });
        nodes.push(Node {
            pg,
            consensus: handle,
            task,
        });
    }
    // Streaming replication and a client writing to the primary, every 20 ms.
    let w = world.clone();
    let c = consensus.clone();
    let traffic = tokio::spawn(async move {
        for _ in 0..100_000u32 {
            if let Some(p) = primary_of(&c).await {
                let _ = w.write(p.as_str(), 8192);
            }
            let _ = w.replicate();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });

    println!("bootstrapping three agents on in-memory consensus and PostgreSQL:");
    let streaming = || {
        let c = consensus.clone();
        async move {
            let s = c.read().await.ok()?;
            let n = s.members.values().filter(|m| m.streaming).count();
            Some((s.holder().cloned()?, n))
        }
    };
    let start = Instant::now();
    let first = loop {
        if let Some((holder, 2)) = streaming().await {
            break holder;
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err("no primary with two streaming replicas within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("{first} is primary, two replicas stream from it");

    let dead = nodes
        .iter()
        .position(|n| n.pg.node() == &first)
        .ok_or("the primary is not one of the nodes")?;
    println!("{first}'s node dies:");
    nodes[dead].task.abort();
    nodes[dead].consensus.set_connected(false);
    nodes[dead]
        .pg
        .stop(StopMode::Immediate)
        .await
        .map_err(|e| e.to_string())?;

    let start = Instant::now();
    let second = loop {
        if let Some(h) = primary_of(&consensus).await
            && h != first
        {
            let pg = nodes
                .iter()
                .find(|n| n.pg.node() == &h)
                .ok_or("unknown holder")?;
            let s = pg.pg.status().await.map_err(|e| e.to_string())?;
            if s.running && !s.in_recovery {
                break h;
            }
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err("no failover within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("{second} took over");
    until("the traffic task is alive", Duration::from_secs(1), || {
        !traffic.is_finished()
    })
    .await?;
    traffic.abort();
    for n in &nodes {
        n.task.abort();
    }
    Ok((first, second))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let (first, second) = run().await?;
    println!("failover from {first} to {second} done");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_from_non_default_pieces_fail_over() {
    let (first, second) = run().await.unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(first, second);
}
