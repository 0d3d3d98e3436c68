//! The server side of Raft over HTTP: the routes peers call, behind the shared secret.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use subtle::ConstantTimeEq;

use super::client::LocalErr;
use super::network::{
    PATH_ADD_MEMBER, PATH_APPEND, PATH_PROPOSE, PATH_READ, PATH_REMOVE_MEMBER, PATH_SNAPSHOT,
    PATH_VOTE,
};
use super::node::RaftConsensus;
use super::types::{
    MemberReply, ProposeReply, ReadReply, RemoveMemberRequest, TypeConfig, WireError,
};
use crate::consensus::Peer;
use crate::state::Command;

/// Largest request body accepted (an append batch or a snapshot chunk, as JSON).
const BODY_BYTES_MAX: usize = 32 * 1024 * 1024;

/// The Raft routes of the agent API, to merge into the agent's router:
/// `POST /raft/vote`, `/raft/append`, `/raft/snapshot` (openraft RPCs) and
/// `/raft/propose`, `/raft/read`, `/raft/members/add`, `/raft/members/remove` (client
/// requests forwarded to the leader). All take and return JSON. When the node has an
/// `auth_token`, every request must carry `Authorization: Bearer <token>` or gets 401.
pub fn router(node: RaftConsensus) -> Router {
    Router::new()
        .route(PATH_VOTE, post(vote))
        .route(PATH_APPEND, post(append))
        .route(PATH_SNAPSHOT, post(snapshot))
        .route(PATH_PROPOSE, post(propose))
        .route(PATH_READ, post(read))
        .route(PATH_ADD_MEMBER, post(add_member))
        .route(PATH_REMOVE_MEMBER, post(remove_member))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(middleware::from_fn_with_state(node.clone(), authenticate))
        .with_state(node)
}

/// Whether the `Authorization` header value carries `token` (compared in constant time).
fn authorized(header_value: Option<&[u8]>, token: &str) -> bool {
    let Some(value) = header_value else {
        return false;
    };
    let Some(presented) = value.strip_prefix(b"Bearer ") else {
        return false;
    };
    presented.ct_eq(token.as_bytes()).into()
}

async fn authenticate(State(node): State<RaftConsensus>, req: Request, next: Next) -> Response {
    let own = node.config().raft_id;
    let target = req
        .headers()
        .get(super::network::TARGET_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(t) = target
        && t != own
    {
        tracing::error!(path = %req.uri().path(), target = t, raft_id = own,
            "refused a Raft request meant for another member: two members are configured with this agent's address");
        return (
            StatusCode::MISDIRECTED_REQUEST,
            format!("this agent is consensus member {own}, not {t}: check the members' api_url"),
        )
            .into_response();
    }
    if let Some(token) = &node.config().auth_token {
        let value = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if !authorized(value, token) {
            tracing::warn!(path = %req.uri().path(), "refused a Raft request without valid credentials");
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "missing or wrong Raft credentials",
            )
                .into_response();
        }
    }
    next.run(req).await
}

async fn vote(
    State(node): State<RaftConsensus>,
    Json(req): Json<VoteRequest<u64>>,
) -> Json<Result<VoteResponse<u64>, RaftError<u64>>> {
    Json(node.inner.raft.vote(req).await)
}

async fn append(
    State(node): State<RaftConsensus>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Json<Result<AppendEntriesResponse<u64>, RaftError<u64>>> {
    let res = node.inner.raft.append_entries(req).await;
    if let Ok(resp) = &res
        && !matches!(resp, AppendEntriesResponse::HigherVote(_))
    {
        node.note_leader_contact();
    }
    Json(res)
}

async fn snapshot(
    State(node): State<RaftConsensus>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Json<Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>> {
    let vote = req.vote;
    let res = node.inner.raft.install_snapshot(req).await;
    if let Ok(resp) = &res
        && resp.vote == vote
    {
        node.note_leader_contact();
    }
    Json(res)
}

/// Runs one local attempt of a forwarded request, bounded by `timeout`.
async fn bounded<T>(
    timeout: Duration,
    work: impl Future<Output = Result<T, LocalErr>>,
) -> Result<T, WireError> {
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r.map_err(LocalErr::into_wire),
        Err(_) => Err(WireError::NoMajority {
            message: format!("no majority answered within {} ms", timeout.as_millis()),
        }),
    }
}

async fn propose(
    State(node): State<RaftConsensus>,
    Json(cmd): Json<Command>,
) -> Json<ProposeReply> {
    let timeout = node.config().request_timeout;
    Json(bounded(timeout, node.propose_local(cmd)).await)
}

async fn read(State(node): State<RaftConsensus>) -> Json<ReadReply> {
    let timeout = node.config().request_timeout;
    Json(
        bounded(timeout, async {
            node.read_local().await.map(|s| (*s).clone())
        })
        .await,
    )
}

async fn add_member(
    State(node): State<RaftConsensus>,
    Json(peer): Json<Peer>,
) -> Json<MemberReply> {
    let timeout = node.config().membership_timeout;
    Json(bounded(timeout, node.add_member_local(peer)).await)
}

async fn remove_member(
    State(node): State<RaftConsensus>,
    Json(req): Json<RemoveMemberRequest>,
) -> Json<MemberReply> {
    let timeout = node.config().membership_timeout;
    Json(bounded(timeout, node.remove_member_local(&req.node)).await)
}

/// Decodes `bytes` as the body of each consensus RPC this server accepts (the same
/// decoder as its handlers), and checks that every body that decodes encodes and
/// decodes again to the same JSON. Returns how many of the RPCs accepted the bytes. The
/// `raft_rpc` fuzz target runs it: whatever a peer (or an attacker holding the cluster
/// token) sends, decoding may refuse but never panic.
pub fn check_rpc_bodies(bytes: &[u8]) -> usize {
    fn one<T: serde::Serialize + serde::de::DeserializeOwned>(bytes: &[u8]) -> usize {
        let Ok(v) = serde_json::from_slice::<T>(bytes) else {
            return 0;
        };
        let Ok(text) = serde_json::to_string(&v) else {
            return 1;
        };
        let again: T = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => panic!("a decoded RPC body does not decode after encoding: {e}: {text}"),
        };
        let text_again = serde_json::to_string(&again).unwrap_or_default();
        assert_eq!(text, text_again, "an RPC body changed in a round trip");
        1
    }
    one::<VoteRequest<u64>>(bytes)
        + one::<AppendEntriesRequest<TypeConfig>>(bytes)
        + one::<InstallSnapshotRequest<TypeConfig>>(bytes)
        + one::<Command>(bytes)
        + one::<Peer>(bytes)
        + one::<RemoveMemberRequest>(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_checked() {
        assert!(authorized(Some(b"Bearer s3cret"), "s3cret"));
        assert!(!authorized(Some(b"Bearer s3cre"), "s3cret"));
        assert!(!authorized(Some(b"Bearer s3cretx"), "s3cret"));
        assert!(!authorized(Some(b"Basic s3cret"), "s3cret"));
        assert!(!authorized(Some(b"s3cret"), "s3cret"));
        assert!(!authorized(None, "s3cret"));
    }
}
