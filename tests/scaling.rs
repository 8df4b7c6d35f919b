//! Scaling against gearmand's queue: up to max under a backlog, back to min
//! after max_idle_time, never below min.

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn backlog_scales_up_to_max_and_idle_processes_go_back_to_min() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker("time.sleep(0.3)"));
    lib.file(
        "T/W.toml",
        "command = [\"python3\", \"w.py\"]\n[jobs.work]\nmin_processes = 0\nmax_processes = 3\n",
    );
    let driver = Driver::start(
        &lib,
        &gearmand,
        "T",
        &["--interval", "0.5", "--max-idle-time", "2"],
    );
    let job = "T::W::work";
    assert_eq!(driver.process_count(job), 0, "min 0 starts nothing");

    submit_background_all(&gearmand, job, &payloads("job", 30));

    let peak = drain_watching_peak(&driver, &gearmand, job, 3, Duration::from_secs(30));
    assert_eq!(peak, 3, "the backlog brought max processes");
    // Idle for max_idle_time (2 s), then reaped at the next poll.
    driver.wait_processes(job, 0, Duration::from_secs(10));
    assert!(
        driver.log_text().contains("Process stopped (idle "),
        "{}",
        driver.log_text()
    );
}

#[test]
fn a_job_with_min_two_never_drops_below_two() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker("time.sleep(0.1)"));
    lib.file(
        "T/W.toml",
        "command = [\"python3\", \"w.py\"]\n[jobs.work]\nmin_processes = 2\nmax_processes = 4\n",
    );
    let driver = Driver::start(
        &lib,
        &gearmand,
        "T",
        &["--interval", "0.3", "--max-idle-time", "0"],
    );
    let job = "T::W::work";
    driver.wait_processes(job, 2, Duration::from_secs(10));
    submit_background_all(&gearmand, job, &payloads("j", 20));
    driver.wait_processes(job, 4, Duration::from_secs(10));
    // Through the drain and well past it (several polls with max_idle_time 0).
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let n = driver.process_count(job);
        assert!(n >= 2, "dropped below min: {n}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(driver.process_count(job), 2, "surplus reaped, min kept");
}

#[test]
fn several_servers_are_summed_and_served() {
    let g1 = Gearmand::start();
    let g2 = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker("time.sleep(0.2)"));
    lib.file(
        "T/W.toml",
        "command = [\"python3\", \"w.py\"]\n[jobs.work]\nmin_processes = 0\nmax_processes = 4\n",
    );
    let servers = format!("{},{}", g1.addr(), g2.addr());
    let driver = Driver::start_with_servers(
        &lib,
        &servers,
        "T",
        &["--interval", "0.5", "--max-idle-time", "1"],
    );
    let job = "T::W::work";
    submit_background(&g1, job, &[b"a", b"b", b"c"]);
    submit_background(&g2, job, &[b"d", b"e", b"f"]);
    let drained = |g: &Gearmand| {
        g.status()
            .iter()
            .filter(|r| r.0 == job)
            .map(|r| r.1)
            .sum::<u64>()
            == 0
    };
    wait_for(Duration::from_secs(20), "both servers drained", || {
        (drained(&g1) && drained(&g2)).then_some(())
    });
    assert!(driver.log_text().contains("Process started"));
    // A foreground job through the second server alone.
    let reply = submit(&g2, job, b"xyz");
    assert_eq!(reply.result.as_deref(), Some(&b"zyx"[..]));
}

/// A process that dies is replaced on its exit, not at the next poll: the
/// poll here is a minute away.
#[test]
fn a_killed_process_is_replaced_before_the_next_poll() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker(""));
    lib.file(
        "T/W.toml",
        "command = [\"python3\", \"w.py\"]\n[jobs.work]\nmin_processes = 2\nmax_processes = 2\n",
    );
    let driver = Driver::start(&lib, &gearmand, "T", &["--interval", "60"]);
    let job = "T::W::work";
    driver.wait_processes(job, 2, Duration::from_secs(10));
    let first = driver.pids(job);
    let reply = submit(&gearmand, job, b"x");
    assert!(reply.result.is_some());
    // A death within 10 s of the start is a crash, replaced by the
    // backoff's timer; this one must be replaced by its exit alone.
    std::thread::sleep(Duration::from_millis(10_500));
    unsafe { libc::kill(first[0] as i32, libc::SIGKILL) };
    let replaced = Instant::now();
    wait_for(Duration::from_secs(5), "a replacement", || {
        let pids = driver.pids(job);
        (pids.len() == 2 && !pids.contains(&first[0])).then_some(())
    });
    assert!(replaced.elapsed() < Duration::from_secs(5));
}
