//! What follows a failure to apply the cluster's PostgreSQL parameters.

use super::*;

impl Decider {
    /// What follows a failure to apply the cluster's PostgreSQL parameters here: on the
    /// primary, a change the server refused is rolled back to the parameters of the last
    /// configuration that applied (compare-and-set on the failed version, so a newer
    /// change by an operator wins); anything else — a replica, a transient failure,
    /// nothing to go back to — is recorded in the history.
    pub(super) fn parameter_failure(
        &self,
        failure: &ParameterOutcome,
        state: &ClusterState,
    ) -> Action {
        let me = self.node().clone();
        let actor = format!("ha:{me}");
        let failed = |version: u64, error: &str| {
            format!(
                "PostgreSQL parameters of configuration version {version} could not be applied: {error}"
            )
        };
        match failure {
            ParameterOutcome::Refused {
                version,
                error,
                last_good: Some(good),
            } if state.holder() == Some(&me)
                && (good.postgresql_parameters != state.config.postgresql_parameters
                    || good.commit_level != state.config.synchronous.commit_level) =>
            {
                let mut config = state.config.clone();
                config.postgresql_parameters = good.postgresql_parameters.clone();
                config.synchronous.commit_level = good.commit_level;
                propose(Operation::SetConfig {
                    expected_version: Some(*version),
                    config,
                    actor,
                    reason: format!(
                        "{}; rolled back to the parameters that applied (on {me})",
                        failed(*version, error)
                    ),
                })
            }
            ParameterOutcome::Refused { version, error, .. } => propose(Operation::Record {
                kind: HistoryKind::Config,
                node: Some(me.clone()),
                actor,
                reason: format!("{} (on {me})", failed(*version, error)),
            }),
            ParameterOutcome::Transient {
                version,
                error,
                retry_s,
            } => propose(Operation::Record {
                kind: HistoryKind::Config,
                node: Some(me.clone()),
                actor,
                reason: format!(
                    "{}; retrying every {retry_s} s (on {me})",
                    failed(*version, error)
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;
    use crate::decide::ParameterSet;
    use crate::types::{Epoch, Lsn, Timeline};

    fn me() -> NodeIdentity {
        NodeIdentity {
            node: NodeId::new("n1").expect("valid"),
            api_url: "http://n1:8008".into(),
            pg_host: "n1".into(),
            pg_port: 5432,
            tags: Default::default(),
        }
    }

    /// A cluster whose configuration version 7 sets `work_mem = 'lots'`, held by `holder`.
    fn state(holder: &str) -> ClusterState {
        let mut s = ClusterState {
            config_version: 7,
            ..ClusterState::default()
        };
        s.config
            .postgresql_parameters
            .insert("work_mem".into(), "lots".into());
        s.lease = Some(Lease {
            holder: Some(NodeId::new(holder).expect("valid")),
            epoch: Epoch(3),
            holder_clock: Millis(0),
            renewals: 0,
            successor: None,
            final_position: Some((Timeline(1), Lsn(0))),
        });
        s
    }

    fn refused(last_good: Option<ParameterSet>) -> ParameterOutcome {
        ParameterOutcome::Refused {
            version: 7,
            error: "22023: invalid value for parameter \"work_mem\": \"lots\"".into(),
            last_good,
        }
    }

    fn good() -> ParameterSet {
        let mut p = BTreeMap::new();
        p.insert("work_mem".to_string(), "64MB".to_string());
        ParameterSet {
            postgresql_parameters: p,
            commit_level: Default::default(),
        }
    }

    #[test]
    fn the_primary_rolls_a_refused_change_back() {
        let d = Decider::new(me(), Millis(0));
        let action = d.parameter_failure(&refused(Some(good())), &state("n1"));
        let Action::Propose {
            op:
                Operation::SetConfig {
                    expected_version,
                    config,
                    reason,
                    ..
                },
        } = action
        else {
            panic!("expected a rollback, got {action:?}");
        };
        assert_eq!(
            expected_version,
            Some(7),
            "compare-and-set on the failed version"
        );
        assert_eq!(config.postgresql_parameters["work_mem"], "64MB");
        assert!(
            reason.contains("rolled back") && reason.contains("(on n1)"),
            "{reason}"
        );
    }

    #[test]
    fn replicas_transient_failures_and_nothing_to_go_back_to_are_recorded() {
        let d = Decider::new(me(), Millis(0));
        let transient = ParameterOutcome::Transient {
            version: 7,
            error: "connection closed".into(),
            retry_s: 5,
        };
        for (failure, holder) in [
            (refused(Some(good())), "n2"),
            (refused(None), "n1"),
            (transient, "n1"),
        ] {
            let action = d.parameter_failure(&failure, &state(holder));
            assert!(
                matches!(
                    action,
                    Action::Propose {
                        op: Operation::Record {
                            kind: HistoryKind::Config,
                            ..
                        }
                    }
                ),
                "{failure:?} on a cluster held by {holder}: {action:?}"
            );
        }
    }
}
