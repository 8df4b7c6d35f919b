//! Pool size: does a warm pool cost throughput? The same load as the
//! throughput scenario (100-byte reverse jobs, 32 in flight) onto 4, 32, 200
//! and 1,000 processes of one job, all idle when the load starts, for the
//! driver's stdio protocol and for plain Rust workers (one Gearman
//! connection each). With each figure, what gearmand sent and received per
//! job (data segments and bytes, from `ss -ti`), which shows the thundering
//! herd directly: without the driver's arming, gearmand NOOPs every sleeping
//! connection for each job.
//!
//! And a burst: 500 jobs of 200 ms at once onto 1,000 idle stdio processes
//! (the `sleep-worker`). If every job reaches an idle process at once, the
//! burst drains in about 200 ms; the row gives the drain time against that.
//!
//! Rounds are interleaved across sizes and kinds (every other round in
//! reverse order), and the ratios to the 4-process figure are paired within
//! a round.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use gearman_driver::gearman::client::Client;

use crate::driver::toml_argv;
use crate::gearmand::{Gearmand, Traffic};
use crate::procs::{cpu_time, cpu_tree, Guard, SyscallCount};
use crate::report::{median, thousands, Row};
use crate::throughput::{driver_with, load, spawn_n_copies};
use crate::Env;

const SCENARIO: &str = "Pool size";
pub const SIZES: [usize; 4] = [4, 32, 200, 1_000];
const BURST_JOBS: usize = 500;
const BURST_PROCESSES: usize = 1_000;
const BURST_JOB_MS: u64 = 200;
/// Starting 1,000 processes and their connections on a busy machine.
const START_LIMIT: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Driver,
    Plain,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Driver => "driver stdio, Rust reverse-worker",
            Kind::Plain => "plain Rust workers",
        }
    }
}

/// One measurement's figures.
#[derive(Debug, Clone, Copy)]
struct Figures {
    rate: f64,
    segs_per_job: f64,
    bytes_per_job: f64,
    /// CPU time of gearmand and the workers (the driver with its processes) per job.
    cpu_per_job: f64,
    /// System calls per job of gearmand, and of the workers (the driver
    /// and its processes), where `perf` could count them.
    syscalls_per_job: Option<(f64, f64)>,
}

pub struct Settings {
    pub jobs: usize,
    pub runs: usize,
}

/// The pool-size table and the burst row.
pub fn rows(env: &Env, settings: &Settings) -> Vec<Row> {
    let mut figures: HashMap<(Kind, usize), Vec<Figures>> = HashMap::new();
    let mut errors: HashMap<(Kind, usize), anyhow::Error> = HashMap::new();
    let mut bursts: Vec<Duration> = Vec::new();
    let mut burst_error = None;
    let configs: Vec<(Kind, usize)> = [Kind::Driver, Kind::Plain]
        .into_iter()
        .flat_map(|k| SIZES.into_iter().map(move |n| (k, n)))
        .collect();
    for run in 0..settings.runs {
        let mut order = configs.clone();
        if run % 2 == 1 {
            order.reverse();
        }
        for &(kind, n) in &order {
            if errors.contains_key(&(kind, n)) {
                continue;
            }
            eprint!(
                "pool size {} × {n} run {}/{}: ",
                kind.label(),
                run + 1,
                settings.runs
            );
            match measure(env, kind, n, settings.jobs, run) {
                Ok(f) => {
                    eprintln!(
                        "{} jobs/s, {:.1} segments and {:.0} bytes per job at gearmand, \
                         {:.0} µs CPU per job",
                        thousands(f.rate),
                        f.segs_per_job,
                        f.bytes_per_job,
                        f.cpu_per_job * 1e6
                    );
                    figures.entry((kind, n)).or_default().push(f);
                }
                Err(e) => {
                    eprintln!("failed: {e:#}");
                    errors.insert((kind, n), e);
                }
            }
        }
        if burst_error.is_none() {
            eprint!("pool size burst run {}/{}: ", run + 1, settings.runs);
            match burst(env, run) {
                Ok(d) => {
                    eprintln!("{} ms", d.as_millis());
                    bursts.push(d);
                }
                Err(e) => {
                    eprintln!("failed: {e:#}");
                    burst_error = Some(e);
                }
            }
        }
    }
    env.note(format!(
        "Pool size: {} jobs per run after a warm-up, {} run(s) per size, every result checked; \
         segments and bytes are gearmand's side of all its connections (`ss -ti`), in + out.",
        thousands(settings.jobs as f64),
        settings.runs
    ));
    for note in crate::notes::POOL_SIZE {
        env.note(note.to_string());
    }
    let mut rows = Vec::new();
    for &(kind, n) in &configs {
        rows.push(match errors.get(&(kind, n)) {
            Some(e) => Row::error(SCENARIO, &figure(kind, n), target(kind, n), e),
            None => size_row(kind, n, &figures),
        });
    }
    rows.push(match burst_error {
        Some(e) => Row::error(SCENARIO, &burst_figure(), "≤ 1.5 × ideal", &e),
        None => burst_row(&bursts),
    });
    rows
}

fn figure(kind: Kind, n: usize) -> String {
    format!("{}, {} idle processes", kind.label(), thousands(n as f64))
}

fn target(kind: Kind, n: usize) -> &'static str {
    match (kind, n) {
        (Kind::Driver, 200 | 1_000) => "≥ 0.8 × 4 processes",
        _ => "",
    }
}

fn size_row(kind: Kind, n: usize, figures: &HashMap<(Kind, usize), Vec<Figures>>) -> Row {
    let runs = &figures[&(kind, n)];
    let rates: Vec<f64> = runs.iter().map(|f| f.rate).collect();
    let segs = median(&runs.iter().map(|f| f.segs_per_job).collect::<Vec<_>>());
    let bytes = median(&runs.iter().map(|f| f.bytes_per_job).collect::<Vec<_>>());
    let cpu = median(&runs.iter().map(|f| f.cpu_per_job).collect::<Vec<_>>());
    let syscalls: Vec<(f64, f64)> = runs.iter().filter_map(|f| f.syscalls_per_job).collect();
    let mut value = format!("{} jobs/s", thousands(median(&rates)));
    if rates.len() > 1 {
        let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rates.iter().copied().fold(0.0, f64::max);
        value.push_str(&format!(" ({}–{})", thousands(lo), thousands(hi)));
    }
    value.push_str(&format!(
        "; per job: gearmand {segs:.1} segments, {bytes:.0} B; CPU {:.0} µs",
        cpu * 1e6
    ));
    if !syscalls.is_empty() {
        let server = median(&syscalls.iter().map(|s| s.0).collect::<Vec<_>>());
        let workers = median(&syscalls.iter().map(|s| s.1).collect::<Vec<_>>());
        value.push_str(&format!(
            "; syscalls gearmand {server:.0}, workers {workers:.0}"
        ));
    }
    // Paired by round with the same kind's 4-process figure.
    let ratio = figures.get(&(kind, SIZES[0])).map(|base| {
        let ratios: Vec<f64> = runs
            .iter()
            .zip(base)
            .map(|(a, b)| a.rate / b.rate)
            .collect();
        median(&ratios)
    });
    let ratio_text = ratio.map_or("n/a".into(), |r| format!("{r:.2} × 4 processes"));
    match (target(kind, n), ratio) {
        ("", _) => Row::info(SCENARIO, &figure(kind, n), value, ratio_text),
        (t, Some(r)) => Row::judged(SCENARIO, &figure(kind, n), value, ratio_text, t, r >= 0.8),
        (t, None) => {
            let mut row = Row::info(SCENARIO, &figure(kind, n), value, ratio_text);
            row.target = format!("{t} (reference not measured)");
            row
        }
    }
}

fn burst_figure() -> String {
    format!(
        "burst: {BURST_JOBS} jobs of {BURST_JOB_MS} ms onto {} idle stdio processes, drain time",
        thousands(BURST_PROCESSES as f64)
    )
}

fn burst_row(bursts: &[Duration]) -> Row {
    let secs: Vec<f64> = bursts.iter().map(|d| d.as_secs_f64()).collect();
    let drain = median(&secs);
    let lo = secs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = secs.iter().copied().fold(0.0, f64::max);
    let ideal = BURST_JOB_MS as f64 / 1000.0;
    let ratio = drain / ideal;
    Row::judged(
        SCENARIO,
        &burst_figure(),
        format!("{:.0} ms ({:.0}–{:.0})", drain * 1e3, lo * 1e3, hi * 1e3),
        format!("{ratio:.2} × ideal ({BURST_JOB_MS} ms)"),
        "≤ 1.5 × ideal",
        ratio <= 1.5,
    )
}

/// `n` idle workers of `kind`, stopped when dropped.
struct Pool {
    function: String,
    _guards: Vec<Guard>,
    _driver: Option<crate::driver::Driver>,
}

impl Pool {
    /// The driver and its processes, or the plain workers.
    fn pids(&self) -> Vec<u32> {
        match &self._driver {
            Some(d) => std::iter::once(d.pid())
                .chain(crate::procs::children(d.pid()))
                .collect(),
            None => self._guards.iter().map(|g| g.pid()).collect(),
        }
    }

    /// CPU time so far of the workers (the driver and its processes).
    fn cpu(&self) -> Result<Duration> {
        if let Some(d) = &self._driver {
            return cpu_tree(d.pid());
        }
        let mut total = Duration::ZERO;
        for g in &self._guards {
            total += cpu_time(g.pid())?;
        }
        Ok(total)
    }
}

fn start_pool(env: &Env, kind: Kind, n: usize, gearmand: &Gearmand, dir: &Path) -> Result<Pool> {
    match kind {
        Kind::Plain => {
            let addr = gearmand.addr();
            let mut cmd = Command::new(&env.plain_worker);
            cmd.args(["--server", &addr, "--function", "reverse"]);
            Ok(Pool {
                function: "reverse".into(),
                _guards: spawn_n_copies(&mut cmd, "plain-reverse-worker", dir, n)?,
                _driver: None,
            })
        }
        Kind::Driver => {
            let rust = env.reverse_worker.to_string_lossy();
            driver_pool(env, gearmand, dir, "PoolSize", &[&rust], n)
        }
    }
}

/// The driver with one stdio job of exactly `n` processes running `argv`.
fn driver_pool(
    env: &Env,
    gearmand: &Gearmand,
    dir: &Path,
    module: &str,
    argv: &[&str],
    n: usize,
) -> Result<Pool> {
    let body = format!(
        "command = {}\nprotocol = \"stdio\"\n\n[jobs.reverse]\nmin_processes = {n}\nmax_processes = {n}\n",
        toml_argv(argv)
    );
    let workers = driver_with(env, gearmand, dir, module, &body, &[])?;
    let (function, driver) = workers.into_parts();
    Ok(Pool {
        function,
        _guards: Vec::new(),
        _driver: driver,
    })
}

fn measure(env: &Env, kind: Kind, n: usize, jobs: usize, run: usize) -> Result<Figures> {
    let dir = env.scratch.sub(&format!(
        "poolsize-{}-{n}-{run}",
        if kind == Kind::Driver {
            "driver"
        } else {
            "plain"
        }
    ))?;
    let gearmand = Gearmand::start(&env.gearmand, &dir, env.fd_limit)?;
    let pool = start_pool(env, kind, n, &gearmand, &dir)?;
    gearmand
        .admin()?
        .wait_workers(&pool.function, n as u64, START_LIMIT)?;
    let addr = gearmand.addr();
    load(&addr, &pool.function, (jobs / 10).clamp(100, 1_000))?.verify()?;
    // Counting syscalls slows what it counts: a run of its own.
    let syscalls_per_job = count_syscalls(&gearmand, &pool, jobs / 4)?;
    let before = gearmand.traffic()?;
    let cpu_before = pool.cpu()? + cpu_time(gearmand.pid())?;
    let result = load(&addr, &pool.function, jobs)?;
    let cpu_after = pool.cpu()? + cpu_time(gearmand.pid())?;
    let after = gearmand.traffic()?;
    result.verify()?;
    let (segs_per_job, bytes_per_job) = Traffic::per_job(before, after, jobs);
    Ok(Figures {
        syscalls_per_job,
        cpu_per_job: (cpu_after - cpu_before).as_secs_f64() / jobs as f64,
        rate: jobs as f64 / result.elapsed.as_secs_f64(),
        segs_per_job,
        bytes_per_job,
    })
}

/// System calls per job of gearmand and of the workers over a batch of
/// `jobs`; `None` where perf cannot count.
fn count_syscalls(gearmand: &Gearmand, pool: &Pool, jobs: usize) -> Result<Option<(f64, f64)>> {
    let server = SyscallCount::start(&[gearmand.pid()]);
    let workers = SyscallCount::start(&pool.pids());
    load(&gearmand.addr(), &pool.function, jobs)?.verify()?;
    let per_job =
        |c: Option<SyscallCount>| c.and_then(|c| c.stop()).map(|n| n as f64 / jobs as f64);
    Ok(per_job(server).zip(per_job(workers)))
}

/// 500 foreground jobs of 200 ms, all submitted at once onto 1,000 idle
/// sleep-workers; the time from the first submission to the last answer.
fn burst(env: &Env, run: usize) -> Result<Duration> {
    let dir = env.scratch.sub(&format!("poolsize-burst-{run}"))?;
    let gearmand = Gearmand::start(&env.gearmand, &dir, env.fd_limit)?;
    let worker = env.sleep_worker.to_string_lossy();
    let pool = driver_pool(env, &gearmand, &dir, "Burst", &[&worker], BURST_PROCESSES)?;
    gearmand
        .admin()?
        .wait_workers(&pool.function, BURST_PROCESSES as u64, START_LIMIT)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let addr = gearmand.addr();
    // A small burst first, so that every process has run the code path once.
    rt.block_on(submit_burst(&addr, &pool.function, 50, 10))?;
    rt.block_on(submit_burst(
        &addr,
        &pool.function,
        BURST_JOBS,
        BURST_JOB_MS,
    ))
}

async fn submit_burst(addr: &str, function: &str, jobs: usize, millis: u64) -> Result<Duration> {
    let mut clients = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        clients.push(Client::connect(addr).await.context("client connection")?);
    }
    let workload = millis.to_string().into_bytes();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut client in clients {
        let function = function.to_string();
        let workload = workload.clone();
        tasks.spawn(async move { client.submit(&function, b"", workload).await });
    }
    let limit = Duration::from_secs(120);
    let mut done = 0;
    while let Some(joined) = tokio::time::timeout(limit, tasks.join_next())
        .await
        .map_err(|_| anyhow!("the burst did not drain within {limit:?}"))?
    {
        let reply = joined??;
        if reply.result.as_deref() != Some(workload.as_slice()) {
            bail!("a burst job came back with {:?}", reply.result);
        }
        done += 1;
    }
    if done != jobs {
        bail!("{done} of {jobs} burst jobs answered");
    }
    Ok(started.elapsed())
}
