//! What the agent needs from its surroundings besides consensus and PostgreSQL: a
//! monotonic clock, the wall clock, and sleeping. `ramd` runs on [`SystemRuntime`]
//! (`CLOCK_BOOTTIME` and tokio's timer, feature `agent`); the simulator runs the same
//! agent on its virtual clock.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::types::Millis;

/// A boxed future, as the runtime's `sleep` returns it.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Clocks and timers of an agent.
pub trait Runtime: Send + Sync {
    /// The node's monotonic clock (keeps counting across agent restarts and suspends,
    /// restarts with the host). Never compared with another node's.
    fn now(&self) -> Millis;
    /// Wall-clock Unix milliseconds (history stamps and schedules only).
    fn wall_ms(&self) -> u64;
    /// Completes after `duration` of the monotonic clock.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// Runs `fut`, giving up after `duration` of `rt`'s clock (`None`).
pub async fn timeout<T>(
    rt: &dyn Runtime,
    duration: Duration,
    fut: impl Future<Output = T>,
) -> Option<T> {
    use futures_util::future::{Either, select};
    let fut = std::pin::pin!(fut);
    match select(fut, rt.sleep(duration)).await {
        Either::Left((v, _)) => Some(v),
        Either::Right(((), _)) => None,
    }
}

/// The host's clocks and tokio's timer (feature `agent`).
#[cfg(feature = "agent")]
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemRuntime;

#[cfg(feature = "agent")]
impl SystemRuntime {
    /// `CLOCK_BOOTTIME` in milliseconds: keeps counting through suspend and across agent
    /// restarts, unlike `Instant`'s `CLOCK_MONOTONIC`.
    pub fn monotonic_now() -> Millis {
        match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
            Ok(ts) => {
                let secs = u64::try_from(ts.tv_sec()).unwrap_or(0);
                let nanos = u64::try_from(ts.tv_nsec()).unwrap_or(0);
                Millis(secs * 1000 + nanos / 1_000_000)
            }
            Err(_) => Millis(0),
        }
    }

    /// Wall-clock Unix milliseconds.
    pub fn unix_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

#[cfg(feature = "agent")]
impl Runtime for SystemRuntime {
    fn now(&self) -> Millis {
        Self::monotonic_now()
    }

    fn wall_ms(&self) -> u64 {
        Self::unix_ms()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}
