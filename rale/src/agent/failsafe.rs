//! Failsafe mode in the agent: the gate a member answers confirmation requests through
//! (shared by the HA loop, its executor and the agents' API), and the primary's rounds.
//! The rules are in [`crate::decide::failsafe`]; this module only holds the state and does
//! the I/O.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tracing::{info, warn};

use super::runtime::{Runtime, timeout};
use crate::decide::failsafe::{
    self, FailsafeAnswer, FailsafeConfirmed, FailsafeMember, FailsafePromise, FailsafeRequest,
    FailsafeRound, FailsafeView,
};
use crate::types::{Epoch, Millis, NodeId};

/// Sends a confirmation request to another member's agent (in `ramd`: `POST
/// /api/v1/failsafe` on its API).
#[async_trait]
pub trait FailsafeClient: Send + Sync {
    /// Asks `member` to confirm `request`; `Err` with the reason when it refused or could
    /// not be reached.
    async fn confirm(
        &self,
        member: &FailsafeMember,
        request: &FailsafeRequest,
    ) -> Result<FailsafeAnswer, String>;
}

/// What a member knows when asked to confirm, and the promise it gave: one per agent,
/// shared by its HA loop, its executor and its API.
#[derive(Debug, Default)]
pub struct FailsafeGate {
    view: Mutex<FailsafeView>,
}

impl FailsafeGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, FailsafeView> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers a confirmation request at `now` (this agent's monotonic clock). See
    /// [`failsafe::confirm`].
    pub fn confirm_at(
        &self,
        request: &FailsafeRequest,
        now: Millis,
    ) -> Result<FailsafeAnswer, String> {
        let mut view = self.lock();
        let answer = failsafe::confirm(&mut view, request, now);
        match &answer {
            Ok(a) => tracing::debug!(primary = %request.primary, epoch = request.epoch.0,
                promised_ms = a.promised_ms, "failsafe: confirmed the primary"),
            Err(why) => info!(primary = %request.primary, epoch = request.epoch.0,
                reason = %why, "failsafe: refused to confirm"),
        }
        answer
    }

    /// The promise this member gave last, if any.
    pub fn promise(&self) -> Option<FailsafePromise> {
        self.lock().promise.clone()
    }

    /// A copy of the whole view (for the API and tests).
    pub fn view(&self) -> FailsafeView {
        self.lock().clone()
    }

    /// Before proposing a lease claim: refused while a promise binds, else recorded.
    pub(crate) fn begin_claim(&self, expected: (Epoch, u64), now: Millis) -> Result<(), String> {
        failsafe::begin_claim(&mut self.lock(), expected, now)
    }

    /// After a step. See [`failsafe::observed`].
    pub(crate) fn observed(
        &self,
        node: &NodeId,
        lease: Option<(Option<NodeId>, Epoch, u64)>,
        acting_primary: bool,
    ) {
        failsafe::observed(&mut self.lock(), node, lease, acting_primary);
    }

    /// Whether a promise to another primary binds at `now`.
    pub(crate) fn bound(&self, me: &NodeId, now: Millis) -> Option<FailsafePromise> {
        self.lock()
            .promise
            .clone()
            .filter(|p| p.live(now) && &p.primary != me)
    }
}

/// Sends `round` to every member at once; `Some` when every one of them confirmed. Each
/// request may take a quarter of the promise asked for (so that a round that succeeds
/// leaves most of the validity it buys).
pub(crate) async fn run_round(
    rt: &dyn Runtime,
    client: &dyn FailsafeClient,
    round: &FailsafeRound,
    last_missing: &mut Vec<String>,
) -> Option<FailsafeConfirmed> {
    let sent_at = rt.now();
    let limit = Duration::from_millis((round.request.ttl_ms / 4).max(50));
    let asks = round.members.iter().map(|m| async move {
        let r = timeout(rt, limit, client.confirm(m, &round.request)).await;
        let r = r.unwrap_or_else(|| Err(format!("no answer within {} ms", limit.as_millis())));
        (m.node.clone(), r)
    });
    let answers = futures_util::future::join_all(asks).await;
    let missing: Vec<String> = answers
        .iter()
        .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{n}: {e}")))
        .collect();
    if missing != *last_missing {
        if missing.is_empty() {
            info!(
                epoch = round.request.epoch.0,
                members = round.members.len(),
                "failsafe: every member confirmed the primary"
            );
        } else {
            warn!(epoch = round.request.epoch.0, missing = ?missing,
                "failsafe: not every member confirmed; the primary fences when its lease runs out");
        }
        *last_missing = missing.clone();
    }
    missing.is_empty().then_some(FailsafeConfirmed {
        epoch: round.request.epoch,
        sent_at,
    })
}

/// A shared gate, for builders.
pub(crate) fn new_gate() -> Arc<FailsafeGate> {
    Arc::new(FailsafeGate::default())
}
