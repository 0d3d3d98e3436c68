//! The simulated world: nodes (host, agent, PostgreSQL, clock), network, consensus,
//! client, and the tick loop that drives them in a fixed order.

use std::collections::VecDeque;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::check::{Checker, Report};
use super::config::{SimConfig, Span};
use super::consensus::SimConsensus;
use super::fault::{Fault, Schedule, ScheduledFault, Target};
use super::network::Network;
use super::postgres::SimPostgres;
use super::trace::{Trace, TraceKind};
use crate::decide::{Action, Decider, NodeIdentity, Observation, PgAction, Policy};
use crate::state::ClusterState;
use crate::types::{Millis, NodeId};

/// Builds the policy of a node's agent, each time the agent (re)starts: the node's
/// identity and its clock reading at start.
pub type PolicyFactory = Box<dyn Fn(NodeIdentity, Millis) -> Box<dyn Policy>>;

/// Wall clock of the simulated world at virtual time 0 (Unix ms).
const WALL_EPOCH_MS: u64 = 1_700_000_000_000;

/// The agent process of a node.
pub(super) struct Agent {
    /// The policy, `None` while the agent is down.
    pub policy: Option<Box<dyn Policy>>,
    /// Restart time while down.
    pub down_until: Option<u64>,
    /// Frozen (`SIGSTOP`) until this time.
    pub frozen_until: u64,
    /// HA loop stalled until this time.
    pub stalled_until: u64,
    /// The lease of the last decision (the commit fence's deadline).
    pub lease: Option<crate::decide::LeaseHold>,
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
    /// Clock reading at which the next HA loop runs.
    pub next_loop_ms: u64,
    pub pg: SimPostgres,
    /// The rest of the decision being executed.
    pub exec_queue: VecDeque<Action>,
    /// The action in progress.
    pub exec_current: Option<InFlight>,
    pub stream_rate: u64,
    /// The lease keeper (as in `ramd`): the grant of the last step, when (clock) the
    /// running step started, its last renewal (clock) and pending proposal, and the fence
    /// deadline its applied renewals proved.
    pub keeper: Keeper,
}

/// The simulated lease keeper of one agent: renews the lease within the policy's
/// [`crate::decide::RenewalGrant`] while a step's actions run longer than the renew
/// interval (or the loop is stalled), and extends the fence with what was applied.
#[derive(Clone, Debug, Default)]
pub(super) struct Keeper {
    pub grant: Option<crate::decide::RenewalGrant>,
    pub busy_since: Option<u64>,
    pub last_sent: Option<u64>,
    /// Sequence number, clock stamp and epoch of the renewal in flight.
    pub pending: Option<(u64, u64, crate::types::Epoch)>,
    /// Fence deadline (clock) proven by an applied keeper renewal, for that epoch.
    pub deadline: Option<(crate::types::Epoch, u64)>,
    /// Renewals the keeper got applied (for reports and tests).
    pub renewals: u64,
}

impl Node {
    pub fn clock(&self) -> u64 {
        self.clock_offset_ms + self.clock_ns / 1_000_000
    }

    /// The agent runs (not down, not frozen) on a running host.
    pub fn agent_running(&self, now_ms: u64) -> bool {
        self.host_up && self.agent.policy.is_some() && now_ms >= self.agent.frozen_until
    }
}

/// An action in progress.
#[derive(Clone, Debug)]
pub(super) enum InFlight {
    /// A PostgreSQL action completing at this time.
    Pg(PgAction, u64),
    /// A proposal with this log sequence number, waited for until this time.
    Propose(u64, u64),
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
    factory: PolicyFactory,
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
    window_seq: u64,
    pub(super) next_write_ms: u64,
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
                    policy: None,
                    down_until: Some(0),
                    frozen_until: 0,
                    stalled_until: 0,
                    lease: None,
                },
                clock_offset_ms,
                clock_ns: 0,
                rate_ppm,
                next_loop_ms: 0,
                pg: SimPostgres::empty(),
                exec_queue: VecDeque::new(),
                exec_current: None,
                keeper: Keeper::default(),
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
            window_seq: 0,
            next_write_ms: 0,
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
                    node.agent.policy = None;
                    let until = node.agent.down_until.unwrap_or(0).max(now + down_ms);
                    node.agent.down_until = Some(until);
                    node.exec_queue.clear();
                    if matches!(node.exec_current, Some(InFlight::Propose(..))) {
                        node.exec_current = None;
                    }
                }
            }
            Fault::StopAgent { target, down_ms } => {
                let i = self.resolve(target);
                text = format!("{text} -> {}", self.names[i]);
                if self.nodes[i].host_up && self.nodes[i].agent.policy.is_some() {
                    let me = self.nodes[i].identity.node.clone();
                    let holds = self.consensus.state.holder() == Some(&me);
                    let final_position = self.nodes[i].pg.running.then(|| {
                        let wal = &self.nodes[i].pg.wal;
                        (
                            wal.timeline(),
                            super::postgres::Wal::lsn_of(wal.len(), self.cfg.record_bytes),
                        )
                    });
                    // `ramd` stops PostgreSQL with `pg_ctl stop -m fast` on SIGTERM.
                    self.stop_pg(i, true);
                    let node = &mut self.nodes[i];
                    node.agent.policy = None;
                    let until = node.agent.down_until.unwrap_or(0).max(now + down_ms);
                    node.agent.down_until = Some(until);
                    node.exec_queue.clear();
                    node.exec_current = None;
                    if holds && self.majority[i] {
                        let epoch = self.consensus.state.epoch();
                        let op = crate::state::Operation::ReleaseLease {
                            node: me.clone(),
                            epoch,
                            successor: None,
                            reason: format!("agent {me} shut down"),
                            final_position,
                        };
                        let delay = self.commit_delay();
                        let wall_ms = self.wall_ms();
                        self.consensus.propose(now, delay, i, op, wall_ms);
                    }
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
        node.agent.policy = None;
        node.agent.down_until = None;
        node.exec_queue.clear();
        node.exec_current = None;
        // The lease keeper lives in the agent process: a host crash ends it, with the
        // fence deadline it proved (in the old boot's clock).
        node.keeper = Keeper::default();
    }

    /// Ends every fault now.
    pub(super) fn heal_all(&mut self) {
        let now = self.now_ms;
        self.net.heal();
        self.net_windows.clear();
        self.slow.clear();
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
            if node.host_up && node.agent.down_until.is_some_and(|t| t <= now) {
                let clock = node.clock();
                let policy = (self.factory)(node.identity.clone(), Millis(clock));
                let node = &mut self.nodes[i];
                node.agent.policy = Some(policy);
                node.agent.lease = None;
                node.agent.down_until = None;
                // A new agent process starts with a new lease keeper and a closed fence.
                node.keeper = Keeper::default();
                node.next_loop_ms = clock;
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

    /// One HA loop iteration of node `i` (its agent runs and is idle): observe, decide,
    /// and queue the decision's actions for execution in order.
    pub(super) fn step_agent(&mut self, i: usize) {
        let now = self.now_ms;
        let clock = self.nodes[i].clock();
        let loop_ms = u64::try_from(self.cfg.dynamic.loop_interval.as_millis()).unwrap_or(100);
        self.nodes[i].next_loop_ms = clock + loop_ms;
        let status = self.pg_status(i);
        let majority = self.majority[i];
        let wall_ms = self.wall_ms();
        let decision = {
            let cluster = majority.then_some(&self.consensus.state);
            let obs = Observation {
                now: Millis(clock),
                wall_ms,
                pg: &status,
                cluster,
            };
            let policy = self.nodes[i]
                .agent
                .policy
                .as_mut()
                .expect("the caller checked the agent runs");
            policy.step(&obs)
        };
        let summary = self.nodes[i].pg.summary(&self.names, self.cfg.record_bytes);
        self.trace
            .decision(now, i, &self.names[i], clock, &decision, summary, majority);
        let grant = decision.renewal;
        self.nodes[i].agent.lease = decision.lease;
        let keeper = &mut self.nodes[i].keeper;
        keeper.grant = grant;
        keeper.busy_since = Some(clock);
        if keeper
            .deadline
            .is_some_and(|(e, _)| Some(e) != grant.map(|g| g.epoch))
        {
            keeper.deadline = None;
        }
        self.nodes[i].exec_queue = decision.actions.into();
    }
}

/// A [`PolicyFactory`] that gives every agent a fresh [`Decider`].
pub fn decider_factory() -> PolicyFactory {
    Box::new(|me, now| Box::new(Decider::new(me, now)))
}
