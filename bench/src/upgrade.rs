//! The upgrade scenario: 4 stdio processes of the Rust reverse worker,
//! 8 clients submitting 100-byte foreground jobs back to back; after 2 s the
//! console's `upgrade` re-executes the driver (the same binary: what is
//! measured is the hand-over, not a version), and 2 s after the new image
//! took over the load stops. The figure is the longest gap between two job
//! completions from the request on: how long clients wait at worst.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gearman_driver::gearman::client::Client;

use crate::driver::{toml_argv, write_file, Driver, DriverOptions};
use crate::gearmand::Gearmand;
use crate::report::{ms, Row};
use crate::Env;

const PROCESSES: u32 = 4;
const CLIENTS: usize = 8;
const SCENARIO: &str = "upgrade";
const FIGURE: &str = "longest pause in job completions during an upgrade under load";

pub fn rows(env: &Env) -> Vec<Row> {
    match measure(env) {
        Ok((pause, jobs)) => vec![Row::info(
            SCENARIO,
            FIGURE,
            ms(pause),
            format!("{jobs} jobs, none failed"),
        )],
        Err(err) => vec![Row::error(SCENARIO, FIGURE, "", &err)],
    }
}

fn measure(env: &Env) -> Result<(Duration, usize)> {
    let dir = env.scratch.sub("upgrade")?;
    let gearmand = Gearmand::start(&env.gearmand, &dir, env.fd_limit)?;
    let lib = dir.join("lib");
    let worker = env.reverse_worker.to_string_lossy();
    let body = format!(
        "command = {}\n\n[jobs.reverse]\nmin_processes = {PROCESSES}\nmax_processes = {PROCESSES}\n",
        toml_argv(&[&worker])
    );
    write_file(&lib, "Bench/Upgrade.toml", &body, false)?;
    let driver = Driver::start(&DriverOptions {
        binary: &env.driver,
        lib: &lib,
        namespace: "Bench::Upgrade",
        server: &gearmand.addr(),
        interval: "1",
        max_idle_time: "60",
        dir: &dir,
        extra: &[],
    })?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while driver.idle("Bench::Upgrade::reverse")? < PROCESSES as usize {
        if Instant::now() > deadline {
            bail!("the workers did not become ready within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let pids = worker_pids(&driver)?;

    let completions = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = std::thread::spawn({
        let (addr, completions, stop) = (gearmand.addr(), completions.clone(), stop.clone());
        move || load(&addr, &completions, &stop)
    });
    std::thread::sleep(Duration::from_secs(2));
    let asked = Instant::now();
    let answer = driver.console("upgrade")?;
    if answer != ["OK"] {
        stop.store(true, Ordering::SeqCst);
        bail!("upgrade answered {answer:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&driver.log)?.contains("takes over from") {
        if Instant::now() > deadline {
            stop.store(true, Ordering::SeqCst);
            bail!("the new image did not take over within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let failures = load
        .join()
        .map_err(|_| anyhow::anyhow!("the load panicked"))??;
    if failures > 0 {
        bail!("{failures} job(s) failed or came back wrong");
    }
    if worker_pids(&driver)? != pids {
        bail!("the worker processes changed across the upgrade");
    }
    let mut times = completions.lock().unwrap().clone();
    times.sort();
    let pause = longest_gap(asked, &times);
    Ok((pause, times.len()))
}

/// The PIDs `show` lists after the job's status line.
fn worker_pids(driver: &Driver) -> Result<Vec<String>> {
    Ok(driver
        .console("show Bench::Upgrade::reverse")?
        .into_iter()
        .skip(1)
        .collect())
}

/// The longest wait for a completion from `from` on (the last completion
/// before `from` counts as the start of the first wait).
fn longest_gap(from: Instant, times: &[Instant]) -> Duration {
    let start = times
        .iter()
        .rev()
        .find(|t| **t <= from)
        .copied()
        .unwrap_or(from);
    let mut last = start;
    let mut longest = Duration::ZERO;
    for t in times.iter().filter(|t| **t > from) {
        longest = longest.max(t.duration_since(last));
        last = *t;
    }
    longest
}

/// Clients submitting back to back until `stop`; returns the failures.
fn load(addr: &str, completions: &Mutex<Vec<Instant>>, stop: &AtomicBool) -> Result<usize> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let mut client = Client::connect(addr).await.context("client connection")?;
            tasks.push(async move {
                let mut failures = 0usize;
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let mut payload = format!("{c}-{n}-").into_bytes();
                    payload.resize(100, b'x');
                    let expected: Vec<u8> = payload.iter().rev().copied().collect();
                    match client.submit("Bench::Upgrade::reverse", b"", payload).await {
                        Ok(reply) if reply.result.as_deref() == Some(&expected[..]) => {
                            completions.lock().unwrap().push(Instant::now());
                        }
                        _ => failures += 1,
                    }
                }
                failures
            });
        }
        Ok(futures::future::join_all(tasks).await.into_iter().sum())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gap_counts_from_the_last_completion_before_the_request() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let times = [at(0), at(10), at(100), at(110), at(400)];
        assert_eq!(longest_gap(at(50), &times), Duration::from_millis(290));
        assert_eq!(longest_gap(at(500), &times), Duration::ZERO);
    }
}
