//! A running Raft node: start-up, shutdown, status and the majority rule.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{InitializeError, RaftError};
use openraft::{RaftMetrics, ServerState};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::config::RaftConfig;
use super::db::Db;
use super::log_store::LogStore;
use super::network::{HttpClient, NetworkFactory};
use super::state_machine::StateMachineStore;
use super::types::{Raft, RaftNode};
use crate::state::ClusterState;
use crate::types::NodeId;
use crate::{Error, Result};

/// What a node knows about Raft right now, for status pages and metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftStatus {
    /// This node.
    pub node: NodeId,
    /// This node's Raft id.
    pub raft_id: u64,
    /// Current term.
    pub term: u64,
    /// The leader this node follows (itself when leading), if any.
    pub leader: Option<NodeId>,
    /// Whether this node is the leader.
    pub is_leader: bool,
    /// Index of the last log entry applied to the state machine.
    pub last_applied_index: Option<u64>,
    /// Index of the last log entry stored.
    pub last_log_index: Option<u64>,
    /// Index covered by the latest snapshot.
    pub snapshot_index: Option<u64>,
    /// Index up to which the log was purged (compacted into the snapshot).
    pub purged_index: Option<u64>,
    /// On the leader: how long ago a quorum last acknowledged it.
    pub quorum_ack_age_ms: Option<u64>,
    /// On a follower: how long ago the current leader was last heard from.
    pub leader_contact_age_ms: Option<u64>,
    /// See [`crate::Consensus::has_majority`].
    pub has_majority: bool,
}

/// Shared by every handle on one node.
pub(crate) struct Inner {
    pub(crate) raft: Raft,
    pub(crate) config: RaftConfig,
    pub(crate) client: HttpClient,
    pub(crate) state_rx: watch::Receiver<Arc<ClusterState>>,
    /// When an append or snapshot from a current leader was last accepted.
    leader_contact: Mutex<Option<Instant>>,
    /// When openraft last published metrics (they carry the quorum-ack age as of then).
    metrics_seen: Arc<Mutex<Instant>>,
    watcher: AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// The openraft-backed [`crate::Consensus`]: cheap to clone; every clone is the same node.
///
/// Serve [`super::router`] on the agent's API port so that peers reach it.
#[derive(Clone)]
pub struct RaftConsensus {
    pub(crate) inner: Arc<Inner>,
}

impl RaftConsensus {
    /// Opens the store in `config.data_dir`, starts Raft and, on an initial voter's first
    /// start, initialises the cluster with `config.peers` (a no-op on later starts).
    pub async fn start(config: RaftConfig) -> Result<Self> {
        config.validate()?;
        let db = Db::open(&config.data_dir).await?;
        let (state_tx, state_rx) = watch::channel(Arc::new(ClusterState::default()));
        let sm = StateMachineStore::open(db.clone(), state_tx)
            .await
            .map_err(|e| Error::Consensus(format!("loading the Raft snapshot: {e}")))?;
        let log = LogStore::new(db);
        let client = HttpClient::new(
            config.auth_token.clone(),
            config.rpc_timeout,
            config.tls_ca.as_deref(),
        )?;
        let network = NetworkFactory::new(
            client.clone(),
            config.raft_id,
            config.rpc_timeout,
            config.election_timeout_min,
        );
        let raft = Raft::new(
            config.raft_id,
            Arc::new(config.openraft_config()?),
            network,
            log,
            sm,
        )
        .await
        .map_err(|e| Error::Consensus(format!("starting Raft: {e}")))?;

        let metrics_seen = Arc::new(Mutex::new(Instant::now()));
        let watcher = {
            let mut rx = raft.metrics();
            let seen = metrics_seen.clone();
            tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    if let Ok(mut t) = seen.lock() {
                        *t = Instant::now();
                    }
                }
            })
            .abort_handle()
        };
        let node = Self {
            inner: Arc::new(Inner {
                raft,
                config,
                client,
                state_rx,
                leader_contact: Mutex::new(None),
                metrics_seen,
                watcher,
            }),
        };
        node.initialize().await?;
        Ok(node)
    }

    async fn initialize(&self) -> Result<()> {
        let config = &self.inner.config;
        if !config.is_initial_voter() {
            tracing::info!(node = %config.node, "not an initial voter: waiting to be added");
            return Ok(());
        }
        // A restarted member finds its log: openraft would refuse (and log an error), so
        // ask first. Initialising an initialised node is the normal case, not an error.
        match self.inner.raft.is_initialized().await {
            Ok(true) => {
                tracing::debug!(node = %config.node, "Raft already initialised");
                return Ok(());
            }
            Ok(false) => {}
            Err(e) => return Err(Error::Consensus(format!("reading Raft state: {e}"))),
        }
        let members: BTreeMap<u64, RaftNode> = config
            .peers
            .iter()
            .map(|p| (p.raft_id, RaftNode::from_peer(p)))
            .collect();
        match self.inner.raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(node = %config.node, voters = config.peers.len(), "initialised Raft cluster");
                Ok(())
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                tracing::debug!(node = %config.node, "Raft already initialised");
                Ok(())
            }
            Err(e) => Err(Error::Consensus(format!("initialising Raft: {e}"))),
        }
    }

    /// Stops Raft on this node (the store is closed once its tasks are gone). Later calls
    /// fail with [`Error::Consensus`].
    pub async fn shutdown(&self) -> Result<()> {
        self.inner.watcher.abort();
        self.inner
            .raft
            .shutdown()
            .await
            .map_err(|e| Error::Consensus(format!("stopping Raft: {e}")))
    }

    /// Resolves, with the reason, once the Raft core of this node has stopped for good —
    /// a storage error (a full or failing disk under the store) stops it, and openraft
    /// does not start it again. The agent can then only exit, so that its service manager
    /// starts it afresh once the cause is gone; without this the process would live on,
    /// voting for nothing, until someone noticed.
    pub async fn stopped(&self) -> String {
        let mut rx = self.inner.raft.metrics();
        loop {
            if let Err(e) = &rx.borrow_and_update().running_state {
                return e.to_string();
            }
            if rx.changed().await.is_err() {
                return "the Raft core is gone".into();
            }
        }
    }

    /// This node's name.
    pub fn node(&self) -> &NodeId {
        &self.inner.config.node
    }

    /// This node's configuration.
    pub fn config(&self) -> &RaftConfig {
        &self.inner.config
    }

    /// Waits until some leader is known (or `timeout` passes) and returns its name.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.status().leader {
                return Ok(leader);
            }
            if Instant::now() >= deadline {
                return Err(Error::NoMajority(format!(
                    "no Raft leader known after {} ms",
                    timeout.as_millis()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn metrics(&self) -> RaftMetrics<u64, RaftNode> {
        self.inner.raft.metrics().borrow().clone()
    }

    /// The name of member `raft_id` as the current membership records it.
    pub(crate) fn name_of(metrics: &RaftMetrics<u64, RaftNode>, raft_id: u64) -> Option<NodeId> {
        metrics
            .membership_config
            .membership()
            .get_node(&raft_id)
            .and_then(|n| NodeId::new(n.name.clone()).ok())
    }

    /// Notes that a message from the current leader was accepted (server side).
    pub(crate) fn note_leader_contact(&self) {
        if let Ok(mut t) = self.inner.leader_contact.lock() {
            *t = Some(Instant::now());
        }
    }

    fn leader_contact_age(&self) -> Option<Duration> {
        self.inner
            .leader_contact
            .lock()
            .ok()
            .and_then(|t| t.map(|t| t.elapsed()))
    }

    fn quorum_ack_age(&self, metrics: &RaftMetrics<u64, RaftNode>) -> Option<Duration> {
        let since_publish = self
            .inner
            .metrics_seen
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or(Duration::MAX);
        metrics
            .millis_since_quorum_ack
            .map(|ms| Duration::from_millis(ms).saturating_add(since_publish))
    }

    /// The majority rule (see [`crate::Consensus::has_majority`]), with `W` =
    /// `majority_timeout`:
    /// - the leader: openraft's last quorum acknowledgement (heartbeat or append answered
    ///   by a majority of voters), aged by the time since openraft published it, is younger
    ///   than `W`; a single-voter cluster's leader always qualifies;
    /// - any other node: a leader is known and an append or snapshot from it (as current
    ///   leader: openraft accepted its vote) arrived less than `W` ago;
    /// - a stopped node: never.
    pub(crate) fn majority_from(&self, metrics: &RaftMetrics<u64, RaftNode>) -> bool {
        if metrics.running_state.is_err() {
            return false;
        }
        let window = self.inner.config.majority_timeout;
        let own = self.inner.config.raft_id;
        if metrics.state == ServerState::Leader && metrics.current_leader == Some(own) {
            let voters: Vec<u64> = metrics.membership_config.membership().voter_ids().collect();
            if voters == [own] {
                return true;
            }
            return self.quorum_ack_age(metrics).is_some_and(|age| age < window);
        }
        match metrics.current_leader {
            Some(leader) if leader != own => {
                self.leader_contact_age().is_some_and(|age| age < window)
            }
            _ => false,
        }
    }

    /// The node's Raft status.
    pub fn status(&self) -> RaftStatus {
        let m = self.metrics();
        let own = self.inner.config.raft_id;
        let is_leader = m.state == ServerState::Leader && m.current_leader == Some(own);
        RaftStatus {
            node: self.inner.config.node.clone(),
            raft_id: own,
            term: m.current_term,
            leader: m.current_leader.and_then(|id| Self::name_of(&m, id)),
            is_leader,
            last_applied_index: m.last_applied.map(|l| l.index),
            last_log_index: m.last_log_index,
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            quorum_ack_age_ms: if is_leader {
                self.quorum_ack_age(&m).map(millis)
            } else {
                None
            },
            leader_contact_age_ms: if is_leader {
                None
            } else {
                self.leader_contact_age().map(millis)
            },
            has_majority: self.majority_from(&m),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
