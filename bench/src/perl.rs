//! Perl worker classes: what serving a Gearman::Driver class through
//! gearman-driver costs a Perl user. One class, `BenchPerl::Reverse` (a
//! `: Job` method reversing its workload), measured three ways in the same
//! run:
//!
//! - its method called in a loop inside one perl, no Gearman at all (the
//!   floor of any per-job cost);
//! - under gearman-driver: 4 processes of the Perl runner, the stdio protocol,
//!   the same load as the throughput scenario;
//! - under Gearman::Worker (pure Perl, Debian's libgearman-client-perl), 4
//!   processes calling begin, the method and end as Gearman::Driver's
//!   pure-Perl adaptor did: what such a class ran on before.
//!
//! And what one process costs in memory: each is its own perl with Moose and
//! the class loaded, not a fork sharing its parent's pages.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::driver::{write_file, Driver, DriverOptions};
use crate::gearmand::Gearmand;
use crate::procs::{rss_kib, wait_for};
use crate::report::{median, mib, thousands, Row};
use crate::throughput::{self, PROCESSES};
use crate::Env;

const SCENARIO: &str = "Perl";
const FUNCTION: &str = "BenchPerl::Reverse::reverse";

const CLASS: &str = r#"package BenchPerl::Reverse;
use base qw(Gearman::Driver::Worker);
use Moose;

sub reverse : Job : MinProcesses(4) : MaxProcesses(4) {
    my ( $self, $job, $workload ) = @_;
    return scalar CORE::reverse($workload);
}

1;
"#;

/// The method in a loop: prints `<calls> <seconds> <wrong results>`.
const LOOP: &str = r#"use strict;
use warnings;
use Time::HiRes ();
use Gearman::Driver::Runner::Job;
use BenchPerl::Reverse;

my $calls  = shift;
my $worker = BenchPerl::Reverse->new( server => '' );
my @payloads = map { substr( sprintf( '%08d:', $_ ) . ( 'abcdefghijklmnopqrstuvwxyz' x 4 ), 0, 100 ) } 0 .. 999;
my @results;
my $started = Time::HiRes::time();
for my $i ( 0 .. $calls - 1 ) {
    my $workload = $payloads[ $i % 1000 ];
    # The same job object the runner hands every job method.
    my $job = Gearman::Driver::Runner::Job->new(
        name          => 'reverse',
        handle        => "H:bench:$i",
        unique        => '',
        workload      => $workload,
        function_name => 'BenchPerl::Reverse::reverse',
    );
    $results[ $i % 1000 ] = $worker->reverse( $job, $workload );
}
my $elapsed = Time::HiRes::time() - $started;
my $wrong = grep { $results[$_] ne scalar reverse $payloads[$_] } 0 .. 999;
print "$calls $elapsed $wrong\n";
"#;

/// One Gearman::Worker process serving the class the way Gearman::Driver's
/// pure-Perl adaptor wrapped a job method.
const GEARMAN_WORKER: &str = r#"use strict;
use warnings;
use Gearman::Worker;
use BenchPerl::Reverse;

my $server = shift;
my $worker = BenchPerl::Reverse->new( server => $server );
my $gw     = Gearman::Worker->new( job_servers => [$server] );
$gw->register_function(
    'BenchPerl::Reverse::reverse' => sub {
        my ($job) = @_;
        my $workload = $job->arg;
        $worker->begin( $job, $workload );
        my $result = eval { $worker->reverse( $job, $workload ) };
        my $error = $@;
        $worker->end( $job, $workload );
        die $error if $error;
        return $result;
    }
);
$gw->work while 1;
"#;

/// Gearman::Driver's way: load the class once, fork the processes. Each
/// child calls the method a while (as serving jobs would), then appends its
/// PID to the file named first and sleeps.
const FORKED: &str = r#"use strict;
use warnings;
use Gearman::Driver::Runner::Job;
use BenchPerl::Reverse;

my ( $pid_file, $children ) = @ARGV;
my $worker = BenchPerl::Reverse->new( server => '' );
for ( 1 .. $children ) {
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    next if $pid;
    my $job = Gearman::Driver::Runner::Job->new( workload => 'x' x 100 );
    $worker->reverse( $job, $job->workload ) for 1 .. 10_000;
    open my $fh, '>>', $pid_file or die $!;
    print {$fh} "$$\n";
    close $fh;
    sleep 3600;
    exit 0;
}
sleep 3600;
"#;

struct Files {
    lib: PathBuf,
    perl_side_lib: PathBuf,
    loop_script: PathBuf,
    worker_script: PathBuf,
    forked_script: PathBuf,
}

fn files(env: &Env) -> Result<Files> {
    let dir = env.scratch.sub("perl-files")?;
    let lib = dir.join("lib");
    write_file(&lib, "BenchPerl/Reverse.pm", CLASS, false)?;
    let perl_side_lib = crate::workspace_root().join("workers/perl/lib");
    if !perl_side_lib.join("Gearman/Driver/Worker.pm").is_file() {
        bail!("{} is missing", perl_side_lib.display());
    }
    Ok(Files {
        loop_script: write_file(&dir, "loop.pl", LOOP, false)?,
        worker_script: write_file(&dir, "gearman-worker.pl", GEARMAN_WORKER, false)?,
        forked_script: write_file(&dir, "forked.pl", FORKED, false)?,
        lib,
        perl_side_lib,
    })
}

fn perl(files: &Files, script: &Path) -> Command {
    let mut cmd = Command::new("perl");
    cmd.arg("-I")
        .arg(&files.perl_side_lib)
        .arg("-I")
        .arg(&files.lib)
        .arg(script);
    cmd
}

/// Calls per second of the method in a loop.
fn in_loop(files: &Files, calls: usize) -> Result<f64> {
    let out = perl(files, &files.loop_script)
        .arg(calls.to_string())
        .output()
        .context("running perl (with libmoose-perl and libmoosex-methodattributes-perl)")?;
    if !out.status.success() {
        bail!(
            "the in-perl loop failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = text.split_whitespace().collect();
    let [n, secs, wrong] = f[..] else {
        bail!("the in-perl loop printed {text:?}");
    };
    if wrong != "0" {
        bail!("the in-perl loop got {wrong} wrong results");
    }
    Ok(n.parse::<f64>()? / secs.parse::<f64>()?)
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Way {
    Loop,
    Driver,
    GearmanWorker,
}

/// Measures every way `runs` times, interleaved, and turns the medians into rows.
pub fn rows(env: &Env, jobs: usize, runs: usize) -> Vec<Row> {
    let files = match files(env) {
        Ok(f) => f,
        Err(e) => return vec![Row::error(SCENARIO, "Perl worker class", "", &e)],
    };
    let calls = if env.quick { 100_000 } else { 1_000_000 };
    let mut rates: HashMap<Way, Vec<f64>> = HashMap::new();
    let mut errors: HashMap<Way, anyhow::Error> = HashMap::new();
    let mut memory = None;
    for run in 0..runs {
        for way in [Way::Loop, Way::Driver, Way::GearmanWorker] {
            if errors.contains_key(&way) {
                continue;
            }
            let result = match way {
                Way::Loop => in_loop(&files, calls),
                Way::Driver => under_driver(env, &files, jobs, run).map(|(rate, mem)| {
                    memory.get_or_insert(mem);
                    rate
                }),
                Way::GearmanWorker => under_gearman_worker(env, &files, jobs, run),
            };
            match result {
                Ok(rate) => {
                    eprintln!(
                        "perl {} run {}: {} /s",
                        label(way),
                        run + 1,
                        thousands(rate)
                    );
                    rates.entry(way).or_default().push(rate);
                }
                Err(e) => {
                    eprintln!("perl {}: failed: {e:#}", label(way));
                    errors.insert(way, e);
                }
            }
        }
    }
    env.note(format!(
        "Perl: {} calls in the loop, {} jobs per run under the driver and Gearman::Worker, {runs} run(s).",
        thousands(calls as f64),
        thousands(jobs as f64)
    ));
    let mut rows = Vec::new();
    for way in [Way::Loop, Way::Driver, Way::GearmanWorker] {
        rows.push(match (rates.get(&way), errors.get(&way)) {
            (_, Some(e)) => Row::error(SCENARIO, label(way), "", e),
            (Some(r), None) => Row::info(SCENARIO, label(way), value(way, r), ratio(way, &rates)),
            (None, None) => continue,
        });
    }
    if let Some((rss, private)) = memory {
        rows.push(Row::info(
            SCENARIO,
            "memory of one driver Perl process (Moose + the class, idle)",
            format!("RSS {}, private {}", mib(rss), mib(private)),
            String::new(),
        ));
    }
    rows.push(match forked_memory(env, &files) {
        Ok((rss, private)) => Row::info(
            SCENARIO,
            "memory of one process forked from a loaded perl (Gearman::Driver's way)",
            format!("RSS {}, private {}", mib(rss), mib(private)),
            String::new(),
        ),
        Err(e) => Row::error(SCENARIO, "memory of one forked process", "", &e),
    });
    rows
}

/// (RSS, private) KiB of a child forked from a perl that loaded the class,
/// the median of four.
fn forked_memory(env: &Env, files: &Files) -> Result<(u64, u64)> {
    let dir = env.scratch.sub("perl-forked")?;
    let pid_file = dir.join("children");
    let mut cmd = perl(files, &files.forked_script);
    cmd.arg(&pid_file).arg(PROCESSES.to_string());
    crate::procs::quiet(&mut cmd, &dir.join("forked.stderr"))?;
    let _parent = crate::procs::Guard::spawn(&mut cmd, "perl (forking)", None)?;
    let pids: Vec<u32> = wait_for(
        Duration::from_secs(60),
        Duration::from_millis(20),
        "the forked children",
        || {
            let text = std::fs::read_to_string(&pid_file).unwrap_or_default();
            let pids: Vec<u32> = text.lines().filter_map(|l| l.parse().ok()).collect();
            Ok((pids.len() == PROCESSES).then_some(pids))
        },
    )?;
    let mut rss = Vec::new();
    let mut private = Vec::new();
    for pid in pids {
        rss.push(rss_kib(pid)? as f64);
        private.push(private_kib(pid)? as f64);
    }
    Ok((median(&rss) as u64, median(&private) as u64))
}

fn label(way: Way) -> &'static str {
    match way {
        Way::Loop => "the class's method in a loop inside one perl",
        Way::Driver => "the class under the driver (stdio, 4 processes)",
        Way::GearmanWorker => "the class under Gearman::Worker (4 processes, no driver)",
    }
}

fn value(way: Way, runs: &[f64]) -> String {
    let unit = if way == Way::Loop {
        "calls/s"
    } else {
        "jobs/s"
    };
    let mut value = format!("{} {unit}", thousands(median(runs)));
    if runs.len() > 1 {
        let lo = runs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = runs.iter().copied().fold(0.0, f64::max);
        value.push_str(&format!(" ({}–{})", thousands(lo), thousands(hi)));
    }
    value
}

/// Per-run ratios against the loop (and, for the driver, against
/// Gearman::Worker), their median.
fn ratio(way: Way, rates: &HashMap<Way, Vec<f64>>) -> String {
    let against = |reference: Way| -> Option<f64> {
        let ours = rates.get(&way)?;
        let theirs = rates.get(&reference)?;
        let r: Vec<f64> = ours.iter().zip(theirs).map(|(a, b)| a / b).collect();
        (!r.is_empty()).then(|| median(&r))
    };
    let per_job_us = |rate: f64| 1e6 / rate;
    match way {
        Way::Loop => rates
            .get(&way)
            .map(|r| format!("{:.1} µs per call", per_job_us(median(r))))
            .unwrap_or_default(),
        Way::Driver => {
            let mut parts = Vec::new();
            if let Some(r) = against(Way::Loop) {
                parts.push(format!("{r:.3} × the loop"));
            }
            if let Some(r) = against(Way::GearmanWorker) {
                parts.push(format!("{r:.2} × Gearman::Worker"));
            }
            if let Some(r) = rates.get(&way) {
                parts.push(format!("a job every {:.0} µs", per_job_us(median(r))));
            }
            parts.join(", ")
        }
        Way::GearmanWorker => against(Way::Loop)
            .map(|r| format!("{r:.3} × the loop"))
            .unwrap_or_default(),
    }
}

/// Jobs per second under the driver, and (RSS, private) KiB of one idle
/// process, the median of the four.
fn under_driver(env: &Env, files: &Files, jobs: usize, run: usize) -> Result<(f64, (u64, u64))> {
    let dir = env.scratch.sub(&format!("perl-driver-{run}"))?;
    let gearmand = Gearmand::start(&env.gearmand, &dir, env.fd_limit)?;
    let driver = Driver::start(&DriverOptions {
        binary: &env.driver,
        lib: &files.lib,
        namespace: "BenchPerl",
        server: &gearmand.addr(),
        interval: "1",
        max_idle_time: "60",
        dir: &dir,
        extra: &[],
    })?;
    gearmand
        .admin()?
        .wait_workers(FUNCTION, PROCESSES as u64, Duration::from_secs(60))?;
    let memory = idle_memory(&driver)?;
    let rate = throughput::rate(&gearmand, FUNCTION, jobs)?;
    Ok((rate, memory))
}

fn idle_memory(driver: &Driver) -> Result<(u64, u64)> {
    let pids = wait_for(
        Duration::from_secs(30),
        Duration::from_millis(50),
        "4 idle Perl processes",
        || Ok((driver.idle("BenchPerl::")? == PROCESSES).then(|| children(driver.pid()))),
    )?;
    let mut rss = Vec::new();
    let mut private = Vec::new();
    for pid in pids {
        rss.push(rss_kib(pid)? as f64);
        private.push(private_kib(pid)? as f64);
    }
    Ok((median(&rss) as u64, median(&private) as u64))
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Memory only this process uses (Private_Clean + Private_Dirty): what one
/// more process costs.
fn private_kib(pid: u32) -> Result<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let field = |name: &str| -> u64 {
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(field("Private_Clean:") + field("Private_Dirty:"))
}

fn under_gearman_worker(env: &Env, files: &Files, jobs: usize, run: usize) -> Result<f64> {
    let dir = env.scratch.sub(&format!("perl-gearman-worker-{run}"))?;
    let gearmand = Gearmand::start(&env.gearmand, &dir, env.fd_limit)?;
    let mut cmd = perl(files, &files.worker_script);
    cmd.arg(gearmand.addr());
    let _workers = throughput::spawn_copies_of(
        &mut cmd,
        "Gearman::Worker (Debian package libgearman-client-perl)",
        &dir,
    )?;
    throughput::rate(&gearmand, FUNCTION, jobs)
}
