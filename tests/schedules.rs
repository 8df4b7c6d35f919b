//! Scheduled jobs (`[[schedule]]`) against a real gearmand: runs reach the
//! driver's own workers with their unique ids, priorities reach gearmand's
//! queues, the first server that accepts a run gets it, a down gearmand
//! counts failed runs, and bad entries are refused with file, key and line.

mod common;
#[path = "support/http.rs"]
mod http;
use common::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A stdio worker that appends `<unique> <workload>` to `$OUT` per job.
fn recording_worker() -> String {
    python_worker(
        "with open(os.environ['OUT'], 'ab') as f:\n    f.write(unique + b' ' + data + b'\\n')",
    )
}

/// Lib `T` with the recording worker serving `jobs` (TOML tables), and a
/// driver config holding `schedules`. Returns the lib, the config and `$OUT`.
fn lib_with(jobs: &str, schedules: &str) -> (Lib, PathBuf, PathBuf) {
    let lib = Lib::new();
    let out = lib.path().join("runs.txt");
    lib.file("T/w.py", &recording_worker());
    lib.file(
        "T/W.toml",
        &format!(
            "command = [\"python3\", \"w.py\"]\nenv = {{ OUT = \"{}\" }}\n{jobs}",
            out.display()
        ),
    );
    let config = lib.file("driver.toml", schedules);
    (lib, config, out)
}

fn start(lib: &Lib, servers: &str, config: &std::path::Path) -> Driver {
    Driver::start_with_servers(
        lib,
        servers,
        "T",
        &[
            "--interval",
            "0.5",
            "--config",
            config.to_str().unwrap(),
            "--http-bind",
            "127.0.0.1:0",
        ],
    )
}

/// `gearman_driver_schedule_runs_total{schedule, result}` from `/metrics`.
fn runs_metric(driver: &Driver, schedule: &str, result: &str) -> u64 {
    let metrics = http::get(&format!("{}/metrics", http::base_url(driver))).body;
    let series = format!(
        "gearman_driver_schedule_runs_total{{schedule=\"{schedule}\",result=\"{result}\"}} "
    );
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
        .parse()
        .unwrap()
}

/// The lines the recording worker wrote so far.
fn runs(out: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Splits `<name>@<YYYY-MM-DDTHH:MM:SSZ>` and checks its form.
fn parse_unique(unique: &str) -> (String, DateTime<Utc>) {
    let (name, time) = unique
        .split_once('@')
        .unwrap_or_else(|| panic!("unique id `{unique}` is <name>@<time>"));
    assert_eq!(time.len(), 20, "whole seconds in UTC: {unique}");
    assert!(time.ends_with('Z'), "UTC with Z: {unique}");
    let at = DateTime::parse_from_rfc3339(time)
        .unwrap_or_else(|e| panic!("`{time}` is RFC 3339: {e}"))
        .with_timezone(&Utc);
    (name.to_string(), at)
}

/// gearmand's `prioritystatus` row of a function: (high, normal, low).
fn queued_by_priority(gearmand: &Gearmand, function: &str) -> Option<(u64, u64, u64)> {
    gearmand.admin("prioritystatus").iter().find_map(|line| {
        let f: Vec<&str> = line.split('\t').collect();
        (f[0] == function).then(|| {
            (
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
    })
}

#[test]
fn an_every_second_schedule_runs_on_the_drivers_workers() {
    let gearmand = Gearmand::start();
    let (lib, config, out) = lib_with(
        "[jobs.tick]\nmin_processes = 1\n",
        "[[schedule]]\nname = \"ticker\"\nevery = \"1s\"\nfunction = \"T::W::tick\"\nworkload = \"hello\"\n",
    );
    let driver = start(&lib, &gearmand.addr(), &config);

    let lines = wait_for(Duration::from_secs(30), "three scheduled runs", || {
        let lines = runs(&out);
        (lines.len() >= 3).then_some(lines)
    });
    let mut times = Vec::new();
    for line in &lines {
        let (unique, workload) = line.split_once(' ').unwrap();
        assert_eq!(workload, "hello", "the workload reaches the worker");
        let (name, at) = parse_unique(unique);
        assert_eq!(name, "ticker");
        times.push(at);
    }
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "one job per scheduled second, in order: {lines:?}"
    );
    driver.wait_log(
        &format!(
            "schedule ticker: submitted {}",
            lines[0].split(' ').next().unwrap()
        ),
        Duration::from_secs(5),
    );
}

#[test]
fn priorities_reach_gearmands_queues_and_high_is_taken_first() {
    let gearmand = Gearmand::start();
    // No process may run yet (max 0): the runs wait in gearmand's queues.
    let (lib, config, out) = lib_with(
        "[jobs.f]\nmin_processes = 0\nmax_processes = 0\n",
        "[[schedule]]\nname = \"later\"\nevery = \"1s\"\nfunction = \"T::W::f\"\npriority = \"low\"\n\n\
         [[schedule]]\nname = \"urgent\"\nevery = \"1s\"\nfunction = \"T::W::f\"\npriority = \"high\"\n\n\
         [[schedule]]\nname = \"plain\"\nevery = \"1s\"\nfunction = \"Other::plain\"\n",
    );
    let driver = start(&lib, &gearmand.addr(), &config);

    // gearmand's own per-priority counts show what each submission asked for.
    wait_for(Duration::from_secs(30), "high and low runs queued", || {
        let (high, normal, low) = queued_by_priority(&gearmand, "T::W::f")?;
        assert_eq!(normal, 0, "nothing was submitted at normal priority");
        (high >= 2 && low >= 2).then_some(())
    });
    wait_for(Duration::from_secs(30), "a normal run queued", || {
        let (high, normal, low) = queued_by_priority(&gearmand, "Other::plain")?;
        assert_eq!((high, low), (0, 0), "priority defaults to normal");
        (normal >= 1).then_some(())
    });

    // A worker now takes the queued runs: every high one before any low one.
    let queued_high = queued_by_priority(&gearmand, "T::W::f").unwrap().0 as usize;
    assert_eq!(driver.console("set_max_processes T::W::f 1"), ["OK"]);
    let lines = wait_for(Duration::from_secs(30), "the queue taken", || {
        let lines = runs(&out);
        (lines.len() > queued_high).then_some(lines)
    });
    let names: Vec<String> = lines
        .iter()
        .map(|l| parse_unique(l.split(' ').next().unwrap()).0)
        .collect();
    assert!(
        names[..queued_high].iter().all(|n| n == "urgent"),
        "the {queued_high} queued high-priority runs come first: {names:?}"
    );
    assert!(names.contains(&"later".to_string()), "{names:?}");
}

#[test]
fn a_run_goes_to_the_first_server_that_accepts_it() {
    let first = Gearmand::start();
    let second = Gearmand::start();
    let down = format!("127.0.0.1:{}", free_port());
    let (lib, config, _out) = lib_with(
        "[jobs.unused]\nmin_processes = 0\n",
        "[[schedule]]\nname = \"spread\"\nevery = \"1s\"\nfunction = \"Nobody::serves\"\n",
    );
    let servers = format!("{down},{},{}", first.addr(), second.addr());
    let driver = start(&lib, &servers, &config);

    driver.wait_log(
        &format!("to {} (job", first.addr()),
        Duration::from_secs(30),
    );
    let queued = |g: &Gearmand| {
        g.status()
            .iter()
            .filter(|r| r.0 == "Nobody::serves")
            .map(|r| r.1)
            .sum::<u64>()
    };
    wait_for(
        Duration::from_secs(10),
        "runs queued on the first live server",
        || (queued(&first) >= 2).then_some(()),
    );
    assert_eq!(
        queued(&second),
        0,
        "the second live server is not used while the first accepts"
    );
    let log = driver.log_text();
    assert!(
        !log.contains(" failed: "),
        "a down server before a live one fails nothing:\n{log}"
    );
}

#[test]
fn a_down_gearmand_counts_a_failed_run_and_the_next_one_is_tried() {
    let mut gearmand = Gearmand::start();
    let port = gearmand.port;
    let (lib, config, out) = lib_with(
        "[jobs.tick]\nmin_processes = 1\n",
        "[[schedule]]\nname = \"beat\"\nevery = \"1s\"\nfunction = \"T::W::tick\"\n",
    );
    let driver = start(&lib, &gearmand.addr(), &config);
    wait_for(Duration::from_secs(30), "a first run", || {
        (!runs(&out).is_empty()).then_some(())
    });

    gearmand.kill();
    driver.wait_log("schedule beat: run beat@", Duration::from_secs(30));
    let row = wait_for(
        Duration::from_secs(30),
        "a failed run in `schedules`",
        || schedule_row(&driver, "beat").filter(|r| r.contains(" failed: no server accepted it (")),
    );
    let fields: Vec<&str> = row.split_whitespace().collect();
    let last_run = parse_unique(&format!("beat@{}", fields[2])).1;
    let next_run = parse_unique(&format!("beat@{}", fields[1])).1;
    assert!(next_run > last_run, "the next run is still planned: {row}");
    let log = driver.log_text();
    let failure = log
        .lines()
        .find(|l| l.contains("schedule beat: run beat@") && l.contains(" failed: "))
        .unwrap_or_else(|| panic!("a failed run is logged:\n{log}"));
    assert!(
        failure.contains(&format!("no server accepted it (127.0.0.1:{port}:")),
        "the log says which server refused: {failure}"
    );
    assert!(runs_metric(&driver, "beat", "failed") >= 1);
    let status = http::get(&format!("{}/api/status", http::base_url(&driver))).json();
    let beat = &status["schedules"][0];
    assert_eq!(beat["name"], "beat", "{status}");
    assert!(beat["runs"]["failed"].as_u64().unwrap() >= 1, "{beat}");
    assert!(beat["next_run"].as_i64().unwrap() > 0, "{beat}");

    // gearmand comes back: the next runs are submitted as usual.
    let before = runs(&out).len();
    let _gearmand = Gearmand::start_on(port);
    wait_for(
        Duration::from_secs(30),
        "runs after gearmand's return",
        || (runs(&out).len() > before).then_some(()),
    );
    wait_for(
        Duration::from_secs(10),
        "`schedules` to show a submitted run",
        || {
            schedule_row(&driver, "beat")
                .filter(|r| r.ends_with(&format!("submitted to 127.0.0.1:{port}")))
        },
    );
    assert!(runs_metric(&driver, "beat", "submitted") >= 2);
}

/// The `schedules` line of one schedule.
fn schedule_row(driver: &Driver, name: &str) -> Option<String> {
    let lines = driver.console("schedules");
    assert!(lines[0].starts_with("NAME "), "a header first: {lines:?}");
    lines
        .into_iter()
        .skip(1)
        .find(|l| l.split_whitespace().next() == Some(name))
}

/// `(schedule name, workload, scheduled time)` of every run the worker recorded.
fn names_and_workloads(out: &std::path::Path) -> Vec<(String, String, DateTime<Utc>)> {
    runs(out)
        .iter()
        .map(|line| {
            let (unique, workload) = line.split_once(' ').unwrap();
            let (name, at) = parse_unique(unique);
            (name, workload.to_string(), at)
        })
        .collect()
}

fn wait_for_run(out: &std::path::Path, name: &str, workload: &str) {
    wait_for(
        Duration::from_secs(30),
        &format!("a run of {name} with workload {workload:?}"),
        || {
            names_and_workloads(out)
                .iter()
                .any(|(n, w, _)| n == name && w == workload)
                .then_some(())
        },
    );
}

#[test]
fn reload_adds_changes_and_removes_schedules() {
    let gearmand = Gearmand::start();
    let entry = |name: &str, workload: &str| {
        format!(
            "[[schedule]]\nname = \"{name}\"\nevery = \"1s\"\nfunction = \"T::W::tick\"\nworkload = \"{workload}\"\n\n"
        )
    };
    let (lib, config, out) = lib_with(
        "[jobs.tick]\nmin_processes = 1\n",
        &(entry("alpha", "one") + &entry("gone", "bye")),
    );
    let driver = start(&lib, &gearmand.addr(), &config);
    wait_for_run(&out, "alpha", "one");
    wait_for_run(&out, "gone", "bye");

    // The console's reload: one entry changed, one removed, one added.
    std::fs::write(&config, entry("alpha", "two") + &entry("fresh", "new")).unwrap();
    let answer = driver.console("reload");
    let reloaded_at = Utc::now();
    assert_eq!(answer[0], "OK", "{answer:?}");
    for expected in [
        "schedule alpha: changed; every 1s submits T::W::tick (normal priority), next run ",
        "schedule fresh: added; every 1s submits T::W::tick (normal priority), next run ",
        "schedule gone: removed",
    ] {
        assert!(
            answer.iter().any(|l| l.starts_with(expected)),
            "{expected:?} in {answer:?}"
        );
    }
    wait_for_run(&out, "alpha", "two");
    wait_for_run(&out, "fresh", "new");
    let names: Vec<String> = driver.console("schedules")[1..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(names, ["alpha", "fresh"]);
    let late_gone: Vec<_> = names_and_workloads(&out)
        .into_iter()
        .filter(|(n, _, at)| n == "gone" && *at > reloaded_at)
        .collect();
    assert!(
        late_gone.is_empty(),
        "a removed schedule submits no more runs: {late_gone:?}"
    );

    // SIGHUP goes the same way.
    std::fs::write(&config, entry("alpha", "three") + &entry("fresh", "new")).unwrap();
    unsafe { libc::kill(driver.pid() as i32, libc::SIGHUP) };
    driver.wait_log("reload: schedule alpha: changed;", Duration::from_secs(10));
    wait_for_run(&out, "alpha", "three");

    // A configuration with a bad entry changes nothing.
    std::fs::write(
        &config,
        "[[schedule]]\nname = \"alpha\"\ncron = \"0 3 * *\"\nfunction = \"T::W::tick\"\n",
    )
    .unwrap();
    let answer = driver.console("reload");
    assert_eq!(
        answer[0],
        "ERR the new configuration is invalid; nothing changed"
    );
    assert!(
        answer
            .iter()
            .any(|l| l.contains("key `schedule[0].cron`: cannot parse `0 3 * *`")),
        "{answer:?}"
    );
    let before = runs(&out).len();
    wait_for(Duration::from_secs(30), "runs to go on", || {
        let now = names_and_workloads(&out);
        (now.len() > before + 1
            && now[before..]
                .iter()
                .any(|(n, w, _)| n == "alpha" && w == "three")
            && now[before..].iter().any(|(n, _, _)| n == "fresh"))
        .then_some(())
    });
}

#[test]
fn bad_entries_are_refused_with_file_key_and_line() {
    let (lib, config, _out) = lib_with(
        "[jobs.a]\n",
        "[[schedule]]\nname = \"a\"\nfunction = \"f\"\ncron = \"0 3 * * *\"\ntimezone = \"Mars/Olympus\"\n\n\
         [[schedule]]\nname = \"b\"\nfunction = \"f\"\ncron = \"0 3 * *\"\n\n\
         [[schedule]]\nname = \"c\"\nfunction = \"f\"\ncron = \"0 3 * * *\"\nevery = \"1h\"\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_gearman-driver"))
        .arg("check")
        .arg("--lib")
        .arg(lib.path())
        .args(["--namespaces", "T", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = config.display();
    for expected in [
        format!("{file}:5:12: key `schedule[0].timezone`: unknown time zone `Mars/Olympus`"),
        format!("{file}:10:8: key `schedule[1].cron`: cannot parse `0 3 * *`"),
        format!("{file}:16:9: key `schedule[2].every`: set either `cron` or `every`, not both"),
    ] {
        assert!(err.contains(&expected), "expected {expected:?} in:\n{err}");
    }
}
