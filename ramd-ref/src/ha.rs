//! ramd's side of the agent: the HA loop itself is [`rale::agent`]; this module builds it
//! from the daemon's pieces and turns its iterations into the [`NodeSnapshot`] the REST
//! API serves and the callbacks users configured.

use std::sync::{Arc, Mutex};

use rale::agent::{Agent, AgentHooks, IterationReport, SystemRuntime};
use rale::decide::NodeIdentity;
use rale::state::ClusterState;
use rale::status::{DataDirState, PgStatus};
use rale::{Consensus, Millis, PostgresControl};
use tokio::sync::watch;

use crate::callbacks::{Callbacks, Transitions};
use crate::snapshot::NodeSnapshot;

pub use rale::agent::{FenceDeadline, action_name};

/// Reads the node's monotonic clock (`CLOCK_BOOTTIME`: keeps counting through suspend and
/// across agent restarts, unlike `Instant`'s `CLOCK_MONOTONIC`).
pub fn monotonic_now() -> Millis {
    SystemRuntime::monotonic_now()
}

/// Wall-clock Unix milliseconds (history stamps and schedules only).
pub fn wall_ms() -> u64 {
    SystemRuntime::unix_ms()
}

/// An initial snapshot for `identity` (before the first iteration).
pub fn initial_snapshot(identity: &NodeIdentity) -> NodeSnapshot {
    NodeSnapshot {
        node: identity.node.clone(),
        api_url: identity.api_url.clone(),
        pg_host: identity.pg_host.clone(),
        pg_port: identity.pg_port,
        tags: identity.tags.clone(),
        pg: PgStatus::stopped(DataDirState::Empty),
        cluster: Arc::new(ClusterState::default()),
        consensus_ok: false,
        lease_epoch: None,
        fence_open: false,
        loop_last_unix_ms: 0,
        loop_duration_ms: 0,
        last_decision: "starting".into(),
        consensus_term: 0,
        consensus_leader: None,
        started_unix_ms: wall_ms(),
    }
}

/// The daemon's [`AgentHooks`]: publishes every iteration as a [`NodeSnapshot`] and runs
/// the user callbacks on the PostgreSQL transitions the loop observes.
pub struct DaemonHooks {
    snapshot: watch::Sender<Arc<NodeSnapshot>>,
    callbacks: Option<Callbacks>,
    transitions: Mutex<Transitions>,
    started_unix_ms: u64,
}

impl DaemonHooks {
    /// Hooks publishing to `snapshot` and firing `callbacks`.
    pub fn new(snapshot: watch::Sender<Arc<NodeSnapshot>>, callbacks: Option<Callbacks>) -> Self {
        Self {
            snapshot,
            callbacks,
            transitions: Mutex::new(Transitions::default()),
            started_unix_ms: wall_ms(),
        }
    }
}

impl AgentHooks for DaemonHooks {
    fn observed(&self, pg: &PgStatus) {
        let events = self
            .transitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(pg.running, pg.role());
        if let Some(cb) = &self.callbacks {
            for (event, role) in events {
                cb.fire(event, role);
            }
        }
    }

    fn after_iteration(&self, r: &IterationReport) {
        let id = &r.identity;
        let snap = NodeSnapshot {
            node: id.node.clone(),
            api_url: id.api_url.clone(),
            pg_host: id.pg_host.clone(),
            pg_port: id.pg_port,
            tags: id.tags.clone(),
            pg: r.pg.clone(),
            cluster: r
                .cluster
                .clone()
                .unwrap_or_else(|| self.snapshot.borrow().cluster.clone()),
            consensus_ok: r.cluster.is_some(),
            lease_epoch: r.lease_epoch,
            fence_open: r.fence_open,
            loop_last_unix_ms: r.wall_ms,
            loop_duration_ms: r.duration_ms,
            last_decision: format!("{:?}: {}", r.decision.kind, r.decision.reason),
            consensus_term: r.membership.as_ref().map(|m| m.term).unwrap_or(0),
            consensus_leader: r.membership.as_ref().and_then(|m| m.leader.clone()),
            started_unix_ms: self.started_unix_ms,
        };
        self.snapshot.send_replace(Arc::new(snap));
    }
}

/// The daemon's agent: the [`rale::agent::Agent`] with the decision core, the host's
/// clocks, identity reloads from `identity_rx`, the shared `fence` and `pg_lock`, the
/// parameter record in `parameter_record`, [`DaemonHooks`], and failsafe mode's gate and client.
#[allow(clippy::too_many_arguments)]
pub fn agent(
    identity_rx: watch::Receiver<NodeIdentity>,
    pg: Arc<dyn PostgresControl>,
    consensus: Arc<dyn Consensus>,
    snapshot: watch::Sender<Arc<NodeSnapshot>>,
    fence: FenceDeadline,
    pg_lock: Arc<tokio::sync::Mutex<()>>,
    callbacks: Option<Callbacks>,
    parameter_record: std::path::PathBuf,
    failsafe: (
        Arc<rale::agent::FailsafeGate>,
        Arc<dyn rale::agent::FailsafeClient>,
    ),
) -> Agent {
    let identity = identity_rx.borrow().clone();
    Agent::builder(identity, consensus, pg, Arc::new(SystemRuntime))
        .identity_updates(identity_rx)
        .hooks(Arc::new(DaemonHooks::new(snapshot, callbacks)))
        .fence(fence)
        .pg_lock(pg_lock)
        .parameter_record(parameter_record)
        .failsafe_gate(failsafe.0)
        .failsafe_client(failsafe.1)
        .build()
}
