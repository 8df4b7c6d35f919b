//! Who a pool member is. Most members are processes, but an `http` job's
//! slots have no process, so the supervisor keys its maps by a [`WorkerId`]:
//! a sequence number unique for the supervisor's life, and the PID when
//! there is one. (The sequence number also keeps a PID that the kernel
//! reuses quickly from being mistaken for the process that had it before.)

use std::fmt;
use std::time::Instant;

use super::events::StopReason;
use crate::config::JobSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId {
    seq: u64,
    pid: Option<u32>,
}

impl WorkerId {
    pub fn process(seq: u64, pid: u32) -> WorkerId {
        WorkerId {
            seq,
            pid: Some(pid),
        }
    }

    /// A member without a process (an http slot).
    pub fn slot(seq: u64) -> WorkerId {
        WorkerId { seq, pid: None }
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// `Process`, or `Slot 3`: how log lines name the member.
    pub fn noun(&self) -> String {
        match self.pid {
            Some(_) => "Process".into(),
            None => format!("Slot {}", self.seq),
        }
    }
}

impl fmt::Display for WorkerId {
    /// The PID, or `-` for a slot (as `ps` shows it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "{pid}"),
            None => f.write_str("-"),
        }
    }
}

/// Why a member that has served `jobs_done` jobs since `started` should be
/// replaced after its current job (`max_jobs`, `max_lifetime`), if it should.
pub fn recycling_due(
    job: &JobSpec,
    jobs_done: u64,
    started: Instant,
    now: Instant,
) -> Option<(StopReason, String)> {
    if job.max_jobs > 0 && jobs_done >= job.max_jobs {
        let text = format!("max_jobs {} reached", job.max_jobs);
        return Some((StopReason::MaxJobs, text));
    }
    match job.max_lifetime {
        Some(limit) if now >= started + limit => {
            let text = format!("max_lifetime {}s reached", limit.as_secs());
            Some((StopReason::MaxLifetime, text))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_show_their_pid_and_slots_a_dash() {
        let p = WorkerId::process(3, 4242);
        let s = WorkerId::slot(4);
        assert_eq!((p.to_string(), s.to_string()), ("4242".into(), "-".into()));
        assert_eq!(p.noun(), "Process");
        assert_eq!(s.noun(), "Slot 4");
        assert_eq!(s.pid(), None);
    }

    #[test]
    fn a_reused_pid_is_another_member() {
        assert_ne!(WorkerId::process(1, 77), WorkerId::process(2, 77));
    }
}
