//! Messages between the supervisor and its per-member tasks (processes and
//! http slots).

use std::process::ExitStatus;

use super::member::WorkerId;

/// From a member's task to the supervisor.
#[derive(Debug)]
pub enum Event {
    /// Printed READY and registered its functions: takes jobs now.
    Ready { id: WorkerId },
    /// Took a job.
    Busy { id: WorkerId },
    /// Finished a job and is idle again (unless it is retiring).
    JobEnded { id: WorkerId, outcome: JobOutcome },
    /// Will exit after this job: recycling (max_jobs, max_lifetime, max_rss).
    Retiring { id: WorkerId, reason: String },
    /// A `gearman`-protocol process reported a console column on stdout.
    Report { id: WorkerId, report: Report },
    /// The process is gone and reaped (a slot: its task has ended; `status`
    /// is then `None`).
    Exited {
        id: WorkerId,
        status: Option<ExitStatus>,
        cause: ExitCause,
    },
}

impl Event {
    pub fn id(&self) -> WorkerId {
        match self {
            Event::Ready { id }
            | Event::Busy { id }
            | Event::JobEnded { id, .. }
            | Event::Retiring { id, .. }
            | Event::Report { id, .. }
            | Event::Exited { id, .. } => *id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Done,
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    LastRun(i64),
    LastError(i64),
    LastErrorMsg(String),
}

/// Why a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitCause {
    /// We asked it to stop (scale-down, recycling, shutdown, reload): by
    /// closing its stdin, or with `signal`, its job's `stop_signal`. Dying of
    /// that signal is how such a process stops, not a crash.
    Stopped { signal: nix::sys::signal::Signal },
    /// We ended it (a job's timeout, a job still running at the end of the
    /// shutdown).
    Requested,
    /// It exited or died on its own, or broke the protocol; for a slot, its
    /// endpoint could not be reached.
    Unexpected(String),
    /// It never became ready.
    StartFailed(String),
}

/// From the supervisor to a process task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Stop once idle: close its connections and stdin, then escalate to
    /// SIGTERM and SIGKILL if it does not exit.
    Stop,
    /// Recycle after the current job, for this reason (e.g. max_rss).
    Retire(String),
    /// The supervisor is shutting down: as `Stop`, but a job still running
    /// `shutdown_timeout` from now is cut short and goes back to gearmand.
    Shutdown,
    /// End now (`kill`/`killall` of a member without a process, the
    /// counterpart of SIGTERM): a job in flight goes back to gearmand.
    Kill,
}
