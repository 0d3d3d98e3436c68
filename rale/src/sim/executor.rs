//! Running the agent that ships inside the simulated world: each node's
//! [`crate::agent::Agent`] (HA loop, executor, lease keeper) is polled on the virtual
//! clock, and the simulator serves what it asks through its [`Port`]: the PostgreSQL
//! status and the cluster state at once, a proposal when consensus applies it, a
//! PostgreSQL operation when its simulated duration has passed.
//!
//! A PostgreSQL operation already under way completes even if the agent then freezes or
//! dies (the command was sent); the rest of the agent's work dies with it; a host crash
//! loses everything in flight. A frozen agent is not polled at all; a stalled HA loop
//! gets nothing served while its lease keeper goes on.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use rand::Rng;
use tokio::sync::watch;

use super::port::{Handle, Hooks, Origin, PgDone, PgOp, Port, Request, Response};
use super::postgres::{RecordKind, WalRecord};
use super::trace::TraceKind;
use super::world::{AgentProc, InFlight, Sim};
use crate::Error;
use crate::agent::Agent;
use crate::pg::{ApplyReport, StopMode};
use crate::state::Outcome;
use crate::status::DataDirState;
use crate::types::{Millis, Timeline};

/// How long `ramd` waits for its HA loop to stop after SIGTERM before it exits anyway.
const SHUTDOWN_WAIT_MS: u64 = 60_000;
/// Bound on poll/serve rounds per node and tick.
const ROUNDS_PER_TICK: usize = 64;

impl Sim {
    /// Starts node `i`'s agent process: the policy from the factory, a fresh port, a
    /// closed fence.
    pub(super) fn start_agent(&mut self, i: usize) {
        let clock = self.nodes[i].clock();
        let identity = self.nodes[i].identity.clone();
        let policy = (self.factory)(identity.clone(), Millis(clock));
        let port = Arc::new(Port::default());
        {
            let mut p = port.lock();
            p.clock = clock;
            p.wall = self.wall_ms();
        }
        let ha = Arc::new(Handle {
            port: port.clone(),
            origin: Origin::Loop,
        });
        let keeper = Arc::new(Handle {
            port: port.clone(),
            origin: Origin::Keeper,
        });
        let agent = Agent::builder(identity, ha.clone(), ha.clone(), ha.clone())
            .policy(policy)
            .hooks(Arc::new(Hooks(port.clone())))
            .keeper_parts(keeper.clone(), keeper)
            .failsafe_client(ha)
            .build();
        let fence = agent.fence();
        let failsafe = agent.failsafe_gate();
        let (shutdown, rx) = watch::channel(false);
        port.wake_all();
        self.nodes[i].agent.proc = Some(AgentProc {
            run: Box::pin(agent.run(rx)),
            port,
            fence,
            failsafe,
            shutdown,
            stopping_since: None,
        });
    }

    /// Drives node `i` for one tick: completes the PostgreSQL operation in progress, then
    /// polls the agent and serves its requests until neither makes progress.
    pub(super) fn run_agent(&mut self, i: usize) {
        let now = self.now_ms;
        if !self.nodes[i].host_up {
            return;
        }
        if self.nodes[i]
            .exec_current
            .as_ref()
            .is_some_and(|f| f.done_at <= now)
            && let Some(f) = self.nodes[i].exec_current.take()
        {
            let (result, text) = self.finish(i, &f.op);
            self.trace.push(
                now,
                Some(&self.names[i]),
                TraceKind::Action(format!("{} {text}", op_name(&f.op))),
            );
            f.port.respond(f.ticket, Response::Pg(result));
        }
        let Some(proc) = self.nodes[i].agent.proc.as_ref() else {
            return;
        };
        if now < self.nodes[i].agent.frozen_until {
            return;
        }
        if proc
            .stopping_since
            .is_some_and(|t| now.saturating_sub(t) >= SHUTDOWN_WAIT_MS)
        {
            self.agent_exited(i, "did not stop within 60 s after SIGTERM: exits anyway");
            return;
        }
        let port = proc.port.clone();
        {
            let held = now < self.nodes[i].agent.stalled_until;
            let mut p = port.lock();
            p.clock = self.nodes[i].clock();
            p.wall = self.wall_ms();
            p.majority = self.majority[i];
            if p.loop_held && !held {
                port.wake.set();
            }
            p.loop_held = held;
        }
        port.fire_timers();
        let waker = Waker::from(port.wake.clone());
        for _ in 0..ROUNDS_PER_TICK {
            let mut progressed = false;
            if port.wake.take() {
                progressed = true;
                let Some(proc) = self.nodes[i].agent.proc.as_mut() else {
                    return;
                };
                let mut cx = Context::from_waker(&waker);
                if let Poll::Ready(ended) = proc.run.as_mut().poll(&mut cx) {
                    self.drain_decisions(i, &port);
                    let why = match ended {
                        Ok(()) => "exits after its shutdown".to_string(),
                        Err(e) => format!("exits: {e}"),
                    };
                    self.agent_exited(i, &why);
                    return;
                }
            }
            if self.serve(i, &port) {
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        self.drain_decisions(i, &port);
    }

    fn agent_exited(&mut self, i: usize, why: &str) {
        let now = self.now_ms;
        let node = &mut self.nodes[i];
        node.agent.proc = None;
        // An agent that exits unasked is restarted by systemd shortly after.
        node.agent.down_until.get_or_insert(now + 1_000);
        self.trace.push(
            now,
            Some(&self.names[i]),
            TraceKind::Fault(format!("agent {why}")),
        );
    }

    fn drain_decisions(&mut self, i: usize, port: &Port) {
        let decisions = std::mem::take(&mut port.lock().decisions);
        for (clock, decision, cluster_read) in decisions {
            let summary = self.nodes[i].pg.summary(&self.names, self.cfg.record_bytes);
            self.trace.decision(
                self.now_ms,
                i,
                &self.names[i],
                clock,
                &decision,
                summary,
                cluster_read,
            );
        }
    }

    /// Serves node `i`'s waiting requests; returns whether it served any. One PostgreSQL
    /// operation runs at a time; a stalled loop's requests wait.
    fn serve(&mut self, i: usize, port: &Arc<Port>) -> bool {
        let taken = {
            let mut p = port.lock();
            let held = p.loop_held;
            let mut pg_busy = self.nodes[i].exec_current.is_some();
            let mut taken = Vec::new();
            let mut kept = std::collections::VecDeque::new();
            while let Some((ticket, origin, request)) = p.requests.pop_front() {
                let is_pg = matches!(request, Request::Pg(_));
                if (held && origin == Origin::Loop) || (is_pg && pg_busy) {
                    kept.push_back((ticket, origin, request));
                } else {
                    pg_busy |= is_pg;
                    taken.push((ticket, request));
                }
            }
            p.requests = kept;
            taken
        };
        let served = !taken.is_empty();
        for (ticket, request) in taken {
            match request {
                Request::Status => {
                    let s = self.pg_status(i);
                    port.respond(ticket, Response::Status(s));
                }
                Request::Read => {
                    let r = if self.majority[i] {
                        Ok(self.consensus.shared_state())
                    } else {
                        Err(Error::NoMajority("simulated minority".into()))
                    };
                    port.respond(ticket, Response::Read(r));
                }
                Request::Propose(cmd) => {
                    if self.majority[i] {
                        let delay = self.commit_delay();
                        let seq =
                            self.consensus
                                .propose(self.now_ms, delay, i, cmd.op, cmd.wall_ms);
                        self.proposals.insert(seq, (port.clone(), ticket));
                    } else {
                        let text = format!("proposal {} failed: no majority", cmd.op.name());
                        self.trace
                            .push(self.now_ms, Some(&self.names[i]), TraceKind::Action(text));
                        port.respond(
                            ticket,
                            Response::Propose(Err(Error::NoMajority("simulated minority".into()))),
                        );
                    }
                }
                Request::Failsafe(to, request) => {
                    let r = self.failsafe_confirm(i, &to, &request);
                    let text = match &r {
                        Ok(a) => format!("failsafe: {to} confirmed for {} ms", a.promised_ms),
                        Err(e) => format!("failsafe: {to} did not confirm: {e}"),
                    };
                    self.trace
                        .push(self.now_ms, Some(&self.names[i]), TraceKind::Action(text));
                    port.respond(ticket, Response::Failsafe(r));
                }
                Request::Pg(op) => {
                    let span = self.span_of(&op);
                    let d = self.duration(span);
                    self.nodes[i].exec_current = Some(InFlight {
                        op,
                        done_at: self.now_ms + d,
                        port: port.clone(),
                        ticket,
                    });
                }
            }
        }
        served
    }

    /// Node `i`'s agent asks `to`'s agent to confirm it as the primary: answered by
    /// `to`'s gate on its clock if the link is up and its agent runs (a stalled HA loop
    /// still answers: the API does not run on it).
    fn failsafe_confirm(
        &self,
        i: usize,
        to: &crate::types::NodeId,
        request: &crate::decide::failsafe::FailsafeRequest,
    ) -> std::result::Result<crate::decide::failsafe::FailsafeAnswer, String> {
        let j = self
            .index_of(to)
            .ok_or_else(|| format!("unknown member {to}"))?;
        if !self.net.link_up(i, j) {
            return Err("unreachable (network)".into());
        }
        if !self.nodes[j].agent_running(self.now_ms) {
            return Err("its agent does not answer".into());
        }
        let gate = self.nodes[j]
            .agent
            .proc
            .as_ref()
            .map(|p| p.failsafe.clone())
            .ok_or("its agent does not run")?;
        gate.confirm_at(request, Millis(self.nodes[j].clock()))
    }

    /// A proposal was applied: answer the agent that made it.
    pub(super) fn proposal_applied(&mut self, seq: u64, outcome: &Outcome) {
        if let Some((port, ticket)) = self.proposals.remove(&seq) {
            port.respond(ticket, Response::Propose(Ok(outcome.clone())));
        }
    }

    fn span_of(&self, op: &PgOp) -> super::config::Span {
        let t = &self.cfg.action_times;
        match op {
            PgOp::Bootstrap(_) => t.bootstrap_ms,
            PgOp::Start(_) | PgOp::Restart => t.start_ms,
            PgOp::Stop(StopMode::Immediate) => t.stop_immediate_ms,
            PgOp::Stop(_) => t.stop_fast_ms,
            PgOp::Promote => t.promote_ms,
            PgOp::Follow(_) => t.follow_ms,
            PgOp::Rewind(_) => t.rejoin_ms,
            PgOp::Clone(_) => t.clone_ms,
            PgOp::SetParameters(_) | PgOp::ResetParameters | PgOp::Reload => t.reload_ms,
            PgOp::EnsureSlots(_) => t.slots_ms,
        }
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

    /// Completes `op` on node `i`: its result for the agent and a line for the trace.
    fn finish(&mut self, i: usize, op: &PgOp) -> (Result<PgDone, String>, String) {
        let fail = |why: String| (Err(why.clone()), format!("failed: {why}"));
        match op {
            PgOp::Bootstrap(parameters) => {
                if self.nodes[i].pg.data != DataDirState::Empty {
                    return fail("data directory not empty".into());
                }
                if let Some(value) = parameters.get("synchronous_standby_names") {
                    match rale_sync::names::StandbyNames::parse(value) {
                        Ok(names) => {
                            self.nodes[i].pg.sync_names = names;
                            self.nodes[i].pg.sync_names_text = value.clone();
                        }
                        Err(e) => return fail(format!("PostgreSQL rejects the value: {e}")),
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
                (
                    Ok(PgDone::SystemId(system_id)),
                    format!(
                        "done: initialised (system identifier {system_id}), running as primary"
                    ),
                )
            }
            PgOp::Start(upstream) => {
                let up = match upstream {
                    Some(u) => match self.index_of(u) {
                        Some(u) => Some(u),
                        None => return fail(format!("unknown upstream {u}")),
                    },
                    None => None,
                };
                let pg = &mut self.nodes[i].pg;
                if pg.data == DataDirState::Empty {
                    return fail("empty data directory".into());
                }
                if pg.running {
                    return (Ok(PgDone::Unit), "no-op: already running".into());
                }
                pg.running = true;
                if let Some(u) = up {
                    pg.standby = true;
                    pg.upstream = Some(u);
                }
                let role = if pg.standby { "standby" } else { "primary" };
                (Ok(PgDone::Unit), format!("done: running as {role}"))
            }
            PgOp::Stop(mode) => {
                if !self.nodes[i].pg.running {
                    return (Ok(PgDone::Unit), "no-op: not running".into());
                }
                let shipped = self.stop_pg(i, *mode != StopMode::Immediate);
                (
                    Ok(PgDone::Unit),
                    format!("done: stopped ({mode:?}, shipped all WAL to {shipped} standbys)"),
                )
            }
            PgOp::Restart => {
                if !self.nodes[i].pg.running {
                    return fail("not running".into());
                }
                self.stop_pg(i, true);
                self.nodes[i].pg.running = true;
                (Ok(PgDone::Unit), "done: restarted".into())
            }
            PgOp::Reload | PgOp::ResetParameters => {
                (Ok(PgDone::Report(ApplyReport::default())), "done".into())
            }
            PgOp::Promote => {
                let tl = Timeline(self.next_timeline);
                let id = self.next_record_id;
                let pg = &mut self.nodes[i].pg;
                if !pg.is_standby() {
                    return fail("not a running standby".into());
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
                (Ok(PgDone::Unit), format!("done: promoted, timeline {tl}"))
            }
            PgOp::Follow(upstream) => {
                let up = match upstream {
                    Some(u) => match self.index_of(u) {
                        Some(u) => Some(u),
                        None => return fail(format!("unknown upstream {u}")),
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
                    return (
                        Ok(PgDone::Unit),
                        "done: configured as a standby for the next start".into(),
                    );
                }
                if !pg.standby {
                    return (Ok(PgDone::Unit), "no-op: not a standby".into());
                }
                pg.upstream = up;
                if up.is_none() {
                    pg.streaming = false;
                }
                (Ok(PgDone::Unit), "done".into())
            }
            PgOp::Rewind(source) => {
                let Some(s) = self.index_of(source) else {
                    return fail(format!("unknown source {source}"));
                };
                if self.nodes[i].pg.running {
                    return fail("pg_rewind needs a stopped server".into());
                }
                if !self.source_ok(i, s) {
                    return fail(format!("{source} unreachable"));
                }
                if self.nodes[i].pg.data != self.nodes[s].pg.data {
                    return fail(format!("{source} is another database system"));
                }
                if self.rng.gen_range(0..100) < self.cfg.rewind_failure_percent {
                    return fail(format!(
                        "could not find the WAL record where the timelines diverged on {source}"
                    ));
                }
                let src = self.nodes[s].pg.wal.clone();
                let pg = &mut self.nodes[i].pg;
                let keep = pg.wal.common_prefix(&src);
                let dropped = pg.wal.len() - keep;
                pg.wal.truncate(keep);
                pg.fence_flush = pg.fence_flush.min(pg.wal.len());
                (
                    Ok(PgDone::Unit),
                    format!("done: rewound from {source} ({dropped} records discarded)"),
                )
            }
            PgOp::Clone(source) => {
                let Some(s) = self.index_of(source) else {
                    return fail(format!("unknown source {source}"));
                };
                if self.nodes[i].pg.running {
                    return fail("a base backup needs a stopped server".into());
                }
                if !self.source_ok(i, s) {
                    // As LocalPostgres: the data directory is emptied only once the
                    // source answers.
                    return fail(format!("{source} unreachable; data directory untouched"));
                }
                let (wal, data) = (self.nodes[s].pg.wal.clone(), self.nodes[s].pg.data);
                let pg = &mut self.nodes[i].pg;
                pg.wal = wal;
                pg.data = data;
                pg.fence_flush = pg.fence_flush.min(pg.wal.len());
                pg.standby = true;
                pg.upstream = Some(s);
                pg.streaming = false;
                (
                    Ok(PgDone::Unit),
                    format!("done: cloned {} records from {source}", pg.wal.len()),
                )
            }
            PgOp::SetParameters(parameters) => {
                if let Some(value) = parameters.get("synchronous_standby_names") {
                    match rale_sync::names::StandbyNames::parse(value) {
                        Ok(names) => {
                            let pg = &mut self.nodes[i].pg;
                            pg.sync_names = names;
                            pg.sync_names_text = value.clone();
                        }
                        Err(e) => return fail(format!("PostgreSQL rejects the value: {e}")),
                    }
                }
                let report = ApplyReport {
                    reloaded: parameters.keys().cloned().collect(),
                    pending_restart: Vec::new(),
                };
                (Ok(PgDone::Report(report)), "done".into())
            }
            PgOp::EnsureSlots(_) => (Ok(PgDone::Unit), "done".into()),
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

fn op_name(op: &PgOp) -> String {
    match op {
        PgOp::Bootstrap(_) => "bootstrap".into(),
        PgOp::Start(upstream) => format!("start(upstream {upstream:?})"),
        PgOp::Stop(mode) => format!("stop({mode:?})"),
        PgOp::Restart => "restart".into(),
        PgOp::Reload => "reload".into(),
        PgOp::Promote => "promote".into(),
        PgOp::Follow(upstream) => format!("follow({upstream:?})"),
        PgOp::Rewind(source) => format!("pg_rewind from {source}"),
        PgOp::Clone(source) => format!("base backup from {source}"),
        PgOp::SetParameters(p) => format!("set parameters {p:?}"),
        PgOp::ResetParameters => "reset parameters".into(),
        PgOp::EnsureSlots(slots) => format!("ensure slots {slots:?}"),
    }
}
