//! [`Throttle`]: a warning that may repeat thousands of times a second (a server sending
//! nothing but garbage) is logged the first few times, then as one line a second with a count.

use std::time::{Duration, Instant};

/// Occurrences logged one by one before the throttle starts counting.
const FIRST: u64 = 3;
/// At most one summary line this often.
const INTERVAL: Duration = Duration::from_secs(1);

/// What the caller should log for one occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log {
    /// Log this occurrence on its own.
    One,
    /// Log one line for this many occurrences (this one included) not logged yet.
    Summary(u64),
    /// Log nothing now; it is counted.
    Quiet,
}

/// Counts occurrences of one warning and says when to log. Time comes in as a parameter.
#[derive(Debug, Default, Clone)]
pub struct Throttle {
    total: u64,
    unlogged: u64,
    last_summary: Option<Instant>,
}

impl Throttle {
    /// One more occurrence, at `now`.
    pub fn hit(&mut self, now: Instant) -> Log {
        self.total += 1;
        if self.total <= FIRST {
            return Log::One;
        }
        self.unlogged += 1;
        // The first summary waits a full interval after the last single line too.
        let since = *self.last_summary.get_or_insert(now);
        if now.duration_since(since) >= INTERVAL {
            self.last_summary = Some(now);
            return Log::Summary(std::mem::take(&mut self.unlogged));
        }
        Log::Quiet
    }

    /// Occurrences counted but not logged yet (for a line at the end); resets the count.
    pub fn take_unlogged(&mut self) -> u64 {
        std::mem::take(&mut self.unlogged)
    }

    /// Every occurrence so far.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_few_are_logged_then_one_summary_a_second() {
        let t0 = Instant::now();
        let mut throttle = Throttle::default();
        let logs: Vec<Log> = (0..10_000u64)
            .map(|i| throttle.hit(t0 + Duration::from_micros(i * 250)))
            .collect();
        // 10,000 occurrences over 2.5 s: 3 single lines and 2 summaries, nothing lost.
        let lines: Vec<&Log> = logs.iter().filter(|l| **l != Log::Quiet).collect();
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert_eq!(lines[..3], [&Log::One, &Log::One, &Log::One]);
        let summarised: u64 = logs
            .iter()
            .map(|l| match l {
                Log::Summary(n) => *n,
                _ => 0,
            })
            .sum();
        assert_eq!(3 + summarised + throttle.take_unlogged(), 10_000);
        assert_eq!(throttle.total(), 10_000);
        assert_eq!(throttle.take_unlogged(), 0);
    }
}
