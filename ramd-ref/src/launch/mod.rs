//! Starts a cluster of `ramd` agents on this machine. The playground of `ramctrl demo`
//! ([`crate::demo`], which `ramd-bench` and the end-to-end fixture `RamdCluster` use) and
//! the end-to-end fixture in network namespaces launch theirs here.
//!
//! - A [`ClusterSpec`] says what each node's `ramd.toml` holds ([`loopback_nodes`] picks
//!   free ports on 127.0.0.1).
//! - [`Agents::launch`] writes the files, one directory per node (`<dir>/<name>/` with
//!   `ramd.toml`, `ramd.log`, `state/` and `pgdata/`), and starts one `ramd` per node,
//!   directly or under a wrapper such as `ip netns exec <namespace>`. Each agent runs its
//!   node's PostgreSQL, as the `postgres` OS user when it runs as root: the directories
//!   are then made traversable for that user.
//! - [`Agents::wait_ready`] waits until one node is primary and accepts a write and every
//!   other node streams ([`ReadyProbe`]).
//! - [`Agents::stop`] stops agents by PID: SIGTERM, then SIGKILL after a bound.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use ramd_ref::launch::{Agents, ClusterSpec, ReadyProbe, loopback_nodes};
//!
//! let spec = ClusterSpec {
//!     dir: "/tmp/rale-cluster".into(),
//!     generated_by: "an example".into(),
//!     api_user: "admin".into(),
//!     api_password: "secret".into(),
//!     superuser_password: "su-secret".into(),
//!     replication_password: "repl-secret".into(),
//!     tls: None,
//!     bootstrap_toml: "lease_ttl = \"5s\"".into(),
//!     node_toml: None,
//!     nodes: loopback_nodes(3, "http")?,
//! };
//! let mut agents = Agents::new("target/debug/ramd".into());
//! agents.launch(&spec)?;
//! let probe = ReadyProbe {
//!     http: reqwest::Client::new(),
//!     api_urls: spec.nodes.iter().map(|n| n.api_url.clone()).collect(),
//!     dsns: spec.nodes.iter().map(|n| spec.dsn(n, "127.0.0.1")).collect(),
//!     write_sql: "CREATE TABLE IF NOT EXISTS ready ()".into(),
//! };
//! let members = agents.wait_ready(&probe, Duration::from_secs(120)).await?;
//! println!("{members:?}");
//! agents.stop_all(Duration::from_secs(20));
//! # Ok(()) }
//! ```

mod agents;
mod ready;
mod spec;

pub use agents::Agents;
pub use ready::{Member, ReadyProbe};
pub use spec::{ClusterSpec, NodeSpec, loopback_nodes, node_toml};
