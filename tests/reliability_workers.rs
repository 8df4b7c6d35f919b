//! Fault injection on the worker side: crash loops, workers that never get
//! ready, recycling (max_jobs, max_rss, max_lifetime), job timeouts, and
//! workers that break the stdio protocol.

mod common;
#[path = "support/reliability.rs"]
mod support;

use common::*;
use std::time::{Duration, Instant};
use support::*;

/// A python stdio worker answering `pid` with its PID, sleeping 10 s on
/// `sleep`, growing by ~100 MiB on `grow`, and reversing anything else.
const GOOD_WORKER_EXTRA: &str = "if name == 'pid':
    result = str(os.getpid()).encode()
elif name == 'sleep':
    time.sleep(10)
elif name == 'grow':
    globals().setdefault('hoard', []).append(b'x' * (100 << 20))
    result = str(os.getpid()).encode()";

fn lib_with(files: &[(&str, &str)]) -> Lib {
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker(GOOD_WORKER_EXTRA));
    for (path, body) in files {
        lib.file(path, body);
    }
    lib
}

fn good(jobs: &str) -> String {
    format!("command = [\"python3\", \"w.py\"]\n{jobs}")
}

fn pid_of(reply: &JobReply) -> u32 {
    std::str::from_utf8(reply.result.as_deref().expect("a result"))
        .unwrap()
        .parse()
        .unwrap()
}

/// Gaps between consecutive instants.
fn gaps(times: &[Instant]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

fn assert_backoff(gaps: &[Duration], expected_secs: &[u64], log: &str) {
    for (gap, want) in gaps.iter().zip(expected_secs) {
        let want = Duration::from_secs(*want);
        assert!(
            *gap >= want.mul_f64(0.8) && *gap <= want + Duration::from_millis(1500),
            "restart gaps {gaps:?} should follow {expected_secs:?} s\n{log}"
        );
    }
}

#[test]
fn a_crash_loop_backs_off_while_the_other_jobs_keep_serving() {
    let lib = lib_with(&[
        (
            "T/Crash.toml",
            "command = [\"sh\", \"-c\", \"exit 3\"]\n[jobs.crash]\n",
        ),
        ("T/Good.toml", &good("[jobs.echo]\n")),
    ]);
    let gearmand = Gearmand::start();
    let driver = Driver::start(&lib, &gearmand, "T", &["--interval", "0.5"]);
    let tail = LogTail::follow(driver.log.clone());
    let needle = "[T::Crash::crash] Exited with status 3";

    // Crashes come at about 0, 1, 3 and 7 s; serve jobs all along.
    let started = Instant::now();
    let mut served = 0;
    while tail.count(needle) < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "four crashes expected by now:\n{}",
            driver.log_text()
        );
        let payload = format!("during-crash-{served}");
        let t = Instant::now();
        let reply = submit(&gearmand, "T::Good::echo", payload.as_bytes());
        let expected: Vec<u8> = payload.bytes().rev().collect();
        assert_eq!(reply.result.as_deref(), Some(&expected[..]));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a job took {:?}",
            t.elapsed()
        );
        served += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        served >= 20,
        "only {served} jobs served during the crash loop"
    );

    let crashes: Vec<Instant> = tail.matching(needle).iter().map(|(t, _)| *t).collect();
    let log = driver.log_text();
    assert_backoff(&gaps(&crashes), &[1, 2, 4], &log);
    for delay in ["next start in 1s", "next start in 2s", "next start in 4s"] {
        assert!(log.contains(delay), "{delay}:\n{log}");
    }
    let line = driver.status_line("T::Crash::crash");
    assert!(
        line.contains("ERROR: ") && line.contains("exited with status 3"),
        "{line}"
    );
    assert!(
        !driver.status_line("T::Good::echo").contains("ERROR"),
        "the healthy job shows no error"
    );
}

#[test]
fn a_worker_that_never_says_ready_is_killed_after_start_timeout_and_backs_off() {
    let lib = lib_with(&[(
        "T/Mute.toml",
        "command = [\"python3\", \"-c\", \"import time; time.sleep(60)\"]\n[jobs.mute]\nstart_timeout = 2\n",
    )]);
    let gearmand = Gearmand::start();
    let driver = Driver::start(&lib, &gearmand, "T", &["--interval", "0.5"]);
    let tail = LogTail::follow(driver.log.clone());
    let first = wait_for(Duration::from_secs(5), "the first process", || {
        driver.pids("T::Mute::mute").first().copied()
    });
    let seen = Instant::now();
    let kills = tail.wait_count("No READY within 2s", 2, Duration::from_secs(12));
    let log = driver.log_text();
    let first_kill = kills[0].0 - seen;
    assert!(
        first_kill >= Duration::from_millis(1500) && first_kill <= Duration::from_millis(3500),
        "killed {first_kill:?} after start\n{log}"
    );
    assert!(!pid_alive(first), "the mute process is gone");
    // Second process: started 1 s after the first kill, killed 2 s later.
    assert_backoff(&gaps(&[kills[0].0, kills[1].0]), &[3], &log);
    assert!(
        log.contains(&format!(
            "({first}) [T::Mute::mute] killed by signal SIGKILL: no READY within 2s; within 10s of its start, next start in 1s"
        )),
        "counted as a quick failure:\n{log}"
    );
    wait_for(Duration::from_secs(3), "the second backoff", || {
        driver.log_text().contains("next start in 2s").then_some(())
    });
    let line = driver.status_line("T::Mute::mute");
    assert!(line.ends_with("ERROR: no READY within 2s"), "{line}");
}

#[test]
fn max_jobs_recycles_the_process_after_its_fifth_job() {
    let lib = lib_with(&[("T/W.toml", &good("[jobs.pid]\nmax_jobs = 5\n"))]);
    let gearmand = Gearmand::start();
    let driver = Driver::start(&lib, &gearmand, "T", &["--interval", "0.5"]);
    let pids: Vec<u32> = (0..6)
        .map(|_| pid_of(&submit(&gearmand, "T::W::pid", b"")))
        .collect();
    assert!(pids[..5].iter().all(|p| *p == pids[0]), "{pids:?}");
    assert_ne!(pids[5], pids[0], "the sixth job runs in a new process");
    wait_for(Duration::from_secs(5), "the old process to exit", || {
        (!pid_alive(pids[0])).then_some(())
    });
    let log = driver.log_text();
    assert!(
        log.contains(&format!(
            "({}) [T::W::pid] Recycling: max_jobs 5 reached",
            pids[0]
        )),
        "{log}"
    );
    assert_eq!(driver.pids("T::W::pid"), vec![pids[5]]);
    assert!(
        !driver.status_line("T::W::pid").contains("ERROR"),
        "recycling is not an error"
    );
}

#[test]
fn max_rss_recycles_a_process_that_grew_past_it() {
    let lib = lib_with(&[("T/W.toml", &good("[jobs.grow]\nmax_rss = 50\n"))]);
    let gearmand = Gearmand::start();
    let driver = Driver::start(&lib, &gearmand, "T", &["--interval", "0.5"]);
    let fat = pid_of(&submit(&gearmand, "T::W::grow", b""));
    let fresh = wait_for(Duration::from_secs(5), "a new process", || {
        let pids = driver.pids("T::W::grow");
        (!pid_alive(fat) && pids.len() == 1 && pids[0] != fat).then_some(pids[0])
    });
    assert!(pid_alive(fresh));
    let log = driver.log_text();
    assert!(
        log.contains(&format!(
            "({fat}) [T::W::grow] Recycling: max_rss 50 MiB passed"
        )),
        "{log}"
    );
    // The new one serves.
    assert_eq!(pid_of(&submit(&gearmand, "T::W::grow", b"")), fresh);
}

#[test]
fn max_lifetime_recycles_an_idle_process() {
    let lib = lib_with(&[("T/W.toml", &good("[jobs.pid]\nmax_lifetime = 2\n"))]);
    let gearmand = Gearmand::start();
    let driver = Driver::start(&lib, &gearmand, "T", &["--interval", "0.5"]);
    let first = wait_for(Duration::from_secs(5), "the first process", || {
        driver.pids("T::W::pid").first().copied()
    });
    let seen = Instant::now();
    let second = wait_for(Duration::from_secs(6), "a replacement", || {
        let pids = driver.pids("T::W::pid");
        (!pid_alive(first) && pids.len() == 1 && pids[0] != first).then_some(pids[0])
    });
    let took = seen.elapsed();
    assert!(
        took >= Duration::from_millis(1000) && took <= Duration::from_millis(3500),
        "replaced {took:?} after it was first seen"
    );
    let log = driver.log_text();
    assert!(
        log.contains(&format!(
            "({first}) [T::W::pid] Recycling: max_lifetime 2s reached"
        )),
        "{log}"
    );
    assert_eq!(pid_of(&submit(&gearmand, "T::W::pid", b"")), second);
}

#[test]
fn a_job_over_its_timeout_fails_and_its_process_is_replaced() {
    let lib = lib_with(&[("T/W.toml", &good("[jobs.sleep]\ntimeout = 1\n"))]);
    let gearmand = Gearmand::start();
    let driver = Driver::start(&lib, &gearmand, "T", &["--interval", "0.5"]);
    let old = wait_for(Duration::from_secs(5), "the first process", || {
        driver.pids("T::W::sleep").first().copied()
    });
    wait_idle(&driver, "T::W::sleep", Duration::from_secs(10));
    let started = Instant::now();
    let reply = submit(&gearmand, "T::W::sleep", b"zzz");
    let took = started.elapsed();
    assert_eq!(reply.result, None, "WORK_FAIL");
    assert_eq!(reply.warnings, vec![&b"timeout after 1s"[..]]);
    assert!(took < Duration::from_secs(3), "failed after {took:?}");
    let line = driver.status_line("T::W::sleep");
    assert!(line.ends_with("ERROR: timeout after 1s"), "{line}");
    let new = wait_for(Duration::from_secs(5), "a replacement", || {
        let pids = driver.pids("T::W::sleep");
        (!pid_alive(old) && pids.len() == 1 && pids[0] != old).then_some(pids[0])
    });
    assert!(pid_alive(new));
    // Failed, not retried: gearmand has nothing left for it.
    let queued: u64 = gearmand
        .status()
        .iter()
        .filter(|r| r.0 == "T::W::sleep")
        .map(|r| r.1)
        .sum();
    assert_eq!(queued, 0);
}

/// Each job misbehaves the first time any process runs it (a marker file
/// remembers), then behaves: a retried job gets its real result.
const BAD_OUTPUT_WORKER: &str = r#"import os, sys
out, inp = sys.stdout.buffer, sys.stdin.buffer
out.write(b"READY\n"); out.flush()
for header in inp:
    _, name, handle, unique, size = header.split()
    data = inp.read(int(size))
    name = name.decode()
    marker = name + ".done"
    if not os.path.exists(marker):
        open(marker, "w").close()
        if name == "nan":
            out.write(b"DONE abc\n"); out.flush()
        elif name == "huge":
            out.write(b"DONE 2000000000\n"); out.flush()
        elif name == "truncated":
            out.write(b"DONE 10\nabc"); out.flush()
            os._exit(0)
        elif name == "extra":
            r = data[::-1]
            out.write(b"DONE %d\n" % len(r) + r + b"DONE 1\nx"); out.flush()
            continue
    result = data[::-1]
    out.write(b"DONE %d\n" % len(result) + result); out.flush()
"#;

#[test]
fn bad_worker_output_is_a_protocol_error_and_no_job_is_lost() {
    let lib = Lib::new();
    lib.file("T/bad.py", BAD_OUTPUT_WORKER);
    lib.file(
        "T/Bad.toml",
        "command = [\"python3\", \"bad.py\"]\n[jobs.nan]\n[jobs.huge]\n[jobs.truncated]\n[jobs.extra]\n",
    );
    let gearmand = Gearmand::start();
    let driver = Driver::start(&lib, &gearmand, "T", &["--interval", "0.5"]);
    let jobs = ["nan", "huge", "truncated", "extra"];
    let first: Vec<u32> = jobs
        .iter()
        .map(|j| {
            wait_for(Duration::from_secs(5), "a process", || {
                driver.pids(&format!("T::Bad::{j}")).first().copied()
            })
        })
        .collect();
    let addr = gearmand.addr();
    let replies: Vec<_> = jobs
        .iter()
        .map(|j| {
            let addr = addr.clone();
            let function = format!("T::Bad::{j}");
            std::thread::spawn(move || {
                block_on(Duration::from_secs(30), async move {
                    let mut c = Client::connect(&addr).await.unwrap();
                    c.submit(&function, b"", &b"payload"[..]).await.unwrap()
                })
            })
        })
        .collect();
    for (job, reply) in jobs.iter().zip(replies) {
        let reply = reply.join().unwrap();
        assert_eq!(
            reply.result.as_deref(),
            Some(&b"daolyap"[..]),
            "{job}: retried or answered, never lost"
        );
    }
    let log_has = |needle: &str| driver.log_text().contains(needle);
    for (job, old) in jobs.iter().zip(&first) {
        let name = format!("T::Bad::{job}");
        wait_for(Duration::from_secs(10), &format!("{name} replaced"), || {
            let pids = driver.pids(&name);
            (!pid_alive(*old) && pids.len() == 1 && pids[0] != *old).then_some(())
        });
        let tag = format!("({old}) [{name}]");
        let why = match *job {
            "nan" => "Protocol error: unexpected output: \"DONE abc\"",
            "huge" => "Protocol error: frame size 2000000000 is beyond the 1 GiB limit",
            "truncated" => "",
            _ => "Protocol error: unexpected DONE outside a job",
        };
        if why.is_empty() {
            // The truncated frame and the exit race: either may be seen first.
            assert!(
                log_has(&format!(
                    "{tag} Protocol error: output ends in the middle of a frame"
                )) || log_has(&format!("{tag} died with a job in flight")),
                "{}",
                driver.log_text()
            );
        } else {
            assert!(log_has(&format!("{tag} {why}")), "{}", driver.log_text());
        }
    }
    // The replacements behave.
    for job in jobs {
        let reply = submit(&gearmand, &format!("T::Bad::{job}"), b"again");
        assert_eq!(reply.result.as_deref(), Some(&b"niaga"[..]));
    }
}
