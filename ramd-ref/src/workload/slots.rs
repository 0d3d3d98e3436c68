//! Replication slots and the WAL they retain, for the cluster view and the retention
//! warning ([`DynamicConfig::slots_max_retained_wal_bytes`]).
//!
//! The data path: each agent's workload collector ([`crate::workload`]) reads its own
//! server's `pg_replication_slots` on its slow cadence. The primary's agent answers
//! `GET /api/v1/cluster/status` with those slots ([`slots_view`]); nothing is added to
//! the replicated state, so a slot's ever-changing retained WAL costs no consensus
//! write. [`spawn_watch`] warns when a slot crosses the limit and again every
//! [`REPEAT_WARNING_MS`] while it stays above ([`RetentionAlarm`], sans-IO: time comes
//! in as a parameter). See `docs/slots.md`.

use std::collections::BTreeMap;
use std::sync::Arc;

use rale::ClusterState;
use rale::config::{DynamicConfig, SlotKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{Slot, WorkloadSample, WorkloadView};
use crate::api::types::{SlotManagement, SlotView, SlotsView};

/// How often a slot that stays above the limit is warned about again.
pub const REPEAT_WARNING_MS: u64 = 5 * 60 * 1000;

/// Who keeps the slot: ignored (`ignore_slots` wins over everything), a member's own
/// physical slot (also when a permanent slot has its name), permanent (`slots`), or
/// foreign.
pub fn classify(slot: &Slot, cluster: &ClusterState) -> SlotManagement {
    let kind = match slot.slot_type.as_str() {
        "logical" => SlotKind::Logical,
        _ => SlotKind::Physical,
    };
    let cfg = &cluster.config;
    if cfg.ignore_slots.iter().any(|m| {
        m.matches(
            &slot.slot_name,
            kind,
            slot.plugin.as_deref(),
            slot.database.as_deref(),
        )
    }) {
        return SlotManagement::Ignored;
    }
    // A permanent slot name that is also a member's slot name is the member's.
    if kind == SlotKind::Physical
        && cluster
            .members
            .keys()
            .any(|n| n.slot_name() == slot.slot_name)
    {
        return SlotManagement::Member;
    }
    if cfg.slots.contains_key(&slot.slot_name) {
        return SlotManagement::Permanent;
    }
    SlotManagement::Foreign
}

/// Whether `retained_wal_bytes` is above the configured limit.
pub fn over_limit(retained_wal_bytes: u64, cfg: &DynamicConfig) -> bool {
    cfg.slots_max_retained_wal_bytes
        .is_some_and(|max| retained_wal_bytes > max)
}

/// One slot of the sample as the cluster view shows it.
pub fn slot_view(slot: &Slot, cluster: &ClusterState) -> SlotView {
    SlotView {
        name: slot.slot_name.clone(),
        slot_type: slot.slot_type.clone(),
        plugin: slot.plugin.clone(),
        database: slot.database.clone(),
        active: slot.active,
        retained_wal_bytes: slot.retained_wal_bytes,
        managed: classify(slot, cluster),
        over_limit: over_limit(slot.retained_wal_bytes, &cluster.config),
    }
}

/// The slots of `sample`, read on `node`, for `GET /api/v1/cluster/status`.
pub fn slots_view(node: &str, sample: &WorkloadSample, cluster: &ClusterState) -> SlotsView {
    SlotsView {
        node: node.to_owned(),
        collected_unix_ms: sample.collected_unix_ms,
        max_retained_wal_bytes: cluster.config.slots_max_retained_wal_bytes,
        slots: sample.slots.iter().map(|s| slot_view(s, cluster)).collect(),
    }
}

/// What [`RetentionAlarm::observe`] reports about one slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetentionEvent {
    /// The slot went above the limit.
    Crossed {
        /// Slot name.
        slot: String,
        /// WAL it retains.
        retained_wal_bytes: u64,
        /// The limit.
        max_bytes: u64,
    },
    /// Still above the limit, [`REPEAT_WARNING_MS`] after the last warning.
    Still {
        /// Slot name.
        slot: String,
        /// WAL it retains.
        retained_wal_bytes: u64,
        /// The limit.
        max_bytes: u64,
    },
    /// Back under the limit (or the limit was lifted, or the slot is gone).
    Cleared {
        /// Slot name.
        slot: String,
    },
}

/// Remembers which slots are above the limit and when each was last warned about, so
/// that a warning is logged on crossing and then every [`REPEAT_WARNING_MS`], not on
/// every sample. Bounded by the slots of one sample (at most the collector's row
/// limit).
#[derive(Debug, Default)]
pub struct RetentionAlarm {
    /// Slot name → when it was last warned about (Unix ms).
    over: BTreeMap<String, u64>,
}

impl RetentionAlarm {
    /// Compares a sample's slots with `max_bytes` at `now_unix_ms`.
    pub fn observe(
        &mut self,
        now_unix_ms: u64,
        slots: &[Slot],
        max_bytes: Option<u64>,
    ) -> Vec<RetentionEvent> {
        let mut events = Vec::new();
        let mut still_over = BTreeMap::new();
        if let Some(max) = max_bytes {
            for s in slots.iter().filter(|s| s.retained_wal_bytes > max) {
                let event = |crossed: bool| {
                    let (slot, retained_wal_bytes, max_bytes) =
                        (s.slot_name.clone(), s.retained_wal_bytes, max);
                    if crossed {
                        RetentionEvent::Crossed {
                            slot,
                            retained_wal_bytes,
                            max_bytes,
                        }
                    } else {
                        RetentionEvent::Still {
                            slot,
                            retained_wal_bytes,
                            max_bytes,
                        }
                    }
                };
                let warned = match self.over.get(&s.slot_name) {
                    None => {
                        events.push(event(true));
                        now_unix_ms
                    }
                    Some(&last) if now_unix_ms.saturating_sub(last) >= REPEAT_WARNING_MS => {
                        events.push(event(false));
                        now_unix_ms
                    }
                    Some(&last) => last,
                };
                still_over.insert(s.slot_name.clone(), warned);
            }
        }
        for slot in self.over.keys() {
            if !still_over.contains_key(slot) {
                events.push(RetentionEvent::Cleared { slot: slot.clone() });
            }
        }
        self.over = still_over;
        events
    }
}

/// Logs the retention events of every new workload sample against the current dynamic
/// configuration, until `shutdown` turns `true` or the collector ends.
pub fn spawn_watch(
    mut workload: watch::Receiver<Arc<WorkloadView>>,
    cluster: watch::Receiver<Arc<ClusterState>>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut alarm = RetentionAlarm::default();
        loop {
            tokio::select! {
                changed = workload.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
            }
            let Some(sample) = workload.borrow_and_update().sample.clone() else {
                continue;
            };
            let max = cluster.borrow().config.slots_max_retained_wal_bytes;
            for e in alarm.observe(sample.collected_unix_ms, &sample.slots, max) {
                log_event(&e);
            }
        }
    })
}

fn log_event(e: &RetentionEvent) {
    match e {
        RetentionEvent::Crossed {
            slot,
            retained_wal_bytes,
            max_bytes,
        } => warn!(
            slot = %slot,
            retained_wal_bytes,
            max_bytes,
            "replication slot {slot} retains {retained_wal_bytes} bytes of WAL, above \
             slots_max_retained_wal_bytes = {max_bytes}"
        ),
        RetentionEvent::Still {
            slot,
            retained_wal_bytes,
            max_bytes,
        } => warn!(
            slot = %slot,
            retained_wal_bytes,
            max_bytes,
            "replication slot {slot} still retains {retained_wal_bytes} bytes of WAL, above \
             slots_max_retained_wal_bytes = {max_bytes}"
        ),
        RetentionEvent::Cleared { slot } => info!(
            slot = %slot,
            "replication slot {slot} no longer retains more WAL than slots_max_retained_wal_bytes"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rale::config::{SlotMatch, SlotSpec};

    fn slot(name: &str, kind: &str, retained: u64) -> Slot {
        Slot {
            slot_name: name.into(),
            slot_type: kind.into(),
            plugin: (kind == "logical").then(|| "pgoutput".into()),
            database: (kind == "logical").then(|| "app".into()),
            active: false,
            retained_wal_bytes: retained,
            safe_wal_size_bytes: None,
        }
    }

    #[test]
    fn slots_are_classified_ignored_first() {
        let mut c = ClusterState::default();
        c.config.slots.insert(
            "cdc".into(),
            SlotSpec {
                kind: SlotKind::Logical,
                plugin: Some("pgoutput".into()),
                database: Some("app".into()),
            },
        );
        c.config.ignore_slots.push(SlotMatch {
            name: Some("barman".into()),
            ..Default::default()
        });
        let node = rale::NodeId::new("n-2").expect("valid id");
        let m = rale::status::MemberStatus {
            node: node.clone(),
            api_url: "http://127.0.0.1:8008".into(),
            pg_host: "127.0.0.1".into(),
            pg_port: 5432,
            role: rale::Role::Replica,
            running: true,
            timeline: rale::Timeline(1),
            lsn: rale::Lsn::ZERO,
            receive_lsn: None,
            replay_lsn: None,
            upstream: None,
            streaming: true,
            tags: Default::default(),
            detached: None,
            pending_restart: false,
            server_version_num: 150_000,
            system_id: None,
            logical_slots: Default::default(),
            heartbeat: 1,
        };
        c.members.insert(node, m);
        let kind = |s: &Slot| classify(s, &c);
        assert_eq!(kind(&slot("cdc", "logical", 0)), SlotManagement::Permanent);
        assert_eq!(
            kind(&slot("barman", "physical", 0)),
            SlotManagement::Ignored
        );
        assert_eq!(kind(&slot("n_2", "physical", 0)), SlotManagement::Member);
        assert_eq!(kind(&slot("n_2", "logical", 0)), SlotManagement::Foreign);
        assert_eq!(kind(&slot("other", "physical", 0)), SlotManagement::Foreign);
        // A permanent slot named like a member's is the member's.
        c.config.slots.insert(
            "n_2".into(),
            SlotSpec {
                kind: SlotKind::Physical,
                plugin: None,
                database: None,
            },
        );
        assert_eq!(
            classify(&slot("n_2", "physical", 0), &c),
            SlotManagement::Member
        );
    }

    #[test]
    fn the_view_flags_slots_over_the_limit() {
        let mut c = ClusterState::default();
        let sample = WorkloadSample {
            slots: vec![slot("a", "physical", 100), slot("b", "physical", 101)],
            collected_unix_ms: 7,
            ..Default::default()
        };
        let v = slots_view("n1", &sample, &c);
        assert!(v.slots.iter().all(|s| !s.over_limit), "no limit, no flag");
        c.config.slots_max_retained_wal_bytes = Some(100);
        let v = slots_view("n1", &sample, &c);
        assert_eq!(v.max_retained_wal_bytes, Some(100));
        let flagged: Vec<_> = v
            .slots
            .iter()
            .map(|s| (s.name.as_str(), s.over_limit))
            .collect();
        assert_eq!(flagged, [("a", false), ("b", true)]);
    }

    #[test]
    fn the_alarm_warns_on_crossing_then_periodically() {
        let mut a = RetentionAlarm::default();
        let big = [slot("a", "physical", 500)];
        let max = Some(100);
        assert!(a.observe(0, &[slot("a", "physical", 50)], max).is_empty());
        assert!(matches!(
            a.observe(1_000, &big, max).as_slice(),
            [RetentionEvent::Crossed { slot, retained_wal_bytes: 500, max_bytes: 100 }] if slot == "a"
        ));
        assert!(
            a.observe(2_000, &big, max).is_empty(),
            "not on every sample"
        );
        assert!(
            a.observe(1_000 + REPEAT_WARNING_MS - 1, &big, max)
                .is_empty()
        );
        assert!(matches!(
            a.observe(1_000 + REPEAT_WARNING_MS, &big, max).as_slice(),
            [RetentionEvent::Still { .. }]
        ));
        assert_eq!(
            a.observe(1_000 + REPEAT_WARNING_MS + 1, &big, None),
            [RetentionEvent::Cleared { slot: "a".into() }],
            "lifting the limit clears"
        );
        assert!(a.observe(9_999_999, &[], None).is_empty());
        assert!(matches!(
            a.observe(10_000_000, &big, max).as_slice(),
            [RetentionEvent::Crossed { .. }]
        ));
        assert_eq!(
            a.observe(10_000_001, &[], max),
            [RetentionEvent::Cleared { slot: "a".into() }],
            "a dropped slot clears"
        );
    }
}
