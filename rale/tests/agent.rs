//! The agent runtime (`rale::agent`) on in-memory consensus and PostgreSQL: three agents
//! stepped by hand on a manual clock bootstrap one primary and two streaming standbys,
//! fail over when the primary's node dies, and a custom policy replaces the decider;
//! one agent runs its own loop on tokio's paused clock and shuts down as a primary
//! should (PostgreSQL stopped, lease released).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rale::agent::{Agent, BoxFuture, Runtime};
use rale::decide::{Decision, DecisionKind, NodeIdentity, Observation, Policy};
use rale::pg::memory::{MemPostgres, MemPostgresWorld};
use rale::{Consensus, MemConsensus, Millis, NodeId, PostgresControl};

/// A clock the test moves; sleeping never ends (the agents are stepped by hand, and the
/// in-memory backends answer at once, so no timeout is ever needed).
#[derive(Default)]
struct ManualClock(AtomicU64);

impl ManualClock {
    fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Runtime for ManualClock {
    fn now(&self) -> Millis {
        Millis(self.0.load(Ordering::SeqCst))
    }
    fn wall_ms(&self) -> u64 {
        1_800_000_000_000 + self.0.load(Ordering::SeqCst)
    }
    fn sleep(&self, _: Duration) -> BoxFuture<'static, ()> {
        Box::pin(std::future::pending())
    }
}

fn identity(name: &str, port: u16) -> NodeIdentity {
    NodeIdentity {
        node: NodeId::new(name).expect("valid name"),
        api_url: format!("http://127.0.0.1:{}", port + 1000),
        pg_host: "memory".into(),
        pg_port: port,
        tags: Default::default(),
    }
}

struct Node {
    agent: Agent,
    pg: MemPostgres,
    consensus: MemConsensus,
}

fn cluster(n: usize, clock: &Arc<ManualClock>) -> (Vec<Node>, MemPostgresWorld, MemConsensus) {
    let world = MemPostgresWorld::default();
    let consensus = MemConsensus::new();
    let nodes = (0..n)
        .map(|i| {
            let name = format!("n{}", i + 1);
            let pg = world.server(&name).expect("valid name");
            let handle = consensus.handle();
            let agent = Agent::builder(
                identity(&name, 5432 + i as u16),
                Arc::new(handle.clone()),
                Arc::new(pg.clone()),
                clock.clone(),
            )
            .build();
            Node {
                agent,
                pg,
                consensus: handle,
            }
        })
        .collect();
    (nodes, world, consensus)
}

async fn round(nodes: &mut [Node], alive: &[bool], world: &MemPostgresWorld, clock: &ManualClock) {
    for (node, up) in nodes.iter_mut().zip(alive) {
        if *up {
            node.agent.iterate().await;
        }
    }
    world.replicate().expect("replication step");
    clock.advance(100);
}

async fn primaries(nodes: &[Node]) -> Vec<String> {
    let mut out = Vec::new();
    for n in nodes {
        let s = n.pg.status().await.expect("status");
        if s.running && !s.in_recovery {
            out.push(n.pg.node().to_string());
        }
    }
    out
}

#[tokio::test]
async fn three_agents_bootstrap_and_fail_over() {
    let clock = Arc::new(ManualClock::default());
    clock.advance(1_000);
    let (mut nodes, world, consensus) = cluster(3, &clock);
    let mut alive = [true, true, true];
    let mut settled = false;
    for _ in 0..600 {
        round(&mut nodes, &alive, &world, &clock).await;
        let state = consensus.read().await.expect("read");
        let streaming = nodes
            .iter()
            .filter(|n| state.members.get(n.pg.node()).is_some_and(|m| m.streaming))
            .count();
        if state.holder().is_some() && streaming == 2 {
            settled = true;
            break;
        }
    }
    assert!(settled, "no primary with two streaming standbys after 60 s");
    let state = consensus.read().await.expect("read");
    let first = state.holder().cloned().expect("a primary");
    assert_eq!(primaries(&nodes).await, vec![first.to_string()]);

    // The primary's node dies: its agent stops, its server crashes.
    let dead = nodes
        .iter()
        .position(|n| n.pg.node() == &first)
        .expect("the primary is one of the nodes");
    alive[dead] = false;
    nodes[dead].consensus.set_connected(false);
    nodes[dead]
        .pg
        .stop(rale::pg::StopMode::Immediate)
        .await
        .expect("crash the primary");
    let mut second = None;
    for _ in 0..600 {
        round(&mut nodes, &alive, &world, &clock).await;
        let state = consensus.read().await.expect("read");
        if let Some(h) = state.holder()
            && h != &first
            && primaries(&nodes).await == vec![h.to_string()]
        {
            second = Some(h.clone());
            break;
        }
    }
    let second = second.expect("a standby took over within 60 s");
    assert_ne!(second, first);
}

/// A policy that only waits: the agent must do nothing it was not told to.
struct Idle;

impl Policy for Idle {
    fn step(&mut self, _: &Observation<'_>) -> Decision {
        Decision::none(DecisionKind::Steady, "a test policy that waits")
    }
}

#[tokio::test]
async fn the_agent_executes_only_what_its_policy_decides() {
    let clock = Arc::new(ManualClock::default());
    let world = MemPostgresWorld::default();
    let consensus = MemConsensus::new();
    let pg = world.server("n1").expect("valid name");
    let mut agent = Agent::builder(
        identity("n1", 5432),
        Arc::new(consensus.clone()),
        Arc::new(pg.clone()),
        clock.clone(),
    )
    .policy(Box::new(Idle))
    .build();
    for _ in 0..50 {
        agent.iterate().await;
        clock.advance(100);
    }
    let s = pg.status().await.expect("status");
    assert!(!s.running, "the idle policy started PostgreSQL");
    let state = consensus.read().await.expect("read");
    assert!(state.holder().is_none());
    assert!(
        state.members.is_empty(),
        "the idle policy published a member"
    );
}

/// Tokio's clock (paused in the test, so it runs as fast as the agent can).
struct TokioClock(tokio::time::Instant);

impl Runtime for TokioClock {
    fn now(&self) -> Millis {
        Millis(1 + u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
    fn wall_ms(&self) -> u64 {
        1_800_000_000_000 + self.now().0
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

#[tokio::test(start_paused = true)]
async fn a_running_primary_shuts_down_and_releases_its_lease() {
    let world = MemPostgresWorld::default();
    let consensus = MemConsensus::new();
    let pg = world.server("n1").expect("valid name");
    let agent = Agent::builder(
        identity("n1", 5432),
        Arc::new(consensus.clone()),
        Arc::new(pg.clone()),
        Arc::new(TokioClock(tokio::time::Instant::now())),
    )
    .build();
    let fence = agent.fence();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(agent.run(shutdown));
    let mut primary = false;
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let state = consensus.read().await.expect("read");
        let s = pg.status().await.expect("status");
        if state.holder().is_some() && s.running && !s.in_recovery {
            primary = true;
            break;
        }
    }
    assert!(primary, "a single node did not become primary within 60 s");
    stop.send(true).expect("the agent listens");
    let ended = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the agent stops within 60 s")
        .expect("the agent did not panic");
    assert!(ended.is_ok(), "{ended:?}");
    let s = pg.status().await.expect("status");
    assert!(!s.running, "a primary's agent stops PostgreSQL on shutdown");
    let state = consensus.read().await.expect("read");
    assert!(
        state.holder().is_none(),
        "the lease is released on shutdown"
    );
    assert!(!fence.is_open(Millis(u64::MAX / 2)));
}
