//! The ring buffer of samples behind the dashboard's charts: one sample per
//! status poll, at most one per [`MIN_STEP`], kept for [`SPAN`] and never
//! more than [`CAPACITY`] (15 minutes at one a second). A sample holds, per
//! job, a [`Point`] of 20 bytes: 200 jobs sampled every second for 15
//! minutes keep about 3.6 MB; at the default interval of 5 s, a fifth.
//!
//! Series are stored per job and share one time axis; a job's series begins
//! at the first sample that saw it, and a job missing from a sample (removed
//! by a reload) loses its series. Throughput is the change of the job's
//! done and failed totals between two samples over the time between them.
//! Duration percentiles cover the last minute or so: the job's duration
//! counts are remembered every [`CHECKPOINT_EVERY`], and the percentiles
//! come from what was added since the newest checkpoint at least
//! [`PERCENTILE_WINDOW`] old.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use super::durations::DurationCounts;

/// How far back the charts go.
pub const SPAN_SECONDS: u64 = 15 * 60;
pub const SPAN: std::time::Duration = std::time::Duration::from_secs(SPAN_SECONDS);
/// Samples are at least this far apart.
pub const MIN_STEP: std::time::Duration = std::time::Duration::from_secs(1);
/// Samples kept at most.
pub const CAPACITY: usize = (SPAN_SECONDS / MIN_STEP.as_secs()) as usize;
/// How often a job's duration counts are remembered.
pub const CHECKPOINT_EVERY: f64 = 10.0;
/// The percentiles cover at least this many seconds (once the driver has
/// run that long).
pub const PERCENTILE_WINDOW: f64 = 60.0;

/// One job at one sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Point {
    /// Queued and not running, from the last poll.
    pub waiting: u32,
    /// Its processes, in every state.
    pub processes: u32,
    pub busy: u32,
    /// Jobs done and failed (timeouts included) per second since the
    /// sample before.
    pub done: f32,
    pub failed: f32,
}

/// What the supervisor reads of one job for a sample.
#[derive(Debug, Clone, PartialEq)]
pub struct JobReading {
    pub name: String,
    pub waiting: u32,
    pub processes: u32,
    pub busy: u32,
    /// Since the supervisor started.
    pub done_total: u64,
    pub failed_total: u64,
    pub durations: DurationCounts,
}

/// A job's figures as of the latest sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latest {
    /// Jobs done and failed per second.
    pub done: f32,
    pub failed: f32,
    /// Duration percentiles in seconds over about the last minute; null
    /// when no job ended then.
    pub p50: Option<f64>,
    pub p95: Option<f64>,
}

#[derive(Debug, Default)]
struct Series {
    /// The sequence number of `points[0]`.
    start: u64,
    points: VecDeque<Point>,
    /// Totals at the latest sample, for the next one's rates.
    done_total: u64,
    failed_total: u64,
    /// (epoch seconds, duration counts then), oldest first.
    checkpoints: VecDeque<(f64, DurationCounts)>,
    latest: Latest,
}

/// Every sample of the last [`SPAN`].
#[derive(Debug, Default)]
pub struct Samples {
    /// The sequence number of `times[0]`.
    first: u64,
    /// Epoch seconds of each sample.
    times: VecDeque<f64>,
    jobs: BTreeMap<String, Series>,
}

/// A job's series over the samples asked for; null where the job had no
/// sample yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SeriesView {
    pub waiting: Vec<Option<u32>>,
    pub processes: Vec<Option<u32>>,
    pub busy: Vec<Option<u32>>,
    pub done: Vec<Option<f32>>,
    pub failed: Vec<Option<f32>>,
}

/// `GET /api/history`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryView {
    /// Seconds the driver keeps.
    pub span: u64,
    /// Epoch seconds of the samples returned, oldest first.
    pub times: Vec<f64>,
    /// Per job asked for, aligned with `times`.
    pub series: BTreeMap<String, SeriesView>,
    /// Every job's figures as of the latest sample.
    pub latest: BTreeMap<String, Latest>,
}

impl Samples {
    /// Adds a sample taken at `at` (epoch seconds) and drops what is older
    /// than [`SPAN`] or beyond [`CAPACITY`].
    pub fn push(&mut self, at: f64, readings: Vec<JobReading>) {
        let seq = self.first + self.times.len() as u64;
        let previous = self.times.back().copied();
        self.times.push_back(at);
        let mut seen = BTreeMap::new();
        for reading in readings {
            let mut series = self.jobs.remove(&reading.name).unwrap_or_else(|| Series {
                start: seq,
                ..Series::default()
            });
            series.add(at, previous, &reading);
            seen.insert(reading.name, series);
        }
        self.jobs = seen;
        self.evict(at);
    }

    fn evict(&mut self, now: f64) {
        let oldest_kept = now - SPAN_SECONDS as f64;
        while self.times.len() > CAPACITY || self.times.front().is_some_and(|t| *t < oldest_kept) {
            self.times.pop_front();
            self.first += 1;
        }
        for series in self.jobs.values_mut() {
            while series.start < self.first {
                series.points.pop_front();
                series.start += 1;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// The samples taken after `after` (epoch seconds; all when `None`),
    /// with the series of the jobs in `jobs` that have one, and every job's
    /// latest figures.
    pub fn view(&self, after: Option<f64>, jobs: &[String]) -> HistoryView {
        let skip = match after {
            Some(after) => self.times.partition_point(|t| *t <= after),
            None => 0,
        };
        let from = self.first + skip as u64;
        let series = jobs
            .iter()
            .filter_map(|name| Some((name.clone(), self.jobs.get(name)?.view(from, self.end()))))
            .collect();
        HistoryView {
            span: SPAN_SECONDS,
            times: self.times.iter().skip(skip).copied().collect(),
            series,
            latest: self
                .jobs
                .iter()
                .map(|(name, s)| (name.clone(), s.latest))
                .collect(),
        }
    }

    /// One past the newest sequence number.
    fn end(&self) -> u64 {
        self.first + self.times.len() as u64
    }
}

impl Series {
    fn add(&mut self, at: f64, previous: Option<f64>, reading: &JobReading) {
        let fresh = self.points.is_empty();
        let per_second = |now: u64, before: u64| match previous {
            Some(prev) if !fresh && at > prev => {
                // Two decimals are plenty on a chart and keep the JSON short.
                let per_second = now.saturating_sub(before) as f64 / (at - prev);
                ((per_second * 100.0).round() / 100.0) as f32
            }
            _ => 0.0,
        };
        let done = per_second(reading.done_total, self.done_total);
        let failed = per_second(reading.failed_total, self.failed_total);
        self.done_total = reading.done_total;
        self.failed_total = reading.failed_total;
        self.points.push_back(Point {
            waiting: reading.waiting,
            processes: reading.processes,
            busy: reading.busy,
            done,
            failed,
        });
        let recent = self.recent_durations(at, &reading.durations);
        self.latest = Latest {
            done,
            failed,
            p50: recent.quantile(0.5),
            p95: recent.quantile(0.95),
        };
    }

    /// The durations added over about the last [`PERCENTILE_WINDOW`], and
    /// a checkpoint of `now` when one is due.
    fn recent_durations(&mut self, at: f64, now: &DurationCounts) -> DurationCounts {
        if self
            .checkpoints
            .back()
            .is_none_or(|(t, _)| at - t >= CHECKPOINT_EVERY)
        {
            self.checkpoints.push_back((at, *now));
        }
        // Keep one checkpoint at least a window old; drop older ones.
        while self
            .checkpoints
            .get(1)
            .is_some_and(|(t, _)| at - t >= PERCENTILE_WINDOW)
        {
            self.checkpoints.pop_front();
        }
        let base = self
            .checkpoints
            .front()
            .map(|(_, c)| *c)
            .unwrap_or_default();
        now.since(&base)
    }

    /// The points from sequence number `from` to `end` (exclusive), null
    /// before this series began.
    fn view(&self, from: u64, end: u64) -> SeriesView {
        let mut v = SeriesView::default();
        for seq in from..end {
            let point = seq
                .checked_sub(self.start)
                .and_then(|i| self.points.get(i as usize));
            v.waiting.push(point.map(|p| p.waiting));
            v.processes.push(point.map(|p| p.processes));
            v.busy.push(point.map(|p| p.busy));
            v.done.push(point.map(|p| p.done));
            v.failed.push(point.map(|p| p.failed));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(name: &str, waiting: u32, done_total: u64) -> JobReading {
        JobReading {
            name: name.into(),
            waiting,
            processes: 2,
            busy: 1,
            done_total,
            failed_total: 0,
            durations: DurationCounts::default(),
        }
    }

    #[test]
    fn rates_come_from_the_totals_between_samples() {
        let mut s = Samples::default();
        s.push(100.0, vec![reading("a", 3, 10)]);
        s.push(102.0, vec![reading("a", 5, 30)]);
        let v = s.view(None, &["a".into()]);
        assert_eq!(v.times, [100.0, 102.0]);
        let a = &v.series["a"];
        assert_eq!(a.waiting, [Some(3), Some(5)]);
        assert_eq!(a.done, [Some(0.0), Some(10.0)], "20 jobs in 2 s");
        assert_eq!(v.latest["a"].done, 10.0);
    }

    #[test]
    fn a_later_job_is_null_before_its_first_sample_and_a_removed_one_goes() {
        let mut s = Samples::default();
        s.push(1.0, vec![reading("a", 1, 0)]);
        s.push(2.0, vec![reading("a", 1, 0), reading("b", 7, 0)]);
        let v = s.view(None, &["a".into(), "b".into(), "nope".into()]);
        assert_eq!(v.series["b"].waiting, [None, Some(7)]);
        assert!(!v.series.contains_key("nope"));
        s.push(3.0, vec![reading("b", 8, 0)]);
        let v = s.view(None, &["a".into(), "b".into()]);
        assert!(!v.series.contains_key("a"));
        assert!(!v.latest.contains_key("a"));
        assert_eq!(v.series["b"].waiting, [None, Some(7), Some(8)]);
    }

    #[test]
    fn only_samples_after_the_given_time() {
        let mut s = Samples::default();
        for t in 1..=5 {
            s.push(t as f64, vec![reading("a", t, 0)]);
        }
        let v = s.view(Some(3.0), &["a".into()]);
        assert_eq!(v.times, [4.0, 5.0]);
        assert_eq!(v.series["a"].waiting, [Some(4), Some(5)]);
        assert!(s.view(Some(5.0), &["a".into()]).times.is_empty());
    }

    #[test]
    fn keeps_fifteen_minutes_and_at_most_capacity() {
        let mut s = Samples::default();
        for t in 0..2000 {
            s.push(t as f64 * 0.5, vec![reading("a", 0, 0)]);
        }
        assert_eq!(s.len(), CAPACITY, "half-second samples: bounded by count");
        let v = s.view(None, &["a".into()]);
        assert_eq!(v.series["a"].waiting.len(), CAPACITY);
        assert_eq!(v.series["a"].waiting[0], Some(0));

        let mut s = Samples::default();
        for t in 0..400 {
            s.push(t as f64 * 5.0, vec![reading("a", 0, 0)]);
        }
        let v = s.view(None, &[]);
        assert_eq!(v.times.len(), 181, "5 s samples: bounded by the 15 minutes");
        assert_eq!(v.times[0], 1995.0 - 900.0);
    }

    #[test]
    fn percentiles_cover_about_the_last_minute() {
        let mut s = Samples::default();
        let mut durations = DurationCounts::default();
        let mut at = 0.0;
        let push = |s: &mut Samples, durations: &DurationCounts, at: f64| {
            let mut r = reading("a", 0, 0);
            r.durations = *durations;
            s.push(at, vec![r]);
        };
        push(&mut s, &durations, at);
        assert_eq!(s.view(None, &[]).latest["a"].p50, None);
        // Slow jobs first, then only fast ones for two minutes.
        for _ in 0..10 {
            durations.observe(20.0);
        }
        for _ in 0..120 {
            at += 1.0;
            durations.observe(0.002);
            push(&mut s, &durations, at);
        }
        let latest = s.view(None, &[]).latest["a"];
        assert!(
            latest.p95.unwrap() <= 0.0025,
            "{latest:?}: the slow ones are too old"
        );
    }
}
