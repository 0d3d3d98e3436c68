//! The conformance suites of `rale::testing` against the implementations this crate
//! ships: `MemConsensus`, `RaftConsensus` (three members on loopback) and `MemPostgres`.
//! (`LocalPostgres` runs the PostgreSQL suite in `tests/tests/local_postgres.rs`, on real
//! PostgreSQL.)
//! Run: `cargo test -p rale --test conformance -- --nocapture`

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::Cluster;
use rale::Consensus;
use rale::pg::memory::MemPostgresWorld;
use rale::testing::consensus::{ConsensusCluster, MemCluster, run_suite};
use rale::testing::postgres;
use tokio::sync::Mutex;

#[tokio::test]
async fn mem_consensus_passes_the_consensus_suite() {
    let report = run_suite(&MemCluster::new(3)).await;
    eprintln!(
        "MemConsensus: passed {:?}, skipped {:?}",
        report.passed, report.skipped
    );
    assert!(report.passed.contains(&"minority_fails_fast"));
}

/// Three `RaftConsensus` agents: isolating one kills the two others (its peers stop
/// answering, as a partition does); restarting kills and starts one from its store.
struct RaftCluster(Mutex<Cluster>, Vec<Arc<dyn Consensus>>);

impl RaftCluster {
    async fn start() -> Self {
        let c = Cluster::start(3).await;
        c.leader().await;
        let handles = handles(&c);
        RaftCluster(Mutex::new(c), handles)
    }
}

fn handles(c: &Cluster) -> Vec<Arc<dyn Consensus>> {
    c.agents
        .iter()
        .map(|a| Arc::new(a.consensus.clone()) as Arc<dyn Consensus>)
        .collect()
}

#[async_trait]
impl ConsensusCluster for RaftCluster {
    fn members(&self) -> Vec<Arc<dyn Consensus>> {
        // After a restart the agent's handle is a new one: read it under the lock.
        match self.0.try_lock() {
            Ok(c) => handles(&c),
            Err(_) => self.1.clone(),
        }
    }

    async fn isolate(&self, i: usize, isolated: bool) -> bool {
        let mut c = self.0.lock().await;
        for j in 0..c.agents.len() {
            if j == i {
                continue;
            }
            if isolated {
                c.agents[j].kill().await;
            } else if !c.agents[j].alive {
                c.agents[j].restart().await;
            }
        }
        true
    }

    async fn restart(&self, i: usize) -> bool {
        let mut c = self.0.lock().await;
        c.agents[i].kill().await;
        c.agents[i].restart().await;
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn raft_consensus_passes_the_consensus_suite() {
    let cluster = RaftCluster::start().await;
    let report = run_suite(&cluster).await;
    eprintln!(
        "RaftConsensus: passed {:?}, skipped {:?}",
        report.passed, report.skipped
    );
    assert!(report.skipped.is_empty(), "{report:?}");
}

#[tokio::test]
async fn mem_postgres_passes_the_postgres_suite() {
    let world = MemPostgresWorld::default();
    postgres::run_suite(postgres::Pair::memory(&world).expect("two servers")).await;
}
