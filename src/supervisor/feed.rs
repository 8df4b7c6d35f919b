//! Feeds the dashboard's [`crate::history`] from the loop's hooks (see
//! `observe`): a sample of every job when a status poll comes in (at most
//! one per [`MIN_STEP`]), and an event per process start, exit and new
//! crash-loop backoff. It reads what the supervisor already tracks (the
//! last poll, the pools, the jobs' tallies, the recorder's duration counts)
//! and adds nothing to the handling of a job: a sample costs one pass over
//! the jobs once a second at most, an event one push per process's life.

use std::collections::HashMap;
use std::time::Instant;

use super::events::{ExitCause, StopReason};
use super::{spawn, Supervisor, WorkerId};
use crate::history::events::NewEvent;
use crate::history::samples::MIN_STEP;
use crate::history::{JobReading, Shared};
use crate::metrics::cause_label;
use crate::policy::{ProcState, StartReason};

/// The supervisor's side of the history.
pub struct Feed {
    pub shared: Shared,
    sampled_at: Option<Instant>,
    /// The crash-loop backoff last reported per job, so that each is
    /// reported once.
    backoffs: HashMap<String, Instant>,
}

impl Feed {
    pub fn new(shared: Shared) -> Feed {
        Feed {
            shared,
            sampled_at: None,
            backoffs: HashMap::new(),
        }
    }

    fn push(&self, event: NewEvent) {
        self.shared.lock().events.push(now_seconds(), event);
    }
}

fn now_seconds() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

impl Supervisor {
    /// A status poll came in: a sample, unless the last is under a second old.
    pub(super) fn feed_sample(&mut self) {
        let Some(feed) = self.feed.as_mut() else {
            return;
        };
        if feed.sampled_at.is_some_and(|t| t.elapsed() < MIN_STEP) {
            return;
        }
        feed.sampled_at = Some(Instant::now());
        let readings = self.job_readings();
        let Some(feed) = self.feed.as_ref() else {
            return;
        };
        feed.shared.lock().samples.push(now_seconds(), readings);
    }

    fn job_readings(&self) -> Vec<JobReading> {
        self.jobs
            .iter()
            .filter(|(_, job)| !job.removed)
            .map(|(name, job)| {
                let busy = job
                    .procs
                    .values()
                    .filter(|p| p.state == ProcState::Busy)
                    .count();
                JobReading {
                    name: name.clone(),
                    waiting: job.queue(&self.status).0 as u32,
                    processes: job.procs.len() as u32,
                    busy: busy as u32,
                    done_total: job.tally.done,
                    failed_total: job.tally.failed + job.tally.timeouts,
                    durations: self
                        .metrics
                        .as_ref()
                        .map(|m| m.durations(name))
                        .unwrap_or_default(),
                }
            })
            .collect()
    }

    pub(super) fn feed_start(&self, name: &str, id: WorkerId, reason: StartReason) {
        let Some(feed) = self.feed.as_ref() else {
            return;
        };
        let (cause, why) = match reason {
            StartReason::BelowMin => ("min", "(min_processes)"),
            StartReason::Backlog => ("backlog", "for a backlog"),
        };
        feed.push(NewEvent {
            job: name.to_string(),
            pid: id.pid(),
            kind: "start",
            cause,
            text: format!("{} started {why}", id.noun()),
        });
    }

    /// A process (or slot) ended; it is still listed.
    pub(super) fn feed_exit(
        &self,
        name: &str,
        id: WorkerId,
        status: Option<&std::process::ExitStatus>,
        cause: &ExitCause,
        killed_by_operator: bool,
    ) {
        let Some(feed) = self.feed.as_ref() else {
            return;
        };
        let described = match status {
            Some(status) => spawn::describe_exit(status),
            None => format!("{} ended", id.noun()),
        };
        let stop_signal = self.jobs.get(name).map(|j| j.spec.stop_signal);
        let text = match (cause, status, stop_signal) {
            (ExitCause::Requested(StopReason::Timeout), _, _) => described,
            (ExitCause::Requested(_), Some(status), Some(signal)) => {
                spawn::describe_stop(status, signal)
            }
            (ExitCause::Requested(_), _, _) => described,
            (
                ExitCause::Unexpected(why)
                | ExitCause::ProtocolError(why)
                | ExitCause::StartFailed(why),
                _,
                _,
            ) => why.clone(),
        };
        feed.push(NewEvent {
            job: name.to_string(),
            pid: id.pid(),
            kind: "exit",
            cause: cause_label(cause, killed_by_operator),
            text,
        });
    }

    /// After an exit or a failed start: reports a crash-loop backoff that
    /// began just now.
    pub(super) fn feed_backoff(&mut self, name: &str) {
        let Some(job) = self.jobs.get(name) else {
            return;
        };
        let Some(feed) = self.feed.as_mut() else {
            return;
        };
        let now = Instant::now();
        let (Some(until), Some(delay)) = (job.blocked_until, job.backoff(now)) else {
            return;
        };
        if feed.backoffs.get(name) == Some(&until) {
            return;
        }
        feed.backoffs.insert(name.to_string(), until);
        let text = format!(
            "Crash loop: {} quick failure(s), next start in {}s; {}",
            job.failures,
            delay.as_secs(),
            job.lasterror_msg
        );
        feed.push(NewEvent {
            job: name.to_string(),
            pid: None,
            kind: "crash_loop",
            cause: "backoff",
            text,
        });
    }
}
