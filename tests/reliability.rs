//! Fault injection around the job server and the supervisor process itself:
//! gearmand killed and restarted under load, one of two servers down or
//! silent, running as a daemon with a pid file, and TERM with a job that
//! outlasts `shutdown_timeout`.

mod common;
#[path = "support/reliability.rs"]
mod support;

use common::*;
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

/// `fg` reverses after a short pause (so that jobs are in flight when
/// gearmand dies); `bg` appends each workload to `bg.log`; `pid` answers
/// with the process's PID.
const WORKER_EXTRA: &str = "if name == 'bg':
    with open('bg.log', 'ab') as f:
        f.write(data + b'\\n')
elif name == 'pid':
    result = str(os.getpid()).encode()
else:
    time.sleep(0.02)";

fn worker_lib(toml_jobs: &str) -> Lib {
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker(WORKER_EXTRA));
    lib.file(
        "T/W.toml",
        &format!("command = [\"python3\", \"w.py\"]\n{toml_jobs}"),
    );
    lib
}

#[test]
fn gearmand_restart_under_load_loses_no_job_and_keeps_the_processes() {
    let mut gearmand = Gearmand::start();
    let port = gearmand.port;
    let addr = gearmand.addr();
    let lib = worker_lib(
        "[jobs.fg]\nmin_processes = 2\nmax_processes = 2\n[jobs.bg]\nmin_processes = 1\nmax_processes = 1\n",
    );
    let driver = Driver::start(&lib, &gearmand, "T", &["--interval", "0.5"]);
    driver.wait_processes("T::W::fg", 2, Duration::from_secs(10));
    driver.wait_processes("T::W::bg", 1, Duration::from_secs(10));
    let fg_pids = driver.pids("T::W::fg");
    let bg_pids = driver.pids("T::W::bg");
    // The processes must be registered before the load starts.
    assert_eq!(
        submit(&gearmand, "T::W::fg", b"warm").result.as_deref(),
        Some(&b"mraw"[..])
    );

    const CLIENTS: usize = 4;
    const JOBS_EACH: usize = 40;
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let addr = addr.clone();
            let answered = answered.clone();
            std::thread::spawn(move || {
                block_on(Duration::from_secs(60), async move {
                    let mut results = Vec::new();
                    for i in 0..JOBS_EACH {
                        let payload = format!("c{c}-job{i}");
                        let (reply, submissions) = submit_until_answered(
                            &addr,
                            "T::W::fg",
                            payload.as_bytes(),
                            Duration::from_secs(40),
                        )
                        .await;
                        answered.fetch_add(1, Ordering::SeqCst);
                        results.push((payload, reply, submissions));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    results
                })
            })
        })
        .collect();

    wait_for(Duration::from_secs(20), "load to be under way", || {
        (answered.load(Ordering::SeqCst) >= 20).then_some(())
    });
    let before_kill = answered.load(Ordering::SeqCst);
    gearmand.kill();
    // Long enough for every process to reach the reconnect backoff's cap, so
    // that the recovery measured below is the slow case.
    std::thread::sleep(Duration::from_millis(3500));
    let gearmand = Gearmand::start_on(port);
    let back = Instant::now();
    let (probe, _) = block_on(
        Duration::from_secs(30),
        submit_until_answered(&addr, "T::W::fg", b"probe", Duration::from_secs(20)),
    );
    let recovery = back.elapsed();
    assert_eq!(probe.result.as_deref(), Some(&b"eborp"[..]));
    eprintln!("first job after gearmand came back answered in {recovery:?}");
    assert!(
        recovery <= Duration::from_secs(5),
        "jobs flow again {recovery:?} after gearmand's return"
    );

    let bg_payloads: Vec<String> = (0..20).map(|i| format!("bg-{i}")).collect();
    let refs: Vec<&[u8]> = bg_payloads.iter().map(|p| p.as_bytes()).collect();
    submit_background(&gearmand, "T::W::bg", &refs);

    let mut per_payload: HashMap<String, usize> = HashMap::new();
    let mut resubmitted = 0;
    for client in clients {
        for (payload, reply, submissions) in client.join().unwrap() {
            let expected: Vec<u8> = payload.bytes().rev().collect();
            assert_eq!(
                reply.result.as_deref(),
                Some(&expected[..]),
                "{payload} completed with its own result"
            );
            *per_payload.entry(payload).or_default() += 1;
            resubmitted += submissions - 1;
        }
    }
    assert_eq!(per_payload.len(), CLIENTS * JOBS_EACH);
    assert!(per_payload.values().all(|n| *n == 1));
    assert!(
        before_kill < CLIENTS * JOBS_EACH,
        "some jobs were submitted after the restart"
    );
    eprintln!("{resubmitted} submissions repeated after lost connections");

    let bg_log = lib.path().join("T/bg.log");
    wait_for(
        Duration::from_secs(10),
        "every background job to run",
        || {
            let seen = file_lines(&bg_log);
            bg_payloads.iter().all(|p| seen.contains(p)).then_some(())
        },
    );

    assert_eq!(driver.pids("T::W::fg"), fg_pids, "fg processes were kept");
    assert_eq!(driver.pids("T::W::bg"), bg_pids, "bg processes were kept");
    let log = driver.log_text();
    let down = format!("gearmand {addr} is unreachable");
    let up = format!("gearmand {addr} is reachable again");
    assert_eq!(log.matches(&down).count(), 1, "one line per outage:\n{log}");
    assert_eq!(log.matches(&up).count(), 1, "one line on recovery:\n{log}");
    assert!(
        log.find(&down) < log.find(&up),
        "outage logged before recovery"
    );
}

#[test]
fn with_one_of_two_servers_down_jobs_flow_through_the_other() {
    let mut first = Gearmand::start();
    let first_port = first.port;
    let second = Gearmand::start();
    let lib = worker_lib("[jobs.fg]\nmin_processes = 2\nmax_processes = 2\n");
    let servers = format!("{},{}", first.addr(), second.addr());
    let driver = Driver::start_with_servers(&lib, &servers, "T", &["--interval", "0.5"]);
    driver.wait_processes("T::W::fg", 2, Duration::from_secs(10));
    let pids = driver.pids("T::W::fg");
    assert_eq!(
        submit(&first, "T::W::fg", b"ab").result.as_deref(),
        Some(&b"ba"[..])
    );

    first.kill();
    for i in 0..20 {
        let payload = format!("second-{i}");
        let started = Instant::now();
        let reply = submit(&second, "T::W::fg", payload.as_bytes());
        let expected: Vec<u8> = payload.bytes().rev().collect();
        assert_eq!(reply.result.as_deref(), Some(&expected[..]));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "job {i} through the live server took {:?}",
            started.elapsed()
        );
    }

    let first = Gearmand::start_on(first_port);
    let reply = block_on(
        Duration::from_secs(30),
        submit_until_answered(&first.addr(), "T::W::fg", b"back", Duration::from_secs(20)),
    )
    .0;
    assert_eq!(reply.result.as_deref(), Some(&b"kcab"[..]));
    assert_eq!(
        submit(&second, "T::W::fg", b"still").result.as_deref(),
        Some(&b"llits"[..])
    );
    assert_eq!(driver.pids("T::W::fg"), pids, "the processes were kept");
    let log = driver.log_text();
    assert_eq!(
        log.matches(&format!("gearmand {} is unreachable", first.addr()))
            .count(),
        1,
        "{log}"
    );
    assert!(
        !log.contains(&format!("gearmand {} is unreachable", second.addr())),
        "{log}"
    );
}

/// Kills a daemonized supervisor that a failed test left behind.
struct DaemonGuard(Option<u32>);

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            if pid_alive(pid) {
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

/// Runs `gearman-driver` in the foreground of the test and returns its exit
/// status, its standard error and how long it took.
fn launch(args: &[String]) -> (std::process::ExitStatus, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gearman-driver"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for(Duration::from_secs(10), "the launcher to exit", || {
        child.try_wait().unwrap()
    });
    let elapsed = started.elapsed();
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, err, elapsed)
}

#[test]
fn daemonized_supervisor_owns_its_pid_file_and_cleans_up_on_term() {
    let gearmand = Gearmand::start();
    let lib = worker_lib("[jobs.pid]\nmin_processes = 2\nmax_processes = 2\n");
    let pid_file = lib.path().join("run/driver.pid");
    std::fs::create_dir_all(pid_file.parent().unwrap()).unwrap();
    let logfile = lib.path().join("driver.log");
    let args = |console_port: u16| -> Vec<String> {
        vec![
            "--lib".into(),
            lib.path().display().to_string(),
            "--namespaces".into(),
            "T".into(),
            "--server".into(),
            gearmand.addr(),
            "--console-port".into(),
            console_port.to_string(),
            "--daemonize".into(),
            "--pid-file".into(),
            pid_file.display().to_string(),
            "--logfile".into(),
            logfile.display().to_string(),
        ]
    };
    let console_port = free_port();
    let (status, err, took) = launch(&args(console_port));
    assert!(status.success(), "launcher exit {status}: {err}");
    assert!(took < Duration::from_secs(3), "launcher took {took:?}");

    let mut guard = DaemonGuard(None);
    let pid: u32 = wait_for(Duration::from_secs(10), "the pid file", || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
    });
    guard.0 = Some(pid);
    assert!(pid_alive(pid), "the pid file names a live process");
    wait_for(Duration::from_secs(10), "the console", || {
        std::net::TcpStream::connect(("127.0.0.1", console_port)).ok()
    });
    let show = |job: &str| -> Vec<u32> {
        console_command(console_port, &format!("show {job}"))
            .iter()
            .skip(1)
            .map(|l| l.parse().unwrap())
            .collect()
    };
    let workers = wait_for(Duration::from_secs(10), "two workers", || {
        let pids = show("T::W::pid");
        (pids.len() == 2).then_some(pids)
    });
    for w in &workers {
        assert_eq!(
            parent_of(*w),
            Some(pid),
            "worker {w} is a child of the process in the pid file"
        );
    }
    let answered: u32 =
        String::from_utf8(submit(&gearmand, "T::W::pid", b"").result.unwrap().to_vec())
            .unwrap()
            .parse()
            .unwrap();
    assert!(workers.contains(&answered));

    // A second start, daemonized or not, must see the running one.
    for daemonize in [true, false] {
        let mut second = args(free_port());
        if !daemonize {
            second.retain(|a| a != "--daemonize");
        }
        let (status, err, _) = launch(&second);
        assert_eq!(
            status.code(),
            Some(1),
            "second start (daemonize {daemonize}): {err}"
        );
        assert!(
            err.contains(&pid_file.display().to_string()),
            "the refusal names the pid file: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(&pid_file).unwrap().trim(),
            pid.to_string(),
            "the pid file is untouched"
        );
    }
    assert!(pid_alive(pid));
    assert_eq!(
        show("T::W::pid"),
        workers,
        "the first supervisor is unharmed"
    );

    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    wait_for(Duration::from_secs(15), "the supervisor to exit", || {
        (!pid_alive(pid)).then_some(())
    });
    wait_for(Duration::from_secs(5), "the workers to exit", || {
        workers.iter().all(|w| !pid_alive(*w)).then_some(())
    });
    assert!(!pid_file.exists(), "TERM removed the pid file");
    let log = std::fs::read_to_string(&logfile).unwrap();
    assert!(log.contains("TERM received"), "{log}");
}

/// A loopback port whose SYNs go unanswered, like a host that vanished:
/// a listener with a full accept queue that never accepts.
struct Blackhole {
    fd: i32,
    port: u16,
    _fillers: Vec<std::net::TcpStream>,
}

impl Blackhole {
    fn new() -> Blackhole {
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            assert_eq!(
                libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len),
                0
            );
            assert_eq!(libc::listen(fd, 0), 0);
            let mut bound: libc::sockaddr_in = std::mem::zeroed();
            let mut blen = len;
            libc::getsockname(fd, &mut bound as *mut _ as *mut libc::sockaddr, &mut blen);
            let port = u16::from_be(bound.sin_port);
            let mut fillers = Vec::new();
            let target = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            while let Ok(s) =
                std::net::TcpStream::connect_timeout(&target, Duration::from_millis(300))
            {
                fillers.push(s);
                assert!(fillers.len() < 16, "the accept queue never filled");
            }
            Blackhole {
                fd,
                port,
                _fillers: fillers,
            }
        }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        unsafe { libc::close(self.fd) };
    }
}

#[test]
fn a_server_that_never_answers_connects_does_not_stall_the_other() {
    let live = Gearmand::start();
    let hole = Blackhole::new();
    let lib = worker_lib(
        "[jobs.fg]\nmin_processes = 1\nmax_processes = 1\n[jobs.pid]\nmin_processes = 0\nmax_processes = 1\n",
    );
    let servers = format!("127.0.0.1:{},{}", hole.port, live.addr());
    let driver = Driver::start_with_servers(&lib, &servers, "T", &["--interval", "0.5"]);
    driver.wait_processes("T::W::fg", 1, Duration::from_secs(10));
    assert_eq!(
        submit(&live, "T::W::fg", b"warm").result.as_deref(),
        Some(&b"mraw"[..])
    );
    // Long enough to span a whole connect timeout (5 s) to the silent server
    // and the reconnect attempt after it.
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(7) {
        let payload = format!("live-{i}");
        let t = Instant::now();
        let reply = submit(&live, "T::W::fg", payload.as_bytes());
        let expected: Vec<u8> = payload.bytes().rev().collect();
        assert_eq!(reply.result.as_deref(), Some(&expected[..]));
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "job {i} through the live server took {:?}",
            t.elapsed()
        );
        i += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    // A job with no process depends on the queue poll, which must not wait
    // for the silent server either.
    assert_eq!(driver.process_count("T::W::pid"), 0);
    let t = Instant::now();
    assert!(submit(&live, "T::W::pid", b"").result.is_some());
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "a job for a job without processes took {:?}",
        t.elapsed()
    );
}

#[test]
fn term_with_a_job_past_shutdown_timeout_hands_it_back_to_gearmand() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    // Only the first run is slow, so that the next supervisor finishes it.
    lib.file(
        "T/w.py",
        &python_worker(
            "if not os.path.exists('slow.done'):\n    open('slow.done', 'w').close()\n    time.sleep(30)",
        ),
    );
    lib.file(
        "T/W.toml",
        "command = [\"python3\", \"w.py\"]\n[jobs.slow]\n",
    );
    let mut driver = Driver::start(
        &lib,
        &gearmand,
        "T",
        &["--interval", "0.5", "--shutdown-timeout", "1"],
    );
    let worker = wait_for(Duration::from_secs(10), "a worker", || {
        driver.pids("T::W::slow").first().copied()
    });
    let addr = gearmand.addr();
    let client = std::thread::spawn(move || {
        block_on(Duration::from_secs(40), async move {
            let mut c = Client::connect(&addr).await.unwrap();
            c.submit("T::W::slow", b"", &b"abc"[..]).await.unwrap()
        })
    });
    wait_for(Duration::from_secs(10), "the job to run", || {
        lib.path().join("T/slow.done").exists().then_some(())
    });
    let asked = Instant::now();
    let status = driver.terminate(Duration::from_secs(20));
    let took = asked.elapsed();
    eprintln!("TERM with a long job: exit {status} after {took:?}");
    assert!(!pid_alive(worker));
    assert!(
        status.success(),
        "exit status {status}\n{}",
        driver.log_text()
    );
    assert!(took < Duration::from_secs(6), "exit after {took:?}");
    assert!(
        driver
            .log_text()
            .contains("Job still running 1s into the shutdown; killing the process"),
        "{}",
        driver.log_text()
    );
    let _next = Driver::start(&lib, &gearmand, "T", &["--interval", "0.5"]);
    let reply = client.join().unwrap();
    assert_eq!(
        reply.result.as_deref(),
        Some(&b"cba"[..]),
        "the job was run again"
    );
}
