//! Time as data: timestamps and the [`Clock`] trait through which the runtime crates pass time in.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

/// Microseconds since the Unix epoch. Capture times are wall-clock based so that a client on
/// the same host (or one with a synchronised clock) can compute capture-to-receive latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

/// The timestamp `d` after this one (saturating).
impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;

    fn add(self, d: Duration) -> Timestamp {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(micros))
    }
}

impl Timestamp {
    /// How long after `earlier` this is; zero when it is not later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    pub fn as_micros(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

/// A source of time, passed into whatever needs to pace itself (cameras, the capture loop).
///
/// `now` should not go backwards (`SystemClock` never does), but a clock that follows the wall
/// clock may be set back (NTP, an operator, a board without a battery-backed clock), and
/// nothing that reads one may then wait for ever: a session compares capture times with
/// request times, and takes a step back past a request into account (see
/// `Session::handle_frame`). `sleep_until` returns at or after `deadline` (at once when the
/// deadline has passed).
#[async_trait]
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Timestamp;
    async fn sleep_until(&self, deadline: Timestamp);
}

/// A clock that only moves when told to, or when someone sleeps on it: `sleep_until` jumps
/// straight to the deadline. For deterministic tests of anything that paces itself.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    pub fn advance(&self, d: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now = *now + d;
    }

    /// Sets the time, backwards too: for tests of a wall clock that is set back.
    pub fn set(&self, t: Timestamp) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        if *now < deadline {
            *now = deadline;
        }
    }
}
