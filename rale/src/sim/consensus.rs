//! Simulated consensus: one replicated [`ClusterState`], changed only by
//! [`ClusterState::apply`] in log order.
//!
//! A member may read or propose only while its agent runs and its network component of
//! running agents holds a majority of all members. Reads are linearizable (they return
//! the state as applied so far). An accepted proposal is applied after a commit delay,
//! in the order proposals were accepted, and only while some majority exists (a log
//! entry is committed by a majority); entries are never lost.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::state::{ClusterState, Command, Operation, Outcome};

/// A proposal waiting for its commit.
#[derive(Clone, Debug)]
pub struct Pending {
    /// Log sequence number (1, 2, …).
    pub seq: u64,
    /// Virtual time it may apply at.
    pub apply_at_ms: u64,
    /// Proposer (member index).
    pub from: usize,
    /// The command.
    pub command: Command,
}

/// The replicated state and its log of accepted, not yet applied proposals.
#[derive(Clone, Debug)]
pub struct SimConsensus {
    /// The state as applied so far (shared with the agents that read it; copied on the
    /// next apply only while one still holds it).
    pub state: Arc<ClusterState>,
    queue: VecDeque<Pending>,
    last_apply_at_ms: u64,
    next_seq: u64,
    /// Highest sequence number applied.
    pub applied_seq: u64,
}

impl SimConsensus {
    /// Starts from `state`.
    pub fn new(state: ClusterState) -> Self {
        SimConsensus {
            state: Arc::new(state),
            queue: VecDeque::new(),
            last_apply_at_ms: 0,
            next_seq: 1,
            applied_seq: 0,
        }
    }

    /// Accepts a proposal to apply at `now_ms + delay_ms` (never before an earlier one);
    /// returns its sequence number.
    pub fn propose(
        &mut self,
        now_ms: u64,
        delay_ms: u64,
        from: usize,
        op: Operation,
        wall_ms: u64,
    ) -> u64 {
        let at = (now_ms + delay_ms).max(self.last_apply_at_ms);
        self.last_apply_at_ms = at;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push_back(Pending {
            seq,
            apply_at_ms: at,
            from,
            command: Command { op, wall_ms },
        });
        seq
    }

    /// Applies every entry due at `now_ms`, in order, if a majority exists; returns each
    /// applied entry with its outcome and the state before it.
    pub fn apply_due(&mut self, now_ms: u64, majority_exists: bool) -> Vec<(Pending, Outcome)> {
        let mut out = Vec::new();
        if !majority_exists {
            return out;
        }
        while self.queue.front().is_some_and(|p| p.apply_at_ms <= now_ms) {
            let p = self.queue.pop_front().expect("front exists");
            let outcome = Arc::make_mut(&mut self.state).apply(&p.command);
            self.applied_seq = p.seq;
            out.push((p, outcome));
        }
        out
    }

    /// The state as applied so far, as a linearizable read returns it.
    pub fn shared_state(&self) -> Arc<ClusterState> {
        self.state.clone()
    }

    /// Entries accepted but not applied yet.
    pub fn backlog(&self) -> usize {
        self.queue.len()
    }
}
