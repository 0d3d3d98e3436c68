//! When a launched cluster is ready: one node is primary and accepts a write, every other
//! node streams.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

/// A member as a node's `GET /cluster` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Member name.
    pub name: String,
    /// `primary`, `replica` (synchronous and quorum standbys included) or what the API
    /// said.
    pub role: String,
    /// Its state, e.g. `streaming`.
    pub state: String,
}

/// How [`Agents::wait_ready`](super::Agents::wait_ready) reaches the nodes, in node order.
#[derive(Clone, Debug)]
pub struct ReadyProbe {
    /// Client for the agents' APIs.
    pub http: reqwest::Client,
    /// Each node's API URL as the launcher reaches it.
    pub api_urls: Vec<String>,
    /// Each node's libpq connection string as the launcher reaches it.
    pub dsns: Vec<String>,
    /// What the primary must accept to count as writable.
    pub write_sql: String,
}

impl ReadyProbe {
    /// The members from the first node whose `GET /cluster` lists every node.
    pub(super) async fn members(&self) -> Result<Vec<Member>> {
        let n = self.api_urls.len();
        let mut last = None;
        for url in &self.api_urls {
            let answer = match self.http.get(format!("{url}/cluster")).send().await {
                Ok(resp) => resp.json::<Value>().await,
                Err(e) => Err(e),
            };
            let members = match answer {
                Ok(v) => v
                    .get("members")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                Err(e) => {
                    last = Some(anyhow::Error::from(e).context(format!("GET {url}/cluster")));
                    continue;
                }
            };
            if members.len() < n {
                last = Some(anyhow::anyhow!("{} of {n} members known", members.len()));
                continue;
            }
            return Ok(members.iter().map(member).collect());
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no node")))
    }

    /// Runs [`Self::write_sql`] on node `i`, `name` (bounded).
    pub(super) async fn write(&self, i: usize, name: &str) -> Result<()> {
        let dsn = format!("{} connect_timeout=2", self.dsns.get(i).context("no DSN")?);
        let (client, conn) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_postgres::connect(&dsn, tokio_postgres::NoTls),
        )
        .await
        .with_context(|| format!("connecting to {name} timed out"))??;
        let task = tokio::spawn(conn);
        let done = tokio::time::timeout(
            Duration::from_secs(10),
            client.batch_execute(&self.write_sql),
        )
        .await;
        drop(client);
        task.abort();
        done.with_context(|| format!("{name}: write timed out"))??;
        Ok(())
    }
}

/// A member of `GET /cluster`, with Patroni's role names folded into `primary` and
/// `replica`.
fn member(m: &Value) -> Member {
    let s = |k: &str| {
        m.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let role = match s("role").as_str() {
        "leader" | "primary" | "master" => "primary".to_string(),
        "replica" | "sync_standby" | "quorum_standby" => "replica".to_string(),
        other => other.to_string(),
    };
    Member {
        name: s("name"),
        role,
        state: s("state"),
    }
}
