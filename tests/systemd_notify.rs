//! systemd notification, seen from a test-owned `NOTIFY_SOCKET`: READY only
//! once the min processes are up (or failed to start), STATUS each interval,
//! WATCHDOG pings, RELOADING/READY around HUP and the console's reload,
//! STOPPING on TERM; and worker processes do not inherit the socket.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// The service manager's end: every datagram, in order.
struct NotifySocket {
    path: PathBuf,
    messages: mpsc::Receiver<String>,
    seen: Vec<String>,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                if tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
                {
                    return;
                }
            }
        });
        NotifySocket {
            path,
            messages,
            seen: Vec::new(),
            _dir: dir,
        }
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Reads datagrams until one has a line for which `want` holds; returns
    /// that datagram. Everything read is kept in `seen`.
    fn wait_for(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(message) => {
                    self.seen.push(message.clone());
                    if message.lines().any(&want) {
                        return message;
                    }
                }
                Err(_) => panic!("no {what} within 30s; got {:?}", self.seen),
            }
        }
    }

    fn count(&self, line: &str) -> usize {
        self.seen
            .iter()
            .flat_map(|m| m.lines())
            .filter(|l| *l == line)
            .count()
    }
}

/// A stdio worker that says READY only once `gate` exists, and reports on
/// stderr whether it inherited NOTIFY_SOCKET.
fn gated_worker(gate: &Path) -> String {
    let serve = python_worker("");
    format!(
        "import os, sys, time\n\
         print('notify socket:', os.environ.get('NOTIFY_SOCKET'), file=sys.stderr, flush=True)\n\
         while not os.path.exists({gate:?}):\n    time.sleep(0.02)\n\
         {serve}"
    )
}

#[test]
fn ready_after_min_processes_then_status_watchdog_reload_and_stopping() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    let gate_dir = tempfile::tempdir().unwrap();
    let gate = gate_dir.path().join("open");
    lib.file("Notify/gated.py", &gated_worker(&gate));
    lib.file(
        "Notify/Gated.toml",
        "command = [\"python3\", \"gated.py\"]\n[jobs.work]\nmin_processes = 2\nmax_processes = 2\n",
    );
    let mut socket = NotifySocket::bind();
    let mut driver = Driver::start_with_env(
        &lib,
        &gearmand.addr(),
        "Notify",
        &["--interval", "0.2"],
        &[
            ("NOTIFY_SOCKET", socket.path()),
            ("WATCHDOG_USEC", "600000"),
        ],
    );
    let job = "Notify::Gated::work";
    driver.wait_processes(job, 2, Duration::from_secs(10));

    // Both processes wait at the gate: the loop turns (STATUS, WATCHDOG)
    // but systemd hears no READY.
    let status = socket.wait_for("STATUS with both processes starting", |l| {
        l.starts_with("STATUS=") && l.contains("2 starting") && l.ends_with("1/1 up")
    });
    assert_eq!(
        status.trim_end(),
        "STATUS=1 jobs, 2 processes (0 busy, 0 idle, 2 starting), 0 waiting; gearmand 1/1 up"
    );
    socket.wait_for("a second WATCHDOG", |l| l == "WATCHDOG=1");
    socket.wait_for("a second WATCHDOG", |l| l == "WATCHDOG=1");
    socket.wait_for("another STATUS", |l| l.starts_with("STATUS="));
    assert_eq!(socket.count("READY=1"), 0, "{:?}", socket.seen);

    std::fs::write(&gate, "").unwrap();
    socket.wait_for("READY", |l| l == "READY=1");
    // The driver logs each process's READY before it tells systemd.
    let log = driver.log_text();
    let ready_lines = log.lines().filter(|l| l.ends_with("] ready")).count();
    assert_eq!(ready_lines, 2, "{log}");
    assert_eq!(
        log.matches("STDERR: notify socket: None").count(),
        2,
        "workers must not inherit NOTIFY_SOCKET:\n{log}"
    );
    socket.wait_for("STATUS with both idle", |l| {
        l.starts_with("STATUS=") && l.contains("(0 busy, 2 idle)")
    });

    // HUP: RELOADING=1 with the monotonic time, then READY=1 again.
    unsafe { libc::kill(driver.pid() as i32, libc::SIGHUP) };
    let reloading = socket.wait_for("RELOADING", |l| l == "RELOADING=1");
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading:?}"
    );
    socket.wait_for("READY after the reload", |l| l == "READY=1");

    // The console's reload does the same.
    assert_eq!(driver.console("reload")[0], "OK");
    socket.wait_for("RELOADING", |l| l == "RELOADING=1");
    socket.wait_for("READY after the console's reload", |l| l == "READY=1");

    let watchdogs = socket.count("WATCHDOG=1");
    assert!(watchdogs >= 2, "{:?}", socket.seen);
    socket.wait_for("more WATCHDOG pings", |l| l == "WATCHDOG=1");

    let status = driver.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    socket.wait_for("STOPPING", |l| l == "STOPPING=1");
    assert_eq!(socket.count("READY=1"), 3, "{:?}", socket.seen);
}

#[test]
fn ready_also_when_a_job_cannot_start() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("Notify/ok.py", &python_worker(""));
    lib.file(
        "Notify/Ok.toml",
        "command = [\"python3\", \"ok.py\"]\n[jobs.work]\nmin_processes = 1\n",
    );
    lib.file("Notify/broken.sh", "#!/bin/sh\necho broken >&2\nexit 3\n");
    lib.file(
        "Notify/Broken.toml",
        "command = \"./broken.sh\"\n[jobs.work]\nmin_processes = 2\nmax_processes = 2\n",
    );
    let mut socket = NotifySocket::bind();
    let driver = Driver::start_with_env(
        &lib,
        &gearmand.addr(),
        "Notify",
        &[],
        &[("NOTIFY_SOCKET", socket.path())],
    );
    socket.wait_for("READY", |l| l == "READY=1");
    // The good job is up; the broken one is backing off, not holding start-up.
    let ok = driver.status_line("Notify::Ok::work");
    assert_eq!(ok.split_whitespace().nth(3), Some("1"), "{ok}");
    let broken = driver.status_line("Notify::Broken::work");
    assert!(broken.contains("ERROR: exited with status 3"), "{broken}");
}
