//! Failsafe mode over HTTP: the agents' route `POST /api/v1/failsafe` a primary calls on
//! every other member while consensus does not answer, and the client it calls it with.
//! The rules are in [`rale::decide::failsafe`] and `docs/failsafe.md`.
//!
//! The route is agent-to-agent traffic, like the Raft RPCs: it takes the cluster's shared
//! secret (`Authorization: Bearer <cluster_token>`) when one is configured, and the
//! client sends it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use rale::agent::{FailsafeClient, FailsafeGate, SystemRuntime};
use rale::decide::failsafe::{FailsafeAnswer, FailsafeMember, FailsafeRequest};
use subtle::ConstantTimeEq;

/// The route's path.
pub const PATH: &str = "/api/v1/failsafe";

#[derive(Clone)]
struct RouteState {
    gate: Arc<FailsafeGate>,
    token: Option<String>,
}

/// The failsafe route, to merge into the agent's router: `POST /api/v1/failsafe` with a
/// [`FailsafeRequest`] answers `200` and a [`FailsafeAnswer`] when this member confirms
/// (and promises), `409` with `{"error": reason}` when it does not, `401` without the
/// cluster token (when one is set).
pub fn router(gate: Arc<FailsafeGate>, token: Option<String>) -> Router {
    let state = RouteState { gate, token };
    Router::new()
        .route(PATH, post(confirm))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

async fn authenticate(State(st): State<RouteState>, req: Request, next: Next) -> Response {
    if let Some(token) = &st.token {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        let ok = presented.is_some_and(|p| bool::from(p.ct_eq(token.as_bytes())));
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                Json(serde_json::json!({"error": "the cluster token is required"})),
            )
                .into_response();
        }
    }
    next.run(req).await
}

async fn confirm(State(st): State<RouteState>, Json(req): Json<FailsafeRequest>) -> Response {
    match st.gate.confirm_at(&req, SystemRuntime::monotonic_now()) {
        Ok(answer) => (StatusCode::OK, Json(answer)).into_response(),
        Err(why) => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({"error": why})),
        )
            .into_response(),
    }
}

/// Calls other members' failsafe route.
#[derive(Clone)]
pub struct HttpFailsafeClient {
    http: reqwest::Client,
    token: Option<String>,
}

impl HttpFailsafeClient {
    /// A client sending `token` (if any) and trusting the CA bundle `tls_ca` (if any) for
    /// `https://` members; each request gives up after `timeout`.
    pub fn new(
        token: Option<String>,
        tls_ca: Option<&std::path::Path>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .tcp_nodelay(true);
        if let Some(path) = tls_ca {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading tls_ca {}", path.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("tls_ca {}: not a PEM bundle", path.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Self {
            http: builder
                .build()
                .context("building the failsafe HTTP client")?,
            token,
        })
    }
}

#[async_trait]
impl FailsafeClient for HttpFailsafeClient {
    async fn confirm(
        &self,
        member: &FailsafeMember,
        request: &FailsafeRequest,
    ) -> Result<FailsafeAnswer, String> {
        let url = format!("{}{PATH}", member.api_url.trim_end_matches('/'));
        let mut req = self.http.post(&url).json(request);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        if status.is_success() {
            return resp
                .json::<FailsafeAnswer>()
                .await
                .map_err(|e| format!("{url}: unreadable answer: {e}"));
        }
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let why = body
            .get("error")
            .and_then(|v| v.as_str())
            .unwrap_or("no reason given");
        Err(format!("HTTP {status}: {why}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rale::{Epoch, NodeId};

    fn request(primary: &str) -> FailsafeRequest {
        FailsafeRequest {
            primary: NodeId::new(primary).expect("valid"),
            epoch: Epoch(2),
            ttl_ms: 1500,
        }
    }

    /// The route and the client against each other on loopback: a member that has not
    /// read the cluster state refuses with the reason; a wrong token is refused.
    #[tokio::test]
    async fn the_route_answers_the_client_with_the_gate_and_checks_the_token() {
        let gate = Arc::new(FailsafeGate::default());
        let app = router(gate.clone(), Some("secret".into()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let member = FailsafeMember {
            node: NodeId::new("node2").expect("valid"),
            api_url: format!("http://{addr}"),
        };
        let client = HttpFailsafeClient::new(Some("secret".into()), None, Duration::from_secs(5))
            .expect("client");
        let e = client
            .confirm(&member, &request("node1"))
            .await
            .expect_err("nothing observed yet");
        assert!(e.contains("409") && e.contains("not observed"), "{e}");
        let wrong = HttpFailsafeClient::new(Some("nope".into()), None, Duration::from_secs(5))
            .expect("client");
        let e = wrong
            .confirm(&member, &request("node1"))
            .await
            .expect_err("wrong token");
        assert!(e.contains("401"), "{e}");
        assert!(gate.promise().is_none());
        server.abort();
    }
}
