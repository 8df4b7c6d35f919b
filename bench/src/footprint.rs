//! Footprint of the supervisor process itself: CPU and RSS while idle with
//! 50 jobs, RSS with 200 processes, how long 1,000 processes take to be
//! READY, and the console's `status` latency with 1,000 processes.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::driver::{console_command, write_file, Driver, DriverOptions};
use crate::gearmand::Gearmand;
use crate::procs::{cpu_time, rss_kib, wait_for};
use crate::report::{mib, ms, report_duration, thousands, Row};
use crate::Env;

const SCENARIO: &str = "Footprint";
/// READY, then nothing until stdin closes. One process that keeps its
/// stdout open (the driver takes a closed stdout for an exiting process);
/// the benchmark never sends it a job.
const TINY_WORKER: &str =
    r#"command = ["/bin/sh", "-c", "echo READY; while read -r _; do :; done"]"#;
const IDLE_JOBS: usize = 50;
const LATENCY_SAMPLES: usize = 20;

pub fn rows(env: &Env) -> Vec<Row> {
    let mut rows = Vec::new();
    eprintln!("footprint: idle with {IDLE_JOBS} jobs");
    match idle(env) {
        Ok(r) => rows.extend(r),
        Err(e) => rows.push(Row::error(SCENARIO, "idle with 50 jobs", "", &e)),
    }
    eprintln!("footprint: 200 processes");
    rows.push(match pool(env, 200) {
        Ok(p) => rss_row(&p, 200, Some(20 * 1024)),
        Err(e) => Row::error(SCENARIO, "RSS with 200 processes", "≤ 20 MiB", &e),
    });
    eprintln!("footprint: 1,000 processes");
    match pool(env, 1_000) {
        Ok(p) => rows.extend(thousand_rows(&p)),
        Err(e) => rows.push(Row::error(SCENARIO, "1,000 processes READY", "≤ 10 s", &e)),
    }
    rows
}

/// A lib dir with `Bench/<module>.toml` holding `jobs`.
fn tiny_lib(dir: &Path, module: &str, jobs: &str) -> Result<std::path::PathBuf> {
    let lib = dir.join("lib");
    write_file(
        &lib,
        &format!("Bench/{module}.toml"),
        &format!("{TINY_WORKER}\n\n{jobs}"),
        false,
    )?;
    Ok(lib)
}

fn start_driver(env: &Env, dir: &Path, lib: &Path, ns: &str, gd: &Gearmand) -> Result<Driver> {
    Driver::start(&DriverOptions {
        binary: &env.driver,
        lib,
        namespace: ns,
        server: &gd.addr(),
        interval: "1",
        max_idle_time: "60",
        dir,
        extra: &[],
    })
}

fn idle(env: &Env) -> Result<Vec<Row>> {
    let dir = env.scratch.sub("footprint-idle")?;
    let jobs: String = (0..IDLE_JOBS)
        .map(|i| format!("[jobs.j{i:02}]\nmin_processes = 1\nmax_processes = 1\n\n"))
        .collect();
    let lib = tiny_lib(&dir, "Idle", &jobs)?;
    let gd = Gearmand::start(&env.gearmand, &dir, env.fd_limit)?;
    let driver = start_driver(env, &dir, &lib, "Bench::Idle", &gd)?;
    wait_for(
        Duration::from_secs(60),
        Duration::from_millis(100),
        "50 idle processes",
        || Ok((driver.idle("Bench::Idle::")? >= IDLE_JOBS).then_some(())),
    )?;
    // Start-up work is not idle work.
    std::thread::sleep(Duration::from_secs(2));
    let window = Duration::from_secs(if env.quick { 5 } else { 30 });
    let cpu = cpu_share(driver.pid(), window)?;
    let rss = rss_kib(driver.pid())?;
    Ok(vec![
        Row::judged(
            SCENARIO,
            &format!(
                "idle CPU, 50 jobs, interval 1 s ({} s window)",
                window.as_secs()
            ),
            format!("{:.2} % of a core", cpu * 100.0),
            String::new(),
            "≤ 0.5 % of a core",
            cpu <= 0.005,
        ),
        Row::info(SCENARIO, "RSS idle, 50 jobs", mib(rss), String::new()),
    ])
}

/// The share of one core `pid` used over `window`, measured without
/// touching it (no console queries while the window runs).
fn cpu_share(pid: u32, window: Duration) -> Result<f64> {
    let (cpu0, t0) = (cpu_time(pid)?, Instant::now());
    std::thread::sleep(window);
    let (cpu1, t1) = (cpu_time(pid)?, Instant::now());
    Ok((cpu1 - cpu0).as_secs_f64() / (t1 - t0).as_secs_f64())
}

/// A driver with one job of `n` tiny processes, all READY.
struct Pool {
    _gearmand: Gearmand,
    driver: Driver,
    /// From starting the driver until all `n` were READY.
    ready_after: Duration,
}

const TINY_JOB: &str = "Bench::Tiny::tiny";

fn pool(env: &Env, n: usize) -> Result<Pool> {
    let dir = env.scratch.sub(&format!("footprint-{n}"))?;
    let lib = tiny_lib(
        &dir,
        "Tiny",
        &format!("[jobs.tiny]\nmin_processes = {n}\nmax_processes = {n}\n"),
    )?;
    let gd = Gearmand::start(&env.gearmand, &dir, env.fd_limit)?;
    let mut admin = gd.admin()?;
    let started = Instant::now();
    let driver = start_driver(env, &dir, &lib, "Bench::Tiny", &gd)?;
    // gearmand's worker count is free to poll (the driver registers a
    // process only after its READY); `ps` confirms, without being asked
    // 20 times a second to read 1,000 /proc entries.
    let ready_after = wait_for(
        Duration::from_secs(120),
        Duration::from_millis(50),
        &format!("{n} processes READY"),
        || {
            if admin.row(TINY_JOB)?.workers < n as u64 {
                return Ok(None);
            }
            let at = started.elapsed();
            Ok((driver.idle(TINY_JOB)? >= n).then_some(at))
        },
    )?;
    Ok(Pool {
        _gearmand: gd,
        driver,
        ready_after,
    })
}

fn rss_row(p: &Pool, n: usize, target_kib: Option<u64>) -> Row {
    let figure = format!("RSS with {} processes", thousands(n as f64));
    match rss_kib(p.driver.pid()) {
        Ok(kib) => match target_kib {
            Some(t) => Row::judged(
                SCENARIO,
                &figure,
                mib(kib),
                String::new(),
                &format!("≤ {} MiB", t / 1024),
                kib <= t,
            ),
            None => Row::info(SCENARIO, &figure, mib(kib), String::new()),
        },
        Err(e) => Row::error(SCENARIO, &figure, "", &e),
    }
}

fn thousand_rows(p: &Pool) -> Vec<Row> {
    let ready = p.ready_after;
    let mut rows = vec![
        Row::judged(
            SCENARIO,
            "1,000 processes READY (from driver start)",
            report_duration(ready),
            String::new(),
            "≤ 10 s",
            ready <= Duration::from_secs(10),
        ),
        rss_row(p, 1_000, None),
    ];
    rows.push(match status_latency(p.driver.console_port) {
        Ok((median, worst)) => Row::judged(
            SCENARIO,
            "console `status` latency, 1,000 processes (median of 20)",
            format!("{} (max {})", ms_precise(median), ms_precise(worst)),
            String::new(),
            "≤ 50 ms",
            median <= Duration::from_millis(50),
        ),
        Err(e) => Row::error(SCENARIO, "console `status` latency", "≤ 50 ms", &e),
    });
    rows
}

/// Median and worst of [`LATENCY_SAMPLES`] `status` round trips, each on a
/// new connection as the console client makes them.
fn status_latency(port: u16) -> Result<(Duration, Duration)> {
    let mut times = Vec::with_capacity(LATENCY_SAMPLES);
    for _ in 0..LATENCY_SAMPLES {
        let t = Instant::now();
        let lines = console_command(port, "status").context("console status")?;
        times.push(t.elapsed());
        anyhow::ensure!(!lines.is_empty(), "status answered no job");
    }
    times.sort();
    Ok((times[(times.len() - 1) / 2], times[times.len() - 1]))
}

fn ms_precise(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.2} ms", d.as_secs_f64() * 1000.0)
    } else {
        ms(d)
    }
}
