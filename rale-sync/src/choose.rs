//! Choosing the synchronous standby set from the cluster's configuration and the
//! standbys' observed state.
//!
//! [`choose_sync_set`] is pure and deterministic: the same [`SyncConfig`] and the same
//! candidates (in any order) give the same [`SyncPlan`]. The rules, in order:
//!
//! 1. **Mode off**: the plan is empty (`num` 0); nothing is synchronous.
//! 2. **Wanted count**: `node_count`, raised to 1 (a synchronous mode with 0 standbys is
//!    meaningless; [`SyncConfig::validate`] rejects it) and capped at
//!    [`MAX_WANTED`].
//! 3. **Eligibility**: a candidate is eligible when it is streaming, healthy, not tagged
//!    `nosync`, not named like one of RALE's reserved pseudo-standbys
//!    ([`crate::enforce::is_reserved_name`]) and, when `maximum_lag_on_syncnode_bytes` is
//!    set, lags at most that many bytes. The lag compared is the flush lag, or the replay
//!    lag when the commit level is `remote_apply` (commits then wait for replay, so a
//!    standby slow to replay would stall them).
//! 4. **Order**: pinned members first (in the order of `pinned`), then higher `priority`
//!    (`failover_priority`) first, then members of the recorded set (stability: moving
//!    lags never change a set that works), then the least flush lag among the others (a
//!    new set is the one that catches up soonest: a strict primary takes no commit until
//!    it has; found by the simulator at 100,000 schedules, R13), then by name.
//!    Names are compared as PostgreSQL matches them (ASCII case-insensitively); of two
//!    candidates with the same name only the first in this order is considered.
//! 5. **`on` (FIRST n)**: the first `wanted` eligible standbys are chosen, `num` = how
//!    many were chosen. **`quorum` (ANY n)**: every eligible standby is listed (any of
//!    them may acknowledge), `num` = `wanted` capped at the number listed.
//! 6. **Too few eligible, not strict**: `num` drops to what is available; with none at
//!    all `num` is 0 and the cluster is asynchronous. `degraded` says why.
//! 7. **Too few eligible, strict**: `num` stays `wanted` so that commits wait rather
//!    than go asynchronous. The list is completed up to `wanted` with the best
//!    non-eligible candidates that could still acknowledge (not `nosync`: lagging,
//!    disconnected or unhealthy ones, in the order of rule 4), so that commits resume by
//!    themselves when one of them catches up or returns. `blocking` is set: commits
//!    cannot be acknowledged until that happens. With no such candidate at all the list
//!    is empty (see [`crate::enforce`] for the value that then blocks writes).

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::enforce::is_reserved_name;
use crate::{CommitLevel, SyncConfig, SyncMode};

/// The largest number of synchronous standbys a plan asks for (leaves room for the fence
/// in `FIRST n+1` below PostgreSQL's `int` limit, and is far beyond any real cluster).
pub const MAX_WANTED: u32 = 1_000_000;

/// One standby as the primary's agent sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// Its `application_name` (the member name).
    pub name: String,
    /// Streaming from the current primary (`pg_stat_replication.state = 'streaming'`).
    pub streaming: bool,
    /// Bytes between the primary's WAL position and the standby's flush position.
    pub flush_lag_bytes: u64,
    /// Bytes between the primary's WAL position and the standby's replay position.
    pub replay_lag_bytes: u64,
    /// Tagged `nosync`: never synchronous.
    pub nosync: bool,
    /// `failover_priority`, used as the sync priority: higher is preferred.
    pub priority: u32,
    /// Its agent reports it healthy.
    pub healthy: bool,
    /// In the synchronous set the cluster has recorded. Among candidates of equal
    /// priority, recorded ones come first, so the set does not change because lags move;
    /// the others come least lagging first, so that a new set is one that can take
    /// commits soonest (a strict primary is blocked until its set has caught up).
    #[serde(default)]
    pub recorded: bool,
}

/// The synchronous set chosen for the current primary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPlan {
    /// The mode the plan was made for.
    pub mode: SyncMode,
    /// The chosen standbys, most preferred first.
    pub standbys: Vec<String>,
    /// How many of them must acknowledge a commit (0: asynchronous).
    pub num: u32,
    /// Why the plan gives less than the configuration wants, if it does.
    pub degraded: Option<String>,
    /// Strict mode with fewer eligible standbys than `num`: commits wait until a listed,
    /// currently non-eligible standby catches up or returns (forever if none is listed).
    pub blocking: bool,
}

impl SyncPlan {
    /// The asynchronous plan.
    pub fn asynchronous(mode: SyncMode) -> Self {
        SyncPlan {
            mode,
            ..SyncPlan::default()
        }
    }
}

/// Why a candidate is not eligible (rule 3), or `None` when it is.
fn ineligibility(config: &SyncConfig, c: &Candidate) -> Option<String> {
    if c.nosync {
        return Some("nosync".into());
    }
    if is_reserved_name(&c.name) {
        return Some("reserved name".into());
    }
    if !c.streaming {
        return Some("not streaming".into());
    }
    if !c.healthy {
        return Some("unhealthy".into());
    }
    if let Some(max_bytes) = config.maximum_lag_on_syncnode_bytes {
        let (kind, lag_bytes) = if config.commit_level == CommitLevel::RemoteApply {
            ("replay", c.replay_lag_bytes)
        } else {
            ("flush", c.flush_lag_bytes)
        };
        if lag_bytes > max_bytes {
            return Some(format!("{kind} lag {lag_bytes} bytes > {max_bytes}"));
        }
    }
    None
}

/// Candidates in the order of rule 4, without same-named duplicates.
fn ordered<'a>(config: &SyncConfig, candidates: &'a [Candidate]) -> Vec<&'a Candidate> {
    // Same name twice (as PostgreSQL compares names): keep the one that can serve best.
    let mut unique: Vec<&Candidate> = candidates.iter().collect();
    unique.sort_by(|a, b| {
        a.name
            .to_ascii_lowercase()
            .cmp(&b.name.to_ascii_lowercase())
            .then_with(|| {
                ineligibility(config, a)
                    .is_some()
                    .cmp(&ineligibility(config, b).is_some())
            })
            .then(a.nosync.cmp(&b.nosync))
            .then(b.priority.cmp(&a.priority))
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| compare_rest(a, b))
    });
    unique.dedup_by(|later, earlier| later.name.eq_ignore_ascii_case(&earlier.name));

    let pin_rank = |name: &str| {
        config
            .pinned
            .iter()
            .position(|p| p.eq_ignore_ascii_case(name))
            .unwrap_or(usize::MAX)
    };
    unique.sort_by(|a, b| {
        pin_rank(&a.name)
            .cmp(&pin_rank(&b.name))
            .then(b.priority.cmp(&a.priority))
            .then(b.recorded.cmp(&a.recorded))
            .then_with(|| {
                if a.recorded && b.recorded {
                    Ordering::Equal
                } else {
                    a.flush_lag_bytes.cmp(&b.flush_lag_bytes)
                }
            })
            .then_with(|| {
                a.name
                    .to_ascii_lowercase()
                    .cmp(&b.name.to_ascii_lowercase())
            })
    });
    unique
}

/// A total order on the remaining fields, so that sorting is fully deterministic.
fn compare_rest(a: &Candidate, b: &Candidate) -> Ordering {
    (
        a.healthy,
        a.streaming,
        a.nosync,
        a.flush_lag_bytes,
        a.replay_lag_bytes,
    )
        .cmp(&(
            b.healthy,
            b.streaming,
            b.nosync,
            b.flush_lag_bytes,
            b.replay_lag_bytes,
        ))
}

/// Chooses the synchronous set; see the module documentation for the rules.
pub fn choose_sync_set(config: &SyncConfig, candidates: &[Candidate]) -> SyncPlan {
    if config.mode == SyncMode::Off {
        return SyncPlan::asynchronous(SyncMode::Off);
    }
    let wanted = config.node_count.clamp(1, MAX_WANTED);
    let wanted_len = usize::try_from(wanted).expect("MAX_WANTED fits in usize");

    let mut eligible: Vec<&Candidate> = Vec::new();
    let mut fallback: Vec<&Candidate> = Vec::new();
    let mut reasons = String::new();
    for c in ordered(config, candidates) {
        match ineligibility(config, c) {
            None => eligible.push(c),
            Some(why) => {
                if !reasons.is_empty() {
                    reasons.push_str("; ");
                }
                let _ = write!(reasons, "{}: {why}", c.name);
                if !c.nosync && !is_reserved_name(&c.name) {
                    fallback.push(c);
                }
            }
        }
    }

    let mut standbys: Vec<String> = match config.mode {
        SyncMode::On => eligible
            .iter()
            .take(wanted_len)
            .map(|c| c.name.clone())
            .collect(),
        _ => eligible.iter().map(|c| c.name.clone()).collect(),
    };
    let available = u32::try_from(eligible.len()).unwrap_or(u32::MAX);
    if available >= wanted {
        return SyncPlan {
            mode: config.mode,
            standbys,
            num: wanted,
            degraded: None,
            blocking: false,
        };
    }

    let detail = if reasons.is_empty() {
        "no other candidate".to_owned()
    } else {
        reasons
    };
    if !config.strict {
        let degraded = if available == 0 {
            format!("no eligible synchronous standby, replication is asynchronous ({detail})")
        } else {
            format!("{available} of {wanted} wanted synchronous standbys eligible ({detail})")
        };
        return SyncPlan {
            mode: config.mode,
            standbys,
            num: available,
            degraded: Some(degraded),
            blocking: false,
        };
    }

    let missing = wanted_len - eligible.len();
    standbys.extend(fallback.iter().take(missing).map(|c| c.name.clone()));
    SyncPlan {
        mode: config.mode,
        standbys,
        num: wanted,
        degraded: Some(format!(
            "strict: {available} of {wanted} wanted synchronous standbys eligible, commits wait ({detail})"
        )),
        blocking: true,
    }
}

#[cfg(test)]
mod tests {

    /// R13: among equal priority, recorded members first (stability), then the least
    /// lagging, then names.
    #[test]
    fn recorded_first_then_least_lagging() {
        let c = |name: &str, lag: u64, recorded: bool| Candidate {
            name: name.into(),
            streaming: true,
            flush_lag_bytes: lag,
            replay_lag_bytes: lag,
            nosync: false,
            priority: 1,
            healthy: true,
            recorded,
        };
        let cfg = SyncConfig {
            mode: SyncMode::On,
            node_count: 1,
            ..SyncConfig::default()
        };
        let fresh = choose_sync_set(&cfg, &[c("n1", 900_000, false), c("n3", 0, false)]);
        assert_eq!(fresh.standbys, vec!["n3".to_string()], "the caught-up one");
        let kept = choose_sync_set(&cfg, &[c("n1", 900_000, true), c("n3", 0, false)]);
        assert_eq!(
            kept.standbys,
            vec!["n1".to_string()],
            "the recorded one stays"
        );
        let tie = choose_sync_set(&cfg, &[c("n3", 5, false), c("n1", 5, false)]);
        assert_eq!(tie.standbys, vec!["n1".to_string()], "then names");
    }
    use super::*;
    use proptest::prelude::*;

    fn cand(name: &str) -> Candidate {
        Candidate {
            name: name.into(),
            streaming: true,
            flush_lag_bytes: 0,
            replay_lag_bytes: 0,
            nosync: false,
            priority: 1,
            healthy: true,
            recorded: false,
        }
    }

    fn config(mode: SyncMode, node_count: u32, strict: bool) -> SyncConfig {
        SyncConfig {
            mode,
            node_count,
            strict,
            ..SyncConfig::default()
        }
    }

    #[test]
    fn off_is_empty() {
        let plan = choose_sync_set(&SyncConfig::default(), &[cand("a")]);
        assert_eq!(plan, SyncPlan::asynchronous(SyncMode::Off));
        assert_eq!(plan.num, 0);
    }

    #[test]
    fn first_takes_node_count_by_pin_then_priority_then_name() {
        let mut cfg = config(SyncMode::On, 2, false);
        cfg.pinned = vec!["d".into()];
        let mut b = cand("b");
        b.priority = 5;
        let plan = choose_sync_set(&cfg, &[cand("c"), cand("a"), b, cand("d")]);
        assert_eq!(plan.standbys, ["d", "b"]);
        assert_eq!(plan.num, 2);
        assert_eq!(plan.degraded, None);
        assert!(!plan.blocking);
    }

    #[test]
    fn eligibility_rules() {
        let mut cfg = config(SyncMode::Quorum, 1, false);
        cfg.maximum_lag_on_syncnode_bytes = Some(100);
        let mut not_streaming = cand("ns");
        not_streaming.streaming = false;
        let mut unhealthy = cand("uh");
        unhealthy.healthy = false;
        let mut nosync = cand("no");
        nosync.nosync = true;
        let mut lagging = cand("lag");
        lagging.flush_lag_bytes = 101;
        lagging.replay_lag_bytes = 101;
        let mut at_limit = cand("edge");
        at_limit.flush_lag_bytes = 100;
        at_limit.replay_lag_bytes = 1_000;
        let all = [
            not_streaming,
            unhealthy,
            nosync,
            lagging,
            at_limit,
            cand("rale_fence"),
        ];
        let plan = choose_sync_set(&cfg, &all);
        assert_eq!(plan.standbys, ["edge"]);
        // Under remote_apply the replay lag counts.
        cfg.commit_level = CommitLevel::RemoteApply;
        let plan = choose_sync_set(&cfg, &all);
        assert!(plan.standbys.is_empty());
        assert_eq!(plan.num, 0);
        let why = plan.degraded.expect("degraded");
        assert!(why.contains("edge: replay lag 1000 bytes > 100"), "{why}");
        assert!(why.contains("ns: not streaming"), "{why}");
        assert!(why.contains("no: nosync"), "{why}");
    }

    #[test]
    fn quorum_lists_all_eligible_and_caps_num() {
        let cfg = config(SyncMode::Quorum, 2, false);
        let plan = choose_sync_set(&cfg, &[cand("c"), cand("a"), cand("b")]);
        assert_eq!(plan.standbys, ["a", "b", "c"]);
        assert_eq!(plan.num, 2);
        let plan = choose_sync_set(&cfg, &[cand("a")]);
        assert_eq!(plan.num, 1);
        assert!(plan.degraded.is_some());
    }

    #[test]
    fn non_strict_degrades_to_async() {
        let cfg = config(SyncMode::On, 2, false);
        let plan = choose_sync_set(&cfg, &[]);
        assert_eq!(plan.num, 0);
        assert!(plan.standbys.is_empty());
        assert!(!plan.blocking);
        assert!(plan.degraded.expect("why").contains("asynchronous"));
    }

    #[test]
    fn strict_keeps_num_and_fills_with_returnable_standbys() {
        let cfg = config(SyncMode::On, 2, true);
        let mut down = cand("down");
        down.streaming = false;
        let mut nosync = cand("nosync");
        nosync.nosync = true;
        nosync.streaming = false;
        let plan = choose_sync_set(&cfg, &[cand("up"), down, nosync]);
        assert_eq!(plan.standbys, ["up", "down"]);
        assert_eq!(plan.num, 2);
        assert!(plan.blocking);
        let plan = choose_sync_set(&cfg, &[]);
        assert!(plan.standbys.is_empty());
        assert_eq!(plan.num, 2);
        assert!(plan.blocking);
        let zero = config(SyncMode::Quorum, 0, true);
        assert_eq!(choose_sync_set(&zero, &[]).num, 1);
    }

    #[test]
    fn duplicate_names_count_once() {
        let cfg = config(SyncMode::Quorum, 2, false);
        let mut dup = cand("A");
        dup.streaming = false;
        let plan = choose_sync_set(&cfg, &[dup, cand("a"), cand("b")]);
        assert_eq!(plan.standbys, ["a", "b"]);
    }

    fn candidate() -> impl Strategy<Value = Candidate> {
        (
            prop::sample::select(vec!["a", "b", "c", "d", "e", "B", "rale_fence"]),
            any::<bool>(),
            0u64..300,
            0u64..300,
            prop::bool::weighted(0.2),
            0u32..4,
            prop::bool::weighted(0.8),
        )
            .prop_map(
                |(
                    name,
                    streaming,
                    flush_lag_bytes,
                    replay_lag_bytes,
                    nosync,
                    priority,
                    healthy,
                )| {
                    Candidate {
                        name: name.into(),
                        streaming,
                        flush_lag_bytes,
                        replay_lag_bytes,
                        nosync,
                        priority,
                        healthy,
                        recorded: false,
                    }
                },
            )
    }

    fn sync_config() -> impl Strategy<Value = SyncConfig> {
        (
            prop::sample::select(vec![SyncMode::Off, SyncMode::On, SyncMode::Quorum]),
            0u32..5,
            any::<bool>(),
            prop::option::of(0u64..300),
            prop::collection::vec(prop::sample::select(vec!["a", "c", "x"]), 0..3),
        )
            .prop_map(|(mode, node_count, strict, lag, pinned)| SyncConfig {
                mode,
                node_count,
                strict,
                maximum_lag_on_syncnode_bytes: lag,
                pinned: pinned.into_iter().map(String::from).collect(),
                ..SyncConfig::default()
            })
    }

    proptest! {
        #[test]
        fn plan_properties(cfg in sync_config(), mut cands in prop::collection::vec(candidate(), 0..7)) {
            let plan = choose_sync_set(&cfg, &cands);
            cands.reverse();
            prop_assert_eq!(&choose_sync_set(&cfg, &cands), &plan, "order-independent");
            for name in &plan.standbys {
                let same: Vec<&Candidate> = cands.iter().filter(|c| &c.name == name).collect();
                prop_assert!(!same.is_empty(), "chosen from the candidates");
                prop_assert!(same.iter().any(|c| !c.nosync) && !is_reserved_name(name));
                if !plan.blocking {
                    prop_assert!(same.iter().any(|c| ineligibility(&cfg, c).is_none()));
                }
            }
            let lower: Vec<String> = plan.standbys.iter().map(|s| s.to_ascii_lowercase()).collect();
            let mut dedup = lower.clone();
            dedup.sort();
            dedup.dedup();
            prop_assert_eq!(dedup.len(), lower.len(), "no duplicates");
            match cfg.mode {
                SyncMode::Off => prop_assert_eq!(&plan, &SyncPlan::asynchronous(SyncMode::Off)),
                _ => {
                    let wanted = cfg.node_count.max(1);
                    if cfg.strict {
                        prop_assert_eq!(plan.num, wanted);
                    } else {
                        prop_assert!(plan.num <= wanted);
                        prop_assert!(!plan.blocking);
                        prop_assert!(plan.num as usize <= plan.standbys.len());
                    }
                    if cfg.mode == SyncMode::On {
                        prop_assert!(plan.standbys.len() <= wanted as usize);
                    }
                    prop_assert_eq!(plan.degraded.is_some(), plan.num < wanted || plan.blocking);
                }
            }
        }
    }
}
