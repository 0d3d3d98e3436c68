//! The cluster-wide dynamic configuration replicated through consensus: HA timings,
//! failover limits, synchronous replication and PostgreSQL parameters.
//!
//! Every timing knob and its trade-off is described in `docs/timings.md`.

use std::collections::BTreeMap;
use std::time::Duration;

use rale_sync::SyncConfig;
use serde::{Deserialize, Serialize};

use crate::Error;

/// Cluster-wide settings, the same on every node, changed through consensus.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DynamicConfig {
    /// How long a primary lease lasts without renewal, measured by each observer from the
    /// moment it last saw the lease change. The main failover-speed knob.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How often the holder renews its lease.
    #[serde(with = "humantime_serde")]
    pub renew_interval: Duration,
    /// How often each agent runs its HA loop.
    #[serde(with = "humantime_serde")]
    pub loop_interval: Duration,
    /// The holder stops acknowledging commits and demotes this long before its
    /// conservative lease deadline, to leave time for the demotion to take effect.
    #[serde(with = "humantime_serde")]
    pub fence_margin: Duration,
    /// Maximum relative clock rate error between any two agents, in parts per million.
    pub clock_drift_ppm: u32,
    /// A member whose published status has not changed for this long is considered gone.
    #[serde(with = "humantime_serde")]
    pub member_ttl: Duration,
    /// How often a member republishes its status even when nothing changed.
    #[serde(with = "humantime_serde")]
    pub publish_interval: Duration,
    /// How long failover waits for every live replica to detach before it goes ahead
    /// with those that did (only where the synchronous quorum rules allow it).
    #[serde(with = "humantime_serde")]
    pub detach_timeout: Duration,
    /// How long a crashed postmaster under a live agent is restarted in place before the
    /// agent gives up its lease and lets the cluster fail over.
    #[serde(with = "humantime_serde")]
    pub restart_timeout: Duration,
    /// A replica further behind than this (bytes) is never promoted by failover
    /// (asynchronous mode). `None` = no limit.
    pub maximum_lag_on_failover_bytes: Option<u64>,
    /// Commits on the primary are gated by the agent's lease (see `docs/fence.md`).
    pub fence: bool,
    /// Rewind a diverged former primary with `pg_rewind` before cloning it afresh.
    pub use_pg_rewind: bool,
    /// Synchronous replication.
    pub synchronous: SyncConfig,
    /// PostgreSQL parameters applied on every node.
    pub postgresql_parameters: BTreeMap<String, String>,
    /// Permanent replication slots, by name: kept on whichever node is primary, created
    /// again on a new primary after a failover, never dropped by RALE (see
    /// `docs/slots.md`). The members' own physical slots are managed apart.
    pub slots: BTreeMap<String, SlotSpec>,
    /// Slots RALE leaves alone, whatever else says (Patroni's `ignore_slots`): a slot is
    /// ignored when it matches every field one entry gives.
    pub ignore_slots: Vec<SlotMatch>,
    /// A replication slot retaining more WAL than this (bytes) is reported: a warning
    /// when it crosses the limit and every few minutes while it stays above, and a flag
    /// in the cluster view (`GET /api/v1/cluster/status`, `ramctrl slots`). RALE never
    /// drops it. `None` (the default) = no limit (see `docs/slots.md`).
    pub slots_max_retained_wal_bytes: Option<u64>,
    /// Failsafe mode: while consensus does not answer, the primary keeps its role as long
    /// as **every** other member confirms over the agents' API that it sees no other
    /// primary and will not take over meanwhile (see `docs/failsafe.md`). Off by default.
    pub failsafe_mode: bool,
}

/// The kind of a replication slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotKind {
    /// Streams WAL (a standby, `pg_receivewal`, Barman).
    Physical,
    /// Streams decoded changes through an output plugin (CDC: Debezium, `pg_recvlogical`).
    Logical,
}

/// A permanent replication slot of [`DynamicConfig::slots`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotSpec {
    /// Physical or logical.
    #[serde(rename = "type")]
    pub kind: SlotKind,
    /// Output plugin of a logical slot (`pgoutput`, `test_decoding`, `wal2json`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Database of a logical slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// One entry of [`DynamicConfig::ignore_slots`]: the fields it gives must all match.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotMatch {
    /// Slot name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Slot kind.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<SlotKind>,
    /// Output plugin (logical slots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Database (logical slots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

impl SlotMatch {
    /// Whether a slot with these properties matches (an entry that gives nothing matches
    /// nothing, so an empty `{}` cannot silently freeze every slot).
    pub fn matches(
        &self,
        name: &str,
        kind: SlotKind,
        plugin: Option<&str>,
        database: Option<&str>,
    ) -> bool {
        if *self == Self::default() {
            return false;
        }
        self.name.as_deref().is_none_or(|n| n == name)
            && self.kind.is_none_or(|k| k == kind)
            && self.plugin.as_deref().is_none_or(|p| Some(p) == plugin)
            && self.database.as_deref().is_none_or(|d| Some(d) == database)
    }
}

/// PostgreSQL's rule for replication slot names: 1–63 characters of `[a-z0-9_]`.
pub fn check_slot_name(name: &str) -> crate::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!(
            "invalid replication slot name {name:?}: use 1-63 characters of [a-z0-9_]"
        )))
    }
}

/// An output plugin or database name RALE will pass to PostgreSQL: 1–63 characters, no
/// control characters, no path separator (a plugin is a library name).
fn check_identifier(what: &str, slot: &str, value: &str) -> crate::Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && !value
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!(
            "slots.{slot}.{what} {value:?}: use 1-63 characters, no control characters or \
             path separators"
        )))
    }
}

impl Default for DynamicConfig {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_millis(1500),
            renew_interval: Duration::from_millis(250),
            loop_interval: Duration::from_millis(100),
            fence_margin: Duration::from_millis(300),
            clock_drift_ppm: 10_000,
            member_ttl: Duration::from_secs(3),
            publish_interval: Duration::from_millis(500),
            detach_timeout: Duration::from_millis(1000),
            restart_timeout: Duration::from_secs(5),
            maximum_lag_on_failover_bytes: Some(1024 * 1024),
            fence: true,
            use_pg_rewind: true,
            synchronous: SyncConfig::default(),
            postgresql_parameters: BTreeMap::new(),
            slots: BTreeMap::new(),
            ignore_slots: Vec::new(),
            slots_max_retained_wal_bytes: None,
            failsafe_mode: false,
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// PostgreSQL parameters RALE sets itself, with what to change instead.
pub const MANAGED_PARAMETERS: &[(&str, &str)] = &[
    (
        "synchronous_standby_names",
        "it follows the synchronous settings (synchronous.mode, node_count, pinned)",
    ),
    ("synchronous_commit", "set synchronous.commit_level instead"),
];

impl DynamicConfig {
    /// The PostgreSQL parameters every node runs with: `postgresql_parameters` plus
    /// `synchronous_commit` from `synchronous.commit_level` (the server-wide default;
    /// sessions may still lower it, as PostgreSQL allows).
    pub fn effective_postgresql_parameters(&self) -> BTreeMap<String, String> {
        let mut p = self.postgresql_parameters.clone();
        p.insert(
            "synchronous_commit".into(),
            self.synchronous.commit_level.to_string(),
        );
        p
    }

    /// How often an agent publishes its status when nothing about it changed, not even
    /// its WAL position: a third of `member_ttl`, and never more often than
    /// `publish_interval` (1 s with the defaults). A status whose WAL position moved is
    /// published every `publish_interval`; any other change at once. An idle cluster
    /// then commits a third as many status entries, and a member still looks fresh to
    /// the others after missing two publications.
    pub fn idle_publish_interval(&self) -> Duration {
        (self.member_ttl / 3).max(self.publish_interval)
    }

    /// Lease length as observers measure it, in milliseconds.
    pub fn lease_ttl_ms(&self) -> u64 {
        ms(self.lease_ttl)
    }

    /// How long after starting a successful renewal the holder may still act as primary,
    /// by its own clock: `ttl × (1 − ρ)/(1 + ρ) − fence_margin` (see `docs/lease.md`).
    pub fn holder_validity_ms(&self) -> u64 {
        let rho = u128::from(self.clock_drift_ppm.min(500_000));
        let ttl = u128::from(self.lease_ttl_ms());
        let scaled = ttl * (1_000_000 - rho) / (1_000_000 + rho);
        u64::try_from(scaled)
            .unwrap_or(u64::MAX)
            .saturating_sub(ms(self.fence_margin))
    }

    /// Checks relations between the settings; the error says which rule is broken.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if self.loop_interval.is_zero() || self.renew_interval.is_zero() {
            return bad("loop_interval and renew_interval must be positive".into());
        }
        if self.holder_validity_ms() < 2 * ms(self.renew_interval) {
            return bad(format!(
                "lease_ttl {:?} leaves the holder {} ms per lease after the fence margin \
                 and clock drift; it must cover at least two renew intervals ({:?})",
                self.lease_ttl,
                self.holder_validity_ms(),
                self.renew_interval
            ));
        }
        if self.member_ttl < self.publish_interval * 2 {
            return bad("member_ttl must be at least twice publish_interval".into());
        }
        if self.clock_drift_ppm > 100_000 {
            return bad("clock_drift_ppm above 100000 (10%) is not supported".into());
        }
        for (name, instead) in MANAGED_PARAMETERS {
            if self
                .postgresql_parameters
                .keys()
                .any(|k| k.eq_ignore_ascii_case(name))
            {
                return bad(format!(
                    "postgresql_parameters.{name} is managed by RALE: {instead}"
                ));
            }
        }
        for (name, spec) in &self.slots {
            check_slot_name(name).map_err(|e| Error::InvalidConfig(format!("slots: {e}")))?;
            match spec.kind {
                SlotKind::Logical => {
                    let (Some(plugin), Some(database)) = (&spec.plugin, &spec.database) else {
                        return bad(format!(
                            "slots.{name}: a logical slot needs both plugin and database"
                        ));
                    };
                    check_identifier("plugin", name, plugin)?;
                    check_identifier("database", name, database)?;
                }
                SlotKind::Physical => {
                    if spec.plugin.is_some() || spec.database.is_some() {
                        return bad(format!(
                            "slots.{name}: a physical slot has no plugin or database"
                        ));
                    }
                }
            }
        }
        // Replicas' copies of logical slots keep the catalog rows they need on the
        // primary only through hot_standby_feedback (docs/slots.md).
        let feedback_off = self.postgresql_parameters.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("hot_standby_feedback")
                && matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "off" | "false" | "no" | "0" | "of" | "f" | "n"
                )
        });
        if feedback_off
            && let Some(name) = self
                .slots
                .iter()
                .find(|(_, s)| s.kind == SlotKind::Logical)
                .map(|(n, _)| n)
        {
            return bad(format!(
                "postgresql_parameters.hot_standby_feedback = off with the logical slot {name}: \
                 replicas keep copies of logical slots only with hot_standby_feedback on"
            ));
        }
        if self.slots_max_retained_wal_bytes == Some(0) {
            return bad(
                "slots_max_retained_wal_bytes must be positive (null turns the check off)".into(),
            );
        }
        for (i, m) in self.ignore_slots.iter().enumerate() {
            if *m == SlotMatch::default() {
                return bad(format!(
                    "ignore_slots[{i}] gives no field: name, type, plugin or database"
                ));
            }
        }
        self.synchronous
            .validate()
            .map_err(|e| Error::InvalidConfig(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_parameters_are_refused_and_commit_level_is_applied() {
        let mut c = DynamicConfig::default();
        c.synchronous.commit_level = rale_sync::CommitLevel::RemoteApply;
        c.postgresql_parameters
            .insert("work_mem".into(), "8MB".into());
        let p = c.effective_postgresql_parameters();
        assert_eq!(
            p.get("synchronous_commit").map(String::as_str),
            Some("remote_apply")
        );
        assert_eq!(p.get("work_mem").map(String::as_str), Some("8MB"));
        for name in ["synchronous_commit", "Synchronous_Standby_Names"] {
            let mut bad = c.clone();
            bad.postgresql_parameters.insert(name.into(), "on".into());
            let e = bad.validate().expect_err(name).to_string();
            assert!(e.contains("managed by RALE"), "{e}");
        }
    }

    #[test]
    fn permanent_slots_are_checked() {
        let parse = |j: &str| serde_json::from_str::<DynamicConfig>(j);
        let ok = parse(
            r#"{"slots": {"cdc": {"type": "logical", "plugin": "pgoutput", "database": "app"},
                          "archive": {"type": "physical"}},
                "ignore_slots": [{"name": "barman"}, {"type": "logical", "plugin": "wal2json"}]}"#,
        )
        .expect("parses");
        assert!(ok.validate().is_ok());
        assert!(ok.ignore_slots[0].matches("barman", SlotKind::Physical, None, None));
        assert!(!ok.ignore_slots[0].matches("other", SlotKind::Physical, None, None));
        assert!(ok.ignore_slots[1].matches("x", SlotKind::Logical, Some("wal2json"), Some("d")));
        assert!(!ok.ignore_slots[1].matches("x", SlotKind::Physical, None, None));
        assert!(!SlotMatch::default().matches("x", SlotKind::Physical, None, None));
        for (body, why) in [
            (
                r#"{"slots": {"Bad-Name": {"type": "physical"}}}"#,
                "invalid replication slot name",
            ),
            (
                r#"{"slots": {"cdc": {"type": "logical", "plugin": "pgoutput"}}}"#,
                "needs both",
            ),
            (
                r#"{"slots": {"a": {"type": "physical", "database": "x"}}}"#,
                "no plugin",
            ),
            (
                r#"{"slots": {"c": {"type": "logical", "plugin": "../x", "database": "d"}}}"#,
                "path",
            ),
            (r#"{"ignore_slots": [{}]}"#, "gives no field"),
            (
                r#"{"slots_max_retained_wal_bytes": 0}"#,
                "slots_max_retained_wal_bytes must be positive",
            ),
            (
                r#"{"slots": {"c": {"type": "logical", "plugin": "p", "database": "d"}},
                    "postgresql_parameters": {"hot_standby_feedback": "off"}}"#,
                "hot_standby_feedback = off",
            ),
        ] {
            let e = parse(body)
                .expect(body)
                .validate()
                .expect_err(body)
                .to_string();
            assert!(e.contains(why), "{body}: {e}");
        }
        let limit = parse(r#"{"slots_max_retained_wal_bytes": 1073741824}"#).expect("parses");
        assert!(limit.validate().is_ok());
        assert_eq!(limit.slots_max_retained_wal_bytes, Some(1 << 30));
        assert!(parse(r#"{"slots_max_retained_wal_bytes": -1}"#).is_err());
        assert!(parse(r#"{"slots": {"a": {"type": "hot"}}}"#).is_err());
        assert!(parse(r#"{"slots": {"a": {"type": "physical", "extra": 1}}}"#).is_err());
    }

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let c = DynamicConfig::default();
        assert!(c.validate().is_ok());
        let text = serde_json::to_string(&c).expect("serialise");
        assert!(text.contains("\"lease_ttl\":\"1s 500ms\""), "{text}");
        let back: DynamicConfig = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, c);
        // 1500 × 0.99/1.01 − 300
        assert_eq!(c.holder_validity_ms(), 1170);
    }

    #[test]
    fn rejects_too_short_lease() {
        let c = DynamicConfig {
            lease_ttl: Duration::from_millis(500),
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }
}
