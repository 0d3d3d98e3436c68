//! The deadline the commit fence obeys, shared by the HA loop, the lease keeper and
//! whatever gates commits (`ramd`'s lease-gated pseudo-standby, the simulator's fence).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::types::{Epoch, Millis};

/// The lease deadline shared with the commit fence: monotonic milliseconds until which
/// the fence may acknowledge WAL; 0 = closed. Both the HA loop and the lease keeper move
/// it; within one lease epoch it only moves forward (each value is proven by a renewal
/// that consensus applied).
#[derive(Clone, Default, Debug)]
pub struct FenceDeadline(Arc<FenceInner>);

#[derive(Default, Debug)]
struct FenceInner {
    deadline: AtomicU64,
    epoch: AtomicU64,
    update: std::sync::Mutex<()>,
}

impl FenceDeadline {
    /// Whether the fence may acknowledge at `now`.
    pub fn is_open(&self, now: Millis) -> bool {
        now.0 < self.0.deadline.load(Ordering::SeqCst)
    }

    /// Current deadline.
    pub fn get(&self) -> Millis {
        Millis(self.0.deadline.load(Ordering::SeqCst))
    }

    /// The HA loop's view: `None` closes the fence; a lease of another epoch replaces the
    /// deadline; the same epoch never moves it back (the lease keeper may have renewed
    /// since the state the loop decided on was read).
    pub(crate) fn set(&self, lease: Option<(Epoch, Millis)>) {
        let _guard = self.0.update.lock().unwrap_or_else(|e| e.into_inner());
        match lease {
            None => {
                self.0.deadline.store(0, Ordering::SeqCst);
                self.0.epoch.store(0, Ordering::SeqCst);
            }
            Some((epoch, deadline)) => {
                if self.0.epoch.load(Ordering::SeqCst) == epoch.0 {
                    self.0.deadline.fetch_max(deadline.0, Ordering::SeqCst);
                } else {
                    self.0.epoch.store(epoch.0, Ordering::SeqCst);
                    self.0.deadline.store(deadline.0, Ordering::SeqCst);
                }
            }
        }
    }

    /// The lease keeper's renewal of `epoch` landed: acknowledge until `deadline`, unless
    /// the HA loop has meanwhile closed the fence or moved to another epoch.
    pub(crate) fn extend(&self, epoch: Epoch, deadline: Millis) {
        let _guard = self.0.update.lock().unwrap_or_else(|e| e.into_inner());
        if self.0.epoch.load(Ordering::SeqCst) == epoch.0 {
            self.0.deadline.fetch_max(deadline.0, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_epoch_never_moves_back_and_a_new_epoch_replaces() {
        let f = FenceDeadline::default();
        assert!(!f.is_open(Millis(0)));
        f.set(Some((Epoch(1), Millis(100))));
        assert!(f.is_open(Millis(99)) && !f.is_open(Millis(100)));
        f.set(Some((Epoch(1), Millis(50))));
        assert_eq!(f.get(), Millis(100));
        f.extend(Epoch(1), Millis(200));
        assert_eq!(f.get(), Millis(200));
        f.extend(Epoch(2), Millis(300));
        assert_eq!(
            f.get(),
            Millis(200),
            "a renewal of another epoch is ignored"
        );
        f.set(Some((Epoch(2), Millis(10))));
        assert_eq!(f.get(), Millis(10));
        f.set(None);
        assert!(!f.is_open(Millis(0)));
    }
}
