//! The commit fence against a real PostgreSQL 15 primary: with
//! `synchronous_standby_names = 'FIRST 1 (rale_fence)'` commits complete only while the
//! fence's lease gate is open and the fence task is alive.
//!
//! Run: `cargo test -p ramd-ref --test fence_commit -- --nocapture` (prints the latency
//! and pause figures).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rale::pg::OsUser;
use rale::{LocalPostgres, LocalPostgresConfig, Millis, NodeId, PostgresControl};
use ramd_ref::fence::{self, FenceConfig, FenceStatus, LeaseGate};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

const SUPERUSER_PASSWORD: &str = "fence-test-superuser";
/// Generous bound for anything that should happen.
const WAIT: Duration = Duration::from_secs(60);
/// How long a blocked commit is watched before concluding it waits.
const BLOCKED_FOR: Duration = Duration::from_secs(2);

/// A gate switched by hand.
#[derive(Clone, Default)]
struct Switch(Arc<AtomicBool>);

impl Switch {
    fn set(&self, open: bool) {
        self.0.store(open, Ordering::SeqCst);
    }
}

impl LeaseGate for Switch {
    fn is_open_at(&self, _now: Millis) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// One PostgreSQL 15 primary in a temp dir; stopped (immediate) and removed on drop.
struct Primary {
    pg: LocalPostgres,
    // Declared last: removed after the server is stopped.
    _dir: tempfile::TempDir,
}

impl Drop for Primary {
    fn drop(&mut self) {
        if let Err(e) = self.pg.stop_immediate_blocking() {
            eprintln!("fixture: stopping PostgreSQL failed: {e}");
        }
    }
}

fn chown(path: &std::path::Path, user: &OsUser) -> anyhow::Result<()> {
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(user.uid)),
        Some(nix::unistd::Gid::from_raw(user.gid)),
    )
    .with_context(|| format!("chown {}", path.display()))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Primary {
    async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("rale-fence-")
            .tempdir_in("/tmp")
            .context("temp dir")?;
        let os_user = OsUser::for_current_process(None)?;
        if let Some(u) = &os_user {
            chown(dir.path(), u)?;
        }
        let root: PathBuf = dir.path().into();
        let cfg = LocalPostgresConfig::new(
            NodeId::new("n1")?,
            root.join("data"),
            root.join("sock"),
            free_port()?,
            SUPERUSER_PASSWORD,
            "fence-test-replication",
        );
        let pg = LocalPostgres::new(cfg)?;
        let primary = Self { pg, _dir: dir };
        primary
            .pg
            .bootstrap(&Default::default())
            .await
            .context("bootstrap")?;
        Ok(primary)
    }

    fn config(&self) -> &LocalPostgresConfig {
        self.pg.config()
    }

    /// An application's connection: TCP with SCRAM.
    async fn client(&self) -> anyhow::Result<Client> {
        let cfg = self.config();
        let mut pc = tokio_postgres::Config::new();
        pc.host(&cfg.host)
            .port(cfg.port)
            .user(&cfg.superuser)
            .password(&cfg.superuser_password)
            .dbname("postgres")
            .application_name("fence-test")
            .connect_timeout(Duration::from_secs(5));
        let (client, conn) = tokio::time::timeout(Duration::from_secs(10), pc.connect(NoTls))
            .await
            .context("connect timed out")??;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }
}

struct Fence {
    task: JoinHandle<()>,
    status: watch::Receiver<FenceStatus>,
    _active: watch::Sender<bool>,
    _shutdown: watch::Sender<bool>,
}

fn spawn_fence(cfg: &LocalPostgresConfig, gate: Switch) -> Fence {
    let (active_tx, active) = watch::channel(true);
    let (shutdown_tx, shutdown) = watch::channel(false);
    let (status_tx, status) = watch::channel(FenceStatus::default());
    let task = tokio::spawn(fence::run_with_status(
        FenceConfig::from_local(cfg),
        gate,
        active,
        shutdown,
        status_tx,
    ));
    Fence {
        task,
        status,
        _active: active_tx,
        _shutdown: shutdown_tx,
    }
}

async fn wait_for<F: Fn() -> bool>(what: &str, f: F) -> anyhow::Result<()> {
    let t = Instant::now();
    while t.elapsed() < WAIT {
        if f() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("timed out waiting for {what}")
}

async fn scalar(c: &Client, sql: &str) -> anyhow::Result<Option<String>> {
    let rows = c.simple_query(sql).await?;
    for r in rows {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = r {
            return Ok(row.get(0).map(str::to_string));
        }
    }
    Ok(None)
}

async fn set_sync_names(c: &Client, value: &str) -> anyhow::Result<()> {
    c.batch_execute(&format!(
        "ALTER SYSTEM SET synchronous_standby_names = '{value}'"
    ))
    .await?;
    c.batch_execute("SELECT pg_reload_conf()").await?;
    for _ in 0..500 {
        if scalar(c, "SHOW synchronous_standby_names")
            .await?
            .as_deref()
            == Some(value)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("synchronous_standby_names did not become {value:?}")
}

/// Waits until `rale_fence` is the synchronous standby in `pg_stat_replication`.
async fn wait_fence_sync(c: &Client) -> anyhow::Result<()> {
    let sql = "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'rale_fence'";
    let t = Instant::now();
    while t.elapsed() < WAIT {
        if scalar(c, sql).await?.as_deref() == Some("sync") {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("rale_fence never became the synchronous standby")
}

/// Runs `n` single-row INSERT commits on `a` and on `b`, alternating; returns both
/// latency lists in µs, sorted.
async fn paired_latencies(
    a: &Client,
    b: &Client,
    n: usize,
) -> anyhow::Result<(Vec<u64>, Vec<u64>)> {
    let sa = a.prepare("INSERT INTO t (v) VALUES ($1)").await?;
    let sb = b.prepare("INSERT INTO t (v) VALUES ($1)").await?;
    let (mut la, mut lb) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        for (c, s, out) in [(a, &sa, &mut la), (b, &sb, &mut lb)] {
            let t = Instant::now();
            c.execute(s, &[&(i as i32)]).await?;
            out.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
        }
    }
    la.sort_unstable();
    lb.sort_unstable();
    Ok((la, lb))
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Starts one INSERT on its own connection; the handle resolves when the commit returns.
async fn spawn_commit(p: &Primary, v: i32) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    let c = p.client().await?;
    Ok(tokio::spawn(async move {
        c.execute("INSERT INTO t (v) VALUES ($1)", &[&v]).await?;
        Ok(())
    }))
}

/// Asserts that `h` has not finished after [`BLOCKED_FOR`].
async fn assert_blocked(h: &mut JoinHandle<anyhow::Result<()>>, why: &str) {
    let r = tokio::time::timeout(BLOCKED_FOR, &mut *h).await;
    assert!(
        r.is_err(),
        "{why}: the commit returned ({r:?}) instead of waiting"
    );
}

/// Waits (bounded) for `h` and returns how long it took from `since`.
async fn assert_completes(
    h: JoinHandle<anyhow::Result<()>>,
    why: &str,
    since: Instant,
) -> anyhow::Result<Duration> {
    match tokio::time::timeout(WAIT, h).await {
        Ok(Ok(Ok(()))) => Ok(since.elapsed()),
        Ok(Ok(Err(e))) => bail!("{why}: commit failed: {e:#}"),
        Ok(Err(e)) => bail!("{why}: commit task: {e}"),
        Err(_) => bail!("{why}: commit still waiting after {WAIT:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_wait_for_the_lease_and_the_fence_task() -> anyhow::Result<()> {
    let p = Primary::start().await?;
    let c = p.client().await?;
    c.batch_execute("CREATE TABLE t (id bigserial PRIMARY KEY, v int)")
        .await?;

    // The fence, open.
    let gate = Switch::default();
    gate.set(true);
    let f = spawn_fence(p.config(), gate.clone());
    set_sync_names(&c, "FIRST 1 (rale_fence)").await?;
    wait_fence_sync(&c).await?;

    // Overhead: alternating commits on two sessions, one with `synchronous_commit =
    // local` (what a commit costs without any synchronous standby), one with `on` (waits
    // for the fence), so that machine noise hits both alike.
    let local = p.client().await?;
    local
        .batch_execute("SET synchronous_commit = local")
        .await?;
    let (base, fenced) = paired_latencies(&local, &c, 500).await?;
    let n = base.len();
    println!(
        "commit latency over {n} single-row INSERT commits each (µs): \
         without fence median {} p99 {}; with fence median {} p99 {}",
        pct(&base, 0.5),
        pct(&base, 0.99),
        pct(&fenced, 0.5),
        pct(&fenced, 0.99)
    );

    // Closed: a commit waits, and the fence's acknowledged position stays put.
    gate.set(false);
    wait_for("the fence to report closed", || !f.status.borrow().open).await?;
    let frozen = f.status.borrow().acknowledged;
    let mut h = spawn_commit(&p, -1).await?;
    assert_blocked(&mut h, "deadline closed").await;
    let flush = scalar(
        &c,
        "SELECT flush_lsn::text FROM pg_stat_replication WHERE application_name = 'rale_fence'",
    )
    .await?
    .context("fence in pg_stat_replication")?;
    assert_eq!(
        flush,
        frozen.to_string(),
        "the server saw no acknowledgement while closed"
    );
    assert!(
        f.status.borrow().received > frozen,
        "the fence kept receiving WAL while closed"
    );
    // Reopened: the waiting commit completes.
    let reopened = Instant::now();
    gate.set(true);
    let d = assert_completes(h, "deadline reopened", reopened).await?;
    println!(
        "commit released {} ms after the deadline reopened",
        d.as_millis()
    );

    // The fence task gone: commits wait even with the gate open.
    f.task.abort();
    let _ = f.task.await;
    let mut h = spawn_commit(&p, -2).await?;
    assert_blocked(&mut h, "fence task aborted").await;

    // A new fence task releases them; the pause is measured from its start.
    let restarted = Instant::now();
    let f2 = spawn_fence(p.config(), gate.clone());
    let pause = assert_completes(h, "fence task restarted", restarted).await?;
    println!(
        "fence restart: waiting commit released {} ms after the new task started",
        pause.as_millis()
    );
    assert!(f2.status.borrow().sessions >= 1);

    // An escape hatch: synchronous_commit = local bypasses every synchronous standby.
    gate.set(false);
    wait_for("the fence to report closed", || !f2.status.borrow().open).await?;
    let c2 = p.client().await?;
    c2.batch_execute("SET synchronous_commit = local").await?;
    tokio::time::timeout(WAIT, c2.execute("INSERT INTO t (v) VALUES (-3)", &[]))
        .await
        .context("synchronous_commit=local commit waited")??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_reconnects_after_a_server_restart_and_stops_when_inactive() -> anyhow::Result<()> {
    let p = Primary::start().await?;
    let c = p.client().await?;
    c.batch_execute("CREATE TABLE t (id bigserial PRIMARY KEY, v int)")
        .await?;
    set_sync_names(&c, "FIRST 1 (rale_fence)").await?;
    drop(c);
    let gate = Switch::default();
    gate.set(true);
    let (active_tx, active) = watch::channel(true);
    let (shutdown_tx, shutdown) = watch::channel(false);
    let (status_tx, status) = watch::channel(FenceStatus::default());
    let task = tokio::spawn(fence::run_with_status(
        FenceConfig::from_local(p.config()),
        gate,
        active,
        shutdown,
        status_tx,
    ));
    wait_for("first session", || {
        status.borrow().sessions >= 1 && status.borrow().streaming
    })
    .await?;

    // Restart PostgreSQL: the fence reconnects by itself and commits go through.
    p.pg.stop(rale::pg::StopMode::Fast).await?;
    p.pg.start(None).await?;
    wait_for("second session", || {
        status.borrow().sessions >= 2 && status.borrow().streaming
    })
    .await?;
    let h = spawn_commit(&p, 1).await?;
    assert_completes(h, "after restart", Instant::now()).await?;

    // Inactive (no longer primary): the session closes and commits wait again.
    active_tx.send_replace(false);
    wait_for("session closed", || !status.borrow().streaming).await?;
    let mut h = spawn_commit(&p, 2).await?;
    assert_blocked(&mut h, "fence inactive").await;
    active_tx.send_replace(true);
    assert_completes(h, "fence active again", Instant::now()).await?;

    shutdown_tx.send_replace(true);
    tokio::time::timeout(WAIT, task)
        .await
        .context("fence did not stop on shutdown")??;
    Ok(())
}
