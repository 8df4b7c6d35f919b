//! Job durations as bucket counts, with the bounds of the
//! `gearman_driver_job_duration_seconds` histogram, and percentiles
//! estimated from them the way Prometheus's `histogram_quantile` does:
//! linear within the bucket the rank falls in. The metrics crate keeps its
//! buckets to itself, so the recorder counts each observation here too.

/// Upper bounds in seconds, 1 ms to 10 min; one more bucket takes the rest.
pub const BOUNDS: [f64; 18] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0,
];

/// How many durations fell into each bucket (not cumulative).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DurationCounts {
    counts: [u64; BOUNDS.len() + 1],
}

impl DurationCounts {
    pub fn observe(&mut self, seconds: f64) {
        let i = BOUNDS.partition_point(|bound| *bound < seconds);
        self.counts[i] += 1;
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds `other`'s counts (another function of the same job).
    pub fn add(&mut self, other: &DurationCounts) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
    }

    /// The durations observed since `earlier` was taken.
    pub fn since(&self, earlier: &DurationCounts) -> DurationCounts {
        let mut diff = *self;
        for (mine, before) in diff.counts.iter_mut().zip(earlier.counts) {
            *mine = mine.saturating_sub(before);
        }
        diff
    }

    /// The `q` quantile (0..1) in seconds, or `None` without observations.
    /// A rank in the last, unbounded bucket answers the largest bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, count) in self.counts.iter().enumerate() {
            let upto = below + count;
            if *count > 0 && upto as f64 >= rank {
                let Some(upper) = BOUNDS.get(i) else {
                    return Some(BOUNDS[BOUNDS.len() - 1]);
                };
                let lower = if i == 0 { 0.0 } else { BOUNDS[i - 1] };
                let within = (rank - below as f64) / *count as f64;
                return Some(lower + (upper - lower) * within);
            }
            below = upto;
        }
        Some(BOUNDS[BOUNDS.len() - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(durations: &[f64]) -> DurationCounts {
        let mut c = DurationCounts::default();
        for d in durations {
            c.observe(*d);
        }
        c
    }

    #[test]
    fn a_bound_belongs_to_its_own_bucket() {
        let c = counts(&[0.001, 0.0011]);
        assert_eq!(c.counts[0], 1);
        assert_eq!(c.counts[1], 1);
        assert_eq!(counts(&[1e6]).counts[BOUNDS.len()], 1);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        assert_eq!(DurationCounts::default().quantile(0.5), None);
        // Ten jobs between 0.1 and 0.25 s: the median is halfway.
        let c = counts(&[0.2; 10]);
        let p50 = c.quantile(0.5).unwrap();
        assert!((p50 - 0.175).abs() < 1e-9, "{p50}");
        // 95 fast and 5 slow: p50 among the fast, p95 at the top of them.
        let mut mixed = vec![0.003; 95];
        mixed.extend([20.0; 5]);
        let c = counts(&mixed);
        assert!(c.quantile(0.5).unwrap() <= 0.005);
        assert!(c.quantile(0.95).unwrap() <= 0.005);
        assert!(c.quantile(0.99).unwrap() > 10.0);
        assert_eq!(counts(&[5000.0]).quantile(0.5), Some(600.0));
    }

    #[test]
    fn since_and_add() {
        let before = counts(&[0.2, 0.2]);
        let mut now = before;
        now.observe(3.0);
        let recent = now.since(&before);
        assert_eq!(recent.total(), 1);
        assert!(recent.quantile(0.5).unwrap() > 2.5);
        let mut sum = before;
        sum.add(&recent);
        assert_eq!(sum, now);
    }
}
