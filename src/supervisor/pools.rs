//! Jobs and their members (processes, or an http job's slots) as the
//! supervisor loop tracks them: limits, states, the console's
//! lastrun/lasterror columns, and crash-loop backoff.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::events::{Control, StopReason};
use super::member::WorkerId;
use super::sampling::UsageTrack;
use super::BACKOFF_MAX;
use crate::config::JobSpec;
use crate::gearman::arming::Arming;
use crate::gearman::status::StatusSnapshot;
use crate::notify::Summary;
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
    /// When its processes took jobs that the last status poll may still
    /// count as waiting: deciding on that count alone would start a process
    /// for a job already being served (costly for workers that are slow to
    /// start, such as a perl loading Moose). Oldest first.
    pub taken: VecDeque<Instant>,
    /// Jobs answered since the supervisor started (`/api/status`).
    pub tally: Tally,
    /// Which of its idle members sleep on gearmand; shared with their grab loops.
    pub arming: Arming,
}

/// How a job's jobs ended, since the supervisor started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub done: u64,
    pub failed: u64,
    pub timeouts: u64,
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
            taken: VecDeque::new(),
            tally: Tally::default(),
            arming: Arming::new(),
        }
    }

    pub fn live_count(&self) -> usize {
        self.procs
            .values()
            .filter(|p| p.state != ProcState::Stopping)
            .count()
    }

    /// The members as the policy sees them.
    pub fn proc_views(&self) -> impl Iterator<Item = ProcView> + Clone + '_ {
        self.procs.iter().map(|(id, p)| ProcView {
            id: *id,
            state: p.state,
        })
    }

    /// Jobs waiting for this job's functions, as far as the supervisor knows:
    /// the last poll's count less what its processes took since it went out.
    pub fn waiting(&self, status: &StatusSnapshot) -> u64 {
        self.queue(status).0.saturating_sub(self.taken.len() as u64)
    }

    /// A process of this job took a job.
    pub fn note_taken(&mut self, now: Instant) {
        // Beyond this many, waiting is large enough for any decision anyway.
        const KEEP: usize = 4096;
        if self.taken.len() == KEEP {
            self.taken.pop_front();
        }
        self.taken.push_back(now);
    }

    /// A poll sent at `requested_at` counts every job taken before it.
    pub fn forget_taken_before(&mut self, requested_at: Option<Instant>) {
        match requested_at {
            Some(t) => {
                while self.taken.front().is_some_and(|taken| *taken <= t) {
                    self.taken.pop_front();
                }
            }
            None => self.taken.clear(),
        }
    }

    /// (waiting, running) summed over the job's functions.
    pub fn queue(&self, status: &StatusSnapshot) -> (u64, u64) {
        self.spec.functions.iter().fold((0, 0), |(w, r), f| {
            let c = status.get(&f.function);
            (w + c.waiting(), r + c.running)
        })
    }

    /// Registered workers summed over the job's functions.
    pub fn workers(&self, status: &StatusSnapshot) -> u64 {
        self.spec
            .functions
            .iter()
            .map(|f| status.get(&f.function).workers)
            .sum()
    }

    /// The crash-loop backoff in force now, if any.
    pub fn backoff(&self, now: Instant) -> Option<Duration> {
        self.blocked_until.filter(|t| *t > now)?;
        Some(self.backoff_delay())
    }

    fn backoff_delay(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(6);
        Duration::from_secs(1u64 << doublings).min(BACKOFF_MAX)
    }

    pub fn record_error(&mut self, message: &str) {
        self.lasterror = chrono::Utc::now().timestamp();
        self.lasterror_msg = message.to_string();
    }

    /// Counts a failure within the crash window; returns the backoff now in force.
    pub fn note_quick_failure(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let delay = self.backoff_delay();
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

    /// Start-up is over for this job: its `min_processes` are ready, or
    /// starting them failed (spawn error, crash loop, no READY in time).
    pub fn settled(&self) -> bool {
        let ready = self
            .procs
            .values()
            .filter(|p| matches!(p.state, ProcState::Idle { .. } | ProcState::Busy))
            .count();
        self.removed || ready >= self.min as usize || self.failures > 0
    }
}

pub struct Proc {
    pub state: ProcState,
    pub started: Instant,
    pub jobs_done: u64,
    pub control: mpsc::UnboundedSender<Control>,
    /// The function of the job it runs now, and since when.
    pub current: Option<(Bytes, Instant)>,
    /// Its CPU and memory readings (taken while metrics are on).
    pub usage: UsageTrack,
    /// Started for a backlog that a poll showed at this moment.
    pub backlog_seen: Option<Instant>,
}

impl Proc {
    pub fn new(control: mpsc::UnboundedSender<Control>) -> Proc {
        let started = Instant::now();
        Proc {
            state: ProcState::Starting,
            started,
            jobs_done: 0,
            control,
            current: None,
            usage: UsageTrack::new(started),
            backlog_seen: None,
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
    pub fn stop(&mut self, why: StopReason) {
        self.request_stop(Control::Stop(why));
    }

    /// Asks the process to exit after its current job, for `reason`.
    pub fn retire(&mut self, why: StopReason, reason: String) {
        self.request_stop(Control::Retire(why, reason));
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

    pub fn state_name(&self) -> &'static str {
        match self.state {
            ProcState::Starting => "starting",
            ProcState::Idle { .. } => "idle",
            ProcState::Busy => "busy",
            ProcState::Stopping => "stopping",
        }
    }
}

/// Every job is [`Job::settled`]: time for systemd's READY.
pub fn all_settled(jobs: &BTreeMap<String, Job>) -> bool {
    jobs.values().all(Job::settled)
}

/// The line systemd shows as the service's status.
pub fn summary(jobs: &BTreeMap<String, Job>, status: &StatusSnapshot, servers: usize) -> Summary {
    let now = Instant::now();
    let mut summary = Summary {
        servers_up: status.servers_answered,
        servers,
        ..Summary::default()
    };
    for job in jobs.values().filter(|j| !j.removed) {
        summary.jobs += 1;
        summary.waiting += job.queue(status).0;
        if job.blocked_until.is_some_and(|t| t > now) {
            summary.backing_off += 1;
        }
        for proc in job.procs.values() {
            match proc.state {
                ProcState::Starting => summary.starting += 1,
                ProcState::Idle { .. } => summary.idle += 1,
                ProcState::Busy => summary.busy += 1,
                ProcState::Stopping => summary.stopping += 1,
            }
        }
    }
    summary
}

/// Resident memory of a process, from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(4096) as u64 / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Protocol;
    use crate::gearman::status::FunctionCounts;

    fn job() -> Job {
        Job::new(Arc::new(JobSpec {
            max_processes: 2,
            ..JobSpec::for_test("J::f", Protocol::Stdio)
        }))
    }

    fn job_min(min: u32) -> Job {
        Job::new(Arc::new(JobSpec {
            min_processes: min,
            max_processes: min.max(1),
            ..JobSpec::for_test("A::b", Protocol::Stdio)
        }))
    }

    fn snapshot(total: u64, requested_at: Instant) -> StatusSnapshot {
        let mut s = StatusSnapshot {
            requested_at: Some(requested_at),
            servers_answered: 1,
            ..Default::default()
        };
        s.functions.insert(
            "J::f".into(),
            FunctionCounts {
                total,
                running: 0,
                workers: 1,
            },
        );
        s
    }

    #[test]
    fn jobs_taken_after_a_poll_went_out_no_longer_wait() {
        let t0 = Instant::now();
        let mut job = job();
        let status = snapshot(2, t0);
        job.note_taken(t0 + Duration::from_millis(5));
        assert_eq!(job.waiting(&status), 1, "one of the two is being served");

        // The next poll went out after that take: its count includes it.
        let later = snapshot(1, t0 + Duration::from_millis(10));
        job.note_taken(t0 + Duration::from_millis(20));
        job.forget_taken_before(later.requested_at);
        assert_eq!(job.taken.len(), 1, "the take after the poll still counts");
        assert_eq!(job.waiting(&later), 0);
    }

    fn add(job: &mut Job, pid: u32, state: ProcState) {
        let (control, _) = mpsc::unbounded_channel();
        let mut proc = Proc::new(control);
        proc.state = state;
        job.procs
            .insert(WorkerId::process(u64::from(pid), pid), proc);
    }

    #[test]
    fn settled_once_min_processes_are_ready_or_starting_failed() {
        assert!(job_min(0).settled());
        let mut two = job_min(2);
        add(&mut two, 1, ProcState::Starting);
        add(&mut two, 2, ProcState::Busy);
        assert!(!two.settled(), "one still starting");
        add(&mut two, 3, ProcState::Stopping);
        assert!(!two.settled(), "a stopping process does not count");
        two.procs.get_mut(&WorkerId::process(1, 1)).unwrap().state = ProcState::Idle {
            since: Instant::now(),
        };
        assert!(two.settled());

        let mut failing = job_min(1);
        assert!(!failing.settled());
        failing.note_quick_failure();
        assert!(failing.settled(), "a crash loop does not hold start-up");
    }

    #[test]
    fn summary_counts_states_waiting_and_servers() {
        let mut jobs = BTreeMap::new();
        let mut a = job_min(1);
        add(&mut a, 1, ProcState::Busy);
        add(
            &mut a,
            2,
            ProcState::Idle {
                since: Instant::now(),
            },
        );
        add(&mut a, 3, ProcState::Starting);
        a.note_quick_failure();
        jobs.insert("A::b".to_string(), a);
        let mut status = StatusSnapshot::default();
        status.functions.insert(
            "A::b".into(),
            FunctionCounts {
                total: 5,
                running: 1,
                workers: 2,
            },
        );
        status.servers_answered = 1;
        let s = summary(&jobs, &status, 2);
        assert_eq!(
            s,
            Summary {
                jobs: 1,
                starting: 1,
                idle: 1,
                busy: 1,
                stopping: 0,
                waiting: 4,
                backing_off: 1,
                servers_up: 1,
                servers: 2,
            }
        );
        assert!(all_settled(&jobs), "backing off counts as failed to start");
        jobs.insert("C::d".to_string(), job_min(1));
        assert!(!all_settled(&jobs), "C::d has no process yet");
    }
}
