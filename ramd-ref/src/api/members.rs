//! Consensus membership at run time: `GET /api/v1/members` lists the voters and
//! learners, `POST /api/v1/members` adds a member (a learner that becomes a voter once
//! it has caught up), `DELETE /api/v1/members/{name}` removes one.
//!
//! Removal is refused (409) for the holder of the primary lease (switch over first), for
//! the last voter, and for a member whose agent still reports (it published its status
//! within [`still_reporting_ms`]): stop that agent first, or pass `?force=true` for a
//! host that is gone for good. The consensus implementation also refuses a removal that
//! would leave the remaining voters without an up-to-date majority. After a removal the
//! member's published status is forgotten and the cluster refuses its publications and
//! claims: an agent still running there takes no action (its status says "removed")
//! until the member is added again.
//!
//! Adding is refused (409) for a member whose `api_url` reaches the same agent
//! (`host:port`) as an existing member's: one agent would hold two votes.
//!
//! The request and answer bodies are defined here and shared with the client
//! ([`crate::client::Client::members`] and friends).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use rale::consensus::{Membership, Peer};
use rale::state::{Operation, Outcome};
use rale::{Error as RaleError, NodeId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiQuery};
use super::propose::propose;
use super::types::{ActionResponse, ErrorBody};

type St = State<Arc<ApiState>>;

/// Longest accepted `api_url`.
pub const API_URL_LEN_MAX: usize = 2048;

/// `POST /api/v1/members`: the member to add.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    /// Member name (1–63 of `[A-Za-z0-9_.-]`), its `name` in its own configuration.
    #[schema(pattern = r"^[A-Za-z0-9_.-]{1,63}$")]
    pub name: String,
    /// Numeric consensus id: unique, never reused, not 0.
    #[schema(minimum = 1)]
    pub raft_id: u64,
    /// Base URL of its agent API, e.g. `https://10.0.0.4:8008` (no query or fragment).
    #[schema(pattern = r"^https?://[^/?#\s]+(/[^?#\s]*)?$", max_length = 2048)]
    pub api_url: String,
}

impl AddMemberRequest {
    /// Checks the fields and turns them into a consensus [`Peer`]; the error says which
    /// field is wrong.
    pub fn validate(&self) -> Result<Peer, String> {
        let node = NodeId::new(self.name.trim()).map_err(|e| format!("name: {e}"))?;
        if self.raft_id == 0 {
            return Err("raft_id: must be at least 1".into());
        }
        let url = self.api_url.trim().trim_end_matches('/');
        if url.len() > API_URL_LEN_MAX {
            return Err(format!("api_url: longer than {API_URL_LEN_MAX} characters"));
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("api_url {url:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("api_url {url:?}: use http:// or https://"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(format!("api_url {url:?}: no host"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(format!(
                "api_url {url:?}: a base URL has no query or fragment"
            ));
        }
        Ok(Peer {
            node,
            raft_id: self.raft_id,
            api_url: url.to_owned(),
        })
    }
}

/// One consensus member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PeerView {
    /// Member name.
    pub name: String,
    /// Numeric consensus id.
    pub raft_id: u64,
    /// Base URL of its agent API.
    pub api_url: String,
}

impl From<&Peer> for PeerView {
    fn from(p: &Peer) -> Self {
        Self {
            name: p.node.to_string(),
            raft_id: p.raft_id,
            api_url: p.api_url.clone(),
        }
    }
}

/// `GET /api/v1/members`: who takes part in consensus.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MembersView {
    /// Voting members.
    pub voters: Vec<PeerView>,
    /// Members catching up before they vote.
    pub learners: Vec<PeerView>,
    /// The consensus leader, if known (not necessarily the PostgreSQL primary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The consensus term.
    pub term: u64,
}

impl From<&Membership> for MembersView {
    fn from(m: &Membership) -> Self {
        Self {
            voters: m.voters.iter().map(PeerView::from).collect(),
            learners: m.learners.iter().map(PeerView::from).collect(),
            leader: m.leader.as_ref().map(ToString::to_string),
            term: m.term,
        }
    }
}

/// A consensus error of a membership change as an HTTP answer: refusals are 409, lost
/// majorities and time-outs 503 (the change may still happen: read the list again).
fn membership_error(e: RaleError) -> ApiError {
    match e {
        RaleError::Membership(m) => ApiError::conflict(format!("membership change refused: {m}")),
        other @ (RaleError::NoMajority(_) | RaleError::Timeout { .. }) => {
            ApiError::unavailable(format!(
                "membership change not confirmed: {other}; list the members to see whether it happened"
            ))
        }
        other => ApiError::unavailable(format!("membership change failed: {other}")),
    }
}

async fn membership(st: &ApiState) -> Result<Membership, ApiError> {
    st.consensus.membership().await.map_err(ApiError::consensus)
}

/// The consensus members.
#[utoipa::path(get, path = "/api/v1/members", tag = "members",
    responses(
        (status = 200, description = "Voters and learners", body = MembersView),
        (status = 503, description = "Consensus unavailable", body = ErrorBody)))]
pub(crate) async fn list(State(st): St) -> Result<Json<MembersView>, ApiError> {
    Ok(Json(MembersView::from(&membership(&st).await?)))
}

/// Adds a consensus member: a learner first, a voter once it has caught up. Start the new
/// member's agent (with no `peers` entry for itself) before or right after this call.
#[utoipa::path(post, path = "/api/v1/members", tag = "members", request_body = AddMemberRequest,
    responses(
        (status = 201, description = "Added as a voter", body = ActionResponse),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 401, description = "Credentials required", body = ErrorBody),
        (status = 409, description = "Already a member, or the name/id clashes", body = ErrorBody),
        (status = 503, description = "Consensus unavailable or outcome unknown", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn add(
    State(st): St,
    caller: Option<Extension<Caller>>,
    ApiJson(req): ApiJson<AddMemberRequest>,
) -> Result<(StatusCode, Json<ActionResponse>), ApiError> {
    let peer = req.validate().map_err(ApiError::bad_request)?;
    let current = membership(&st).await?;
    let known = current.voters.iter().chain(&current.learners);
    for m in known {
        if m.node == peer.node && m.raft_id == peer.raft_id && current.voters.contains(m) {
            return Err(
                ApiError::conflict(format!("{} is already a voter", peer.node))
                    .with("node", peer.node.to_string()),
            );
        }
        if (m.node == peer.node) != (m.raft_id == peer.raft_id) {
            return Err(ApiError::conflict(format!(
                "{} (raft_id {}) clashes with member {} (raft_id {})",
                peer.node, peer.raft_id, m.node, m.raft_id
            )));
        }
    }
    let endpoint = peer
        .endpoint()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    for m in current.voters.iter().chain(&current.learners) {
        if m.node != peer.node && m.endpoint().is_ok_and(|e| e == endpoint) {
            return Err(ApiError::conflict(format!(
                "{} would reach the same agent as member {} ({endpoint}): one agent would hold two votes",
                peer.node, m.node
            ))
            .with("node", m.node.to_string()));
        }
    }
    let who = caller.map(|Extension(c)| c.0).unwrap_or_default();
    let cluster = st.consensus.read().await.map_err(ApiError::consensus)?;
    if cluster.removed.contains(&peer.node) {
        // It was removed before: let its agent take part again.
        propose(
            &st,
            Operation::AdmitMember {
                node: peer.node.clone(),
            },
        )
        .await?;
    }
    tracing::info!(node = %peer.node, raft_id = peer.raft_id, api_url = %peer.api_url, caller = %who, reason = "api", "adding consensus member");
    let node = peer.node.to_string();
    st.consensus
        .add_member(peer)
        .await
        .map_err(membership_error)?;
    Ok((
        StatusCode::CREATED,
        Json(ActionResponse {
            message: format!("{node} is a voting member"),
            node: Some(node),
            paused: None,
        }),
    ))
}

/// `DELETE /api/v1/members/{name}` options.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RemoveQuery {
    /// Remove it even though its agent still reports (a host being decommissioned
    /// while its agent runs; the agent then stops taking part).
    #[serde(default)]
    pub force: bool,
}

/// How recently a member must have published its status to count as "still reporting"
/// when it is removed: three `member_ttl`s, at least 10 s (publications are stamped with
/// the publisher's wall clock, so this leaves room for clock skew).
pub fn still_reporting_ms(config: &rale::DynamicConfig) -> u64 {
    u64::try_from(config.member_ttl.as_millis())
        .unwrap_or(u64::MAX)
        .saturating_mul(3)
        .max(10_000)
}

/// Removes a consensus member. Refused for the primary lease holder, the last voter and
/// (without `force`) a member whose agent still reports.
#[utoipa::path(delete, path = "/api/v1/members/{name}", tag = "members",
    params(("name" = String, Path, pattern = r"^[A-Za-z0-9_.-]{1,63}$", description = "Member to remove"), RemoveQuery),
    responses(
        (status = 200, description = "Removed", body = ActionResponse),
        (status = 400, description = "Bad name", body = ErrorBody),
        (status = 401, description = "Credentials required", body = ErrorBody),
        (status = 404, description = "Not a member", body = ErrorBody),
        (status = 409, description = "Lease holder, last voter, agent still reporting (use force), or no majority left", body = ErrorBody),
        (status = 503, description = "Consensus unavailable or outcome unknown", body = ErrorBody)),
    security(("basic" = [])))]
pub(crate) async fn remove(
    State(st): St,
    caller: Option<Extension<Caller>>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<RemoveQuery>,
) -> Result<Json<ActionResponse>, ApiError> {
    let node = NodeId::new(&name).map_err(|e| ApiError::bad_request(format!("name: {e}")))?;
    let cluster = st.consensus.read().await.map_err(ApiError::consensus)?;
    if cluster.holder() == Some(&node) {
        return Err(ApiError::conflict(format!(
            "{node} holds the primary lease: switch over to another member first"
        ))
        .with("node", node.to_string()));
    }
    let current = membership(&st).await?;
    let is_voter = current.voters.iter().any(|p| p.node == node);
    let is_learner = current.learners.iter().any(|p| p.node == node);
    if !is_voter && !is_learner {
        return Err(ApiError::not_found(format!(
            "{node} is not a consensus member"
        )));
    }
    if is_voter && current.voters.len() == 1 {
        return Err(ApiError::conflict(format!(
            "{node} is the last voter: a cluster cannot remove its last voting member"
        ))
        .with("node", node.to_string()));
    }
    let who = caller.map(|Extension(c)| c.0).unwrap_or_default();
    if let Some(seen) = cluster.members_seen_unix_ms.get(&node).copied()
        && !q.force
    {
        let refuse = |why: String| {
            tracing::warn!(node = %node, caller = %who, reason = %why, "refused to remove a member whose agent still reports");
            Err(ApiError::conflict(format!(
                "{node}'s agent still reports ({why}): stop it first, or remove with \
                 ?force=true if its host is gone for good (the agent then stops taking part)"
            ))
            .with("node", node.to_string()))
        };
        // The stamp is the member's own wall clock at its last status, compared with this
        // node's: a clock that is off either way must not make a live member look gone.
        let age_ms = crate::ha::wall_ms().saturating_sub(seen);
        let limit_ms = still_reporting_ms(&cluster.config);
        if age_ms < limit_ms {
            return refuse(format!("last status {age_ms} ms ago"));
        }
        // So the stamp looks old: wait for two more (idle) publishing intervals and look
        // again. A live agent publishes at least that often, and its stamp then changes
        // whatever its clock says — a check that does not depend on any clock agreeing.
        let wait = cluster
            .config
            .idle_publish_interval()
            .saturating_mul(2)
            .saturating_add(std::time::Duration::from_millis(250))
            .min(std::time::Duration::from_secs(10));
        tokio::time::sleep(wait).await;
        let again = st.consensus.read().await.map_err(ApiError::consensus)?;
        if again
            .members_seen_unix_ms
            .get(&node)
            .is_some_and(|now| *now != seen)
        {
            return refuse(format!(
                "it published a status within the last {} ms; its wall clock may be off",
                wait.as_millis()
            ));
        }
    }
    tracing::info!(node = %node, caller = %who, force = q.force, reason = "api", "removing consensus member");
    st.consensus
        .remove_member(&node)
        .await
        .map_err(membership_error)?;
    // Forget its published status too; a member that never published is fine.
    let forgotten = match propose(&st, Operation::RemoveMember { node: node.clone() }).await {
        Ok(Outcome::Applied) => true,
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(node = %node, error = %e, "member removed from consensus; forgetting its status failed");
            false
        }
    };
    let message = if forgotten {
        format!("{node} is no longer a member")
    } else {
        format!("{node} is no longer a consensus member")
    };
    Ok(Json(ActionResponse {
        message,
        node: Some(node.to_string()),
        paused: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, raft_id: u64, api_url: &str) -> AddMemberRequest {
        AddMemberRequest {
            name: name.into(),
            raft_id,
            api_url: api_url.into(),
        }
    }

    #[test]
    fn validation_names_the_field() {
        let ok = req("node4", 4, "https://10.0.0.4:8008/")
            .validate()
            .expect("valid");
        assert_eq!(ok.api_url, "https://10.0.0.4:8008");
        assert_eq!(ok.node.as_str(), "node4");
        let err = |r: AddMemberRequest| r.validate().err().unwrap_or_default();
        assert!(err(req("bad name", 4, "http://h:1")).starts_with("name"));
        assert!(err(req("n", 0, "http://h:1")).starts_with("raft_id"));
        assert!(err(req("n", 4, "ftp://h:1")).contains("http://"));
        assert!(err(req("n", 4, "not a url")).starts_with("api_url"));
        assert!(err(req("n", 4, "http://h:1/?x=1")).contains("query"));
        assert!(err(req("n", 4, &format!("http://h/{}", "a".repeat(3000)))).contains("longer"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let r: Result<AddMemberRequest, _> =
            serde_json::from_str(r#"{"name":"a","raft_id":1,"api_url":"http://h","x":1}"#);
        assert!(r.is_err());
    }
}
