//! The status view: everything `/api/status` shows, built by the supervisor
//! in one pass. The console's `status` and `ps` rows are made from the same
//! [`JobView`] and [`ProcessView`] (see the `From` impls), so the two doors
//! cannot disagree on a job's processes or a process's state.

use std::time::Duration;

use serde::Serialize;

use super::{JobRow, ProcRow};

/// `GET /api/status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    pub version: String,
    /// When the supervisor started, epoch seconds.
    pub started: i64,
    pub servers: Vec<ServerView>,
    /// Sorted by name.
    pub jobs: Vec<JobView>,
    /// Sorted by job, then PID.
    pub processes: Vec<ProcessView>,
    /// The `[[schedule]]` entries, sorted by name.
    pub schedules: Vec<crate::schedule::ScheduleState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerView {
    pub address: String,
    /// Answered the last `status` poll.
    pub up: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StateCounts {
    pub starting: usize,
    pub idle: usize,
    pub busy: usize,
    pub stopping: usize,
}

impl StateCounts {
    pub fn total(&self) -> usize {
        self.starting + self.idle + self.busy + self.stopping
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobView {
    pub name: String,
    pub min: u32,
    pub max: u32,
    pub processes: StateCounts,
    /// gearmand's counts summed over the job's functions and the servers
    /// that answered: queued and not running, running, registered workers.
    pub waiting: u64,
    pub running: u64,
    pub workers: u64,
    /// Epoch seconds, 0 for never.
    pub lastrun: i64,
    pub lasterror: i64,
    /// The last failure's message, empty when none.
    pub message: String,
    /// Jobs answered since the supervisor started.
    pub done: u64,
    pub failed: u64,
    pub timeouts: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessView {
    /// `None` (JSON `null`) for an http slot.
    pub pid: Option<u32>,
    pub job: String,
    /// starting, idle, busy or stopping.
    pub state: &'static str,
    /// The function of the job it runs now.
    pub function: Option<String>,
    /// Seconds it has been running its current job.
    pub busy_for: Option<f64>,
    /// Jobs it has answered.
    pub jobs: u64,
    /// Seconds since it was started.
    pub uptime: f64,
    /// Resident memory in bytes, when known.
    pub rss: Option<u64>,
    /// Percent of one core over the last sampling interval, when sampled.
    pub cpu: Option<f64>,
}

impl From<&JobView> for JobRow {
    fn from(v: &JobView) -> JobRow {
        JobRow {
            name: v.name.clone(),
            min: v.min,
            max: v.max,
            processes: v.processes.total(),
            lastrun: v.lastrun,
            lasterror: v.lasterror,
            lasterror_msg: v.message.clone(),
        }
    }
}

impl From<&ProcessView> for ProcRow {
    fn from(v: &ProcessView) -> ProcRow {
        ProcRow {
            pid: v.pid,
            job: v.job.clone(),
            state: v.state.to_string(),
            jobs_done: v.jobs,
            uptime: Duration::from_secs_f64(v.uptime),
            rss_kib: v.rss.map(|b| b / 1024),
        }
    }
}

/// Seconds with millisecond precision, for JSON that reads well.
pub fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}
