//! A client for randomized fault campaigns: one writer task per node, all taking ids from
//! one counter and recording every acknowledged INSERT — which node acknowledged it and
//! when (the test process's monotonic clock) — in one shared log. Each task keeps its
//! session while its node refuses writes (a replica: retried every 100 ms on the same
//! session, so a promotion is noticed without reconnecting) and drops it after any other
//! error or a statement that outlives its bound (the fence makes commits hang rather
//! than fail), reconnecting after 100 ms. Writing on every node at once is what makes a
//! split brain visible: two nodes acknowledging in overlapping time.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::ramd_cluster::TABLE;

/// One acknowledged INSERT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The id inserted.
    pub id: i64,
    /// The node whose PostgreSQL acknowledged it.
    pub node: String,
    /// When the acknowledgement reached the client.
    pub at: Instant,
}

/// Writers on every node of a cluster; see the [module docs](self).
pub struct AllNodesWriter {
    tasks: Vec<JoinHandle<()>>,
    log: Arc<Mutex<Vec<Ack>>>,
    failures: Arc<AtomicU64>,
    next: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
}

impl AllNodesWriter {
    /// Starts one writer per `(node name, libpq connection string)`, ids from `first_id`
    /// up; each INSERT is bounded by `statement_timeout`.
    pub fn start(nodes: &[(String, String)], first_id: i64, statement_timeout: Duration) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(AtomicU64::new(0));
        let next = Arc::new(AtomicI64::new(first_id));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = nodes
            .iter()
            .map(|(name, dsn)| {
                tokio::spawn(write_loop(Shared {
                    node: name.clone(),
                    dsn: dsn.clone(),
                    statement_timeout,
                    log: log.clone(),
                    failures: failures.clone(),
                    next: next.clone(),
                    stop: stop.clone(),
                }))
            })
            .collect();
        Self {
            tasks,
            log,
            failures,
            next,
            stop,
        }
    }

    /// A fresh id from the writers' counter (for a probe write made elsewhere).
    pub fn next_id(&self) -> i64 {
        self.next.fetch_add(1, Ordering::SeqCst)
    }

    /// Records an INSERT acknowledged outside the writers (a probe), with the current
    /// time.
    pub fn record(&self, id: i64, node: &str) {
        let at = Instant::now();
        if let Ok(mut log) = self.log.lock() {
            log.push(Ack {
                id,
                node: node.to_string(),
                at,
            });
        }
    }

    /// How many INSERTs were acknowledged so far.
    pub fn acked(&self) -> usize {
        self.log.lock().map(|l| l.len()).unwrap_or(0)
    }

    /// A copy of the log so far.
    pub fn acks(&self) -> Vec<Ack> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Failed, refused or timed-out attempts so far (replicas refuse every attempt).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::SeqCst)
    }

    /// Stops every writer (waiting at most 20 s) and returns the log sorted by time.
    pub async fn finish(self) -> Vec<Ack> {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                eprintln!("a writer did not stop within 20 s");
                abort.abort();
            }
        }
        let mut log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        log.sort_by_key(|a| a.at);
        log
    }
}

struct Shared {
    node: String,
    dsn: String,
    statement_timeout: Duration,
    log: Arc<Mutex<Vec<Ack>>>,
    failures: Arc<AtomicU64>,
    next: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
}

async fn write_loop(s: Shared) {
    let pause = Duration::from_millis(100);
    let mut session: Option<(tokio_postgres::Client, JoinHandle<()>)> = None;
    for _ in 0..10_000_000 {
        if s.stop.load(Ordering::SeqCst) {
            break;
        }
        if session.is_none() {
            match tokio::time::timeout(
                Duration::from_secs(3),
                tokio_postgres::connect(&format!("{} connect_timeout=2", s.dsn), NoTls),
            )
            .await
            {
                Ok(Ok((client, conn))) => {
                    let task = tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    session = Some((client, task));
                }
                _ => {
                    s.failures.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(pause).await;
                    continue;
                }
            }
        }
        let Some((client, _)) = &session else {
            continue;
        };
        let id = s.next.fetch_add(1, Ordering::SeqCst);
        let sql = format!("INSERT INTO {TABLE} (id) VALUES ({id})");
        match tokio::time::timeout(s.statement_timeout, client.batch_execute(&sql)).await {
            Ok(Ok(())) => {
                let at = Instant::now();
                if let Ok(mut log) = s.log.lock() {
                    log.push(Ack {
                        id,
                        node: s.node.clone(),
                        at,
                    });
                }
            }
            Ok(Err(e)) if e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) => {
                // A replica: keep the session, try again shortly.
                s.failures.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(pause).await;
            }
            _ => {
                s.failures.fetch_add(1, Ordering::SeqCst);
                // Drop the session (a backend waiting for a synchronous acknowledgement
                // keeps waiting on the server; that INSERT was never acknowledged).
                if let Some((_, task)) = session.take() {
                    task.abort();
                }
                tokio::time::sleep(pause).await;
            }
        }
    }
    if let Some((_, task)) = session.take() {
        task.abort();
    }
}
