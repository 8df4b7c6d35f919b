//! The supervisor's side of the metrics: one call per process event, process
//! start, poll, reload and sampling round, each turning what the supervisor
//! already knows into counts. Per job (and per function) the series are
//! created once and their handles kept, so that the hot path (a job ending)
//! is an atomic add and a histogram observation.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::families::{
    CauseLabels, Families, FloatCounter, FloatGauge, FunctionLabels, JobLabels, OutcomeLabels,
    ReasonLabels, ResultLabels, ServerFunctionLabels, ServerLabels, StateLabels, CAUSES, OUTCOMES,
    START_REASONS, STATES,
};
use super::Exposition;
use crate::config::JobSpec;
use crate::gearman::status::StatusSnapshot;
use crate::history::DurationCounts;
use crate::policy::{ProcState, StartReason};
use crate::supervisor::events::{Event, ExitCause, JobOutcome, StopReason};
use crate::supervisor::Job;

/// Feeds the metric families from the supervisor's loop.
pub struct Recorder {
    pub(super) f: Families,
    exposition: Exposition,
    pub(super) jobs: HashMap<String, JobHandles>,
    /// The (server, function) rows the last poll set.
    gearmand_rows: HashSet<ServerFunctionLabels>,
}

/// A job's series, created once.
pub(super) struct JobHandles {
    /// The spec the function series were made for.
    spec: Arc<JobSpec>,
    pub(super) functions: HashMap<Bytes, FunctionHandles>,
    states: [Gauge; 4],
    min: Gauge,
    max: Gauge,
    backoff: FloatGauge,
    resident: Gauge,
    pub(super) cpu: FloatCounter,
    pub(super) starts: [Counter; 2],
    pub(super) exits: [Counter; 12],
    scale_up: Histogram,
}

pub(super) struct FunctionHandles {
    pub(super) outcomes: [Counter; 4],
    duration: Histogram,
    /// The same observations, for the dashboard's percentiles.
    durations: DurationCounts,
}

fn job_labels(job: &str) -> JobLabels {
    JobLabels {
        job: job.to_string(),
    }
}

/// The `cause` label of a process's end. `killed` is an operator's `kill`
/// or `killall`; a process that dies on its own, also by a signal from
/// elsewhere, has crashed.
pub fn cause_label(cause: &ExitCause, killed_by_operator: bool) -> &'static str {
    if killed_by_operator {
        return "killed";
    }
    match cause {
        ExitCause::Requested(reason) => match reason {
            StopReason::Idle => "idle",
            StopReason::MaxJobs => "max_jobs",
            StopReason::MaxLifetime => "max_lifetime",
            StopReason::MaxRss => "max_rss",
            StopReason::Timeout => "timeout",
            StopReason::Reload => "reload",
            StopReason::Shutdown => "shutdown",
            StopReason::Killed => "killed",
            StopReason::Upgrade => "upgrade",
        },
        ExitCause::Unexpected(_) => "crash",
        ExitCause::ProtocolError(_) => "protocol_error",
        ExitCause::StartFailed(_) => "start_timeout",
    }
}

fn outcome_index(outcome: &JobOutcome) -> usize {
    match outcome {
        JobOutcome::Done => 0,
        JobOutcome::Failed(_) => 1,
        JobOutcome::TimedOut(_) => 2,
        JobOutcome::Requeued => 3,
    }
}

fn state_index(state: ProcState) -> usize {
    match state {
        ProcState::Starting => 0,
        ProcState::Idle { .. } => 1,
        ProcState::Busy => 2,
        ProcState::Stopping => 3,
    }
}

fn index_of(labels: &[&str], label: &str) -> usize {
    labels.iter().position(|l| *l == label).unwrap_or(0)
}

impl Recorder {
    pub fn new(f: Families, exposition: Exposition) -> Recorder {
        Recorder {
            f,
            exposition,
            jobs: HashMap::new(),
            gearmand_rows: HashSet::new(),
        }
    }

    /// The registry, for the thread that serves `/metrics`.
    pub fn exposition(&self) -> Exposition {
        self.exposition.clone()
    }

    pub(super) fn handles(&mut self, name: &str, job: &Job) -> &mut JobHandles {
        handles(&self.f, &mut self.jobs, name, job)
    }

    /// Drops the series of every job for which `keep` says no.
    pub fn retain_jobs(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self.jobs.keys().filter(|n| !keep(n)).cloned().collect();
        for name in gone {
            if let Some(handles) = self.jobs.remove(&name) {
                self.forget_job(&name, &handles);
            }
        }
    }

    fn forget_job(&self, name: &str, handles: &JobHandles) {
        let f = &self.f;
        let labels = job_labels(name);
        for state in STATES {
            f.processes.remove(&StateLabels {
                job: name.to_string(),
                state,
            });
        }
        for reason in START_REASONS {
            f.process_starts.remove(&ReasonLabels {
                job: name.to_string(),
                reason,
            });
        }
        for cause in CAUSES {
            f.process_exits.remove(&CauseLabels {
                job: name.to_string(),
                cause,
            });
        }
        f.processes_min.remove(&labels);
        f.processes_max.remove(&labels);
        f.crash_loop_backoff.remove(&labels);
        f.workers_resident.remove(&labels);
        f.workers_cpu.remove(&labels);
        f.scale_up.remove(&labels);
        for function in handles.functions.keys() {
            forget_function(f, name, &String::from_utf8_lossy(function));
        }
    }

    /// Sets a job's gauges from its state now: processes by state, limits,
    /// crash-loop backoff.
    pub fn refresh(&mut self, name: &str, job: &Job, now: Instant) {
        let mut counts = [0i64; 4];
        for proc in job.procs.values() {
            counts[state_index(proc.state)] += 1;
        }
        let backoff = job.backoff(now).map_or(0.0, |d| d.as_secs_f64());
        let h = self.handles(name, job);
        for (gauge, n) in h.states.iter().zip(counts) {
            gauge.set(n);
        }
        h.min.set(i64::from(job.min));
        h.max.set(i64::from(job.max));
        h.backoff.set(backoff);
    }

    /// One process event, before the supervisor acts on it (the process is
    /// still listed in `job`).
    pub fn on_event(&mut self, name: &str, job: &Job, event: &Event, killed_by_operator: bool) {
        match event {
            Event::Ready { id } => {
                let seen = job.procs.get(id).and_then(|p| p.backlog_seen);
                if let Some(seen) = seen {
                    let h = self.handles(name, job);
                    h.scale_up.observe(seen.elapsed().as_secs_f64());
                }
            }
            Event::JobEnded {
                function,
                outcome,
                duration,
                ..
            } => {
                let f = self.function(name, job, function);
                f.outcomes[outcome_index(outcome)].inc();
                if *outcome != JobOutcome::Requeued {
                    let seconds = duration.as_secs_f64();
                    f.duration.observe(seconds);
                    f.durations.observe(seconds);
                }
            }
            Event::Exited {
                id,
                cause,
                requeued,
                usage,
                ..
            } => {
                let proc = job.procs.get(id);
                let cpu_before = proc
                    .and_then(|p| p.usage.last)
                    .map_or(0.0, |u| u.cpu_seconds);
                let resident: u64 = job
                    .procs
                    .iter()
                    .filter(|(p, _)| *p != id)
                    .filter_map(|(_, p)| p.usage.last.map(|u| u.rss_bytes))
                    .sum();
                if let Some(function) = requeued {
                    self.function(name, job, function).outcomes[3].inc();
                }
                let h = self.handles(name, job);
                h.exits[index_of(&CAUSES, cause_label(cause, killed_by_operator))].inc();
                if let Some(usage) = usage {
                    h.cpu.inc_by((usage.cpu_seconds - cpu_before).max(0.0));
                }
                h.resident.set(resident as i64);
            }
            Event::Busy { .. }
            | Event::Retiring { .. }
            | Event::Report { .. }
            | Event::HandedOver { .. } => {}
        }
    }

    /// The job's durations so far, over all its functions.
    pub fn durations(&self, name: &str) -> DurationCounts {
        let mut sum = DurationCounts::default();
        for f in self
            .jobs
            .get(name)
            .into_iter()
            .flat_map(|h| h.functions.values())
        {
            sum.add(&f.durations);
        }
        sum
    }

    fn function(&mut self, name: &str, job: &Job, function: &Bytes) -> &mut FunctionHandles {
        let Recorder { f, jobs, .. } = self;
        handles(f, jobs, name, job)
            .functions
            .entry(function.clone())
            .or_insert_with(|| create_function(f, name, &String::from_utf8_lossy(function)))
    }

    /// A process was started, for the job's minimum or for a backlog.
    pub fn on_start(&mut self, name: &str, job: &Job, reason: StartReason) {
        let i = match reason {
            StartReason::BelowMin => 0,
            StartReason::Backlog => 1,
        };
        self.handles(name, job).starts[i].inc();
    }

    /// A sampling round: CPU the job's processes used since the last one,
    /// and their resident memory now.
    pub fn on_usage(&mut self, name: &str, job: &Job, cpu_seconds: f64, resident_bytes: u64) {
        let h = self.handles(name, job);
        h.cpu.inc_by(cpu_seconds);
        h.resident.set(resident_bytes as i64);
    }

    /// gearmand's counts per server and function, from one poll; rows of
    /// servers that did not answer and functions no longer listed go.
    pub fn on_poll(&mut self, snapshot: &StatusSnapshot) {
        let f = &self.f;
        let mut rows = HashSet::new();
        for server in &snapshot.servers {
            f.gearmand_up
                .get_or_create(&ServerLabels {
                    server: server.address.clone(),
                })
                .set(i64::from(server.up()));
            for (function, counts) in server.rows.iter().flatten() {
                let labels = ServerFunctionLabels {
                    server: server.address.clone(),
                    function: function.clone(),
                };
                f.gearmand_queued
                    .get_or_create(&labels)
                    .set(counts.total as i64);
                f.gearmand_running
                    .get_or_create(&labels)
                    .set(counts.running as i64);
                f.gearmand_workers
                    .get_or_create(&labels)
                    .set(counts.workers as i64);
                rows.insert(labels);
            }
        }
        for gone in self.gearmand_rows.difference(&rows) {
            f.gearmand_queued.remove(gone);
            f.gearmand_running.remove(gone);
            f.gearmand_workers.remove(gone);
        }
        self.gearmand_rows = rows;
    }

    pub fn on_reload(&mut self, applied: bool) {
        let result = if applied { "applied" } else { "rejected" };
        self.f.reloads.get_or_create(&ResultLabels { result }).inc();
    }
}

/// A job's handles, made on first sight; after a reload changed its
/// functions, the series of functions it no longer has are dropped.
fn handles<'a>(
    f: &Families,
    jobs: &'a mut HashMap<String, JobHandles>,
    name: &str,
    job: &Job,
) -> &'a mut JobHandles {
    let current = jobs
        .get(name)
        .is_some_and(|h| Arc::ptr_eq(&h.spec, &job.spec));
    if !current {
        match jobs.get_mut(name) {
            Some(h) => sync_functions(f, name, h, &job.spec),
            None => {
                let made = create_job(f, name, &job.spec);
                jobs.insert(name.to_string(), made);
            }
        }
    }
    jobs.get_mut(name).expect("made above")
}

fn create_job(f: &Families, name: &str, spec: &Arc<JobSpec>) -> JobHandles {
    let labels = job_labels(name);
    let state = |state| {
        f.processes.get_or_create_owned(&StateLabels {
            job: name.to_string(),
            state,
        })
    };
    let start = |reason| {
        f.process_starts.get_or_create_owned(&ReasonLabels {
            job: name.to_string(),
            reason,
        })
    };
    let exit = |cause| {
        f.process_exits.get_or_create_owned(&CauseLabels {
            job: name.to_string(),
            cause,
        })
    };
    let mut made = JobHandles {
        spec: spec.clone(),
        functions: HashMap::new(),
        states: STATES.map(state),
        min: f.processes_min.get_or_create_owned(&labels),
        max: f.processes_max.get_or_create_owned(&labels),
        backoff: f.crash_loop_backoff.get_or_create_owned(&labels),
        resident: f.workers_resident.get_or_create_owned(&labels),
        cpu: f.workers_cpu.get_or_create_owned(&labels),
        starts: START_REASONS.map(start),
        exits: CAUSES.map(exit),
        scale_up: f.scale_up.get_or_create_owned(&labels),
    };
    sync_functions(f, name, &mut made, spec);
    made
}

fn create_function(f: &Families, job: &str, function: &str) -> FunctionHandles {
    let outcome = |outcome| {
        f.jobs.get_or_create_owned(&OutcomeLabels {
            job: job.to_string(),
            function: function.to_string(),
            outcome,
        })
    };
    FunctionHandles {
        outcomes: OUTCOMES.map(outcome),
        duration: f.job_duration.get_or_create_owned(&FunctionLabels {
            job: job.to_string(),
            function: function.to_string(),
        }),
        durations: DurationCounts::default(),
    }
}

fn forget_function(f: &Families, job: &str, function: &str) {
    for outcome in OUTCOMES {
        f.jobs.remove(&OutcomeLabels {
            job: job.to_string(),
            function: function.to_string(),
            outcome,
        });
    }
    f.job_duration.remove(&FunctionLabels {
        job: job.to_string(),
        function: function.to_string(),
    });
}

/// Series for each of the spec's functions (made at 0, so that the first
/// failure shows as an increase), none for functions it no longer has.
fn sync_functions(f: &Families, job: &str, handles: &mut JobHandles, spec: &Arc<JobSpec>) {
    let wanted: HashSet<&[u8]> = spec
        .functions
        .iter()
        .map(|s| s.function.as_bytes())
        .collect();
    handles.functions.retain(|function, _| {
        let keep = wanted.contains(function.as_ref());
        if !keep {
            forget_function(f, job, &String::from_utf8_lossy(function));
        }
        keep
    });
    for function in &spec.functions {
        let key = Bytes::from(function.function.clone());
        handles
            .functions
            .entry(key)
            .or_insert_with(|| create_function(f, job, &function.function));
    }
    handles.spec = spec.clone();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_cause_has_a_label_of_the_spec() {
        let causes = [
            (ExitCause::Requested(StopReason::Idle), "idle"),
            (ExitCause::Requested(StopReason::MaxJobs), "max_jobs"),
            (
                ExitCause::Requested(StopReason::MaxLifetime),
                "max_lifetime",
            ),
            (ExitCause::Requested(StopReason::MaxRss), "max_rss"),
            (ExitCause::Requested(StopReason::Timeout), "timeout"),
            (ExitCause::Requested(StopReason::Reload), "reload"),
            (ExitCause::Requested(StopReason::Shutdown), "shutdown"),
            (ExitCause::Unexpected("x".into()), "crash"),
            (ExitCause::ProtocolError("x".into()), "protocol_error"),
            (ExitCause::StartFailed("x".into()), "start_timeout"),
        ];
        for (cause, label) in causes {
            assert_eq!(cause_label(&cause, false), label);
            assert!(CAUSES.contains(&label));
            assert_eq!(cause_label(&cause, true), "killed");
        }
    }
}
