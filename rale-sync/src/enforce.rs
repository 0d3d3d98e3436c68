//! The `synchronous_standby_names` value the primary enforces for a [`SyncPlan`],
//! including RALE's lease **fence**.
//!
//! # The fence
//!
//! The agent on the primary runs a pseudo-standby that connects to its own PostgreSQL
//! with `application_name = `[`FENCE_APPLICATION_NAME`] and acknowledges WAL only while
//! the agent holds its lease. Listing it as a mandatory synchronous standby gates every
//! commit on the lease: a primary cut off from the consensus majority stops
//! acknowledging commits when its lease runs out, before another node can be promoted.
//! The fence holds no data; it never counts as a copy of a commit.
//!
//! # Values, case by case
//!
//! | plan | fence | enforced value |
//! | --- | --- | --- |
//! | asynchronous (`num` 0: mode off, or degraded) | yes | `FIRST 1 (rale_fence)` |
//! | asynchronous | no | `''` (empty) |
//! | `on`, `num` n, standbys s… | yes | `FIRST n+1 (rale_fence, s…)` |
//! | `on`, `num` n | no | `FIRST n (s…)` |
//! | `quorum`, `num` n, standbys s… | either | `ANY n (s…)` |
//! | strict, no standby to list | yes, `on` | `FIRST n+1 (rale_fence, rale_blocked)` |
//! | strict, no standby to list | otherwise | `FIRST n (rale_blocked)` / `ANY n (rale_blocked)` |
//!
//! `FIRST n+1` with the fence first in the list makes the fence always one of the
//! acknowledgers (it has the highest priority and is always connected while the lease
//! holds), plus the first `n` standbys — the same standbys `FIRST n` would wait for.
//!
//! **Why quorum mode has no fence.** PostgreSQL cannot express "the fence AND any `n` of
//! these": `ANY n+1 (rale_fence, s…)` could be satisfied by `n+1` standbys without the
//! fence. In quorum mode the standbys themselves are the fence: before a new primary is
//! promoted, failover reaches `|R| − n + 1` members of the recorded set `R` and detaches
//! them from the old primary (see [`crate::quorum`] and [`crate::transition`]). At most
//! `n − 1` members of `R` are then left that could acknowledge the old primary, and
//! since the enforced list names no one outside `R`, the old primary can no longer
//! gather `n` acknowledgements: its commits block, exactly as the fence would make them.
//!
//! **Why strict mode never uses `*`.** `*` lets any standby acknowledge, including
//! `nosync` members and standbys the recorded set does not name; failover, which only
//! consults the recorded set, could then miss an acknowledged commit. Instead, with no
//! standby to name, the value lists [`BLOCKED_APPLICATION_NAME`], a reserved name no
//! standby uses: commits wait, never fall back to asynchronous, and resume once a plan
//! names a real standby again.

use crate::SyncMode;
use crate::choose::SyncPlan;
use crate::names::{MAX_NUM_SYNC, StandbyNames};

/// `application_name` of the fence pseudo-standby the agent runs on the primary.
pub const FENCE_APPLICATION_NAME: &str = "rale_fence";

/// Reserved `application_name` that no standby uses: listing it makes commits wait.
pub const BLOCKED_APPLICATION_NAME: &str = "rale_blocked";

/// Whether `name` is one of RALE's reserved pseudo-standby names (compared as
/// PostgreSQL compares them: ASCII case-insensitively). Members with such names are
/// never chosen as synchronous standbys.
pub fn is_reserved_name(name: &str) -> bool {
    name.eq_ignore_ascii_case(FENCE_APPLICATION_NAME)
        || name.eq_ignore_ascii_case(BLOCKED_APPLICATION_NAME)
}

/// The value PostgreSQL must enforce for `plan`, with or without the lease fence (see
/// the module documentation for each case). `plan.num` is capped at
/// [`MAX_NUM_SYNC`]` − 1`, which [`crate::choose::choose_sync_set`] never exceeds.
pub fn enforced_names(plan: &SyncPlan, fence: bool) -> StandbyNames {
    let fenced = |num: u32, members: Vec<String>| {
        let mut all = Vec::with_capacity(members.len() + 1);
        all.push(FENCE_APPLICATION_NAME.to_owned());
        all.extend(members);
        StandbyNames::first(num + 1, all).expect("num + 1 is in range and the list is not empty")
    };
    if plan.mode == SyncMode::Off || plan.num == 0 {
        return if fence {
            fenced(0, Vec::new())
        } else {
            StandbyNames::Empty
        };
    }
    let num = plan.num.min(MAX_NUM_SYNC - 1);
    let members = if plan.standbys.is_empty() {
        vec![BLOCKED_APPLICATION_NAME.to_owned()]
    } else {
        plan.standbys.clone()
    };
    match plan.mode {
        SyncMode::Quorum => StandbyNames::any(num, members),
        _ if fence => Ok(fenced(num, members)),
        _ => StandbyNames::first(num, members),
    }
    .expect("num is in range and the list is not empty")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(mode: SyncMode, num: u32, standbys: &[&str]) -> SyncPlan {
        SyncPlan {
            mode,
            standbys: standbys.iter().map(|s| s.to_string()).collect(),
            num,
            degraded: None,
            blocking: false,
        }
    }

    fn text(plan: &SyncPlan, fence: bool) -> String {
        enforced_names(plan, fence).to_string()
    }

    #[test]
    fn table_of_values() {
        let off = SyncPlan::asynchronous(SyncMode::Off);
        assert_eq!(text(&off, true), "FIRST 1 (rale_fence)");
        assert_eq!(text(&off, false), "");
        let degraded = SyncPlan::asynchronous(SyncMode::On);
        assert_eq!(text(&degraded, true), "FIRST 1 (rale_fence)");
        let first = plan(SyncMode::On, 2, &["s1", "s2"]);
        assert_eq!(text(&first, true), "FIRST 3 (rale_fence, s1, s2)");
        assert_eq!(text(&first, false), "FIRST 2 (s1, s2)");
        let quorum = plan(SyncMode::Quorum, 1, &["s1", "s2", "s3"]);
        assert_eq!(text(&quorum, true), "ANY 1 (s1, s2, s3)");
        assert_eq!(text(&quorum, false), "ANY 1 (s1, s2, s3)");
        let blocked = plan(SyncMode::On, 1, &[]);
        assert_eq!(text(&blocked, true), "FIRST 2 (rale_fence, rale_blocked)");
        assert_eq!(text(&blocked, false), "FIRST 1 (rale_blocked)");
        let blocked_quorum = plan(SyncMode::Quorum, 2, &[]);
        assert_eq!(text(&blocked_quorum, true), "ANY 2 (rale_blocked)");
        let odd = plan(SyncMode::On, 1, &["Node \"1\""]);
        assert_eq!(text(&odd, false), "FIRST 1 (\"Node \"\"1\"\"\")");
    }

    #[test]
    fn huge_num_is_capped() {
        let p = plan(SyncMode::On, u32::MAX, &["a"]);
        assert_eq!(enforced_names(&p, true).num(), MAX_NUM_SYNC);
    }

    #[test]
    fn reserved_names() {
        assert!(is_reserved_name("RALE_FENCE"));
        assert!(is_reserved_name("rale_blocked"));
        assert!(!is_reserved_name("rale_fence2"));
    }
}
