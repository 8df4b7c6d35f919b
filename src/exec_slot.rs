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
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::process::Stdio;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::supervisor::spawn::EXEC_TIMEOUTS_ENV;

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

/// Serves jobs until stdin closes. Returns the process exit code.
pub fn main(command: Vec<String>) -> i32 {
    let timeouts = parse_timeouts(&std::env::var(EXEC_TIMEOUTS_ENV).unwrap_or_default());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("exec-slot: cannot start: {err}");
            return 1;
        }
    };
    let stdin = std::io::stdin();
    let mut input = BufReader::new(stdin.lock());
    forward_termination_to_the_command();
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
        let result = runtime.block_on(run_once(&command, workload, timeout));
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

/// Runs the command once.
pub async fn run_once(
    command: &[String],
    workload: Vec<u8>,
    timeout: Option<Duration>,
) -> RunResult {
    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so that a timeout kills what it forked too. No
        // pre_exec hook: without one the command starts through posix_spawn
        // (vfork), several times cheaper per job than a full fork.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(err) => return RunResult::Fail(format!("cannot run {}: {err}", command[0])),
    };
    let pid = child.id().unwrap_or(0) as i32;
    RUNNING_GROUP.store(pid, Ordering::SeqCst);
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let feed = async move {
        // A command that does not read its input is fine.
        let _ = stdin.write_all(&workload).await;
        drop(stdin);
    };
    let collect_out = async move {
        let mut buf = Vec::new();
        let n = (&mut stdout)
            .take(MAX_OUTPUT as u64 + 1)
            .read_to_end(&mut buf)
            .await;
        if buf.len() > MAX_OUTPUT {
            // It would block writing the rest and never exit.
            kill_group(pid);
        }
        (n, buf)
    };
    let collect_err = async move {
        let mut buf = Vec::new();
        let _ = (&mut stderr).take(1 << 20).read_to_end(&mut buf).await;
        buf
    };
    let all = async {
        let (_, (out, out_buf), err_buf, status) =
            tokio::join!(feed, collect_out, collect_err, child.wait());
        (out, out_buf, err_buf, status)
    };
    let limit = timeout.unwrap_or(Duration::from_secs(u64::MAX / 4));
    let outcome = tokio::time::timeout(limit, all).await;
    RUNNING_GROUP.store(0, Ordering::SeqCst);
    match outcome {
        Err(_) => {
            kill_group(pid);
            RunResult::Fail(timeout_message(limit))
        }
        Ok((_, out, err, status)) => {
            if out.len() > MAX_OUTPUT {
                kill_group(pid);
                return RunResult::Fail(format!("output exceeds {} MiB", MAX_OUTPUT >> 20));
            }
            match status {
                Ok(s) if s.success() => RunResult::Done(out),
                Ok(s) => {
                    let last = last_line(&err);
                    if last.is_empty() {
                        RunResult::Fail(crate::supervisor::spawn::describe_exit(&s))
                    } else {
                        RunResult::Fail(last)
                    }
                }
                Err(err) => RunResult::Fail(format!("waiting for {}: {err}", command[0])),
            }
        }
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

    #[tokio::test]
    async fn stdout_is_the_result() {
        let r = run_once(
            &["tr".into(), "a-z".into(), "A-Z".into()],
            b"hello".to_vec(),
            None,
        )
        .await;
        assert_eq!(r, RunResult::Done(b"HELLO".to_vec()));
    }

    #[tokio::test]
    async fn failure_carries_the_last_stderr_line() {
        let r = run_once(&sh("echo one >&2; echo two >&2; exit 3"), vec![], None).await;
        assert_eq!(r, RunResult::Fail("two".into()));
        let r = run_once(&sh("exit 4"), vec![], None).await;
        assert_eq!(r, RunResult::Fail("exited with status 4".into()));
    }

    #[tokio::test]
    async fn timeout_kills_the_command() {
        let started = std::time::Instant::now();
        let r = run_once(&sh("sleep 30"), vec![], Some(Duration::from_secs(1))).await;
        assert_eq!(r, RunResult::Fail("timeout after 1s".into()));
        assert!(is_timeout_message("timeout after 1s"));
        assert!(!is_timeout_message("timeout after lunch"));
        assert!(started.elapsed() < Duration::from_secs(10));
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
