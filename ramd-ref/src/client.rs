//! An async client of the agent API, over the same types as the server
//! ([`crate::api::types`]). Used by `ramctrl`; usable from integrators' tools.
//!
//! Requests go to each configured agent URL in turn until one answers: a connection
//! failure (or, for reads only, a 503 from an agent cut off from the majority) moves on to
//! the next URL; an HTTP answer from an agent is final for state-changing requests, so an
//! operation is never proposed twice.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ramd_ref::client::Error> {
//! use ramd_ref::client::{Client, ClientConfig};
//! let client = Client::new(ClientConfig {
//!     urls: vec!["http://127.0.0.1:8008".into(), "http://127.0.0.1:8009".into()],
//!     ..ClientConfig::default()
//! })?;
//! let cluster = client.cluster().await?;
//! println!("{} members", cluster.members.len());
//! # Ok(()) }
//! ```

use std::time::Duration;

use reqwest::{Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::types::*;
use crate::config::Password;

/// Errors of the client.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No agent answered; the message lists each URL tried and why it failed.
    #[error("no agent reachable: {0}")]
    Unreachable(String),
    /// The agent answered with an error status (refused, invalid, conflict, …).
    #[error("{message} (HTTP {status})")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The agent's `error` text.
        message: String,
    },
    /// The client was set up wrongly (bad URL, unreadable CA file, …).
    #[error("client setup: {0}")]
    Setup(String),
    /// The agent answered something that does not parse.
    #[error("unexpected answer from {url}: {message}")]
    Protocol {
        /// The agent.
        url: String,
        /// What was wrong.
        message: String,
    },
}

/// Result alias of the client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to reach the agents.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Agent base URLs, tried in order (e.g. `http://10.0.0.1:8008`).
    pub urls: Vec<String>,
    /// HTTP Basic user name (sent only with a password).
    pub username: String,
    /// HTTP Basic password.
    pub password: Option<Password>,
    /// PEM of a CA to trust for `https://` agents, in addition to the system roots.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// Bound on each request (connect and answer).
    pub request_timeout: Duration,
    /// Bound on connecting to one agent before trying the next.
    pub connect_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            urls: vec!["http://127.0.0.1:8008".into()],
            username: "rale".into(),
            password: None,
            ca_cert_pem: None,
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// An answer: status, headers, body and the agent that gave it.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// Headers.
    pub headers: header::HeaderMap,
    /// Body.
    pub body: Vec<u8>,
    /// The agent's base URL.
    pub url: String,
}

impl Answer {
    fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Protocol {
            url: self.url.clone(),
            message: format!(
                "{e}: {}",
                String::from_utf8_lossy(&self.body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ),
        })
    }

    fn into_result(self) -> Result<Self> {
        if self.status.is_success() {
            return Ok(self);
        }
        let message = serde_json::from_slice::<ErrorBody>(&self.body)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&self.body).trim().to_owned());
        let message = if message.is_empty() {
            self.status.canonical_reason().unwrap_or("error").to_owned()
        } else {
            message
        };
        Err(Error::Refused {
            status: self.status.as_u16(),
            message,
        })
    }

    /// The configuration version of a `/config` answer (its `ETag`).
    pub fn config_version(&self) -> Option<u64> {
        self.headers
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim_matches('"').parse().ok())
    }
}

/// The agent API client.
#[derive(Clone, Debug)]
pub struct Client {
    urls: Vec<String>,
    http: reqwest::Client,
    username: String,
    password: Option<Password>,
}

impl Client {
    /// A client for the given agents.
    pub fn new(config: ClientConfig) -> Result<Self> {
        let urls: Vec<String> = config
            .urls
            .iter()
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return Err(Error::Setup("no agent URL given".into()));
        }
        for u in &urls {
            let parsed =
                reqwest::Url::parse(u).map_err(|e| Error::Setup(format!("URL {u:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(Error::Setup(format!("URL {u:?}: use http:// or https://")));
            }
        }
        let mut builder = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout);
        if let Some(pem) = &config.ca_cert_pem {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| Error::Setup(format!("CA certificate: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| Error::Setup(format!("HTTP client: {e}")))?;
        Ok(Self {
            urls,
            http,
            username: config.username,
            password: config.password,
        })
    }

    /// The configured agent URLs.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    async fn send_one(
        &self,
        base: &str,
        method: &Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(header::HeaderName, String)],
    ) -> std::result::Result<Answer, String> {
        let mut req = self.http.request(method.clone(), format!("{base}{path}"));
        if let Some(p) = &self.password {
            req = req.basic_auth(&self.username, Some(p.expose()));
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        Ok(Answer {
            status,
            headers,
            body: bytes.to_vec(),
            url: base.to_owned(),
        })
    }

    /// Sends a request to the first agent that answers. Reads also skip agents answering
    /// 503 (cut off from the majority); writes stop at the first HTTP answer.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(header::HeaderName, String)],
    ) -> Result<Answer> {
        let read = method == Method::GET;
        let mut failures = Vec::new();
        let mut last_unavailable = None;
        for base in &self.urls {
            match self.send_one(base, &method, path, body, headers).await {
                Ok(a) if read && a.status == StatusCode::SERVICE_UNAVAILABLE => {
                    failures.push(format!("{base}: answered 503"));
                    last_unavailable = Some(a);
                }
                Ok(a) => return Ok(a),
                Err(e) => failures.push(format!("{base}: {e}")),
            }
        }
        match last_unavailable {
            Some(a) => Ok(a),
            None => Err(Error::Unreachable(failures.join("; "))),
        }
    }

    /// Sends a request to one given agent only (node-local actions).
    pub async fn request_to(
        &self,
        base_url: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer> {
        let base = base_url.trim_end_matches('/');
        self.send_one(base, &method, path, body, &[])
            .await
            .map_err(|e| Error::Unreachable(format!("{base}: {e}")))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.request(Method::GET, path, None, &[])
            .await?
            .into_result()?
            .json()
    }

    async fn post<B: Serialize>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<(u16, ActionResponse)> {
        let value = body
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| Error::Setup(format!("request body: {e}")))?;
        let a = self
            .request(Method::POST, path, value.as_ref(), &[])
            .await?
            .into_result()?;
        Ok((a.status.as_u16(), a.json()?))
    }

    /// `GET /cluster` (Patroni's shape).
    pub async fn cluster(&self) -> Result<PatroniCluster> {
        self.get("/cluster").await
    }

    /// `GET /api/v1/cluster/status`.
    pub async fn cluster_status(&self) -> Result<ClusterStatus> {
        self.get("/api/v1/cluster/status").await
    }

    /// `GET /api/v1/cluster/status` of the agent at `url` (on the primary's agent it
    /// carries the primary's replication slots).
    pub async fn cluster_status_at(&self, url: &str) -> Result<ClusterStatus> {
        self.call(Some(url), Method::GET, "/api/v1/cluster/status", None)
            .await
    }

    /// `GET /api/v1/history`.
    pub async fn history(&self) -> Result<Vec<HistoryEntryView>> {
        self.get("/api/v1/history").await
    }

    /// `GET /patroni` of the first agent that answers.
    pub async fn node_status(&self) -> Result<NodeStatus> {
        self.get("/patroni").await
    }

    /// `GET /patroni` of the agent at `url` (that member's own view, not the first
    /// agent's).
    pub async fn node_status_at(&self, url: &str) -> Result<NodeStatus> {
        self.call(Some(url), Method::GET, "/patroni", None).await
    }

    /// `POST /switchover`; the status is 200 when done, 202 when scheduled.
    pub async fn switchover(&self, req: &SwitchoverRequest) -> Result<(u16, ActionResponse)> {
        self.post("/switchover", Some(req)).await
    }

    /// `POST /failover`.
    pub async fn failover(&self, req: &SwitchoverRequest) -> Result<(u16, ActionResponse)> {
        self.post("/failover", Some(req)).await
    }

    /// `DELETE /switchover`.
    pub async fn cancel_switchover(&self) -> Result<ActionResponse> {
        self.request(Method::DELETE, "/switchover", None, &[])
            .await?
            .into_result()?
            .json()
    }

    /// `POST /api/v1/pause`.
    pub async fn pause(&self) -> Result<ActionResponse> {
        Ok(self.post::<Value>("/api/v1/pause", None).await?.1)
    }

    /// `POST /api/v1/resume`.
    pub async fn resume(&self) -> Result<ActionResponse> {
        Ok(self.post::<Value>("/api/v1/resume", None).await?.1)
    }

    /// `GET /config`: the configuration and its version.
    pub async fn config(&self) -> Result<(Value, Option<u64>)> {
        let a = self
            .request(Method::GET, "/config", None, &[])
            .await?
            .into_result()?;
        Ok((a.json()?, a.config_version()))
    }

    async fn write_config(
        &self,
        method: Method,
        body: &Value,
        version: Option<u64>,
    ) -> Result<(Value, Option<u64>)> {
        let headers: Vec<(header::HeaderName, String)> = version
            .map(|v| vec![(header::IF_MATCH, format!("\"{v}\""))])
            .unwrap_or_default();
        let a = self
            .request(method, "/config", Some(body), &headers)
            .await?
            .into_result()?;
        Ok((a.json()?, a.config_version()))
    }

    /// `PUT /config`, only if the version is still `version` (when given).
    pub async fn put_config(
        &self,
        config: &Value,
        version: Option<u64>,
    ) -> Result<(Value, Option<u64>)> {
        self.write_config(Method::PUT, config, version).await
    }

    /// `PATCH /config` (JSON merge patch), only if the version is still `version`.
    pub async fn patch_config(
        &self,
        patch: &Value,
        version: Option<u64>,
    ) -> Result<(Value, Option<u64>)> {
        self.write_config(Method::PATCH, patch, version).await
    }

    /// `POST /restart` on the agent at `api_url`.
    pub async fn restart(
        &self,
        api_url: &str,
        req: &RestartRequest,
    ) -> Result<(u16, ActionResponse)> {
        self.node_action(api_url, "/restart", serde_json::to_value(req).ok())
            .await
    }

    /// `DELETE /restart` on the agent at `api_url`: cancel its scheduled restart.
    pub async fn cancel_restart(&self, api_url: &str) -> Result<(u16, ActionResponse)> {
        let a = self
            .request_to(api_url, Method::DELETE, "/restart", None)
            .await?
            .into_result()?;
        Ok((a.status.as_u16(), a.json()?))
    }

    /// `POST /reinitialize` on the agent at `api_url`.
    pub async fn reinitialize(
        &self,
        api_url: &str,
        req: &ReinitializeRequest,
    ) -> Result<(u16, ActionResponse)> {
        self.node_action(api_url, "/reinitialize", serde_json::to_value(req).ok())
            .await
    }

    /// `POST /reload` on the agent at `api_url`.
    pub async fn reload(&self, api_url: &str) -> Result<(u16, ActionResponse)> {
        self.node_action(api_url, "/reload", None).await
    }

    /// Sends `body` with `method` to `path` (at `at`, a member's base URL, when given;
    /// else the first agent that answers) and reads the JSON answer.
    async fn call<T: DeserializeOwned>(
        &self,
        at: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T> {
        let a = match at {
            Some(url) => self.request_to(url, method, path, body.as_ref()).await?,
            None => self.request(method, path, body.as_ref(), &[]).await?,
        };
        a.into_result()?.json()
    }

    fn body<B: Serialize>(b: &B) -> Result<Value> {
        serde_json::to_value(b).map_err(|e| Error::Setup(format!("request body: {e}")))
    }

    /// `POST /api/v1/parameter/validate`.
    pub async fn params_validate(
        &self,
        req: &ParameterValidateRequest,
    ) -> Result<rale_params::api::ValidateResponse> {
        let body = Self::body(req)?;
        self.call(None, Method::POST, "/api/v1/parameter/validate", Some(body))
            .await
    }

    /// `GET /api/v1/parameter/list` (`query`: e.g. `context=postmaster&version=16`).
    pub async fn params_list(&self, query: &str) -> Result<rale_params::api::ListResponse> {
        self.get(&format!("/api/v1/parameter/list?{query}")).await
    }

    /// `GET /api/v1/parameter/info/{name}` (`version`: the cluster's when `None`).
    pub async fn params_info(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<rale_params::api::InfoResponse> {
        let q = version.map(|v| format!("?version={v}")).unwrap_or_default();
        self.get(&format!("/api/v1/parameter/info/{name}{q}")).await
    }

    /// `POST /api/v1/parameter/optimize` (a `rale_params::OptimizeRequest`, `version`
    /// optional).
    pub async fn params_optimize(&self, req: &Value) -> Result<rale_params::OptimizeResponse> {
        self.call(
            None,
            Method::POST,
            "/api/v1/parameter/optimize",
            Some(req.clone()),
        )
        .await
    }

    /// `POST /api/v1/backup/start` on `at` (or the first agent).
    pub async fn backup_start(
        &self,
        at: Option<&str>,
        req: &rale_backup::api::StartBackupRequest,
    ) -> Result<rale_backup::api::JobAccepted> {
        let body = Self::body(req)?;
        self.call(at, Method::POST, "/api/v1/backup/start", Some(body))
            .await
    }

    /// `POST /api/v1/backup/restore` on `at` (or the first agent).
    pub async fn backup_restore(
        &self,
        at: Option<&str>,
        req: &rale_backup::api::StartRestoreRequest,
    ) -> Result<rale_backup::api::JobAccepted> {
        let body = Self::body(req)?;
        self.call(at, Method::POST, "/api/v1/backup/restore", Some(body))
            .await
    }

    /// `GET /api/v1/backup/list`.
    pub async fn backup_list(
        &self,
        at: Option<&str>,
    ) -> Result<rale_backup::api::ListBackupsResponse> {
        self.call(at, Method::GET, "/api/v1/backup/list", None)
            .await
    }

    /// `GET /api/v1/backup/jobs`.
    pub async fn backup_jobs(&self, at: Option<&str>) -> Result<rale_backup::api::JobsResponse> {
        self.call(at, Method::GET, "/api/v1/backup/jobs", None)
            .await
    }

    /// `GET /api/v1/backup/schedule`.
    pub async fn backup_schedules(
        &self,
        at: Option<&str>,
    ) -> Result<rale_backup::api::ScheduleResponse> {
        self.call(at, Method::GET, "/api/v1/backup/schedule", None)
            .await
    }

    /// `GET /api/v1/backup/status/{id}`.
    pub async fn backup_status(
        &self,
        at: Option<&str>,
        id: &str,
    ) -> Result<rale_backup::api::JobStatusResponse> {
        self.call(
            at,
            Method::GET,
            &format!("/api/v1/backup/status/{id}"),
            None,
        )
        .await
    }

    /// `POST /api/v1/backup/schedule`.
    pub async fn backup_schedule(
        &self,
        at: Option<&str>,
        req: &rale_backup::api::ScheduleRequest,
    ) -> Result<rale_backup::api::ScheduleResponse> {
        let body = Self::body(req)?;
        self.call(at, Method::POST, "/api/v1/backup/schedule", Some(body))
            .await
    }

    /// `GET /api/v1/sync-standbys/status`. Only the primary's agent knows what its
    /// PostgreSQL enforces: when the agent that answered does not (a replica), the
    /// primary's own agent is asked, and its answer is returned if it gives one.
    pub async fn sync_status(&self) -> Result<SyncStandbysStatus> {
        const PATH: &str = "/api/v1/sync-standbys/status";
        let first: SyncStandbysStatus = self.get(PATH).await?;
        if first.enforced_names.is_some() {
            return Ok(first);
        }
        let Ok(status) = self.cluster_status().await else {
            return Ok(first);
        };
        let Some(primary) = status.leader else {
            return Ok(first);
        };
        let Ok(cluster) = self.cluster().await else {
            return Ok(first);
        };
        let Some(url) = cluster
            .members
            .iter()
            .find(|m| m.name == primary)
            .map(|m| m.api_url.trim_end_matches("/patroni").to_owned())
        else {
            return Ok(first);
        };
        match self.request_to(&url, Method::GET, PATH, None).await {
            Ok(a) if a.status.is_success() => match a.json::<SyncStandbysStatus>() {
                Ok(from_primary) if from_primary.enforced_names.is_some() => Ok(from_primary),
                _ => Ok(first),
            },
            _ => Ok(first),
        }
    }

    /// `POST /api/v1/sync-standbys/{action}` (`add`, `remove`, `any-n`, `count`,
    /// `commit-level`) with its body.
    pub async fn sync_change<B: Serialize>(
        &self,
        action: &str,
        req: &B,
    ) -> Result<SyncChangeResponse> {
        let body = Self::body(req)?;
        self.call(
            None,
            Method::POST,
            &format!("/api/v1/sync-standbys/{action}"),
            Some(body),
        )
        .await
    }

    /// `GET /api/v1/members`: the consensus voters and learners.
    pub async fn members(&self) -> Result<crate::api::members::MembersView> {
        self.get("/api/v1/members").await
    }

    /// `POST /api/v1/members`: adds a consensus member (answers once it votes).
    pub async fn add_member(
        &self,
        req: &crate::api::members::AddMemberRequest,
    ) -> Result<ActionResponse> {
        Ok(self.post("/api/v1/members", Some(req)).await?.1)
    }

    /// `DELETE /api/v1/members/{name}`: removes a consensus member (`force`: even though
    /// its agent still reports).
    pub async fn remove_member(&self, name: &str, force: bool) -> Result<ActionResponse> {
        let query = if force { "?force=true" } else { "" };
        self.request(
            Method::DELETE,
            &format!("/api/v1/members/{name}{query}"),
            None,
            &[],
        )
        .await?
        .into_result()?
        .json()
    }

    async fn node_action(
        &self,
        api_url: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, ActionResponse)> {
        let a = self
            .request_to(api_url, Method::POST, path, body.as_ref())
            .await?
            .into_result()?;
        Ok((a.status.as_u16(), a.json()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_urls() {
        let bad = |urls: Vec<&str>| {
            Client::new(ClientConfig {
                urls: urls.into_iter().map(String::from).collect(),
                ..ClientConfig::default()
            })
            .is_err()
        };
        assert!(bad(vec![]));
        assert!(bad(vec!["ftp://x"]));
        assert!(bad(vec!["not a url"]));
        assert!(!bad(vec!["http://127.0.0.1:8008/", "https://db1:8008"]));
    }

    #[tokio::test]
    async fn unreachable_lists_every_agent() {
        let client = Client::new(ClientConfig {
            urls: vec!["http://127.0.0.1:9".into(), "http://127.0.0.1:1".into()],
            connect_timeout: Duration::from_secs(2),
            ..ClientConfig::default()
        })
        .expect("client");
        match client.cluster().await {
            Err(Error::Unreachable(text)) => {
                assert!(
                    text.contains("127.0.0.1:9") && text.contains("127.0.0.1:1"),
                    "{text}"
                );
            }
            other => panic!("expected unreachable, got {other:?}"),
        }
    }
}
