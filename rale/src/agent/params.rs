//! Applying the cluster-wide PostgreSQL parameters of the dynamic configuration to the
//! local server, for the agent's HA loop.
//!
//! - What the configuration names is set (`ALTER SYSTEM` + reload, through
//!   [`PostgresControl::set_parameters`]); what RALE set before and the configuration no
//!   longer names is removed (`ALTER SYSTEM RESET`). The names RALE has set are kept in a
//!   file in the agent's state directory, so that a parameter removed while the agent
//!   was down is still removed when it comes back, and a parameter an operator set by
//!   hand with `ALTER SYSTEM` is never touched.
//! - A failure goes to the policy ([`Applied::Failed`], then
//!   [`Observation::parameters`](crate::decide::Observation::parameters)): when the
//!   primary's server refuses a change (a value or name it rejects) the decision core
//!   proposes the last parameters that applied, otherwise it records the failure. A
//!   transient failure (connection lost, timeout) is reported once and retried every
//!   [`RETRY_INTERVAL`], never rolled back.
//!
//! ```no_run
//! # async fn demo(pg: &dyn rale::PostgresControl, state: &rale::ClusterState) {
//! use rale::agent::{Applied, ParameterApplier};
//! let mut applier = ParameterApplier::load(
//!     std::path::PathBuf::from("/var/lib/rale/state/postgresql_parameters.json"),
//! );
//! if let Applied::Failed(outcome) = applier.apply(pg, state, rale::Millis(0)).await {
//!     // hand `outcome` to the policy in the next observation
//! }
//! # }
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tracing::{info, warn};

use crate::decide::{ParameterOutcome, ParameterSet};
use crate::pg::PostgresControl;
use crate::types::Millis;
use crate::{ClusterState, DynamicConfig};

/// What one [`ParameterApplier::apply`] did.
#[derive(Debug)]
pub enum Applied {
    /// Nothing to do (already applied, or PostgreSQL not reachable).
    Unchanged,
    /// Applied: names reloaded and names waiting for a restart.
    Done {
        /// Applied by reload (set or removed).
        reloaded: Vec<String>,
        /// Waiting for a restart.
        pending_restart: Vec<String>,
    },
    /// Could not be applied: the policy decides what follows (the decision core rolls a
    /// refused change back on the primary and records the rest).
    Failed(ParameterOutcome),
}

/// Applies the parameters of each new configuration once, and remembers what it set.
#[derive(Debug, Default)]
pub struct ParameterApplier {
    /// Where the record lives (`None`: memory only).
    file: Option<PathBuf>,
    /// Every name RALE has set on this server (persisted).
    installed: BTreeMap<String, String>,
    /// The parameter set last attempted (not retried every loop).
    attempted: Option<BTreeMap<String, String>>,
    /// The last configuration whose parameters applied.
    good: Option<DynamicConfig>,
    /// After a transient failure (connection, timeout): no new attempt before this
    /// (the node's monotonic clock).
    retry_at: Option<Millis>,
    /// The configuration version whose transient failure is already in the history.
    reported_version: Option<u64>,
}

/// Pause between attempts after a transient failure.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// Whether `e` is the server refusing a value or a name (`ALTER SYSTEM` failed with a
/// data exception, an unknown object or a parameter that cannot be changed): worth a
/// rollback. Anything else (connection lost, timeout) is transient and retried.
pub fn refused_by_server(e: &crate::Error) -> bool {
    match e {
        crate::Error::Postgres { operation, message } => {
            *operation == "ALTER SYSTEM"
                && ["22", "42", "55"].iter().any(|class| {
                    message.starts_with(class) && message.as_bytes().get(5) == Some(&b':')
                })
        }
        _ => false,
    }
}

impl ParameterApplier {
    /// An applier whose record of set names lives in `file` (read now if it exists; an
    /// unreadable record is logged and treated as empty). [`Default`] keeps the record in
    /// memory only.
    pub fn load(file: PathBuf) -> Self {
        let installed = crate::files::read_json(&file)
            .unwrap_or_else(|e| {
                warn!(file = %file.display(), error = %e, "ignoring an unreadable parameter record");
                None
            })
            .unwrap_or_default();
        Self {
            file: Some(file),
            installed,
            attempted: None,
            good: None,
            retry_at: None,
            reported_version: None,
        }
    }

    fn save(&self) {
        let Some(file) = &self.file else { return };
        if let Err(e) = crate::files::write_json(file, &self.installed) {
            warn!(file = %file.display(), error = %e, "cannot write the parameter record");
        }
    }

    /// Whether [`Self::apply`] has work for `state`: its parameters changed since the
    /// last attempt, and no retry pause is running. Cheap; the HA loop asks before it
    /// takes the PostgreSQL lock.
    pub fn is_due(&self, state: &ClusterState, now: Millis) -> bool {
        self.attempted.as_ref() != Some(&state.config.effective_postgresql_parameters())
            && self.retry_at.is_none_or(|t| now >= t)
    }

    /// Applies `state`'s parameters to `pg` when they changed since the last attempt
    /// (`now`: the node's monotonic clock).
    pub async fn apply(
        &mut self,
        pg: &dyn PostgresControl,
        state: &ClusterState,
        now: Millis,
    ) -> Applied {
        if !self.is_due(state, now) {
            return Applied::Unchanged;
        }
        let wanted = state.config.effective_postgresql_parameters();
        let removed: Vec<String> = self
            .installed
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        let result = async {
            let mut reloaded = Vec::new();
            let mut pending = Vec::new();
            if !removed.is_empty() {
                let r = pg.reset_parameters(&removed).await?;
                reloaded.extend(r.reloaded);
                pending.extend(r.pending_restart);
            }
            let r = pg.set_parameters(&wanted).await?;
            reloaded.extend(r.reloaded);
            pending.extend(r.pending_restart);
            Ok::<_, crate::Error>((reloaded, pending))
        }
        .await;
        self.attempted = Some(wanted.clone());
        self.retry_at = None;
        match result {
            Ok((reloaded, pending_restart)) => {
                self.installed = wanted;
                self.save();
                self.good = Some(state.config.clone());
                info!(reloaded = ?reloaded, pending_restart = ?pending_restart,
                    version = state.config_version, "cluster-wide PostgreSQL parameters applied");
                Applied::Done {
                    reloaded,
                    pending_restart,
                }
            }
            Err(e) => {
                // Part of the batch may have been written: remember every name, so that
                // a later configuration without them removes them.
                for (k, v) in &wanted {
                    self.installed.entry(k.clone()).or_insert_with(|| v.clone());
                }
                self.save();
                warn!(error = %e, version = state.config_version, "cluster-wide PostgreSQL parameters not applied");
                let version = state.config_version;
                if !refused_by_server(&e) {
                    // Transient: try again in a moment, report once per version.
                    self.attempted = None;
                    self.retry_at =
                        Some(now.plus(u64::try_from(RETRY_INTERVAL.as_millis()).unwrap_or(5_000)));
                    if self.reported_version == Some(version) {
                        return Applied::Unchanged;
                    }
                    self.reported_version = Some(version);
                    return Applied::Failed(ParameterOutcome::Transient {
                        version,
                        error: e.to_string(),
                        retry_s: RETRY_INTERVAL.as_secs(),
                    });
                }
                Applied::Failed(ParameterOutcome::Refused {
                    version,
                    error: e.to_string(),
                    last_good: self.good.as_ref().map(|g| ParameterSet {
                        postgresql_parameters: g.postgresql_parameters.clone(),
                        commit_level: g.synchronous.commit_level,
                    }),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(operation: &'static str, message: &str) -> crate::Error {
        crate::Error::Postgres {
            operation,
            message: message.into(),
        }
    }

    #[test]
    fn only_server_refusals_are_rolled_back() {
        assert!(refused_by_server(&pg(
            "ALTER SYSTEM",
            "22023: invalid value for parameter \"TimeZone\": \"Mars/Olympus_Mons\""
        )));
        assert!(refused_by_server(&pg(
            "ALTER SYSTEM",
            "42704: unrecognized configuration parameter \"wrok_mem\""
        )));
        assert!(!refused_by_server(&pg("ALTER SYSTEM", "connection closed")));
        assert!(!refused_by_server(&pg(
            "connect",
            "22023: looks like a code"
        )));
        assert!(!refused_by_server(&crate::Error::Timeout {
            operation: "set_parameters",
            after_ms: 5000
        }));
    }
}
