//! Jobs and their members (processes, or an http job's slots) as the
//! supervisor loop tracks them: limits, states, the console's
//! lastrun/lasterror columns, and crash-loop backoff.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::events::Control;
use super::member::WorkerId;
use super::BACKOFF_MAX;
use crate::command::{JobRow, ProcRow};
use crate::config::JobSpec;
use crate::gearman::status::StatusSnapshot;
use crate::policy::{ProcState, ProcView};

pub struct Job {
    pub spec: Arc<JobSpec>,
    pub min: u32,
    pub max: u32,
    pub procs: BTreeMap<WorkerId, Proc>,
    /// Epoch seconds; 0 for never.
    pub lastrun: i64,
    pub lasterror: i64,
    pub lasterror_msg: String,
    /// Quick failures in a row.
    pub failures: u32,
    pub blocked_until: Option<Instant>,
    /// Since when gearmand shows nothing waiting or running for this job.
    pub quiet_since: Instant,
    /// Dropped by a reload; listed until its processes are gone.
    pub removed: bool,
}

impl Job {
    pub fn new(spec: Arc<JobSpec>) -> Job {
        Job {
            min: spec.min_processes,
            max: spec.max_processes,
            spec,
            procs: BTreeMap::new(),
            lastrun: 0,
            lasterror: 0,
            lasterror_msg: String::new(),
            failures: 0,
            blocked_until: None,
            quiet_since: Instant::now(),
            removed: false,
        }
    }

    pub fn live_count(&self) -> usize {
        self.procs
            .values()
            .filter(|p| p.state != ProcState::Stopping)
            .count()
    }

    pub fn proc_views(&self) -> Vec<ProcView> {
        self.procs
            .iter()
            .map(|(id, p)| ProcView {
                id: *id,
                state: p.state,
            })
            .collect()
    }

    /// (waiting, running) summed over the job's functions.
    pub fn queue(&self, status: &StatusSnapshot) -> (u64, u64) {
        self.spec.functions.iter().fold((0, 0), |(w, r), f| {
            let c = status.get(&f.function);
            (w + c.waiting(), r + c.running)
        })
    }

    pub fn record_error(&mut self, message: &str) {
        self.lasterror = chrono::Utc::now().timestamp();
        self.lasterror_msg = message.to_string();
    }

    /// Counts a failure within the crash window; returns the backoff now in force.
    pub fn note_quick_failure(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let delay = Duration::from_secs(1u64 << (self.failures - 1).min(6)).min(BACKOFF_MAX);
        self.blocked_until = Some(Instant::now() + delay);
        delay
    }

    /// Processes that speak Gearman themselves cannot tell us whether they
    /// are busy; gearmand's running count for the job's functions stands in:
    /// that many are taken as busy, the rest as idle since the queue went quiet.
    pub fn estimate_gearman_states(&mut self, running: u64, now: Instant) {
        let mut busy_left = running;
        let quiet_since = self.quiet_since;
        for proc in self
            .procs
            .values_mut()
            .filter(|p| p.state != ProcState::Stopping)
        {
            if busy_left > 0 {
                proc.state = ProcState::Busy;
                busy_left -= 1;
            } else {
                let since = quiet_since.max(proc.started).min(now);
                proc.state = ProcState::Idle { since };
            }
        }
    }

    pub fn row(&self, name: &str) -> JobRow {
        JobRow {
            name: name.to_string(),
            min: self.min,
            max: self.max,
            processes: self.procs.len(),
            lastrun: self.lastrun,
            lasterror: self.lasterror,
            lasterror_msg: self.lasterror_msg.clone(),
        }
    }
}

pub struct Proc {
    pub state: ProcState,
    pub started: Instant,
    pub jobs_done: u64,
    pub control: mpsc::UnboundedSender<Control>,
}

impl Proc {
    pub fn new(control: mpsc::UnboundedSender<Control>) -> Proc {
        Proc {
            state: ProcState::Starting,
            started: Instant::now(),
            jobs_done: 0,
            control,
        }
    }

    /// Asked to stop (or retiring): no longer counts, and stays so.
    pub fn is_stopping(&self) -> bool {
        self.state == ProcState::Stopping
    }

    /// Updates the state unless the process is already on its way out.
    pub fn set_state(&mut self, state: ProcState) {
        if !self.is_stopping() {
            self.state = state;
        }
    }

    /// Asks the process to stop once idle (the first request counts).
    pub fn stop(&mut self) {
        self.request_stop(Control::Stop);
    }

    /// Asks the process to exit after its current job, for `reason`.
    pub fn retire(&mut self, reason: String) {
        self.request_stop(Control::Retire(reason));
    }

    fn request_stop(&mut self, control: Control) {
        if !self.is_stopping() {
            let _ = self.control.send(control);
            self.state = ProcState::Stopping;
        }
    }

    /// Sent even after a `Stop`: a process finishing its job after a
    /// scale-down must still honour the shutdown's time limit.
    pub fn shut_down(&mut self) {
        let _ = self.control.send(Control::Shutdown);
        self.state = ProcState::Stopping;
    }

    /// Ends a slot now (what SIGTERM is to a process): a job in flight
    /// goes back to gearmand.
    pub fn kill_slot(&mut self) {
        let _ = self.control.send(Control::Kill);
        self.state = ProcState::Stopping;
    }

    pub fn row(&self, id: WorkerId, job: &str) -> ProcRow {
        let state = match self.state {
            ProcState::Starting => "starting",
            ProcState::Idle { .. } => "idle",
            ProcState::Busy => "busy",
            ProcState::Stopping => "stopping",
        };
        ProcRow {
            pid: id.pid(),
            job: job.to_string(),
            state: state.to_string(),
            jobs_done: self.jobs_done,
            uptime: self.started.elapsed(),
            rss_kib: id.pid().and_then(rss_kib),
        }
    }
}

/// Resident memory of a process, from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(4096) as u64 / 1024)
}
