//! [`RateLimit`]: at most so many log lines per window, then a count of those suppressed. Time
//! is a parameter, so the rule is tested without waiting.

use std::time::{Duration, Instant};

/// Allows `max` events per `window`; the rest are counted and reported when the next window
/// opens.
#[derive(Debug)]
pub(crate) struct RateLimit {
    max: u32,
    window: Duration,
    started: Option<Instant>,
    allowed: u32,
    suppressed: u64,
}

/// What to do with one event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Log it; `suppressed` were dropped in the window before (0: none).
    Log { suppressed: u64 },
    /// Drop it (it is counted).
    Drop,
}

impl RateLimit {
    pub(crate) fn new(max: u32, window: Duration) -> RateLimit {
        RateLimit {
            max,
            window,
            started: None,
            allowed: 0,
            suppressed: 0,
        }
    }

    /// Ten per ten seconds: what every noisy source in this crate gets.
    pub(crate) fn logs() -> RateLimit {
        RateLimit::new(10, Duration::from_secs(10))
    }

    pub(crate) fn check(&mut self, now: Instant) -> Verdict {
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
    pub(crate) fn suppressed(&self) -> u64 {
        self.suppressed
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
    }
}
