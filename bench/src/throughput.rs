//! Throughput: 100-byte reverse jobs, 32 in flight, 4 worker processes, for
//! each way of running a worker. Runs are interleaved across the variants so
//! that a slow patch of the machine does not land on one variant only.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use gearman_driver::gearman::client::Client;

use crate::driver::{toml_argv, write_file, Driver, DriverOptions};
use crate::gearmand::Gearmand;
use crate::procs::{cpu_time, cpu_totals, quiet, Guard};
use crate::report::{median, thousands, Row};
use crate::scraper::Scraper;
use crate::Env;

const SCENARIO: &str = "Throughput";
pub const PROCESSES: usize = 4;
pub const IN_FLIGHT: usize = 32;
pub const PAYLOAD: usize = 100;
/// Bound on one batch of jobs; the slowest variants manage about 1,000 jobs/s.
const LOAD_LIMIT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Variant {
    /// plain-reverse-worker: Gearman spoken directly, no supervisor (the ceiling).
    Plain,
    /// plain-reverse-worker, one process: no herd of idle connections for
    /// gearmand to race, as the driver's arming leaves one watcher (a latency
    /// reference; not in the throughput table).
    PlainOne,
    /// gearman-driver, stdio protocol, the Rust reverse-worker.
    StdioRust,
    /// As stdio-rust, with the HTTP listener on and /metrics and
    /// /api/status fetched every second.
    StdioRustMetrics,
    /// gearman-driver, stdio protocol, the Python helper's reverse.py.
    StdioPython,
    /// gearman-driver, exec protocol running `rev` per job.
    Exec,
    /// `gearman -w -f reverse -- rev` (the C CLI), without the driver.
    GearmanCli,
    /// gearman-driver, http protocol: 4 slots (one per process of the other
    /// variants) POSTing to a keep-alive Rust endpoint.
    Http,
    /// As http, with 16 slots (`--http-slots`): enough requests in flight to
    /// keep the machine busy, as a pool is sized for its endpoint.
    HttpPool,
}

impl Variant {
    pub const ALL: [Variant; 8] = [
        Variant::Plain,
        Variant::StdioRust,
        Variant::StdioRustMetrics,
        Variant::StdioPython,
        Variant::Exec,
        Variant::GearmanCli,
        Variant::Http,
        Variant::HttpPool,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Variant::Plain => "plain Rust worker (ceiling)",
            Variant::PlainOne => "plain Rust worker, 1 process",
            Variant::StdioRust => "driver stdio, Rust reverse-worker",
            Variant::StdioRustMetrics => "driver stdio, Rust, metrics on + 1 s scraper",
            Variant::StdioPython => "driver stdio, Python reverse.py",
            Variant::Exec => "driver exec, `rev`",
            Variant::GearmanCli => "`gearman -w -- rev` (C CLI)",
            Variant::Http => "driver http, 4 slots, keep-alive Rust endpoint",
            Variant::HttpPool => "driver http, a pool of slots (`--http-slots`)",
        }
    }

    pub fn slug(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::PlainOne => "plain-one",
            Variant::StdioRust => "stdio-rust",
            Variant::StdioRustMetrics => "stdio-rust-metrics",
            Variant::StdioPython => "stdio-python",
            Variant::Exec => "exec",
            Variant::GearmanCli => "gearman-cli",
            Variant::Http => "http",
            Variant::HttpPool => "http-pool",
        }
    }
}

pub struct Settings {
    pub jobs: usize,
    pub runs: usize,
    pub variants: Vec<Variant>,
}

/// Measures every selected variant and turns the medians into table rows.
pub fn rows(env: &Env, settings: &Settings) -> Vec<Row> {
    let mut rates: HashMap<Variant, Vec<f64>> = HashMap::new();
    let mut idle: HashMap<Variant, Vec<f64>> = HashMap::new();
    let mut driver_cpu: HashMap<Variant, Vec<f64>> = HashMap::new();
    let mut errors: HashMap<Variant, anyhow::Error> = HashMap::new();
    for run in 0..settings.runs {
        // Every other run in reverse order: a machine that slows down or
        // speeds up during the run does not favour whoever goes first.
        let mut order = settings.variants.clone();
        if run % 2 == 1 {
            order.reverse();
        }
        for &v in &order {
            if errors.contains_key(&v) {
                continue;
            }
            eprint!(
                "throughput {} run {}/{}: ",
                v.slug(),
                run + 1,
                settings.runs
            );
            match measure(env, v, settings.jobs, run) {
                Ok(m) => {
                    eprintln!("{} jobs/s", thousands(m.rate));
                    rates.entry(v).or_default().push(m.rate);
                    idle.entry(v).or_default().push(m.idle);
                    if let Some(cpu) = m.driver_cpu_per_job {
                        driver_cpu.entry(v).or_default().push(cpu);
                    }
                }
                Err(e) => {
                    eprintln!("failed: {e:#}");
                    errors.insert(v, e);
                }
            }
        }
    }
    env.note(format!(
        "Throughput: {} jobs per run, {} run(s) per variant, every result checked.",
        thousands(settings.jobs as f64),
        settings.runs
    ));
    if let Some(noise) = noise(&rates) {
        env.note(noise);
    }
    for note in crate::notes::THROUGHPUT {
        env.note(note.to_string());
    }
    if let Some(note) = idle_note(&settings.variants, &idle) {
        env.note(note);
    }
    if settings.variants.contains(&Variant::HttpPool) {
        env.note(format!(
            "Throughput: the http pool ran {} slots.",
            env.http_slots
        ));
    }
    // One plain worker is measured only when asked for, after the others.
    let mut rows: Vec<Row> = Variant::ALL
        .iter()
        .chain([Variant::PlainOne].iter())
        .filter(|v| settings.variants.contains(v))
        .map(|&v| match errors.get(&v) {
            Some(e) => Row::error(SCENARIO, v.label(), target(v), e),
            None => row(v, &rates),
        })
        .collect();
    if let Some(r) = metrics_cpu_row(&driver_cpu) {
        rows.push(r);
    }
    rows
}

/// How far a variant's ratio to the ceiling moved between rounds of this
/// run: a difference smaller than that is noise, not a change.
fn noise(rates: &HashMap<Variant, Vec<f64>>) -> Option<String> {
    let mut spreads: Vec<f64> = rates
        .keys()
        .filter(|&&v| v != Variant::Plain)
        .filter_map(|&v| {
            let ours = rates.get(&v)?;
            let plain = rates.get(&Variant::Plain)?;
            let ratios: Vec<f64> = ours.iter().zip(plain).map(|(a, b)| a / b).collect();
            (ratios.len() > 1).then(|| {
                let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = ratios.iter().copied().fold(0.0, f64::max);
                (hi - lo) / 2.0 / median(&ratios)
            })
        })
        .collect();
    if spreads.is_empty() {
        return None;
    }
    spreads.sort_by(f64::total_cmp);
    Some(format!(
        "Noise: between rounds of this run a variant's ratio to the ceiling moved by ±{:.0} % \
         (median over variants; at most ±{:.0} %). A ratio is told apart from a target or from \
         another run only when it differs by more than that.",
        median(&spreads) * 100.0,
        spreads[spreads.len() - 1] * 100.0
    ))
}

/// The supervisor's own CPU per job with metrics on and scraped, against
/// metrics off: the cost itself, less swayed than throughput by whatever
/// else the machine is doing.
fn metrics_cpu_row(driver_cpu: &HashMap<Variant, Vec<f64>>) -> Option<Row> {
    let on = driver_cpu.get(&Variant::StdioRustMetrics)?;
    let off = driver_cpu.get(&Variant::StdioRust)?;
    let ratios: Vec<f64> = on.iter().zip(off).map(|(a, b)| a / b).collect();
    let ratio = median(&ratios);
    let micros = |v: &[f64]| median(v) * 1e6;
    Some(Row::judged(
        SCENARIO,
        "supervisor CPU per job, metrics on + 1 s scraper",
        format!("{:.1} µs (off: {:.1} µs)", micros(on), micros(off)),
        format!("{ratio:.3} × metrics off"),
        "≤ 1.03 × metrics off",
        ratio <= 1.03,
    ))
}

/// How much of the machine each variant left idle: a variant with idle
/// cores is held back by its round trip, not by CPU.
fn idle_note(variants: &[Variant], idle: &HashMap<Variant, Vec<f64>>) -> Option<String> {
    let shares: Vec<String> = variants
        .iter()
        .filter_map(|v| {
            let runs = idle.get(v)?;
            Some(format!("{} {:.0} %", v.slug(), median(runs) * 100.0))
        })
        .collect();
    (!shares.is_empty()).then(|| {
        format!(
            "Throughput, idle CPU while the jobs ran (median share of all cores): {}.",
            shares.join(", ")
        )
    })
}

fn target(v: Variant) -> &'static str {
    match v {
        Variant::StdioRust => "≥ 0.90 × ceiling",
        Variant::StdioRustMetrics => "≥ 0.97 × metrics off",
        Variant::StdioPython => "≥ 0.80 × ceiling",
        Variant::Exec => "≥ 1.1 × C CLI",
        Variant::HttpPool => "≥ 0.5 × ceiling",
        _ => "",
    }
}

/// The ratio of `v` to `reference`: the median of the per-run ratios. Run k
/// of every variant is measured back to back, so pairing them cancels most of
/// what drifts on a shared machine between runs.
fn paired_ratio(rates: &HashMap<Variant, Vec<f64>>, v: Variant, reference: Variant) -> Option<f64> {
    let ours = rates.get(&v)?;
    let theirs = rates.get(&reference)?;
    let ratios: Vec<f64> = ours.iter().zip(theirs).map(|(a, b)| a / b).collect();
    (!ratios.is_empty()).then(|| median(&ratios))
}

fn row(v: Variant, rates: &HashMap<Variant, Vec<f64>>) -> Row {
    let runs = &rates[&v];
    let rate = median(runs);
    let mut value = format!("{} jobs/s", thousands(rate));
    if runs.len() > 1 {
        let lo = runs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = runs.iter().copied().fold(0.0, f64::max);
        value.push_str(&format!(" ({}–{})", thousands(lo), thousands(hi)));
    }
    let ceiling = paired_ratio(rates, v, Variant::Plain);
    let cli = paired_ratio(rates, v, Variant::GearmanCli);
    let metrics_off = paired_ratio(rates, v, Variant::StdioRust);
    let mut ratio = ceiling.map_or("n/a".into(), |r| format!("{r:.3} × ceiling"));
    if v == Variant::Exec {
        if let Some(r) = cli {
            ratio.push_str(&format!(", {r:.2} × C CLI"));
        }
    }
    if v == Variant::StdioRustMetrics {
        if let Some(r) = metrics_off {
            ratio = match ceiling {
                Some(_) => format!("{ratio}, {r:.3} × metrics off"),
                None => format!("{r:.3} × metrics off"),
            };
        }
    }
    let reference = match v {
        Variant::StdioRust => ceiling.map(|r| r >= 0.90),
        Variant::StdioRustMetrics => metrics_off.map(|r| r >= 0.97),
        Variant::StdioPython => ceiling.map(|r| r >= 0.80),
        Variant::Exec => cli.map(|r| r >= 1.1),
        Variant::HttpPool => ceiling.map(|r| r >= 0.5),
        _ => None,
    };
    match reference {
        Some(met) => Row::judged(SCENARIO, v.label(), value, ratio, target(v), met),
        None if target(v).is_empty() => Row::info(SCENARIO, v.label(), value, ratio),
        None => {
            let mut r = Row::info(SCENARIO, v.label(), value, ratio);
            r.target = format!("{} (reference not measured)", target(v));
            r
        }
    }
}

/// One measurement on a fresh gearmand: jobs per second.
/// One measurement's figures.
struct Measured {
    rate: f64,
    /// The share of all cores left idle while the jobs ran.
    idle: f64,
    /// The supervisor's CPU seconds (all its threads) per job, under the driver.
    driver_cpu_per_job: Option<f64>,
}

fn measure(env: &Env, v: Variant, jobs: usize, run: usize) -> Result<Measured> {
    let dir = env.scratch.sub(&format!("throughput-{}-{run}", v.slug()))?;
    let gearmand = Gearmand::start(&env.gearmand, &dir, env.fd_limit)?;
    let workers = start_workers(env, v, &gearmand, &dir)?;
    warm_up(&gearmand, &workers.function, workers.registered, jobs)?;
    let driver = workers._driver.as_ref().map(|d| d.pid());
    let cpu_before = driver.map(cpu_time).transpose()?;
    let machine_before = cpu_totals()?;
    let result = load(&gearmand.addr(), &workers.function, jobs)?;
    let machine_after = cpu_totals()?;
    result.verify()?;
    let cpu_after = driver.map(cpu_time).transpose()?;
    if let Some(scraper) = &workers.scraper {
        let failures = scraper.failures.load(Ordering::Relaxed);
        if failures > 0 {
            bail!("{failures} scrapes of the driver's HTTP listener failed");
        }
        if scraper.scrapes.load(Ordering::Relaxed) == 0 {
            bail!("the driver's HTTP listener was never scraped");
        }
    }
    let driver_cpu_per_job = cpu_before
        .zip(cpu_after)
        .map(|(before, after)| (after - before).as_secs_f64() / jobs as f64);
    Ok(Measured {
        rate: jobs as f64 / result.elapsed.as_secs_f64(),
        idle: 1.0 - machine_before.busy_share_until(machine_after),
        driver_cpu_per_job,
    })
}

/// Jobs per second of `function` once [`PROCESSES`] workers serve it: a
/// warm-up batch, then `jobs` reverse jobs, every result checked.
pub fn rate(gearmand: &Gearmand, function: &str, jobs: usize) -> Result<f64> {
    warm_up(gearmand, function, PROCESSES, jobs)?;
    let result = load(&gearmand.addr(), function, jobs)?;
    result.verify()?;
    Ok(jobs as f64 / result.elapsed.as_secs_f64())
}

/// Waits for `workers` workers of `function`, then runs a checked
/// warm-up batch of a tenth of `jobs` (100 to 1,000).
pub fn warm_up(gearmand: &Gearmand, function: &str, workers: usize, jobs: usize) -> Result<()> {
    gearmand
        .admin()?
        .wait_workers(function, workers as u64, Duration::from_secs(60))?;
    let warm_up = (jobs / 10).clamp(100, 1_000);
    load(&gearmand.addr(), function, warm_up)?.verify()
}

/// The worker processes of one variant; stopped when dropped.
pub struct Workers {
    pub function: String,
    /// How many workers gearmand lists for `function` once all are up.
    pub registered: usize,
    /// Stopped before the driver (fields drop in order).
    scraper: Option<Scraper>,
    _guards: Vec<Guard>,
    _driver: Option<Driver>,
}

pub fn start_workers(env: &Env, v: Variant, gearmand: &Gearmand, dir: &Path) -> Result<Workers> {
    let py = env.python.to_string_lossy();
    let py_script = env.reverse_py.to_string_lossy();
    let rust = env.reverse_worker.to_string_lossy();
    match v {
        Variant::Plain | Variant::PlainOne => {
            let addr = gearmand.addr();
            let mut cmd = Command::new(&env.plain_worker);
            cmd.args(["--server", &addr, "--function", "reverse"]);
            let n = if v == Variant::PlainOne { 1 } else { PROCESSES };
            spawn_copies(cmd, "plain-reverse-worker", dir, n)
        }
        Variant::GearmanCli => {
            let port = gearmand.port.to_string();
            let mut cmd = Command::new("gearman");
            cmd.args([
                "-w",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-f",
                "reverse",
                "--",
                "rev",
            ]);
            spawn_copies(
                cmd,
                "gearman -w (Debian package gearman-tools)",
                dir,
                PROCESSES,
            )
        }
        Variant::StdioRust => under_driver(env, gearmand, dir, "StdioRust", &[&rust], "stdio"),
        Variant::StdioRustMetrics => {
            let mut workers = under_driver_with(
                env,
                gearmand,
                dir,
                ("StdioRust", &[&rust], "stdio"),
                &["--http-bind", "127.0.0.1:0"],
            )?;
            let addr = workers.driver()?.http_addr()?;
            let job = workers.function.clone();
            workers.scraper = Some(Scraper::start(addr, job));
            Ok(workers)
        }
        Variant::StdioPython => under_driver(
            env,
            gearmand,
            dir,
            "StdioPython",
            &[&py, &py_script],
            "stdio",
        ),
        Variant::Exec => under_driver(env, gearmand, dir, "Exec", &["rev"], "exec"),
        Variant::Http => http_slots(env, gearmand, dir, PROCESSES),
        Variant::HttpPool => http_slots(env, gearmand, dir, env.http_slots),
    }
}

/// The endpoint, then the driver with an http job of `slots` slots POSTing to it.
fn http_slots(env: &Env, gearmand: &Gearmand, dir: &Path, slots: usize) -> Result<Workers> {
    let mut cmd = Command::new(&env.http_endpoint);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(dir.join("endpoint.stderr"))?);
    let mut endpoint = Guard::spawn(&mut cmd, "http-reverse-endpoint", None)?;
    let stdout = endpoint
        .take_stdout()
        .context("the endpoint's stdout is piped")?;
    let mut port = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut port)?;
    let port: u16 = port
        .trim()
        .parse()
        .with_context(|| format!("the endpoint printed {port:?}, not its port"))?;
    let body = format!(
        "protocol = \"http\"\nurl = \"http://127.0.0.1:{port}/job\"\n\n[jobs.reverse]\nmin_processes = {slots}\nmax_processes = {slots}\n"
    );
    let mut workers = driver_with(env, gearmand, dir, "Http", &body, &[])?;
    workers._guards.push(endpoint);
    Ok(workers)
}

/// [`PROCESSES`] copies of a worker that speaks Gearman itself, stopped when dropped.
pub fn spawn_copies_of(cmd: &mut Command, name: &str, dir: &Path) -> Result<Vec<Guard>> {
    spawn_n_copies(cmd, name, dir, PROCESSES)
}

/// `n` copies of a worker that speaks Gearman itself, stopped when dropped.
pub fn spawn_n_copies(cmd: &mut Command, name: &str, dir: &Path, n: usize) -> Result<Vec<Guard>> {
    quiet(cmd, &dir.join("workers.stderr"))?;
    (0..n).map(|_| Guard::spawn(cmd, name, None)).collect()
}

fn spawn_copies(mut cmd: Command, name: &str, dir: &Path, n: usize) -> Result<Workers> {
    let guards = spawn_n_copies(&mut cmd, name, dir, n)?;
    Ok(Workers {
        function: "reverse".into(),
        registered: n,
        scraper: None,
        _guards: guards,
        _driver: None,
    })
}

impl Workers {
    fn driver(&self) -> Result<&Driver> {
        self._driver.as_ref().context("not under the driver")
    }

    /// The function and the driver (if any); the guards are dropped, so
    /// this is only for workers under the driver.
    pub fn into_parts(self) -> (String, Option<Driver>) {
        (self.function, self._driver)
    }
}

/// Writes `Bench/<module>.toml` (job `reverse`, min = max = 4) into a lib
/// dir of its own and starts the driver on it.
fn under_driver(
    env: &Env,
    gearmand: &Gearmand,
    dir: &Path,
    module: &str,
    argv: &[&str],
    protocol: &str,
) -> Result<Workers> {
    under_driver_with(env, gearmand, dir, (module, argv, protocol), &[])
}

/// As [`under_driver`], with more flags for the driver.
fn under_driver_with(
    env: &Env,
    gearmand: &Gearmand,
    dir: &Path,
    (module, argv, protocol): (&str, &[&str], &str),
    extra: &[&str],
) -> Result<Workers> {
    let body = format!(
        "command = {}\nprotocol = \"{protocol}\"\n\n[jobs.reverse]\nmin_processes = {PROCESSES}\nmax_processes = {PROCESSES}\n",
        toml_argv(argv)
    );
    driver_with(env, gearmand, dir, module, &body, extra)
}

/// Writes `body` as `Bench/<module>.toml` into a lib dir of its own and
/// starts the driver on it.
pub fn driver_with(
    env: &Env,
    gearmand: &Gearmand,
    dir: &Path,
    module: &str,
    body: &str,
    extra: &[&str],
) -> Result<Workers> {
    let lib = dir.join("lib");
    write_file(&lib, &format!("Bench/{module}.toml"), body, false)?;
    let namespace = format!("Bench::{module}");
    let driver = Driver::start(&DriverOptions {
        binary: &env.driver,
        lib: &lib,
        namespace: &namespace,
        server: &gearmand.addr(),
        interval: "1",
        max_idle_time: "60",
        dir,
        extra,
    })?;
    Ok(Workers {
        function: format!("{namespace}::reverse"),
        registered: PROCESSES,
        scraper: None,
        _guards: Vec::new(),
        _driver: Some(driver),
    })
}

/// What one batch of jobs gave.
#[derive(Default)]
struct Tally {
    done: usize,
    wrong: usize,
    failed: usize,
    example: Option<(Vec<u8>, Vec<u8>)>,
}

impl Tally {
    fn check(&mut self, sent: &[u8], result: Option<&[u8]>) {
        self.done += 1;
        let Some(got) = result else {
            self.failed += 1;
            return;
        };
        if !got.iter().eq(sent.iter().rev()) {
            self.wrong += 1;
            self.example
                .get_or_insert_with(|| (sent.to_vec(), got.to_vec()));
        }
    }

    fn add(&mut self, other: Tally) {
        self.done += other.done;
        self.wrong += other.wrong;
        self.failed += other.failed;
        if self.example.is_none() {
            self.example = other.example;
        }
    }
}

pub struct LoadResult {
    pub elapsed: Duration,
    tally: Tally,
}

impl LoadResult {
    pub fn verify(&self) -> Result<()> {
        let t = &self.tally;
        if t.failed > 0 {
            bail!("{} of {} jobs failed", t.failed, t.done);
        }
        if let Some((sent, got)) = &t.example {
            bail!(
                "{} of {} results were not the workload reversed (sent {:?}, got {:?})",
                t.wrong,
                t.done,
                String::from_utf8_lossy(sent),
                String::from_utf8_lossy(got)
            );
        }
        Ok(())
    }
}

/// Runs `jobs` foreground jobs over [`IN_FLIGHT`] connections. One thread
/// drives all of them: on a small machine the load generator must not take
/// more CPU than it needs from gearmand and the workers (on 2 cores, 2 or 4
/// client threads gave lower figures for every variant).
pub fn load(addr: &str, function: &str, jobs: usize) -> Result<LoadResult> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        tokio::time::timeout(LOAD_LIMIT, load_async(addr, function, jobs))
            .await
            .map_err(|_| anyhow!("{jobs} jobs did not finish within {LOAD_LIMIT:?}"))?
    })
}

async fn load_async(addr: &str, function: &str, jobs: usize) -> Result<LoadResult> {
    let mut clients = Vec::with_capacity(IN_FLIGHT);
    for _ in 0..IN_FLIGHT {
        clients.push(Client::connect(addr).await.context("client connection")?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let function: Arc<str> = Arc::from(function);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in clients {
        tasks.spawn(submit_loop(client, function.clone(), next.clone(), jobs));
    }
    let mut tally = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        tally.add(joined??);
    }
    Ok(LoadResult {
        elapsed: started.elapsed(),
        tally,
    })
}

async fn submit_loop(
    mut client: Client,
    function: Arc<str>,
    next: Arc<AtomicUsize>,
    jobs: usize,
) -> Result<Tally> {
    let mut tally = Tally::default();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= jobs {
            return Ok(tally);
        }
        let sent = payload(i);
        let reply = client.submit(&function, b"", sent.clone()).await?;
        tally.check(&sent, reply.result.as_deref());
    }
}

/// 100 bytes, different for every job (so a result mixed up between jobs
/// shows), without a newline (`rev` reverses lines).
pub fn payload(i: usize) -> Vec<u8> {
    let mut out = format!("{i:08}:").into_bytes();
    let mut state = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < PAYLOAD {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.push(b'a' + (state % 26) as u8);
    }
    out
}
