//! The HA loop: observe, decide (with any [`Policy`]), execute the decision's actions in
//! order, apply the cluster-wide PostgreSQL parameters, report. Runs on any [`Runtime`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::failsafe::{FailsafeClient, FailsafeGate, run_round};
use super::fence::FenceDeadline;
use super::keeper::KeeperShared;
use super::params::{Applied, ParameterApplier};
use super::runtime::{Runtime, timeout};
use super::{AgentHooks, IterationReport};
use crate::consensus::Consensus;
use crate::decide::failsafe::{FailsafeConfirmed, FailsafeRound};
use crate::decide::{
    Action, ActionOutcome, Decision, DecisionKind, NodeIdentity, Observation, ParameterOutcome,
    PgAction, Policy,
};
use crate::pg::{PostgresControl, StopMode, Upstream};
use crate::state::{ClusterState, Command, Operation};
use crate::status::{DataDirState, PgStatus};
use crate::types::{Millis, NodeId};

/// How long one proposal of the loop may take before it counts as failed.
pub(crate) const PROPOSE_TIMEOUT_MS: u64 = 2_000;
/// How long the loop waits for a linearizable read.
const READ_TIMEOUT_MS: u64 = 800;

/// One agent's HA loop (see the [module documentation](super)).
pub(crate) struct HaLoop {
    pub rt: Arc<dyn Runtime>,
    pub policy: Box<dyn Policy>,
    pub identity: NodeIdentity,
    /// New identities (tags, addresses) on configuration reload.
    pub identity_rx: Option<watch::Receiver<NodeIdentity>>,
    pub pg: Arc<dyn PostgresControl>,
    pub consensus: Arc<dyn Consensus>,
    pub fence: FenceDeadline,
    pub hooks: Arc<dyn AgentHooks>,
    pub last_logged: Option<(DecisionKind, String)>,
    /// Held while PostgreSQL is being changed, shared with operator actions.
    pub pg_lock: Arc<tokio::sync::Mutex<()>>,
    /// The cluster-wide PostgreSQL parameters: applied once per change, removed when the
    /// configuration drops them, rolled back by the primary when they fail.
    pub parameters: ParameterApplier,
    /// Shared with the lease keeper.
    pub keeper: Arc<KeeperShared>,
    /// A permanent failure found after an action failed: the loop stops with it.
    pub fatal: Option<String>,
    /// How the PostgreSQL actions of the previous decision ended (the next observation).
    pub outcomes: Vec<ActionOutcome>,
    /// A failure to apply the cluster's PostgreSQL parameters, for the next observation.
    pub parameter_failure: Option<ParameterOutcome>,
    /// Failsafe mode: what this member knows and promised (shared with the API).
    pub failsafe: Arc<FailsafeGate>,
    /// Failsafe mode: how to reach the other members' agents.
    pub failsafe_client: Option<Arc<dyn FailsafeClient>>,
    /// The round the last decision asked for, sent when consensus does not answer.
    pub failsafe_round: Option<FailsafeRound>,
    /// Members that did not confirm the last round (logged when it changes).
    pub failsafe_missing: Vec<String>,
    /// The previous iteration could not read the cluster state.
    pub read_failed: bool,
    /// This iteration took the lease: the next one runs without a pause.
    pub hurry: bool,
}

impl HaLoop {
    /// Runs until `shutdown` turns true, or until a PostgreSQL action failed for a
    /// permanent reason ([`PostgresControl::preflight`]: permissions, binaries, a foreign
    /// data directory) — then it returns that reason, after the same shutdown. On
    /// shutdown a primary stops PostgreSQL and releases its lease so that a replica takes
    /// over at once.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), String> {
        let mut interval_ms = 100;
        loop {
            let started = self.rt.now();
            let state = self.iterate().await;
            if let Some(s) = &state {
                interval_ms = u64::try_from(s.config.loop_interval.as_millis())
                    .unwrap_or(100)
                    .max(10);
            }
            if let Some(why) = self.fatal.clone() {
                self.keeper.set_grant(None);
                self.shutdown(state.as_deref()).await;
                return Err(why);
            }
            let elapsed = self.rt.now().since(started);
            // A lease just taken is acted on at once (the promotion is the next step), not
            // a loop interval later: every millisecond of a failover counts.
            let pause_ms = if std::mem::take(&mut self.hurry) {
                0
            } else {
                interval_ms.saturating_sub(elapsed)
            };
            let pause = Duration::from_millis(pause_ms);
            if !*shutdown.borrow() {
                let sleep = self.rt.sleep(pause);
                let changed = std::pin::pin!(shutdown.changed());
                let _ = futures_util::future::select(sleep, changed).await;
            }
            if *shutdown.borrow() {
                self.keeper.set_grant(None);
                self.shutdown(state.as_deref()).await;
                return Ok(());
            }
        }
    }

    async fn shutdown(&mut self, state: Option<&ClusterState>) {
        let me = self.identity.node.clone();
        // The freshest state: a pause (or a handover) may have landed since the last loop.
        let fresh = match timeout(
            self.rt.as_ref(),
            Duration::from_secs(1),
            self.consensus.read(),
        )
        .await
        {
            Some(Ok(s)) => Some(s),
            _ => None,
        };
        let state = fresh.as_deref().or(state);
        if state.is_some_and(|s| s.paused) {
            // Maintenance mode: the agent may be stopped (upgraded, restarted) without
            // touching PostgreSQL; nothing fails over while paused.
            info!(node = %me, "shutting down in maintenance mode: PostgreSQL is left running");
            return;
        }
        let holder = state.and_then(|s| s.holder().cloned());
        if holder.as_ref() == Some(&me) {
            info!(node = %me, "shutting down as primary: stopping PostgreSQL and releasing the lease");
            // Where its WAL ends, for the failover that follows (lag is measured against it).
            let final_position = match self.pg.status().await {
                Ok(s) if s.running && s.reachable && !s.in_recovery => {
                    Some((s.timeline, s.wal_position()))
                }
                _ => None,
            };
            if let Err(e) = self.pg.stop(StopMode::Fast).await {
                warn!(node = %me, error = %e, "fast stop failed, stopping immediately");
                let _ = self.pg.stop(StopMode::Immediate).await;
            }
            self.fence.set(None);
            self.keeper.set_grant(None);
            let epoch = state.map(|s| s.epoch()).unwrap_or_default();
            let op = Operation::ReleaseLease {
                node: me.clone(),
                epoch,
                successor: None,
                reason: format!("agent {me} shut down"),
                final_position,
            };
            if let Err(e) = propose(self.rt.as_ref(), self.consensus.as_ref(), op).await {
                warn!(node = %me, error = %e, "could not release the lease; it will expire");
            }
        } else {
            info!(node = %me, "shutting down: stopping PostgreSQL");
            if let Err(e) = self.pg.stop(StopMode::Fast).await {
                warn!(node = %me, error = %e, "fast stop failed, stopping immediately");
                let _ = self.pg.stop(StopMode::Immediate).await;
            }
        }
    }

    /// One iteration; returns the cluster state it read.
    pub async fn iterate(&mut self) -> Option<Arc<ClusterState>> {
        let t0 = self.rt.now();
        self.keeper.busy_since.store(t0.0.max(1), Ordering::SeqCst);
        let cluster = self.iterate_inner(t0).await;
        self.keeper.busy_since.store(0, Ordering::SeqCst);
        cluster
    }

    async fn iterate_inner(&mut self, t0: Millis) -> Option<Arc<ClusterState>> {
        if let Some(rx) = &mut self.identity_rx
            && rx.has_changed().unwrap_or(false)
        {
            let id = rx.borrow_and_update().clone();
            info!(node = %id.node, tags = ?id.tags, "configuration reloaded");
            self.policy.set_identity(id.clone());
            self.identity = id;
        }
        let me = self.identity.node.clone();
        let pg_status = match self.pg.status().await {
            Ok(s) => s,
            Err(e) => {
                warn!(node = %me, error = %e, "could not observe PostgreSQL");
                PgStatus::stopped(DataDirState::Empty)
            }
        };
        self.hooks.observed(&pg_status);
        let read_timeout = Duration::from_millis(READ_TIMEOUT_MS);
        let has_majority = self.consensus.has_majority();
        let read = async {
            if has_majority {
                match timeout(self.rt.as_ref(), read_timeout, self.consensus.read()).await {
                    Some(Ok(s)) => Some(s),
                    Some(Err(e)) => {
                        debug!(node = %me, error = %e, "consensus read failed");
                        None
                    }
                    None => None,
                }
            } else {
                None
            }
        };
        // Failsafe mode: while consensus does not answer, ask the other members at the
        // same time as the read, so that a slow failing read costs no validity.
        let early = self.read_failed || !has_majority;
        let (cluster, mut confirmed) = match (&self.failsafe_round, &self.failsafe_client) {
            (Some(round), Some(client)) if early => {
                let rt = self.rt.as_ref();
                let ask = run_round(rt, client.as_ref(), round, &mut self.failsafe_missing);
                futures_util::future::join(read, ask).await
            }
            _ => (read.await, None),
        };
        if cluster.is_none()
            && confirmed.is_none()
            && !early
            && let (Some(round), Some(client)) = (&self.failsafe_round, &self.failsafe_client)
        {
            confirmed = run_round(
                self.rt.as_ref(),
                client.as_ref(),
                round,
                &mut self.failsafe_missing,
            )
            .await;
        }
        let confirmed: Option<FailsafeConfirmed> = if cluster.is_none() { confirmed } else { None };
        self.read_failed = cluster.is_none();
        let now = self.rt.now();
        let promise = self.failsafe.promise();
        let obs = Observation {
            now,
            wall_ms: self.rt.wall_ms(),
            pg: &pg_status,
            cluster: cluster.as_deref(),
            outcomes: &self.outcomes,
            parameters: self.parameter_failure.as_ref(),
            failsafe_promise: promise.as_ref(),
            failsafe_confirmed: confirmed,
        };
        let decision = self.policy.step(&obs);
        self.failsafe_round = decision.failsafe.clone();
        let acting_primary = decision.lease.is_some()
            || (pg_status.running && pg_status.reachable && !pg_status.in_recovery);
        self.failsafe.observed(
            &me,
            cluster.as_deref().map(|s| {
                let l = s.lease.as_ref();
                (
                    l.and_then(|l| l.holder.clone()),
                    s.epoch(),
                    l.map(|l| l.renewals).unwrap_or(0),
                )
            }),
            acting_primary,
        );
        if cluster.is_some() {
            // Reported to a policy that could act on it.
            self.parameter_failure = None;
        }
        let mut outcomes = Vec::new();
        self.hooks.decided(now, &decision, cluster.is_some());
        let lease = decision.lease.map(|l| (l.epoch, l.deadline));
        self.keeper.set_grant(decision.renewal);
        self.fence.set(lease);
        self.log(&decision, cluster.as_deref(), &pg_status);
        for action in &decision.actions {
            if lease.is_some()
                && matches!(
                    action,
                    Action::Pg {
                        action: PgAction::SetSynchronousStandbyNames { .. }
                    }
                )
                && !self.fence.is_open(self.rt.now())
            {
                // A new synchronous_standby_names may release commits the fence
                // acknowledged earlier: only a primary whose lease is still valid sets it
                // (a loop that was frozen must not finish the decision it took before).
                warn!(node = %me, action = %action_name(action),
                    "skipped: the lease this decision was taken under ran out");
                if let Action::Pg { action } = action {
                    outcomes.push(ActionOutcome {
                        action: action.clone(),
                        error: Some(
                            "skipped: the lease this decision was taken under ran out".into(),
                        ),
                    });
                }
                continue;
            }
            let result = self.execute(action, cluster.as_deref()).await;
            if let Action::Pg { action } = action {
                outcomes.push(ActionOutcome {
                    action: action.clone(),
                    error: result.as_ref().err().map(ToString::to_string),
                });
            }
            if let Err(e) = result {
                warn!(node = %me, action = ?action_name(action), error = %e, "action failed");
                if matches!(action, Action::Pg { .. })
                    && let Err(permanent) = self.pg.preflight().await
                {
                    let why = format!(
                        "{} failed and will keep failing: {permanent}",
                        action_name(action)
                    );
                    tracing::error!(node = %me, error = %permanent, "permanent failure: the agent stops");
                    self.fatal = Some(why);
                    break;
                }
            }
        }
        self.outcomes = outcomes;
        self.fence.set(lease);
        if let Some(state) = cluster.as_deref() {
            self.apply_parameters(state, &pg_status).await;
        }
        let membership = self.consensus.membership().await.ok();
        let end = self.rt.now();
        let report = IterationReport {
            identity: self.identity.clone(),
            pg: pg_status,
            cluster: cluster.clone(),
            lease_epoch: lease.filter(|(_, d)| end < *d).map(|(e, _)| e),
            fence_open: self.fence.is_open(end),
            decision,
            duration_ms: end.since(t0),
            wall_ms: self.rt.wall_ms(),
            membership,
        };
        self.hooks.after_iteration(&report);
        cluster
    }

    /// Applies the cluster-wide PostgreSQL parameters of the dynamic configuration
    /// (`postgresql_parameters` and `synchronous_commit` from `synchronous.commit_level`)
    /// to the running local server (reload; those needing a restart show as
    /// `pending_restart`); a failure goes to the policy in the next observation, which
    /// rolls it back (primary, refused by the server) or records it.
    async fn apply_parameters(&mut self, state: &ClusterState, pg: &PgStatus) {
        let now = self.rt.now();
        if !(pg.running && pg.reachable && self.parameters.is_due(state, now)) {
            return;
        }
        let outcome = {
            let _guard = self.pg_lock.lock().await;
            self.parameters.apply(self.pg.as_ref(), state, now).await
        };
        if let Applied::Failed(failure) = outcome {
            self.parameter_failure = Some(failure);
        }
    }

    fn log(&mut self, d: &Decision, state: Option<&ClusterState>, pg: &PgStatus) {
        let me = &self.identity.node;
        let epoch = state.map(|s| s.epoch().0).unwrap_or(0);
        let significant = d.actions.iter().any(|a| match a {
            Action::Propose { op } => !matches!(
                op,
                Operation::PublishMember { .. } | Operation::RenewLease { .. }
            ),
            Action::Pg { action } => !matches!(
                action,
                PgAction::EnsureSlots { .. } | PgAction::AdvanceLogicalSlots { .. }
            ),
        });
        // Renewals alternate with steady loops: log the state once, not every renewal.
        let kind = if d.kind == DecisionKind::Renew {
            DecisionKind::Steady
        } else {
            d.kind
        };
        let key = (kind, d.reason.clone());
        if significant || self.last_logged.as_ref() != Some(&key) {
            info!(
                node = %me,
                epoch,
                timeline = pg.timeline.0,
                lsn = %pg.wal_position(),
                kind = ?d.kind,
                actions = ?d.actions.iter().map(action_name).collect::<Vec<_>>(),
                reason = %d.reason,
                "decision"
            );
            self.last_logged = Some(key);
        }
    }

    fn upstream(state: Option<&ClusterState>, node: &NodeId) -> crate::Result<Upstream> {
        let m = state
            .and_then(|s| s.members.get(node))
            .ok_or_else(|| crate::Error::Consensus(format!("no published status for {node}")))?;
        Ok(Upstream {
            node: node.clone(),
            host: m.pg_host.clone(),
            port: m.pg_port,
        })
    }

    async fn execute(
        &mut self,
        action: &Action,
        state: Option<&ClusterState>,
    ) -> crate::Result<()> {
        let me = self.identity.node.clone();
        match action {
            Action::Propose { op } => {
                if let Operation::AcquireLease {
                    expected_epoch,
                    expected_renewals,
                    ..
                } = op
                {
                    self.failsafe
                        .begin_claim((*expected_epoch, *expected_renewals), self.rt.now())
                        .map_err(crate::Error::Consensus)?;
                }
                let outcome =
                    propose(self.rt.as_ref(), self.consensus.as_ref(), op.clone()).await?;
                if outcome.is_applied() && matches!(op, Operation::AcquireLease { .. }) {
                    self.hurry = true;
                }
                if let crate::state::Outcome::Rejected(why) = &outcome
                    && !matches!(op, Operation::PublishMember { .. })
                {
                    debug!(node = %me, op = op.name(), reason = %why, "proposal rejected");
                }
                Ok(())
            }
            Action::Pg { action } => {
                let lock = self.pg_lock.clone();
                let _guard = lock.lock().await;
                self.execute_pg(action, state).await
            }
        }
    }

    async fn execute_pg(
        &mut self,
        action: &PgAction,
        state: Option<&ClusterState>,
    ) -> crate::Result<()> {
        let me = self.identity.node.clone();
        match action {
            PgAction::Bootstrap { parameters } => {
                let sysid = self.pg.bootstrap(parameters).await?;
                info!(node = %me, system_id = sysid, "initialised a new cluster");
                Ok(())
            }
            PgAction::Start { upstream } => {
                let up = match upstream {
                    Some(n) => Some(Self::upstream(state, n)?),
                    None => None,
                };
                self.pg.start(up.as_ref()).await
            }
            PgAction::Stop { mode } => self.pg.stop(*mode).await,
            PgAction::Promote => {
                let t = self.rt.now();
                if let Some(p) = self.failsafe.bound(&me, t) {
                    return Err(crate::Error::Consensus(format!(
                        "failsafe mode: promised {} (epoch {}) not to promote for {} ms more",
                        p.primary,
                        p.epoch,
                        p.until.since(t)
                    )));
                }
                self.pg.promote(Duration::from_secs(30)).await?;
                info!(node = %me, promote_ms = self.rt.now().since(t), "promoted: accepts writes");
                Ok(())
            }
            PgAction::Follow { upstream } => {
                let up = match upstream {
                    Some(n) => Some(Self::upstream(state, n)?),
                    None => None,
                };
                self.pg.follow(up.as_ref()).await
            }
            PgAction::Rewind { source } => {
                let up = Self::upstream(state, source)?;
                self.pg.rewind(&up).await
            }
            PgAction::Clone { source } => {
                let up = Self::upstream(state, source)?;
                PostgresControl::clone_from(self.pg.as_ref(), &up).await?;
                self.pg.start(Some(&up)).await
            }
            PgAction::SetSynchronousStandbyNames { value } => {
                let mut params = std::collections::BTreeMap::new();
                params.insert("synchronous_standby_names".to_string(), value.clone());
                self.pg.set_parameters(&params).await.map(|_| ())
            }
            PgAction::EnsureSlots { plan } => self.pg.ensure_slots(plan).await,
            PgAction::CopyLogicalSlots { source, slots } => {
                let up = Self::upstream(state, source)?;
                self.pg.copy_logical_slots(&up, slots).await.map(|_| ())
            }
            PgAction::AdvanceLogicalSlots { slots } => self.pg.advance_logical_slots(slots).await,
        }
    }
}

/// Proposes `op`, giving up after [`PROPOSE_TIMEOUT_MS`] (a free function: the loop's
/// futures borrow only the fields they use, so the loop needs no `Sync` policy).
async fn propose(
    rt: &dyn Runtime,
    consensus: &dyn Consensus,
    op: Operation,
) -> crate::Result<crate::state::Outcome> {
    let name = op.name();
    let cmd = Command {
        op,
        wall_ms: rt.wall_ms(),
    };
    match timeout(
        rt,
        Duration::from_millis(PROPOSE_TIMEOUT_MS),
        consensus.propose(cmd),
    )
    .await
    {
        Some(r) => r,
        None => Err(crate::Error::Timeout {
            operation: name,
            after_ms: PROPOSE_TIMEOUT_MS,
        }),
    }
}

/// A short name for an action, for logs.
pub fn action_name(a: &Action) -> String {
    match a {
        Action::Propose { op } => format!("propose:{}", op.name()),
        Action::Pg { action } => match action {
            PgAction::Bootstrap { .. } => "pg:bootstrap".into(),
            PgAction::Start { upstream } => format!(
                "pg:start({})",
                upstream.as_ref().map(NodeId::as_str).unwrap_or("-")
            ),
            PgAction::Stop { mode } => format!("pg:stop({mode:?})"),
            PgAction::Promote => "pg:promote".into(),
            PgAction::Follow { upstream } => format!(
                "pg:follow({})",
                upstream.as_ref().map(NodeId::as_str).unwrap_or("none")
            ),
            PgAction::Rewind { source } => format!("pg:rewind({source})"),
            PgAction::Clone { source } => format!("pg:clone({source})"),
            PgAction::SetSynchronousStandbyNames { value } => {
                format!("pg:sync_standby_names({value})")
            }
            PgAction::EnsureSlots { plan } => {
                format!("pg:slots({})", plan.members.len() + plan.permanent.len())
            }
            PgAction::CopyLogicalSlots { source, slots } => {
                format!("pg:copy_logical_slots({source}: {})", slots.join(","))
            }
            PgAction::AdvanceLogicalSlots { slots } => format!(
                "pg:advance_logical_slots({})",
                slots
                    .iter()
                    .map(|s| format!("{}={}", s.name, s.lsn))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        },
    }
}
