//! Failsafe mode: a primary that lost consensus keeps its role while **every** other
//! member of the last known membership confirms, over the agents' API, that it sees no
//! other primary and promises not to take over while its confirmation lives.
//!
//! The pieces, all free of I/O:
//! - the primary's decider asks for a [`FailsafeRound`] with each decision while it holds
//!   the lease and `failsafe_mode` is on; the agent sends it only when consensus does not
//!   answer, and reports a round every member confirmed as a [`FailsafeConfirmed`];
//! - a confirmation sent at `t` (the primary's clock) lets the primary act until
//!   `t + holder_validity_ms`, exactly as a lease renewal stamped at `t` would;
//! - a replica answers with [`confirm`] on its [`FailsafeView`]: only if it sees the same
//!   primary and epoch, does not run as a primary itself and has no lease claim in
//!   flight; it then promises, until `lease_ttl` after it answered by its own clock, not
//!   to claim the lease and not to promote ([`FailsafePromise`]). Its decider treats the
//!   lease as live while the promise is.
//!
//! Why a confirmed primary cannot overlap with a new one: a new primary needs the lease,
//! taken through consensus by a member that claimed it; every member promised not to
//! claim (nor promote) until `lease_ttl` after a moment that follows `t`, while the
//! primary stops acknowledging at `t + holder_validity_ms`, which is shorter than
//! `lease_ttl` by the fence margin and the clock-drift allowance. One member that does not
//! confirm (down, partitioned, an agent of an older version) and the primary's deadline
//! stops moving: it fences within the lease, as without failsafe mode.

use serde::{Deserialize, Serialize};

use crate::types::{Epoch, Millis, NodeId};

/// What a primary asks each other member to confirm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailsafeRequest {
    /// The primary asking.
    pub primary: NodeId,
    /// The lease epoch it holds.
    pub epoch: Epoch,
    /// How long the member promises, from the moment it answers, by its own clock.
    pub ttl_ms: u64,
}

/// A member's answer when it confirms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailsafeAnswer {
    /// The member that confirmed.
    pub node: NodeId,
    /// For how long it promised (from its answer, by its clock).
    pub promised_ms: u64,
}

/// One other member the primary must hear from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailsafeMember {
    /// Member name.
    pub node: NodeId,
    /// Base URL of its agent's API.
    pub api_url: String,
}

/// What the primary's agent sends when consensus does not answer: one request to each
/// member of the last known membership but itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailsafeRound {
    /// The request (the same for every member).
    pub request: FailsafeRequest,
    /// Who must confirm: every other member the primary last saw in the cluster state.
    pub members: Vec<FailsafeMember>,
}

/// A round every member confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailsafeConfirmed {
    /// The epoch the members confirmed.
    pub epoch: Epoch,
    /// When the primary sent the round (its clock): before any member answered.
    pub sent_at: Millis,
}

/// A promise this member gave: no lease claim and no promotion before `until` (its clock).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailsafePromise {
    /// The primary it confirmed.
    pub primary: NodeId,
    /// That primary's epoch.
    pub epoch: Epoch,
    /// Until when the promise holds.
    pub until: Millis,
}

impl FailsafePromise {
    /// Whether the promise still binds at `now`.
    pub fn live(&self, now: Millis) -> bool {
        now < self.until
    }
}

/// What a member knows when it is asked to confirm, as of its HA loop's last step (and
/// the claims its executor made since).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailsafeView {
    /// This member.
    pub node: Option<NodeId>,
    /// The lease holder and epoch in the last cluster state it read, and its renewals.
    pub lease: Option<(Option<NodeId>, Epoch, u64)>,
    /// Its PostgreSQL runs as a primary, or its decider holds a lease.
    pub acting_primary: bool,
    /// A lease claim (expected epoch and renewal count) its executor proposed; it may
    /// still apply until the lease record changes away from these values.
    pub claim: Option<(Epoch, u64)>,
    /// The promise it gave last.
    pub promise: Option<FailsafePromise>,
}

/// Answers a confirmation request on `view` at `now`: on success the view holds the
/// (extended) promise and the answer says for how long; otherwise why not, in words.
pub fn confirm(
    view: &mut FailsafeView,
    req: &FailsafeRequest,
    now: Millis,
) -> Result<FailsafeAnswer, String> {
    let me = view
        .node
        .clone()
        .ok_or("this agent has not observed the cluster yet")?;
    if req.primary == me {
        return Err("a member does not confirm itself".into());
    }
    if view.acting_primary {
        return Err(format!("{me} runs as a primary itself"));
    }
    match &view.lease {
        None => return Err(format!("{me} has not read the cluster state yet")),
        Some((holder, epoch, _)) => {
            if holder.as_ref() != Some(&req.primary) || *epoch != req.epoch {
                let who = holder.as_ref().map(NodeId::as_str).unwrap_or("nobody");
                return Err(format!(
                    "{me} sees lease epoch {epoch} held by {who}, not epoch {} held by {}",
                    req.epoch, req.primary
                ));
            }
        }
    }
    if let Some((e, r)) = view.claim {
        return Err(format!(
            "{me} claimed the lease (epoch {e}, renewal {r}) and the claim may still apply"
        ));
    }
    if let Some(p) = &view.promise
        && p.live(now)
        && (p.primary != req.primary || p.epoch != req.epoch)
    {
        return Err(format!(
            "{me} already promised {} (epoch {}) for {} ms",
            p.primary,
            p.epoch,
            p.until.since(now)
        ));
    }
    let until = now.plus(req.ttl_ms);
    let until = match &view.promise {
        Some(p) if p.live(now) && p.until > until => p.until,
        _ => until,
    };
    view.promise = Some(FailsafePromise {
        primary: req.primary.clone(),
        epoch: req.epoch,
        until,
    });
    Ok(FailsafeAnswer {
        node: me,
        promised_ms: until.since(now),
    })
}

/// Records, before the executor proposes a lease claim, that it may apply; refused while
/// a promise to another primary binds.
pub fn begin_claim(
    view: &mut FailsafeView,
    expected: (Epoch, u64),
    now: Millis,
) -> Result<(), String> {
    if let Some(p) = &view.promise
        && p.live(now)
        && Some(&p.primary) != view.node.as_ref()
    {
        return Err(format!(
            "failsafe: promised {} (epoch {}) not to take over for {} ms more",
            p.primary,
            p.epoch,
            p.until.since(now)
        ));
    }
    view.claim = Some(expected);
    Ok(())
}

/// Brings the view up to date after a step that read the cluster state: `lease` is the
/// state's (holder, epoch, renewals); a claim is dropped once the lease record moved
/// away from what it expected (it then either applied or never will).
pub fn observed(
    view: &mut FailsafeView,
    node: &NodeId,
    lease: Option<(Option<NodeId>, Epoch, u64)>,
    acting_primary: bool,
) {
    view.node = Some(node.clone());
    view.acting_primary = acting_primary;
    if let Some((_, epoch, renewals)) = &lease
        && view.claim.is_some_and(|c| c != (*epoch, *renewals))
    {
        view.claim = None;
    }
    if lease.is_some() {
        view.lease = lease;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> NodeId {
        NodeId::new(s).expect("valid")
    }

    fn view() -> FailsafeView {
        let mut v = FailsafeView::default();
        observed(&mut v, &n("b"), Some((Some(n("a")), Epoch(3), 7)), false);
        v
    }

    fn req(primary: &str, epoch: u64) -> FailsafeRequest {
        FailsafeRequest {
            primary: n(primary),
            epoch: Epoch(epoch),
            ttl_ms: 1500,
        }
    }

    #[test]
    fn a_replica_that_sees_the_same_primary_promises() {
        let mut v = view();
        let a = confirm(&mut v, &req("a", 3), Millis(1000)).expect("confirms");
        assert_eq!(a.promised_ms, 1500);
        let p = v.promise.clone().expect("promised");
        assert_eq!(
            (p.primary, p.epoch, p.until),
            (n("a"), Epoch(3), Millis(2500))
        );
        // A second confirmation extends it; a claim is refused while it binds.
        confirm(&mut v, &req("a", 3), Millis(2000)).expect("confirms again");
        assert_eq!(v.promise.as_ref().map(|p| p.until), Some(Millis(3500)));
        let e = begin_claim(&mut v, (Epoch(3), 7), Millis(3400)).expect_err("bound");
        assert!(e.contains("promised a"), "{e}");
        begin_claim(&mut v, (Epoch(3), 7), Millis(3500)).expect("free once expired");
    }

    #[test]
    fn refusals_name_the_reason() {
        let mut v = view();
        let e = confirm(&mut v, &req("c", 3), Millis(0)).expect_err("other holder");
        assert!(e.contains("held by a"), "{e}");
        let e = confirm(&mut v, &req("a", 4), Millis(0)).expect_err("other epoch");
        assert!(e.contains("epoch 3"), "{e}");
        let e = confirm(&mut v, &req("b", 3), Millis(0)).expect_err("itself");
        assert!(e.contains("itself"), "{e}");
        let mut primary = view();
        primary.acting_primary = true;
        let e = confirm(&mut primary, &req("a", 3), Millis(0)).expect_err("primary");
        assert!(e.contains("runs as a primary"), "{e}");
        let e =
            confirm(&mut FailsafeView::default(), &req("a", 3), Millis(0)).expect_err("no view");
        assert!(e.contains("not observed"), "{e}");
        assert!(v.promise.is_none(), "no refusal promises anything");
    }

    #[test]
    fn a_claim_in_flight_refuses_until_the_lease_record_moves() {
        let mut v = view();
        begin_claim(&mut v, (Epoch(3), 7), Millis(0)).expect("no promise yet");
        let e = confirm(&mut v, &req("a", 3), Millis(10)).expect_err("claim in flight");
        assert!(e.contains("claimed"), "{e}");
        // The same record read again: the claim may still apply.
        observed(&mut v, &n("b"), Some((Some(n("a")), Epoch(3), 7)), false);
        assert!(confirm(&mut v, &req("a", 3), Millis(20)).is_err());
        // The primary renewed: the claim can never apply.
        observed(&mut v, &n("b"), Some((Some(n("a")), Epoch(3), 8)), false);
        confirm(&mut v, &req("a", 3), Millis(30)).expect("claim resolved");
    }

    #[test]
    fn a_promise_to_one_primary_refuses_another() {
        let mut v = view();
        confirm(&mut v, &req("a", 3), Millis(0)).expect("confirms");
        observed(&mut v, &n("b"), Some((Some(n("c")), Epoch(4), 0)), false);
        let e = confirm(&mut v, &req("c", 4), Millis(100)).expect_err("bound to a");
        assert!(e.contains("already promised a"), "{e}");
        confirm(&mut v, &req("c", 4), Millis(1500)).expect("after it expired");
    }
}
