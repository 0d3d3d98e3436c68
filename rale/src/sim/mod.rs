//! # Deterministic simulation of a RALE cluster under faults
//!
//! `rale::sim` runs any [`Policy`](crate::decide::Policy) — the default [`Decider`](crate::decide::Decider) or
//! an integrator's own — on every node of a simulated cluster and attacks it with
//! faults, checking after every step of virtual time that:
//!
//! - **I1** no two nodes can acknowledge writes at the same instant (split brain);
//! - **I2** no acknowledged write is lost (synchronous modes; asynchronous losses are
//!   reported and bounded by `maximum_lag_on_failover`);
//! - **I3** after everything heals there is exactly one primary and every replica
//!   streams from it;
//! - **I4** no `nofailover` node is promoted, and no node further behind than
//!   `maximum_lag_on_failover` is promoted by failover.
//!
//! Each node runs the agent that ships ([`crate::agent::Agent`]: the HA loop, its
//! executor and the lease keeper), polled on the virtual clock against simulated
//! consensus and PostgreSQL — what the property tests check is the code `ramd` runs.
//!
//! Everything is deterministic from the [`Schedule`]'s seed: virtual time, drifting
//! per-node clocks, a simulated PostgreSQL whose WAL is a list of records, simulated
//! majority consensus applying commands with [`ClusterState::apply`](crate::ClusterState::apply),
//! and a client that writes to every primary it reaches. See `docs/simulation.md`.
//!
//! ## Running the harness against your own policy
//!
//! ```
//! use rale::decide::{Decider, Decision, Observation, Policy};
//! use rale::sim::{Fault, Schedule, Sim, SimConfig, Target};
//! use rale::DynamicConfig;
//!
//! /// An integrator's policy: here the default decider, wrapped to log its decisions.
//! struct Mine(Decider);
//! impl Policy for Mine {
//!     fn step(&mut self, obs: &Observation<'_>) -> Decision {
//!         self.0.step(obs)
//!     }
//! }
//!
//! let mut cfg = SimConfig::new(3, DynamicConfig::default());
//! cfg.liveness_bound_ms = 12_000;
//! // Two seconds after the warm-up, the primary's host dies for three seconds.
//! let schedule = Schedule::new(42).at(2_000, Fault::CrashNode { target: Target::Primary, down_ms: 3_000 });
//! let sim = Sim::new(cfg, schedule, Box::new(|me, now| Box::new(Mine(Decider::new(me, now)))))?;
//! let report = sim.run();
//! assert!(report.ok(), "{}", report.explain(200));
//! assert!(report.failovers >= 1);
//! # Ok::<(), rale::Error>(())
//! ```
//!
//! For property tests, `strategy::schedule` (feature `proptest`) generates schedules that shrink to a
//! minimal failing one; a failing run's [`Report::explain`] prints the schedule as JSON
//! (replay it with [`Schedule::from_json`]) and a step-by-step trace.

mod check;
mod config;
mod consensus;
mod executor;
mod fault;
mod mode;
mod network;
mod port;
mod postgres;
mod replication;
#[cfg(feature = "proptest")]
pub mod strategy;
mod trace;
mod world;

pub use check::{AckedWrite, AsyncLoss, Invariant, Report, Violation};
pub use config::{ActionTimes, SimConfig, SimNode, Span};
pub use consensus::{Pending, SimConsensus};
pub use fault::{Fault, FaultMix, Schedule, ScheduledFault, Target};
pub use mode::Mode;
pub use network::Network;
pub use postgres::{RecordKind, SimPostgres, Wal, WalRecord};
pub use trace::{Trace, TraceEvent, TraceKind};
pub use world::{PolicyFactory, Sim, decider_factory};
