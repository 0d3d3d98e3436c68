//! An in-memory [`PostgresControl`]: servers that live in a shared [`MemPostgresWorld`],
//! for tests, examples and the conformance suite. It models what the decision core
//! observes — data directory, running, role, timeline, WAL position, upstream,
//! streaming, `synchronous_standby_names` — not SQL.
//!
//! ```
//! # async fn demo() -> rale::Result<()> {
//! use rale::pg::memory::MemPostgresWorld;
//! use rale::PostgresControl;
//! let world = MemPostgresWorld::default();
//! let a = world.server("a")?;
//! a.bootstrap(&Default::default()).await?;
//! assert!(a.status().await?.running);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{ApplyReport, PostgresControl, StopMode, Upstream};
use crate::status::{DataDirState, PgStatus, ReplicaConnection};
use crate::types::{Lsn, NodeId, Timeline};
use crate::{Error, Result};

/// `server_version_num` the in-memory servers report.
const VERSION_NUM: u32 = 150_000;

/// One server's state.
#[derive(Clone, Debug, Default)]
struct Server {
    system_id: Option<u64>,
    running: bool,
    standby: bool,
    upstream: Option<NodeId>,
    /// The WAL: `(timeline, end)` segments, oldest first; the last one is current.
    history: Vec<(Timeline, Lsn)>,
    parameters: BTreeMap<String, String>,
    slots: Vec<String>,
}

impl Server {
    fn position(&self) -> (Timeline, Lsn) {
        self.history
            .last()
            .copied()
            .unwrap_or((Timeline(0), Lsn::ZERO))
    }

    /// Whether this server's history is a prefix of `other`'s (it can follow it).
    fn is_prefix_of(&self, other: &Server) -> bool {
        let (tl, end) = self.position();
        other.history.iter().any(|(t, e)| *t == tl && *e >= end)
            || other
                .history
                .windows(2)
                .any(|w| w[0].0 == tl && w[0].1 >= end)
    }
}

/// The shared world the in-memory servers live in: one lock, so that replication and
/// operations see consistent states.
#[derive(Clone, Default)]
pub struct MemPostgresWorld {
    servers: Arc<Mutex<BTreeMap<NodeId, Server>>>,
    next_system_id: Arc<Mutex<u64>>,
}

impl MemPostgresWorld {
    /// The server `name` (created empty and stopped on first use).
    pub fn server(&self, name: &str) -> Result<MemPostgres> {
        let node = NodeId::new(name)?;
        self.lock()?.entry(node.clone()).or_default();
        Ok(MemPostgres {
            world: self.clone(),
            node,
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<NodeId, Server>>> {
        self.servers
            .lock()
            .map_err(|_| Error::pg("memory", "the world's lock is poisoned"))
    }

    /// Writes `bytes` of WAL on the primary `name` (a client committing).
    pub fn write(&self, name: &str, bytes: u64) -> Result<Lsn> {
        let node = NodeId::new(name)?;
        let mut servers = self.lock()?;
        let s = servers
            .get_mut(&node)
            .ok_or_else(|| Error::pg("write", format!("no server {name}")))?;
        if !s.running || s.standby {
            return Err(Error::pg(
                "write",
                format!("{name} is not a running primary"),
            ));
        }
        let last = s
            .history
            .last_mut()
            .expect("a running server has a history");
        last.1 = Lsn(last.1.0 + bytes);
        Ok(last.1)
    }

    /// One step of streaming replication: every running standby whose upstream runs and
    /// whose history is a prefix of the upstream's catches up with it.
    pub fn replicate(&self) -> Result<()> {
        let mut servers = self.lock()?;
        let snapshot = servers.clone();
        for s in servers.values_mut() {
            let Some(up) = s.upstream.as_ref().and_then(|u| snapshot.get(u)) else {
                continue;
            };
            if s.running
                && s.standby
                && up.running
                && up.system_id == s.system_id
                && s.is_prefix_of(up)
            {
                s.history = up.history.clone();
            }
        }
        Ok(())
    }
}

/// One in-memory server (see the module documentation).
#[derive(Clone)]
pub struct MemPostgres {
    world: MemPostgresWorld,
    node: NodeId,
}

impl MemPostgres {
    /// The server's name.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<NodeId, Server>, &NodeId) -> Result<T>,
    ) -> Result<T> {
        let mut servers = self.world.lock()?;
        f(&mut servers, &self.node)
    }
}

fn me<'a>(servers: &'a mut BTreeMap<NodeId, Server>, node: &NodeId) -> Result<&'a mut Server> {
    servers
        .get_mut(node)
        .ok_or_else(|| Error::pg("memory", format!("no server {node}")))
}

#[async_trait]
impl PostgresControl for MemPostgres {
    async fn status(&self) -> Result<PgStatus> {
        self.with(|servers, node| {
            let snapshot = servers.clone();
            let s = me(servers, node)?;
            let data = match s.system_id {
                Some(system_id) => DataDirState::Initialized { system_id },
                None => DataDirState::Empty,
            };
            if !s.running {
                return Ok(PgStatus::stopped(data));
            }
            let (timeline, lsn) = s.position();
            let streaming = s.standby
                && s.upstream
                    .as_ref()
                    .and_then(|u| snapshot.get(u))
                    .is_some_and(|up| {
                        up.running && up.system_id == s.system_id && s.is_prefix_of(up)
                    });
            let replicas = if s.standby {
                Vec::new()
            } else {
                snapshot
                    .iter()
                    .filter(|(n, r)| {
                        *n != node
                            && r.running
                            && r.standby
                            && r.upstream.as_ref() == Some(node)
                            && r.system_id == s.system_id
                            && r.is_prefix_of(s)
                    })
                    .map(|(n, r)| {
                        let at = r.position().1;
                        ReplicaConnection {
                            application_name: n.to_string(),
                            state: "streaming".into(),
                            sync_state: "async".into(),
                            write_lsn: Some(at),
                            flush_lsn: Some(at),
                            replay_lsn: Some(at),
                        }
                    })
                    .collect()
            };
            Ok(PgStatus {
                data,
                running: true,
                reachable: true,
                in_recovery: s.standby,
                timeline,
                write_lsn: lsn,
                receive_lsn: s.standby.then_some(lsn),
                replay_lsn: s.standby.then_some(lsn),
                streaming,
                upstream: if s.standby { s.upstream.clone() } else { None },
                replicas,
                synchronous_standby_names: s
                    .parameters
                    .get("synchronous_standby_names")
                    .cloned()
                    .unwrap_or_default(),
                pending_restart: false,
                server_version_num: VERSION_NUM,
                logical_slots: Vec::new(),
                hot_standby_feedback: true,
            })
        })
    }

    async fn bootstrap(&self, parameters: &BTreeMap<String, String>) -> Result<u64> {
        let id = {
            let mut next = self
                .world
                .next_system_id
                .lock()
                .map_err(|_| Error::pg("bootstrap", "lock poisoned"))?;
            *next += 1;
            7_000_000_000_000_000_000 + *next
        };
        self.with(|servers, node| {
            let s = me(servers, node)?;
            if s.system_id.is_some() {
                return Err(Error::pg(
                    "bootstrap",
                    format!("{node}: data directory is not empty"),
                ));
            }
            *s = Server {
                system_id: Some(id),
                running: true,
                standby: false,
                upstream: None,
                history: vec![(Timeline(1), Lsn(0x0100_0000))],
                parameters: parameters.clone(),
                slots: Vec::new(),
            };
            Ok(id)
        })
    }

    async fn start(&self, upstream: Option<&Upstream>) -> Result<()> {
        self.with(|servers, node| {
            let s = me(servers, node)?;
            if s.system_id.is_none() {
                return Err(Error::pg(
                    "start",
                    format!("{node}: data directory is not initialised"),
                ));
            }
            if let Some(u) = upstream {
                s.standby = true;
                s.upstream = Some(u.node.clone());
            }
            s.running = true;
            Ok(())
        })
    }

    async fn stop(&self, _mode: StopMode) -> Result<()> {
        self.with(|servers, node| {
            me(servers, node)?.running = false;
            Ok(())
        })
    }

    async fn restart(&self) -> Result<()> {
        self.with(|servers, node| {
            let s = me(servers, node)?;
            if s.system_id.is_none() {
                return Err(Error::pg(
                    "restart",
                    format!("{node}: data directory is not initialised"),
                ));
            }
            s.running = true;
            Ok(())
        })
    }

    async fn reload(&self) -> Result<()> {
        Ok(())
    }

    async fn promote(&self, _timeout: Duration) -> Result<()> {
        self.with(|servers, node| {
            let s = me(servers, node)?;
            if !(s.running && s.standby) {
                return Err(Error::pg(
                    "promote",
                    format!("{node} is not a running standby"),
                ));
            }
            let (tl, lsn) = s.position();
            s.history.push((Timeline(tl.0 + 1), lsn));
            s.standby = false;
            s.upstream = None;
            Ok(())
        })
    }

    async fn follow(&self, upstream: Option<&Upstream>) -> Result<()> {
        self.with(|servers, node| {
            let s = me(servers, node)?;
            s.standby = s.standby || !s.running;
            s.upstream = upstream.map(|u| u.node.clone());
            Ok(())
        })
    }

    async fn rewind(&self, source: &Upstream) -> Result<()> {
        self.with(|servers, node| {
            let src = servers
                .get(&source.node)
                .cloned()
                .ok_or_else(|| Error::pg("rewind", format!("no server {}", source.node)))?;
            let s = me(servers, node)?;
            if s.running {
                return Err(Error::pg("rewind", "the server is running: stop it first"));
            }
            if !src.running || src.system_id != s.system_id || s.system_id.is_none() {
                return Err(Error::pg(
                    "rewind",
                    format!("{} cannot serve a rewind", source.node),
                ));
            }
            // Rewound to the source's history; configured as its standby.
            s.history = src.history.clone();
            s.standby = true;
            s.upstream = Some(source.node.clone());
            Ok(())
        })
    }

    async fn clone_from(&self, source: &Upstream) -> Result<()> {
        self.with(|servers, node| {
            let src = servers
                .get(&source.node)
                .cloned()
                .ok_or_else(|| Error::pg("clone_from", format!("no server {}", source.node)))?;
            let s = me(servers, node)?;
            if s.running {
                return Err(Error::pg(
                    "clone_from",
                    "the server is running: stop it first",
                ));
            }
            if !src.running || src.system_id.is_none() {
                return Err(Error::pg(
                    "clone_from",
                    format!(
                        "source {} does not answer; the data directory is left as it is",
                        source.node
                    ),
                ));
            }
            *s = Server {
                system_id: src.system_id,
                running: false,
                standby: true,
                upstream: Some(source.node.clone()),
                history: src.history.clone(),
                parameters: BTreeMap::new(),
                slots: Vec::new(),
            };
            Ok(())
        })
    }

    async fn set_parameters(&self, parameters: &BTreeMap<String, String>) -> Result<ApplyReport> {
        self.with(|servers, node| {
            let s = me(servers, node)?;
            for (k, v) in parameters {
                s.parameters.insert(k.clone(), v.clone());
            }
            Ok(ApplyReport {
                reloaded: parameters.keys().cloned().collect(),
                pending_restart: Vec::new(),
            })
        })
    }

    async fn reset_parameters(&self, names: &[String]) -> Result<ApplyReport> {
        self.with(|servers, node| {
            let s = me(servers, node)?;
            for n in names {
                s.parameters.remove(n);
            }
            Ok(ApplyReport {
                reloaded: names.to_vec(),
                pending_restart: Vec::new(),
            })
        })
    }

    async fn ensure_slots(&self, plan: &super::SlotPlan) -> Result<()> {
        self.with(|servers, node| {
            let mut slots = plan.members.clone();
            slots.extend(plan.permanent.iter().map(|(name, _)| name.clone()));
            me(servers, node)?.slots = slots;
            Ok(())
        })
    }
}
