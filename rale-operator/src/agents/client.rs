//! HTTP calls to the agents' REST API (`reqwest`): `GET /cluster`, `/api/v1/members`,
//! `/config`, `PATCH /config`, `POST /switchover`, `POST`/`DELETE /api/v1/members`.

use std::time::Duration;

use super::{ClusterView, MembersView};
use crate::{Error, Result};

/// Test seam: maps an agent's base URL (`http://pg-0.pg-agents.db.svc:8008`) to the URL
/// actually called.
pub type AgentRoute = std::sync::Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Calls to the agents' REST API.
#[derive(Clone)]
pub struct AgentClient {
    http: reqwest::Client,
    username: String,
    password: String,
    route: Option<AgentRoute>,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("username", &self.username)
            .field("routed", &self.route.is_some())
            .finish_non_exhaustive()
    }
}

impl AgentClient {
    /// A client authenticating as `username`; `ca_pem`: the private CA of the agents'
    /// certificates, when they use TLS.
    pub fn new(username: String, password: String, ca_pem: Option<&[u8]>) -> Result<Self> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5));
        if let Some(pem) = ca_pem {
            let cert = reqwest::Certificate::from_pem(pem).map_err(|e| Error::Agent {
                agent: "-".into(),
                message: format!("CA certificate: {e}"),
            })?;
            b = b.add_root_certificate(cert);
        }
        let http = b.build().map_err(|e| Error::Agent {
            agent: "-".into(),
            message: e.to_string(),
        })?;
        Ok(AgentClient {
            http,
            username,
            password,
            route: None,
        })
    }

    /// Sends the requests for an agent to `route(base URL)` instead: for tests whose
    /// agents are not reachable by their cluster DNS names.
    pub fn with_route(mut self, route: Option<AgentRoute>) -> Self {
        self.route = route;
        self
    }

    /// `route` sending agent `scheme://host:port` to `<prefix>/host:port` (one local
    /// server standing in for every agent).
    pub fn prefix_route(prefix: String) -> AgentRoute {
        std::sync::Arc::new(move |url: &str| {
            let host = url.split_once("://").map_or(url, |(_, rest)| rest);
            format!("{prefix}/{host}")
        })
    }

    fn at(&self, url: &str, path: &str) -> String {
        match &self.route {
            Some(route) => format!("{}{path}", route(url)),
            None => format!("{url}{path}"),
        }
    }

    fn err(agent: &str, e: impl std::fmt::Display) -> Error {
        Error::Agent {
            agent: agent.to_string(),
            message: e.to_string(),
        }
    }

    /// `GET /cluster` from the first of `urls` that answers.
    pub async fn cluster(&self, urls: &[String]) -> Result<ClusterView> {
        let mut last = Error::Agent {
            agent: "-".into(),
            message: "no member to ask".into(),
        };
        for url in urls {
            let res = self
                .http
                .get(self.at(url, "/cluster"))
                .basic_auth(&self.username, Some(&self.password))
                .send()
                .await;
            match res {
                Ok(r) if r.status().is_success() => match r.json::<ClusterView>().await {
                    Ok(v) => return Ok(v),
                    Err(e) => last = Self::err(url, e),
                },
                Ok(r) => last = Self::err(url, format!("GET /cluster: {}", r.status())),
                Err(e) => last = Self::err(url, e),
            }
        }
        Err(last)
    }

    /// `POST /switchover` to the agent at `url`: from `leader` to `candidate`.
    pub async fn switchover(&self, url: &str, leader: &str, candidate: &str) -> Result<()> {
        let r = self
            .http
            .post(self.at(url, "/switchover"))
            .basic_auth(&self.username, Some(&self.password))
            .json(&serde_json::json!({"leader": leader, "candidate": candidate}))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| Self::err(url, e))?;
        if r.status().is_success() {
            Ok(())
        } else {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            Err(Self::err(
                url,
                format!("POST /switchover: {status}: {body}"),
            ))
        }
    }

    /// `PATCH /config` with the cluster-wide PostgreSQL parameters and synchronous
    /// settings (JSON merge: a `null` resets a key).
    pub async fn patch_config(&self, url: &str, patch: &serde_json::Value) -> Result<()> {
        let r = self
            .http
            .patch(self.at(url, "/config"))
            .basic_auth(&self.username, Some(&self.password))
            .json(patch)
            .send()
            .await
            .map_err(|e| Self::err(url, e))?;
        if r.status().is_success() {
            Ok(())
        } else {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            Err(Self::err(url, format!("PATCH /config: {status}: {body}")))
        }
    }

    /// `GET /api/v1/members` from the first of `urls` that answers.
    pub async fn members(&self, urls: &[String]) -> Result<MembersView> {
        let mut last = Self::err("-", "no member to ask");
        for url in urls {
            let res = self
                .http
                .get(self.at(url, "/api/v1/members"))
                .basic_auth(&self.username, Some(&self.password))
                .send()
                .await;
            match res {
                Ok(r) if r.status().is_success() => match r.json::<MembersView>().await {
                    Ok(v) => return Ok(v),
                    Err(e) => last = Self::err(url, e),
                },
                Ok(r) => last = Self::err(url, format!("GET /api/v1/members: {}", r.status())),
                Err(e) => last = Self::err(url, e),
            }
        }
        Err(last)
    }

    /// `POST /api/v1/members` to the agent at `url`.
    pub async fn add_member(
        &self,
        url: &str,
        name: &str,
        raft_id: u64,
        api_url: &str,
    ) -> Result<()> {
        let r = self
            .http
            .post(self.at(url, "/api/v1/members"))
            .basic_auth(&self.username, Some(&self.password))
            .json(&serde_json::json!({"name": name, "raft_id": raft_id, "api_url": api_url}))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| Self::err(url, e))?;
        Self::ok(url, "POST /api/v1/members", r).await
    }

    /// `DELETE /api/v1/members/NAME` to the agent at `url`.
    pub async fn remove_member(&self, url: &str, name: &str) -> Result<()> {
        let r = self
            .http
            .delete(self.at(url, &format!("/api/v1/members/{name}")))
            .basic_auth(&self.username, Some(&self.password))
            .send()
            .await
            .map_err(|e| Self::err(url, e))?;
        Self::ok(url, "DELETE /api/v1/members", r).await
    }

    async fn ok(url: &str, what: &str, r: reqwest::Response) -> Result<()> {
        if r.status().is_success() {
            return Ok(());
        }
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        Err(Self::err(url, format!("{what}: {status}: {body}")))
    }

    /// `GET /config` (the cluster-wide dynamic configuration).
    pub async fn config(&self, url: &str) -> Result<serde_json::Value> {
        let r = self
            .http
            .get(self.at(url, "/config"))
            .basic_auth(&self.username, Some(&self.password))
            .send()
            .await
            .map_err(|e| Self::err(url, e))?;
        if !r.status().is_success() {
            return Err(Self::err(url, format!("GET /config: {}", r.status())));
        }
        r.json().await.map_err(|e| Self::err(url, e))
    }
}
