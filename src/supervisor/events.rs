//! Messages between the supervisor and its per-process tasks. The events
//! carry what the supervisor's views need beyond the process's state: the
//! function and duration of each job, how it ended, and why a process
//! ended, so that metrics and `/api/status` are derived from them (see
//! [`crate::metrics`]) rather than counted in a second place.

use std::process::ExitStatus;
use std::time::Duration;

use bytes::Bytes;

use super::member::WorkerId;
use super::sampling::Usage;
use crate::policy::MemberChange;

/// From a member's task (a process's or an http slot's) to the supervisor.
#[derive(Debug)]
pub enum Event {
    /// Printed READY and registered its functions: takes jobs now.
    Ready { id: WorkerId },
    /// Took a job for `function` (the registered name).
    Busy { id: WorkerId, function: Bytes },
    /// Finished a job and is idle again (unless it is retiring).
    JobEnded {
        id: WorkerId,
        function: Bytes,
        outcome: JobOutcome,
        /// From handing the job to the process to its answer.
        duration: Duration,
    },
    /// Will exit after this job: recycling (max_jobs, max_lifetime, max_rss).
    Retiring { id: WorkerId, reason: String },
    /// A `gearman`-protocol process reported a console column on stdout.
    Report { id: WorkerId, report: Report },
    /// Between jobs, it gave its pipes back for an upgrade; its task has
    /// ended and the process runs on, to be adopted by the next image.
    HandedOver {
        id: WorkerId,
        parts: Box<super::handover::Parts>,
    },
    /// The process is gone and reaped.
    Exited {
        id: WorkerId,
        status: Option<ExitStatus>,
        cause: ExitCause,
        /// The function of a job that was in flight and went back to
        /// gearmand because the process ended without answering it.
        requeued: Option<Bytes>,
        /// Its last CPU and memory reading, taken after it exited and
        /// before it was reaped (none where that was not possible).
        usage: Option<Usage>,
    },
}

impl Event {
    pub fn id(&self) -> WorkerId {
        match self {
            Event::Ready { id }
            | Event::Busy { id, .. }
            | Event::JobEnded { id, .. }
            | Event::Retiring { id, .. }
            | Event::Report { id, .. }
            | Event::HandedOver { id, .. }
            | Event::Exited { id, .. } => *id,
        }
    }

    /// What the event changed, as far as the scaling policy cares.
    pub fn member_change(&self) -> MemberChange {
        match self {
            Event::Busy { .. } => MemberChange::TookJob,
            Event::JobEnded { .. } => MemberChange::AnsweredJob,
            _ => MemberChange::Other,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Done,
    Failed(String),
    /// Ran over its `timeout`; failed with this message.
    TimedOut(String),
    /// Answered, but the connection it came from had broken meanwhile, so
    /// gearmand hands the job to another worker.
    Requeued,
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
    /// We asked it to stop, for this reason: by closing its stdin, or with
    /// its job's `stop_signal`. Dying of that signal is how such a process
    /// stops, not a crash (except for a `Timeout`: that is a kill).
    Requested(StopReason),
    /// It exited or died on its own; for an http slot, its endpoint could
    /// not be reached.
    Unexpected(String),
    /// It broke the stdio protocol and was killed.
    ProtocolError(String),
    /// It never became ready.
    StartFailed(String),
}

/// Why the supervisor stopped a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Scale-down: idle surplus, or above a lowered max_processes.
    Idle,
    MaxJobs,
    MaxLifetime,
    MaxRss,
    /// Its job ran over `timeout`.
    Timeout,
    /// Its job changed or went away on reload.
    Reload,
    Shutdown,
    /// An operator's `kill`/`killall` of a member without a process.
    Killed,
    /// An upgrade: an http slot stops, the next image starts its own.
    Upgrade,
}

/// From the supervisor to a process task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Stop once idle: close its connections and stdin, then escalate to
    /// SIGTERM and SIGKILL if it does not exit.
    Stop(StopReason),
    /// Recycle after the current job, for this reason (e.g. max_rss); the
    /// text is logged.
    Retire(StopReason, String),
    /// The supervisor is shutting down: as `Stop`, but a job still running
    /// `shutdown_timeout` from now is cut short and goes back to gearmand.
    Shutdown,
    /// End now (`kill`/`killall` of a member without a process, the
    /// counterpart of SIGTERM): a job in flight goes back to gearmand.
    Kill,
    /// An upgrade: give the pipes back between jobs ([`Event::HandedOver`]);
    /// an http slot, which has none, stops after its job instead.
    HandOver,
}

impl Control {
    pub fn reason(&self) -> StopReason {
        match self {
            Control::Stop(reason) | Control::Retire(reason, _) => *reason,
            Control::Shutdown => StopReason::Shutdown,
            Control::Kill => StopReason::Killed,
            Control::HandOver => StopReason::Upgrade,
        }
    }
}
