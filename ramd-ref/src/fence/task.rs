//! The fence task: keeps one replication session to the local primary while this node
//! should fence, and acknowledges WAL only while the lease deadline is open.

use std::time::Duration;

use rale::Lsn;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use super::conn::ReplicationConnection;
use super::proto::{ServerMessage, StandbyStatus, pg_now_us};
use super::{Error, FenceConfig, LeaseGate, Result};
use crate::ha::monotonic_now;

/// How often a closed fence with unacknowledged WAL checks whether the gate reopened.
const REOPEN_POLL: Duration = Duration::from_millis(5);

/// What the fence is doing, for observation (API, tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FenceStatus {
    /// A session is streaming.
    pub streaming: bool,
    /// Sessions that reached streaming since the task started.
    pub sessions: u64,
    /// Last WAL position received on the current session.
    pub received: Lsn,
    /// Last position acknowledged to the server on the current session.
    pub acknowledged: Lsn,
    /// Whether the last status update was sent with the deadline open.
    pub open: bool,
    /// The last session error, if any.
    pub last_error: Option<String>,
}

/// Why a session ended without an error.
enum SessionEnd {
    /// This node should no longer fence.
    Inactive,
    /// The daemon is shutting down.
    Shutdown,
}

/// Runs the fence until `shutdown` turns true: while `active` is true (this node is
/// primary and should fence) it streams from the server in `cfg` and acknowledges
/// WAL only while `deadline` is open; when the session drops it reconnects with
/// exponential backoff. See the [module documentation](super).
pub async fn run(
    cfg: FenceConfig,
    deadline: impl LeaseGate,
    active: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
) {
    let (status, _) = watch::channel(FenceStatus::default());
    run_with_status(cfg, deadline, active, shutdown, status).await;
}

/// [`run`], publishing its [`FenceStatus`] on `status`.
pub async fn run_with_status(
    cfg: FenceConfig,
    deadline: impl LeaseGate,
    mut active: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
    status: watch::Sender<FenceStatus>,
) {
    let mut backoff = cfg.backoff_min;
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if !*active.borrow_and_update() {
            tokio::select! {
                r = active.changed() => if r.is_err() { return },
                r = shutdown.changed() => if r.is_err() { return },
            }
            continue;
        }
        let mut reached_streaming = false;
        match session(
            &cfg,
            &deadline,
            &mut active,
            &mut shutdown,
            &status,
            &mut reached_streaming,
        )
        .await
        {
            Ok(SessionEnd::Shutdown) => {
                status.send_modify(|s| s.streaming = false);
                return;
            }
            Ok(SessionEnd::Inactive) => {
                info!(
                    fence = "rale_fence",
                    "this node no longer fences: replication session closed"
                );
                status.send_modify(|s| s.streaming = false);
                backoff = cfg.backoff_min;
            }
            Err(e) => {
                if reached_streaming {
                    backoff = cfg.backoff_min;
                }
                warn!(fence = "rale_fence", error = %e, retry_ms = backoff.as_millis() as u64, "fence session ended; reconnecting");
                status.send_modify(|s| {
                    s.streaming = false;
                    s.last_error = Some(e.to_string());
                });
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    r = shutdown.changed() => if r.is_err() { return },
                }
                backoff = (backoff * 2).min(cfg.backoff_max).max(cfg.backoff_min);
            }
        }
    }
}

async fn bounded<T>(
    what: &'static str,
    limit: Duration,
    f: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout {
            operation: what,
            after_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
        }),
    }
}

async fn session(
    cfg: &FenceConfig,
    deadline: &impl LeaseGate,
    active: &mut watch::Receiver<bool>,
    shutdown: &mut watch::Receiver<bool>,
    status: &watch::Sender<FenceStatus>,
    reached_streaming: &mut bool,
) -> Result<SessionEnd> {
    let limit = cfg.connect_timeout;
    let (mut conn, id) = bounded("starting the fence stream", limit, async {
        let mut conn = ReplicationConnection::connect(&cfg.endpoint, &cfg.credentials).await?;
        let id = conn.identify_system().await?;
        conn.start_replication(id.xlogpos, id.timeline).await?;
        Ok((conn, id))
    })
    .await?;
    *reached_streaming = true;
    info!(fence = "rale_fence", endpoint = %cfg.endpoint, timeline = id.timeline.0, lsn = %id.xlogpos, "fence streaming");
    let mut fence = AckState {
        received: id.xlogpos,
        acknowledged: Lsn::ZERO,
        open: false,
    };
    status.send_modify(|s| {
        s.streaming = true;
        s.sessions += 1;
        s.received = fence.received;
        s.acknowledged = fence.acknowledged;
        s.last_error = None;
    });
    // First status at once: acknowledges the start position if the lease is open.
    fence.report(&mut conn, deadline, status).await?;
    let mut tick = tokio::time::interval(cfg.status_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // While closed with WAL waiting, watch the gate closely so that a renewal releases the
    // waiting commits within ~REOPEN_POLL rather than a whole status interval.
    let mut reopen = tokio::time::interval(REOPEN_POLL);
    reopen.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = reopen.tick(), if !fence.open && fence.received > fence.acknowledged => {
                if deadline.is_open_at(monotonic_now()) {
                    fence.report(&mut conn, deadline, status).await?;
                }
            }
            m = conn.next_message() => {
                let m = m?;
                fence.received = fence.received.max(m.received_up_to());
                let reply = matches!(m, ServerMessage::Keepalive { reply_requested: true, .. });
                // Answer data at once (commits wait for it) and keepalives that ask.
                if reply || matches!(m, ServerMessage::XLogData { .. }) {
                    fence.report(&mut conn, deadline, status).await?;
                }
            }
            _ = tick.tick() => fence.report(&mut conn, deadline, status).await?,
            r = active.changed() => {
                if r.is_err() {
                    // The daemon dropped the switch: it is going away.
                    conn.close().await;
                    return Ok(SessionEnd::Shutdown);
                }
                if !*active.borrow_and_update() {
                    conn.close().await;
                    return Ok(SessionEnd::Inactive);
                }
            }
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow_and_update() {
                    conn.close().await;
                    return Ok(SessionEnd::Shutdown);
                }
            }
        }
    }
}

/// The acknowledgement rule of one session.
#[derive(Debug)]
struct AckState {
    received: Lsn,
    acknowledged: Lsn,
    open: bool,
}

impl AckState {
    /// Advances the acknowledged position to what was received if the deadline is open
    /// now; never moves it otherwise. Returns the position to report.
    fn advance(&mut self, open: bool) -> Lsn {
        if open && self.received > self.acknowledged {
            self.acknowledged = self.received;
        }
        if open != self.open {
            debug!(fence = "rale_fence", open, lsn = %self.acknowledged, "fence gate changed");
        }
        self.open = open;
        self.acknowledged
    }

    async fn report(
        &mut self,
        conn: &mut ReplicationConnection,
        deadline: &impl LeaseGate,
        status: &watch::Sender<FenceStatus>,
    ) -> Result<()> {
        let ack = self.advance(deadline.is_open_at(monotonic_now()));
        conn.send_status(&StandbyStatus::acknowledging(ack, pg_now_us()))
            .await?;
        status.send_if_modified(|s| {
            let changed =
                s.received != self.received || s.acknowledged != ack || s.open != self.open;
            s.received = self.received;
            s.acknowledged = ack;
            s.open = self.open;
            changed
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_acknowledges_only_while_open_and_never_goes_back() {
        let mut g = AckState {
            received: Lsn(100),
            acknowledged: Lsn::ZERO,
            open: false,
        };
        assert_eq!(
            g.advance(false),
            Lsn::ZERO,
            "closed at start: nothing acknowledged"
        );
        assert_eq!(g.advance(true), Lsn(100));
        g.received = Lsn(200);
        assert_eq!(
            g.advance(false),
            Lsn(100),
            "closed: the old position is repeated"
        );
        g.received = Lsn(300);
        assert_eq!(g.advance(false), Lsn(100));
        assert_eq!(g.advance(true), Lsn(300), "reopened: catches up at once");
        g.received = Lsn(250);
        assert_eq!(g.advance(true), Lsn(300), "never moves backwards");
    }
}
