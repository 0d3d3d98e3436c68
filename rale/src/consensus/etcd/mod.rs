//! [`EtcdConsensus`]: the [`crate::Consensus`] of agents that keep their cluster state in
//! an existing etcd v3 cluster (feature `etcd`) instead of the embedded Raft.
//!
//! # Key layout
//! Everything lives under [`EtcdConfig::prefix`] (default `/rale/<cluster>/`):
//!
//! | key | value |
//! | --- | --- |
//! | `<prefix>cluster` | JSON `{"cluster": "<name>"}`: the identity, written once by the first agent |
//! | `<prefix>state` | JSON [`ClusterState`]: the whole replicated state (lease, members' statuses, configuration, the last [`crate::state::HISTORY_LEN_MAX`] history entries) |
//! | `<prefix>members` | JSON list of [`Peer`]s: the agents of the cluster ([`crate::Consensus::membership`]) |
//! | `<prefix>history/<seq>` | JSON [`crate::state::HistoryEntry`], `seq` zero-padded to 20 digits; the same entries as in `state`, one key each, for `etcdctl get --prefix` and audit tools; pruned to the last [`crate::state::HISTORY_LEN_MAX`] |
//!
//! # Semantics
//! - **Propose** is a compare-and-set on the `state` key's `mod_revision`: read the state
//!   (linearizable), apply the [`crate::state::Command`] with
//!   [`ClusterState::apply`], then one transaction *if `mod_revision(state)` is still
//!   the one read, put the new state (and its new history keys)*. A conflict (another
//!   agent wrote first) re-reads and re-applies, at most
//!   [`EtcdConfig::propose_attempts_max`] times. A command that its condition rejects is
//!   not written: the linearizable read it was judged on is its linearization point, so
//!   `revision` advances only for applied commands (the Raft backend also counts
//!   rejected log entries; nothing depends on the difference).
//! - **Read** is etcd's default, linearizable range read (confirmed by etcd's quorum).
//! - **Subscribe** is fed by a watch on the `state` key from the last revision seen; when
//!   the watch breaks (a member restarts, the connection drops, a compaction passed) the
//!   agent re-reads linearizably and watches again. A probe re-reads every
//!   [`EtcdConfig::probe_interval`] as well, so a lost event is never missed for longer.
//!   Published states only move forward (by [`ClusterState::revision`]).
//! - **Majority**: [`crate::Consensus::has_majority`] is `true` only while a linearizable
//!   request (read or transaction) succeeded less than [`EtcdConfig::majority_window`]
//!   (default 3 s) ago. Requests carry etcd's *require leader* flag, so an etcd member
//!   cut off from its quorum refuses at once instead of waiting.
//! - **Bounded**: every request is bounded by [`EtcdConfig::request_timeout`] (default
//!   2 s); an unreachable or leaderless etcd gives [`Error::NoMajority`], never a hang.
//!   A transaction that timed out may still have been applied: callers re-read before
//!   retrying, as with Raft.
//! - **Lease and fencing** are unchanged: the lease in [`ClusterState`] keeps its epochs
//!   and its holder's clock, observers time it on their own monotonic clocks, and a
//!   primary that cannot renew fences itself (`docs/lease.md`). etcd's own leases are not
//!   used for it.
//! - **Membership** ([`crate::Consensus::add_member`], `remove_member`) edits the
//!   `members` key (compare-and-set too): the list of agents, whose API URLs the REST API
//!   and the operators' tools use. It does not touch etcd's own membership, which the
//!   etcd operator manages with `etcdctl member`.
//! - **Identity**: on connection, the `cluster` key is created if absent; if it names
//!   another cluster, or the stored state records another database system identifier
//!   than [`EtcdConfig::system_id`], the connection is refused with
//!   [`Error::IdentityMismatch`] naming both.
//! - **Errors**: credentials or certificates that etcd refuses give
//!   [`Error::AccessDenied`] with the endpoints and etcd's cause.
//!
//! ```no_run
//! use rale::consensus::etcd::{EtcdConfig, EtcdConsensus};
//! use rale::consensus::Peer;
//! use rale::{Consensus, NodeId};
//!
//! # async fn run() -> rale::Result<()> {
//! let peers: Vec<Peer> = (1..=3)
//!     .map(|i| Peer {
//!         node: NodeId::new(format!("node{i}")).expect("valid name"),
//!         raft_id: i,
//!         api_url: format!("http://10.0.0.{i}:8008"),
//!     })
//!     .collect();
//! let endpoints = (1..=3).map(|i| format!("http://10.0.1.{i}:2379")).collect();
//! let mut config = EtcdConfig::new(endpoints, "main", peers);
//! config.user = Some("rale".into());
//! config.password = Some("secret".into());
//! let consensus = EtcdConsensus::connect(config).await?;
//! println!("revision {}", consensus.read().await?.revision);
//! # Ok(())
//! # }
//! ```

mod config;
mod store;

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use etcd_client::{Client, Compare, CompareOp, GetResponse, Txn, TxnOp, WatchOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub use config::{EtcdConfig, EtcdTls, default_prefix};

use crate::consensus::{Consensus, Membership, Peer};
use crate::state::{ClusterState, Command, Outcome};
use crate::types::NodeId;
use crate::{Error, Result};

/// The value of `<prefix>cluster`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Identity {
    cluster: String,
}

/// What every handle and background task shares.
struct Shared {
    client: Client,
    config: EtcdConfig,
    state_key: String,
    members_key: String,
    identity_key: String,
    history_dir: String,
    tx: watch::Sender<Arc<ClusterState>>,
    /// When a linearizable request last succeeded.
    last_ok: Mutex<Option<Instant>>,
    /// Highest `mod_revision` of the state key published so far (watch restarts above).
    seen_mod_revision: Mutex<i64>,
}

/// Aborts the background tasks when the last handle goes.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// A [`Consensus`] on an etcd v3 cluster (see the module documentation). Cheap to clone;
/// the background watch and probe stop when the last clone is dropped.
#[derive(Clone)]
pub struct EtcdConsensus {
    shared: Arc<Shared>,
    _tasks: Arc<Tasks>,
}

impl std::fmt::Debug for EtcdConsensus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdConsensus")
            .field("endpoints", &self.shared.config.endpoints)
            .field("prefix", &self.shared.config.prefix)
            .finish_non_exhaustive()
    }
}

impl EtcdConsensus {
    /// Validates `config`, connects (bounded by [`EtcdConfig::request_timeout`]), checks
    /// the cluster identity (creating it, and the member list, on first use), reads the
    /// state and starts the watch and the probe.
    ///
    /// Errors: [`Error::InvalidConfig`] or [`Error::Io`] (a TLS file) before any
    /// connection; [`Error::NoMajority`] when etcd cannot be reached or has no quorum —
    /// callers retry; [`Error::AccessDenied`] for refused credentials or certificates;
    /// [`Error::IdentityMismatch`] for another cluster under the prefix.
    pub async fn connect(config: EtcdConfig) -> Result<Self> {
        config.validate()?;
        let client = store::connect(&config).await?;
        let initial = ClusterState::default();
        let (tx, _rx) = watch::channel(Arc::new(initial));
        let shared = Arc::new(Shared {
            state_key: config.key("state"),
            members_key: config.key("members"),
            identity_key: config.key("cluster"),
            history_dir: config.key("history/"),
            client,
            config,
            tx,
            last_ok: Mutex::new(None),
            seen_mod_revision: Mutex::new(0),
        });
        shared.ensure_identity().await?;
        let (state, _) = shared.read_state().await?;
        shared.check_system_id(&state)?;
        info!(
            endpoints = %shared.config.endpoints_text(),
            prefix = %shared.config.prefix,
            revision = state.revision,
            "connected to etcd"
        );
        let weak = Arc::downgrade(&shared);
        let tasks = Tasks(vec![
            tokio::spawn(watch_loop(weak.clone())),
            tokio::spawn(probe_loop(weak)),
        ]);
        Ok(Self {
            shared,
            _tasks: Arc::new(tasks),
        })
    }

    /// The configuration this handle was made with.
    pub fn config(&self) -> &EtcdConfig {
        &self.shared.config
    }
}

impl Shared {
    /// Runs one etcd request under [`EtcdConfig::request_timeout`]; a success marks the
    /// majority as recently confirmed (every request we send is linearizable).
    async fn call<T>(
        &self,
        what: &'static str,
        f: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.config.request_timeout, f).await {
            Err(_) => Err(Error::NoMajority(format!(
                "etcd {what} at {}: no answer within {} ms",
                self.config.endpoints_text(),
                self.config.request_timeout.as_millis()
            ))),
            Ok(Err(e)) => Err(store::map_error(&self.config, what, e)),
            Ok(Ok(v)) => {
                if let Ok(mut t) = self.last_ok.lock() {
                    *t = Some(Instant::now());
                }
                Ok(v)
            }
        }
    }

    async fn get(&self, what: &'static str, key: &str) -> Result<GetResponse> {
        let mut kv = self.client.kv_client();
        self.call(what, kv.get(key, None)).await
    }

    /// Creates the identity and member keys when absent; refuses another cluster's.
    async fn ensure_identity(&self) -> Result<()> {
        let identity = Identity {
            cluster: self.config.cluster.clone(),
        };
        let value = store::to_json("identity", &identity)?;
        let members = store::to_json("members", &self.config.peers)?;
        let mut kv = self.client.kv_client();
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.identity_key.as_str(),
                CompareOp::Equal,
                0,
            )])
            .and_then([
                TxnOp::put(self.identity_key.as_str(), value, None),
                TxnOp::put(self.members_key.as_str(), members, None),
            ]);
        let created = self.call("identity check", kv.txn(txn)).await?.succeeded();
        if created {
            info!(
                prefix = %self.config.prefix,
                cluster = %self.config.cluster,
                "etcd: created the cluster identity and member list"
            );
            return Ok(());
        }
        let resp = self.get("identity check", &self.identity_key).await?;
        let found = match resp.kvs().first() {
            Some(kv) => serde_json::from_slice::<Identity>(kv.value())
                .map(|i| format!("cluster {:?}", i.cluster))
                .unwrap_or_else(|_| {
                    format!(
                        "a value that is no RALE identity ({:?})",
                        String::from_utf8_lossy(kv.value())
                    )
                }),
            None => "no identity (deleted meanwhile)".into(),
        };
        let expected = format!("cluster {:?}", self.config.cluster);
        if found != expected {
            return Err(Error::IdentityMismatch {
                location: format!(
                    "etcd {} key {}",
                    self.config.endpoints_text(),
                    self.identity_key
                ),
                expected,
                found,
            });
        }
        Ok(())
    }

    fn check_system_id(&self, state: &ClusterState) -> Result<()> {
        let stored = state.bootstrap.as_ref().and_then(|b| b.system_id);
        match (self.config.system_id, stored) {
            (Some(mine), Some(theirs)) if mine != theirs => Err(Error::IdentityMismatch {
                location: format!(
                    "etcd {} key {}",
                    self.config.endpoints_text(),
                    self.state_key
                ),
                expected: format!("database system identifier {mine} (this node's data)"),
                found: format!("database system identifier {theirs}"),
            }),
            _ => Ok(()),
        }
    }

    /// Linearizable read of the state and its `mod_revision` (0: never written); the
    /// state is published to subscribers when newer.
    async fn read_state(&self) -> Result<(ClusterState, i64)> {
        let resp = self.get("read", &self.state_key).await?;
        let (state, mod_rev) = match resp.kvs().first() {
            Some(kv) => (
                store::from_json::<ClusterState>(&self.state_key, kv.value())?,
                kv.mod_revision(),
            ),
            None => (ClusterState::default(), 0),
        };
        self.publish(&state, mod_rev);
        Ok((state, mod_rev))
    }

    /// Publishes `state` if it is newer than what subscribers hold.
    fn publish(&self, state: &ClusterState, mod_rev: i64) {
        if let Ok(mut seen) = self.seen_mod_revision.lock()
            && mod_rev > *seen
        {
            *seen = mod_rev;
        }
        self.tx.send_if_modified(|cur| {
            if state.revision > cur.revision {
                *cur = Arc::new(state.clone());
                true
            } else {
                false
            }
        });
    }

    fn seen(&self) -> i64 {
        self.seen_mod_revision.lock().map(|s| *s).unwrap_or(0)
    }

    async fn propose(&self, cmd: &Command) -> Result<Outcome> {
        for attempt in 1..=self.config.propose_attempts_max {
            let (mut state, mod_rev) = self.read_state().await?;
            let before_seq = state.history_seq;
            let outcome = state.apply(cmd);
            if !outcome.is_applied() {
                return Ok(outcome);
            }
            let mut ops = vec![TxnOp::put(
                self.state_key.as_str(),
                store::to_json("state", &state)?,
                None,
            )];
            for h in state.history.iter().filter(|h| h.seq > before_seq) {
                ops.push(TxnOp::put(
                    store::history_key(&self.history_dir, h.seq),
                    store::to_json("history entry", h)?,
                    None,
                ));
            }
            let newest = state.history_seq;
            if newest > before_seq
                && let Some(keep_from) =
                    (newest + 1).checked_sub(crate::state::HISTORY_LEN_MAX as u64)
                && keep_from > 0
            {
                ops.push(TxnOp::delete(
                    store::history_key(&self.history_dir, 0),
                    Some(
                        etcd_client::DeleteOptions::new()
                            .with_range(store::history_key(&self.history_dir, keep_from)),
                    ),
                ));
            }
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    self.state_key.as_str(),
                    CompareOp::Equal,
                    mod_rev,
                )])
                .and_then(ops);
            let mut kv = self.client.kv_client();
            let resp = self.call("propose", kv.txn(txn)).await?;
            if resp.succeeded() {
                let rev = resp.header().map(|h| h.revision()).unwrap_or(mod_rev + 1);
                self.publish(&state, rev);
                return Ok(outcome);
            }
            debug!(
                attempt,
                op = cmd.op.name(),
                "etcd: state changed since read, applying again"
            );
            tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
        }
        Err(Error::Consensus(format!(
            "etcd {}: {} compare-and-set attempts of {} lost to concurrent writers",
            self.config.endpoints_text(),
            self.config.propose_attempts_max,
            cmd.op.name()
        )))
    }

    async fn read_members(&self) -> Result<(Vec<Peer>, i64, u64)> {
        let resp = self.get("membership", &self.members_key).await?;
        let term = resp.header().map(|h| h.raft_term()).unwrap_or(0);
        match resp.kvs().first() {
            Some(kv) => Ok((
                store::from_json(&self.members_key, kv.value())?,
                kv.mod_revision(),
                term,
            )),
            None => Ok((Vec::new(), 0, term)),
        }
    }

    /// Compare-and-set of the member list with `change`, retried on conflict.
    async fn change_members(
        &self,
        what: &'static str,
        change: impl Fn(&mut Vec<Peer>) -> Result<()>,
    ) -> Result<()> {
        for attempt in 1..=self.config.propose_attempts_max {
            let (mut peers, mod_rev, _) = self.read_members().await?;
            change(&mut peers)?;
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    self.members_key.as_str(),
                    CompareOp::Equal,
                    mod_rev,
                )])
                .and_then([TxnOp::put(
                    self.members_key.as_str(),
                    store::to_json("members", &peers)?,
                    None,
                )]);
            let mut kv = self.client.kv_client();
            if self.call(what, kv.txn(txn)).await?.succeeded() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
        }
        Err(Error::Consensus(format!(
            "etcd: {what}: the member list kept changing under us"
        )))
    }

    fn has_majority(&self) -> bool {
        self.last_ok
            .lock()
            .ok()
            .and_then(|t| *t)
            .is_some_and(|t| t.elapsed() < self.config.majority_window)
    }
}

#[async_trait]
impl Consensus for EtcdConsensus {
    async fn read(&self) -> Result<Arc<ClusterState>> {
        Ok(Arc::new(self.shared.read_state().await?.0))
    }

    async fn propose(&self, cmd: Command) -> Result<Outcome> {
        self.shared.propose(&cmd).await
    }

    fn subscribe(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.shared.tx.subscribe()
    }

    async fn membership(&self) -> Result<Membership> {
        let (voters, _, term) = self.shared.read_members().await?;
        Ok(Membership {
            voters,
            learners: Vec::new(),
            leader: None,
            term,
        })
    }

    async fn add_member(&self, peer: Peer) -> Result<()> {
        self.shared
            .change_members("add member", |peers| {
                if let Some(p) = peers
                    .iter()
                    .find(|p| p.node == peer.node || p.raft_id == peer.raft_id)
                {
                    return Err(Error::Membership(format!(
                        "{} (id {}) is already a member as {} (id {})",
                        peer.node, peer.raft_id, p.node, p.raft_id
                    )));
                }
                peers.push(peer.clone());
                Ok(())
            })
            .await
    }

    async fn remove_member(&self, node: &NodeId) -> Result<()> {
        self.shared
            .change_members("remove member", |peers| {
                let before = peers.len();
                peers.retain(|p| &p.node != node);
                if peers.len() == before {
                    return Err(Error::Membership(format!("{node} is not a member")));
                }
                if peers.is_empty() {
                    return Err(Error::Membership(format!(
                        "{node} is the last member; a cluster keeps at least one"
                    )));
                }
                Ok(())
            })
            .await
    }

    fn has_majority(&self) -> bool {
        self.shared.has_majority()
    }
}

/// Feeds subscribers from a watch on the state key; after any break, re-reads and
/// watches again from the last revision published.
async fn watch_loop(shared: Weak<Shared>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(s) = shared.upgrade() else { return };
        let result = watch_once(&s).await;
        let pause = match result {
            Ok(()) => {
                backoff = Duration::from_millis(100);
                backoff
            }
            Err(e) => {
                debug!(error = %e, "etcd: watch broke; re-reading");
                backoff = (backoff * 2).min(Duration::from_secs(2));
                backoff
            }
        };
        drop(s);
        tokio::time::sleep(pause).await;
        if let Some(s) = shared.upgrade() {
            // Re-read on reconnect: whatever the broken watch missed.
            let _ = s.read_state().await;
        }
    }
}

/// One watch stream until it ends or breaks.
async fn watch_once(s: &Shared) -> Result<()> {
    // From the revision after the last state published; from now when none was (a
    // start revision that old could have been compacted).
    let seen = s.seen();
    let mut w = s.client.watch_client();
    let opts = if seen > 0 {
        WatchOptions::new().with_start_revision(seen + 1)
    } else {
        WatchOptions::new()
    };
    let mut stream = tokio::time::timeout(
        s.config.request_timeout,
        w.watch(s.state_key.as_str(), Some(opts)),
    )
    .await
    .map_err(|_| Error::NoMajority("etcd watch: no answer".into()))?
    .map_err(|e| store::map_error(&s.config, "watch", e))?;
    loop {
        let msg = stream
            .message()
            .await
            .map_err(|e| store::map_error(&s.config, "watch", e))?;
        let Some(resp) = msg else { return Ok(()) };
        if resp.canceled() {
            return Err(Error::Consensus(format!(
                "watch canceled (compacted at {}): {}",
                resp.compact_revision(),
                resp.cancel_reason()
            )));
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            if kv.value().is_empty() {
                continue; // a delete: nothing to publish
            }
            match store::from_json::<ClusterState>(&s.state_key, kv.value()) {
                Ok(state) => s.publish(&state, kv.mod_revision()),
                Err(e) => warn!(error = %e, "etcd: ignoring an unreadable state event"),
            }
        }
    }
}

/// Re-reads linearizably every probe interval: keeps `has_majority` current on an idle
/// agent and catches anything a watch missed.
async fn probe_loop(shared: Weak<Shared>) {
    let mut was_ok = true;
    loop {
        let Some(s) = shared.upgrade() else { return };
        let interval = s.config.probe_interval;
        match s.read_state().await {
            Ok(_) if !was_ok => {
                info!(endpoints = %s.config.endpoints_text(), "etcd reachable again");
                was_ok = true;
            }
            Ok(_) => {}
            Err(e) if was_ok => {
                warn!(error = %e, "etcd unreachable");
                was_ok = false;
            }
            Err(_) => {}
        }
        drop(s);
        tokio::time::sleep(interval).await;
    }
}
