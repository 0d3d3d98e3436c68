//! Replicas' copies of the permanent logical slots (PostgreSQL ≤ 16; `docs/slots.md`).
//!
//! The primary publishes each permanent logical slot's `confirmed_flush_lsn` in its
//! [`MemberStatus::logical_slots`]. A streaming replica whose server lacks a copy has it
//! copied from the primary (a restart: at most [`COPY_ATTEMPTS_MAX`] times per slot until
//! a copy was advanced successfully, [`COPY_COOLDOWN_MS`] apart, never while a switchover
//! is pending); one
//! that has a copy behind the published position advances it to that position, clamped
//! to its own replay position — never past what the primary's consumer confirmed.

use super::*;
use crate::config::{SlotKind, SlotSpec};
use crate::pg::SlotAdvance;
use crate::types::Lsn;

/// Copies of one slot made without a successful advance of the copy since, after which
/// this replica stops copying it (until its agent restarts): a copy that PostgreSQL
/// refuses to load, or that is dropped again at its first advance because the WAL it
/// starts from is gone on this replica (measured on PostgreSQL 15 for a slot older than
/// the replica's base backup), must not restart the replica in a loop.
pub(super) const COPY_ATTEMPTS_MAX: u32 = 3;
/// Least time between two copies (each restarts the replica).
const COPY_COOLDOWN_MS: u64 = 30_000;
/// Longest a replica waits for the replicas named before it to copy first (so that two
/// replicas do not restart at once) before it copies anyway.
const COPY_STAGGER_MS_MAX: u64 = 120_000;
/// Least time between two advances: the primary publishes positions at most every
/// `publish_interval` anyway.
const ADVANCE_COOLDOWN_MS: u64 = 500;

/// The permanent logical slots of the configuration this node keeps copies of: not
/// ignored, not named like a member's physical slot.
pub(super) fn permanent_logical<'a>(
    state: &'a ClusterState,
) -> impl Iterator<Item = (&'a String, &'a SlotSpec)> + 'a {
    state.config.slots.iter().filter(move |(name, spec)| {
        spec.kind == SlotKind::Logical
            && !state.members.keys().any(|m| m.slot_name() == **name)
            && !state.config.ignore_slots.iter().any(|m| {
                m.matches(
                    name,
                    spec.kind,
                    spec.plugin.as_deref(),
                    spec.database.as_deref(),
                )
            })
    })
}

/// What a node publishes of its logical slots: the permanent ones of `config` that exist
/// on its server with the configured plugin and database, with their confirmed position.
pub(super) fn published(config: &DynamicConfig, p: &PgStatus) -> BTreeMap<String, Lsn> {
    p.logical_slots
        .iter()
        .filter(|s| {
            config.slots.get(&s.name).is_some_and(|spec| {
                spec.kind == SlotKind::Logical
                    && spec.plugin.as_deref() == Some(s.plugin.as_str())
                    && spec.database.as_deref() == Some(s.database.as_str())
            })
        })
        .filter_map(|s| Some((s.name.clone(), s.confirmed_flush_lsn?)))
        .collect()
}

impl Decider {
    /// On a replica streaming from `holder` for `streaming_ms`: the copy or advance of
    /// permanent logical slots to do now, as a decision, or `None` when there is nothing
    /// to do.
    pub(super) fn logical_slot_copies(
        &mut self,
        state: &ClusterState,
        obs: &Observation<'_>,
        holder: &NodeId,
        streaming_ms: u64,
    ) -> Option<Decision> {
        let p = obs.pg;
        let local = |name: &str| p.logical_slots.iter().find(|s| s.name == name);
        let wanted: Vec<(&String, &SlotSpec)> = permanent_logical(state).collect();
        // A copy advanced successfully is a copy that works: its attempts are forgotten,
        // so that it is copied again if it is lost later. Showing up is not enough: a
        // copy whose WAL is gone here shows up, fails its first advance and is dropped.
        for o in obs.outcomes {
            if let PgAction::AdvanceLogicalSlots { slots } = &o.action
                && o.error.is_none()
            {
                for s in slots {
                    self.slot_copies.remove(&s.name);
                }
            }
        }
        self.slot_copies
            .retain(|n, _| wanted.iter().any(|(w, _)| *w == n));
        if wanted.is_empty() {
            return None;
        }
        let primary = state.members.get(holder)?;
        let replay = p.replay_lsn?;
        let mut copy = Vec::new();
        let mut advance = Vec::new();
        let mut given_up = Vec::new();
        for (name, spec) in wanted {
            // Only slots the primary has and published: its consumer's position bounds ours.
            let Some(confirmed) = primary.logical_slots.get(name) else {
                continue;
            };
            match local(name) {
                None if self.slot_copies.get(name).copied().unwrap_or(0) >= COPY_ATTEMPTS_MAX => {
                    given_up.push(name.clone());
                }
                None => copy.push(name.clone()),
                Some(l)
                    if spec.plugin.as_deref() == Some(l.plugin.as_str())
                        && spec.database.as_deref() == Some(l.database.as_str()) =>
                {
                    let target = (*confirmed).min(replay);
                    if l.confirmed_flush_lsn.is_some_and(|c| c < target) {
                        advance.push(SlotAdvance {
                            name: name.clone(),
                            database: l.database.clone(),
                            lsn: target,
                        });
                    }
                }
                // A slot of that name with another plugin or database: left alone, as on
                // the primary (recreating it would throw its position away).
                Some(_) => {}
            }
        }
        // Replicas copy one after the other, in name order, so that they never all restart
        // at once: wait while one named before this one streams without a copy yet.
        let earlier = state.members.values().find(|m| {
            m.node < *self.node()
                && m.node != *holder
                && m.role == Role::Replica
                && m.streaming
                && copy.iter().any(|n| !m.logical_slots.contains_key(n))
        });
        let waiting_since = match (&copy.is_empty(), earlier) {
            (false, Some(_)) => Some(*self.copy_wait_since.get_or_insert(obs.now)),
            _ => {
                self.copy_wait_since = None;
                None
            }
        };
        let settle_ms = ms(self.config.publish_interval).saturating_mul(2);
        let blocked = if copy.is_empty() {
            None
        } else if !p.hot_standby_feedback {
            Some("hot_standby_feedback is off on this replica (a copy would not keep the primary's catalog rows it needs)".to_string())
        } else if streaming_ms < settle_ms {
            Some(format!(
                "streaming for {streaming_ms} ms only (waiting {settle_ms} ms)"
            ))
        } else if state.lease.as_ref().is_some_and(|l| l.successor.is_some()) {
            Some("a switchover is pending".to_string())
        } else if let (Some(m), Some(since)) = (earlier, waiting_since)
            && obs.now.since(since) < COPY_STAGGER_MS_MAX
        {
            Some(format!("{} copies first", m.node))
        } else {
            None
        };
        if !copy.is_empty()
            && blocked.is_none()
            && self.once("copy_logical_slots", obs.now, COPY_COOLDOWN_MS)
        {
            self.copy_wait_since = None;
            for n in &copy {
                *self.slot_copies.entry(n.clone()).or_default() += 1;
            }
            return Some(Decision {
                kind: DecisionKind::Replication,
                reason: format!(
                    "copying logical slots {copy:?} from the primary {holder}: this replica restarts to load them"
                ),
                actions: vec![pg(PgAction::CopyLogicalSlots {
                    source: holder.clone(),
                    slots: copy,
                })],
                lease: None,
                renewal: None,
                failsafe: None,
            });
        }
        let mut reason = format!("replica streaming from {holder}");
        if let Some(why) = blocked {
            reason.push_str(&format!("; logical slots {copy:?} not copied yet: {why}"));
        }
        if !given_up.is_empty() {
            reason.push_str(&format!(
                "; logical slots {given_up:?} not copied: {COPY_ATTEMPTS_MAX} copies did not load or could not be advanced (see the agent and server logs)"
            ));
        }
        let mut d = Decision::none(DecisionKind::Steady, reason);
        if !advance.is_empty() && self.once("advance_logical_slots", obs.now, ADVANCE_COOLDOWN_MS) {
            d.actions
                .push(pg(PgAction::AdvanceLogicalSlots { slots: advance }));
        }
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{self, me, node, observation};
    use super::*;
    use crate::decide::ActionOutcome;
    use crate::state::Lease;
    use crate::status::LogicalSlot;
    use crate::types::Timeline;

    fn cdc() -> SlotSpec {
        SlotSpec {
            kind: SlotKind::Logical,
            plugin: Some("test_decoding".into()),
            database: Some("postgres".into()),
        }
    }

    fn slot(name: &str, lsn: u64) -> LogicalSlot {
        LogicalSlot {
            name: name.into(),
            database: "postgres".into(),
            plugin: "test_decoding".into(),
            confirmed_flush_lsn: Some(Lsn(lsn)),
        }
    }

    /// A cluster whose primary n3 published `cdc` at `primary_lsn`.
    fn cluster(primary_lsn: Option<u64>) -> ClusterState {
        let mut state = ClusterState::default();
        state.config.slots.insert("cdc".into(), cdc());
        state.config.slots.insert(
            "archive".into(),
            SlotSpec {
                kind: SlotKind::Physical,
                plugin: None,
                database: None,
            },
        );
        let mut p = fixtures::primary("n3", 1, 10_000);
        if let Some(l) = primary_lsn {
            p.logical_slots.insert("cdc".into(), Lsn(l));
        }
        state.members.insert(node("n3"), p);
        state
    }

    fn replica(replay: u64, slots: Vec<LogicalSlot>) -> PgStatus {
        let mut pg = PgStatus::stopped(DataDirState::Initialized { system_id: 1 });
        pg.running = true;
        pg.reachable = true;
        pg.in_recovery = true;
        pg.streaming = true;
        pg.timeline = Timeline(1);
        pg.replay_lsn = Some(Lsn(replay));
        pg.upstream = Some(node("n3"));
        pg.hot_standby_feedback = true;
        pg.logical_slots = slots;
        pg
    }

    fn step(d: &mut Decider, state: &ClusterState, pg: &PgStatus, now: u64) -> Option<Decision> {
        step_after(d, state, pg, now, &[])
    }

    fn step_after(
        d: &mut Decider,
        state: &ClusterState,
        pg: &PgStatus,
        now: u64,
        outcomes: &[ActionOutcome],
    ) -> Option<Decision> {
        let obs = observation(now, pg, state, outcomes);
        d.observe(state, Millis(now));
        d.logical_slot_copies(state, &obs, &node("n3"), 60_000)
    }

    fn copies(d: &Option<Decision>) -> Vec<Vec<String>> {
        d.iter()
            .flat_map(|d| &d.actions)
            .filter_map(|a| match a {
                Action::Pg {
                    action: PgAction::CopyLogicalSlots { slots, .. },
                } => Some(slots.clone()),
                _ => None,
            })
            .collect()
    }

    fn advances(d: &Option<Decision>) -> Vec<SlotAdvance> {
        d.iter()
            .flat_map(|d| &d.actions)
            .filter_map(|a| match a {
                Action::Pg {
                    action: PgAction::AdvanceLogicalSlots { slots },
                } => Some(slots.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn a_missing_copy_is_copied_once_the_primary_published_the_slot() {
        let mut d = Decider::new(me(), Millis(0));
        // The primary has not published the slot yet: nothing to copy.
        let none = step(&mut d, &cluster(None), &replica(5_000, vec![]), 10_000);
        assert!(copies(&none).is_empty(), "{none:?}");
        let state = cluster(Some(4_000));
        let first = step(&mut d, &state, &replica(5_000, vec![]), 11_000);
        assert_eq!(copies(&first), vec![vec!["cdc".to_string()]], "{first:?}");
        assert_eq!(
            first.as_ref().map(|d| d.kind),
            Some(DecisionKind::Replication)
        );
        // Not again within the cool-down.
        let again = step(&mut d, &state, &replica(5_000, vec![]), 12_000);
        assert!(copies(&again).is_empty(), "{again:?}");
    }

    #[test]
    fn copies_stop_after_the_attempts_bound_and_resume_when_lost() {
        let mut d = Decider::new(me(), Millis(0));
        let state = cluster(Some(4_000));
        let mut made = 0;
        // Ten minutes of a copy that never shows up: at most COPY_ATTEMPTS_MAX restarts.
        for i in 0..600u64 {
            let out = step(&mut d, &state, &replica(5_000, vec![]), 10_000 + i * 1_000);
            made += copies(&out).len();
            if i == 599 {
                let reason = out.map(|d| d.reason).unwrap_or_default();
                assert!(reason.contains("did not load"), "{reason}");
            }
        }
        assert_eq!(made, COPY_ATTEMPTS_MAX as usize);
        // The copy shows up and is advanced: it works, its attempts are forgotten; lost
        // later, it is copied again.
        let advanced = [ActionOutcome {
            action: PgAction::AdvanceLogicalSlots {
                slots: vec![SlotAdvance {
                    name: "cdc".into(),
                    database: "postgres".into(),
                    lsn: Lsn(4_000),
                }],
            },
            error: None,
        }];
        let loaded = step_after(
            &mut d,
            &state,
            &replica(5_000, vec![slot("cdc", 4_000)]),
            700_000,
            &advanced,
        );
        assert!(copies(&loaded).is_empty(), "{loaded:?}");
        let lost = step(&mut d, &state, &replica(5_000, vec![]), 800_000);
        assert_eq!(copies(&lost).len(), 1, "{lost:?}");
    }

    /// A copy that shows up but is dropped at every advance (its WAL is gone on this
    /// replica) is not copied for ever: the restarts stop at the bound.
    #[test]
    fn a_copy_dropped_at_every_advance_is_not_copied_in_a_loop() {
        let mut d = Decider::new(me(), Millis(0));
        let state = cluster(Some(4_000));
        let failed = [ActionOutcome {
            action: PgAction::AdvanceLogicalSlots {
                slots: vec![SlotAdvance {
                    name: "cdc".into(),
                    database: "postgres".into(),
                    lsn: Lsn(4_000),
                }],
            },
            error: Some("requested WAL segment has already been removed".into()),
        }];
        let mut made = 0;
        for i in 0..600u64 {
            // Odd seconds: the copy is there (behind), and its advance failed; even
            // seconds: it was dropped.
            let present = i % 2 == 1;
            let pg = replica(
                5_000,
                if present {
                    vec![slot("cdc", 1_000)]
                } else {
                    vec![]
                },
            );
            let outcomes: &[ActionOutcome] = if present { &[] } else { &failed };
            let out = step_after(&mut d, &state, &pg, 10_000 + i * 1_000, outcomes);
            made += copies(&out).len();
        }
        assert_eq!(made, COPY_ATTEMPTS_MAX as usize);
    }

    #[test]
    fn copies_wait_for_feedback_streaming_and_no_switchover() {
        let state = cluster(Some(4_000));
        let mut d = Decider::new(me(), Millis(0));
        let mut pg = replica(5_000, vec![]);
        pg.hot_standby_feedback = false;
        let off = step(&mut d, &state, &pg, 10_000);
        assert!(copies(&off).is_empty());
        assert!(
            off.map(|d| d.reason)
                .unwrap_or_default()
                .contains("hot_standby_feedback"),
        );
        let mut switching = state.clone();
        switching.lease = Some(Lease {
            holder: Some(node("n3")),
            epoch: Epoch(1),
            holder_clock: Millis(0),
            renewals: 0,
            successor: Some(node("n1")),
            final_position: None,
        });
        let out = step(&mut d, &switching, &replica(5_000, vec![]), 11_000);
        assert!(copies(&out).is_empty(), "{out:?}");
        let obs_pg = replica(5_000, vec![]);
        let obs = observation(12_000, &obs_pg, &state, &[]);
        let young = d.logical_slot_copies(&state, &obs, &node("n3"), 10);
        assert!(copies(&young).is_empty(), "{young:?}");
    }

    #[test]
    fn replicas_copy_one_after_the_other() {
        let mut state = cluster(Some(4_000));
        let mut other = state.members[&node("n3")].clone();
        other.node = node("n0");
        other.role = Role::Replica;
        other.streaming = true;
        other.logical_slots.clear();
        state.members.insert(node("n0"), other.clone());
        let mut d = Decider::new(me(), Millis(0));
        let wait = step(&mut d, &state, &replica(5_000, vec![]), 10_000);
        assert!(copies(&wait).is_empty(), "{wait:?}");
        assert!(
            wait.map(|d| d.reason)
                .unwrap_or_default()
                .contains("n0 copies first")
        );
        // n0 has its copy: our turn.
        other.logical_slots.insert("cdc".into(), Lsn(4_000));
        state.members.insert(node("n0"), other.clone());
        assert_eq!(
            copies(&step(&mut d, &state, &replica(5_000, vec![]), 11_000)).len(),
            1
        );
        // n0 never copies: we go anyway after the bound.
        let mut d = Decider::new(me(), Millis(0));
        other.logical_slots.clear();
        state.members.insert(node("n0"), other);
        assert!(copies(&step(&mut d, &state, &replica(5_000, vec![]), 10_000)).is_empty());
        let late = step(
            &mut d,
            &state,
            &replica(5_000, vec![]),
            10_000 + COPY_STAGGER_MS_MAX,
        );
        assert_eq!(copies(&late).len(), 1, "{late:?}");
    }

    #[test]
    fn a_copy_is_advanced_to_the_confirmed_position_never_past_it() {
        let mut d = Decider::new(me(), Millis(0));
        // Replayed further than the consumer confirmed: the confirmed position bounds.
        let out = step(
            &mut d,
            &cluster(Some(4_000)),
            &replica(9_000, vec![slot("cdc", 1_000)]),
            10_000,
        );
        let a = advances(&out);
        assert_eq!(a.len(), 1, "{out:?}");
        assert_eq!(a[0].lsn, Lsn(4_000));
        assert_eq!(a[0].database, "postgres");
        // Replayed less than confirmed: the replay position bounds.
        let out = step(
            &mut d,
            &cluster(Some(4_000)),
            &replica(3_000, vec![slot("cdc", 1_000)]),
            20_000,
        );
        assert_eq!(advances(&out).first().map(|a| a.lsn), Some(Lsn(3_000)));
        // Already there, or ahead: nothing.
        let out = step(
            &mut d,
            &cluster(Some(4_000)),
            &replica(9_000, vec![slot("cdc", 4_000)]),
            30_000,
        );
        assert!(advances(&out).is_empty(), "{out:?}");
        // No slot of another plugin is touched.
        let mut other = slot("cdc", 1_000);
        other.plugin = "pgoutput".into();
        let out = step(
            &mut d,
            &cluster(Some(4_000)),
            &replica(9_000, vec![other]),
            40_000,
        );
        assert!(
            advances(&out).is_empty() && copies(&out).is_empty(),
            "{out:?}"
        );
    }

    #[test]
    fn ignored_and_member_named_slots_are_not_copied() {
        let mut state = cluster(Some(4_000));
        state.config.ignore_slots.push(crate::config::SlotMatch {
            name: Some("cdc".into()),
            ..Default::default()
        });
        let mut d = Decider::new(me(), Millis(0));
        assert!(step(&mut d, &state, &replica(5_000, vec![]), 10_000).is_none());
    }

    #[test]
    fn only_configured_slots_with_their_plugin_are_published() {
        let state = cluster(None);
        let mut pg = replica(5_000, vec![slot("cdc", 4_000), slot("adhoc", 3_000)]);
        let p = published(&state.config, &pg);
        assert_eq!(
            p.into_iter().collect::<Vec<_>>(),
            vec![("cdc".to_string(), Lsn(4_000))]
        );
        pg.logical_slots[0].database = "app".into();
        assert!(published(&state.config, &pg).is_empty());
    }
}
