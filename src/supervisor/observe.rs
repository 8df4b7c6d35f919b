//! How the supervisor is seen from outside: the status view (behind
//! `/api/status` and the console's `status` and `ps`), and the one place
//! that feeds the metrics: a call per process event, process start, poll,
//! reload and sampling round, each from the loop's own hook (which also
//! feed the dashboard's history, see `feed`). With the HTTP
//! listener off there is no recorder and no sampling, and these cost a
//! branch.

use std::time::Instant;

use tokio::sync::mpsc;

use super::events::Event;
use super::{pools, sampling, Job, Proc, Supervisor, WorkerId};
use crate::command::view::{seconds, JobView, Overview, ProcessView, ServerView, StateCounts};
use crate::command::ReloadOutcome;
use crate::policy::{ProcState, StartReason};

/// One sampling round's readings, by PID.
pub type Samples = Vec<(u32, sampling::Usage)>;

/// Readings are taken each interval, but not more often than this.
const MIN_SAMPLING_GAP: std::time::Duration = std::time::Duration::from_secs(1);

impl Supervisor {
    /// Before the loop acts on a process event (the process is still listed).
    pub(super) fn observe_event(&mut self, event: &Event) {
        if let Event::Exited {
            id, status, cause, ..
        } = event
        {
            if let Some(name) = self.owner.get(id) {
                let killed = self.console_killed.contains(id);
                self.feed_exit(name, *id, status.as_ref(), cause, killed);
            }
        }
        let Some(metrics) = self.metrics.as_mut() else {
            return;
        };
        // Half of all events; nothing to count in them.
        if matches!(
            event,
            Event::Busy { .. } | Event::Retiring { .. } | Event::Report { .. }
        ) {
            return;
        }
        let id = event.id();
        let Some((name, job)) = self
            .owner
            .get(&id)
            .and_then(|name| Some((name, self.jobs.get(name)?)))
        else {
            return;
        };
        let killed = matches!(event, Event::Exited { .. }) && self.console_killed.contains(&id);
        metrics.on_event(name, job, event, killed);
    }

    /// A process (or slot) was started for `reason`.
    pub(super) fn observe_start(&mut self, name: &str, id: WorkerId, reason: StartReason) {
        self.feed_start(name, id, reason);
        let Some(metrics) = self.metrics.as_mut() else {
            return;
        };
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        if reason == StartReason::Backlog {
            if let Some(proc) = job.procs.get_mut(&id) {
                proc.backlog_seen = Some(self.polled_at);
            }
        }
        metrics.on_start(name, job, reason);
    }

    /// A poll's snapshot has just been taken in.
    pub(super) fn observe_poll(&mut self) {
        self.polled_at = Instant::now();
        if let Some(metrics) = self.metrics.as_mut() {
            metrics.on_poll(&self.status);
        }
        self.feed_sample();
    }

    pub(super) fn observe_reload(&mut self, outcome: &ReloadOutcome) {
        if let Some(metrics) = self.metrics.as_mut() {
            metrics.on_reload(matches!(outcome, ReloadOutcome::Applied(_)));
        }
    }

    /// Sets the gauges of the named jobs; when they are all the jobs, also
    /// drops the series of jobs that are gone.
    pub(super) fn refresh_gauges(&mut self, names: &[String]) {
        let Some(metrics) = self.metrics.as_mut() else {
            return;
        };
        let now = Instant::now();
        for name in names {
            if let Some(job) = self.jobs.get(name).filter(|j| has_series(j)) {
                metrics.refresh(name, job, now);
            }
        }
        if names.len() >= self.jobs.len() {
            let jobs = &self.jobs;
            metrics.retain_jobs(|name| jobs.get(name).is_some_and(has_series));
        }
    }

    /// Starts a sampling round off the loop; its readings come back on `out`.
    pub(super) fn sample_usage(&mut self, out: &mpsc::UnboundedSender<Samples>) {
        if self.metrics.is_none()
            || self
                .sampled_at
                .is_some_and(|t| t.elapsed() < MIN_SAMPLING_GAP)
        {
            return;
        }
        self.sampled_at = Some(Instant::now());
        // Slots have no process to read.
        let pids: Vec<u32> = self.owner.keys().filter_map(WorkerId::pid).collect();
        let out = out.clone();
        tokio::spawn(async move {
            let _ = out.send(sampling::read_all(pids).await);
        });
    }

    /// A sampling round's readings: per process CPU and memory, per job the
    /// CPU used since the last round and the memory now.
    pub(super) fn on_usage(&mut self, samples: Samples) {
        let now = Instant::now();
        let mut used: std::collections::HashMap<&str, f64> = std::collections::HashMap::new();
        let by_pid: std::collections::HashMap<u32, WorkerId> = self
            .owner
            .keys()
            .filter_map(|id| Some((id.pid()?, *id)))
            .collect();
        for (pid, usage) in samples {
            let Some(id) = by_pid.get(&pid) else {
                continue;
            };
            let Some(name) = self.owner.get(id) else {
                continue;
            };
            if let Some(proc) = self.jobs.get_mut(name).and_then(|j| j.procs.get_mut(id)) {
                *used.entry(name.as_str()).or_default() += proc.usage.update(usage, now);
            }
        }
        let Some(metrics) = self.metrics.as_mut() else {
            return;
        };
        for (name, job) in self.jobs.iter().filter(|(_, j)| has_series(j)) {
            let resident = job
                .procs
                .values()
                .filter_map(|p| p.usage.last.map(|u| u.rss_bytes))
                .sum();
            let cpu = used.get(name.as_str()).copied().unwrap_or(0.0);
            metrics.on_usage(name, job, cpu, resident);
        }
    }

    /// The status view, built in one pass over the jobs.
    pub(super) fn overview(&self) -> Overview {
        Overview {
            version: crate::version(),
            started: self.started_epoch,
            servers: self.server_views(),
            jobs: self.job_views(),
            processes: self.process_views(),
            schedules: self.schedules.states(),
        }
    }

    fn server_views(&self) -> Vec<ServerView> {
        let polled = &self.status.servers;
        self.servers
            .iter()
            .map(|address| ServerView {
                address: address.clone(),
                up: polled.iter().any(|s| s.address == *address && s.up()),
            })
            .collect()
    }

    /// Every listed job, sorted by name.
    pub(super) fn job_views(&self) -> Vec<JobView> {
        self.jobs
            .iter()
            .filter(|(_, j)| !j.removed)
            .map(|(name, job)| self.job_view(name, job))
            .collect()
    }

    fn job_view(&self, name: &str, job: &Job) -> JobView {
        let mut processes = StateCounts::default();
        for proc in job.procs.values() {
            match proc.state {
                ProcState::Starting => processes.starting += 1,
                ProcState::Idle { .. } => processes.idle += 1,
                ProcState::Busy => processes.busy += 1,
                ProcState::Stopping => processes.stopping += 1,
            }
        }
        let (waiting, running) = job.queue(&self.status);
        JobView {
            name: name.to_string(),
            min: job.min,
            max: job.max,
            processes,
            waiting,
            running,
            workers: job.workers(&self.status),
            lastrun: job.lastrun,
            lasterror: job.lasterror,
            message: job.lasterror_msg.clone(),
            done: job.tally.done,
            failed: job.tally.failed,
            timeouts: job.tally.timeouts,
        }
    }

    /// Every process, sorted by job and PID.
    pub(super) fn process_views(&self) -> Vec<ProcessView> {
        let now = Instant::now();
        self.jobs
            .iter()
            .flat_map(|(name, job)| {
                job.procs
                    .iter()
                    .map(move |(id, proc)| process_view(*id, name, proc, now))
            })
            .collect()
    }
}

/// A job removed by a reload keeps its series until its last process is gone.
fn has_series(job: &Job) -> bool {
    !(job.removed && job.procs.is_empty())
}

fn process_view(id: WorkerId, job: &str, proc: &Proc, now: Instant) -> ProcessView {
    let current = proc.current.as_ref();
    // Sampled while the HTTP listener is on; read now otherwise (`ps`), or
    // when the reading caught the process in its exec (no memory mapped yet).
    let rss = proc
        .usage
        .last
        .map(|usage| usage.rss_bytes)
        .filter(|bytes| *bytes > 0)
        .or_else(|| id.pid().and_then(pools::rss_kib).map(|kib| kib * 1024));
    ProcessView {
        pid: id.pid(),
        job: job.to_string(),
        state: proc.state_name(),
        function: current.map(|(f, _)| String::from_utf8_lossy(f).into_owned()),
        busy_for: current.map(|(_, since)| seconds(now.saturating_duration_since(*since))),
        jobs: proc.jobs_done,
        uptime: seconds(now.saturating_duration_since(proc.started)),
        rss,
        cpu: proc.usage.cpu_percent.map(|p| (p * 10.0).round() / 10.0),
    }
}
