//! Per-schedule bookkeeping and the rule for what is due: the runs'
//! results and counts as the console, `/api/status` and the metrics see them
//! ([`ScheduleState`]), and [`due`], which decides at a given instant which
//! run to submit and which ones were missed. Pure, so the lateness rules are
//! unit-tested with fixed instants.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

use super::spec::{Priority, Timing};

/// A run is still submitted when the scheduler reaches it at most this late
/// (a busy machine, a paused VM, a clock stepped forward a little). A run
/// further in the past counts as missed, like one that fell while the driver
/// was down: it is not made up.
pub const LATE_GRACE: Duration = Duration::from_secs(60);

/// Counting missed runs stops here: a cron expression can have one per
/// second, and this many of them means hours of delay anyway.
pub const MISSED_COUNT_CAP: u64 = 10_000;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunResult {
    /// A server accepted the background job.
    Submitted,
    /// No server accepted it (all down, refusing, or not answering).
    Failed,
    /// Its time passed without a submission: the scheduler was late by more
    /// than [`LATE_GRACE`], or the previous run was still being submitted.
    Missed,
}

impl RunResult {
    pub const ALL: [RunResult; 3] = [RunResult::Submitted, RunResult::Failed, RunResult::Missed];

    /// The result of [`RunResult::as_str`]'s word.
    pub fn named(word: &str) -> Option<RunResult> {
        RunResult::ALL.into_iter().find(|r| r.as_str() == word)
    }

    /// The `result` label value and the console's word.
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Submitted => "submitted",
            RunResult::Failed => "failed",
            RunResult::Missed => "missed",
        }
    }
}

/// Runs per result since the driver started (kept across reloads that
/// change an entry; dropped with the entry when it is removed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RunCounts {
    pub submitted: u64,
    pub failed: u64,
    pub missed: u64,
}

impl RunCounts {
    pub fn add(&mut self, result: RunResult, n: u64) {
        let slot = match result {
            RunResult::Submitted => &mut self.submitted,
            RunResult::Failed => &mut self.failed,
            RunResult::Missed => &mut self.missed,
        };
        *slot += n;
    }

    pub fn get(&self, result: RunResult) -> u64 {
        match result {
            RunResult::Submitted => self.submitted,
            RunResult::Failed => self.failed,
            RunResult::Missed => self.missed,
        }
    }
}

/// The latest run of a schedule and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastRun {
    /// Its scheduled time (the time in its unique id), not when it was sent.
    pub scheduled: DateTime<Utc>,
    pub result: RunResult,
    /// The server that took it, or why it failed or was missed.
    pub detail: String,
}

impl LastRun {
    /// `submitted to 127.0.0.1:4730`, `failed: <why>`, `missed: <why>`.
    pub fn describe(&self) -> String {
        match self.result {
            RunResult::Submitted => format!("submitted to {}", self.detail),
            other => format!("{}: {}", other.as_str(), self.detail),
        }
    }
}

/// One schedule as the console, `/api/status` and the metrics see it.
/// Serialized for `/api/status`: times as epoch seconds, 0 for none, like
/// the jobs' `lastrun`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleState {
    pub name: String,
    /// `cron `0 3 * * *` (Europe/Berlin)` or `every 30s`.
    pub when: String,
    pub function: String,
    #[serde(serialize_with = "priority_name")]
    pub priority: Priority,
    #[serde(serialize_with = "epoch_or_zero")]
    pub next_run: Option<DateTime<Utc>>,
    #[serde(rename = "last", serialize_with = "last_run_json")]
    pub last_run: Option<LastRun>,
    pub runs: RunCounts,
}

fn priority_name<S: Serializer>(p: &Priority, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.as_str())
}

fn epoch_or_zero<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(t.map_or(0, |t| t.timestamp()))
}

/// `{"run": epoch, "result": "submitted", "message": "..."}`, or null.
fn last_run_json<S: Serializer>(last: &Option<LastRun>, s: S) -> Result<S::Ok, S::Error> {
    last.as_ref()
        .map(|l| {
            serde_json::json!({
                "run": l.scheduled.timestamp(),
                "result": l.result.as_str(),
                "message": l.detail,
            })
        })
        .serialize(s)
}

/// What is due for one schedule whose pending run is `next`, at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The run to submit now: the latest one whose time has come, if the
    /// scheduler is at most [`LATE_GRACE`] late for it.
    pub run: Option<DateTime<Utc>>,
    /// Earlier runs whose time passed too (and the latest, when too late).
    pub missed: u64,
    /// The latest run, when it is missed rather than submitted.
    pub latest_missed: Option<DateTime<Utc>>,
    /// The pending run after this: the first one strictly after `now`.
    pub next: Option<DateTime<Utc>>,
}

/// None while `now` is before `next`. Otherwise at most one run is submitted
/// however many came due: a scheduler that was held up sends the latest run
/// once (as cron and systemd timers do) rather than a burst of stale ones.
pub fn due(timing: &Timing, next: DateTime<Utc>, now: DateTime<Utc>) -> Option<Due> {
    if now < next {
        return None;
    }
    let (latest, earlier) = latest_due(timing, next, now);
    let run = latest.filter(|t| (now - *t).to_std().unwrap_or_default() <= LATE_GRACE);
    Some(Due {
        run,
        missed: earlier + u64::from(run.is_none()),
        latest_missed: if run.is_none() { latest } else { None },
        next: timing.next_after(now),
    })
}

/// The latest run at or before `now`, counting from `next` (itself due), and
/// how many due runs came before it (at most [`MISSED_COUNT_CAP`]).
fn latest_due(
    timing: &Timing,
    next: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, u64) {
    if let Timing::Every(interval) = timing {
        let period = interval.as_secs() as i64;
        let steps = (now.timestamp() - next.timestamp()).div_euclid(period);
        let latest = next + chrono::Duration::seconds(steps * period);
        return (Some(latest), steps as u64);
    }
    let mut latest = next;
    let mut earlier = 0;
    while let Some(t) = timing.next_after(latest).filter(|t| *t <= now) {
        if earlier == MISSED_COUNT_CAP {
            // Stop counting; find the latest from the other end.
            let latest = timing.latest_at_or_before(now).filter(|t| *t >= next);
            return (latest, earlier);
        }
        latest = t;
        earlier += 1;
    }
    (Some(latest), earlier)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn every(text: &str) -> Timing {
        Timing::every(text).unwrap()
    }

    #[test]
    fn nothing_is_due_before_the_next_run() {
        assert_eq!(
            due(
                &every("1m"),
                utc("2025-01-01T00:01:00Z"),
                utc("2025-01-01T00:00:59Z")
            ),
            None
        );
    }

    #[test]
    fn a_run_reached_on_time_is_submitted() {
        let d = due(
            &every("1m"),
            utc("2025-01-01T00:01:00Z"),
            utc("2025-01-01T00:01:00Z"),
        )
        .unwrap();
        assert_eq!(
            d,
            Due {
                run: Some(utc("2025-01-01T00:01:00Z")),
                missed: 0,
                latest_missed: None,
                next: Some(utc("2025-01-01T00:02:00Z")),
            }
        );
    }

    #[test]
    fn a_little_late_still_submits_the_latest_run_once() {
        // Held up for 2.5 s with a run every second: the latest run goes out,
        // the two before it are missed, and nothing is sent twice.
        let d = due(
            &every("1s"),
            utc("2025-01-01T00:00:01Z"),
            utc("2025-01-01T00:00:03.5Z"),
        )
        .unwrap();
        assert_eq!(d.run, Some(utc("2025-01-01T00:00:03Z")));
        assert_eq!(d.missed, 2);
        assert_eq!(d.next, Some(utc("2025-01-01T00:00:04Z")));

        let cron = Timing::cron("0 3 * * *", chrono_tz::Tz::UTC).unwrap();
        let d = due(
            &cron,
            utc("2025-01-01T03:00:00Z"),
            utc("2025-01-01T03:00:40Z"),
        )
        .unwrap();
        assert_eq!((d.run, d.missed), (Some(utc("2025-01-01T03:00:00Z")), 0));
    }

    #[test]
    fn too_late_is_missed_not_made_up() {
        // A machine suspended from 02:59 to 03:05: the 03:00 run is not sent.
        let cron = Timing::cron("0 3 * * *", chrono_tz::Tz::UTC).unwrap();
        let d = due(
            &cron,
            utc("2025-01-01T03:00:00Z"),
            utc("2025-01-01T03:05:00Z"),
        )
        .unwrap();
        assert_eq!(d.run, None);
        assert_eq!(d.missed, 1);
        assert_eq!(d.latest_missed, Some(utc("2025-01-01T03:00:00Z")));
        assert_eq!(d.next, Some(utc("2025-01-02T03:00:00Z")));

        let cron = Timing::cron("*/10 * * * *", chrono_tz::Tz::UTC).unwrap();
        let d = due(
            &cron,
            utc("2025-01-01T03:00:00Z"),
            utc("2025-01-01T03:35:00Z"),
        )
        .unwrap();
        assert_eq!((d.run, d.missed), (None, 4));
        assert_eq!(d.latest_missed, Some(utc("2025-01-01T03:30:00Z")));
        assert_eq!(d.next, Some(utc("2025-01-01T03:40:00Z")));
    }

    #[test]
    fn a_long_outage_counts_missed_runs_up_to_the_cap() {
        // Eight hours suspended, waking up 0.5 s after a run's time: that
        // run is on time, the ones before it are missed.
        let now = utc("2025-01-01T08:00:00.5Z");
        let secondly = Timing::cron("* * * * * *", chrono_tz::Tz::UTC).unwrap();
        let d = due(&secondly, utc("2025-01-01T00:00:00Z"), now).unwrap();
        assert_eq!(d.run, Some(utc("2025-01-01T08:00:00Z")));
        assert_eq!(d.missed, MISSED_COUNT_CAP);
        assert_eq!(d.next, Some(utc("2025-01-01T08:00:01Z")));
        // An interval is counted exactly.
        let d = due(&every("1s"), utc("2025-01-01T00:00:00Z"), now).unwrap();
        assert_eq!(d.run, Some(utc("2025-01-01T08:00:00Z")));
        assert_eq!(d.missed, 8 * 3600);
        let d = due(
            &every("1h"),
            utc("2025-01-01T01:00:00Z"),
            utc("2025-01-01T08:30:00Z"),
        )
        .unwrap();
        assert_eq!((d.run, d.missed), (None, 8));
    }

    #[test]
    fn counts_add_per_result() {
        let mut counts = RunCounts::default();
        counts.add(RunResult::Failed, 1);
        counts.add(RunResult::Missed, 3);
        counts.add(RunResult::Failed, 1);
        assert_eq!(RunResult::ALL.map(|r| counts.get(r)), [0, 2, 3],);
    }

    #[test]
    fn the_status_json_uses_epochs() {
        let state = ScheduleState {
            name: "n".into(),
            when: "every 1s".into(),
            function: "f".into(),
            priority: Priority::High,
            next_run: Some(utc("2025-01-01T00:00:01Z")),
            last_run: Some(LastRun {
                scheduled: utc("2025-01-01T00:00:00Z"),
                result: RunResult::Failed,
                detail: "no server accepted it".into(),
            }),
            runs: RunCounts {
                submitted: 0,
                failed: 1,
                missed: 0,
            },
        };
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "name": "n", "when": "every 1s", "function": "f", "priority": "high",
                "next_run": 1735689601,
                "last": {"run": 1735689600, "result": "failed", "message": "no server accepted it"},
                "runs": {"submitted": 0, "failed": 1, "missed": 0},
            })
        );
    }
}
