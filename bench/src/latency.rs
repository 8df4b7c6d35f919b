//! Latency with one job in flight: 1,000 sequential foreground 100-byte
//! reverse jobs on one client connection, onto 4 idle workers, for each way
//! of running a worker. Every job finds its workers asleep, so this is the
//! wake-up path (NOOP, GRAB_JOB, JOB_ASSIGN, the process, WORK_COMPLETE)
//! that throughput at 32 in flight hides. p50 and p99 per round, the ratios
//! to the plain Rust worker's paired within a round. One plain worker alone
//! is measured too: gearmand wakes all 4 idle plain workers for each job and
//! the quickest to ask wins, where the driver lets one connection watch.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gearman_driver::gearman::client::Client;

use crate::gearmand::Gearmand;
use crate::report::{median, Row};
use crate::throughput::{payload, start_workers, warm_up, Variant};
use crate::Env;

const SCENARIO: &str = "Latency, 1 in flight";
pub const JOBS: usize = 1_000;

const VARIANTS: [Variant; 6] = [
    Variant::Plain,
    Variant::PlainOne,
    Variant::StdioRust,
    Variant::StdioPython,
    Variant::Exec,
    Variant::Http,
];

#[derive(Debug, Clone, Copy)]
struct Percentiles {
    p50: Duration,
    p99: Duration,
}

/// The latency table.
pub fn rows(env: &Env, runs: usize, jobs: usize) -> Vec<Row> {
    let mut figures: HashMap<Variant, Vec<Percentiles>> = HashMap::new();
    let mut errors: HashMap<Variant, anyhow::Error> = HashMap::new();
    for run in 0..runs {
        let mut order = VARIANTS.to_vec();
        if run % 2 == 1 {
            order.reverse();
        }
        for v in order {
            if errors.contains_key(&v) {
                continue;
            }
            eprint!("latency {} run {}/{runs}: ", v.label(), run + 1);
            match measure(env, v, jobs, run) {
                Ok(p) => {
                    eprintln!("p50 {} µs, p99 {} µs", p.p50.as_micros(), p.p99.as_micros());
                    figures.entry(v).or_default().push(p);
                }
                Err(e) => {
                    eprintln!("failed: {e:#}");
                    errors.insert(v, e);
                }
            }
        }
    }
    env.note(format!(
        "Latency: {jobs} sequential foreground jobs per run on one connection, onto 4 idle \
         workers, {runs} run(s) per variant; ratios are to the plain worker's figure of the \
         same round (median over rounds)."
    ));
    for note in crate::notes::LATENCY {
        env.note(note.to_string());
    }
    VARIANTS
        .iter()
        .map(|&v| match errors.get(&v) {
            Some(e) => Row::error(SCENARIO, v.label(), target(v), e),
            None => row(v, &figures),
        })
        .collect()
}

fn target(v: Variant) -> &'static str {
    match v {
        Variant::StdioRust => "p50 ≤ 1.25 ×, p99 ≤ 1.5 × plain",
        _ => "",
    }
}

/// Median over rounds of (ours / plain's) for one percentile.
fn paired(ours: &[Percentiles], plain: &[Percentiles], pick: fn(&Percentiles) -> Duration) -> f64 {
    let ratios: Vec<f64> = ours
        .iter()
        .zip(plain)
        .map(|(a, b)| pick(a).as_secs_f64() / pick(b).as_secs_f64())
        .collect();
    median(&ratios)
}

fn row(v: Variant, figures: &HashMap<Variant, Vec<Percentiles>>) -> Row {
    let ours = &figures[&v];
    let micros = |pick: fn(&Percentiles) -> Duration| {
        median(
            &ours
                .iter()
                .map(|p| pick(p).as_secs_f64() * 1e6)
                .collect::<Vec<_>>(),
        )
    };
    let value = format!(
        "p50 {:.0} µs, p99 {:.0} µs",
        micros(|p| p.p50),
        micros(|p| p.p99)
    );
    let Some(plain) = figures.get(&Variant::Plain) else {
        return Row::info(SCENARIO, v.label(), value, "n/a".into());
    };
    let p50 = paired(ours, plain, |p| p.p50);
    let p99 = paired(ours, plain, |p| p.p99);
    let ratio = format!("p50 {p50:.2} ×, p99 {p99:.2} × plain");
    match target(v) {
        "" => Row::info(SCENARIO, v.label(), value, ratio),
        t => Row::judged(
            SCENARIO,
            v.label(),
            value,
            ratio,
            t,
            p50 <= 1.25 && p99 <= 1.5,
        ),
    }
}

fn measure(env: &Env, v: Variant, jobs: usize, run: usize) -> Result<Percentiles> {
    let dir = env.scratch.sub(&format!("latency-{}-{run}", v.slug()))?;
    let gearmand = Gearmand::start(&env.gearmand, &dir, env.fd_limit)?;
    let workers = start_workers(env, v, &gearmand, &dir)?;
    warm_up(&gearmand, &workers.function, workers.registered, jobs)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut samples = rt.block_on(sequential(&gearmand.addr(), &workers.function, jobs))?;
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Ok(Percentiles {
        p50: at(0.50),
        p99: at(0.99),
    })
}

/// Each job's round trip, one after the other; every result checked.
async fn sequential(addr: &str, function: &str, jobs: usize) -> Result<Vec<Duration>> {
    let mut client = Client::connect(addr).await.context("client connection")?;
    let mut samples = Vec::with_capacity(jobs);
    for i in 0..jobs {
        let sent = payload(i);
        let started = Instant::now();
        let reply = tokio::time::timeout(
            Duration::from_secs(30),
            client.submit(function, b"", sent.clone()),
        )
        .await
        .context("a job took over 30 s")??;
        samples.push(started.elapsed());
        let reversed: Vec<u8> = sent.iter().rev().copied().collect();
        if reply.result.as_deref() != Some(reversed.as_slice()) {
            bail!("job {i} came back with {:?}", reply.result);
        }
    }
    Ok(samples)
}
