//! The HA loop: observe, decide (with [`rale::decide::Decider`]), execute, publish.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rale::decide::{
    Action, Decider, Decision, DecisionKind, NodeIdentity, Observation, PgAction, Policy,
    RenewalGrant,
};
use rale::pg::{StopMode, Upstream};
use rale::state::{ClusterState, Command, HistoryKind, Operation};
use rale::status::{DataDirState, PgStatus};
use rale::{Consensus, Epoch, Millis, NodeId, PostgresControl};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::callbacks::{Callbacks, Transitions};
use crate::pg_params::Applied;
use crate::snapshot::NodeSnapshot;

/// Reads the node's monotonic clock (`CLOCK_BOOTTIME`: keeps counting through suspend and
/// across agent restarts, unlike `Instant`'s `CLOCK_MONOTONIC`).
pub fn monotonic_now() -> Millis {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(ts) => {
            let secs = u64::try_from(ts.tv_sec()).unwrap_or(0);
            let nanos = u64::try_from(ts.tv_nsec()).unwrap_or(0);
            Millis(secs * 1000 + nanos / 1_000_000)
        }
        Err(_) => Millis(0),
    }
}

/// Wall-clock Unix milliseconds (history stamps and schedules only).
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The lease deadline shared with the commit fence: monotonic milliseconds until which
/// the fence may acknowledge WAL; 0 = closed. Both the HA loop and the lease keeper move
/// it; within one lease epoch it only moves forward (each value is proven by a renewal
/// that consensus applied).
#[derive(Clone, Default, Debug)]
pub struct FenceDeadline(Arc<FenceInner>);

#[derive(Default, Debug)]
struct FenceInner {
    deadline: AtomicU64,
    epoch: AtomicU64,
    update: std::sync::Mutex<()>,
}

impl FenceDeadline {
    /// Whether the fence may acknowledge at `now`.
    pub fn is_open(&self, now: Millis) -> bool {
        now.0 < self.0.deadline.load(Ordering::SeqCst)
    }
    /// Current deadline.
    pub fn get(&self) -> Millis {
        Millis(self.0.deadline.load(Ordering::SeqCst))
    }
    /// The HA loop's view: `None` closes the fence; a lease of another epoch replaces the
    /// deadline; the same epoch never moves it back (the lease keeper may have renewed
    /// since the state the loop decided on was read).
    fn set(&self, lease: Option<(Epoch, Millis)>) {
        let _guard = self.0.update.lock().unwrap_or_else(|e| e.into_inner());
        match lease {
            None => {
                self.0.deadline.store(0, Ordering::SeqCst);
                self.0.epoch.store(0, Ordering::SeqCst);
            }
            Some((epoch, deadline)) => {
                if self.0.epoch.load(Ordering::SeqCst) == epoch.0 {
                    self.0.deadline.fetch_max(deadline.0, Ordering::SeqCst);
                } else {
                    self.0.epoch.store(epoch.0, Ordering::SeqCst);
                    self.0.deadline.store(deadline.0, Ordering::SeqCst);
                }
            }
        }
    }
    /// The lease keeper's renewal of `epoch` landed: acknowledge until `deadline`, unless
    /// the HA loop has meanwhile closed the fence or moved to another epoch.
    fn extend(&self, epoch: Epoch, deadline: Millis) {
        let _guard = self.0.update.lock().unwrap_or_else(|e| e.into_inner());
        if self.0.epoch.load(Ordering::SeqCst) == epoch.0 {
            self.0.deadline.fetch_max(deadline.0, Ordering::SeqCst);
        }
    }
}

/// What the HA loop shares with its lease keeper.
#[derive(Default, Debug)]
struct KeeperShared {
    /// Monotonic ms at which the running iteration started; 0 between iterations.
    busy_since: AtomicU64,
    /// The decider's latest [`RenewalGrant`].
    grant: std::sync::Mutex<Option<RenewalGrant>>,
}

impl KeeperShared {
    fn grant(&self) -> Option<RenewalGrant> {
        *self.grant.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn set_grant(&self, g: Option<RenewalGrant>) {
        *self.grant.lock().unwrap_or_else(|e| e.into_inner()) = g;
    }
}

/// Renews the lease while one HA-loop iteration runs longer than the renew interval
/// (`pg_ctl start` with crash recovery, a slow promotion), within the decider's
/// [`RenewalGrant`]; between iterations the loop renews by itself.
async fn keep_lease(
    shared: Arc<KeeperShared>,
    consensus: Arc<dyn Consensus>,
    fence: FenceDeadline,
    node: NodeId,
) {
    let mut renewing_since: Option<u64> = None;
    for _ in 0..u64::MAX {
        let pause_ms = shared
            .grant()
            .map(|g| g.renew_interval_ms / 2)
            .unwrap_or(100)
            .clamp(10, 1000);
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        let now = monotonic_now();
        let busy_since = shared.busy_since.load(Ordering::SeqCst);
        let Some(grant) = shared.grant() else {
            renewing_since = None;
            continue;
        };
        let busy_ms = now.0.saturating_sub(busy_since);
        if busy_since == 0 || busy_ms < grant.renew_interval_ms || now >= grant.until {
            if busy_since == 0 {
                renewing_since = None;
            }
            continue;
        }
        if renewing_since != Some(busy_since) {
            renewing_since = Some(busy_since);
            info!(node = %node, epoch = grant.epoch.0, busy_ms,
                grant_left_ms = grant.until.since(now),
                "HA loop busy: the lease keeper renews the lease meanwhile");
        }
        let cmd = Command {
            op: Operation::RenewLease {
                node: node.clone(),
                epoch: grant.epoch,
                holder_clock: now,
            },
            wall_ms: wall_ms(),
        };
        let timeout = Duration::from_millis(grant.validity_ms.max(100));
        match tokio::time::timeout(timeout, consensus.propose(cmd)).await {
            Ok(Ok(outcome)) if outcome.is_applied() => {
                fence.extend(grant.epoch, now.plus(grant.validity_ms));
            }
            Ok(Ok(outcome)) => {
                warn!(node = %node, epoch = grant.epoch.0, ?outcome,
                    "lease keeper: renewal refused; the lease is lost");
                shared.set_grant(None);
            }
            Ok(Err(e)) => debug!(node = %node, error = %e, "lease keeper: renewal failed"),
            Err(_) => debug!(node = %node, "lease keeper: renewal timed out"),
        }
    }
}

/// One agent's HA loop.
pub struct HaLoop {
    decider: Decider,
    pg: Arc<dyn PostgresControl>,
    consensus: Arc<dyn Consensus>,
    snapshot: watch::Sender<Arc<NodeSnapshot>>,
    fence: FenceDeadline,
    last_logged: Option<(DecisionKind, String)>,
    started_unix_ms: u64,
    /// Set by SIGHUP handling: new tags to publish.
    identity_rx: watch::Receiver<NodeIdentity>,
    /// Held while PostgreSQL is being changed, shared with operator actions.
    pg_lock: Arc<tokio::sync::Mutex<()>>,
    /// The cluster-wide PostgreSQL parameters: applied once per change, removed when the
    /// configuration drops them, rolled back by the primary when they fail.
    parameters: crate::pg_params::ParameterApplier,
    /// Shared with the lease keeper task.
    keeper: Arc<KeeperShared>,
    /// User scripts, fired on observed PostgreSQL transitions.
    callbacks: Option<Callbacks>,
    transitions: Transitions,
    /// A permanent failure found after an action failed: the loop stops with it.
    fatal: Option<String>,
}

impl HaLoop {
    /// A loop for `identity`.
    pub fn new(
        identity_rx: watch::Receiver<NodeIdentity>,
        pg: Arc<dyn PostgresControl>,
        consensus: Arc<dyn Consensus>,
        snapshot: watch::Sender<Arc<NodeSnapshot>>,
        fence: FenceDeadline,
        pg_lock: Arc<tokio::sync::Mutex<()>>,
    ) -> Self {
        let identity = identity_rx.borrow().clone();
        Self {
            decider: Decider::new(identity, monotonic_now()),
            pg,
            consensus,
            snapshot,
            fence,
            last_logged: None,
            started_unix_ms: wall_ms(),
            identity_rx,
            pg_lock,
            parameters: crate::pg_params::ParameterApplier::default(),
            keeper: Arc::new(KeeperShared::default()),
            callbacks: None,
            transitions: Transitions::default(),
            fatal: None,
        }
    }

    /// Keeps the record of the PostgreSQL parameters this agent set in `file` (in the
    /// state directory), so that removals survive agent restarts.
    pub fn with_parameter_record(mut self, file: std::path::PathBuf) -> Self {
        self.parameters = crate::pg_params::ParameterApplier::load(file);
        self
    }

    /// Runs `callbacks` on PostgreSQL start, stop and role change as this loop sees them.
    pub fn with_callbacks(mut self, callbacks: Callbacks) -> Self {
        self.callbacks = Some(callbacks);
        self
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

    /// Runs until `shutdown` turns true, or until a PostgreSQL action failed for a
    /// permanent reason ([`PostgresControl::preflight`]: permissions, binaries, a foreign
    /// data directory) — then it returns that reason, after the same shutdown. On
    /// shutdown a primary stops PostgreSQL and releases its lease so that a replica takes
    /// over at once.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), String> {
        let keeper = tokio::spawn(keep_lease(
            self.keeper.clone(),
            self.consensus.clone(),
            self.fence.clone(),
            self.decider.identity().node.clone(),
        ));
        let mut interval_ms = 100;
        loop {
            let started = Instant::now();
            let state = self.iterate().await;
            if let Some(s) = &state {
                interval_ms = u64::try_from(s.config.loop_interval.as_millis())
                    .unwrap_or(100)
                    .max(10);
            }
            if let Some(why) = self.fatal.clone() {
                keeper.abort();
                self.shutdown(state.as_deref()).await;
                return Err(why);
            }
            let elapsed = started.elapsed();
            let sleep = Duration::from_millis(interval_ms).saturating_sub(elapsed);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                keeper.abort();
                self.shutdown(state.as_deref()).await;
                return Ok(());
            }
        }
    }

    async fn shutdown(&mut self, state: Option<&ClusterState>) {
        let me = self.decider.identity().node.clone();
        // The freshest state: a pause (or a handover) may have landed since the last loop.
        let fresh = match tokio::time::timeout(Duration::from_secs(1), self.consensus.read()).await
        {
            Ok(Ok(s)) => Some(s),
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
            if let Err(e) = self.propose(op).await {
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

    async fn propose(&self, op: Operation) -> rale::Result<rale::state::Outcome> {
        let name = op.name();
        let cmd = Command {
            op,
            wall_ms: wall_ms(),
        };
        match tokio::time::timeout(Duration::from_secs(2), self.consensus.propose(cmd)).await {
            Ok(r) => r,
            Err(_) => Err(rale::Error::Timeout {
                operation: name,
                after_ms: 2000,
            }),
        }
    }

    /// One iteration; returns the cluster state it read.
    pub async fn iterate(&mut self) -> Option<Arc<ClusterState>> {
        let t0 = Instant::now();
        self.keeper
            .busy_since
            .store(monotonic_now().0.max(1), Ordering::SeqCst);
        let cluster = self.iterate_inner(t0).await;
        self.keeper.busy_since.store(0, Ordering::SeqCst);
        cluster
    }

    async fn iterate_inner(&mut self, t0: Instant) -> Option<Arc<ClusterState>> {
        if self.identity_rx.has_changed().unwrap_or(false) {
            let id = self.identity_rx.borrow_and_update().clone();
            info!(node = %id.node, tags = ?id.tags, "configuration reloaded");
            self.decider.set_identity(id);
        }
        let me = self.decider.identity().node.clone();
        let pg_status = match self.pg.status().await {
            Ok(s) => s,
            Err(e) => {
                warn!(node = %me, error = %e, "could not observe PostgreSQL");
                PgStatus::stopped(DataDirState::Empty)
            }
        };
        for (event, role) in self
            .transitions
            .observe(pg_status.running, pg_status.role())
        {
            if let Some(cb) = &self.callbacks {
                cb.fire(event, role);
            }
        }
        let read_timeout = Duration::from_millis(800);
        let cluster = if self.consensus.has_majority() {
            match tokio::time::timeout(read_timeout, self.consensus.read()).await {
                Ok(Ok(s)) => Some(s),
                Ok(Err(e)) => {
                    debug!(node = %me, error = %e, "consensus read failed");
                    None
                }
                Err(_) => None,
            }
        } else {
            None
        };
        let now = monotonic_now();
        let obs = Observation {
            now,
            wall_ms: wall_ms(),
            pg: &pg_status,
            cluster: cluster.as_deref(),
        };
        let decision = self.decider.step(&obs);
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
                && !self.fence.is_open(monotonic_now())
            {
                // A new synchronous_standby_names may release commits the fence
                // acknowledged earlier: only a primary whose lease is still valid sets it
                // (a loop that was frozen must not finish the decision it took before).
                warn!(node = %me, action = %action_name(action),
                    "skipped: the lease this decision was taken under ran out");
                continue;
            }
            if let Err(e) = self.execute(action, cluster.as_deref()).await {
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
        self.fence.set(lease);
        if let Some(state) = cluster.as_deref() {
            self.apply_parameters(state, &pg_status).await;
        }
        let membership = self.consensus.membership().await.ok();
        let snap = NodeSnapshot {
            node: me.clone(),
            api_url: self.decider.identity().api_url.clone(),
            pg_host: self.decider.identity().pg_host.clone(),
            pg_port: self.decider.identity().pg_port,
            tags: self.decider.identity().tags.clone(),
            pg: pg_status,
            cluster: cluster
                .clone()
                .unwrap_or_else(|| self.snapshot.borrow().cluster.clone()),
            consensus_ok: cluster.is_some(),
            lease_epoch: lease
                .filter(|(_, d)| monotonic_now() < *d)
                .map(|(e, _)| e),
            fence_open: self.fence.is_open(monotonic_now()),
            loop_last_unix_ms: wall_ms(),
            loop_duration_ms: u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX),
            last_decision: format!("{:?}: {}", decision.kind, decision.reason),
            consensus_term: membership.as_ref().map(|m| m.term).unwrap_or(0),
            consensus_leader: membership.and_then(|m| m.leader),
            started_unix_ms: self.started_unix_ms,
        };
        self.snapshot.send_replace(Arc::new(snap));
        cluster
    }

    /// Applies the cluster-wide PostgreSQL parameters of the dynamic configuration
    /// (`postgresql_parameters` and `synchronous_commit` from `synchronous.commit_level`)
    /// to the running local server (reload; those needing a restart show as
    /// `pending_restart`); a failure is recorded, and on the primary rolled back.
    async fn apply_parameters(&mut self, state: &ClusterState, pg: &PgStatus) {
        if !(pg.running && pg.reachable && self.parameters.is_due(state)) {
            return;
        }
        let me = self.decider.identity().node.clone();
        let primary = state.holder() == Some(&me);
        let outcome = {
            let _guard = self.pg_lock.lock().await;
            self.parameters
                .apply(self.pg.as_ref(), state, primary)
                .await
        };
        let op = match outcome {
            Applied::Unchanged | Applied::Done { .. } => return,
            Applied::Failed { reason } => Operation::Record {
                kind: HistoryKind::Config,
                node: Some(me.clone()),
                actor: format!("ha:{me}"),
                reason: format!("{reason} (on {me})"),
            },
            Applied::RollBack { config, reason } => Operation::SetConfig {
                expected_version: Some(state.config_version),
                config: *config,
                actor: format!("ha:{me}"),
                reason: format!("{reason} (on {me})"),
            },
        };
        if let Err(e) = self.propose(op).await {
            warn!(node = %me, error = %e, "could not record the parameter failure");
        }
    }

    fn log(&mut self, d: &Decision, state: Option<&ClusterState>, pg: &PgStatus) {
        let me = &self.decider.identity().node;
        let epoch = state.map(|s| s.epoch().0).unwrap_or(0);
        let significant = d.actions.iter().any(|a| match a {
            Action::Propose { op } => !matches!(
                op,
                Operation::PublishMember { .. } | Operation::RenewLease { .. }
            ),
            Action::Pg { action } => !matches!(action, PgAction::EnsureSlots { .. }),
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

    fn upstream(state: Option<&ClusterState>, node: &NodeId) -> rale::Result<Upstream> {
        let m = state
            .and_then(|s| s.members.get(node))
            .ok_or_else(|| rale::Error::Consensus(format!("no published status for {node}")))?;
        Ok(Upstream {
            node: node.clone(),
            host: m.pg_host.clone(),
            port: m.pg_port,
        })
    }

    async fn execute(&mut self, action: &Action, state: Option<&ClusterState>) -> rale::Result<()> {
        let me = self.decider.identity().node.clone();
        match action {
            Action::Propose { op } => {
                let outcome = self.propose(op.clone()).await?;
                if let rale::state::Outcome::Rejected(why) = &outcome
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
    ) -> rale::Result<()> {
        let me = self.decider.identity().node.clone();
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
                let t = Instant::now();
                self.pg.promote(Duration::from_secs(30)).await?;
                info!(node = %me, promote_ms = t.elapsed().as_millis() as u64, "promoted: accepts writes");
                Ok(())
            }
            PgAction::Follow { upstream } => {
                let up = match upstream {
                    Some(n) => Some(Self::upstream(state, n)?),
                    None => None,
                };
                self.pg.follow(up.as_ref()).await
            }
            PgAction::Rejoin { source, rewind } => {
                let up = Self::upstream(state, source)?;
                if let Err(e) = self.pg.stop(StopMode::Fast).await {
                    warn!(node = %me, error = %e, "fast stop before rejoin failed; stopping immediately");
                    self.pg.stop(StopMode::Immediate).await?;
                }
                let how = if *rewind {
                    match self.pg.rewind(&up).await {
                        Ok(()) => "pg_rewind",
                        Err(e) => {
                            warn!(node = %me, error = %e, "pg_rewind failed: cloning afresh");
                            PostgresControl::clone_from(self.pg.as_ref(), &up).await?;
                            "a fresh clone (pg_rewind failed)"
                        }
                    }
                } else {
                    PostgresControl::clone_from(self.pg.as_ref(), &up).await?;
                    "a fresh clone"
                };
                self.pg.start(Some(&up)).await?;
                let reason = format!("{me} rejoined as a replica of {source} by {how}");
                info!(node = %me, "{reason}");
                let _ = self
                    .propose(Operation::Record {
                        kind: HistoryKind::Operation,
                        node: Some(me.clone()),
                        actor: format!("ha:{me}"),
                        reason,
                    })
                    .await;
                Ok(())
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
            PgAction::EnsureSlots { slots } => self.pg.ensure_slots(slots).await,
        }
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
            PgAction::Rejoin { source, rewind } => format!("pg:rejoin({source}, rewind={rewind})"),
            PgAction::Clone { source } => format!("pg:clone({source})"),
            PgAction::SetSynchronousStandbyNames { value } => {
                format!("pg:sync_standby_names({value})")
            }
            PgAction::EnsureSlots { slots } => format!("pg:slots({})", slots.len()),
        },
    }
}
