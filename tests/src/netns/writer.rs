//! A client for fault tests: inserts increasing ids into [`TABLE`] on one node over one
//! session at a time, reconnecting after every failure or timeout, and records the
//! monotonic time at which each INSERT was acknowledged, so that a test can compare
//! acknowledgements from different nodes on one clock.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use crate::ramd_cluster::TABLE;

/// A client that inserts increasing ids into [`TABLE`] on one node, reconnecting after
/// every failure or timeout, and records when each INSERT was acknowledged.
pub struct Writer {
    task: JoinHandle<()>,
    acks: Arc<Mutex<Vec<(i64, Instant)>>>,
    failures: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

/// What a [`Writer`] saw.
#[derive(Clone, Debug, Default)]
pub struct Written {
    /// Every acknowledged id with the moment its acknowledgement arrived, in order.
    pub acks: Vec<(i64, Instant)>,
    /// Every failed or timed-out attempt, in order.
    pub failures: Vec<String>,
}

impl Writer {
    /// Starts writing on `dsn`, taking ids from `next`; each statement is bounded by
    /// `statement_timeout` (then the session is dropped and a new one opened).
    pub fn start(dsn: String, next: Arc<AtomicI64>, statement_timeout: Duration) -> Self {
        let acks = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(write_loop(
            dsn,
            next,
            statement_timeout,
            acks.clone(),
            failures.clone(),
            stop.clone(),
        ));
        Self {
            task,
            acks,
            failures,
            stop,
        }
    }

    /// How many INSERTs were acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acks.lock().map(|a| a.len()).unwrap_or(0)
    }

    /// Stops the writer (waiting at most 20 s) and returns what it saw.
    pub async fn finish(self) -> Written {
        self.stop.store(true, Ordering::SeqCst);
        if tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .is_err()
        {
            eprintln!("writer did not stop within 20 s");
        }
        Written {
            acks: self.acks.lock().map(|a| a.clone()).unwrap_or_default(),
            failures: self.failures.lock().map(|a| a.clone()).unwrap_or_default(),
        }
    }
}

async fn write_loop(
    dsn: String,
    next: Arc<AtomicI64>,
    statement_timeout: Duration,
    acks: Arc<Mutex<Vec<(i64, Instant)>>>,
    failures: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) {
    let fail = |what: String| {
        if let Ok(mut f) = failures.lock() {
            f.push(what);
        }
    };
    let mut session: Option<(tokio_postgres::Client, JoinHandle<()>)> = None;
    for _ in 0..1_000_000 {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if session.is_none() {
            match tokio::time::timeout(
                Duration::from_secs(3),
                tokio_postgres::connect(&format!("{dsn} connect_timeout=2"), NoTls),
            )
            .await
            {
                Ok(Ok((client, conn))) => {
                    let task = tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    session = Some((client, task));
                }
                Ok(Err(e)) => {
                    fail(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(_) => {
                    fail("connect timed out".into());
                    continue;
                }
            }
        }
        let Some((client, _)) = &session else {
            continue;
        };
        let id = next.fetch_add(1, Ordering::SeqCst);
        let sql = format!("INSERT INTO {TABLE} (id) VALUES ({id})");
        match tokio::time::timeout(statement_timeout, client.batch_execute(&sql)).await {
            Ok(Ok(())) => {
                let at = Instant::now();
                if let Ok(mut a) = acks.lock() {
                    a.push((id, at));
                }
            }
            outcome => {
                fail(match outcome {
                    Ok(Err(e)) => format!("insert {id}: {e}"),
                    _ => format!("insert {id}: no answer within {statement_timeout:?}"),
                });
                // Drop the session (the socket closes; a backend waiting for a
                // synchronous acknowledgement keeps waiting on the server).
                if let Some((_, task)) = session.take() {
                    task.abort();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    if let Some((_, task)) = session.take() {
        task.abort();
    }
}
