//! The one results table (printed, and written to BENCHMARKS.md with the
//! scale-up plot and a note on method), and number formatting.

use std::fmt::Write as _;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// A figure without a target.
    Info,
    /// The measurement itself failed.
    Error,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "MISSED",
            Verdict::Info => "",
            Verdict::Error => "ERROR",
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: &'static str,
    pub figure: String,
    pub value: String,
    pub ratio: String,
    pub target: String,
    pub verdict: Verdict,
}

impl Row {
    pub fn info(scenario: &'static str, figure: &str, value: String, ratio: String) -> Row {
        Row {
            scenario,
            figure: figure.to_string(),
            value,
            ratio,
            target: String::new(),
            verdict: Verdict::Info,
        }
    }

    /// A figure with a target, `met` telling whether it was reached.
    pub fn judged(
        scenario: &'static str,
        figure: &str,
        value: String,
        ratio: String,
        target: &str,
        met: bool,
    ) -> Row {
        Row {
            scenario,
            figure: figure.to_string(),
            value,
            ratio,
            target: target.to_string(),
            verdict: if met { Verdict::Met } else { Verdict::Missed },
        }
    }

    pub fn error(scenario: &'static str, figure: &str, target: &str, error: &anyhow::Error) -> Row {
        // The table is one line per figure; the full chain goes to stderr.
        let message = format!("{error:#}").replace('|', "/").replace('\n', " ");
        Row {
            scenario,
            figure: figure.to_string(),
            value: message,
            ratio: String::new(),
            target: target.to_string(),
            verdict: Verdict::Error,
        }
    }
}

const HEADER: [&str; 6] = ["Scenario", "Figure", "Value", "Ratio", "Target", "Result"];

fn cells(row: &Row) -> [String; 6] {
    [
        row.scenario.to_string(),
        row.figure.clone(),
        row.value.clone(),
        row.ratio.clone(),
        row.target.clone(),
        row.verdict.label().to_string(),
    ]
}

/// A Markdown table padded so that it also reads as a table in a terminal.
pub fn table(rows: &[Row]) -> String {
    let all: Vec<[String; 6]> = std::iter::once(HEADER.map(str::to_string))
        .chain(rows.iter().map(cells))
        .collect();
    let widths: Vec<usize> = (0..6)
        .map(|c| all.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, r) in all.iter().enumerate() {
        out.push_str(&line(r.iter().map(String::as_str), &widths));
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
            out.push_str(&line(rule.iter().map(String::as_str), &widths));
        }
    }
    out
}

fn line<'a>(cells: impl Iterator<Item = &'a str>, widths: &[usize]) -> String {
    let mut out = String::from("|");
    for (cell, &w) in cells.zip(widths) {
        let pad = w - cell.chars().count();
        let _ = write!(out, " {cell}{} |", " ".repeat(pad));
    }
    out.push('\n');
    out
}

/// What the Markdown file says about the run besides the table.
pub struct Context {
    pub date: String,
    pub machine: String,
    pub gearmand: String,
    pub quick: bool,
    pub notes: Vec<String>,
    pub svg: Option<String>,
}

pub fn markdown(rows: &[Row], ctx: &Context) -> String {
    let mut out = String::from("# Benchmarks\n\n");
    let kind = if ctx.quick {
        "a quick smoke run (`--quick`: one run, fewer jobs, short windows; indicative only)"
    } else {
        "a full run"
    };
    let _ = writeln!(
        out,
        "Written by `cargo run --release -p gearman-driver-bench` ({kind}) on {}.\n",
        ctx.date
    );
    let _ = writeln!(out, "Machine: {}; {}.\n", ctx.machine, ctx.gearmand);
    out.push_str(
        "Each figure is measured in the same run, side by side; compare the ratios, \
         not the absolute numbers, across machines.\n\n",
    );
    out.push_str(&table(rows));
    if let Some(svg) = &ctx.svg {
        let _ = writeln!(
            out,
            "\n![processes and gearmand queue over time in the last round of the scale-up scenario]({svg})"
        );
    }
    out.push_str(METHOD);
    if !ctx.notes.is_empty() {
        out.push_str("\n## Notes from this run\n\n");
        for note in &ctx.notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
}

const METHOD: &str = "
## Method

- **Throughput**: a fresh gearmand (`--threads=2`) per measurement, 4 worker
  processes, 32 client connections (`TCP_NODELAY`) each submitting foreground
  jobs of 100 bytes in a loop until the job count is reached; a warm-up batch
  first. Value: median jobs/s (range over the runs in brackets). The runs
  go round the variants in turn (every other run in reverse order), and a
  ratio is the median of the per-run ratios (run k against run k of the
  reference), so drift on the machine between runs cancels out. Every result is checked to be the workload reversed. The ceiling is `plain-reverse-worker`
  (part of this crate), a worker that speaks Gearman itself; the C CLI row is
  `gearman -w -f reverse -- rev`, one `rev` per job, like the exec protocol.
  The http rows run an `http` job POSTing to `http-reverse-endpoint` (part
  of this crate: one thread, keep-alive, `TCP_NODELAY`), which answers
  driveshaft's JSON with the workload reversed: 4 slots, one per process of
  the other rows, then a pool of 16 (`--http-slots`). The idle share of all
  cores is read from /proc/stat around each measured batch.
- **Metrics cost**: the stdio Rust variant again, with `--http-bind` set (so
  the dashboard's history is kept too) and a thread fetching `/metrics`,
  `/api/status` and what an open dashboard polls (`/api/history` of the last
  two seconds, `/api/events`) every second (a new connection each, every
  answer checked to be a 200) through warm-up and measurement;
  its ratio is against the stdio Rust variant of the same run, metrics off.
  The supervisor's CPU per job (utime + stime of all its threads over the
  measured batch, per job) is compared the same way: it is the cost itself,
  and less swayed than throughput by other load on the machine.
- **Scale-up**: interval 5 s, max_idle_time 1 s, a job with min 0 and max 8
  served by a Python stdio worker that sleeps 0.2 s per job; 200 background
  jobs are queued in one pipelined write. Times count from just before that
  write: to the first `Process started` log line, to the eighth, and until
  gearmand's `status` shows no job of the function left (polled every
  10 ms). Ideal drain: 200 × 0.2 s / 8 = 5 s. Five rounds: the first burst
  comes 0.5 s after the driver started; each later one as soon as the
  console shows the pool reaped to zero again. A reap happens at a poll, so
  a reaction that waited for the next poll would take about 5 s there.
- **Footprint**: the supervisor process alone (not its workers). Idle CPU is
  utime + stime from `/proc/<pid>/stat` over the window, with 50 jobs of one
  READY-then-block stdio process each and interval 1 s, once all are idle.
  RSS is VmRSS. \"1,000 READY\" counts from starting the driver until gearmand
  lists 1,000 registered workers and the console's `ps` shows 1,000 idle
  processes (polled every 50 ms). `status` latency: a new console connection,
  the command, and the answer up to `.`; median of 20.
- **Perl**: one Perl worker class (`use base qw(Gearman::Driver::Worker)`,
  a `: Job` method returning its workload reversed) three ways, runs
  interleaved: its method called 1,000,000 times in a loop inside one perl
  (with the job object the runner builds; no Gearman); under the driver, 4
  processes of the Perl runner; under Gearman::Worker (pure Perl), 4
  processes calling begin, the method and end as Gearman::Driver's pure-Perl
  adaptor did. The last two take the throughput scenario's load (100-byte
  jobs, 32 in flight, results checked). Memory: VmRSS and Private_Clean +
  Private_Dirty (`/proc/<pid>/smaps_rollup`) of the driver's 4 idle Perl
  processes, and of 4 children forked from one perl that loaded the class
  (each calls the method 10,000 times, then sleeps), medians.
";

/// `12345.6` as `12,346`.
pub fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

pub fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The middle value (the lower middle of an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get((v.len().saturating_sub(1)) / 2)
        .copied()
        .unwrap_or(0.0)
}

/// Milliseconds below a second, else seconds.
pub fn report_duration(d: std::time::Duration) -> String {
    if d < std::time::Duration::from_secs(1) {
        ms(d)
    } else {
        secs(d)
    }
}
