//! The invariants, checked after every tick, and the run's [`Report`].
//!
//! - **I1 split brain**: never two nodes *writable* at the same instant (PostgreSQL
//!   runs as a primary and its commit rule — fence and synchronous standbys — could
//!   acknowledge a write now); and no acknowledgement from a primary on an older
//!   timeline after a newer timeline's first acknowledgement.
//! - **I2 no lost write**: whenever a node completes a promotion, and at the end, the
//!   primary's WAL holds every acknowledged write — always in synchronous modes and in
//!   fault-free runs; in asynchronous mode the writes a promotion leaves behind are
//!   recorded as [`AsyncLoss`]es and must not exceed `maximum_lag_on_failover_bytes`.
//! - **I3 liveness**: `liveness_bound_ms` after the final heal there is exactly one
//!   primary, it holds the lease and can acknowledge writes, and every other node runs
//!   as a standby streaming from it.
//! - **I4 promotion rules**: when a lease acquisition is applied, its taker is not
//!   tagged `nofailover` (or priority 0), and — asynchronous failover — lacks no more
//!   than `maximum_lag_on_failover_bytes` of the acknowledged writes the cluster knew of
//!   (below a WAL position some other member reported to consensus, or the position a
//!   released lease recorded), as Patroni measures the lag against the last reported
//!   leader position.

use std::collections::BTreeSet;
use std::fmt;

use rale_sync::SyncMode;

use super::config::SimConfig;
use super::consensus::Pending;
use super::fault::Schedule;
use super::trace::{Trace, TraceKind};
use super::world::{PendingWrite, Sim};
use crate::state::{HistoryKind, Operation, Outcome};
use crate::types::{NodeId, Tags, Timeline};

/// Which invariant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    /// I1: two writable primaries, or an acknowledgement from an older timeline.
    SplitBrain,
    /// I2: an acknowledged write missing from the primary's history.
    LostWrite,
    /// I3: no single healthy primary with streaming replicas after healing.
    Liveness,
    /// I4: a `nofailover` node or a too-lagging node took the lease.
    BadPromotion,
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invariant::SplitBrain => "I1 split brain",
            Invariant::LostWrite => "I2 lost acknowledged write",
            Invariant::Liveness => "I3 liveness",
            Invariant::BadPromotion => "I4 promotion rules",
        })
    }
}

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which.
    pub invariant: Invariant,
    /// Virtual time.
    pub at_ms: u64,
    /// What exactly, in words.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {} ms: {}",
            self.invariant, self.at_ms, self.message
        )
    }
}

/// An acknowledged write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckedWrite {
    /// Write (record) id.
    pub id: u64,
    /// The primary that acknowledged it.
    pub node: NodeId,
    /// Its index in that primary's WAL.
    pub idx: usize,
    /// The primary's timeline.
    pub timeline: Timeline,
    /// When.
    pub at_ms: u64,
    /// Whether a synchronous promise covered it: synchronous mode with a recorded
    /// synchronous set that requires acknowledgements (`quorum > 0`) when it was
    /// acknowledged. A non-strict primary that lost its synchronous standbys records
    /// `quorum 0` before it acknowledges alone; writes of that window are asynchronous.
    pub covered: bool,
}

/// Acknowledged writes an asynchronous-mode promotion left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsyncLoss {
    /// When the promotion completed.
    pub at_ms: u64,
    /// The promoted node.
    pub node: NodeId,
    /// How many writes.
    pub writes: usize,
    /// Their size.
    pub bytes: u64,
}

/// What a run did and what it broke.
#[derive(Clone, Debug)]
pub struct Report {
    /// The schedule that ran.
    pub schedule: Schedule,
    /// Broken invariants (the run stops at the first one).
    pub violations: Vec<Violation>,
    /// Acknowledged writes.
    pub acked: Vec<AckedWrite>,
    /// Asynchronous-mode losses at promotions.
    pub async_losses: Vec<AsyncLoss>,
    /// Lease acquisitions applied by failover.
    pub failovers: usize,
    /// Promotions completed.
    pub promotions: usize,
    /// Virtual time simulated, ms.
    pub duration_ms: u64,
    /// The trace.
    pub trace: Trace,
}

impl Report {
    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// Whether `invariant` was broken.
    pub fn violated(&self, invariant: Invariant) -> bool {
        self.violations.iter().any(|v| v.invariant == invariant)
    }

    /// The violations, the schedule (as JSON for `RALE_SIM_REPLAY`) and the end of the
    /// trace (every fault plus the last `tail` events).
    pub fn explain(&self, tail: usize) -> String {
        let mut s = String::new();
        for v in &self.violations {
            s.push_str(&format!("{v}\n"));
        }
        s.push_str(&format!("schedule: {}\n", self.schedule.to_json()));
        s.push_str(&format!(
            "acked {} writes, {} failovers, {} promotions, async losses {:?}\n--- trace ---\n",
            self.acked.len(),
            self.failovers,
            self.promotions,
            self.async_losses
        ));
        s.push_str(&self.trace.tail_text(tail));
        s
    }
}

/// Invariant state of a run.
#[derive(Clone, Debug)]
pub(super) struct Checker {
    sync_mode: bool,
    strict: bool,
    fault_free: bool,
    record_bytes: u64,
    max_lag: Option<u64>,
    check_lag: bool,
    check_loss_bound: bool,
    tags: Vec<(NodeId, Tags)>,
    acked: Vec<AckedWrite>,
    lost: BTreeSet<u64>,
    losses: Vec<AsyncLoss>,
    max_timeline: Timeline,
    violations: Vec<Violation>,
    failovers: usize,
    promotions: usize,
    /// The member that took the lease last (the primary a failover replaces).
    last_taker: Option<usize>,
    /// The primary the last taker replaced.
    replaced: Option<usize>,
}

impl Checker {
    pub fn new(cfg: &SimConfig, schedule: &Schedule) -> Self {
        Checker {
            sync_mode: cfg.dynamic.synchronous.mode != SyncMode::Off,
            strict: cfg.dynamic.synchronous.mode != SyncMode::Off && cfg.dynamic.synchronous.strict,
            fault_free: schedule.faults.is_empty(),
            record_bytes: cfg.record_bytes,
            max_lag: cfg.dynamic.maximum_lag_on_failover_bytes,
            check_lag: cfg.check_failover_lag,
            check_loss_bound: cfg.check_async_loss_bound,
            tags: cfg
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.tags.clone()))
                .collect(),
            acked: Vec::new(),
            lost: BTreeSet::new(),
            losses: Vec::new(),
            max_timeline: Timeline(0),
            violations: Vec::new(),
            failovers: 0,
            promotions: 0,
            last_taker: None,
            replaced: None,
        }
    }

    pub fn failed(&self) -> bool {
        !self.violations.is_empty()
    }

    pub fn report(&mut self, now_ms: u64, schedule: Schedule, trace: Trace) -> Report {
        Report {
            schedule,
            violations: std::mem::take(&mut self.violations),
            acked: std::mem::take(&mut self.acked),
            async_losses: std::mem::take(&mut self.losses),
            failovers: self.failovers,
            promotions: self.promotions,
            duration_ms: now_ms,
            trace,
        }
    }
}

impl Sim {
    fn violate(&mut self, invariant: Invariant, message: String) {
        let v = Violation {
            invariant,
            at_ms: self.now_ms,
            message,
        };
        self.trace
            .push(self.now_ms, None, TraceKind::Violation(v.to_string()));
        self.check.violations.push(v);
    }

    /// Acknowledged writes (not already counted as asynchronous losses) missing from
    /// node `i`'s WAL.
    fn missing_from(&self, i: usize) -> Vec<u64> {
        self.missing_writes(i).map(|a| a.id).collect()
    }

    fn missing_writes(&self, i: usize) -> impl Iterator<Item = &AckedWrite> {
        let wal = &self.nodes[i].pg.wal;
        self.check
            .acked
            .iter()
            .filter(|a| !self.check.lost.contains(&a.id) && !wal.contains(a.idx, a.id))
    }

    /// The asynchronous writes missing from node `i` that the cluster could know about
    /// when `i` replaces the lost primary: below a position some other member
    /// published to consensus on the write's timeline (the lost primary's own report, a
    /// replica's), or below the position `old` recorded when it released its lease.
    /// Writes beyond every report were acknowledged by `old` after its last report and
    /// reached no agent that reported them (a replica whose agent was down, a primary
    /// whose loop was stalled while its lease keeper renewed) — the inherent tail of
    /// asynchronous replication, which no lag rule can see (they are reported as
    /// asynchronous losses when `i` promotes). Found at 100k schedules (R12): a replica
    /// that held the tail but whose agent had not reported for `member_ttl` counted as
    /// "known" although no agent could have known it.
    fn known_missing(&self, i: usize) -> Vec<u64> {
        let mut reports: Vec<(Timeline, crate::types::Lsn)> = self
            .consensus
            .state
            .members
            .values()
            .filter(|m| self.index_of(&m.node) != Some(i))
            .map(|m| (m.timeline, m.lsn))
            .collect();
        // A primary that released its lease recorded where its server stopped.
        if let Some(r) = self
            .consensus
            .state
            .lease
            .as_ref()
            .and_then(|l| l.final_position)
        {
            reports.push(r);
        }
        let rb = self.check.record_bytes;
        self.missing_writes(i)
            .filter(|a| !a.covered)
            .filter(|a| {
                let end = u64::try_from(a.idx).unwrap_or(u64::MAX).saturating_mul(rb);
                reports
                    .iter()
                    .any(|(tl, lsn)| *tl == a.timeline && lsn.0 > end)
            })
            .map(|a| a.id)
            .collect()
    }

    /// Missing writes of node `i` split into (covered by a synchronous promise, not).
    fn missing_split(&self, i: usize) -> (Vec<u64>, Vec<u64>) {
        let (covered, uncovered): (Vec<&AckedWrite>, Vec<&AckedWrite>) =
            self.missing_writes(i).partition(|a| a.covered);
        (
            covered.into_iter().map(|a| a.id).collect(),
            uncovered.into_iter().map(|a| a.id).collect(),
        )
    }

    pub(super) fn on_ack(&mut self, w: &PendingWrite, timeline: Timeline) {
        let node = self.nodes[w.node].identity.node.clone();
        self.trace.push(
            self.now_ms,
            Some(&self.names[w.node]),
            TraceKind::Ack(format!(
                "write {} at index {} on timeline {timeline}",
                w.id, w.idx
            )),
        );
        if timeline < self.check.max_timeline {
            self.violate(
                Invariant::SplitBrain,
                format!(
                    "{node} acknowledged write {} on timeline {timeline} after timeline {} had acknowledged writes",
                    w.id, self.check.max_timeline
                ),
            );
        }
        self.check.max_timeline = self.check.max_timeline.max(timeline);
        let covered = self.check.sync_mode && self.consensus.state.sync.quorum > 0;
        if self.check.strict && !covered {
            self.violate(
                Invariant::LostWrite,
                format!(
                    "{node} acknowledged write {} in strict synchronous mode while the recorded synchronous set promised nothing",
                    w.id
                ),
            );
        }
        self.check.acked.push(AckedWrite {
            id: w.id,
            node,
            idx: w.idx,
            timeline,
            at_ms: self.now_ms,
            covered,
        });
    }

    pub(super) fn on_promoted(&mut self, i: usize) {
        self.check.promotions += 1;
        let (covered, missing) = self.missing_split(i);
        let name = self.names[i].clone();
        let size = |n: usize| u64::try_from(n).unwrap_or(u64::MAX) * self.check.record_bytes;
        if !covered.is_empty() || (self.check.fault_free && !missing.is_empty()) {
            let all: Vec<u64> = covered.iter().chain(&missing).copied().collect();
            let first: Vec<u64> = all.iter().take(10).copied().collect();
            let bytes = size(all.len());
            self.violate(
                Invariant::LostWrite,
                format!(
                    "{name} was promoted without {} acknowledged writes ({bytes} bytes; first ids {first:?}){}",
                    all.len(),
                    if covered.is_empty() {
                        " in a fault-free run"
                    } else {
                        " that a synchronous promise covered"
                    }
                ),
            );
            return;
        }
        if missing.is_empty() {
            return;
        }
        let bytes = size(missing.len());
        self.check.lost.extend(missing.iter().copied());
        self.check.losses.push(AsyncLoss {
            at_ms: self.now_ms,
            node: self.nodes[i].identity.node.clone(),
            writes: missing.len(),
            bytes,
        });
        self.trace.push(
            self.now_ms,
            Some(&name),
            TraceKind::Note(format!(
                "asynchronous loss: {} acknowledged writes ({bytes} bytes)",
                missing.len()
            )),
        );
        // The bound covers what the cluster could know (see `known_missing`); the rest
        // is the tail the lost primary acknowledged after its last report.
        let known = size(self.known_missing(i).len());
        if let Some(max) = self.check.max_lag
            && self.check.check_loss_bound
            && known > max
        {
            self.violate(
                Invariant::LostWrite,
                format!(
                    "{name} was promoted without {} acknowledged writes ({bytes} bytes, {known} of them known to the cluster), more than maximum_lag_on_failover ({max} bytes)",
                    missing.len()
                ),
            );
        }
    }

    pub(super) fn on_applied(&mut self, p: &Pending, outcome: &Outcome) {
        self.proposal_applied(p.seq, outcome);
        let from = self.names[p.from].clone();
        let text = match outcome {
            Outcome::Applied => format!("applied {} from {from}", p.command.op.name()),
            Outcome::Rejected(r) => format!("rejected {} from {from}: {r}", p.command.op.name()),
        };
        let interesting = !matches!(
            p.command.op,
            Operation::PublishMember { .. } | Operation::RenewLease { .. }
        ) || !outcome.is_applied();
        if interesting {
            self.trace
                .push(self.now_ms, Some(&from), TraceKind::Applied(text));
        }
        let Operation::AcquireLease { node, kind, .. } = &p.command.op else {
            return;
        };
        if !outcome.is_applied() {
            return;
        }
        let old = self.check.last_taker;
        self.check.last_taker = self.index_of(node);
        self.check.replaced = old;
        if *kind == HistoryKind::Failover {
            self.check.failovers += 1;
        }
        let tags = self
            .check
            .tags
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, t)| t.clone());
        if tags.as_ref().is_some_and(|t| !t.can_be_primary()) {
            self.violate(
                Invariant::BadPromotion,
                format!(
                    "{node} took the lease ({kind:?}) although tagged {:?}",
                    tags.unwrap_or_default()
                ),
            );
            return;
        }
        if *kind != HistoryKind::Failover || !self.check.check_lag {
            return;
        }
        let (Some(i), Some(max)) = (self.index_of(node), self.check.max_lag) else {
            return;
        };
        // Writes a synchronous promise covered are checked when the taker promotes (I2);
        // the others, as far as the cluster could know them, by maximum_lag_on_failover.
        let missing = self.known_missing(i);
        let bytes = u64::try_from(missing.len()).unwrap_or(u64::MAX) * self.check.record_bytes;
        if bytes > max {
            self.violate(
                Invariant::BadPromotion,
                format!(
                    "{node} took the lease by failover lacking {} acknowledged writes ({bytes} bytes > maximum_lag_on_failover {max})",
                    missing.len()
                ),
            );
        }
    }

    pub(super) fn check_split_brain(&mut self) {
        let writable: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.writable(*i))
            .collect();
        if writable.len() > 1 {
            let who: Vec<String> = writable
                .iter()
                .map(|i| {
                    format!(
                        "{} (timeline {})",
                        self.names[*i],
                        self.nodes[*i].pg.wal.timeline()
                    )
                })
                .collect();
            self.violate(
                Invariant::SplitBrain,
                format!("writable at the same instant: {}", who.join(", ")),
            );
        }
    }

    pub(super) fn final_checks(&mut self) {
        let primaries: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].pg.is_primary())
            .collect();
        let states: Vec<String> = (0..self.nodes.len())
            .map(|i| {
                format!(
                    "{}: {}",
                    self.names[i],
                    self.nodes[i]
                        .pg
                        .summary(&self.names, self.check.record_bytes)
                )
            })
            .collect();
        let [p] = primaries[..] else {
            self.violate(
                Invariant::Liveness,
                format!(
                    "{} primaries {} ms after the final heal ({})",
                    primaries.len(),
                    self.cfg.liveness_bound_ms,
                    states.join("; ")
                ),
            );
            return;
        };
        let holder = self.consensus.state.holder().cloned();
        let mut problems = Vec::new();
        if holder.as_ref() != Some(&self.nodes[p].identity.node) {
            problems.push(format!("the lease holder is {holder:?}"));
        }
        if !self.writable(p) {
            problems.push("the primary cannot acknowledge writes".to_string());
        }
        for j in 0..self.nodes.len() {
            if j != p && !self.streams_from(j, p) {
                problems.push(format!("{} does not stream from it", self.names[j]));
            }
        }
        if !problems.is_empty() {
            self.violate(
                Invariant::Liveness,
                format!(
                    "primary {}: {} ({})",
                    self.names[p],
                    problems.join(", "),
                    states.join("; ")
                ),
            );
            return;
        }
        let missing = self.missing_from(p);
        if !missing.is_empty() {
            let first: Vec<u64> = missing.iter().take(10).copied().collect();
            self.violate(
                Invariant::LostWrite,
                format!(
                    "the final primary {} lacks {} acknowledged writes (first ids {first:?})",
                    self.names[p],
                    missing.len()
                ),
            );
        }
    }
}
