//! CPU and memory of worker processes, read from `/proc/<pid>/stat`.
//!
//! - [`Usage`]: one reading: CPU seconds (the process's own `utime + stime`
//!   and `cutime + cstime`, the children it has reaped, so that the command
//!   an exec slot runs per job is counted) and resident bytes.
//! - [`UsageTrack`]: a process's readings over time: the CPU since the
//!   previous reading (for the `workers_cpu_seconds_total` counter) and the
//!   percent of one core over the last interval (for `/api/status`).
//! - [`ExitWatch`]: the last reading of a process that has exited, taken
//!   while it is a zombie, before it is reaped (a pidfd tells when it has
//!   exited without reaping it). Without it, the CPU a process used since
//!   the previous interval's reading would be lost when it exits.
//! - [`read_all`]: one interval's readings, made on a blocking thread so
//!   that a thousand `/proc` reads never hold up the supervisor's loop.
//!
//! What can still be missed: on a kernel without `pidfd_open` (before
//! Linux 5.3) the CPU a process used after the last interval's reading;
//! and the CPU of a command an exec slot was running when the slot was
//! killed (the slot does not reap it, so it never reaches `cutime`).

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitStatus;
use std::time::Instant;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use tokio::io::unix::AsyncFd;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// CPU seconds, user and system, its reaped children included.
    pub cpu_seconds: f64,
    /// Resident memory; 0 for a process that has exited.
    pub rss_bytes: u64,
}

/// Reads `/proc/<pid>/stat`; None when the process is gone.
pub fn read(pid: u32) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat, clock_ticks(), page_size())
}

/// Fields after the command name (which may hold spaces and parentheses):
/// state is field 3, utime..cstime 14..17, rss (pages) 24.
fn parse_stat(stat: &str, ticks_per_second: f64, page: u64) -> Option<Usage> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let ticks = field(14)? + field(15)? + field(16)? + field(17)?;
    let rss_pages: i64 = fields.get(24 - 3)?.parse().ok()?;
    Some(Usage {
        cpu_seconds: ticks as f64 / ticks_per_second,
        rss_bytes: rss_pages.max(0) as u64 * page,
    })
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    page.max(4096) as u64
}

/// Readings of every listed process, on a blocking thread.
pub async fn read_all(pids: Vec<u32>) -> Vec<(u32, Usage)> {
    tokio::task::spawn_blocking(move || {
        let (ticks, page) = (clock_ticks(), page_size());
        pids.into_iter()
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                Some((pid, parse_stat(&stat, ticks, page)?))
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// A process's readings over time.
#[derive(Debug, Clone, Copy)]
pub struct UsageTrack {
    pub last: Option<Usage>,
    at: Instant,
    /// Percent of one core between the last two readings (or since the
    /// start, after the first).
    pub cpu_percent: Option<f64>,
}

impl UsageTrack {
    pub fn new(started: Instant) -> UsageTrack {
        UsageTrack {
            last: None,
            at: started,
            cpu_percent: None,
        }
    }

    /// Takes a reading; returns the CPU seconds used since the previous one.
    pub fn update(&mut self, usage: Usage, now: Instant) -> f64 {
        let before = self.last.map_or(0.0, |u| u.cpu_seconds);
        let used = (usage.cpu_seconds - before).max(0.0);
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        if elapsed > 0.0 {
            self.cpu_percent = Some(used / elapsed * 100.0);
        }
        self.last = Some(Usage {
            cpu_seconds: before + used,
            ..usage
        });
        self.at = now;
        used
    }
}

/// Watches one child for its exit without reaping it.
pub struct ExitWatch {
    pid: u32,
    pidfd: Option<AsyncFd<OwnedFd>>,
    last: Option<Usage>,
}

impl ExitWatch {
    /// Must be made before the child is reaped (its PID cannot be reused
    /// until then, so the pidfd is surely this child's).
    pub fn new(pid: u32) -> ExitWatch {
        ExitWatch {
            pid,
            pidfd: pidfd_open(pid).and_then(register),
            last: None,
        }
    }

    /// Waits for the child to exit, reads it while it is a zombie, then
    /// reaps it by PID (so a process adopted across an upgrade is watched
    /// like one started here). Cancel-safe: dropped early, it is simply
    /// called again.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        match &self.pidfd {
            Some(fd) => {
                let _ = fd.readable().await;
            }
            // No pidfd (before Linux 5.3): look now and then.
            None => {
                while !exited(self.pid) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        if let Some(usage) = read(self.pid) {
            self.last = Some(usage);
        }
        reap(self.pid)
    }

    /// The reading taken at the exit, if any.
    pub fn take_usage(&mut self) -> Option<Usage> {
        self.last.take()
    }
}

/// Whether the child `pid` has exited (it stays unreaped, a zombie).
fn exited(pid: u32) -> bool {
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid writes into `info`, which outlives the call; WNOWAIT
    // leaves the child to be reaped by `reap`.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: si_pid is set by waitid when it found a child.
    r != 0 || unsafe { info.si_pid() } != 0
}

/// Reaps the child `pid`, which has exited.
fn reap(pid: u32) -> std::io::Result<ExitStatus> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: waitpid writes into `status`, which outlives the call.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        if r == pid as libc::pid_t {
            return Ok(ExitStatus::from_raw(status));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn register(fd: OwnedFd) -> Option<AsyncFd<OwnedFd>> {
    // SAFETY: the OwnedFd is moved into the AsyncFd, so the descriptor stays
    // open and the same for the AsyncFd's whole life.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.ok()
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a PID and flags and returns a new descriptor
    // that we own, or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd was just returned by the kernel and is owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_stat_with_spaces_and_parentheses_in_the_name() {
        let stat = "42 (my (odd) worker) S 1 42 42 0 -1 4194560 100 0 0 0 \
                    250 50 70 30 20 0 1 0 12345 10000000 300 18446744073709551615";
        let u = parse_stat(stat, 100.0, 4096).unwrap();
        assert_eq!(u.cpu_seconds, 4.0);
        assert_eq!(u.rss_bytes, 300 * 4096);
    }

    #[test]
    fn reads_this_process() {
        let u = read(std::process::id()).unwrap();
        assert!(u.rss_bytes > 0);
        assert!(read(u32::MAX).is_none());
    }

    #[test]
    fn tracks_cpu_since_the_previous_reading() {
        let t0 = Instant::now();
        let mut track = UsageTrack::new(t0);
        let used = track.update(
            Usage {
                cpu_seconds: 1.0,
                rss_bytes: 10,
            },
            t0 + Duration::from_secs(2),
        );
        assert_eq!(used, 1.0);
        assert_eq!(track.cpu_percent, Some(50.0));
        let used = track.update(
            Usage {
                cpu_seconds: 1.5,
                rss_bytes: 10,
            },
            t0 + Duration::from_secs(3),
        );
        assert_eq!(used, 0.5);
        assert_eq!(track.cpu_percent, Some(50.0));
        // A reading that went backwards (never, but) adds nothing.
        assert_eq!(
            track.update(
                Usage {
                    cpu_seconds: 1.0,
                    rss_bytes: 0
                },
                t0 + Duration::from_secs(4)
            ),
            0.0
        );
    }
}
