//! [`RateLimit`]: at most so many log lines per window, then a count of those suppressed, for
//! any warning that outside input can repeat without end (a child's standard error, a server
//! sending garbage). Time is a parameter, so the rule is tested without waiting.

use std::time::{Duration, Instant};

/// Allows `max` events per `window`; the rest are counted and reported when the next window
/// opens.
#[derive(Debug)]
pub struct RateLimit {
    max: u32,
    window: Duration,
    started: Option<Instant>,
    allowed: u32,
    suppressed: u64,
    total: u64,
}

/// What to do with one event.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `suppressed` were dropped in the window before (0: none).
    Log { suppressed: u64 },
    /// Drop it (it is counted).
    Drop,
}

impl RateLimit {
    pub fn new(max: u32, window: Duration) -> RateLimit {
        RateLimit {
            max,
            window,
            started: None,
            allowed: 0,
            suppressed: 0,
            total: 0,
        }
    }

    /// Ten per ten seconds: for lines worth reading one by one (a child's standard error).
    pub fn lines() -> RateLimit {
        RateLimit::new(10, Duration::from_secs(10))
    }

    /// One a second: for the same warning repeated (a payload that is not a JPEG), each line
    /// saying how many went unlogged before it.
    pub fn repeats() -> RateLimit {
        RateLimit::new(1, Duration::from_secs(1))
    }

    /// One more event at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        self.total += 1;
        let mut suppressed = 0;
        let expired = self
            .started
            .is_none_or(|started| now.saturating_duration_since(started) >= self.window);
        if expired {
            self.started = Some(now);
            self.allowed = 0;
            suppressed = std::mem::take(&mut self.suppressed);
        }
        if self.allowed < self.max {
            self.allowed += 1;
            Verdict::Log { suppressed }
        } else {
            self.suppressed += 1;
            Verdict::Drop
        }
    }

    /// Events dropped since the last one logged.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// Every event so far, logged or not.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_per_window_then_a_count() {
        let start = Instant::now();
        let mut limit = RateLimit::new(10, Duration::from_secs(10));
        for i in 0..10 {
            let now = start + Duration::from_millis(i);
            assert_eq!(limit.check(now), Verdict::Log { suppressed: 0 });
        }
        for _ in 0..5 {
            assert_eq!(limit.check(start + Duration::from_secs(1)), Verdict::Drop);
        }
        assert_eq!(limit.suppressed(), 5);
        assert_eq!(
            limit.check(start + Duration::from_secs(10)),
            Verdict::Log { suppressed: 5 }
        );
        assert_eq!(limit.suppressed(), 0);
        assert_eq!(
            limit.check(start + Duration::from_secs(11)),
            Verdict::Log { suppressed: 0 }
        );
        assert_eq!(limit.total(), 17);
    }
}
