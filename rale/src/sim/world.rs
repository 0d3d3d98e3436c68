//! The simulated world: nodes (host, agent, PostgreSQL, clock), network, consensus,
//! client, and the tick loop that drives them in a fixed order.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::check::{Checker, Report};
use super::config::{SimConfig, Span};
use super::consensus::SimConsensus;
use super::fault::{Fault, Schedule, ScheduledFault, Target};
use super::network::Network;
use super::port::{PgOp, Port};
use super::postgres::SimPostgres;
use super::trace::{Trace, TraceKind};
use crate::agent::FenceDeadline;
use crate::decide::{Decider, NodeIdentity, Policy};
use crate::state::ClusterState;
use crate::types::{Millis, NodeId};
use tokio::sync::watch;

/// Builds the policy of a node's agent, each time the agent (re)starts: the node's
/// identity and its clock reading at start.
pub type PolicyFactory = Box<dyn Fn(NodeIdentity, Millis) -> Box<dyn Policy>>;

/// Wall clock of the simulated world at virtual time 0 (Unix ms).
const WALL_EPOCH_MS: u64 = 1_700_000_000_000;

/// The agent process of a node: the agent that ships ([`crate::agent::Agent`]), polled
/// by the simulator through its [`Port`].
pub(super) struct Agent {
    /// The running process, `None` while the agent is down.
    pub proc: Option<AgentProc>,
    /// Restart time while down (or stopping).
    pub down_until: Option<u64>,
    /// Frozen (`SIGSTOP`) until this time.
    pub frozen_until: u64,
    /// HA loop stalled until this time.
    pub stalled_until: u64,
}

/// A running agent process.
pub(super) struct AgentProc {
    /// `Agent::run` of the agent.
    pub run: Pin<Box<dyn Future<Output = Result<(), crate::agent::AgentError>>>>,
    /// Its seams' connection to the world.
    pub port: Arc<Port>,
    /// The commit fence's deadline the agent moves.
    pub fence: FenceDeadline,
    /// The gate its API answers failsafe confirmations through.
    pub failsafe: Arc<crate::agent::FailsafeGate>,
    /// SIGTERM.
    pub shutdown: watch::Sender<bool>,
    /// When SIGTERM was sent (`ramd` waits at most 60 s for the loop to stop).
    pub stopping_since: Option<u64>,
}

/// One simulated node.
pub(super) struct Node {
    pub identity: NodeIdentity,
    pub host_up: bool,
    pub host_down_until: Option<u64>,
    pub agent: Agent,
    /// Clock: reading = offset + elapsed_ns / 1e6.
    pub clock_offset_ms: u64,
    pub clock_ns: u64,
    pub rate_ppm: i32,
    pub pg: SimPostgres,
    /// The PostgreSQL operation in progress (it completes even if the agent dies).
    pub exec_current: Option<InFlight>,
    pub stream_rate: u64,
}

impl Node {
    pub fn clock(&self) -> u64 {
        self.clock_offset_ms + self.clock_ns / 1_000_000
    }

    /// The agent runs (not down, not frozen) on a running host.
    pub fn agent_running(&self, now_ms: u64) -> bool {
        self.host_up && self.agent.proc.is_some() && now_ms >= self.agent.frozen_until
    }
}

/// A PostgreSQL operation in progress: completes at `done_at`, answering `ticket` on
/// `port` (ignored when the agent that asked is gone).
pub(super) struct InFlight {
    pub op: PgOp,
    pub done_at: u64,
    pub port: Arc<Port>,
    pub ticket: u64,
}

/// A write sent by the client, waiting for its commit acknowledgement.
#[derive(Clone, Debug)]
pub(super) struct PendingWrite {
    pub id: u64,
    pub node: usize,
    pub idx: usize,
}

/// A deterministic simulation of a RALE cluster under a fault schedule.
///
/// Build it with [`Sim::new`] (any [`Policy`]) or [`Sim::with_decider`] (the default
/// [`Decider`]), then [`Sim::run`] it to get a [`Report`].
pub struct Sim {
    pub(super) cfg: SimConfig,
    pub(super) schedule: Schedule,
    pub(super) factory: PolicyFactory,
    pub(super) rng: ChaCha8Rng,
    pub(super) now_ms: u64,
    pub(super) nodes: Vec<Node>,
    pub(super) names: Vec<String>,
    pub(super) net: Network,
    pub(super) consensus: SimConsensus,
    pub(super) majority: Vec<bool>,
    pub(super) trace: Trace,
    pub(super) next_record_id: u64,
    pub(super) next_timeline: u32,
    pub(super) pending_writes: Vec<PendingWrite>,
    pub(super) check: Checker,
    faults: Vec<ScheduledFault>,
    next_fault: usize,
    net_windows: Vec<(u64, u64)>,
    slow: Vec<(u64, u64)>,
    /// Consensus store outages: (end, member index or `None` for every member).
    outages: Vec<(u64, Option<usize>)>,
    window_seq: u64,
    pub(super) next_write_ms: u64,
    /// Proposals in consensus: log sequence number → the port and ticket to answer.
    pub(super) proposals: BTreeMap<u64, (Arc<Port>, u64)>,
}

fn draw(rng: &mut ChaCha8Rng, span: Span) -> u64 {
    if span.max <= span.min {
        span.min
    } else {
        rng.gen_range(span.min..=span.max)
    }
}

impl Sim {
    /// A simulation of `cfg` under `schedule`, each agent running the policy `factory`
    /// builds for it.
    pub fn new(cfg: SimConfig, schedule: Schedule, factory: PolicyFactory) -> crate::Result<Self> {
        cfg.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(schedule.seed);
        let n = cfg.nodes.len();
        let drift = i32::try_from(cfg.dynamic.clock_drift_ppm).unwrap_or(i32::MAX);
        let mut nodes = Vec::with_capacity(n);
        for (i, sn) in cfg.nodes.iter().enumerate() {
            let identity = NodeIdentity {
                node: sn.name.clone(),
                api_url: format!("http://{}:8008", sn.name),
                pg_host: format!("10.0.0.{}", i + 1),
                pg_port: 5432,
                tags: sn.tags.clone(),
            };
            // Extreme rates are the interesting ones: pick them half of the time.
            let rate_ppm = match rng.gen_range(0..4) {
                0 => drift,
                1 => -drift,
                _ => rng.gen_range(-drift..=drift),
            };
            let clock_offset_ms = rng.gen_range(0..=cfg.clock_offset_max_ms);
            let stream_rate = draw(&mut rng, cfg.stream_records_per_tick).max(1);
            nodes.push(Node {
                identity,
                host_up: true,
                host_down_until: None,
                agent: Agent {
                    proc: None,
                    down_until: Some(0),
                    frozen_until: 0,
                    stalled_until: 0,
                },
                clock_offset_ms,
                clock_ns: 0,
                rate_ppm,
                pg: SimPostgres::empty(),
                exec_current: None,
                stream_rate,
            });
        }
        let names: Vec<String> = cfg.nodes.iter().map(|s| s.name.to_string()).collect();
        let state = ClusterState {
            config: cfg.dynamic.clone(),
            ..ClusterState::default()
        };
        let mut faults = schedule.faults.clone();
        faults.sort_by_key(|f| f.at_ms);
        let check = Checker::new(&cfg, &schedule);
        Ok(Sim {
            trace: Trace::new(n),
            net: Network::new(n),
            consensus: SimConsensus::new(state),
            majority: vec![false; n],
            cfg,
            schedule,
            factory,
            rng,
            now_ms: 0,
            nodes,
            names,
            next_record_id: 1,
            next_timeline: 2,
            pending_writes: Vec::new(),
            check,
            faults,
            next_fault: 0,
            net_windows: Vec::new(),
            slow: Vec::new(),
            outages: Vec::new(),
            window_seq: 0,
            next_write_ms: 0,
            proposals: BTreeMap::new(),
        })
    }

    /// A simulation where every agent runs the default [`Decider`].
    pub fn with_decider(cfg: SimConfig, schedule: Schedule) -> crate::Result<Self> {
        Self::new(cfg, schedule, decider_factory())
    }

    /// Runs warm-up, faults, final heal and settle period; stops at the first violation.
    pub fn run(mut self) -> Report {
        let heal_at = self.cfg.warmup_ms + self.schedule.fault_phase_ms();
        let end = heal_at + self.cfg.liveness_bound_ms;
        let mut healed = false;
        self.trace.push(
            0,
            None,
            TraceKind::Note(format!("seed {}", self.schedule.seed)),
        );
        while self.now_ms <= end {
            if !healed && self.now_ms >= heal_at {
                healed = true;
                self.heal_all();
                self.trace.push(
                    self.now_ms,
                    None,
                    TraceKind::Note("final heal; settling".into()),
                );
            }
            self.tick();
            if self.check.failed() {
                break;
            }
            self.advance();
        }
        if !self.check.failed() {
            self.final_checks();
        }
        let now = self.now_ms;
        self.check
            .report(now, self.schedule.clone(), std::mem::take(&mut self.trace))
    }

    fn advance(&mut self) {
        let tick = self.cfg.tick_ms;
        for node in &mut self.nodes {
            if node.host_up {
                let delta = i64::try_from(tick).unwrap_or(i64::MAX)
                    * (1_000_000 + i64::from(node.rate_ppm));
                node.clock_ns += u64::try_from(delta.max(0)).unwrap_or(0);
            }
        }
        self.now_ms += tick;
    }

    fn tick(&mut self) {
        self.apply_faults();
        self.restarts();
        let alive: Vec<bool> = self
            .nodes
            .iter()
            .map(|n| n.agent_running(self.now_ms))
            .collect();
        self.majority = self.net.majority(&alive);
        let now = self.now_ms;
        self.outages.retain(|(end, _)| *end > now);
        let mut store_down = false;
        for (_, who) in &self.outages {
            match who {
                Some(i) => self.majority[*i] = false,
                None => store_down = true,
            }
        }
        if store_down {
            self.majority.iter_mut().for_each(|m| *m = false);
        }
        let exists = self.majority.iter().any(|m| *m);
        for (p, outcome) in self.consensus.apply_due(self.now_ms, exists) {
            self.on_applied(&p, &outcome);
        }
        self.replicate();
        for i in 0..self.nodes.len() {
            self.run_agent(i);
        }
        self.client();
        self.check_split_brain();
    }

    pub(super) fn wall_ms(&self) -> u64 {
        WALL_EPOCH_MS + self.now_ms
    }

    pub(super) fn index_of(&self, node: &NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| &n.identity.node == node)
    }

    fn resolve(&self, target: &Target) -> usize {
        let holder = self.consensus.state.holder().and_then(|h| self.index_of(h));
        let primary = holder
            .or_else(|| {
                self.nodes
                    .iter()
                    .position(|n| n.host_up && n.pg.is_primary())
            })
            .unwrap_or(0);
        match target {
            Target::Node(n) => self.index_of(n).unwrap_or(0),
            Target::Primary => primary,
            Target::Replica(k) => {
                let others: Vec<usize> = (0..self.nodes.len()).filter(|i| *i != primary).collect();
                if others.is_empty() {
                    primary
                } else {
                    others[k % others.len()]
                }
            }
        }
    }

    fn apply_faults(&mut self) {
        while let Some(sf) = self.faults.get(self.next_fault) {
            if self.cfg.warmup_ms + sf.at_ms > self.now_ms {
                break;
            }
            let fault = sf.fault.clone();
            self.next_fault += 1;
            self.strike(&fault);
        }
        let now = self.now_ms;
        let (ended, kept): (Vec<_>, Vec<_>) =
            self.net_windows.iter().partition(|(end, _)| *end <= now);
        self.net_windows = kept;
        for (_, w) in ended {
            self.net.end(w);
            self.trace.push(
                now,
                None,
                TraceKind::Fault(format!("network window {w} ends")),
            );
        }
        self.slow.retain(|(end, _)| *end > now);
    }

    fn strike(&mut self, fault: &Fault) {
        let now = self.now_ms;
        let mut text = fault.to_string();
        match fault {
            Fault::CrashNode { target, down_ms } => {
                let i = self.resolve(target);
                text = format!("{text} -> {}", self.names[i]);
                self.crash_host(i, now + down_ms);
            }
            Fault::CrashPostgres { target } => {
                let i = self.resolve(target);
                text = format!("{text} -> {}", self.names[i]);
                self.nodes[i].pg.running = false;
                self.nodes[i].pg.streaming = false;
            }
            Fault::CrashAgent { target, down_ms } => {
                let i = self.resolve(target);
                text = format!("{text} -> {}", self.names[i]);
                let node = &mut self.nodes[i];
                if node.host_up {
                    // SIGKILL: the process and everything it waited for are gone; a
                    // PostgreSQL operation it started completes on its own.
                    node.agent.proc = None;
                    let until = node.agent.down_until.unwrap_or(0).max(now + down_ms);
                    node.agent.down_until = Some(until);
                }
            }
            Fault::StopAgent { target, down_ms } => {
                let i = self.resolve(target);
                text = format!("{text} -> {}", self.names[i]);
                let node = &mut self.nodes[i];
                if node.host_up
                    && let Some(proc) = node.agent.proc.as_mut()
                {
                    // SIGTERM: the agent shuts down as `ramd` does (a primary stops
                    // PostgreSQL and releases its lease with its final position); it is
                    // started again `down_ms` later, or once it has exited.
                    let _ = proc.shutdown.send(true);
                    proc.stopping_since.get_or_insert(now);
                    proc.port.wake_all();
                    let until = node.agent.down_until.unwrap_or(0).max(now + down_ms);
                    node.agent.down_until = Some(until);
                }
            }
            Fault::FreezeAgent { target, frozen_ms } => {
                let i = self.resolve(target);
                text = format!("{text} -> {}", self.names[i]);
                let a = &mut self.nodes[i].agent;
                a.frozen_until = a.frozen_until.max(now + frozen_ms);
            }
            Fault::StallLoop { target, stalled_ms } => {
                let i = self.resolve(target);
                text = format!("{text} -> {}", self.names[i]);
                let a = &mut self.nodes[i].agent;
                a.stalled_until = a.stalled_until.max(now + stalled_ms);
            }
            Fault::Partition {
                sides,
                client_side,
                duration_ms,
            } => {
                let n = self.nodes.len();
                let side_of = |i: usize| -> Option<usize> {
                    sides
                        .iter()
                        .position(|s| s.contains(&self.nodes[i].identity.node))
                };
                let mut links = Vec::new();
                for a in 0..n {
                    for b in (a + 1)..n {
                        let (sa, sb) = (side_of(a), side_of(b));
                        if sa.is_none() || sa != sb {
                            links.push((a, b));
                        }
                    }
                    if side_of(a) != Some(*client_side) {
                        links.push((a, n));
                    }
                }
                self.open_window(links, now + duration_ms, &mut text);
            }
            Fault::CutLink { a, b, duration_ms } => {
                let (a, b) = (self.resolve(a), self.resolve(b));
                text = format!("{text} -> {}-{}", self.names[a], self.names[b]);
                self.open_window(vec![(a, b)], now + duration_ms, &mut text);
            }
            Fault::CutClient {
                target,
                duration_ms,
            } => {
                let i = self.resolve(target);
                text = format!("{text} -> {}", self.names[i]);
                let client = self.net.client();
                self.open_window(vec![(i, client)], now + duration_ms, &mut text);
            }
            Fault::SlowConsensus {
                extra_ms,
                duration_ms,
            } => {
                self.slow.push((now + duration_ms, *extra_ms));
            }
            Fault::ConsensusUnavailable {
                target,
                duration_ms,
            } => {
                let who = target.as_ref().map(|t| self.resolve(t));
                if let Some(i) = who {
                    text = format!("{text} -> {}", self.names[i]);
                }
                self.outages.push((now + duration_ms, who));
            }
            Fault::ClockDrift { target, ppm } => {
                let i = self.resolve(target);
                text = format!("{text} -> {}", self.names[i]);
                let bound = i32::try_from(self.cfg.dynamic.clock_drift_ppm).unwrap_or(i32::MAX);
                self.nodes[i].rate_ppm = (*ppm).clamp(-bound, bound);
            }
            Fault::HealAll => self.heal_all(),
        }
        self.trace.push(now, None, TraceKind::Fault(text));
    }

    fn open_window(&mut self, links: Vec<(usize, usize)>, end: u64, text: &mut String) {
        self.window_seq += 1;
        let w = self.window_seq;
        self.net.cut(w, links);
        self.net_windows.push((end, w));
        text.push_str(&format!(" (window {w})"));
    }

    fn crash_host(&mut self, i: usize, until: u64) {
        let node = &mut self.nodes[i];
        node.host_up = false;
        node.host_down_until = Some(until);
        node.pg.running = false;
        node.pg.streaming = false;
        // The agent process, its lease keeper and the fence deadline it proved (in the
        // old boot's clock) die with the host.
        node.agent.proc = None;
        node.agent.down_until = None;
        node.exec_current = None;
    }

    /// Ends every fault now.
    pub(super) fn heal_all(&mut self) {
        let now = self.now_ms;
        self.net.heal();
        self.net_windows.clear();
        self.slow.clear();
        self.outages.clear();
        for node in &mut self.nodes {
            if node.host_down_until.is_some() {
                node.host_down_until = Some(now);
            }
            if node.agent.down_until.is_some() {
                node.agent.down_until = Some(now);
            }
            node.agent.frozen_until = node.agent.frozen_until.min(now);
            node.agent.stalled_until = node.agent.stalled_until.min(now);
        }
        self.trace.push(
            now,
            None,
            TraceKind::Fault("heal: network, hosts, agents, consensus".into()),
        );
    }

    pub(super) fn restarts(&mut self) {
        let now = self.now_ms;
        for i in 0..self.nodes.len() {
            if self.nodes[i].host_down_until.is_some_and(|t| t <= now) {
                let node = &mut self.nodes[i];
                node.host_down_until = None;
                node.host_up = true;
                // CLOCK_BOOTTIME restarts with the host; the agent reads it some time after
                // boot. A random reading makes stamps of the previous boot both larger and
                // smaller than the new clock: neither may be trusted.
                node.clock_offset_ms = self.rng.gen_range(0..=self.cfg.clock_offset_max_ms);
                node.clock_ns = 0;
                node.agent.down_until = Some(now);
                node.agent.frozen_until = 0;
                node.agent.stalled_until = 0;
                self.trace.push(
                    now,
                    Some(&self.names[i]),
                    TraceKind::Fault(format!(
                        "host boots (clock restarts at {})",
                        self.nodes[i].clock()
                    )),
                );
            }
            let node = &self.nodes[i];
            if node.host_up
                && node.agent.proc.is_none()
                && node.agent.down_until.is_some_and(|t| t <= now)
            {
                self.start_agent(i);
                if now > 0 {
                    self.trace.push(
                        now,
                        Some(&self.names[i]),
                        TraceKind::Fault("agent starts".into()),
                    );
                }
            }
        }
    }

    pub(super) fn commit_delay(&mut self) -> u64 {
        let extra: u64 = self.slow.iter().map(|(_, e)| *e).max().unwrap_or(0);
        draw(&mut self.rng, self.cfg.commit_delay_ms) + extra
    }

    pub(super) fn duration(&mut self, span: Span) -> u64 {
        draw(&mut self.rng, span)
    }
}

/// A [`PolicyFactory`] that gives every agent a fresh [`Decider`].
pub fn decider_factory() -> PolicyFactory {
    Box::new(|me, now| Box::new(Decider::new(me, now)))
}
