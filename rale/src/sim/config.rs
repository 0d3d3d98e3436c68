//! Settings of a simulation run: the nodes, the cluster's dynamic configuration, and the
//! timings of the simulated world (PostgreSQL actions, replication speed, consensus
//! commit delay, client write rate, settle period).

use serde::{Deserialize, Serialize};

use crate::config::DynamicConfig;
use crate::types::{NodeId, Tags};

/// An inclusive range of virtual milliseconds (or of a count); each use draws a value
/// from the run's seeded generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// Smallest value.
    pub min: u64,
    /// Largest value (clamped up to `min`).
    pub max: u64,
}

impl Span {
    /// `min..=max`.
    pub const fn new(min: u64, max: u64) -> Self {
        Span { min, max }
    }

    /// Always `v`.
    pub const fn fixed(v: u64) -> Self {
        Span { min: v, max: v }
    }
}

/// How long each PostgreSQL action takes, in virtual milliseconds. The effect of an
/// action becomes visible when it completes (a `Rejoin` stops PostgreSQL when it starts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionTimes {
    /// `initdb` plus first start.
    pub bootstrap_ms: Span,
    /// `pg_ctl start`.
    pub start_ms: Span,
    /// `pg_ctl stop -m immediate`.
    pub stop_immediate_ms: Span,
    /// `pg_ctl stop -m fast` (or smart).
    pub stop_fast_ms: Span,
    /// `pg_ctl promote`, until the server left recovery.
    pub promote_ms: Span,
    /// Rewriting `primary_conninfo` and reloading.
    pub follow_ms: Span,
    /// Stop, `pg_rewind` (or clone) and start as a standby.
    pub rejoin_ms: Span,
    /// `pg_basebackup` and start as a standby.
    pub clone_ms: Span,
    /// Changing `synchronous_standby_names` and reloading.
    pub reload_ms: Span,
    /// Creating or dropping replication slots.
    pub slots_ms: Span,
}

impl Default for ActionTimes {
    fn default() -> Self {
        ActionTimes {
            bootstrap_ms: Span::new(300, 600),
            start_ms: Span::new(50, 150),
            stop_immediate_ms: Span::new(10, 30),
            stop_fast_ms: Span::new(50, 150),
            promote_ms: Span::new(100, 200),
            follow_ms: Span::new(10, 30),
            rejoin_ms: Span::new(300, 800),
            clone_ms: Span::new(500, 1500),
            reload_ms: Span::new(10, 30),
            slots_ms: Span::fixed(5),
        }
    }
}

/// One simulated node: its member name and tags.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimNode {
    /// Member name (also the standby's `application_name`).
    pub name: NodeId,
    /// Tags from its configuration.
    pub tags: Tags,
}

/// Everything that shapes one simulated run except the fault schedule and the seed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimConfig {
    /// The members, in a fixed order (faults and traces name them).
    pub nodes: Vec<SimNode>,
    /// The cluster's dynamic configuration, as replicated in the initial cluster state.
    pub dynamic: DynamicConfig,
    /// Granularity of virtual time: everything happens at multiples of it.
    pub tick_ms: u64,
    /// Fault-free start so the cluster can bootstrap before the first fault.
    pub warmup_ms: u64,
    /// How long after the final heal the cluster is watched before the liveness check
    /// (I3): by then it must have exactly one primary and every replica must stream from
    /// it. Default `10 × lease_ttl`.
    pub liveness_bound_ms: u64,
    /// How often the client sends one write to every primary it can reach.
    pub write_interval_ms: u64,
    /// Size of one WAL record; LSNs advance by this much per record.
    pub record_bytes: u64,
    /// Records a streaming standby receives per tick (drawn per node from the seed).
    pub stream_records_per_tick: Span,
    /// Delay between a proposal reaching the majority and its application.
    pub commit_delay_ms: Span,
    /// PostgreSQL action durations.
    pub action_times: ActionTimes,
    /// Whether the commit fence is enforced when `DynamicConfig::fence` is on. `false`
    /// models a daemon that relies on the fence without running it: commits then wait
    /// only for `synchronous_standby_names`.
    pub fence_enforced: bool,
    /// Initial clock readings are drawn from `0..=clock_offset_max_ms` per node, so
    /// readings of different nodes are never comparable.
    pub clock_offset_max_ms: u64,
    /// Check that a node holding a lease acquired by failover is not further behind the
    /// acknowledged writes than `maximum_lag_on_failover_bytes` (I4, asynchronous mode).
    pub check_failover_lag: bool,
    /// Count asynchronous-mode losses beyond `maximum_lag_on_failover_bytes` at a
    /// promotion as violations of I2 (otherwise they are only reported).
    pub check_async_loss_bound: bool,
    /// Percentage of `pg_rewind` runs that fail (as when the source no longer has the WAL
    /// from before the divergence), so that the base-backup fallback is exercised.
    #[serde(default)]
    pub rewind_failure_percent: u32,
}

impl SimConfig {
    /// `n` nodes named `n1…nN` without tags, with `dynamic` as cluster configuration and
    /// the default world timings.
    pub fn new(n: usize, dynamic: DynamicConfig) -> Self {
        let nodes = (1..=n)
            .map(|i| SimNode {
                name: NodeId::new(format!("n{i}")).expect("n<digits> is a valid node name"),
                tags: Tags::default(),
            })
            .collect();
        let lease = dynamic.lease_ttl_ms();
        SimConfig {
            nodes,
            dynamic,
            tick_ms: 10,
            warmup_ms: 3_000,
            liveness_bound_ms: 10 * lease,
            write_interval_ms: 20,
            record_bytes: 8 * 1024,
            stream_records_per_tick: Span::new(1, 4),
            commit_delay_ms: Span::new(2, 20),
            action_times: ActionTimes::default(),
            fence_enforced: true,
            clock_offset_max_ms: 60_000,
            check_failover_lag: true,
            check_async_loss_bound: true,
            rewind_failure_percent: 20,
        }
    }

    /// Sets the tags of the member named `name` (no effect if there is none).
    pub fn with_tags(mut self, name: &str, tags: Tags) -> Self {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.name.as_str() == name) {
            n.tags = tags;
        }
        self
    }

    /// The reference tagged cluster: 4 nodes where `n2` is `nofailover`, `n3` has
    /// `failover_priority` 3 and `n4` has `failover_priority` 0 (never promoted).
    pub fn tagged_reference(dynamic: DynamicConfig) -> Self {
        let tags = |nofailover, failover_priority| Tags {
            nofailover,
            failover_priority,
            ..Tags::default()
        };
        Self::new(4, dynamic)
            .with_tags("n2", tags(true, None))
            .with_tags("n3", tags(false, Some(3)))
            .with_tags("n4", tags(false, Some(0)))
    }

    /// Checks that the settings can run.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: &str| Err(crate::Error::InvalidConfig(format!("simulation: {m}")));
        if self.nodes.is_empty() {
            return bad("at least one node is needed");
        }
        if self.tick_ms == 0 || self.write_interval_ms == 0 || self.record_bytes == 0 {
            return bad("tick_ms, write_interval_ms and record_bytes must be positive");
        }
        let mut names: Vec<&NodeId> = self.nodes.iter().map(|n| &n.name).collect();
        names.sort();
        names.dedup();
        if names.len() != self.nodes.len() {
            return bad("node names must be distinct");
        }
        self.dynamic.validate()
    }
}
