//! Everything the benchmark starts, and making sure it stops: child
//! processes behind Drop guards, a registry that a Ctrl-C handler empties,
//! bounded waits, free ports, the file descriptor limit, and /proc readings.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Process groups to end if the benchmark is interrupted.
static LIVE_GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// Scratch folders to remove if the benchmark is interrupted.
static SCRATCH: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A child process in its own process group, ended when dropped.
pub struct Guard {
    child: Child,
    name: String,
    /// SIGTERM first and this long to exit (the driver shuts its pools down
    /// in order); `None`: SIGKILL at once.
    grace: Option<Duration>,
}

impl Guard {
    /// Spawns `cmd` in a new process group (so a Ctrl-C at the terminal
    /// reaches only the benchmark, which then stops things in order).
    pub fn spawn(cmd: &mut Command, name: &str, grace: Option<Duration>) -> Result<Guard> {
        let child = cmd
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        LIVE_GROUPS.lock().unwrap().push(child.id() as i32);
        Ok(Guard {
            child,
            name: name.to_string(),
            grace,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's stdout, if it was piped (once).
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// `Some(description)` if the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited ({status})", self.name)),
            Ok(None) => None,
            Err(e) => Some(format!("{}: {e}", self.name)),
        }
    }

    fn stop(&mut self) {
        let pid = self.child.id() as i32;
        if let Some(grace) = self.grace {
            signal(pid, libc::SIGTERM);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        signal(-pid, libc::SIGKILL);
        signal(pid, libc::SIGKILL);
        let _ = self.child.wait();
        LIVE_GROUPS.lock().unwrap().retain(|&p| p != pid);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) };
}

/// A scratch folder for one benchmark run, removed when dropped and also
/// when the run is interrupted.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Result<Scratch> {
        let dir = tempfile::Builder::new()
            .prefix("gearman-driver-bench.")
            .tempdir()
            .context("creating a scratch folder")?;
        SCRATCH.lock().unwrap().push(dir.path().to_path_buf());
        Ok(Scratch { dir })
    }

    /// A new, empty sub-folder.
    pub fn sub(&self, name: &str) -> Result<PathBuf> {
        let path = self.dir.path().join(name);
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        Ok(path)
    }
}

/// On SIGINT, SIGTERM or SIGHUP: stop every registered process group
/// (politely, then not), remove the scratch folders, exit 130. Drop guards
/// cover normal returns and panics; this covers signals, which skip them.
pub fn stop_everything_on_signal() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let got = rt.block_on(wait_for_signal());
            if let Err(e) = got {
                eprintln!("signal handling failed: {e}");
                return;
            }
            eprintln!("\ninterrupted: stopping gearmand, the driver and the workers");
            stop_registered(Duration::from_secs(5));
            for dir in SCRATCH.lock().unwrap().iter() {
                let _ = std::fs::remove_dir_all(dir);
            }
            std::process::exit(130);
        })?;
    Ok(())
}

async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
    Ok(())
}

fn stop_registered(grace: Duration) {
    let groups = LIVE_GROUPS.lock().unwrap().clone();
    for &pid in &groups {
        signal(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && groups.iter().any(|&p| alive(p as u32)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &pid in &groups {
        signal(-pid, libc::SIGKILL);
        signal(pid, libc::SIGKILL);
    }
}

/// Running and not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (1,000 processes mean
/// several thousand pipes and sockets in the driver and in gearmand, which
/// inherit it). Returns the new soft limit.
pub fn raise_fd_limit() -> Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            bail!("getrlimit: {}", std::io::Error::last_os_error());
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            bail!("setrlimit: {}", std::io::Error::last_os_error());
        }
    }
    // rlim_t is narrower than u64 on some targets.
    #[allow(clippy::unnecessary_cast)]
    Ok(lim.rlim_cur as u64)
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `check` every `every` until it returns `Some`, fails, or `limit`
/// passes (then an error naming `what`).
pub fn wait_for<T>(
    limit: Duration,
    every: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
}

/// Null stdin and stdout, stderr to `log` (appended).
pub fn quiet(cmd: &mut Command, log: &Path) -> Result<()> {
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err);
    Ok(())
}

/// Resident set size in KiB, from /proc/<pid>/status.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc/<pid>/status")
}

/// CPU time used so far by all of `pid`'s threads, also those that have
/// ended: the process's CPU clock, to the nanosecond. /proc/<pid>/stat
/// counts whole clock ticks, which is 1.4 % of the 0.7 s a supervisor spends
/// on 20,000 jobs; it is the fallback.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let mut clock: libc::clockid_t = 0;
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: both calls only fill the locals they are given.
    let read = unsafe {
        libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) == 0
            && libc::clock_gettime(clock, &mut now) == 0
    };
    if read {
        return Ok(Duration::new(now.tv_sec as u64, now.tv_nsec as u32));
    }
    // utime and stime: fields 14 and 15.
    stat_ticks(pid, 14..16)
}

/// The sum of /proc/<pid>/stat's clock-tick fields `fields` (numbered from
/// 1, as in proc(5)), as a duration.
fn stat_ticks(pid: u32, fields: std::ops::Range<usize>) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which may hold spaces and parentheses;
    // `rest` starts at field 3.
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .context("malformed /proc/<pid>/stat")?
        .1
        .split_whitespace()
        .collect();
    let mut ticks = 0u64;
    for field in &rest[fields.start - 3..fields.end - 3] {
        ticks += field.parse::<u64>()?;
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_micros(ticks * 1_000_000 / hz))
}

/// CPU time of a process and everything below it: its own user + system
/// time, that of the children it has reaped (cutime + cstime, in clock
/// ticks: only the kernel's tally keeps them), and the same
/// for each live child, recursively. With the machine shared, this counts
/// the work a variant costs, which other load sways less than throughput.
pub fn cpu_tree(pid: u32) -> Result<Duration> {
    // cutime and cstime (children reaped so far): fields 16 and 17.
    let mut total = cpu_time(pid)? + stat_ticks(pid, 16..18)?;
    for child in children(pid) {
        // A child may exit between the listing and the reading.
        if let Ok(t) = cpu_tree(child) {
            total += t;
        }
    }
    Ok(total)
}

/// The live children of every thread of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The share of all cores that was busy over `window`, from /proc/stat.
pub fn machine_busy(window: Duration) -> Result<f64> {
    let before = cpu_totals()?;
    std::thread::sleep(window);
    Ok(before.busy_share_until(cpu_totals()?))
}

/// Busy and total jiffies over all cores at one moment.
#[derive(Clone, Copy)]
pub struct CpuTotals {
    busy: u64,
    total: u64,
}

impl CpuTotals {
    /// The share of all cores that was busy from `self` to `later`.
    pub fn busy_share_until(self, later: CpuTotals) -> f64 {
        let total = later.total.saturating_sub(self.total).max(1);
        later.busy.saturating_sub(self.busy) as f64 / total as f64
    }
}

/// Busy and total jiffies over all cores; idle and iowait count as not busy.
pub fn cpu_totals() -> Result<CpuTotals> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Ok(CpuTotals {
        busy: total - idle,
        total,
    })
}

/// Counts the system calls of some processes (all their threads) with
/// `perf stat`, from [`SyscallCount::start`] to [`SyscallCount::stop`].
/// `None` where perf is missing or not allowed to count.
pub struct SyscallCount {
    perf: std::process::Child,
}

impl SyscallCount {
    pub fn start(pids: &[u32]) -> Option<SyscallCount> {
        let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
        let perf = Command::new("perf")
            .args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p"])
            .arg(list.join(","))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        // perf attaches to every thread before counting; give it a moment.
        std::thread::sleep(Duration::from_millis(300));
        Some(SyscallCount { perf })
    }

    pub fn stop(self) -> Option<u64> {
        // SAFETY: kill has no memory preconditions; perf is our child.
        if unsafe { libc::kill(self.perf.id() as i32, libc::SIGINT) } != 0 {
            return None;
        }
        let out = self.perf.wait_with_output().ok()?;
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .find(|l| l.contains("raw_syscalls:sys_enter"))?
            .split(',')
            .next()?
            .parse()
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first advance seen is far below a clock tick (10 ms at the usual
    /// 100 Hz), as /proc/<pid>/stat could never show it.
    #[test]
    fn cpu_time_reads_below_a_clock_tick() {
        let me = std::process::id();
        let start = cpu_time(me).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut now = start;
        while now == start && std::time::Instant::now() < deadline {
            now = cpu_time(me).unwrap();
        }
        let step = now - start;
        assert!(
            step > Duration::ZERO && step < Duration::from_millis(1),
            "{step:?}"
        );
        let ticks = stat_ticks(me, 14..16).unwrap();
        assert!(
            ticks <= now + Duration::from_millis(20),
            "{ticks:?} against {now:?}"
        );
    }
}
