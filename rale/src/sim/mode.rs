//! The replication modes the property tests, the regression cases and long campaigns
//! run: one definition, so that a schedule found in one place replays in another.

use std::fmt;
use std::str::FromStr;

use rale_sync::SyncMode;

use super::config::SimConfig;
use super::fault::FaultMix;
use crate::DynamicConfig;

/// A simulated cluster configuration with the faults that apply to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// Three nodes, asynchronous replication, commit fence on; every fault kind.
    AsyncFence,
    /// Three nodes, asynchronous replication, no fence; no agent faults (nothing could
    /// stop the PostgreSQL of a node whose agent is gone).
    AsyncNoFence,
    /// Three nodes, `synchronous.mode = on` with one synchronous standby (`FIRST 1`).
    SyncFirst1,
    /// Three nodes, `synchronous.mode = quorum` with one acknowledgement (`ANY 1`).
    QuorumAny1,
    /// Three nodes, strict synchronous mode (never degrades to asynchronous).
    SyncStrict,
    /// Four nodes with `nofailover`, `failover_priority` 3 and 0 (fence on).
    Tags,
    /// Three nodes, `synchronous.mode = on` (`FIRST 1`), fence on, failsafe mode on;
    /// consensus store outages (for all members or one) weigh more among the faults.
    Failsafe,
}

impl Mode {
    /// Every mode, in the order the property tests run them.
    pub const ALL: [Mode; 7] = [
        Mode::AsyncFence,
        Mode::AsyncNoFence,
        Mode::SyncFirst1,
        Mode::QuorumAny1,
        Mode::SyncStrict,
        Mode::Tags,
        Mode::Failsafe,
    ];

    /// The mode's name (`async-fence`, `sync-first1`, …), as `RALE_SIM_MODE` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::AsyncFence => "async-fence",
            Mode::AsyncNoFence => "async-nofence",
            Mode::SyncFirst1 => "sync-first1",
            Mode::QuorumAny1 => "quorum-any1",
            Mode::SyncStrict => "sync-strict",
            Mode::Tags => "tags",
            Mode::Failsafe => "failsafe",
        }
    }

    /// The simulated cluster of this mode.
    pub fn config(self) -> SimConfig {
        let fenced = DynamicConfig {
            fence: true,
            ..DynamicConfig::default()
        };
        let sync = |mode: SyncMode, strict: bool| {
            let mut d = fenced.clone();
            d.synchronous.mode = mode;
            d.synchronous.node_count = 1;
            d.synchronous.strict = strict;
            SimConfig::new(3, d)
        };
        match self {
            Mode::AsyncFence => SimConfig::new(3, fenced),
            Mode::AsyncNoFence => SimConfig::new(
                3,
                DynamicConfig {
                    fence: false,
                    ..DynamicConfig::default()
                },
            ),
            Mode::SyncFirst1 => sync(SyncMode::On, false),
            Mode::QuorumAny1 => sync(SyncMode::Quorum, false),
            Mode::SyncStrict => sync(SyncMode::On, true),
            Mode::Tags => SimConfig::tagged_reference(fenced),
            Mode::Failsafe => {
                let mut c = sync(SyncMode::On, false);
                c.dynamic.failsafe_mode = true;
                c
            }
        }
    }

    /// The faults generated schedules may hold in this mode.
    pub fn fault_mix(self) -> FaultMix {
        let cfg = self.config();
        let mix = FaultMix::new(
            cfg.nodes.iter().map(|n| n.name.clone()).collect(),
            cfg.dynamic.clock_drift_ppm,
        );
        match self {
            Mode::AsyncNoFence => mix.without_agent_faults(),
            Mode::Failsafe => FaultMix {
                outage_weight: 6,
                ..mix
            },
            _ => mix,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mode {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                crate::Error::InvalidConfig(format!(
                    "unknown simulation mode {s:?}; known: {}",
                    Mode::ALL.map(Mode::name).join(", ")
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_configs_are_valid() {
        for m in Mode::ALL {
            assert_eq!(m.name().parse::<Mode>().ok(), Some(m));
            assert!(m.config().validate().is_ok(), "{m}");
        }
        assert!("nope".parse::<Mode>().is_err());
        assert!(!Mode::AsyncNoFence.fault_mix().agent_faults);
        assert!(Mode::Tags.fault_mix().agent_faults);
        assert_eq!(Mode::Tags.config().nodes.len(), 4);
    }
}
