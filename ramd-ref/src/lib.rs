//! # ramd-ref — the reference RALE daemon and CLI
//!
//! This crate is the reference wiring of the library: `ramd` runs next to each PostgreSQL
//! server and assembles an [`rale::agent::Agent`] from its configuration file — Raft
//! consensus ([`rale::consensus::raft`]), the local server ([`rale::pg::local`]), the
//! fence and the history — then serves the REST API beside it. The HA loop itself, its
//! executor, the lease keeper and parameter application live in [`rale::agent`]; the
//! decisions in [`rale::decide`]. `ramctrl` drives a cluster through the API, `ramctrl
//! demo` starts the local playground ([`launch`] is its cluster launcher, shared with the
//! end-to-end fixtures) and `ramd-bench` measures it.
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
pub mod failsafe;
pub mod fence;
pub mod ha;
pub mod launch;
pub mod snapshot;
pub mod tls;
pub mod workload;
