//! The resident process behind each slot of an `exec` job
//! (`gearman-driver exec-slot -- COMMAND...`, started by the supervisor).
//!
//! It speaks the stdio protocol to the supervisor, and for every job runs
//! COMMAND with the workload on stdin: its stdout is the result, exit status
//! 0 completes the job, anything else fails it with the last line of stderr.
//! Holding the slot in a resident process gives the console a PID to show and
//! kill, and keeps a job's timeout from costing the slot: the command is
//! killed, the job fails, the slot takes the next job.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag};

use crate::supervisor::spawn::EXEC_TIMEOUTS_ENV;

mod launch;

use launch::{Launcher, Running};

/// Output beyond this fails the job instead of exhausting memory.
pub const MAX_OUTPUT: usize = 64 * 1024 * 1024;

/// The process group of the command running now, 0 when none.
static RUNNING_GROUP: AtomicI32 = AtomicI32::new(0);

extern "C" fn kill_command_and_exit(signal: libc::c_int) {
    let group = RUNNING_GROUP.load(Ordering::SeqCst);
    // SAFETY: killpg and _exit are async-signal-safe.
    unsafe {
        if group > 0 {
            libc::killpg(group, libc::SIGKILL);
        }
        libc::_exit(128 + signal);
    }
}

/// The command runs in a group of its own, out of reach of the signals the
/// supervisor sends to the slot's group; so a slot told to go (`kill`,
/// scale-down, shutdown) takes its command with it.
fn forward_termination_to_the_command() {
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: installs a handler that only calls async-signal-safe functions.
        unsafe {
            libc::signal(
                signal,
                kill_command_and_exit as *const () as libc::sighandler_t,
            );
        }
    }
}

/// The failure message of a command that ran over its timeout; the
/// supervisor counts a job failed with it as timed out.
pub fn timeout_message(limit: Duration) -> String {
    format!("{TIMEOUT_PREFIX}{}s", limit.as_secs())
}

const TIMEOUT_PREFIX: &str = "timeout after ";

/// Whether a failure message is [`timeout_message`]'s.
pub fn is_timeout_message(message: &str) -> bool {
    message
        .strip_prefix(TIMEOUT_PREFIX)
        .and_then(|rest| rest.strip_suffix('s'))
        .is_some_and(|secs| !secs.is_empty() && secs.bytes().all(|b| b.is_ascii_digit()))
}

/// How one run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum RunResult {
    Done(Vec<u8>),
    Fail(String),
}

/// The slot is started through `/proc/self/exe`, so the kernel names it
/// `exe`: that is what `top`, `pgrep` and `killall` would see. It takes
/// the name of the binary `ps` shows in its argv instead.
fn take_the_name_ps_shows() {
    let Some(argv0) = std::env::args_os().next() else {
        return;
    };
    let name = std::path::Path::new(&argv0)
        .file_name()
        .unwrap_or(&argv0)
        .as_bytes()
        .to_vec();
    if let Ok(name) = std::ffi::CString::new(name) {
        // Only a label: a slot that keeps `exe` works the same.
        let _ = nix::sys::prctl::set_name(&name);
    }
}

/// Serves jobs until stdin closes. Returns the process exit code.
pub fn main(command: Vec<String>) -> i32 {
    take_the_name_ps_shows();
    let timeouts = parse_timeouts(&std::env::var(EXEC_TIMEOUTS_ENV).unwrap_or_default());
    let stdin = std::io::stdin();
    let mut input = BufReader::new(stdin.lock());
    forward_termination_to_the_command();
    // After the handlers are in place: the launcher notes which to reset.
    let mut launcher = match Launcher::new(&command) {
        Ok(launcher) => launcher,
        Err(err) => {
            eprintln!("exec-slot: {}: {err}", command.join(" "));
            return 1;
        }
    };
    // Our own buffered handle on fd 1: std's stdout flushes at every newline,
    // which would split each answer into two writes.
    let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned() else {
        return 1;
    };
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::fs::File::from(fd));
    if out.write_all(b"READY\n").and_then(|_| out.flush()).is_err() {
        return 1;
    }
    let mut header = Vec::new();
    loop {
        header.clear();
        match input.read_until(b'\n', &mut header) {
            Ok(0) => return 0,
            Ok(_) => {}
            Err(_) => return 1,
        }
        let Some((name, size)) = parse_job_header(&header) else {
            eprintln!(
                "exec-slot: bad header from the supervisor: {}",
                String::from_utf8_lossy(&header).trim_end()
            );
            return 1;
        };
        let mut workload = vec![0; size];
        if input.read_exact(&mut workload).is_err() {
            return 1;
        }
        let timeout = timeouts.get(&name).copied();
        let result = run_once(&mut launcher, workload, timeout);
        let (word, body) = match result {
            RunResult::Done(bytes) => ("DONE", bytes),
            RunResult::Fail(message) => ("FAIL", message.into_bytes()),
        };
        let written = writeln!(out, "{word} {}", body.len())
            .and_then(|_| out.write_all(&body))
            .and_then(|_| out.flush());
        if written.is_err() {
            return 1;
        }
    }
}

/// `key=secs,key=secs`.
fn parse_timeouts(text: &str) -> HashMap<String, Duration> {
    text.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.to_string(), Duration::from_secs(v.parse().ok()?)))
        })
        .collect()
}

/// `JOB <name> <handle> <unique> <size>\n` → (name, size).
fn parse_job_header(line: &[u8]) -> Option<(String, usize)> {
    let text = std::str::from_utf8(line).ok()?.trim_end_matches('\n');
    let parts: Vec<&str> = text.split(' ').collect();
    match parts.as_slice() {
        ["JOB", name, _handle, _unique, size] => Some((name.to_string(), size.parse().ok()?)),
        _ => None,
    }
}

/// Runs the command once: feeds the workload to its stdin while collecting
/// stdout and stderr, and waits for its exit, all in one `poll(2)` loop on
/// the slot's only thread. Per job that is less than half the system calls
/// of an async runtime's child handling (no epoll registrations, no
/// non-blocking flag on every pipe), and starting the command is most of
/// what an exec job costs besides the command itself.
pub fn run_once(
    launcher: &mut Launcher,
    workload: Vec<u8>,
    timeout: Option<Duration>,
) -> RunResult {
    let running = match launcher.start() {
        Ok(running) => running,
        Err(err) => return RunResult::Fail(format!("cannot run {}: {err}", launcher.name())),
    };
    let pid = running.pid;
    RUNNING_GROUP.store(pid, Ordering::SeqCst);
    let deadline = timeout.map(|limit| Instant::now() + limit);
    let mut io = ChildIo::new(running, workload);
    let ran = io.run(deadline);
    RUNNING_GROUP.store(0, Ordering::SeqCst);
    let status = match ran {
        Ok(status) => status,
        Err(stopped) => {
            kill_group(pid);
            let _ = launch::wait_for(pid);
            return RunResult::Fail(match stopped {
                Stopped::TimedOut => timeout_message(timeout.unwrap_or_default()),
                Stopped::TooMuchOutput => format!("output exceeds {} MiB", MAX_OUTPUT >> 20),
                Stopped::Failed(err) => format!("running {}: {err}", launcher.name()),
            });
        }
    };
    if status.success() {
        return RunResult::Done(io.out);
    }
    let last = last_line(&io.err);
    if last.is_empty() {
        RunResult::Fail(crate::supervisor::spawn::describe_exit(&status))
    } else {
        RunResult::Fail(last)
    }
}

/// Why a command was stopped before it ended by itself.
enum Stopped {
    TimedOut,
    TooMuchOutput,
    Failed(std::io::Error),
}

/// Stderr kept for the failure message: its tail, at most this much.
const STDERR_KEPT: usize = 1 << 20;

/// The running command's pipes, the workload still to write and what it
/// wrote so far.
struct ChildIo {
    pid: libc::pid_t,
    stdin: Option<File>,
    workload: Vec<u8>,
    written: usize,
    stdout: Option<File>,
    out: Vec<u8>,
    stderr: Option<File>,
    err: Vec<u8>,
    /// Readable once the command has exited; `None` on kernels before 5.2,
    /// where the loop checks with `waitpid`.
    pidfd: Option<OwnedFd>,
    exited: Option<ExitStatus>,
}

impl ChildIo {
    fn new(running: Running, workload: Vec<u8>) -> ChildIo {
        let mut io = ChildIo {
            pid: running.pid,
            stdin: Some(running.stdin),
            workload,
            written: 0,
            stdout: Some(running.stdout),
            out: Vec::new(),
            stderr: Some(running.stderr),
            err: Vec::new(),
            pidfd: running.pidfd,
            exited: None,
        };
        io.feed_at_once_or_prepare();
        io
    }

    /// A workload that fits a pipe's atomic write goes in now, in one write
    /// that cannot block (the pipe is new and empty), and stdin closes; a
    /// larger one is fed as the pipe drains, without ever blocking the loop,
    /// because a command may answer before reading all of it.
    fn feed_at_once_or_prepare(&mut self) {
        let Some(pipe) = &mut self.stdin else { return };
        if self.workload.len() <= libc::PIPE_BUF {
            // A command that exited without reading its input is fine.
            let _ = pipe.write_all(&self.workload);
            self.stdin = None;
        } else {
            let _ = nix::fcntl::fcntl(pipe.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        }
    }

    /// Until the command has exited and closed its output (as a shell's
    /// `$(...)` waits for both), or the deadline passes.
    fn run(&mut self, deadline: Option<Instant>) -> Result<ExitStatus, Stopped> {
        loop {
            if let Some(status) = self.exited {
                if self.stdout.is_none() && self.stderr.is_none() {
                    return Ok(status);
                }
            }
            let mut fds = Vec::with_capacity(4);
            let watch = |fds: &mut Vec<libc::pollfd>, fd: Option<RawFd>, events| {
                if let Some(fd) = fd {
                    fds.push(libc::pollfd {
                        fd,
                        events,
                        revents: 0,
                    });
                }
            };
            watch(
                &mut fds,
                self.stdin.as_ref().map(|p| p.as_raw_fd()),
                libc::POLLOUT,
            );
            watch(
                &mut fds,
                self.stdout.as_ref().map(|p| p.as_raw_fd()),
                libc::POLLIN,
            );
            watch(
                &mut fds,
                self.stderr.as_ref().map(|p| p.as_raw_fd()),
                libc::POLLIN,
            );
            let exit_fd = (self.pidfd.as_ref())
                .filter(|_| self.exited.is_none())
                .map(|p| p.as_raw_fd());
            watch(&mut fds, exit_fd, libc::POLLIN);
            let polled_exit = exit_fd.is_some() || self.exited.is_some();
            let mut wait_ms = deadline.map_or(-1, |at| {
                let left = at.saturating_duration_since(Instant::now());
                left.as_millis().min(i32::MAX as u128) as i32
            });
            if !polled_exit {
                wait_ms = if wait_ms < 0 { 20 } else { wait_ms.min(20) };
            }
            // SAFETY: `fds` is a valid array of `fds.len()` pollfd entries.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
            if ready < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Stopped::Failed(err));
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return Err(Stopped::TimedOut);
            }
            for fd in fds.iter().filter(|fd| fd.revents != 0) {
                self.on_ready(fd.fd)?;
            }
            let exit_seen =
                exit_fd.is_some_and(|p| fds.iter().any(|fd| fd.fd == p && fd.revents != 0));
            if self.exited.is_none() && (!polled_exit || exit_seen) {
                self.exited = launch::try_wait(self.pid).map_err(Stopped::Failed)?;
            }
        }
    }

    fn on_ready(&mut self, fd: RawFd) -> Result<(), Stopped> {
        if self.stdin.as_ref().is_some_and(|p| p.as_raw_fd() == fd) {
            self.feed();
        } else if self.stdout.as_ref().is_some_and(|p| p.as_raw_fd() == fd) {
            if !read_some(&mut self.stdout, &mut self.out) {
                self.stdout = None;
            }
            if self.out.len() > MAX_OUTPUT {
                // It would block writing the rest and never exit.
                return Err(Stopped::TooMuchOutput);
            }
        } else if self.stderr.as_ref().is_some_and(|p| p.as_raw_fd() == fd) {
            if !read_some(&mut self.stderr, &mut self.err) {
                self.stderr = None;
            }
            if self.err.len() > 2 * STDERR_KEPT {
                self.err.drain(..self.err.len() - STDERR_KEPT);
            }
        }
        Ok(())
    }

    /// Writes what the pipe takes now; a command that does not read its
    /// input (closed stdin, or exited) is fine.
    fn feed(&mut self) {
        let Some(pipe) = &mut self.stdin else { return };
        match pipe.write(&self.workload[self.written..]) {
            Ok(n) => self.written += n,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => return,
            Err(_) => self.written = self.workload.len(),
        }
        if self.written == self.workload.len() {
            self.stdin = None;
        }
    }
}

/// Reads what is there, straight into `into`'s spare room (no buffer to
/// clear on every call); false at end of file (or a broken pipe).
fn read_some(pipe: &mut Option<File>, into: &mut Vec<u8>) -> bool {
    let Some(pipe) = pipe else { return false };
    into.reserve(into.len().max(4096));
    let spare = into.spare_capacity_mut();
    // SAFETY: read(2) writes at most `spare.len()` bytes into the vector's
    // spare capacity, and only the `n` it reports are then counted in.
    let n = unsafe { libc::read(pipe.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
    match n {
        0 => false,
        n if n > 0 => {
            // SAFETY: the first `n` bytes of the spare room were just written.
            unsafe { into.set_len(into.len() + n as usize) };
            true
        }
        _ => matches!(
            std::io::Error::last_os_error().kind(),
            std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
        ),
    }
}

fn kill_group(pid: i32) {
    if pid > 0 {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn last_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    fn run(command: &[String], workload: Vec<u8>, timeout: Option<Duration>) -> RunResult {
        run_once(&mut Launcher::new(command).unwrap(), workload, timeout)
    }

    #[test]
    fn one_launcher_serves_job_after_job() {
        let mut launcher = Launcher::new(&["rev".into()]).unwrap();
        for i in 0..50 {
            let r = run_once(&mut launcher, format!("job {i}\n").into_bytes(), None);
            let want: String = format!("job {i}").chars().rev().collect();
            assert_eq!(r, RunResult::Done(format!("{want}\n").into_bytes()));
        }
    }

    #[test]
    fn a_program_that_cannot_run_fails_the_job_with_why() {
        let r = run(&["/nonexistent/program".into()], b"x".to_vec(), None);
        assert_eq!(
            r,
            RunResult::Fail(
                "cannot run /nonexistent/program: No such file or directory (os error 2)".into()
            )
        );
    }

    #[test]
    fn stdout_is_the_result() {
        let r = run(
            &["tr".into(), "a-z".into(), "A-Z".into()],
            b"hello".to_vec(),
            None,
        );
        assert_eq!(r, RunResult::Done(b"HELLO".to_vec()));
    }

    #[test]
    fn failure_carries_the_last_stderr_line() {
        let r = run(&sh("echo one >&2; echo two >&2; exit 3"), vec![], None);
        assert_eq!(r, RunResult::Fail("two".into()));
        let r = run(&sh("exit 4"), vec![], None);
        assert_eq!(r, RunResult::Fail("exited with status 4".into()));
    }

    #[test]
    fn timeout_kills_the_command() {
        let started = std::time::Instant::now();
        let r = run(&sh("sleep 30"), vec![], Some(Duration::from_secs(1)));
        assert_eq!(r, RunResult::Fail("timeout after 1s".into()));
        assert!(is_timeout_message("timeout after 1s"));
        assert!(!is_timeout_message("timeout after lunch"));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn large_workloads_pass_through_both_pipes_at_once() {
        // Far over a pipe's buffer both ways: writing all of it before
        // reading would deadlock against `cat`.
        let workload: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
        let r = run(&["cat".into()], workload.clone(), None);
        assert_eq!(r, RunResult::Done(workload));
    }

    #[test]
    fn a_command_that_ignores_its_input_is_fine() {
        let r = run(&sh("echo ok"), vec![b'x'; 1 << 20], None);
        assert_eq!(r, RunResult::Done(b"ok\n".to_vec()));
    }

    #[test]
    fn headers_and_timeouts_parse() {
        assert_eq!(
            parse_job_header(b"JOB up H:1 - 5\n"),
            Some(("up".into(), 5))
        );
        assert_eq!(parse_job_header(b"nonsense\n"), None);
        assert_eq!(
            parse_timeouts("a=3,b=x").get("a"),
            Some(&Duration::from_secs(3))
        );
    }
}
