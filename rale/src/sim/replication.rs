//! Streaming replication, the commit rule (commit fence and
//! `synchronous_standby_names`), the client that writes, and the [`PgStatus`] each agent
//! observes.

use rale_sync::enforce::FENCE_APPLICATION_NAME;
use rale_sync::names::SyncMethod;

use super::postgres::{RecordKind, Wal, WalRecord};
use super::world::{PendingWrite, Sim};
use crate::status::{DataDirState, PgStatus, ReplicaConnection};
use crate::types::{Millis, NodeId};

/// `server_version_num` the simulated servers report.
const SERVER_VERSION_NUM: u32 = 150_008;

/// A walsender on a primary, as the commit rule sees it.
struct Walsender {
    name: String,
    /// Records flushed (for the fence: acknowledged while its gate was open).
    flushed: usize,
    /// Whether it would acknowledge a new record right now.
    live: bool,
    /// Member index (`None` for the fence).
    node: Option<usize>,
}

/// How often a diverged standby's WAL receiver shows `streaming` for a moment: about
/// every 0.5 s for about 0.1 s, as the fault campaign measured on PostgreSQL 15 (seed
/// 6498057888742137941, `quorum` mode after a full restart).
const WAL_RETRY_MS: u64 = 500;

impl Sim {
    /// Whether node `j` streams from node `i` right now: both servers run, `j` is a
    /// standby pointed at `i`, the link is up and `j`'s WAL is a prefix of `i`'s.
    pub(super) fn streams_from(&self, j: usize, i: usize) -> bool {
        if i == j {
            return false;
        }
        let (s, u) = (&self.nodes[j], &self.nodes[i]);
        s.host_up
            && u.host_up
            && s.pg.is_standby()
            && s.pg.upstream == Some(i)
            && u.pg.running
            && u.pg.data == s.pg.data
            && self.net.link_up(i, j)
            && s.pg.wal.is_prefix_of(&u.pg.wal)
    }

    /// Whether standby `j` could reach upstream `i` (both run, same system, link up) but
    /// has WAL the upstream does not: it diverged and needs a rewind.
    fn diverged_from(&self, j: usize, i: usize) -> bool {
        if i == j {
            return false;
        }
        let (s, u) = (&self.nodes[j], &self.nodes[i]);
        s.host_up
            && u.host_up
            && s.pg.is_standby()
            && u.pg.running
            && u.pg.data == s.pg.data
            && self.net.link_up(i, j)
            && !s.pg.wal.is_prefix_of(&u.pg.wal)
    }

    /// One tick of streaming for every standby, in member order.
    pub(super) fn replicate(&mut self) {
        for j in 0..self.nodes.len() {
            let Some(u) = self.nodes[j].pg.upstream else {
                self.nodes[j].pg.streaming = false;
                continue;
            };
            let ok = self.streams_from(j, u);
            // A diverged standby's WAL receiver (its WAL is no prefix of the upstream's)
            // keeps reconnecting and shows `streaming` for a moment before the server
            // refuses its start point: what the agent sees, though no WAL flows (found
            // by the fault campaign).
            let blip = !ok
                && self.diverged_from(j, u)
                && self.now_ms % WAL_RETRY_MS < self.cfg.tick_ms.max(1);
            self.nodes[j].pg.streaming = ok || blip;
            if ok {
                let rate = usize::try_from(self.nodes[j].stream_rate).unwrap_or(1);
                let upto = self.nodes[j].pg.wal.len() + rate;
                let src = std::mem::take(&mut self.nodes[u].pg.wal);
                self.nodes[j].pg.wal.extend_from(&src, upto);
                self.nodes[u].pg.wal = src;
            }
        }
    }

    /// Whether node `i`'s agent may act on its lease at its clock: the last decision's
    /// lease, or a later renewal by its lease keeper (same epoch), is still valid.
    pub(super) fn lease_valid(&self, i: usize) -> bool {
        let node = &self.nodes[i];
        node.agent
            .proc
            .as_ref()
            .is_some_and(|p| p.fence.is_open(Millis(node.clock())))
    }

    /// Whether node `i`'s commit fence acknowledges right now: its agent runs (not
    /// frozen) and its lease is valid on its clock ([`Sim::lease_valid`]), as in `ramd`.
    pub(super) fn fence_gate_open(&self, i: usize) -> bool {
        self.nodes[i].agent_running(self.now_ms) && self.lease_valid(i)
    }

    fn walsenders(&self, i: usize) -> Vec<Walsender> {
        let mut out = Vec::new();
        let node = &self.nodes[i];
        // The fence pseudo-standby is connected while the agent process exists (a frozen
        // process keeps its connection but acknowledges nothing).
        if self.fence_enabled() && node.host_up && node.agent.proc.is_some() {
            let open = self.fence_gate_open(i);
            out.push(Walsender {
                name: FENCE_APPLICATION_NAME.into(),
                flushed: node.pg.fence_flush,
                live: open,
                node: None,
            });
        }
        for j in 0..self.nodes.len() {
            if self.streams_from(j, i) {
                out.push(Walsender {
                    name: self.names[j].clone(),
                    flushed: self.nodes[j].pg.wal.len(),
                    live: true,
                    node: Some(j),
                });
            }
        }
        out
    }

    /// Whether commits wait for the fence: configured and enforced.
    fn fence_enabled(&self) -> bool {
        self.consensus.state.config.fence && self.cfg.fence_enforced
    }

    /// The walsenders `synchronous_standby_names` makes synchronous on `i`, with the
    /// number needed: `(method, num, matched)` (matched in priority order for FIRST).
    fn sync_candidates(&self, i: usize) -> Option<(SyncMethod, usize, Vec<Walsender>)> {
        let list = self.nodes[i].pg.sync_names.list()?;
        let mut matched: Vec<(u32, usize, Walsender)> = self
            .walsenders(i)
            .into_iter()
            .enumerate()
            .filter_map(|(k, w)| list.priority_of(&w.name).map(|p| (p, k, w)))
            .collect();
        matched.sort_by_key(|(p, k, _)| (*p, *k));
        let num = usize::try_from(list.num()).unwrap_or(usize::MAX);
        Some((
            list.method(),
            num,
            matched.into_iter().map(|(_, _, w)| w).collect(),
        ))
    }

    /// The synchronous-standby part of the commit rule for the record at `idx` (or, with
    /// `None`, whether a new record could be acknowledged now).
    fn sync_rule(&self, i: usize, idx: Option<usize>) -> bool {
        let Some((method, num, matched)) = self.sync_candidates(i) else {
            return true;
        };
        let acks = |w: &Walsender| match idx {
            Some(idx) => w.flushed > idx,
            None => w.live,
        };
        match method {
            SyncMethod::First => {
                // PostgreSQL picks the `num` connected standbys of highest priority.
                matched.len() >= num && matched.iter().take(num).all(acks)
            }
            SyncMethod::Any => matched.iter().filter(|w| acks(w)).count() >= num,
        }
    }

    /// The full commit rule for the record at `idx` on primary `i`.
    pub(super) fn commit_ok(&self, i: usize, idx: usize) -> bool {
        let fence = !self.fence_enabled() || self.nodes[i].pg.fence_flush > idx;
        fence && self.sync_rule(i, Some(idx))
    }

    /// Whether `i` could acknowledge a write right now: PostgreSQL runs as a primary and
    /// the commit rule is satisfiable (fence open, enough synchronous standbys).
    pub(super) fn writable(&self, i: usize) -> bool {
        let node = &self.nodes[i];
        node.host_up
            && node.pg.is_primary()
            && (!self.fence_enabled() || self.fence_gate_open(i))
            && self.sync_rule(i, None)
    }

    /// The client: sends writes to every primary it reaches, advances the fences and
    /// collects acknowledgements.
    pub(super) fn client(&mut self) {
        let client = self.net.client();
        if self.now_ms >= self.next_write_ms {
            self.next_write_ms = self.now_ms + self.cfg.write_interval_ms;
            for i in 0..self.nodes.len() {
                if self.nodes[i].host_up
                    && self.nodes[i].pg.is_primary()
                    && self.net.link_up(i, client)
                {
                    let id = self.record_id();
                    let wal = &mut self.nodes[i].pg.wal;
                    let idx = wal.len();
                    wal.push(WalRecord {
                        id,
                        kind: RecordKind::Write,
                    });
                    self.pending_writes.push(PendingWrite { id, node: i, idx });
                }
            }
        }
        for i in 0..self.nodes.len() {
            let len = self.nodes[i].pg.wal.len();
            if self.fence_gate_open(i) && self.nodes[i].pg.is_primary() {
                self.nodes[i].pg.fence_flush = len;
            } else {
                let f = &mut self.nodes[i].pg.fence_flush;
                *f = (*f).min(len);
            }
        }
        let pending = std::mem::take(&mut self.pending_writes);
        let mut keep = Vec::with_capacity(pending.len());
        for w in pending {
            let node = &self.nodes[w.node];
            let valid = node.host_up
                && node.pg.is_primary()
                && node.pg.wal.contains(w.idx, w.id)
                && self.net.link_up(w.node, client);
            if !valid {
                continue;
            }
            if self.commit_ok(w.node, w.idx) {
                let tl = self.nodes[w.node].pg.wal.timeline();
                self.on_ack(&w, tl);
            } else {
                keep.push(w);
            }
        }
        self.pending_writes.extend(keep);
    }

    /// What node `i`'s agent observes of its PostgreSQL.
    pub(super) fn pg_status(&self, i: usize) -> PgStatus {
        let pg = &self.nodes[i].pg;
        if !pg.running {
            return PgStatus::stopped(pg.data);
        }
        let lsn = Wal::lsn_of(pg.wal.len(), self.cfg.record_bytes);
        let upstream: Option<NodeId> = if pg.standby {
            pg.upstream.map(|u| self.nodes[u].identity.node.clone())
        } else {
            None
        };
        let mut replicas = Vec::new();
        if !pg.standby {
            let sync = self.sync_candidates(i);
            for j in 0..self.nodes.len() {
                if !self.streams_from(j, i) {
                    continue;
                }
                let name = &self.names[j];
                let sync_state = match &sync {
                    None => "async",
                    Some((method, num, matched)) => {
                        match matched.iter().position(|w| w.node == Some(j)) {
                            None => "async",
                            Some(_) if *method == SyncMethod::Any => "quorum",
                            Some(k) if k < *num => "sync",
                            Some(_) => "potential",
                        }
                    }
                };
                let flushed = Some(Wal::lsn_of(
                    self.nodes[j].pg.wal.len(),
                    self.cfg.record_bytes,
                ));
                replicas.push(ReplicaConnection {
                    application_name: name.clone(),
                    state: "streaming".into(),
                    sync_state: sync_state.into(),
                    write_lsn: flushed,
                    flush_lsn: flushed,
                    replay_lsn: flushed,
                });
            }
        }
        PgStatus {
            data: pg.data,
            running: true,
            reachable: pg.data != DataDirState::Empty,
            in_recovery: pg.standby,
            timeline: pg.wal.timeline(),
            write_lsn: lsn,
            receive_lsn: pg.standby.then_some(lsn),
            replay_lsn: pg.standby.then_some(lsn),
            streaming: pg.standby && pg.streaming,
            upstream,
            replicas,
            synchronous_standby_names: pg.sync_names_text.clone(),
            pending_restart: false,
            server_version_num: SERVER_VERSION_NUM,
            logical_slots: Vec::new(),
            hot_standby_feedback: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use rale_sync::names::StandbyNames;

    use super::super::config::SimConfig;
    use super::super::fault::Schedule;
    use super::super::postgres::{RecordKind, WalRecord};
    use super::super::world::Sim;
    use crate::config::DynamicConfig;
    use crate::decide::{Decision, DecisionKind, Observation, Policy};
    use crate::status::DataDirState;
    use crate::types::Millis;

    /// A policy that does nothing; its fence follows a shared switch.
    struct Idle(Arc<AtomicBool>);

    impl Policy for Idle {
        fn step(&mut self, _obs: &Observation<'_>) -> Decision {
            let mut d = Decision::none(DecisionKind::Steady, "idle");
            if self.0.load(Ordering::SeqCst) {
                d.lease = Some(crate::decide::LeaseHold {
                    epoch: crate::types::Epoch(1),
                    deadline: Millis(u64::MAX),
                });
            }
            d
        }
    }

    /// Opens (or closes) node `i`'s fence as its agent would under a lease.
    fn set_fence(sim: &mut Sim, i: usize, open: bool) {
        let lease = open.then_some((crate::types::Epoch(1), Millis(u64::MAX)));
        sim.nodes[i]
            .agent
            .proc
            .as_ref()
            .expect("the agent runs")
            .fence
            .set(lease);
    }

    /// n1 primary with 10 records, n2 streaming with all of them, n3 with 5.
    fn cluster(fence: bool) -> (Sim, Arc<AtomicBool>) {
        let open = Arc::new(AtomicBool::new(true));
        let o = open.clone();
        let cfg = SimConfig::new(
            3,
            DynamicConfig {
                fence,
                ..DynamicConfig::default()
            },
        );
        let mut sim = Sim::new(
            cfg,
            Schedule::new(1),
            Box::new(move |_, _| Box::new(Idle(o.clone()))),
        )
        .expect("valid");
        sim.restarts();
        set_fence(&mut sim, 0, true);
        let data = DataDirState::Initialized { system_id: 1 };
        let p = &mut sim.nodes[0].pg;
        p.data = data;
        p.running = true;
        p.wal.push(WalRecord {
            id: 1000,
            kind: RecordKind::Init,
        });
        for id in 1001..1010 {
            p.wal.push(WalRecord {
                id,
                kind: RecordKind::Write,
            });
        }
        let wal = p.wal.clone();
        for (j, len) in [(1, 10), (2, 5)] {
            let s = &mut sim.nodes[j].pg;
            s.data = data;
            s.running = true;
            s.standby = true;
            s.upstream = Some(0);
            s.wal.extend_from(&wal, len);
        }
        sim.nodes[0].pg.fence_flush = 10;
        (sim, open)
    }

    fn names(sim: &mut Sim, text: &str) {
        sim.nodes[0].pg.sync_names = StandbyNames::parse(text).expect("valid");
        sim.nodes[0].pg.sync_names_text = text.into();
    }

    #[test]
    fn first_and_any_follow_postgres_rules() {
        let (mut sim, _) = cluster(false);
        assert!(sim.commit_ok(0, 9), "no synchronous standby: immediate");
        names(&mut sim, "FIRST 1 (n3, n2)");
        assert!(!sim.commit_ok(0, 9), "n3 has priority and lacks record 9");
        assert!(sim.commit_ok(0, 4));
        names(&mut sim, "FIRST 2 (n2, n3)");
        assert!(!sim.commit_ok(0, 9) && sim.commit_ok(0, 4));
        names(&mut sim, "ANY 1 (n2, n3)");
        assert!(sim.commit_ok(0, 9), "n2 holds it");
        names(&mut sim, "ANY 2 (n2, n3)");
        assert!(!sim.commit_ok(0, 9) && sim.commit_ok(0, 4));
        // n3 disconnected: FIRST 1 picks n2, FIRST 2 cannot be satisfied.
        sim.nodes[2].pg.running = false;
        names(&mut sim, "FIRST 1 (n3, n2)");
        assert!(sim.commit_ok(0, 9) && sim.writable(0));
        names(&mut sim, "FIRST 2 (n2, n3)");
        assert!(!sim.commit_ok(0, 4) && !sim.writable(0));
        names(&mut sim, "FIRST 1 (rale_blocked)");
        assert!(!sim.writable(0));
    }

    #[test]
    fn the_fence_gates_commits_and_writability() {
        let (mut sim, open) = cluster(true);
        assert!(sim.commit_ok(0, 9) && sim.writable(0));
        let _ = open;
        set_fence(&mut sim, 0, false);
        assert!(!sim.writable(0), "closed fence: not writable");
        assert!(
            sim.commit_ok(0, 9),
            "records the fence acknowledged while open still commit"
        );
        sim.nodes[0].pg.fence_flush = 5;
        assert!(!sim.commit_ok(0, 9));
        set_fence(&mut sim, 0, true);
        // Frozen agent: connected but acknowledging nothing.
        sim.nodes[0].agent.frozen_until = u64::MAX;
        assert!(!sim.writable(0));
        sim.nodes[0].agent.frozen_until = 0;
        names(&mut sim, "FIRST 2 (rale_fence, n2)");
        assert!(sim.writable(0) && !sim.commit_ok(0, 9) && sim.commit_ok(0, 4));
    }
}
