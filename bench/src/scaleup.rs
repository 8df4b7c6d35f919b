//! Scale-up reaction, cold start after cold start: a job at 0 processes
//! (min 0, max 8, interval 5 s) gets a burst of 200 background jobs of 0.2 s
//! each; once the queue is drained and the pool has been reaped to zero
//! again (max_idle_time 1 s), the next burst comes, for [`ROUNDS`] rounds.
//! Per round: how soon the first process starts, how soon there are 8, and
//! how long until the queue is empty, against the ideal
//! 200 × 0.2 s / 8 = 5 s. The first round is the first cold start after the
//! driver started; the others are what a pool that idles down to zero sees
//! every day, and a reaction that waited for the poll would take up to 5 s.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use gearman_driver::gearman::{arg, connect, Packet, PacketType};

use crate::driver::{toml_str, write_file, Driver, DriverOptions, LogTail};
use crate::gearmand::{Admin, Gearmand};
use crate::report::{ms, secs, Row};
use crate::Env;

const SCENARIO: &str = "Scale-up";
/// Cold starts measured: the one after the driver started, then after each reap.
pub const ROUNDS: usize = 5;
pub const JOBS: usize = 200;
pub const JOB_SECS: f64 = 0.2;
pub const MAX_PROCESSES: usize = 8;
const INTERVAL: &str = "5";
const JOB: &str = "Bench::Sleep::sleep";
/// The whole burst must be done by then, whatever the driver does.
const LIMIT: Duration = Duration::from_secs(90);
/// Idle processes are reaped at the first poll after this.
const MAX_IDLE_TIME: &str = "1";
/// The pool must be back at zero by then (a poll every 5 s reaps it).
const REAP_LIMIT: Duration = Duration::from_secs(30);
const TICK: Duration = Duration::from_millis(10);
/// Every this many ticks a sample for the plot (50 ms).
const SAMPLE_EVERY: u32 = 5;

pub fn ideal() -> Duration {
    Duration::from_secs_f64(JOBS as f64 * JOB_SECS / MAX_PROCESSES as f64)
}

/// One point of the plot.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub t: f64,
    pub processes: usize,
    /// Jobs of the function in gearmand, queued or running.
    pub queued: u64,
}

/// What the scenario observed; times count from just before the burst.
#[derive(Debug, Default)]
pub struct Observed {
    pub queued_in: Duration,
    pub first: Option<Duration>,
    pub eighth: Option<Duration>,
    pub drained: Option<Duration>,
    pub samples: Vec<Sample>,
}

/// Table rows and, if anything was sampled, the SVG plot of the last round.
pub fn rows(env: &Env) -> (Vec<Row>, Option<String>) {
    eprintln!(
        "scale-up: {ROUNDS} cold starts of 200 background jobs of 0.2 s, min 0, max 8, interval 5 s"
    );
    let mut rounds = Vec::new();
    let failure = run(env, &mut rounds).err();
    let mut rows = judge(env, &rounds);
    let plot = rounds
        .last()
        .map(|o| crate::svg::scaleup(o, &format!("round {} of {ROUNDS}", rounds.len())));
    if let Some(e) = failure {
        eprintln!("scale-up failed: {e:#}");
        let figure = format!("round {} of {ROUNDS}", rounds.len() + 1);
        rows.push(Row::error(SCENARIO, &figure, "", &e));
    }
    (rows, plot)
}

fn round_name(i: usize) -> String {
    if i == 0 {
        "round 1 (after start): first process / 8 processes / drained".to_string()
    } else {
        format!(
            "round {} (after reap to 0): first process / 8 processes / drained",
            i + 1
        )
    }
}

fn judge(env: &Env, rounds: &[Observed]) -> Vec<Row> {
    if rounds.is_empty() {
        return Vec::new();
    }
    let queued: Vec<String> = rounds.iter().map(|o| ms(o.queued_in)).collect();
    env.note(format!(
        "Scale-up: each burst of {JOBS} jobs took {} to queue.",
        queued.join(", ")
    ));
    let ideal = ideal();
    let mut rows: Vec<Row> = rounds
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let never = || "never".to_string();
            let value = format!(
                "{} / {} / {}",
                o.first.map_or_else(never, ms),
                o.eighth.map_or_else(never, ms),
                o.drained.map_or_else(never, secs)
            );
            let ratio = o.drained.map_or_else(String::new, |d| {
                format!("{:.2} × ideal", d.as_secs_f64() / ideal.as_secs_f64())
            });
            let met = o.first.is_some_and(|d| d <= Duration::from_millis(100))
                && o.eighth.is_some_and(|d| d <= Duration::from_millis(500))
                && o.drained
                    .is_some_and(|d| d.as_secs_f64() <= 1.15 * ideal.as_secs_f64());
            Row::judged(
                SCENARIO,
                &round_name(i),
                value,
                ratio,
                "≤ 100 ms / ≤ 500 ms / ≤ 1.15 × ideal",
                met,
            )
        })
        .collect();
    let slowest = rounds.iter().map(|o| o.first).max().flatten();
    let all_started = rounds.iter().all(|o| o.first.is_some());
    rows.push(Row::judged(
        SCENARIO,
        &format!("slowest first process over {} cold starts", rounds.len()),
        match (all_started, slowest) {
            (true, Some(d)) => ms(d),
            _ => "never (within the limit)".into(),
        },
        String::new(),
        "≤ 500 ms every time",
        all_started && slowest.is_some_and(|d| d <= Duration::from_millis(500)),
    ));
    rows
}

/// A stdio worker that takes 0.2 s per job.
const SLEEP_WORKER: &str = r#"import sys, time
out, inp = sys.stdout.buffer, sys.stdin.buffer
out.write(b"READY\n"); out.flush()
for header in inp:
    inp.read(int(header.split()[4]))
    time.sleep(0.2)
    out.write(b"DONE 0\n"); out.flush()
"#;

/// Runs the rounds, pushing each one's observations as it completes.
fn run(env: &Env, rounds: &mut Vec<Observed>) -> Result<()> {
    let dir = env.scratch.sub("scaleup")?;
    let lib = dir.join("lib");
    write_file(&lib, "Bench/sleep_worker.py", SLEEP_WORKER, true)?;
    let toml = format!(
        "command = [{}, \"sleep_worker.py\"]\n\n[jobs.sleep]\nmin_processes = 0\nmax_processes = {MAX_PROCESSES}\n",
        toml_str(&env.python.to_string_lossy())
    );
    write_file(&lib, "Bench/Sleep.toml", &toml, false)?;
    let gearmand = Gearmand::start(&env.gearmand, &dir, env.fd_limit)?;
    let driver = Driver::start(&DriverOptions {
        binary: &env.driver,
        lib: &lib,
        namespace: "Bench::Sleep",
        server: &gearmand.addr(),
        interval: INTERVAL,
        // No process sits idle that long while a burst drains; after it, the
        // first poll reaps the pool to zero for the next round.
        max_idle_time: MAX_IDLE_TIME,
        dir: &dir,
        extra: &[],
    })?;
    let mut admin = gearmand.admin()?;
    settle(env, &mut admin)?;
    let mut tail = LogTail::new(&driver.log);
    for round in 0..ROUNDS {
        if round > 0 {
            wait_for_zero(&driver, round)?;
        }
        tail.new_lines()?;
        let start = Instant::now();
        queue_burst(&gearmand.addr(), JOB)?;
        let queued_in = start.elapsed();
        let mut observed = watch(&driver, &mut admin, &mut tail, start)?;
        observed.queued_in = queued_in;
        eprintln!(
            "scale-up round {}: first process {:?}, 8 processes {:?}, drained {:?}",
            round + 1,
            observed.first,
            observed.eighth,
            observed.drained
        );
        rounds.push(observed);
    }
    Ok(())
}

/// Waits until the pool has been reaped to zero processes. The reap happens
/// at a poll, so the next burst comes a poll interval before the next poll
/// could notice it.
fn wait_for_zero(driver: &Driver, round: usize) -> Result<()> {
    let deadline = Instant::now() + REAP_LIMIT;
    while driver.processes(JOB)? > 0 {
        if Instant::now() >= deadline {
            bail!(
                "before round {}: the pool was not reaped to zero within {}",
                round + 1,
                secs(REAP_LIMIT)
            );
        }
        std::thread::sleep(TICK);
    }
    Ok(())
}

/// Gives the driver a moment after start-up: it registers a job at zero
/// processes on a wake-up connection, if it has one (then gearmand lists one
/// worker for the function).
fn settle(env: &Env, admin: &mut Admin) -> Result<()> {
    if admin.wait_workers(JOB, 1, Duration::from_secs(3)).is_err() {
        env.note("Scale-up: gearmand listed no watcher for the idle job before the burst.".into());
    }
    std::thread::sleep(Duration::from_millis(500));
    Ok(())
}

/// Queues the burst with one pipelined write, then reads the handles.
fn queue_burst(addr: &str, function: &str) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), queue_async(addr, function))
            .await
            .context("queueing the burst timed out")?
    })
}

async fn queue_async(addr: &str, function: &str) -> Result<()> {
    let mut link = connect(addr).await?;
    let name = Bytes::copy_from_slice(function.as_bytes());
    for _ in 0..JOBS {
        let args = vec![name.clone(), Bytes::new(), Bytes::from_static(b"x")];
        link.feed(Packet::request(PacketType::SubmitJobBg, args))
            .await?;
    }
    link.flush().await?;
    let mut created = 0;
    while created < JOBS {
        let p = link
            .next()
            .await
            .context("gearmand closed the connection")??;
        match p.ptype {
            PacketType::JobCreated => created += 1,
            PacketType::Error => bail!("gearmand error: {}", String::from_utf8_lossy(&arg(&p, 1))),
            _ => {}
        }
    }
    Ok(())
}

/// Watches the log and gearmand every 10 ms until the queue is empty, and
/// samples the plot every 50 ms.
fn watch(
    driver: &Driver,
    admin: &mut Admin,
    tail: &mut LogTail,
    start: Instant,
) -> Result<Observed> {
    let mut o = Observed::default();
    let mut started = 0;
    let mut tick = 0u32;
    let tag = format!("[{JOB}]");
    while start.elapsed() < LIMIT {
        let now = start.elapsed();
        started += tail
            .new_lines()?
            .iter()
            .filter(|l| l.contains("Process started") && l.contains(&tag))
            .count();
        if started >= 1 && o.first.is_none() {
            o.first = Some(now);
        }
        if started >= MAX_PROCESSES && o.eighth.is_none() {
            o.eighth = Some(now);
        }
        let queued = admin.row(JOB)?.total;
        if queued == 0 && o.drained.is_none() {
            o.drained = Some(now);
        }
        if tick % SAMPLE_EVERY == 0 || o.drained == Some(now) {
            let processes = driver.processes(JOB)?;
            o.samples.push(Sample {
                t: now.as_secs_f64(),
                processes,
                queued,
            });
        }
        if o.drained
            .is_some_and(|d| now >= d + Duration::from_millis(500))
        {
            break;
        }
        tick += 1;
        // On a fixed grid, so the time the checks take does not stretch it.
        let next = TICK * tick;
        std::thread::sleep(next.saturating_sub(start.elapsed()));
    }
    Ok(o)
}
