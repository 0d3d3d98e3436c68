//! Bootstrap: claiming, initialising and taking the first lease of a new cluster.

use super::*;

impl Decider {
    pub(super) fn bootstrap(&mut self, state: &ClusterState, obs: &Observation<'_>) -> Decision {
        let now = obs.now;
        let me = self.node().clone();
        match &state.bootstrap {
            None if !self.me.tags.can_be_primary() => Decision::none(
                DecisionKind::Bootstrap,
                "tagged nofailover (or failover_priority 0): never initialises the cluster; waiting for another member",
            ),
            None => {
                let empty = obs.pg.data == DataDirState::Empty;
                let other_has_data = state
                    .members
                    .values()
                    .any(|m| m.node != me && m.system_id.is_some());
                if empty && other_has_data {
                    return Decision::none(
                        DecisionKind::Bootstrap,
                        "another member has a data directory: leaving the bootstrap to it",
                    );
                }
                if empty && now.since(self.started) < ms(self.config.publish_interval) {
                    return Decision::none(
                        DecisionKind::Bootstrap,
                        "waiting one publish interval so members with data can claim the bootstrap first",
                    );
                }
                Decision {
                    kind: DecisionKind::Bootstrap,
                    reason: if empty {
                        "cluster not initialised: claiming the bootstrap".into()
                    } else {
                        "cluster not initialised and this node has data: claiming the bootstrap to adopt it".into()
                    },
                    actions: vec![propose(Operation::ClaimBootstrap { node: me })],
                    lease: None,
                    renewal: None,
                    failsafe: None,
                }
            }
            Some(b) if b.node == me => match obs.pg.data {
                DataDirState::Empty => {
                    let mut d = Decision::none(
                        DecisionKind::Bootstrap,
                        "this node won the bootstrap: running initdb",
                    );
                    if self.once("bootstrap", now, REBUILD_COOLDOWN_MS) {
                        // The cluster-wide parameters are in place before the first
                        // start, so that those needing a restart (wal_level,
                        // shared_buffers, …) do not wait for one.
                        let mut parameters = state.config.effective_postgresql_parameters();
                        if let Some(v) = crate::decide::sync::bootstrap_names(&state.config) {
                            parameters.insert("synchronous_standby_names".to_string(), v);
                        }
                        d.actions.push(pg(PgAction::Bootstrap { parameters }));
                    }
                    d
                }
                DataDirState::Initialized { system_id } if obs.pg.running => Decision {
                    kind: DecisionKind::Bootstrap,
                    reason: format!(
                        "cluster initialised (system identifier {system_id}): taking the first lease"
                    ),
                    actions: vec![
                        propose(Operation::CompleteBootstrap {
                            node: me.clone(),
                            system_id,
                        }),
                        propose(Operation::AcquireLease {
                            node: me,
                            expected_epoch: state.epoch(),
                            expected_renewals: state
                                .lease
                                .as_ref()
                                .map(|l| l.renewals)
                                .unwrap_or(0),
                            holder_clock: now,
                            timeline: obs.pg.timeline,
                            lsn: obs.pg.wal_position(),
                            kind: HistoryKind::Bootstrap,
                            reason: "first primary of the cluster".into(),
                        }),
                    ],
                    lease: None,
                    renewal: None,
                    failsafe: None,
                },
                DataDirState::Initialized { .. } => {
                    let mut d = Decision::none(
                        DecisionKind::Bootstrap,
                        "starting PostgreSQL to complete the bootstrap",
                    );
                    if self.once("start", now, ACTION_COOLDOWN_MS) {
                        d.actions.push(pg(PgAction::Start { upstream: None }));
                    }
                    d
                }
            },
            Some(b) => Decision::none(
                DecisionKind::Bootstrap,
                format!("waiting for {} to initialise the cluster", b.node),
            ),
        }
    }
}
