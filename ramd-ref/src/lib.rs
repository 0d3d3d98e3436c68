//! # ramd-ref — the reference RALE daemon and CLI
//!
//! `ramd` runs next to each PostgreSQL server: it feeds observations to the decision core
//! in [`rale::decide`], executes its actions on the local server and on consensus, and
//! serves the REST API. `ramctrl` drives a cluster through that API.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! // What `ramd --config /etc/rale/ramd.toml` does:
//! let path = std::path::PathBuf::from("/etc/rale/ramd.toml");
//! let cfg = ramd_ref::config::NodeConfig::load(&path)?;
//! ramd_ref::daemon::run(cfg, path).await
//! # }
//! ```

// The determinism lints of clippy.toml apply to rale::decide only.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod api;
pub mod backup;
pub mod bench;
pub mod callbacks;
pub mod client;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod fence;
pub mod ha;
pub mod launch;
pub mod snapshot;
pub mod tls;
