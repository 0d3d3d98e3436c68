//! Environment profiles and their timings.

use std::str::FromStr;

use super::GenerateError;

/// Environment profile: timings and defaults suited to where the cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// One machine or a lab: fast failover (lease 1 s), text logs, open reads.
    Dev,
    /// RALE's defaults (lease 1.5 s): dedicated hosts on one LAN.
    Staging,
    /// Busy or virtualised hosts: lease 5 s, calmer consensus, synchronous replication
    /// (`FIRST 1`, not strict) with two or more nodes, JSON logs, reads need credentials.
    Prod,
}

impl FromStr for Profile {
    type Err = GenerateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dev" => Ok(Profile::Dev),
            "staging" => Ok(Profile::Staging),
            "prod" => Ok(Profile::Prod),
            other => Err(GenerateError::Choice(format!(
                "profile {other:?}: expected dev, staging or prod"
            ))),
        }
    }
}

impl Profile {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Dev => "dev",
            Profile::Staging => "staging",
            Profile::Prod => "prod",
        }
    }
}

/// The profile's timings and defaults.
pub(super) struct Timings {
    pub(super) heartbeat: &'static str,
    pub(super) election_min: &'static str,
    pub(super) election_max: &'static str,
    pub(super) lease_ttl: &'static str,
    pub(super) renew_interval: &'static str,
    pub(super) loop_interval: &'static str,
    pub(super) fence_margin: &'static str,
    pub(super) member_ttl: &'static str,
    pub(super) publish_interval: &'static str,
    pub(super) detach_timeout: &'static str,
    pub(super) maximum_lag_on_failover_bytes: u64,
    pub(super) log_format: &'static str,
    pub(super) read_open: bool,
    pub(super) metrics_interval: &'static str,
    pub(super) shared_buffers: &'static str,
}

pub(super) fn timings(p: Profile) -> Timings {
    match p {
        Profile::Dev => Timings {
            heartbeat: "50ms",
            election_min: "200ms",
            election_max: "400ms",
            lease_ttl: "1s",
            renew_interval: "150ms",
            loop_interval: "50ms",
            fence_margin: "200ms",
            member_ttl: "2s",
            publish_interval: "500ms",
            detach_timeout: "500ms",
            maximum_lag_on_failover_bytes: 1 << 20,
            log_format: "text",
            read_open: true,
            metrics_interval: "10s",
            shared_buffers: "128MB",
        },
        Profile::Staging => Timings {
            heartbeat: "50ms",
            election_min: "200ms",
            election_max: "400ms",
            lease_ttl: "1500ms",
            renew_interval: "250ms",
            loop_interval: "100ms",
            fence_margin: "300ms",
            member_ttl: "3s",
            publish_interval: "500ms",
            detach_timeout: "1s",
            maximum_lag_on_failover_bytes: 1 << 20,
            log_format: "json",
            read_open: true,
            metrics_interval: "15s",
            shared_buffers: "1GB",
        },
        Profile::Prod => Timings {
            // election_timeout_max is bounded by the consensus majority_timeout (800 ms),
            // which the node file does not set.
            heartbeat: "100ms",
            election_min: "400ms",
            election_max: "800ms",
            lease_ttl: "5s",
            renew_interval: "500ms",
            loop_interval: "100ms",
            fence_margin: "1s",
            member_ttl: "5s",
            publish_interval: "500ms",
            detach_timeout: "2s",
            maximum_lag_on_failover_bytes: 16 << 20,
            log_format: "json",
            read_open: false,
            metrics_interval: "30s",
            shared_buffers: "4GB",
        },
    }
}
