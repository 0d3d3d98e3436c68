//! Faults and fault schedules.
//!
//! A [`Schedule`] is a seed plus a list of [`ScheduledFault`]s: at a virtual time (counted
//! from the end of the warm-up), one [`Fault`] strikes a [`Target`]. Faults that last
//! (crashes, freezes, partitions, slow consensus) carry their duration and end by
//! themselves; [`Fault::HealAll`] ends every active fault at once. After the last fault
//! the simulator heals everything and watches the cluster settle.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// Which node a fault strikes, resolved when it strikes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A member by name.
    Node(NodeId),
    /// The lease holder in the replicated state at that moment (or, without one, the
    /// node whose PostgreSQL runs as a primary; the first node if none does).
    Primary,
    /// The `k`-th (modulo their count) member other than the lease holder, in
    /// configuration order.
    Replica(usize),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Node(n) => write!(f, "{n}"),
            Target::Primary => f.write_str("primary"),
            Target::Replica(k) => write!(f, "replica#{k}"),
        }
    }
}

/// One fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// The host dies: PostgreSQL and the agent stop, in-flight actions are lost, the
    /// data directory survives (WAL is durable). It boots again after `down_ms` with a
    /// monotonic clock restarted from zero (as `CLOCK_BOOTTIME` does).
    CrashNode {
        /// The node.
        target: Target,
        /// Downtime.
        down_ms: u64,
    },
    /// The postmaster dies; the agent lives and sees it down.
    CrashPostgres {
        /// The node.
        target: Target,
    },
    /// The agent process dies (its consensus replica and commit fence with it);
    /// PostgreSQL keeps running and serving. A new agent starts after `down_ms`.
    CrashAgent {
        /// The node.
        target: Target,
        /// Downtime.
        down_ms: u64,
    },
    /// The agent is shut down cleanly (`SIGTERM`, `systemctl stop`), as `ramd` does it:
    /// it stops PostgreSQL and, when it holds the lease, releases it (no successor). A
    /// new agent starts after `down_ms` (PostgreSQL stays stopped until it acts).
    StopAgent {
        /// The node.
        target: Target,
        /// Downtime.
        down_ms: u64,
    },
    /// The agent process is stopped (`SIGSTOP`): no loop, no consensus replica, no
    /// fence acknowledgements; its clock keeps going. Continued after `frozen_ms`.
    FreezeAgent {
        /// The node.
        target: Target,
        /// How long.
        frozen_ms: u64,
    },
    /// Only the agent's HA loop stalls (a stuck call, a long pause of the loop task):
    /// its consensus replica and its commit fence keep running, the fence answering
    /// `Policy::fence_open` on the running clock.
    StallLoop {
        /// The node.
        target: Target,
        /// How long.
        stalled_ms: u64,
    },
    /// A network partition: members in different `sides` cannot reach each other
    /// (consensus, replication, `pg_rewind`/clone); members in no side are isolated. The
    /// client reaches only the members of `sides[client_side]` (none when out of range).
    Partition {
        /// Groups of members that still reach each other.
        sides: Vec<BTreeSet<NodeId>>,
        /// The side the client is on.
        client_side: usize,
        /// How long.
        duration_ms: u64,
    },
    /// One link cut in both directions (partitions that are not transitive).
    CutLink {
        /// One end.
        a: Target,
        /// The other end.
        b: Target,
        /// How long.
        duration_ms: u64,
    },
    /// The client cannot reach this node.
    CutClient {
        /// The node.
        target: Target,
        /// How long.
        duration_ms: u64,
    },
    /// Consensus commits take `extra_ms` longer (slow disk, slow network).
    SlowConsensus {
        /// Added commit delay.
        extra_ms: u64,
        /// How long.
        duration_ms: u64,
    },
    /// The consensus store cannot be reached — by any member (`target` = `None`: an
    /// external etcd down) or by `target` alone — while the agents still reach each other
    /// over their API and PostgreSQL replicates as before. No entry commits while the
    /// store is down.
    ConsensusUnavailable {
        /// The member cut from the store, or `None` for all of them.
        #[serde(default)]
        target: Option<Target>,
        /// How long.
        duration_ms: u64,
    },
    /// The node's clock runs at `ppm` parts per million from real time (clamped to the
    /// configured `clock_drift_ppm`), from now on.
    ClockDrift {
        /// The node.
        target: Target,
        /// Rate error, positive = fast.
        ppm: i32,
    },
    /// Ends every active fault now: restarts what is down, thaws what is frozen, heals
    /// the network and consensus.
    HealAll,
}

impl Fault {
    /// Whether the fault touches the agent process itself (freeze, stall or crash of the
    /// agent alone): without the commit fence nothing can stop such a node's PostgreSQL.
    pub fn hits_agent_only(&self) -> bool {
        matches!(
            self,
            Fault::CrashAgent { .. } | Fault::FreezeAgent { .. } | Fault::StallLoop { .. }
        )
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::CrashNode { target, down_ms } => {
                write!(f, "crash host {target} for {down_ms} ms")
            }
            Fault::CrashPostgres { target } => write!(f, "crash postmaster of {target}"),
            Fault::CrashAgent { target, down_ms } => {
                write!(f, "crash agent of {target} for {down_ms} ms")
            }
            Fault::StopAgent { target, down_ms } => {
                write!(f, "stop agent of {target} (SIGTERM) for {down_ms} ms")
            }
            Fault::FreezeAgent { target, frozen_ms } => {
                write!(f, "SIGSTOP agent of {target} for {frozen_ms} ms")
            }
            Fault::StallLoop { target, stalled_ms } => {
                write!(f, "stall HA loop of {target} for {stalled_ms} ms")
            }
            Fault::Partition {
                sides,
                client_side,
                duration_ms,
            } => {
                let sides: Vec<String> = sides
                    .iter()
                    .map(|s| {
                        let names: Vec<&str> = s.iter().map(NodeId::as_str).collect();
                        format!("{{{}}}", names.join(","))
                    })
                    .collect();
                write!(
                    f,
                    "partition {} (client with side {client_side}) for {duration_ms} ms",
                    sides.join(" | ")
                )
            }
            Fault::CutLink { a, b, duration_ms } => {
                write!(f, "cut link {a}-{b} for {duration_ms} ms")
            }
            Fault::CutClient {
                target,
                duration_ms,
            } => {
                write!(f, "cut client from {target} for {duration_ms} ms")
            }
            Fault::SlowConsensus {
                extra_ms,
                duration_ms,
            } => {
                write!(f, "consensus commits +{extra_ms} ms for {duration_ms} ms")
            }
            Fault::ConsensusUnavailable {
                target: None,
                duration_ms,
            } => write!(f, "consensus store unavailable for {duration_ms} ms"),
            Fault::ConsensusUnavailable {
                target: Some(t),
                duration_ms,
            } => write!(
                f,
                "consensus store unreachable from {t} for {duration_ms} ms"
            ),
            Fault::ClockDrift { target, ppm } => write!(f, "clock of {target} runs at {ppm:+} ppm"),
            Fault::HealAll => f.write_str("heal everything"),
        }
    }
}

/// A fault at a virtual time, counted from the end of the warm-up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledFault {
    /// When, in virtual ms after the warm-up.
    pub at_ms: u64,
    /// What.
    pub fault: Fault,
}

/// A seed and the faults of one run. The same schedule with the same configuration and
/// policy always produces the same run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Seeds every random choice of the run (clock rates, delays, durations).
    pub seed: u64,
    /// The faults, in any order (they are sorted by time, stably).
    pub faults: Vec<ScheduledFault>,
}

impl Schedule {
    /// A schedule without faults.
    pub fn new(seed: u64) -> Self {
        Schedule {
            seed,
            faults: Vec::new(),
        }
    }

    /// Adds a fault at `at_ms` after the warm-up.
    pub fn at(mut self, at_ms: u64, fault: Fault) -> Self {
        self.faults.push(ScheduledFault { at_ms, fault });
        self
    }

    /// When the last fault ends (start plus duration), in ms after the warm-up.
    pub fn fault_phase_ms(&self) -> u64 {
        self.faults
            .iter()
            .map(|s| {
                s.at_ms
                    + match &s.fault {
                        Fault::CrashNode { down_ms, .. }
                        | Fault::CrashAgent { down_ms, .. }
                        | Fault::StopAgent { down_ms, .. } => *down_ms,
                        Fault::FreezeAgent { frozen_ms, .. } => *frozen_ms,
                        Fault::StallLoop { stalled_ms, .. } => *stalled_ms,
                        Fault::Partition { duration_ms, .. }
                        | Fault::CutLink { duration_ms, .. }
                        | Fault::CutClient { duration_ms, .. }
                        | Fault::SlowConsensus { duration_ms, .. }
                        | Fault::ConsensusUnavailable { duration_ms, .. } => *duration_ms,
                        Fault::CrashPostgres { .. } | Fault::ClockDrift { .. } | Fault::HealAll => {
                            0
                        }
                    }
            })
            .max()
            .unwrap_or(0)
    }

    /// The schedule as one JSON line, to paste into `RALE_SIM_REPLAY`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a schedule always serialises")
    }

    /// Parses a schedule printed by [`Schedule::to_json`].
    pub fn from_json(text: &str) -> crate::Result<Self> {
        serde_json::from_str(text).map_err(|e| crate::Error::Parse(format!("schedule: {e}")))
    }
}

/// Which faults a generated schedule may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultMix {
    /// Member names (targets and partition sides).
    pub nodes: Vec<NodeId>,
    /// Most faults per schedule.
    pub max_faults: usize,
    /// Faults strike within this many ms after the warm-up.
    pub window_ms: u64,
    /// Longest duration of one fault.
    pub max_duration_ms: u64,
    /// Include agent crashes, freezes and loop stalls (leave out without the fence:
    /// nothing can stop the PostgreSQL of a node whose agent is gone).
    pub agent_faults: bool,
    /// Largest clock rate error a `ClockDrift` fault asks for.
    pub drift_ppm: i32,
    /// Relative weight of `ConsensusUnavailable` faults (0 = none).
    pub outage_weight: u32,
}

impl FaultMix {
    /// Every fault kind, up to 4 faults in the first 8 s, each lasting up to 5 s.
    pub fn new(nodes: Vec<NodeId>, drift_ppm: u32) -> Self {
        FaultMix {
            nodes,
            max_faults: 4,
            window_ms: 8_000,
            max_duration_ms: 5_000,
            agent_faults: true,
            drift_ppm: i32::try_from(drift_ppm).unwrap_or(i32::MAX),
            outage_weight: 1,
        }
    }

    /// The same without agent faults.
    pub fn without_agent_faults(mut self) -> Self {
        self.agent_faults = false;
        self
    }
}
