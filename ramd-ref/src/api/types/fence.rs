//! The commit fence's state in the node status (`GET /patroni`, `GET /api/v1/nodes/{id}`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The lease-gated commit fence of one node (`docs/fence.md`), as of the request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FenceView {
    /// The dynamic configuration enables the fence (`fence = true`).
    pub enabled: bool,
    /// The server's `synchronous_standby_names` names `rale_fence`: commits wait for it.
    pub named: bool,
    /// This node runs the fence (a running primary that asks for it).
    pub active: bool,
    /// A fence replication session is streaming from the local server.
    pub streaming: bool,
    /// The lease deadline is open: the fence acknowledges new WAL.
    pub open: bool,
    /// The server names the fence but the fence does not acknowledge new WAL (not
    /// streaming, or the deadline passed): commits wait. In `FIRST n+1` mode another
    /// connected synchronous standby may stand in for a fence that is not streaming.
    pub blocking: bool,
    /// WAL was received that the fence has not acknowledged (commits are waiting now).
    pub waiting: bool,
    /// Milliseconds until the lease deadline (0 once passed); absent while closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_remaining_ms: Option<u64>,
    /// Fence sessions that reached streaming since the agent started.
    pub sessions: u64,
    /// Last WAL position received on the current session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_lsn: Option<String>,
    /// Last position acknowledged to the server on the current session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_lsn: Option<String>,
    /// The last session error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
