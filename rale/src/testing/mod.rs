//! Conformance suites for the seams (feature `testing`), like openraft's `Suite`: an
//! implementer runs them against their own backend.
//!
//! - [`consensus::run_suite`]: the [`crate::Consensus`] contract (linearizable propose and
//!   read, compare-and-set outcomes, `propose_visible`, `subscribe`, membership refusals,
//!   `NoMajority` instead of blocking on a minority, state kept across a restart);
//! - [`postgres::run_suite`]: the [`crate::PostgresControl`] contract (status of stopped,
//!   primary and standby servers, bootstrap, start and stop, parameters, clone, follow,
//!   promote, rewind, clear refusals).
//!
//! The crate runs them in CI against [`crate::MemConsensus`], the openraft implementation
//! (three members on loopback), the etcd implementation (on a real three-member etcd
//! started by [`etcd_server::EtcdServers`]), [`crate::pg::memory::MemPostgres`] and
//! `LocalPostgres` on real PostgreSQL.

pub mod consensus;
pub mod etcd_server;
pub mod postgres;
