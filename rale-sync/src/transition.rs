//! Moving from one synchronous set to another without ever losing an acknowledged
//! commit in a failover.
//!
//! Two things describe the synchronous set at any instant:
//!
//! - **R**, the [`RecordedSet`] published in consensus: members and `n_R`. Failover
//!   trusts it: before promoting, it reaches `q = promotion_quorum(|R|, n_R)` members of
//!   `R` (`|R| − n_R + 1` when `n_R ≤ |R|`), detaches them from the old primary and
//!   promotes the most advanced standby it reached.
//! - **E**, the [`StandbyNames`] PostgreSQL enforces: a commit is acknowledged once
//!   `n_E` distinct standbys named in `E` (any of them for `ANY`, the connected ones of
//!   highest priority for `FIRST`, so again any `n_E` of them) have it.
//!
//! # The invariant
//!
//! Failover finds a commit when every possible set of `q` members of `R` contains a
//! standby holding it, that is when at least `h(R) = |R| − q + 1` members of `R` hold it
//! ([`RecordedSet::required_holders`]; `h = n_R` whenever `n_R ≤ |R|`). A commit
//! acknowledged under `E` is held by `n_E` standbys named in `E`; at worst all the names
//! of `E` outside `R` (the fence included: it holds no data) are among them, so at least
//! `n_E − |E \ R|` members of `R` hold it. Hence, at every instant:
//!
//! ```text
//! n_R = 0                              (R promises nothing: asynchronous)
//!   or E can acknowledge nothing       (fewer distinct usable names than n_E)
//!   or n_E − |E \ R| ≥ h(R)            (with '*' in E, |E \ R| is unbounded)
//! ```
//!
//! ([`is_safe`]). With `E ⊆ R` and `n_R ≤ |R|` this is simply `n_E ≥ n_R`. Names are
//! compared as PostgreSQL matches them, ASCII case-insensitively; reserved names
//! ([`crate::enforce::is_reserved_name`]) never count as members of `R`.
//!
//! The invariant covers commits acknowledged under the *current* `E`. Commits
//! acknowledged earlier, under another `E`, are held by enough members of the `R` of
//! their time; replacing `R` by a *loosening* of it (a superset of its members with a
//! `h` no larger, [`is_loosening`]) keeps them covered. Any other change of `R` first
//! needs proof that the new members have caught up ([`Step::CatchUp`]).
//!
//! # The plan
//!
//! [`plan_transition`] moves from `(R0, E0)` to a safe target `(R1, E1)`:
//!
//! 1. If `E1` changes and is not safe under `R0`: publish `Rmid = (R0 ∪ R1, min(h(R0),
//!    h(R1)))`, a loosening of `R0` under which both `E0` and `E1` are safe ("grow:
//!    publish first").
//! 2. Enforce `E1`. While PostgreSQL reloads, some walsenders still release commits
//!    under `E0`: the recorded set is safe for both.
//! 3. Unless `R1` is a loosening of the recorded set (or promises nothing), wait until
//!    `h(R1)` members of `R1` have caught up with the primary's WAL ("shrink: enforce
//!    first, then publish").
//! 4. Publish `R1`.
//!
//! Every step keeps the invariant and keeps every acknowledged commit on enough members
//! of the recorded set; the property tests check both after every step and every commit
//! of a simulated cluster.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::choose::SyncPlan;
use crate::enforce::{BLOCKED_APPLICATION_NAME, enforced_names, is_reserved_name};
use crate::names::StandbyNames;
use crate::quorum::promotion_quorum;
use crate::{Error, Result};

/// The synchronous set as recorded in consensus: the standbys failover consults and the
/// number `n` of them that acknowledge each commit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecordedSet {
    /// Member names (`application_name`s), most preferred first.
    pub members: Vec<String>,
    /// Acknowledgements per commit; 0 means asynchronous (failover is not bound by the set).
    pub num: u32,
}

impl RecordedSet {
    /// A recorded set.
    pub fn new<S: Into<String>>(members: impl IntoIterator<Item = S>, num: u32) -> Self {
        RecordedSet {
            members: members.into_iter().map(Into::into).collect(),
            num,
        }
    }

    /// What to record for a plan: its standbys and its `num`.
    pub fn from_plan(plan: &SyncPlan) -> Self {
        RecordedSet {
            members: plan.standbys.clone(),
            num: plan.num,
        }
    }

    /// The distinct members as PostgreSQL tells them apart (ASCII lower case), without
    /// reserved pseudo-standby names.
    pub fn keys(&self) -> BTreeSet<String> {
        self.members
            .iter()
            .filter(|m| !is_reserved_name(m))
            .map(|m| m.to_ascii_lowercase())
            .collect()
    }

    /// How many members failover must reach before promoting
    /// ([`promotion_quorum`] over the distinct members), or `None` when `num` is 0 and
    /// the set promises nothing.
    pub fn consulted_count(&self) -> Option<usize> {
        if self.num == 0 {
            return None;
        }
        let num = usize::try_from(self.num).unwrap_or(usize::MAX);
        Some(promotion_quorum(self.keys().len(), num))
    }

    /// `h(R)`: how many members must hold a commit for every failover consultation to
    /// find it (`num` when `num ≤ |R|`, 1 when `num > |R|`, 0 when `num` is 0). An empty
    /// set with `num > 0` can cover nothing: its `h` is 1 and no member can supply it.
    pub fn required_holders(&self) -> usize {
        match self.consulted_count() {
            None => 0,
            Some(consulted) => self.keys().len() - consulted + 1,
        }
    }
}

/// Whether `E` is safe while `R` is recorded (the invariant in the module docs).
pub fn is_safe(recorded: &RecordedSet, enforced: &StandbyNames) -> bool {
    let required = recorded.required_holders();
    if required == 0 {
        return true;
    }
    let Some(list) = enforced.list() else {
        // Commits are acknowledged without any standby while R promises some.
        return false;
    };
    let n_e = usize::try_from(list.num()).unwrap_or(usize::MAX);
    let usable: BTreeSet<String> = list
        .members()
        .iter()
        .filter(|m| !m.eq_ignore_ascii_case(BLOCKED_APPLICATION_NAME))
        .map(|m| m.to_ascii_lowercase())
        .collect();
    if list.has_wildcard() {
        // Any standby at all may acknowledge: nothing bounds |E \ R|.
        return false;
    }
    if usable.len() < n_e {
        // No commit can be acknowledged under E.
        return true;
    }
    let r = recorded.keys();
    let outside = usable.iter().filter(|m| !r.contains(*m)).count();
    n_e.saturating_sub(outside) >= required
}

/// Whether replacing `from` by `to` keeps every commit `from` covers covered: `to`
/// promises nothing, or keeps all members of `from` and requires no more holders.
pub fn is_loosening(from: &RecordedSet, to: &RecordedSet) -> bool {
    let required_to = to.required_holders();
    if required_to == 0 {
        return true;
    }
    let required_from = from.required_holders();
    required_from > 0 && required_to <= required_from && to.keys().is_superset(&from.keys())
}

/// The loosening of `from` that also covers `to`: all members of both (those of `to`
/// first), requiring the smaller number of holders.
fn union_loosening(from: &RecordedSet, to: &RecordedSet) -> RecordedSet {
    let mut members = to.members.clone();
    let mut keys: BTreeSet<String> = members.iter().map(|m| m.to_ascii_lowercase()).collect();
    for m in &from.members {
        if keys.insert(m.to_ascii_lowercase()) {
            members.push(m.clone());
        }
    }
    let required = from.required_holders().min(to.required_holders());
    RecordedSet {
        members,
        num: u32::try_from(required).unwrap_or(u32::MAX),
    }
}

/// A state both sides must reach: the set to record and the value to enforce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    recorded: RecordedSet,
    enforced: StandbyNames,
}

impl Target {
    /// A target, refused unless it satisfies the invariant ([`is_safe`]).
    pub fn new(recorded: RecordedSet, enforced: StandbyNames) -> Result<Self> {
        if !is_safe(&recorded, &enforced) {
            return Err(Error::InvalidSetting(format!(
                "enforcing {enforced:?} while recording {recorded:?} could lose acknowledged commits in a failover"
            )));
        }
        Ok(Target { recorded, enforced })
    }

    /// The target for a plan: record its standbys and `num`, enforce
    /// [`enforced_names`]`(plan, fence)`.
    pub fn from_plan(plan: &SyncPlan, fence: bool) -> Result<Self> {
        Target::new(RecordedSet::from_plan(plan), enforced_names(plan, fence))
    }

    /// The set to record.
    pub fn recorded(&self) -> &RecordedSet {
        &self.recorded
    }

    /// The value to enforce.
    pub fn enforced(&self) -> &StandbyNames {
        &self.enforced
    }
}

/// One step of a transition, executed in order; each must complete before the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write this set to consensus (complete once committed by the consensus majority).
    Publish(RecordedSet),
    /// Set `synchronous_standby_names` on the primary and reload. Complete only once
    /// `SHOW synchronous_standby_names` shows the new value **and** every walsender in
    /// `pg_stat_replication` reports the `sync_priority` the new value gives it
    /// ([`crate::names::SyncList::priority_of`], 0 for none): each walsender releases
    /// waiting commits under its own copy of the setting.
    Enforce(StandbyNames),
    /// Read the primary's WAL position `L` (`pg_current_wal_flush_lsn()`) once when the
    /// step starts, then wait until [`RecordedSet::required_holders`] distinct members of
    /// this set report, in `pg_stat_replication`, a position ≥ `L` (`flush_lsn`; `write_lsn`
    /// under `remote_write`, `replay_lsn` under `remote_apply`). This proves every commit
    /// acknowledged so far is on enough of them. It may never complete (for instance a
    /// strict plan with no standby left); the state before it stays safe meanwhile, and
    /// the executor may drop the rest of the plan and plan again from there.
    CatchUp(RecordedSet),
}

/// The ordered steps from the recorded set `recorded` and the enforced value `enforced`
/// to `desired` (see the module documentation). Empty when nothing changes.
///
/// Precondition: the current state is safe — `recorded` covers every commit
/// acknowledged so far and `is_safe(recorded, enforced)`. Every plan keeps it so, also
/// when the executor abandons it after any completed step.
pub fn plan_transition(
    recorded: &RecordedSet,
    enforced: &StandbyNames,
    desired: &Target,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut current = recorded.clone();
    if *enforced != desired.enforced {
        if !is_safe(&current, &desired.enforced) {
            let mid = if is_loosening(&current, &desired.recorded)
                && is_safe(&desired.recorded, enforced)
            {
                desired.recorded.clone()
            } else {
                union_loosening(&current, &desired.recorded)
            };
            debug_assert!(is_safe(&mid, &desired.enforced));
            if mid != current {
                steps.push(Step::Publish(mid.clone()));
                current = mid;
            }
        }
        steps.push(Step::Enforce(desired.enforced.clone()));
    }
    if current != desired.recorded {
        if !is_loosening(&current, &desired.recorded) {
            steps.push(Step::CatchUp(desired.recorded.clone()));
        }
        steps.push(Step::Publish(desired.recorded.clone()));
    }
    steps
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::choose::{Candidate, choose_sync_set};
    use crate::enforce::FENCE_APPLICATION_NAME;
    use crate::{SyncConfig, SyncMode};

    fn first(num: u32, members: &[&str]) -> StandbyNames {
        StandbyNames::first(num, members.iter().copied()).expect("valid")
    }

    fn quorum(num: u32, members: &[&str]) -> StandbyNames {
        StandbyNames::any(num, members.iter().copied()).expect("valid")
    }

    fn set(members: &[&str], num: u32) -> RecordedSet {
        RecordedSet::new(members.iter().copied(), num)
    }

    fn target(members: &[&str], num: u32, enforced: StandbyNames) -> Target {
        Target::new(set(members, num), enforced).expect("safe target")
    }

    #[test]
    fn invariant_examples() {
        assert!(is_safe(&set(&["a"], 1), &first(1, &["a"])));
        assert!(is_safe(&set(&["a"], 1), &first(2, &["rale_fence", "a"])));
        assert!(!is_safe(&set(&["a"], 1), &first(1, &["rale_fence", "a"])));
        assert!(!is_safe(&set(&["a"], 1), &first(1, &["a", "b"])));
        assert!(
            is_safe(&set(&["a"], 1), &first(2, &["a", "b"])),
            "n_E − |E∖R| = 1"
        );
        assert!(!is_safe(&set(&["a", "b"], 2), &quorum(1, &["a", "b"])));
        assert!(
            is_safe(&set(&["A", "b"], 2), &quorum(2, &["a", "B"])),
            "case-insensitive"
        );
        assert!(!is_safe(&set(&["a"], 1), &first(1, &["*"])));
        assert!(!is_safe(&set(&["a"], 1), &StandbyNames::Empty));
        assert!(is_safe(&set(&[], 0), &StandbyNames::Empty));
        assert!(is_safe(&set(&[], 1), &first(1, &["rale_blocked"])));
        assert!(is_safe(
            &set(&[], 1),
            &first(2, &["rale_fence", "rale_blocked"])
        ));
        assert!(!is_safe(
            &set(&["rale_fence"], 1),
            &first(1, &["rale_fence"])
        ));
        assert_eq!(set(&["a", "A", "b"], 1).consulted_count(), Some(2));
        assert_eq!(set(&["a", "b", "c"], 2).required_holders(), 2);
        assert_eq!(set(&["a"], 3).required_holders(), 1);
        assert_eq!(set(&["a"], 0).required_holders(), 0);
    }

    #[test]
    fn grow_publishes_first_then_enforces() {
        // One more quorum member: publish the larger set, then enforce it.
        let steps = plan_transition(
            &set(&["a"], 1),
            &first(1, &["a"]),
            &target(&["a", "b"], 1, quorum(1, &["a", "b"])),
        );
        assert_eq!(
            steps,
            [
                Step::Publish(set(&["a", "b"], 1)),
                Step::Enforce(quorum(1, &["a", "b"]))
            ]
        );
    }

    #[test]
    fn raising_n_waits_for_catch_up_before_publishing() {
        // FIRST 2 (a, b) already needs `a`, so it is safe under ({a}, 1): enforce at once,
        // but promise n = 2 only once both hold every acknowledged commit.
        let steps = plan_transition(
            &set(&["a"], 1),
            &first(1, &["a"]),
            &target(&["a", "b"], 2, first(2, &["a", "b"])),
        );
        assert_eq!(
            steps,
            [
                Step::Enforce(first(2, &["a", "b"])),
                Step::CatchUp(set(&["a", "b"], 2)),
                Step::Publish(set(&["a", "b"], 2)),
            ]
        );
        // Lowering n under ANY: the recorded n drops first.
        let steps = plan_transition(
            &set(&["a", "b", "c"], 2),
            &quorum(2, &["a", "b", "c"]),
            &target(&["a", "b", "c"], 1, quorum(1, &["a", "b", "c"])),
        );
        assert_eq!(
            steps,
            [
                Step::Publish(set(&["a", "b", "c"], 1)),
                Step::Enforce(quorum(1, &["a", "b", "c"])),
            ]
        );
        // Raising it: enforce first, publish after the catch-up.
        let steps = plan_transition(
            &set(&["a", "b", "c"], 1),
            &quorum(1, &["a", "b", "c"]),
            &target(&["a", "b", "c"], 2, quorum(2, &["a", "b", "c"])),
        );
        assert_eq!(
            steps,
            [
                Step::Enforce(quorum(2, &["a", "b", "c"])),
                Step::CatchUp(set(&["a", "b", "c"], 2)),
                Step::Publish(set(&["a", "b", "c"], 2)),
            ]
        );
    }

    #[test]
    fn shrink_enforces_first_then_publishes() {
        let steps = plan_transition(
            &set(&["a", "b"], 1),
            &quorum(1, &["a", "b"]),
            &target(&["a"], 1, quorum(1, &["a"])),
        );
        assert_eq!(
            steps,
            [
                Step::Enforce(quorum(1, &["a"])),
                Step::CatchUp(set(&["a"], 1)),
                Step::Publish(set(&["a"], 1)),
            ]
        );
    }

    #[test]
    fn going_async_publishes_the_missing_promise_first() {
        let steps = plan_transition(
            &set(&["a"], 1),
            &first(2, &[FENCE_APPLICATION_NAME, "a"]),
            &target(&[], 0, first(1, &[FENCE_APPLICATION_NAME])),
        );
        assert_eq!(
            steps,
            [
                Step::Publish(set(&[], 0)),
                Step::Enforce(first(1, &[FENCE_APPLICATION_NAME])),
            ]
        );
        let back = plan_transition(
            &set(&[], 0),
            &first(1, &[FENCE_APPLICATION_NAME]),
            &target(&["a"], 1, first(2, &[FENCE_APPLICATION_NAME, "a"])),
        );
        assert_eq!(
            back,
            [
                Step::Enforce(first(2, &[FENCE_APPLICATION_NAME, "a"])),
                Step::CatchUp(set(&["a"], 1)),
                Step::Publish(set(&["a"], 1)),
            ]
        );
    }

    #[test]
    fn nothing_to_do_and_unsafe_targets() {
        let t = target(&["a"], 1, first(1, &["a"]));
        assert!(plan_transition(&set(&["a"], 1), &first(1, &["a"]), &t).is_empty());
        assert!(Target::new(set(&["a"], 1), first(1, &["b"])).is_err());
    }

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
                    })
                    .collect();
                let plan = choose_sync_set(&config, &candidates);
                Some(
                    Target::from_plan(&plan, fence).expect("every chosen plan gives a safe target"),
                )
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
}
