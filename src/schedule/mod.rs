//! Scheduled jobs: the driver config's `[[schedule]]` entries, each
//! submitting a background job on a cron expression or a fixed interval.
//! This replaces crontab lines that call `gearman -b -f ...`, with the runs
//! visible in the console, the metrics and `/api/status`.
//!
//! The scheduler is a task of its own, apart from the supervisor's loop:
//! a submission that waits on a slow or dead gearmand never holds up
//! supervision, and a busy supervisor never delays a run. The supervisor
//! holds a [`Schedules`] handle, which is the whole interface: [`Schedules::reload`]
//! for a new configuration, [`Schedules::states`] for what the console,
//! `/api/status` and the metrics show, [`Schedules::stop`] on shutdown.
//!
//! - [`spec`]: a validated entry, its timing (next-run computation, daylight
//!   saving included) and its runs' unique ids.
//! - [`state`]: per-schedule results and counts, and the rule for what is
//!   due when the scheduler wakes up (late, or not at all).
//! - [`submit`]: one run to the first server that accepts it.
//!
//! Rules a user can rely on (README "Scheduled jobs"):
//! - Each run is a background job with the unique id `<name>@<time>`, the
//!   scheduled time in UTC (`nightly@2026-03-29T01:00:00Z`).
//! - Runs that fell while the driver was not running are not made up; at
//!   start the first run is the first one after now.
//! - A run the scheduler reaches late (a busy or paused machine) is still
//!   submitted if it is at most [`state::LATE_GRACE`] late; of several runs
//!   that came due meanwhile only the latest is sent. Others count as missed.
//! - A run that no server accepts is logged and counted as failed; the next
//!   one is tried as usual.

pub mod spec;
pub mod state;
pub mod submit;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

pub use spec::{Priority, ScheduleSpec, Timing};
pub use state::{LastRun, RunCounts, RunResult, ScheduleState};

/// The scheduler re-reads the wall clock at least this often, so that a
/// suspended machine (the monotonic timer stands still) or a clock that was
/// stepped is noticed soon.
const MAX_NAP: Duration = Duration::from_secs(15);

/// The supervisor's handle on the scheduler task.
#[derive(Clone)]
pub struct Schedules {
    shared: Arc<Shared>,
}

struct Shared {
    table: Mutex<Table>,
    wake: Notify,
    servers: Arc<Vec<String>>,
}

#[derive(Default)]
struct Table {
    entries: BTreeMap<String, Entry>,
    /// Bumped for every added or changed entry, so that the result of a run
    /// submitted under an older version does not touch the newer one's state.
    generation: u64,
    stopped: bool,
}

struct Entry {
    spec: Arc<ScheduleSpec>,
    generation: u64,
    next: Option<DateTime<Utc>>,
    last: Option<LastRun>,
    runs: RunCounts,
    /// A run is being submitted; the next one waits for it (or is missed).
    in_flight: bool,
}

/// An entry's state as it crosses an upgrade (see [`Schedules::restore`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carried {
    pub name: String,
    /// [`ScheduleState::when`] in the image that wrote it.
    pub when: String,
    pub next_run: Option<DateTime<Utc>>,
    pub last: Option<LastRun>,
    pub runs: RunCounts,
}

/// One run handed to a submission task.
struct Run {
    spec: Arc<ScheduleSpec>,
    generation: u64,
    at: DateTime<Utc>,
}

impl Schedules {
    /// The schedules of a configuration; nothing runs until [`Schedules::spawn`].
    pub fn new(specs: Vec<ScheduleSpec>, servers: Arc<Vec<String>>) -> Schedules {
        let schedules = Schedules {
            shared: Arc::new(Shared {
                table: Mutex::new(Table::default()),
                wake: Notify::new(),
                servers,
            }),
        };
        let now = Utc::now();
        let mut table = schedules.table();
        for spec in specs {
            let name = spec.name.clone();
            let entry = table.new_entry(spec, now);
            tracing::info!("schedule {name}: {}", entry.describe());
            table.entries.insert(name, entry);
        }
        drop(table);
        schedules
    }

    /// Starts the scheduler task (on the current tokio runtime).
    pub fn spawn(&self) {
        tokio::spawn(run(self.shared.clone()));
    }

    /// Applies a new configuration's entries: unchanged ones keep their next
    /// run, changed ones are rescheduled from now (keeping their last run and
    /// counts), removed ones stop. Returns one line per change.
    pub fn reload(&self, specs: Vec<ScheduleSpec>) -> Vec<String> {
        let now = Utc::now();
        let mut table = self.table();
        let mut old = std::mem::take(&mut table.entries);
        let mut lines = Vec::new();
        for spec in specs {
            let name = spec.name.clone();
            let entry = match old.remove(&name) {
                Some(entry) if *entry.spec == spec => entry,
                Some(previous) => {
                    let mut entry = table.new_entry(spec, now);
                    entry.last = previous.last;
                    entry.runs = previous.runs;
                    lines.push(format!("schedule {name}: changed; {}", entry.describe()));
                    entry
                }
                None => {
                    let entry = table.new_entry(spec, now);
                    lines.push(format!("schedule {name}: added; {}", entry.describe()));
                    entry
                }
            };
            table.entries.insert(name, entry);
        }
        lines.extend(old.keys().map(|name| format!("schedule {name}: removed")));
        drop(table);
        self.shared.wake.notify_one();
        lines
    }

    /// Every schedule's state, sorted by name.
    pub fn states(&self) -> Vec<ScheduleState> {
        self.table()
            .entries
            .values()
            .map(|e| ScheduleState {
                name: e.spec.name.clone(),
                when: e.spec.timing.to_string(),
                function: e.spec.function.clone(),
                priority: e.spec.priority,
                next_run: e.next,
                last_run: e.last.clone(),
                runs: e.runs,
            })
            .collect()
    }

    /// Takes over an entry's state from the image before an upgrade: its
    /// counts and last run, and its pending run if its timing is the same
    /// (so that a run falling due during the upgrade is still submitted, or
    /// counted as missed, rather than skipped). Ignored for an entry the
    /// configuration no longer has.
    pub fn restore(&self, carried: Carried) {
        let mut table = self.table();
        let Some(entry) = table.entries.get_mut(&carried.name) else {
            return;
        };
        entry.runs = carried.runs;
        entry.last = carried.last;
        if carried.next_run.is_some() && entry.spec.timing.to_string() == carried.when {
            entry.next = carried.next_run;
        }
        drop(table);
        self.shared.wake.notify_one();
    }

    /// No run is submitted after this (the supervisor is shutting down).
    pub fn stop(&self) {
        self.table().stopped = true;
        self.shared.wake.notify_one();
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.shared.table()
    }
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        // Nothing panics while holding the lock; recover the data if it did.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Entry {
    fn describe(&self) -> String {
        let next = self.next.map_or_else(
            || "no next run".to_string(),
            |t| format!("next run {}", spec::rfc3339(t)),
        );
        format!(
            "{} submits {} ({} priority), {next}",
            self.spec.timing,
            self.spec.function,
            self.spec.priority.as_str()
        )
    }
}

impl Table {
    fn new_entry(&mut self, spec: ScheduleSpec, now: DateTime<Utc>) -> Entry {
        self.generation += 1;
        Entry {
            next: spec.timing.next_after(now),
            spec: Arc::new(spec),
            generation: self.generation,
            last: None,
            runs: RunCounts::default(),
            in_flight: false,
        }
    }

    /// Advances every entry to `now`: returns the runs to submit and the
    /// earliest pending run.
    fn take_due(&mut self, now: DateTime<Utc>) -> (Vec<Run>, Option<DateTime<Utc>>) {
        let runs = self
            .entries
            .values_mut()
            .filter_map(|entry| entry.advance(now))
            .collect();
        let earliest = self.entries.values().filter_map(|e| e.next).min();
        (runs, earliest)
    }

    /// A submission ended: count it and show it, unless its entry is gone.
    fn record(&mut self, run: &Run, result: RunResult, detail: String) {
        let Some(entry) = self.entries.get_mut(&run.spec.name) else {
            return;
        };
        if entry.generation == run.generation {
            entry.in_flight = false;
        }
        entry.runs.add(result, 1);
        entry.record_last(run.at, result, detail);
    }
}

impl Entry {
    /// Moves this entry to `now`: counts and logs the runs that are missed,
    /// and returns the one to submit, if any.
    fn advance(&mut self, now: DateTime<Utc>) -> Option<Run> {
        let due = state::due(&self.spec.timing, self.next?, now)?;
        self.next = due.next;
        let spec = self.spec.clone();
        let name = &spec.name;
        if due.missed > 0 {
            let at_least = if due.missed >= state::MISSED_COUNT_CAP {
                "at least "
            } else {
                ""
            };
            let why = format!(
                "the scheduler reached it more than {}s late",
                state::LATE_GRACE.as_secs()
            );
            tracing::warn!(
                "schedule {name}: {at_least}{} run(s) missed: {why}",
                due.missed
            );
            self.runs.add(RunResult::Missed, due.missed);
            if let Some(at) = due.latest_missed {
                self.record_last(at, RunResult::Missed, why);
            }
        }
        let at = due.run?;
        if self.in_flight {
            let why = "the previous run was still being submitted".to_string();
            tracing::warn!("schedule {name}: run {} missed: {why}", spec.unique_id(at));
            self.runs.add(RunResult::Missed, 1);
            self.record_last(at, RunResult::Missed, why);
            return None;
        }
        self.in_flight = true;
        Some(Run {
            spec,
            generation: self.generation,
            at,
        })
    }

    fn record_last(&mut self, at: DateTime<Utc>, result: RunResult, detail: String) {
        if self.last.as_ref().is_some_and(|l| l.scheduled > at) {
            return;
        }
        self.last = Some(LastRun {
            scheduled: at,
            result,
            detail,
        });
    }
}

/// The `check` table of schedules: name, timing, function, priority and the
/// next run from `now`, so a cron expression can be tried before it is live.
pub fn table(specs: &[ScheduleSpec], now: DateTime<Utc>) -> String {
    let header = ["SCHEDULE", "WHEN", "FUNCTION", "PRIORITY", "NEXT RUN"].map(String::from);
    let rows: Vec<[String; 5]> = specs
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                s.timing.to_string(),
                s.function.clone(),
                s.priority.as_str().to_string(),
                s.timing
                    .next_after(now)
                    .map_or_else(|| "never".into(), spec::rfc3339),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    std::iter::once(&header)
        .chain(&rows)
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            format!("{}\n", cells.join("  ").trim_end())
        })
        .collect()
}

/// The scheduler task: sleeps until the earliest pending run (or a reload),
/// hands due runs to submission tasks, and repeats until stopped.
async fn run(shared: Arc<Shared>) {
    loop {
        let now = Utc::now();
        let (runs, earliest) = {
            let mut table = shared.table();
            if table.stopped {
                return;
            }
            table.take_due(now)
        };
        for run in runs {
            tokio::spawn(submit_run(shared.clone(), run));
        }
        let nap = earliest.map(|t| (t - now).to_std().unwrap_or_default().min(MAX_NAP));
        match nap {
            Some(nap) => {
                tokio::select! {
                    _ = tokio::time::sleep(nap) => {}
                    _ = shared.wake.notified() => {}
                }
            }
            None => shared.wake.notified().await,
        }
    }
}

async fn submit_run(shared: Arc<Shared>, run: Run) {
    let name = &run.spec.name;
    let unique = run.spec.unique_id(run.at);
    let (result, detail) = match submit::submit(&shared.servers, &run.spec, &unique).await {
        Ok(accepted) => {
            tracing::info!(
                "schedule {name}: submitted {unique} to {} (job {})",
                accepted.server,
                accepted.handle
            );
            (RunResult::Submitted, accepted.server)
        }
        Err(reason) => {
            tracing::warn!("schedule {name}: run {unique} failed: {reason}");
            (RunResult::Failed, reason)
        }
    };
    shared.table().record(&run, result, detail);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn spec(name: &str, every: &str, workload: &str) -> ScheduleSpec {
        ScheduleSpec {
            name: name.into(),
            timing: Timing::every(every).unwrap(),
            function: "F::f".into(),
            workload: Bytes::copy_from_slice(workload.as_bytes()),
            priority: Priority::Normal,
        }
    }

    fn servers() -> Arc<Vec<String>> {
        Arc::new(vec!["127.0.0.1:1".into()])
    }

    #[test]
    fn reload_reports_added_changed_and_removed_entries() {
        let schedules = Schedules::new(
            vec![
                spec("keep", "1h", "a"),
                spec("change", "1h", "a"),
                spec("drop", "1h", "a"),
            ],
            servers(),
        );
        schedules
            .table()
            .entries
            .get_mut("change")
            .unwrap()
            .runs
            .add(RunResult::Failed, 2);
        let lines = schedules.reload(vec![
            spec("keep", "1h", "a"),
            spec("change", "1h", "b"),
            spec("new", "5m", ""),
        ]);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].starts_with("schedule change: changed; every 1h submits F::f"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("schedule new: added; every 5m submits F::f"),
            "{lines:?}"
        );
        assert_eq!(lines[2], "schedule drop: removed");
        let states = schedules.states();
        let names: Vec<&str> = states.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["change", "keep", "new"]);
        assert_eq!(states[0].runs.failed, 2, "a changed entry keeps its counts");
    }

    #[test]
    fn an_unchanged_entry_keeps_its_pending_run() {
        let schedules = Schedules::new(vec![spec("keep", "1h", "a")], servers());
        let pending = Utc::now() - chrono::Duration::seconds(1);
        schedules.table().entries.get_mut("keep").unwrap().next = Some(pending);
        assert!(schedules.reload(vec![spec("keep", "1h", "a")]).is_empty());
        assert_eq!(schedules.states()[0].next_run, Some(pending));
    }

    #[test]
    fn a_restored_entry_keeps_its_counts_and_its_pending_run_if_its_timing_is_the_same() {
        let schedules = Schedules::new(
            vec![spec("same", "1h", "a"), spec("retimed", "5m", "a")],
            servers(),
        );
        let pending = Utc::now() - chrono::Duration::seconds(1);
        let last = LastRun {
            scheduled: pending - chrono::Duration::hours(1),
            result: RunResult::Submitted,
            detail: "127.0.0.1:1".into(),
        };
        let carried = |name: &str| Carried {
            name: name.into(),
            when: "every 1h".into(),
            next_run: Some(pending),
            last: Some(last.clone()),
            runs: RunCounts {
                submitted: 7,
                failed: 1,
                missed: 2,
            },
        };
        let retimed_next = schedules.states()[0].next_run;
        for name in ["same", "retimed", "gone"] {
            schedules.restore(carried(name));
        }
        let states = schedules.states();
        let (retimed, same) = (&states[0], &states[1]);
        assert_eq!(same.next_run, Some(pending), "a run due meanwhile is kept");
        assert_eq!(same.runs.submitted, 7);
        assert_eq!(same.last_run.as_ref(), Some(&last));
        assert_eq!(retimed.next_run, retimed_next, "its own timing decides");
        assert_eq!(retimed.runs.missed, 2, "counts carry over regardless");
        assert_eq!(states.len(), 2);
    }

    #[test]
    fn a_run_still_in_flight_makes_the_next_one_missed() {
        let schedules = Schedules::new(vec![spec("slow", "1s", "")], servers());
        let start = Utc::now() + chrono::Duration::seconds(5);
        let mut table = schedules.table();
        table.entries.get_mut("slow").unwrap().next = Some(start);
        let (runs, _) = table.take_due(start);
        assert_eq!(runs.len(), 1);
        let (again, _) = table.take_due(start + chrono::Duration::seconds(1));
        assert!(
            again.is_empty(),
            "no second submission while one is in flight"
        );
        let entry = &table.entries["slow"];
        assert_eq!(entry.runs.missed, 1);
        assert_eq!(entry.last.as_ref().unwrap().result, RunResult::Missed);
        table.record(&runs[0], RunResult::Submitted, "127.0.0.1:1".into());
        let entry = &table.entries["slow"];
        assert_eq!((entry.runs.submitted, entry.in_flight), (1, false));
        assert_eq!(
            entry.last.as_ref().unwrap().result,
            RunResult::Missed,
            "an older run's result does not hide a newer one"
        );
    }

    #[test]
    fn the_check_table_shows_the_next_run() {
        let now = DateTime::parse_from_rfc3339("2025-01-01T10:02:17Z")
            .unwrap()
            .with_timezone(&Utc);
        let table = table(&[spec("tick", "5m", "")], now);
        assert_eq!(
            table,
            "SCHEDULE  WHEN      FUNCTION  PRIORITY  NEXT RUN\n\
             tick      every 5m  F::f      normal    2025-01-01T10:05:00Z\n"
        );
    }
}
