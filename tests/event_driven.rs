//! Scale-up does not wait for the poll: with a 30 s interval, work for a job
//! at zero processes is noticed through gearmand's wake-up (NOOP), and a
//! backlog is answered when the last idle process becomes busy.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn driver_with(worker_extra: &str, min: u32, max: u32) -> (Gearmand, Lib, Driver) {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker(worker_extra));
    lib.file(
        "T/W.toml",
        &format!("command = [\"python3\", \"w.py\"]\n[jobs.work]\nmin_processes = {min}\nmax_processes = {max}\n"),
    );
    let driver = Driver::start(
        &lib,
        &gearmand,
        "T",
        &["--interval", "30", "--max-idle-time", "60"],
    );
    // The first poll runs at start; let it pass so only events can react.
    driver.wait_log("started:", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    (gearmand, lib, driver)
}

#[test]
fn a_job_for_a_min_zero_function_completes_well_within_the_interval() {
    let (gearmand, _lib, driver) = driver_with("", 0, 2);
    assert_eq!(driver.process_count("T::W::work"), 0);
    let started = Instant::now();
    let reply = submit(&gearmand, "T::W::work", b"abc");
    let took = started.elapsed();
    assert_eq!(reply.result.as_deref(), Some(&b"cba"[..]));
    assert!(
        took < Duration::from_secs(10),
        "took {took:?} with a 30 s interval"
    );
}

#[test]
fn a_backlog_starts_processes_before_the_first_poll_could() {
    let (gearmand, _lib, driver) = driver_with("time.sleep(0.5)", 0, 4);
    submit_background_all(&gearmand, "T::W::work", &payloads("", 12));
    // The next poll is ~30 s away; four processes must come from events.
    driver.wait_processes("T::W::work", 4, Duration::from_secs(10));
}

#[test]
fn saturated_pool_grows_when_its_last_idle_process_gets_busy() {
    let (gearmand, _lib, driver) = driver_with("time.sleep(0.5)", 1, 3);
    driver.wait_processes("T::W::work", 1, Duration::from_secs(10));
    submit_background_all(&gearmand, "T::W::work", &payloads("", 9));
    driver.wait_processes("T::W::work", 3, Duration::from_secs(10));
}
