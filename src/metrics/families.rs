//! The metric families of the SPEC's table, their label sets, and their
//! registration. Names and labels here are a contract: dashboards and
//! alerts are built on them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use std::sync::atomic::AtomicU64;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub job: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabels {
    pub job: String,
    pub function: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub job: String,
    pub function: String,
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub job: String,
    pub state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub job: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    pub job: String,
    pub cause: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub server: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerFunctionLabels {
    pub server: String,
    pub function: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;
pub type FloatGauge = Gauge<f64, AtomicU64>;
pub type FloatCounter = Counter<f64, AtomicU64>;

/// `outcome` of `gearman_driver_jobs_total`.
pub const OUTCOMES: [&str; 4] = ["done", "failed", "timeout", "requeued"];
/// `state` of `gearman_driver_processes`.
pub const STATES: [&str; 4] = ["starting", "idle", "busy", "stopping"];
/// `reason` of `gearman_driver_process_starts_total`.
pub const START_REASONS: [&str; 2] = ["min", "backlog"];
/// `cause` of `gearman_driver_process_exits_total`.
pub const CAUSES: [&str; 12] = [
    "idle",
    "max_jobs",
    "max_lifetime",
    "max_rss",
    "timeout",
    "crash",
    "killed",
    "protocol_error",
    "start_timeout",
    "reload",
    "shutdown",
    "upgrade",
];

/// A job's duration: 1 ms to 10 min.
fn job_duration_histogram() -> Histogram {
    Histogram::new(crate::history::durations::BOUNDS)
}

/// From a backlog seen to a new process ready: 5 ms to 2 min.
fn scale_up_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    ])
}

/// Every family; clones share the same series.
#[derive(Clone)]
pub struct Families {
    pub jobs: Family<OutcomeLabels, Counter>,
    pub job_duration: Histograms<FunctionLabels>,
    pub processes: Family<StateLabels, Gauge>,
    pub processes_min: Family<JobLabels, Gauge>,
    pub processes_max: Family<JobLabels, Gauge>,
    pub process_starts: Family<ReasonLabels, Counter>,
    pub process_exits: Family<CauseLabels, Counter>,
    pub scale_up: Histograms<JobLabels>,
    pub crash_loop_backoff: Family<JobLabels, FloatGauge>,
    pub workers_resident: Family<JobLabels, Gauge>,
    pub workers_cpu: Family<JobLabels, FloatCounter>,
    pub gearmand_up: Family<ServerLabels, Gauge>,
    pub gearmand_queued: Family<ServerFunctionLabels, Gauge>,
    pub gearmand_running: Family<ServerFunctionLabels, Gauge>,
    pub gearmand_workers: Family<ServerFunctionLabels, Gauge>,
    pub reloads: Family<ResultLabels, Counter>,
    pub build_info: Family<VersionLabels, Gauge>,
}

impl Families {
    /// Creates every family and registers it under its contract name
    /// (counters get `_total` from the encoder, units their suffix).
    pub fn register(registry: &mut Registry) -> Families {
        let f = Families {
            jobs: Family::default(),
            job_duration: Family::new_with_constructor(job_duration_histogram),
            processes: Family::default(),
            processes_min: Family::default(),
            processes_max: Family::default(),
            process_starts: Family::default(),
            process_exits: Family::default(),
            scale_up: Family::new_with_constructor(scale_up_histogram),
            crash_loop_backoff: Family::default(),
            workers_resident: Family::default(),
            workers_cpu: Family::default(),
            gearmand_up: Family::default(),
            gearmand_queued: Family::default(),
            gearmand_running: Family::default(),
            gearmand_workers: Family::default(),
            reloads: Family::default(),
            build_info: Family::default(),
        };
        let r = registry;
        r.register(
            "gearman_driver_jobs",
            "Jobs ended, by outcome (requeued: the process ended without answering and gearmand hands the job out again)",
            f.jobs.clone(),
        );
        r.register_with_unit(
            "gearman_driver_job_duration",
            "Time from handing a job to a process to its answer",
            Unit::Seconds,
            f.job_duration.clone(),
        );
        r.register(
            "gearman_driver_processes",
            "Processes by state",
            f.processes.clone(),
        );
        r.register(
            "gearman_driver_processes_min",
            "The job's min_processes now",
            f.processes_min.clone(),
        );
        r.register(
            "gearman_driver_processes_max",
            "The job's max_processes now",
            f.processes_max.clone(),
        );
        r.register(
            "gearman_driver_process_starts",
            "Processes started, because the job was below min_processes or for a backlog",
            f.process_starts.clone(),
        );
        r.register(
            "gearman_driver_process_exits",
            "Processes ended, by cause",
            f.process_exits.clone(),
        );
        r.register_with_unit(
            "gearman_driver_scale_up",
            "From the poll that showed a backlog to a process started for it being ready",
            Unit::Seconds,
            f.scale_up.clone(),
        );
        r.register_with_unit(
            "gearman_driver_crash_loop_backoff",
            "The restart delay in force after quick failures, 0 when none",
            Unit::Seconds,
            f.crash_loop_backoff.clone(),
        );
        r.register_with_unit(
            "gearman_driver_workers_resident",
            "Resident memory of the job's processes, summed",
            Unit::Bytes,
            f.workers_resident.clone(),
        );
        r.register_with_unit(
            "gearman_driver_workers_cpu",
            "CPU time of the job's processes and the children they reaped, exited processes included",
            Unit::Seconds,
            f.workers_cpu.clone(),
        );
        r.register(
            "gearman_driver_gearmand_up",
            "Whether the server answered the last status poll",
            f.gearmand_up.clone(),
        );
        r.register(
            "gearman_driver_gearmand_queued",
            "Jobs in the server's queue for the function, running ones included",
            f.gearmand_queued.clone(),
        );
        r.register(
            "gearman_driver_gearmand_running",
            "Jobs of the function the server has handed to workers",
            f.gearmand_running.clone(),
        );
        r.register(
            "gearman_driver_gearmand_workers",
            "Workers registered with the server for the function",
            f.gearmand_workers.clone(),
        );
        r.register(
            "gearman_driver_reloads",
            "Configuration reloads, applied or rejected",
            f.reloads.clone(),
        );
        r.register(
            "gearman_driver_build_info",
            "Always 1; the running version is in the label",
            f.build_info.clone(),
        );
        f
    }
}
