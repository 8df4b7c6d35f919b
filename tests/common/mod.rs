//! Shared harness for integration tests: a real gearmand on a free loopback
//! port, a gearman-driver process with its own lib dir and console port, and
//! bounded waits. Everything is killed when dropped, even on panic.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use gearman_driver::gearman::client::{Client, JobReply};

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every 20 ms until it returns Some or `limit` passes.
pub fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn pid_alive(pid: u32) -> bool {
    // A zombie still answers kill(0); read its state instead.
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

pub struct Gearmand {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Gearmand {
    /// On a free port. A port found free may be taken by another test before
    /// gearmand binds it (gearmand then keeps retrying instead of exiting), so
    /// the listener is checked to be ours and another port tried if not.
    pub fn start() -> Gearmand {
        for _ in 0..5 {
            if let Some(g) = Self::try_start(free_port(), Duration::from_secs(5)) {
                return g;
            }
        }
        panic!("gearmand could not get a port of its own");
    }

    /// On `port` (a restart on the port of one just killed).
    pub fn start_on(port: u16) -> Gearmand {
        Self::try_start(port, Duration::from_secs(10)).expect("gearmand to listen on its port")
    }

    fn try_start(port: u16, limit: Duration) -> Option<Gearmand> {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(gearmand_path())
            .args([
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                "--threads=1",
            ])
            .arg(format!(
                "--log-file={}",
                dir.path().join("gearmand.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gearmand is installed (Debian package gearman-job-server)");
        let deadline = Instant::now() + limit;
        while gearmand_pid(port) != Some(child.id()) {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Gearmand {
            port,
            child,
            _dir: dir,
        })
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// gearmand's admin `status`: (function, total, running, workers).
    pub fn status(&self) -> Vec<(String, u64, u64, u64)> {
        self.admin("status")
            .iter()
            .map(|line| {
                let f: Vec<&str> = line.split('\t').collect();
                (
                    f[0].to_string(),
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                )
            })
            .collect()
    }

    /// One admin text command (`prioritystatus`, `show unique jobs`, ...):
    /// its answer's lines up to the closing `.`.
    pub fn admin(&self, command: &str) -> Vec<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("{command}\r\n").as_bytes()).unwrap();
        BufReader::new(s)
            .lines()
            .map(|l| l.unwrap())
            .take_while(|l| l != ".")
            .collect()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Gearmand {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The PID of the gearmand listening on `port`, from its admin `getpid`.
fn gearmand_pid(port: u16) -> Option<u32> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"getpid\r\n").ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    line.trim().strip_prefix("OK ")?.trim().parse().ok()
}

fn gearmand_path() -> PathBuf {
    for p in ["/usr/sbin/gearmand", "/usr/local/sbin/gearmand"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    PathBuf::from("gearmand")
}

/// A lib dir with worker files, built up by the test.
pub struct Lib {
    pub dir: tempfile::TempDir,
}

impl Lib {
    pub fn new() -> Lib {
        Lib {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `rel` (creating folders); scripts get mode 755.
    pub fn file(&self, rel: &str, body: &str) -> PathBuf {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, body).unwrap();
        if rel.ends_with(".py") || rel.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        path
    }
}

/// A stdio worker in Python serving `job` by reversing the workload;
/// `extra` is Python run per job before answering (may use `name`, `data`).
pub fn python_worker(extra: &str) -> String {
    format!(
        r#"import os, sys, time
out, inp = sys.stdout.buffer, sys.stdin.buffer
def frame(word, data):
    out.write(b"%s %d\n" % (word, len(data)) + data); out.flush()
out.write(b"READY\n"); out.flush()
for header in inp:
    _, name, handle, unique, size = header.split()
    data = inp.read(int(size))
    name = name.decode()
    result = data[::-1]
{}
    frame(b"DONE", result)
"#,
        extra
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    )
}

pub struct Driver {
    pub child: Option<Child>,
    pub console_port: u16,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Driver {
    /// Starts `gearman-driver` with the given flags plus a free console port
    /// and a log file; waits until the console answers.
    pub fn start(lib: &Lib, gearmand: &Gearmand, namespaces: &str, extra: &[&str]) -> Driver {
        let servers = gearmand.addr();
        Self::start_with_servers(lib, &servers, namespaces, extra)
    }

    pub fn start_with_servers(
        lib: &Lib,
        servers: &str,
        namespaces: &str,
        extra: &[&str],
    ) -> Driver {
        Self::start_with_env(lib, servers, namespaces, extra, &[])
    }

    /// As [`Driver::start_with_servers`], with these environment variables.
    pub fn start_with_env(
        lib: &Lib,
        servers: &str,
        namespaces: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Driver {
        // A port found free may be bound by another test first; then this
        // driver exits with "cannot listen" and another port is tried.
        for _ in 0..5 {
            if let Some(driver) = Self::try_start(lib, servers, namespaces, extra, env) {
                return driver;
            }
        }
        panic!("gearman-driver could not get a console port of its own");
    }

    /// Starts `gearman-driver --config FILE` (plus a free console port and a
    /// log file); the file names the lib dir, namespaces and servers.
    pub fn start_with_config(config: &Path) -> Driver {
        for _ in 0..5 {
            let args = vec!["--config".into(), config.as_os_str().to_owned()];
            if let Some(driver) = Self::try_start_args(args, &[]) {
                return driver;
            }
        }
        panic!("gearman-driver could not get a console port of its own");
    }

    fn try_start(
        lib: &Lib,
        servers: &str,
        namespaces: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Option<Driver> {
        let mut args: Vec<std::ffi::OsString> = vec!["--lib".into(), lib.path().into()];
        for a in ["--namespaces", namespaces, "--server", servers] {
            args.push(a.into());
        }
        args.extend(extra.iter().map(|a| a.into()));
        Self::try_start_args(args, env)
    }

    /// As [`Driver::start`], running the binary at `exe`.
    pub fn start_program(
        exe: &Path,
        lib: &Lib,
        gearmand: &Gearmand,
        namespaces: &str,
        extra: &[&str],
    ) -> Driver {
        for _ in 0..5 {
            let mut args: Vec<std::ffi::OsString> = vec!["--lib".into(), lib.path().into()];
            for a in ["--namespaces", namespaces, "--server", &gearmand.addr()] {
                args.push(a.into());
            }
            args.extend(extra.iter().map(|a| a.into()));
            if let Some(driver) = Self::try_start_program(exe, args, &[]) {
                return driver;
            }
        }
        panic!("gearman-driver could not get a console port of its own");
    }

    fn try_start_args(args: Vec<std::ffi::OsString>, env: &[(&str, &str)]) -> Option<Driver> {
        Self::try_start_program(Path::new(env!("CARGO_BIN_EXE_gearman-driver")), args, env)
    }

    fn try_start_program(
        exe: &Path,
        args: Vec<std::ffi::OsString>,
        env: &[(&str, &str)],
    ) -> Option<Driver> {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("driver.log");
        let console_port = free_port();
        let child = Command::new(exe)
            .args([
                "--console-port",
                &console_port.to_string(),
                "--loglevel",
                "debug",
            ])
            .arg("--logfile")
            .arg(&log)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut driver = Driver {
            child: Some(child),
            console_port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        // Logged only once this driver has bound its console port.
        while !driver.log_text().contains(" started: ") {
            let child = driver.child.as_mut().unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                if err.contains("cannot listen on") {
                    return None;
                }
                panic!(
                    "gearman-driver exited ({status}): {err}\nlog:\n{}",
                    driver.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "gearman-driver did not start:\n{}",
                driver.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(driver)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_log(&self, needle: &str, limit: Duration) {
        wait_for(limit, &format!("log line containing {needle:?}"), || {
            self.log_text().contains(needle).then_some(())
        });
    }

    /// One console command; the answer's lines without CRLF and without `.`.
    pub fn console(&self, command: &str) -> Vec<String> {
        console_command(self.console_port, command)
    }

    /// PIDs of a job, from `show`.
    pub fn pids(&self, job: &str) -> Vec<u32> {
        self.console(&format!("show {job}"))
            .iter()
            .skip(1)
            .map(|l| l.parse().unwrap())
            .collect()
    }

    /// The processes column of a job's status line.
    pub fn process_count(&self, job: &str) -> usize {
        let status = self.console("status");
        let line = status
            .iter()
            .find(|l| l.split_whitespace().next() == Some(job))
            .expect("job listed");
        line.split_whitespace().nth(3).unwrap().parse().unwrap()
    }

    pub fn status_line(&self, job: &str) -> String {
        self.console("status")
            .into_iter()
            .find(|l| l.split_whitespace().next() == Some(job))
            .expect("job listed")
    }

    pub fn wait_processes(&self, job: &str, n: usize, limit: Duration) {
        wait_for(limit, &format!("{job} to have {n} processes"), || {
            (self.process_count(job) == n).then_some(())
        });
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        wait_for(limit, "gearman-driver to exit", || {
            child.try_wait().unwrap()
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends one command to a console and reads its answer up to `.`.
pub fn console_command(port: u16, command: &str) -> Vec<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("{command}\n").as_bytes()).unwrap();
    let mut lines = Vec::new();
    let mut reader = BufReader::new(s);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        assert!(
            line.ends_with("\r\n"),
            "console lines end with CRLF: {line:?}"
        );
        let line = line.trim_end_matches("\r\n").to_string();
        if line == "." {
            break;
        }
        lines.push(line);
    }
    lines
}

/// One console command on a fresh connection, after `auth <token>` when a
/// token is given (the `auth` must answer OK).
pub fn console_authed(port: u16, token: Option<&str>, command: &str) -> Vec<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut answer = |line: &str| {
        writer.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            assert!(reader.read_line(&mut l).unwrap() > 0, "closed: {lines:?}");
            let l = l.trim_end().to_string();
            if l == "." {
                return lines;
            }
            lines.push(l);
        }
    };
    if let Some(token) = token {
        assert_eq!(answer(&format!("auth {token}")), ["OK"]);
    }
    answer(command)
}

/// Runs the driver with `args` until it exits on its own (within 15 s);
/// returns its exit code and standard error.
pub fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gearman-driver"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for(Duration::from_secs(15), "the driver to exit", || {
        child.try_wait().unwrap()
    });
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err)
}

/// Runs a future on a fresh runtime with a time limit.
pub fn block_on<F: std::future::Future>(limit: Duration, fut: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { tokio::time::timeout(limit, fut).await.expect("timed out") })
}

/// Submits a foreground job and returns the reply.
pub fn submit(gearmand: &Gearmand, function: &str, payload: &[u8]) -> JobReply {
    let addr = gearmand.addr();
    let payload = payload.to_vec();
    block_on(Duration::from_secs(60), async move {
        let mut c = Client::connect(&addr).await.unwrap();
        c.submit(function, b"", payload).await.unwrap()
    })
}

/// Queues background jobs.
pub fn submit_background(gearmand: &Gearmand, function: &str, payloads: &[&[u8]]) {
    let addr = gearmand.addr();
    let payloads: Vec<Vec<u8>> = payloads.iter().map(|p| p.to_vec()).collect();
    block_on(Duration::from_secs(30), async move {
        let mut c = Client::connect(&addr).await.unwrap();
        for p in payloads {
            c.submit_background(function, p).await.unwrap();
        }
    })
}

/// Child PIDs of a process (from /proc).
pub fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Watches a job while gearmand drains its backlog: asserts it never has more
/// than `max` processes (console count and actual children) and returns the
/// most it had.
pub fn drain_watching_peak(
    driver: &Driver,
    gearmand: &Gearmand,
    job: &str,
    max: usize,
    limit: Duration,
) -> usize {
    let mut peak = 0;
    let deadline = Instant::now() + limit;
    loop {
        let n = driver.process_count(job);
        let children = children_of(driver.pid()).len();
        assert!(
            n <= max && children <= max,
            "never more than max: status {n}, children {children}"
        );
        peak = peak.max(n);
        let queued: u64 = gearmand
            .status()
            .iter()
            .filter(|r| r.0 == job)
            .map(|r| r.1)
            .sum();
        if queued == 0 {
            return peak;
        }
        assert!(
            Instant::now() < deadline,
            "the backlog of {job} did not drain"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Background payloads `prefix0`, `prefix1`, ...
pub fn payloads(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{prefix}{i}").into_bytes())
        .collect()
}

pub fn submit_background_all(gearmand: &Gearmand, function: &str, payloads: &[Vec<u8>]) {
    let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
    submit_background(gearmand, function, &refs);
}

/// Gearman packet types a stand-in server reads or answers.
pub mod packet {
    pub const CAN_DO: u32 = 1;
    pub const PRE_SLEEP: u32 = 4;
    pub const NOOP: u32 = 6;
    pub const NO_JOB: u32 = 10;
    pub const WORK_COMPLETE: u32 = 13;
    pub const ECHO_REQ: u32 = 16;
    pub const ECHO_RES: u32 = 17;
    pub const GRAB_JOB_UNIQ: u32 = 30;
    pub const JOB_ASSIGN_UNIQ: u32 = 31;
}

/// Reads one binary Gearman request (`\0REQ`, type, length, body) from a
/// stand-in server's connection; `None` at its end or for anything else,
/// such as the status poller's text protocol.
pub fn read_gearman_request(stream: &mut impl std::io::Read) -> Option<(u32, Vec<u8>)> {
    let mut header = [0u8; 12];
    if stream.read_exact(&mut header).is_err() || &header[..4] != b"\0REQ" {
        return None;
    }
    let kind = u32::from_be_bytes(header[4..8].try_into().unwrap());
    let len = u32::from_be_bytes(header[8..12].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).ok()?;
    Some((kind, body))
}

/// A binary Gearman response from a stand-in server.
pub fn gearman_response(kind: u32, body: &[u8]) -> Vec<u8> {
    let mut p = b"\0RES".to_vec();
    p.extend_from_slice(&kind.to_be_bytes());
    p.extend_from_slice(&(body.len() as u32).to_be_bytes());
    p.extend_from_slice(body);
    p
}
