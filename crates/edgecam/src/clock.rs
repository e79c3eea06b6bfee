//! The real clock: wall-clock anchored, monotonic, sleeping on tokio's timer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use edgecam_core::time::{Clock, Timestamp};
use tokio::time::Instant;

/// Reads the wall clock once, then advances with the monotonic clock, so timestamps are
/// comparable with another host's wall clock yet never jump backwards.
#[derive(Debug, Clone)]
pub struct SystemClock {
    base_instant: Instant,
    base_wall: Timestamp,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            base_instant: Instant::now(),
            base_wall: wall_now(),
        }
    }
}

impl SystemClock {
    /// The tokio instant at which this clock reads `t`.
    pub fn instant_at(&self, t: Timestamp) -> Instant {
        self.base_instant + t.since(self.base_wall)
    }
}

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        self.base_wall + self.base_instant.elapsed()
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        tokio::time::sleep_until(self.instant_at(deadline)).await;
    }
}

/// The current wall-clock time, for stamping what a client receives.
pub fn wall_now() -> Timestamp {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    Timestamp(u64::try_from(wall.as_micros()).unwrap_or(u64::MAX))
}
