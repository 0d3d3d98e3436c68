//! A planned switchover, on the current primary.

use super::*;

impl Decider {
    pub(super) fn switchover(
        &mut self,
        state: &ClusterState,
        obs: &Observation<'_>,
        epoch: Epoch,
    ) -> Option<Decision> {
        let sw = state.switchover.as_ref()?;
        if sw.from.as_ref().is_some_and(|f| f != self.node()) {
            return Some(Decision {
                kind: DecisionKind::Switchover,
                reason: format!(
                    "switchover requested from {:?}, but this node is the primary",
                    sw.from
                ),
                actions: vec![propose(Operation::CancelSwitchover {
                    actor: format!("ha:{}", self.node()),
                    reason: format!(
                        "{} is not the primary",
                        sw.from.as_ref().map(|f| f.as_str()).unwrap_or("?")
                    ),
                })],
                lease: None,
                renewal: None,
                failsafe: None,
            });
        }
        if sw.scheduled_at_unix_ms.is_some_and(|t| obs.wall_ms < t) {
            return None;
        }
        let fresh = self.fresh_members(obs.now);
        let me = self.node().clone();
        let usable = |m: &MemberStatus| {
            fresh.contains(&m.node)
                && m.node != me
                && m.running
                && m.role == Role::Replica
                && m.streaming
                && m.tags.can_be_primary()
                && (!sync_restricted(state) || state.sync.standbys.contains(&m.node))
        };
        let target = match &sw.to {
            Some(t) => match state.members.get(t) {
                Some(m) if usable(m) => Some(t.clone()),
                _ => {
                    return Some(Decision {
                        kind: DecisionKind::Switchover,
                        reason: format!(
                            "switchover to {t} refused: it is not a healthy, streaming, eligible replica"
                        ),
                        actions: vec![propose(Operation::CancelSwitchover {
                            actor: format!("ha:{me}"),
                            reason: format!("{t} is not a healthy, streaming, eligible replica"),
                        })],
                        lease: None,
                        renewal: None,
                        failsafe: None,
                    });
                }
            },
            None => {
                let mut best: Vec<&MemberStatus> =
                    state.members.values().filter(|m| usable(m)).collect();
                best.sort_by(|a, b| {
                    b.lsn
                        .cmp(&a.lsn)
                        .then(b.tags.priority().cmp(&a.tags.priority()))
                        .then(a.node.cmp(&b.node))
                });
                best.first().map(|m| m.node.clone())
            }
        };
        let Some(target) = target else {
            return Some(Decision {
                kind: DecisionKind::Switchover,
                reason: "switchover refused: no healthy, streaming, eligible replica".into(),
                actions: vec![propose(Operation::CancelSwitchover {
                    actor: format!("ha:{me}"),
                    reason: "no healthy, streaming, eligible replica".into(),
                })],
                lease: None,
                renewal: None,
                failsafe: None,
            });
        };
        self.switchover_stop = Some((epoch, target.clone()));
        Some(Decision {
            kind: DecisionKind::Switchover,
            reason: format!(
                "switchover to {target}: stopping PostgreSQL cleanly so it ships all WAL"
            ),
            actions: vec![pg(PgAction::Stop {
                mode: StopMode::Fast,
            })],
            lease: None,
            renewal: None,
            failsafe: None,
        })
    }
}
