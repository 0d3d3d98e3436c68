//! Who may become primary, and in which order: health, WAL position, tags, lag and the
//! synchronous set. Pure functions over the replicated state, so every node ranks the
//! candidates identically.

use std::collections::BTreeSet;

use rale_sync::SyncMode;
use serde::{Deserialize, Serialize};

use crate::state::ClusterState;
use crate::status::MemberStatus;
use crate::types::{Epoch, Lsn, NodeId, Role, Timeline};

/// Whether a member may be promoted, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "eligible", content = "reason", rename_all = "snake_case")]
pub enum Eligibility {
    /// It may.
    Eligible,
    /// It may not, because of the reason given.
    Ineligible(String),
}

/// A member considered for promotion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The member.
    pub node: NodeId,
    /// Its final (detached) or latest WAL position.
    pub lsn: Lsn,
    /// Its failover priority.
    pub priority: u32,
    /// Verdict.
    pub eligibility: Eligibility,
}

/// Whether synchronous rules restrict candidates in this state: the recorded sync set
/// names standbys whose acknowledgements counted.
pub fn sync_restricted(state: &ClusterState) -> bool {
    state.config.synchronous.mode != SyncMode::Off && state.sync.quorum > 0
}

/// The newest timeline any member reports: the lost primary's history is on it
/// ([`ClusterState::cluster_timeline`]).
pub fn cluster_timeline(state: &ClusterState) -> Timeline {
    state.cluster_timeline()
}

/// The best-known WAL position of the lost primary ([`ClusterState::last_primary_lsn`]).
pub fn last_primary_lsn(state: &ClusterState) -> Lsn {
    state.last_primary_lsn()
}

fn verdict(
    state: &ClusterState,
    m: &MemberStatus,
    fresh: &BTreeSet<NodeId>,
    epoch: Epoch,
    primary_lsn: Lsn,
    cluster_timeline: Timeline,
    require_detached: bool,
) -> Eligibility {
    let no = |why: String| Eligibility::Ineligible(why);
    if !fresh.contains(&m.node) {
        return no("its agent has not reported recently".into());
    }
    if !m.running || m.role != Role::Replica {
        return no(format!(
            "its PostgreSQL is not a running replica (role {})",
            m.role
        ));
    }
    if m.tags.nofailover {
        return no("tagged nofailover".into());
    }
    if !m.tags.can_be_primary() {
        return no("failover_priority is 0".into());
    }
    if m.timeline < cluster_timeline {
        return no(format!(
            "on timeline {}, behind the cluster's timeline {cluster_timeline}: its history may have diverged",
            m.timeline
        ));
    }
    if require_detached && m.detached.map(|d| d.epoch) != Some(epoch) {
        return no(format!(
            "has not detached from the primary of epoch {epoch} yet"
        ));
    }
    if sync_restricted(state) {
        if !state.sync.standbys.contains(&m.node) {
            return no("not in the recorded synchronous set".into());
        }
    } else if let Some(max_lag) = state.config.maximum_lag_on_failover_bytes {
        let lag = primary_lsn.bytes_after(m.lsn);
        if lag > max_lag {
            return no(format!(
                "{lag} bytes behind the lost primary (maximum_lag_on_failover is {max_lag})"
            ));
        }
    }
    Eligibility::Eligible
}

/// Ranks every member for promotion after the primary of `epoch` was lost: eligible ones
/// first, by WAL position (highest first), then failover priority (highest first), then
/// name; ineligible ones after, each with its reason.
pub fn rank_candidates(
    state: &ClusterState,
    fresh: &BTreeSet<NodeId>,
    epoch: Epoch,
    old_holder: Option<&NodeId>,
    require_detached: bool,
) -> Vec<Candidate> {
    let primary_lsn = last_primary_lsn(state);
    let cluster_timeline = cluster_timeline(state);
    // The lost primary is a candidate again once it runs as a replica that detached
    // from its own lapsed epoch (its agent restarted it): it holds everything it wrote.
    let returned = |m: &MemberStatus| {
        m.running && m.role == Role::Replica && m.detached.map(|d| d.epoch) == Some(epoch)
    };
    let mut out: Vec<Candidate> = state
        .members
        .values()
        .filter(|m| Some(&m.node) != old_holder || returned(m))
        .map(|m| Candidate {
            node: m.node.clone(),
            lsn: m
                .detached
                .filter(|d| d.epoch == epoch)
                .map(|d| d.lsn)
                .unwrap_or(m.lsn),
            priority: m.tags.priority(),
            eligibility: verdict(
                state,
                m,
                fresh,
                epoch,
                primary_lsn,
                cluster_timeline,
                require_detached,
            ),
        })
        .collect();
    out.sort_by(|a, b| {
        let ea = a.eligibility == Eligibility::Eligible;
        let eb = b.eligibility == Eligibility::Eligible;
        eb.cmp(&ea)
            .then(b.lsn.cmp(&a.lsn))
            .then(b.priority.cmp(&a.priority))
            .then(a.node.cmp(&b.node))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Detachment;
    use crate::types::Tags;

    fn member(name: &str, lsn: u64, tags: Tags) -> MemberStatus {
        MemberStatus {
            node: NodeId::new(name).expect("name"),
            api_url: String::new(),
            pg_host: "127.0.0.1".into(),
            pg_port: 5432,
            role: Role::Replica,
            running: true,
            timeline: Timeline(1),
            lsn: Lsn(lsn),
            receive_lsn: Some(Lsn(lsn)),
            replay_lsn: Some(Lsn(lsn)),
            upstream: None,
            streaming: false,
            tags,
            detached: Some(Detachment {
                epoch: Epoch(1),
                lsn: Lsn(lsn),
                timeline: Timeline(1),
            }),
            pending_restart: false,
            server_version_num: 150000,
            system_id: Some(1),
            logical_slots: Default::default(),
            heartbeat: 1,
        }
    }

    #[test]
    fn a_released_primarys_final_position_bounds_the_lag() {
        // The former primary stopped cleanly and released the lease; its own status now
        // says "stopped" (no position). The position it released at still counts.
        let mut s = ClusterState::default();
        s.config.maximum_lag_on_failover_bytes = Some(1 << 20);
        s.lease = Some(crate::state::Lease {
            holder: None,
            epoch: Epoch(1),
            holder_clock: crate::types::Millis(0),
            renewals: 3,
            successor: None,
            final_position: Some((Timeline(1), Lsn(0x39_C000))),
        });
        let mut old = member("old", 0, Tags::default());
        old.running = false;
        old.timeline = Timeline(0);
        let behind = member("behind", 0x18_0000, Tags::default());
        for m in [old, behind] {
            s.members.insert(m.node.clone(), m);
        }
        let fresh: BTreeSet<NodeId> = s.members.keys().cloned().collect();
        let ranked = rank_candidates(&s, &fresh, Epoch(1), None, true);
        let behind = ranked
            .iter()
            .find(|c| c.node.as_str() == "behind")
            .expect("ranked");
        assert!(
            matches!(&behind.eligibility, Eligibility::Ineligible(r) if r.contains("maximum_lag")),
            "{:?}",
            behind.eligibility
        );
        // Without the released position it would have looked fine.
        s.lease.as_mut().expect("lease").final_position = None;
        let ranked = rank_candidates(&s, &fresh, Epoch(1), None, true);
        let behind = ranked
            .iter()
            .find(|c| c.node.as_str() == "behind")
            .expect("ranked");
        assert_eq!(behind.eligibility, Eligibility::Eligible);
    }

    #[test]
    fn ranks_by_lsn_then_priority_and_honours_tags_and_lag() {
        let mut s = ClusterState::default();
        s.config.maximum_lag_on_failover_bytes = Some(1200);
        let hi = Tags {
            failover_priority: Some(5),
            ..Tags::default()
        };
        let nofail = Tags {
            nofailover: true,
            ..Tags::default()
        };
        for m in [
            member("a", 1000, Tags::default()),
            member("b", 1000, hi),
            member("c", 2000, nofail),
            member("d", 500, Tags::default()),
        ] {
            s.members.insert(m.node.clone(), m);
        }
        let fresh: BTreeSet<NodeId> = s.members.keys().cloned().collect();
        let ranked = rank_candidates(&s, &fresh, Epoch(1), None, true);
        let names: Vec<&str> = ranked.iter().map(|c| c.node.as_str()).collect();
        assert_eq!(names, ["b", "a", "c", "d"]);
        assert_eq!(ranked[0].eligibility, Eligibility::Eligible);
        assert!(
            matches!(&ranked[2].eligibility, Eligibility::Ineligible(r) if r.contains("nofailover"))
        );
        assert!(
            matches!(&ranked[3].eligibility, Eligibility::Ineligible(r) if r.contains("maximum_lag"))
        );
    }
}
