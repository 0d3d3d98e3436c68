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
//! When `E0` acknowledges nothing ([`acknowledges_nothing`]: a new primary promoted
//! under `FIRST 1 (rale_blocked)`, a strict cluster waiting for its first standby) and
//! `R1` promises something, the order is instead: catch up (WAL streams while commits
//! are blocked), publish `R1`, enforce `E1` — so no commit is ever acknowledged while
//! the recorded set promises less than the enforced value delivers.
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

    /// Whether the current primary `primary` is a member: it holds every commit it
    /// acknowledged, so it counts as one holder of each (see [`is_safe_for`]).
    pub fn contains_primary(&self, primary: Option<&str>) -> bool {
        primary.is_some_and(|p| self.keys().contains(&p.to_ascii_lowercase()))
    }

    /// [`RecordedSet::required_holders`] *besides* the primary when it is a member.
    pub fn required_standby_holders(&self, primary: Option<&str>) -> usize {
        let h = self.required_holders();
        if self.contains_primary(primary) {
            h.saturating_sub(1)
        } else {
            h
        }
    }
}

/// Whether `E` is safe while `R` is recorded (the invariant in the module docs).
pub fn is_safe(recorded: &RecordedSet, enforced: &StandbyNames) -> bool {
    is_safe_for(None, recorded, enforced)
}

/// [`is_safe`] when `R` may name the current primary: the primary holds every commit it
/// acknowledges, so `E` must supply one holder fewer. A set naming only the primary
/// (`{primary}`, 1) is what a non-strict primary records when no standby is synchronous:
/// commits go on, and failover waits for that primary (nobody else is sure to hold them).
pub fn is_safe_for(primary: Option<&str>, recorded: &RecordedSet, enforced: &StandbyNames) -> bool {
    if recorded.required_holders() == 0 {
        return true;
    }
    let required = recorded.required_standby_holders(primary);
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

/// Whether `E` can acknowledge no commit at all: fewer distinct usable names than it
/// waits for (a new primary's `FIRST 1 (rale_blocked)`).
pub fn acknowledges_nothing(enforced: &StandbyNames) -> bool {
    let Some(list) = enforced.list() else {
        return false;
    };
    if list.has_wildcard() {
        return false;
    }
    let n_e = usize::try_from(list.num()).unwrap_or(usize::MAX);
    let usable: BTreeSet<String> = list
        .members()
        .iter()
        .filter(|m| !m.eq_ignore_ascii_case(BLOCKED_APPLICATION_NAME))
        .map(|m| m.to_ascii_lowercase())
        .collect();
    usable.len() < n_e
}

/// [`is_loosening`] when the sets may name the current primary `primary`: a set that
/// names the primary and requires one holder covers every commit that primary
/// acknowledged.
pub fn is_loosening_for(primary: Option<&str>, from: &RecordedSet, to: &RecordedSet) -> bool {
    is_loosening(from, to)
        || (to.contains_primary(primary)
            && to.required_holders() <= 1
            && from.required_holders() > 0)
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
        Self::new_for(None, recorded, enforced)
    }

    /// [`Target::new`] for a set that may name the current primary ([`is_safe_for`]).
    pub fn new_for(
        primary: Option<&str>,
        recorded: RecordedSet,
        enforced: StandbyNames,
    ) -> Result<Self> {
        if !is_safe_for(primary, &recorded, &enforced) {
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
    plan_transition_for(None, recorded, enforced, desired)
}

/// [`plan_transition`] on the primary `primary`, whose name the recorded sets may hold:
/// it counts as a holder of every commit ([`is_safe_for`], [`is_loosening_for`]), and as
/// one caught-up member in a [`Step::CatchUp`] of a set naming it.
pub fn plan_transition_for(
    primary: Option<&str>,
    recorded: &RecordedSet,
    enforced: &StandbyNames,
    desired: &Target,
) -> Vec<Step> {
    let is_safe = |r: &RecordedSet, e: &StandbyNames| is_safe_for(primary, r, e);
    let is_loosening = |a: &RecordedSet, b: &RecordedSet| is_loosening_for(primary, a, b);
    let mut steps = Vec::new();
    let mut current = recorded.clone();
    if *enforced != desired.enforced
        && acknowledges_nothing(enforced)
        && current != desired.recorded
        && desired.recorded.required_holders() > 0
    {
        // Commits are blocked (a new primary, a strict cluster waiting for its first
        // standby): WAL still streams, so prove the new members hold everything written
        // so far, record them, and only then let commits be acknowledged under the new
        // value. No commit is ever acknowledged while the recorded set does not cover it.
        if !is_loosening(&current, &desired.recorded) {
            steps.push(Step::CatchUp(desired.recorded.clone()));
        }
        steps.push(Step::Publish(desired.recorded.clone()));
        steps.push(Step::Enforce(desired.enforced.clone()));
        return steps;
    }
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
mod sim;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enforce::FENCE_APPLICATION_NAME;

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
    fn blocked_primary_catches_up_and_publishes_before_it_acknowledges() {
        let blocked = first(1, &[BLOCKED_APPLICATION_NAME]);
        assert!(acknowledges_nothing(&blocked));
        assert!(!acknowledges_nothing(&first(1, &[FENCE_APPLICATION_NAME])));
        assert!(!acknowledges_nothing(&StandbyNames::Empty));
        // A new primary inherits the recorded set with itself in it.
        let steps = plan_transition(
            &set(&["new", "b"], 1),
            &blocked,
            &target(&["b"], 1, first(2, &[FENCE_APPLICATION_NAME, "b"])),
        );
        assert_eq!(
            steps,
            [
                Step::CatchUp(set(&["b"], 1)),
                Step::Publish(set(&["b"], 1)),
                Step::Enforce(first(2, &[FENCE_APPLICATION_NAME, "b"])),
            ]
        );
        // Strict cluster from nothing.
        let steps = plan_transition(
            &set(&[], 0),
            &blocked,
            &target(&["b"], 1, first(2, &[FENCE_APPLICATION_NAME, "b"])),
        );
        assert_eq!(steps[0], Step::CatchUp(set(&["b"], 1)));
        // Going asynchronous from blocked: publish "nothing promised", then enforce.
        let steps = plan_transition(
            &set(&["b"], 1),
            &blocked,
            &target(&[], 0, first(1, &[FENCE_APPLICATION_NAME])),
        );
        assert_eq!(
            steps,
            [
                Step::Publish(set(&[], 0)),
                Step::Enforce(first(1, &[FENCE_APPLICATION_NAME])),
            ]
        );
    }

    #[test]
    fn a_primary_in_its_own_set_holds_every_commit() {
        let fence_only = first(1, &[FENCE_APPLICATION_NAME]);
        let me = Some("p");
        // Degraded, non-strict: {p} with one acknowledgement is safe with the fence alone
        // (p holds every commit; failover waits for p), and not without p in the set.
        assert!(is_safe_for(me, &set(&["p"], 1), &fence_only));
        assert!(!is_safe_for(None, &set(&["p"], 1), &fence_only));
        assert!(!is_safe_for(me, &set(&["b"], 1), &fence_only));
        assert!(Target::new_for(me, set(&["p"], 1), fence_only.clone()).is_ok());
        // From a standby set to the degraded one: a loosening (no catch-up needed);
        // publish first, then enforce.
        assert!(is_loosening_for(me, &set(&["b"], 1), &set(&["p"], 1)));
        let steps = plan_transition_for(
            me,
            &set(&["b"], 1),
            &first(2, &[FENCE_APPLICATION_NAME, "b"]),
            &Target::new_for(me, set(&["p"], 1), fence_only.clone()).expect("safe"),
        );
        assert_eq!(
            steps,
            [
                Step::Publish(set(&["p"], 1)),
                Step::Enforce(fence_only.clone())
            ]
        );
        // Back to a standby: enforce (safe under {p}), wait until it caught up, publish.
        let target = Target::new_for(me, set(&["b"], 1), first(2, &[FENCE_APPLICATION_NAME, "b"]))
            .expect("safe");
        let steps = plan_transition_for(me, &set(&["p"], 1), &fence_only, &target);
        assert_eq!(
            steps,
            [
                Step::Enforce(first(2, &[FENCE_APPLICATION_NAME, "b"])),
                Step::CatchUp(set(&["b"], 1)),
                Step::Publish(set(&["b"], 1)),
            ]
        );
        assert_eq!(set(&["p", "b"], 2).required_standby_holders(me), 1);
        assert_eq!(set(&["p", "b"], 1).required_standby_holders(me), 0);
        assert_eq!(set(&["p"], 1).required_standby_holders(me), 0);
    }

    #[test]
    fn nothing_to_do_and_unsafe_targets() {
        let t = target(&["a"], 1, first(1, &["a"]));
        assert!(plan_transition(&set(&["a"], 1), &first(1, &["a"]), &t).is_empty());
        assert!(Target::new(set(&["a"], 1), first(1, &["b"])).is_err());
    }
}
