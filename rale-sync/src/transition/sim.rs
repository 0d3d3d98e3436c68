//! Model check of [`super::plan_transition`]: a simulated primary commits, its standbys
//! acknowledge under whatever value is enforced (both values while a reload is under
//! way), plans run step by step (and are abandoned when a catch-up cannot complete),
//! and after every step and every commit each acknowledged commit must be on enough
//! members of the recorded set for every possible failover consultation to find it.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::choose::{Candidate, choose_sync_set};
use crate::{SyncConfig, SyncMode};

/// A tiny deterministic generator for the simulation's choices.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        if n == 0 { 0 } else { (x % n as u64) as usize }
    }

    fn pick_subset(&mut self, from: &[String], count: usize) -> Vec<String> {
        let mut pool = from.to_vec();
        let mut chosen = Vec::new();
        for _ in 0..count.min(pool.len()) {
            chosen.push(pool.swap_remove(self.below(pool.len())));
        }
        chosen
    }
}

const UNIVERSE: [&str; 5] = ["a", "b", "c", "d", "B"];

/// A primary with standbys, commits and acknowledgements, driven by plans.
struct Sim {
    recorded: RecordedSet,
    enforced: StandbyNames,
    /// The value some walsenders still use while a reload is under way.
    reloading_from: Option<StandbyNames>,
    wal_end: u64,
    acked_max: u64,
    flush: BTreeMap<String, u64>,
    rng: Rng,
}

impl Sim {
    fn new(seed: u64) -> Self {
        Sim {
            recorded: RecordedSet::default(),
            enforced: StandbyNames::Empty,
            reloading_from: None,
            wal_end: 0,
            acked_max: 0,
            flush: BTreeMap::new(),
            rng: Rng(seed | 1),
        }
    }

    /// Every acknowledged commit is found by every possible failover consultation.
    fn check(&self, context: &str) {
        assert!(
            is_safe(&self.recorded, &self.enforced),
            "{context}: invariant broken: {:?} under {:?}",
            self.enforced,
            self.recorded
        );
        if let Some(old) = &self.reloading_from {
            assert!(
                is_safe(&self.recorded, old),
                "{context}: old value unsafe during reload"
            );
        }
        let required = self.recorded.required_holders();
        if required > 0 && self.acked_max > 0 {
            let holders = self
                .recorded
                .keys()
                .iter()
                .filter(|k| self.flush.get(*k).copied().unwrap_or(0) >= self.acked_max)
                .count();
            assert!(
                holders >= required,
                "{context}: commit {} held by {holders} of {:?}, failover needs {required}",
                self.acked_max,
                self.recorded
            );
        }
    }

    fn commit(&mut self) {
        self.wal_end += 1;
        let rule = match &self.reloading_from {
            Some(old) if self.rng.below(2) == 0 => old.clone(),
            _ => self.enforced.clone(),
        };
        match rule.list() {
            None => self.acked_max = self.wal_end,
            Some(list) => {
                let mut usable: BTreeSet<String> = list
                    .members()
                    .iter()
                    .filter(|m| !m.eq_ignore_ascii_case(BLOCKED_APPLICATION_NAME))
                    .map(|m| m.to_ascii_lowercase())
                    .collect();
                if list.has_wildcard() {
                    usable.remove("*");
                    usable.extend(UNIVERSE.iter().map(|u| u.to_ascii_lowercase()));
                    usable.insert("outsider".into());
                }
                let usable: Vec<String> = usable.into_iter().collect();
                let n = list.num() as usize;
                if usable.len() >= n {
                    for acker in self.rng.pick_subset(&usable, n) {
                        let pos = self.flush.entry(acker).or_insert(0);
                        *pos = (*pos).max(self.wal_end);
                    }
                    self.acked_max = self.wal_end;
                }
            }
        }
        // Some standby streams ahead on its own.
        if self.rng.below(4) == 0 {
            let who = UNIVERSE[self.rng.below(UNIVERSE.len())].to_ascii_lowercase();
            self.flush.insert(who, self.wal_end);
        }
        self.check("after a commit");
    }

    fn commits(&mut self) {
        for _ in 0..self.rng.below(4) {
            self.commit();
        }
    }

    /// Runs a plan; returns false when a catch-up cannot complete (plan abandoned).
    fn run(&mut self, steps: &[Step]) -> bool {
        for step in steps {
            // The previous step completed: a reload is over.
            self.reloading_from = None;
            self.commits();
            match step {
                Step::Publish(set) => self.recorded = set.clone(),
                Step::Enforce(value) => {
                    self.reloading_from =
                        Some(std::mem::replace(&mut self.enforced, value.clone()));
                }
                Step::CatchUp(set) => {
                    let l = self.wal_end;
                    let keys: Vec<String> = set.keys().into_iter().collect();
                    let needed = set.required_holders();
                    if keys.len() < needed {
                        return false;
                    }
                    for k in self.rng.pick_subset(&keys, needed) {
                        let pos = self.flush.entry(k).or_insert(0);
                        *pos = (*pos).max(l);
                    }
                }
            }
            self.check(&format!("after {step:?}"));
            self.commits();
        }
        self.reloading_from = None;
        true
    }
}

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a",
        "b",
        "c",
        "d",
        "B",
        "*",
        "rale_fence",
        "rale_blocked",
    ])
    .prop_map(String::from)
}

fn raw_target() -> impl Strategy<Value = Option<Target>> {
    (
        prop::collection::vec(name(), 0..4),
        0u32..4,
        any::<bool>(),
        1u32..4,
        prop::collection::vec(name(), 1..5),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(r, n_r, quorum, n_e, e, empty)| {
            let enforced = if empty {
                StandbyNames::Empty
            } else if quorum {
                StandbyNames::any(n_e, e).ok()?
            } else {
                StandbyNames::first(n_e, e).ok()?
            };
            Target::new(RecordedSet::new(r, n_r), enforced).ok()
        })
}

fn planned_target() -> impl Strategy<Value = Option<Target>> {
    (
        prop::sample::select(vec![SyncMode::Off, SyncMode::On, SyncMode::Quorum]),
        0u32..4,
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(
            (
                prop::sample::select(UNIVERSE.to_vec()),
                prop::bool::weighted(0.8),
                prop::bool::weighted(0.1),
                0u32..3,
            ),
            0..5,
        ),
    )
        .prop_map(|(mode, node_count, strict, fence, cands)| {
            let config = SyncConfig {
                mode,
                node_count,
                strict,
                ..SyncConfig::default()
            };
            let candidates: Vec<Candidate> = cands
                .into_iter()
                .map(|(name, streaming, nosync, priority)| Candidate {
                    name: name.into(),
                    streaming,
                    flush_lag_bytes: 0,
                    replay_lag_bytes: 0,
                    nosync,
                    priority,
                    healthy: true,
                    recorded: false,
                })
                .collect();
            let plan = choose_sync_set(&config, &candidates);
            Some(Target::from_plan(&plan, fence).expect("every chosen plan gives a safe target"))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_step_of_every_plan_keeps_commits_safe(
        seed in any::<u64>(),
        targets in prop::collection::vec(prop_oneof![planned_target(), raw_target()], 1..8),
    ) {
        let mut sim = Sim::new(seed);
        for t in targets.into_iter().flatten() {
            let steps = plan_transition(&sim.recorded, &sim.enforced, &t);
            // Every intermediate state satisfies the invariant, statically too.
            let (mut r, mut e) = (sim.recorded.clone(), sim.enforced.clone());
            for step in &steps {
                match step {
                    Step::Publish(s) => r = s.clone(),
                    Step::Enforce(v) => e = v.clone(),
                    Step::CatchUp(_) => {}
                }
                prop_assert!(is_safe(&r, &e), "{:?} then {:?}", steps, step);
            }
            prop_assert_eq!((&r, &e), (t.recorded(), t.enforced()));
            if sim.run(&steps) {
                prop_assert_eq!(&sim.recorded, t.recorded());
                prop_assert_eq!(&sim.enforced, t.enforced());
                prop_assert!(plan_transition(&sim.recorded, &sim.enforced, &t).is_empty());
            }
        }
    }
}
