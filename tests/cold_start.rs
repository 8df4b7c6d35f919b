//! Scale-up from zero reacts to gearmand's wake-up every time, not only the
//! first time after start: rounds of reap-to-zero then one job, with a 3 s
//! poll interval, for each protocol (stdio, exec, gearman) and for a job
//! arriving at the second of two servers. A poll-driven answer comes about
//! 3 s after the reap (the reap itself happens at a poll); an answer from the
//! wake-up comes within milliseconds. The bound below (1.5 s) sits between
//! the two with room for a busy machine.

mod common;
use common::*;
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;
const WELL_UNDER_THE_INTERVAL: Duration = Duration::from_millis(1500);
const FLAGS: [&str; 4] = ["--interval", "3", "--max-idle-time", "0.5"];

/// Each round waits until `job` has no process at all, submits one job to
/// `to` and checks the answer; returns how long each answer took.
fn rounds(
    driver: &Driver,
    to: &Gearmand,
    job: &str,
    answer: impl Fn(&[u8]) -> Vec<u8>,
) -> Vec<Duration> {
    let mut took = Vec::new();
    for round in 0..ROUNDS {
        // The reap waits for a poll (every 3 s) that sees the process idle.
        driver.wait_processes(job, 0, Duration::from_secs(30));
        let payload = format!("round {round}");
        let started = Instant::now();
        let reply = submit(to, job, payload.as_bytes());
        took.push(started.elapsed());
        assert_eq!(
            reply.result.as_deref().map(&answer),
            Some(payload.bytes().rev().collect()),
            "round {round}"
        );
    }
    took
}

fn assert_all_quick(took: &[Duration], log: &str) {
    assert!(
        took.iter().all(|t| *t < WELL_UNDER_THE_INTERVAL),
        "every round from zero must be answered well within the 3 s interval: {took:?}\nlog:\n{log}"
    );
}

fn stdio_lib() -> Lib {
    let lib = Lib::new();
    lib.file("C/w.py", &python_worker(""));
    lib.file(
        "C/W.toml",
        "command = [\"python3\", \"w.py\"]\n[jobs.work]\nmin_processes = 0\nmax_processes = 2\n",
    );
    lib
}

#[test]
fn stdio_job_is_started_from_zero_within_milliseconds_every_round() {
    let gearmand = Gearmand::start();
    let lib = stdio_lib();
    let driver = Driver::start(&lib, &gearmand, "C", &FLAGS);
    let took = rounds(&driver, &gearmand, "C::W::work", <[u8]>::to_vec);
    assert_all_quick(&took, &driver.log_text());
}

#[test]
fn exec_job_is_started_from_zero_within_milliseconds_every_round() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file(
        "E/Rev.toml",
        "command = \"rev\"\nprotocol = \"exec\"\n[jobs.rev]\nmin_processes = 0\nmax_processes = 2\n",
    );
    let driver = Driver::start(&lib, &gearmand, "E", &FLAGS);
    let took = rounds(&driver, &gearmand, "E::Rev::rev", <[u8]>::to_vec);
    assert_all_quick(&took, &driver.log_text());
}

#[test]
fn gearman_protocol_job_is_started_from_zero_within_milliseconds_every_round() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    let wrapper = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/workers/GearmanCLI/gearman-cli-worker.sh"
    ))
    .unwrap();
    lib.file("G/gearman-cli-worker.sh", &wrapper);
    lib.file(
        "G/Cli.toml",
        "command = [\"./gearman-cli-worker.sh\", \"rev\"]\nprotocol = \"gearman\"\n[jobs.rev]\nmin_processes = 0\nmax_processes = 2\n",
    );
    let driver = Driver::start(&lib, &gearmand, "G", &FLAGS);
    // `rev` ends its answer with a newline.
    let took = rounds(&driver, &gearmand, "G::Cli::rev", |r| {
        r.strip_suffix(b"\n").unwrap_or(r).to_vec()
    });
    let log = driver.log_text();
    assert_all_quick(&took, &log);
    // The reaps are routine stops, logged as such, not as kills.
    assert!(
        log.contains("Process stopped (idle") && log.contains("sent SIGTERM (its stop_signal)"),
        "{log}"
    );
    assert!(log.contains("Exited on its stop_signal (SIGTERM)"), "{log}");
    assert!(!log.contains("killed by signal"), "{log}");
}

#[test]
fn job_arriving_at_the_second_server_is_noticed_within_milliseconds_every_round() {
    let first = Gearmand::start();
    let second = Gearmand::start();
    let lib = stdio_lib();
    let servers = format!("{},{}", first.addr(), second.addr());
    let driver = Driver::start_with_servers(&lib, &servers, "C", &FLAGS);
    let took = rounds(&driver, &second, "C::W::work", <[u8]>::to_vec);
    assert_all_quick(&took, &driver.log_text());
}
