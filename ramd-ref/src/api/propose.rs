//! How the API changes the cluster: an [`Operation`] proposed through consensus, and
//! operator actions recorded in the cluster history (`api:<caller>`).

use rale::state::{Command, HistoryKind, Operation, Outcome};
use rale::{Consensus, NodeId};

use super::error::ApiError;
use super::{ApiState, now_unix_ms};
use crate::ha::wall_ms;

/// Proposes `op` and waits until it is visible on this node; a rejection is logged and
/// returned as the outcome.
pub(crate) async fn propose(st: &ApiState, op: Operation) -> Result<Outcome, ApiError> {
    let name = op.name();
    let outcome = st
        .consensus
        .propose_visible(Command {
            op,
            wall_ms: now_unix_ms(),
        })
        .await
        .map_err(ApiError::consensus)?;
    if let Outcome::Rejected(reason) = &outcome {
        tracing::info!(operation = name, reason = %reason, "api proposal rejected");
    }
    Ok(outcome)
}

/// Records an operator action of this node in the history (`api:<caller>`).
pub(crate) async fn record_operation(st: &ApiState, caller: &str, reason: String) {
    let node = st.snap().node.clone();
    record(st.consensus.as_ref(), &node, caller, reason).await;
}

/// Records an operator action on `node` in the history (`api:<caller>`). Best effort:
/// the action already happened, so a failed record is logged, not answered.
pub(crate) async fn record(consensus: &dyn Consensus, node: &NodeId, caller: &str, reason: String) {
    let cmd = Command {
        op: Operation::Record {
            kind: HistoryKind::Operation,
            node: Some(node.clone()),
            actor: format!("api:{caller}"),
            reason,
        },
        wall_ms: wall_ms(),
    };
    if let Err(e) = consensus.propose(cmd).await {
        tracing::warn!(error = %e, "operation not recorded in the history");
    }
}
