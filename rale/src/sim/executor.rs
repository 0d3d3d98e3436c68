//! The simulated agent's executor: performs a decision's actions one at a time and in
//! order — a proposal waits until it is applied (or `propose_timeout_ms`), a PostgreSQL
//! action takes virtual time and its effect shows when it completes — and only then
//! runs the next HA loop iteration, as `ramd`'s HA loop does.
//!
//! A PostgreSQL action already under way completes even if the agent then freezes or
//! dies (the command was sent); the rest of the decision dies with the agent; a host
//! crash loses everything in flight. A frozen or stalled agent starts nothing new.

use super::postgres::{RecordKind, WalRecord};
use super::trace::TraceKind;
use super::world::{InFlight, Keeper, Sim};
use crate::decide::{Action, PgAction};
use crate::pg::StopMode;
use crate::state::Operation;
use crate::status::DataDirState;
use crate::types::{Millis, Timeline};

impl Sim {
    /// Drives node `i`'s agent for one tick: completes the action in progress, starts the
    /// next ones of the current decision, and runs the HA loop when it is idle and due —
    /// like `ramd`, which executes a decision's actions in order before sleeping until
    /// the next iteration.
    pub(super) fn run_agent(&mut self, i: usize) {
        let now = self.now_ms;
        if !self.nodes[i].host_up {
            return;
        }
        // A PostgreSQL action already under way finishes whatever the agent does.
        if let Some(InFlight::Pg(_, done)) = &self.nodes[i].exec_current
            && *done <= now
            && let Some(InFlight::Pg(action, _)) = self.nodes[i].exec_current.take()
        {
            let result = self.finish(i, &action);
            let text = format!("{} {}", action_name(&action), result);
            self.trace
                .push(now, Some(&self.names[i]), TraceKind::Action(text));
        }
        if self.nodes[i].agent.policy.is_none() {
            // The agent process is gone, and its lease keeper with it.
            self.nodes[i].keeper = Keeper::default();
        }
        let node = &self.nodes[i];
        if !node.agent_running(now) {
            return;
        }
        self.keep_lease(i);
        if now < self.nodes[i].agent.stalled_until {
            return;
        }
        for _ in 0..64 {
            match &self.nodes[i].exec_current {
                Some(InFlight::Pg(..)) => return,
                Some(InFlight::Propose(seq, until)) => {
                    if self.consensus.applied_seq < *seq && now < *until {
                        return;
                    }
                    self.nodes[i].exec_current = None;
                }
                None => {}
            }
            if let Some(action) = self.nodes[i].exec_queue.pop_front() {
                self.start(i, action);
                continue;
            }
            self.nodes[i].keeper.busy_since = None;
            if self.nodes[i].clock() >= self.nodes[i].next_loop_ms {
                self.step_agent(i);
                continue;
            }
            return;
        }
    }

    /// `ramd`'s lease keeper: while node `i`'s step has been running for at least the
    /// renew interval (a long PostgreSQL action, a stalled loop), renew the lease on the
    /// policy's grant, one renewal in flight at a time.
    fn keep_lease(&mut self, i: usize) {
        let now = self.now_ms;
        let clock = self.nodes[i].clock();
        let stalled = now < self.nodes[i].agent.stalled_until;
        let keeper = &mut self.nodes[i].keeper;
        if stalled && keeper.busy_since.is_none() {
            keeper.busy_since = Some(clock);
        }
        let Some(grant) = keeper.grant else {
            return;
        };
        if let Some((_, stamp, _)) = keeper.pending {
            if clock.saturating_sub(stamp) < grant.validity_ms {
                return;
            }
            keeper.pending = None; // lost with a minority leader: try again
        }
        let busy = keeper
            .busy_since
            .is_some_and(|b| clock.saturating_sub(b) >= grant.renew_interval_ms);
        let due = keeper
            .last_sent
            .is_none_or(|t| clock.saturating_sub(t) >= grant.renew_interval_ms);
        if !busy || !due || clock >= grant.until.0 || !self.majority[i] {
            return;
        }
        keeper.last_sent = Some(clock);
        let op = Operation::RenewLease {
            node: self.nodes[i].identity.node.clone(),
            epoch: grant.epoch,
            holder_clock: Millis(clock),
        };
        let delay = self.commit_delay();
        let wall_ms = self.wall_ms();
        let seq = self.consensus.propose(now, delay, i, op, wall_ms);
        self.nodes[i].keeper.pending = Some((seq, clock, grant.epoch));
    }

    /// A proposal from node `i` was applied: if it is its keeper's renewal, extend the
    /// keeper's fence deadline (or drop the grant when it was refused).
    pub(super) fn keeper_applied(&mut self, i: usize, seq: u64, applied: bool) {
        let keeper = &mut self.nodes[i].keeper;
        let Some((pending, stamp, epoch)) = keeper.pending else {
            return;
        };
        if pending != seq {
            return;
        }
        keeper.pending = None;
        match keeper.grant {
            Some(g) if applied && g.epoch == epoch => {
                let deadline = stamp + g.validity_ms;
                keeper.deadline = Some((
                    epoch,
                    keeper
                        .deadline
                        .filter(|(e, _)| *e == epoch)
                        .map_or(deadline, |(_, d)| d.max(deadline)),
                ));
                keeper.renewals += 1;
            }
            _ => keeper.grant = None,
        }
    }

    fn start(&mut self, i: usize, action: Action) {
        let now = self.now_ms;
        let action = match action {
            Action::Propose { op } => {
                if self.majority[i] {
                    let delay = self.commit_delay();
                    let wall_ms = self.wall_ms();
                    let seq = self.consensus.propose(now, delay, i, op, wall_ms);
                    let until = now + self.cfg.propose_timeout_ms;
                    self.nodes[i].exec_current = Some(InFlight::Propose(seq, until));
                } else {
                    let text = format!("proposal {} failed: no majority", op.name());
                    self.trace
                        .push(now, Some(&self.names[i]), TraceKind::Action(text));
                }
                return;
            }
            Action::Pg { action } => action,
        };
        if matches!(action, PgAction::SetSynchronousStandbyNames { .. })
            && self.nodes[i].agent.lease.is_some()
            && !self.lease_valid(i)
        {
            // As ramd: a new synchronous_standby_names may release commits the fence
            // acknowledged earlier; only a primary whose lease is still valid sets it (a
            // decision taken before a freeze must not be finished after it).
            let text = "set synchronous_standby_names skipped: the lease of this decision ran out"
                .to_string();
            self.trace
                .push(now, Some(&self.names[i]), TraceKind::Action(text));
            return;
        }
        let t = self.cfg.action_times.clone();
        let span = match &action {
            PgAction::Bootstrap { .. } => t.bootstrap_ms,
            PgAction::Start { .. } => t.start_ms,
            PgAction::Stop {
                mode: StopMode::Immediate,
            } => t.stop_immediate_ms,
            PgAction::Stop { .. } => t.stop_fast_ms,
            PgAction::Promote => t.promote_ms,
            PgAction::Follow { .. } => t.follow_ms,
            PgAction::Rejoin { .. } => t.rejoin_ms,
            PgAction::Clone { .. } => t.clone_ms,
            PgAction::SetSynchronousStandbyNames { .. } => t.reload_ms,
            PgAction::EnsureSlots { .. } => t.slots_ms,
        };
        if matches!(action, PgAction::Rejoin { .. }) {
            // pg_rewind and base backups need a stopped server: stop at once.
            self.nodes[i].pg.running = false;
            self.nodes[i].pg.streaming = false;
        }
        let d = self.duration(span);
        self.nodes[i].exec_current = Some(InFlight::Pg(action, now + d));
    }

    /// Whether `source` can serve a rewind or clone to `i` right now.
    fn source_ok(&self, i: usize, source: usize) -> bool {
        let s = &self.nodes[source];
        source != i
            && s.host_up
            && s.pg.running
            && s.pg.data != DataDirState::Empty
            && self.net.link_up(i, source)
    }

    fn finish(&mut self, i: usize, action: &PgAction) -> String {
        match action {
            PgAction::Bootstrap { parameters } => {
                if self.nodes[i].pg.data != DataDirState::Empty {
                    return "failed: data directory not empty".into();
                }
                if let Some(value) = parameters.get("synchronous_standby_names") {
                    match rale_sync::names::StandbyNames::parse(value) {
                        Ok(names) => {
                            self.nodes[i].pg.sync_names = names;
                            self.nodes[i].pg.sync_names_text = value.clone();
                        }
                        Err(e) => return format!("failed: PostgreSQL rejects the value: {e}"),
                    }
                }
                let system_id = 7_000_000_000_000_000_000 + self.next_record_id;
                let id = self.record_id();
                let pg = &mut self.nodes[i].pg;
                pg.data = DataDirState::Initialized { system_id };
                pg.wal.push(WalRecord {
                    id,
                    kind: RecordKind::Init,
                });
                pg.running = true;
                pg.standby = false;
                pg.upstream = None;
                format!("done: initialised (system identifier {system_id}), running as primary")
            }
            PgAction::Start { upstream } => {
                let up = match upstream {
                    Some(u) => match self.index_of(u) {
                        Some(u) => Some(u),
                        None => return format!("failed: unknown upstream {u}"),
                    },
                    None => None,
                };
                let pg = &mut self.nodes[i].pg;
                if pg.data == DataDirState::Empty {
                    return "failed: empty data directory".into();
                }
                if pg.running {
                    return "no-op: already running".into();
                }
                pg.running = true;
                if let Some(u) = up {
                    pg.standby = true;
                    pg.upstream = Some(u);
                }
                format!(
                    "done: running as {}",
                    if pg.standby { "standby" } else { "primary" }
                )
            }
            PgAction::Stop { mode } => {
                if !self.nodes[i].pg.running {
                    return "no-op: not running".into();
                }
                let shipped = self.stop_pg(i, *mode != StopMode::Immediate);
                format!("done: stopped ({mode:?}, shipped all WAL to {shipped} standbys)")
            }
            PgAction::Promote => {
                let tl = Timeline(self.next_timeline);
                let id = self.next_record_id;
                let pg = &mut self.nodes[i].pg;
                if !pg.is_standby() {
                    return "failed: not a running standby".into();
                }
                self.next_timeline += 1;
                self.next_record_id += 1;
                pg.wal.push(WalRecord {
                    id,
                    kind: RecordKind::TimelineSwitch(tl),
                });
                pg.standby = false;
                pg.upstream = None;
                pg.streaming = false;
                self.on_promoted(i);
                format!("done: promoted, timeline {tl}")
            }
            PgAction::Follow { upstream } => {
                let up = match upstream {
                    Some(u) => match self.index_of(u) {
                        Some(u) => Some(u),
                        None => return format!("failed: unknown upstream {u}"),
                    },
                    None => None,
                };
                let pg = &mut self.nodes[i].pg;
                if !pg.running {
                    // Stopped: the standby configuration is written for the next start
                    // (as LocalPostgres does), whatever the server was before.
                    pg.standby = true;
                    pg.upstream = up;
                    pg.streaming = false;
                    return "done: configured as a standby for the next start".into();
                }
                if !pg.standby {
                    return "no-op: not a standby".into();
                }
                pg.upstream = up;
                if up.is_none() {
                    pg.streaming = false;
                }
                "done".into()
            }
            PgAction::Rejoin { source, rewind } => {
                let Some(s) = self.index_of(source) else {
                    return format!("failed: unknown source {source}");
                };
                if !self.source_ok(i, s) {
                    return format!("failed: {source} unreachable; PostgreSQL left stopped");
                }
                let src = self.nodes[s].pg.clone();
                let pg = &mut self.nodes[i].pg;
                let same_system = pg.data == src.data;
                let how = if *rewind && same_system {
                    let keep = pg.wal.common_prefix(&src.wal);
                    let dropped = pg.wal.len() - keep;
                    pg.wal.truncate(keep);
                    format!("rewound ({dropped} records discarded)")
                } else {
                    pg.wal = src.wal.clone();
                    pg.data = src.data;
                    "cloned afresh".to_string()
                };
                pg.fence_flush = pg.fence_flush.min(pg.wal.len());
                pg.running = true;
                pg.standby = true;
                pg.upstream = Some(s);
                format!("done: {how}, streaming from {source}")
            }
            PgAction::Clone { source } => {
                let Some(s) = self.index_of(source) else {
                    return format!("failed: unknown source {source}");
                };
                if self.nodes[i].pg.data != DataDirState::Empty {
                    return "failed: data directory not empty".into();
                }
                if !self.source_ok(i, s) {
                    return format!("failed: {source} unreachable");
                }
                let (wal, data) = (self.nodes[s].pg.wal.clone(), self.nodes[s].pg.data);
                let pg = &mut self.nodes[i].pg;
                pg.wal = wal;
                pg.data = data;
                pg.running = true;
                pg.standby = true;
                pg.upstream = Some(s);
                format!(
                    "done: cloned {} records, streaming from {source}",
                    pg.wal.len()
                )
            }
            PgAction::SetSynchronousStandbyNames { value } => {
                match rale_sync::names::StandbyNames::parse(value) {
                    Ok(names) => {
                        let pg = &mut self.nodes[i].pg;
                        pg.sync_names = names;
                        pg.sync_names_text = value.clone();
                        "done".into()
                    }
                    Err(e) => format!("failed: PostgreSQL rejects the value: {e}"),
                }
            }
            PgAction::EnsureSlots { .. } => "done".into(),
        }
    }

    /// Stops node `i`'s PostgreSQL; a clean (`fast`) stop of a primary first ships all
    /// its WAL to the standbys streaming from it, as PostgreSQL's shutdown checkpoint
    /// does. Returns how many standbys received it.
    pub(super) fn stop_pg(&mut self, i: usize, fast: bool) -> usize {
        let mut shipped = 0;
        if fast && self.nodes[i].pg.running && self.nodes[i].pg.is_primary() {
            for j in 0..self.nodes.len() {
                if self.streams_from(j, i) {
                    let src = self.nodes[i].pg.wal.clone();
                    let len = src.len();
                    self.nodes[j].pg.wal.extend_from(&src, len);
                    shipped += 1;
                }
            }
        }
        self.nodes[i].pg.running = false;
        self.nodes[i].pg.streaming = false;
        shipped
    }

    pub(super) fn record_id(&mut self) -> u64 {
        let id = self.next_record_id;
        self.next_record_id += 1;
        id
    }
}

fn action_name(a: &PgAction) -> String {
    match a {
        PgAction::Bootstrap { .. } => "bootstrap".into(),
        PgAction::Start { upstream } => format!("start(upstream {upstream:?})"),
        PgAction::Stop { mode } => format!("stop({mode:?})"),
        PgAction::Promote => "promote".into(),
        PgAction::Follow { upstream } => format!("follow({upstream:?})"),
        PgAction::Rejoin { source, rewind } => format!("rejoin({source}, rewind {rewind})"),
        PgAction::Clone { source } => format!("clone({source})"),
        PgAction::SetSynchronousStandbyNames { value } => {
            format!("set synchronous_standby_names '{value}'")
        }
        PgAction::EnsureSlots { slots } => format!("ensure slots {slots:?}"),
    }
}
