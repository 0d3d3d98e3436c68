//! The client side of Raft over HTTP: openraft's `RaftNetwork` (vote, append, snapshot
//! chunks) plus the forwarding of client requests to the leader. JSON bodies, an optional
//! shared secret in `Authorization: Bearer …`, a timeout on every request; `https://`
//! members are verified against the public web roots plus an optional private CA bundle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{
    Infallible, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RPCTypes, RaftNetwork, RaftNetworkFactory};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::{RaftNode, TypeConfig};
use crate::{Error, Result};

/// Path of the vote RPC.
/// Header naming the consensus id a Raft request is meant for.
pub(crate) const TARGET_HEADER: &str = "x-rale-raft-target";
pub(crate) const PATH_VOTE: &str = "/raft/vote";
/// Path of the append-entries RPC (heartbeats included).
pub(crate) const PATH_APPEND: &str = "/raft/append";
/// Path of the snapshot-chunk RPC.
pub(crate) const PATH_SNAPSHOT: &str = "/raft/snapshot";
/// Path of a forwarded proposal.
pub(crate) const PATH_PROPOSE: &str = "/raft/propose";
/// Path of a forwarded linearizable read.
pub(crate) const PATH_READ: &str = "/raft/read";
/// Path of a forwarded `add_member`.
pub(crate) const PATH_ADD_MEMBER: &str = "/raft/members/add";
/// Path of a forwarded `remove_member`.
pub(crate) const PATH_REMOVE_MEMBER: &str = "/raft/members/remove";

/// Why an HTTP exchange failed.
#[derive(Debug)]
pub(crate) enum PostError {
    /// Could not connect: the request was certainly not delivered.
    Connect(String),
    /// No answer in time: the request may or may not have been processed.
    Timeout(Duration),
    /// The peer refused our credentials.
    Unauthorized,
    /// Anything else (bad status, undecodable body, broken connection).
    Other(String),
}

impl std::fmt::Display for PostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostError::Connect(m) => write!(f, "cannot connect: {m}"),
            PostError::Timeout(d) => write!(f, "no answer within {} ms", d.as_millis()),
            PostError::Unauthorized => write!(f, "authentication refused (check auth_token)"),
            PostError::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for PostError {}

/// A JSON-over-HTTP client with the cluster's credentials.
#[derive(Clone)]
pub(crate) struct HttpClient {
    http: reqwest::Client,
    auth_token: Option<String>,
}

impl HttpClient {
    /// A client that sends `auth_token` (if any) with every request and trusts the CA
    /// certificates of the PEM bundle `tls_ca` (if any) for `https://` members, in
    /// addition to the public web roots.
    pub(crate) fn new(
        auth_token: Option<String>,
        connect_timeout: Duration,
        tls_ca: Option<&std::path::Path>,
    ) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true);
        if let Some(path) = tls_ca {
            for cert in read_ca_bundle(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Error::Consensus(format!("building the Raft HTTP client: {e}")))?;
        Ok(Self { http, auth_token })
    }

    /// POSTs `body` as JSON to `base_url + path` and decodes the JSON answer. `target`
    /// is the consensus id the request is meant for: the receiving agent refuses it when
    /// that is not its own (two peers configured with one agent's address must not let
    /// it answer for both).
    pub(crate) async fn post<Req, Resp>(
        &self,
        base_url: &str,
        target: u64,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> std::result::Result<Resp, PostError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let url = format!("{}{path}", base_url.trim_end_matches('/'));
        let mut req = self
            .http
            .post(&url)
            .timeout(timeout)
            .header(TARGET_HEADER, target.to_string())
            .json(body);
        if let Some(token) = &self.auth_token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| classify(e, timeout))?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(PostError::Unauthorized);
        }
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(PostError::Other(format!("{url}: HTTP {status}: {text}")));
        }
        resp.json::<Resp>().await.map_err(|e| classify(e, timeout))
    }
}

/// The certificates of a PEM CA bundle; an unreadable file, a malformed PEM or a file
/// without any certificate is an [`Error::InvalidConfig`] naming the file.
fn read_ca_bundle(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>> {
    let bad = |what: String| Error::InvalidConfig(format!("tls_ca {}: {what}", path.display()));
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read the file: {e}")))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| bad(format!("not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(bad(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}

fn classify(e: reqwest::Error, timeout: Duration) -> PostError {
    if e.is_connect() {
        PostError::Connect(e.to_string())
    } else if e.is_timeout() {
        PostError::Timeout(timeout)
    } else {
        PostError::Other(e.to_string())
    }
}

/// How often a peer that stays unreachable is reported again.
const REMINDER: Duration = Duration::from_secs(30);

/// Whether each peer answers, for the log: one line when a peer stops answering, a
/// reminder every [`REMINDER`] while it stays away, one line when it is back. (openraft
/// reports every failed heartbeat — dozens of lines a second per lost peer — so ramd
/// turns those modules off by default and relies on these lines.)
#[derive(Default)]
pub(crate) struct PeerHealth {
    peers: Mutex<HashMap<u64, Outage>>,
}

struct Outage {
    since: Instant,
    reported: Instant,
}

impl PeerHealth {
    /// A request to `target` failed at `now`; returns what was logged, if anything.
    fn failed(
        &self,
        target: u64,
        name: &str,
        url: &str,
        error: &dyn std::fmt::Display,
        now: Instant,
    ) -> Option<&'static str> {
        let mut peers = self.peers.lock().ok()?;
        match peers.get_mut(&target) {
            None => {
                tracing::warn!(peer = name, raft_id = target, url, %error, "consensus peer unreachable");
                peers.insert(
                    target,
                    Outage {
                        since: now,
                        reported: now,
                    },
                );
                Some("unreachable")
            }
            Some(o) if now.duration_since(o.reported) >= REMINDER => {
                o.reported = now;
                tracing::warn!(peer = name, raft_id = target, url, %error,
                    down_s = now.duration_since(o.since).as_secs(), "consensus peer still unreachable");
                Some("still unreachable")
            }
            Some(_) => None,
        }
    }

    /// `target` answered at `now`; returns what was logged, if anything.
    fn answered(&self, target: u64, name: &str, now: Instant) -> Option<&'static str> {
        let o = self.peers.lock().ok()?.remove(&target)?;
        tracing::info!(
            peer = name,
            raft_id = target,
            down_ms = u64::try_from(now.duration_since(o.since).as_millis()).unwrap_or(u64::MAX),
            "consensus peer reachable again"
        );
        Some("reachable again")
    }
}

/// Makes one [`Conn`] per peer for openraft.
pub(crate) struct NetworkFactory {
    client: HttpClient,
    own_id: u64,
    rpc_timeout: Duration,
    retry_pause: Duration,
    health: Arc<PeerHealth>,
}

impl NetworkFactory {
    /// The factory of node `own_id`; an unreachable peer is retried every `retry_pause`.
    pub(crate) fn new(
        client: HttpClient,
        own_id: u64,
        rpc_timeout: Duration,
        retry_pause: Duration,
    ) -> Self {
        Self {
            client,
            own_id,
            rpc_timeout,
            retry_pause,
            health: Arc::default(),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Conn;

    async fn new_client(&mut self, target: u64, node: &RaftNode) -> Self::Network {
        Conn {
            client: self.client.clone(),
            own_id: self.own_id,
            target,
            name: node.name.clone(),
            url: node.api_url.clone(),
            rpc_timeout: self.rpc_timeout,
            retry_pause: self.retry_pause,
            health: self.health.clone(),
        }
    }
}

/// openraft's connection to one peer.
pub(crate) struct Conn {
    client: HttpClient,
    own_id: u64,
    target: u64,
    name: String,
    url: String,
    rpc_timeout: Duration,
    retry_pause: Duration,
    health: Arc<PeerHealth>,
}

type RpcResult<T, E> = std::result::Result<T, RPCError<u64, RaftNode, RaftError<u64, E>>>;

impl Conn {
    async fn call<Req, Resp, E>(
        &self,
        action: RPCTypes,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let posted = self
            .client
            .post(&self.url, self.target, path, req, timeout)
            .await;
        let now = Instant::now();
        let _logged = match &posted {
            Ok(_) => self.health.answered(self.target, &self.name, now),
            Err(e) => self
                .health
                .failed(self.target, &self.name, &self.url, e, now),
        };
        let reply: std::result::Result<Resp, RaftError<u64, E>> = posted.map_err(|e| match e {
            PostError::Connect(_) => RPCError::Unreachable(Unreachable::new(&e)),
            PostError::Timeout(_) => RPCError::Timeout(Timeout {
                action,
                id: self.own_id,
                target: self.target,
                timeout,
            }),
            PostError::Unauthorized | PostError::Other(_) => {
                RPCError::Network(NetworkError::new(&e))
            }
        })?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Conn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>, Infallible> {
        let timeout = self.rpc_timeout.min(option.hard_ttl());
        self.call(RPCTypes::AppendEntries, PATH_APPEND, &rpc, timeout)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        let timeout = option.hard_ttl();
        self.call(RPCTypes::InstallSnapshot, PATH_SNAPSHOT, &rpc, timeout)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>, Infallible> {
        let timeout = self.rpc_timeout.min(option.hard_ttl());
        self.call(RPCTypes::Vote, PATH_VOTE, &rpc, timeout).await
    }

    /// An unreachable peer (e.g. restarting) is retried at this pace (openraft's default
    /// is 500 ms), so a restarted member catches up soon after it is back.
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.retry_pause))
    }
}

#[cfg(test)]
mod health_tests {
    use super::*;

    /// A lost peer costs one line, a reminder every 30 s and one line when it is back,
    /// however many requests fail meanwhile.
    #[test]
    fn an_outage_is_reported_once_then_every_30_s() {
        let h = PeerHealth::default();
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        assert_eq!(h.answered(3, "n3", t0), None);
        assert_eq!(
            h.failed(3, "n3", "u", &"timeout", ms(0)),
            Some("unreachable")
        );
        let repeated = (1..600)
            .filter_map(|i| h.failed(3, "n3", "u", &"timeout", ms(i * 50)))
            .count();
        assert_eq!(
            repeated, 0,
            "29.95 s of failures every 50 ms: no more lines"
        );
        assert_eq!(
            h.failed(3, "n3", "u", &"timeout", ms(30_000)),
            Some("still unreachable")
        );
        assert_eq!(
            h.failed(2, "n2", "u", &"refused", ms(30_000)),
            Some("unreachable"),
            "per peer"
        );
        assert_eq!(h.answered(3, "n3", ms(31_000)), Some("reachable again"));
        assert_eq!(h.answered(3, "n3", ms(31_050)), None);
    }
}
