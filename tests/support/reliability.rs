//! Helpers shared by the fault-injection suites (`tests/reliability*.rs`):
//! a log tail that timestamps lines as they appear (the log itself only has
//! whole seconds), a client that survives gearmand going away, and a tiny
//! deterministic random source.
#![allow(dead_code)]

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{Client, JobReply};

/// Follows a log file from another thread, noting when each line showed up.
pub struct LogTail {
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogTail {
    pub fn follow(path: PathBuf) -> LogTail {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let lines = lines.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut offset = 0u64;
                let mut partial = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(mut f) = std::fs::File::open(&path) {
                        let mut chunk = Vec::new();
                        if f.seek(SeekFrom::Start(offset)).is_ok()
                            && f.read_to_end(&mut chunk).is_ok()
                        {
                            offset += chunk.len() as u64;
                            partial.extend_from_slice(&chunk);
                            let now = Instant::now();
                            while let Some(nl) = partial.iter().position(|&b| b == b'\n') {
                                let line: Vec<u8> = partial.drain(..=nl).collect();
                                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                                lines.lock().unwrap().push((now, text));
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        LogTail {
            lines,
            stop,
            thread: Some(thread),
        }
    }

    /// Lines containing `needle`, with the time they were seen.
    pub fn matching(&self, needle: &str) -> Vec<(Instant, String)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| l.contains(needle))
            .cloned()
            .collect()
    }

    pub fn count(&self, needle: &str) -> usize {
        self.matching(needle).len()
    }

    /// Waits until at least `n` lines contain `needle`; returns them.
    pub fn wait_count(&self, needle: &str, n: usize, limit: Duration) -> Vec<(Instant, String)> {
        crate::common::wait_for(limit, &format!("{n} log lines with {needle:?}"), || {
            let found = self.matching(needle);
            (found.len() >= n).then_some(found)
        })
    }
}

impl Drop for LogTail {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs one foreground job until it is answered. Whenever the connection
/// dies before an answer (gearmand went away), it reconnects and submits
/// again, as a careful client would; returns the reply and the number of
/// submissions it took.
pub async fn submit_until_answered(
    addr: &str,
    function: &str,
    payload: &[u8],
    limit: Duration,
) -> (JobReply, u32) {
    let deadline = Instant::now() + limit;
    let mut submissions = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "{function} {payload:?} unanswered after {limit:?} and {submissions} submissions"
        );
        let mut client = match Client::connect(addr).await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        submissions += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, client.submit(function, b"", payload.to_vec())).await {
            Ok(Ok(reply)) => return (reply, submissions),
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => panic!("{function} {payload:?} unanswered after {limit:?}"),
        }
    }
}

/// xorshift64*: reproducible noise without a dependency.
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Noise {
        Noise(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Lines of a file, or none while it does not exist yet.
pub fn file_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The parent PID of a process, from /proc.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Waits until `job` has at least one process and all of them are idle
/// (READY and registered), from the console's `ps`.
pub fn wait_idle(driver: &crate::common::Driver, job: &str, limit: Duration) {
    crate::common::wait_for(limit, &format!("{job} to be idle"), || {
        let rows = driver.console("ps");
        let states: Vec<String> = rows
            .iter()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(1) == Some(&job)).then(|| f.get(2).unwrap_or(&"").to_string())
            })
            .collect();
        (!states.is_empty() && states.iter().all(|s| s == "idle")).then_some(())
    });
}
