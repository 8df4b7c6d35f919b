//! `gearman-driver-bench`: the benchmark behind BENCHMARKS.md.
//!
//! It builds the driver and the worker binaries, starts its own gearmand on a
//! free loopback port, and measures, side by side:
//!
//! - throughput of 4 reverse workers: a plain Gearman worker (the ceiling),
//!   the driver's stdio protocol with the Rust and the Python helper, the exec
//!   protocol running `rev`, the C CLI's `gearman -w -- rev`, and the http
//!   protocol's slots against a keep-alive Rust endpoint;
//! - how fast the driver scales a job from 0 to 8 processes for a burst,
//!   cold start after cold start (the pool reaped to zero between rounds);
//! - the supervisor's footprint: idle CPU and RSS, start-up of 1,000
//!   processes, console latency;
//! - a Perl worker class (Gearman::Driver's kind) under the driver, against
//!   its method called in a loop inside one perl and under Gearman::Worker.
//!
//! It prints one table and writes it to `BENCHMARKS.md` with a plot of the
//! scale-up scenario, `bench-scaleup.svg`. Everything it starts is stopped
//! when it ends, fails, panics or is interrupted.

mod driver;
mod footprint;
mod gearmand;
mod latency;
mod notes;
mod perl;
mod poolsize;
mod procs;
mod report;
mod scaleup;
mod scraper;
mod svg;
mod throughput;
mod upgrade;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};

use crate::procs::Scratch;
use crate::report::Row;

#[derive(Parser)]
#[command(
    about = "Benchmark gearman-driver against a plain Gearman worker and the C CLI",
    long_about = "Builds gearman-driver and the worker binaries (cargo build --release), starts \
                  its own gearmand on a free loopback port, measures throughput, scale-up \
                  reaction and footprint, prints one table and writes BENCHMARKS.md and \
                  bench-scaleup.svg."
)]
struct Args {
    /// A short smoke run: one run per throughput variant with 2,000 jobs, and
    /// a 5 s idle-CPU window instead of 30 s.
    #[arg(long)]
    quick: bool,
    /// Where BENCHMARKS.md and bench-scaleup.svg go (default: the workspace root).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Scenarios to run (repeat or separate with commas; default: all).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "NAME")]
    scenario: Vec<Scenario>,
    /// Throughput variants to run (repeat or separate with commas; default: all).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "NAME")]
    variant: Vec<throughput::Variant>,
    /// Jobs per throughput measurement (default 20,000; 2,000 with --quick).
    #[arg(long)]
    jobs: Option<usize>,
    /// Runs per variant (throughput 5, pool size 3, latency 5; 1 with --quick); medians are reported.
    #[arg(long)]
    runs: Option<usize>,
    /// Slots of the http-pool variant (the http variant runs 4, one per
    /// process of the other variants; a slot costs no process).
    #[arg(long, default_value_t = 16)]
    http_slots: usize,
    /// Do not run cargo build; use the binaries already under target/release.
    #[arg(long)]
    no_build: bool,
    /// The gearmand to start (default: /usr/sbin/gearmand, else PATH).
    #[arg(long, value_name = "PATH")]
    gearmand: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// 4 reverse workers, 100-byte jobs, 32 in flight.
    Throughput,
    /// 5 cold starts: 200 background jobs of 0.2 s, min 0, max 8, interval 5 s,
    /// the pool reaped to zero between rounds.
    Scaleup,
    /// Idle CPU and RSS, 200 and 1,000 processes, console latency.
    Footprint,
    /// A Perl worker class: under the driver, in a loop in one perl, under Gearman::Worker.
    Perl,
    /// 4 stdio processes under load of 8 clients; the console's `upgrade`.
    Upgrade,
    /// Throughput onto 4, 32, 200 and 1,000 idle processes (driver and plain
    /// workers) with gearmand's traffic per job; a burst of 500 jobs onto
    /// 1,000 idle processes.
    PoolSize,
    /// 1,000 sequential jobs, one in flight: p50 and p99 per way of running a worker.
    Latency,
}

/// Paths and settings shared by the scenarios.
pub struct Env {
    pub driver: PathBuf,
    pub reverse_worker: PathBuf,
    pub plain_worker: PathBuf,
    pub http_endpoint: PathBuf,
    pub sleep_worker: PathBuf,
    pub http_slots: usize,
    pub reverse_py: PathBuf,
    pub python: PathBuf,
    pub gearmand: PathBuf,
    pub fd_limit: u64,
    pub quick: bool,
    pub scratch: Scratch,
    /// Remarks for the Markdown file, collected while measuring.
    pub notes: std::cell::RefCell<Vec<String>>,
}

impl Env {
    pub fn note(&self, note: String) {
        eprintln!("note: {note}");
        self.notes.borrow_mut().push(note);
    }
}

/// The workspace root, where this crate's parent manifest lives.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

const BUILD_COMMAND: &str = "cargo build --release -p gearman-driver -p gearman-driver-worker \
                             -p gearman-driver-bench --bins";

fn build(root: &Path) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building: {BUILD_COMMAND}");
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "-p", "gearman-driver"])
        .args([
            "-p",
            "gearman-driver-worker",
            "-p",
            "gearman-driver-bench",
            "--bins",
        ])
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("`{BUILD_COMMAND}` failed ({status})");
    }
    Ok(())
}

/// target/release, next to (or instead of) the profile this binary runs from.
fn release_dir() -> Result<PathBuf> {
    let me = std::env::current_exe().context("locating the benchmark binary")?;
    let profile_dir = me.parent().context("the benchmark binary has no folder")?;
    if profile_dir.file_name().is_some_and(|n| n != "release") {
        eprintln!(
            "warning: the benchmark itself is not a release build; its load generator \
             will limit the figures (use cargo run --release)"
        );
    }
    Ok(profile_dir
        .parent()
        .context("no target folder")?
        .join("release"))
}

fn binary(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing; build it with `{BUILD_COMMAND}`",
            path.display()
        );
    }
    Ok(path)
}

/// The real interpreter behind `python3` (not a version manager's shim,
/// whose start-up would be counted against the driver).
fn python() -> Result<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .context("running python3 (needed for the Python workers)")?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || path.is_empty() {
        bail!("python3 did not tell its executable");
    }
    Ok(PathBuf::from(path))
}

fn env(args: &Args, root: &Path) -> Result<Env> {
    if !args.no_build {
        build(root)?;
    }
    let release = release_dir()?;
    let fd_limit = procs::raise_fd_limit()?;
    Ok(Env {
        driver: binary(&release, "gearman-driver")?,
        reverse_worker: binary(&release, "reverse-worker")?,
        plain_worker: binary(&release, "plain-reverse-worker")?,
        http_endpoint: binary(&release, "http-reverse-endpoint")?,
        sleep_worker: binary(&release, "sleep-worker")?,
        http_slots: args.http_slots,
        reverse_py: root.join("workers/python/reverse.py"),
        python: python()?,
        gearmand: gearmand::locate(args.gearmand.as_deref())?,
        fd_limit,
        quick: args.quick,
        scratch: Scratch::new()?,
        notes: Default::default(),
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("some measurements failed; see the table");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Ok(false) if a measurement failed (the others still ran and were written).
fn run() -> Result<bool> {
    let args = Args::parse();
    procs::stop_everything_on_signal()?;
    let root = workspace_root();
    let out = args.out.clone().unwrap_or_else(|| root.clone());
    let env = env(&args, &root)?;
    note_machine_load(&env, "before the run");
    let scenarios = if args.scenario.is_empty() {
        vec![
            Scenario::Throughput,
            Scenario::PoolSize,
            Scenario::Latency,
            Scenario::Scaleup,
            Scenario::Footprint,
            Scenario::Perl,
            Scenario::Upgrade,
        ]
    } else {
        args.scenario.clone()
    };
    let mut rows = Vec::new();
    let mut svg = None;
    for s in scenarios {
        match s {
            Scenario::Throughput => rows.extend(run_throughput(&env, &args)),
            Scenario::Scaleup => {
                let (r, plot) = scaleup::rows(&env);
                rows.extend(r);
                svg = plot;
            }
            Scenario::Footprint => rows.extend(footprint::rows(&env)),
            Scenario::Perl => rows.extend(run_perl(&env, &args)),
            Scenario::Upgrade => rows.extend(upgrade::rows(&env)),
            Scenario::PoolSize => rows.extend(run_pool_size(&env, &args)),
            Scenario::Latency => rows.extend(latency::rows(
                &env,
                args.runs.unwrap_or(if env.quick { 1 } else { 5 }).max(1),
                if env.quick { 200 } else { latency::JOBS },
            )),
        }
    }
    note_machine_load(&env, "after the run");
    write_results(&env, &rows, svg, &out)?;
    Ok(!rows.iter().any(|r| r.verdict == report::Verdict::Error))
}

/// Other work on the machine skews every figure; say how much there was.
fn note_machine_load(env: &Env, when: &str) {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let one_minute = loadavg.split_whitespace().next().unwrap_or("?");
    let busy = procs::machine_busy(std::time::Duration::from_secs(1))
        .map_or("?".into(), |b| format!("{:.0} %", b * 100.0));
    env.note(format!(
        "Machine load {when}: {busy} of all cores busy over 1 s, load average {one_minute}."
    ));
}

fn run_throughput(env: &Env, args: &Args) -> Vec<Row> {
    let settings = throughput::Settings {
        jobs: args.jobs.unwrap_or(if env.quick { 2_000 } else { 20_000 }),
        runs: args.runs.unwrap_or(if env.quick { 1 } else { 5 }).max(1),
        variants: if args.variant.is_empty() {
            throughput::Variant::ALL.to_vec()
        } else {
            args.variant.clone()
        },
    };
    throughput::rows(env, &settings)
}

fn run_pool_size(env: &Env, args: &Args) -> Vec<Row> {
    let settings = poolsize::Settings {
        jobs: args.jobs.unwrap_or(if env.quick { 1_000 } else { 5_000 }),
        runs: args.runs.unwrap_or(if env.quick { 1 } else { 3 }).max(1),
    };
    poolsize::rows(env, &settings)
}

fn run_perl(env: &Env, args: &Args) -> Vec<Row> {
    let jobs = args.jobs.unwrap_or(if env.quick { 2_000 } else { 20_000 });
    let runs = args.runs.unwrap_or(if env.quick { 1 } else { 3 }).max(1);
    perl::rows(env, jobs, runs)
}

fn write_results(env: &Env, rows: &[Row], svg: Option<String>, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let svg_name = "bench-scaleup.svg";
    let svg_link = match svg {
        Some(body) => {
            std::fs::write(out.join(svg_name), body)?;
            Some(svg_name.to_string())
        }
        None => None,
    };
    let ctx = report::Context {
        date: command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        machine: machine(),
        gearmand: gearmand::version(&env.gearmand),
        quick: env.quick,
        notes: env.notes.borrow().clone(),
        svg: svg_link,
    };
    println!("\n{}", report::table(rows));
    let md = out.join("BENCHMARKS.md");
    std::fs::write(&md, report::markdown(rows, &ctx))
        .with_context(|| format!("writing {}", md.display()))?;
    eprintln!("wrote {}", md.display());
    Ok(())
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// "2 cores, <CPU model>, Linux <release>".
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, {model}, Linux {}", kernel.trim())
}
