//! The client write loop: one task per node trying an `INSERT` every 20 ms over a reused
//! connection (connect timeout 1 s), reconnecting after connection errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// Interval between attempts on one node.
const PERIOD_MS: u64 = 20;
/// Bound on the attempts of one node (20 minutes at 20 ms).
const MAX_ATTEMPTS: usize = 60_000;

/// One write attempt.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attempt {
    /// Index of the node in the playground report.
    pub node: usize,
    /// When the attempt started.
    pub start: Instant,
    /// When it finished.
    pub end: Instant,
    /// Whether the row was inserted.
    pub ok: bool,
}

/// A running write loop.
pub(crate) struct Writer {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Attempt>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Writer {
    /// Starts one task per DSN; they run until [`Writer::stop`] or `max` elapsed.
    pub(crate) fn start(dsns: &[String], max: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let tasks = dsns
            .iter()
            .enumerate()
            .map(|(node, dsn)| {
                tokio::spawn(node_loop(
                    node,
                    format!("{dsn} connect_timeout=1"),
                    max,
                    stop.clone(),
                    log.clone(),
                ))
            })
            .collect();
        Self { stop, log, tasks }
    }

    /// First successful attempt started after `t0` on a node accepted by `which`.
    pub(crate) async fn first_ok_after(
        &self,
        t0: Instant,
        which: impl Fn(usize) -> bool,
    ) -> Option<Attempt> {
        self.log
            .lock()
            .await
            .iter()
            .filter(|a| a.ok && a.start >= t0 && which(a.node))
            .min_by_key(|a| a.end)
            .copied()
    }

    /// Polls (every 20 ms, at most `timeout`) for the first failed attempt started at or
    /// after `t0`: when a fault has visibly hit the writers. After `kill -9` of a
    /// postmaster its backends can still commit for a few milliseconds, so "writes again"
    /// is measured from the first failure, not from the signal.
    pub(crate) async fn wait_failure_after(
        &self,
        t0: Instant,
        timeout: Duration,
    ) -> Option<Attempt> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let first = self
                .log
                .lock()
                .await
                .iter()
                .filter(|a| !a.ok && a.start >= t0)
                .min_by_key(|a| a.start)
                .copied();
            if first.is_some() {
                return first;
            }
            tokio::time::sleep(Duration::from_millis(PERIOD_MS)).await;
        }
        None
    }

    /// Polls (every 20 ms, at most `timeout`) for the first success after `t0` on a node
    /// accepted by `which`.
    pub(crate) async fn wait_ok_after(
        &self,
        t0: Instant,
        timeout: Duration,
        which: impl Fn(usize) -> bool + Copy,
    ) -> Option<Attempt> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(a) = self.first_ok_after(t0, which).await {
                return Some(a);
            }
            tokio::time::sleep(Duration::from_millis(PERIOD_MS)).await;
        }
        None
    }

    /// Stops the tasks and returns every attempt.
    pub(crate) async fn stop(self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            // Each task finishes its current attempt (bounded by the 1 s timeouts).
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                eprintln!("[ramd-bench] a write task did not stop in 5 s");
            }
        }
        let mut v = self.log.lock().await.clone();
        v.sort_by_key(|a| a.start);
        v
    }
}

async fn node_loop(
    node: usize,
    dsn: String,
    max: Duration,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Attempt>>>,
) {
    let began = Instant::now();
    let mut client: Option<(tokio_postgres::Client, JoinHandle<()>)> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(PERIOD_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for _ in 0..MAX_ATTEMPTS {
        if stop.load(Ordering::Relaxed) || began.elapsed() > max {
            break;
        }
        tick.tick().await;
        let start = Instant::now();
        if client.as_ref().is_none_or(|(c, _)| c.is_closed()) {
            if let Some((_, task)) = client.take() {
                task.abort();
            }
            let conn = tokio::time::timeout(
                Duration::from_millis(1500),
                tokio_postgres::connect(&dsn, tokio_postgres::NoTls),
            )
            .await;
            if let Ok(Ok((c, connection))) = conn {
                let task = tokio::spawn(async move {
                    let _ = connection.await;
                });
                client = Some((c, task));
            }
        }
        let ok = match &client {
            Some((c, _)) => {
                match tokio::time::timeout(
                    Duration::from_secs(1),
                    c.execute("INSERT INTO rale_demo DEFAULT VALUES", &[]),
                )
                .await
                {
                    Ok(Ok(_)) => true,
                    // A server error (read-only replica) keeps the connection.
                    Ok(Err(e)) if e.as_db_error().is_some() && !c.is_closed() => false,
                    _ => {
                        if let Some((_, task)) = client.take() {
                            task.abort();
                        }
                        false
                    }
                }
            }
            None => false,
        };
        log.lock().await.push(Attempt {
            node,
            start,
            end: Instant::now(),
            ok,
        });
    }
    if let Some((_, task)) = client.take() {
        task.abort();
    }
}
