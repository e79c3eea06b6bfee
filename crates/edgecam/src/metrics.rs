//! A histogram of durations that any thread can add to without a lock, for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (Prometheus `le`); the last bucket is `+Inf`.
pub const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at or below each bound, not cumulated (the text format cumulates them).
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// What a [`Histogram`] holds at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(le, observations at or below le)`, cumulative, `+Inf` last.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&le| secs <= le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        // The count is read first: a concurrent observation may then show in a bucket but not
        // in the count, never the reverse, so `+Inf` (the count) is never below a bucket.
        let count = self.count.load(Ordering::Relaxed);
        let mut total = 0;
        let mut buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(&le, n)| {
                total += n.load(Ordering::Relaxed);
                (le, total.min(count))
            })
            .collect();
        buckets.push((f64::INFINITY, count));
        HistogramSnapshot {
            buckets,
            count,
            sum_seconds: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_end_with_the_count() {
        let h = Histogram::default();
        for us in [100, 800, 800, 3_000, 2_000_000] {
            h.observe(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 5);
        assert_eq!(s.buckets[0], (0.0005, 1));
        assert_eq!(s.buckets[1], (0.001, 3));
        assert_eq!(s.buckets[3], (0.005, 4));
        assert_eq!(s.buckets[9], (1.0, 4));
        assert_eq!(s.buckets[10], (f64::INFINITY, 5));
        assert!((s.sum_seconds - 2.0047).abs() < 1e-9);
    }
}
