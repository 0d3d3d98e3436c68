//! In-process consensus: one shared state, many handles. For tests and examples.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::watch;

use super::{Consensus, Membership, Peer};
use crate::state::{ClusterState, Command, Outcome};
use crate::types::NodeId;
use crate::{Error, Result};

struct Shared {
    state: Mutex<(ClusterState, Membership)>,
    tx: watch::Sender<Arc<ClusterState>>,
}

/// An in-memory [`Consensus`]: every handle made with [`MemConsensus::handle`] sees the
/// same state, as if all nodes were one majority. A handle can be cut off with
/// [`MemConsensus::set_connected`] to play a node on the minority side.
#[derive(Clone)]
pub struct MemConsensus {
    shared: Arc<Shared>,
    connected: Arc<AtomicBool>,
}

impl Default for MemConsensus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemConsensus {
    /// A fresh, empty cluster state.
    pub fn new() -> Self {
        let (tx, _rx) = watch::channel(Arc::new(ClusterState::default()));
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new((ClusterState::default(), Membership::default())),
                tx,
            }),
            connected: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Another handle on the same state, with its own connectivity.
    pub fn handle(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            connected: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Cuts this handle off from (or reconnects it to) the majority.
    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::SeqCst);
    }

    fn check(&self) -> Result<()> {
        if self.connected.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Error::NoMajority("this handle is disconnected".into()))
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, (ClusterState, Membership)>> {
        self.shared
            .state
            .lock()
            .map_err(|_| Error::Consensus("state lock poisoned".into()))
    }
}

#[async_trait]
impl Consensus for MemConsensus {
    async fn read(&self) -> Result<Arc<ClusterState>> {
        self.check()?;
        Ok(Arc::new(self.lock()?.0.clone()))
    }

    async fn propose(&self, cmd: Command) -> Result<Outcome> {
        self.check()?;
        let (outcome, snapshot) = {
            let mut guard = self.lock()?;
            let outcome = guard.0.apply(&cmd);
            (outcome, Arc::new(guard.0.clone()))
        };
        self.shared.tx.send_replace(snapshot);
        Ok(outcome)
    }

    fn subscribe(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.shared.tx.subscribe()
    }

    async fn membership(&self) -> Result<Membership> {
        Ok(self.lock()?.1.clone())
    }

    async fn add_member(&self, peer: Peer) -> Result<()> {
        self.check()?;
        let mut guard = self.lock()?;
        if guard
            .1
            .voters
            .iter()
            .any(|p| p.node == peer.node || p.raft_id == peer.raft_id)
        {
            return Err(Error::Membership(format!(
                "{} is already a member",
                peer.node
            )));
        }
        guard.1.voters.push(peer);
        Ok(())
    }

    async fn remove_member(&self, node: &NodeId) -> Result<()> {
        self.check()?;
        let mut guard = self.lock()?;
        let before = guard.1.voters.len();
        guard.1.voters.retain(|p| &p.node != node);
        if guard.1.voters.len() == before {
            return Err(Error::Membership(format!("{node} is not a member")));
        }
        Ok(())
    }

    fn has_majority(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Operation;

    #[tokio::test]
    async fn handles_share_state_and_disconnect() {
        let a = MemConsensus::new();
        let b = a.handle();
        let node = NodeId::new("a").expect("name");
        let cmd = Command {
            op: Operation::ClaimBootstrap { node },
            wall_ms: 0,
        };
        assert!(
            a.propose(cmd)
                .await
                .map(|o| o.is_applied())
                .unwrap_or(false)
        );
        let seen = b
            .read()
            .await
            .map(|s| s.bootstrap.is_some())
            .unwrap_or(false);
        assert!(seen);
        b.set_connected(false);
        assert!(b.read().await.is_err());
        assert!(!b.has_majority());
        assert!(a.has_majority());
    }
}
