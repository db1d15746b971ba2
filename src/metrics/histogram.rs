//! A fixed-bucket latency histogram on atomics (Prometheus' cumulative buckets are
//! computed when rendering).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds, seconds. An admin call is ~1 ms; one with a login costs an argon2
/// evaluation (~30 ms with production parameters); a store write adds an fsync.
pub const BOUNDS: [f64; 11] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = BOUNDS.iter().position(|b| secs <= *b).unwrap_or(BOUNDS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(took.as_nanos().min(u128::from(u64::MAX)) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Cumulative counts per bound (the last is +Inf), sum in seconds, count.
    pub fn snapshot(&self) -> (Vec<u64>, f64, u64) {
        let mut acc = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                acc += b.load(Ordering::Relaxed);
                acc
            })
            .collect();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (cumulative, sum, self.count.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(10));
        let (b, sum, n) = h.snapshot();
        assert_eq!(n, 3);
        assert_eq!(b[0], 1, "0.5 ms is under 1 ms");
        assert_eq!(b[4], 1, "30 ms is over 25 ms");
        assert_eq!(b[5], 2, "30 ms is under 50 ms");
        assert_eq!(b[BOUNDS.len() - 1], 2);
        assert_eq!(b[BOUNDS.len()], 3, "+Inf counts everything");
        assert!((sum - 10.0305).abs() < 1e-6);
    }
}
