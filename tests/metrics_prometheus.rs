//! The metrics as a real Prometheus server sees them: it scrapes the
//! driver every second, and the tests ask its query API for the series
//! after running known jobs (done, failed, a process killed mid-job, a
//! process that burns CPU and exits), backlogs, reloads and servers that
//! are down.

mod common;
#[path = "support/http.rs"]
mod http;
#[path = "support/prometheus.rs"]
mod prometheus;

use std::time::Duration;

use common::*;
use prometheus::Prometheus;

const LONG: Duration = Duration::from_secs(60);

/// The address part of a base URL: `127.0.0.1:PORT`.
fn target(driver: &Driver) -> String {
    http::base_url(driver)
        .trim_start_matches("http://")
        .to_string()
}

/// A worker that fails `fail*`, hangs on the first `slow` (until killed),
/// and for `burn` uses half a second of CPU, answers, and exits.
fn worker(marker: &std::path::Path) -> String {
    format!(
        "command = [\"python3\", \"w.py\"]\nenv = {{ MARKER = \"{}\" }}\n\n\
         [jobs.work]\nmin_processes = 1\nmax_processes = 1\n",
        marker.display()
    )
}

const WORKER_PY: &str = r#"if data.startswith(b"fail"):
    frame(b"FAIL", b"failed on purpose")
    continue
if data == b"slow" and not os.path.exists(os.environ["MARKER"]):
    open(os.environ["MARKER"], "w").close()
    time.sleep(300)
if data == b"burn":
    end = time.process_time() + 0.5
    while time.process_time() < end:
        pass
    frame(b"DONE", result)
    sys.exit(0)"#;

fn busy_pid(driver: &Driver, job: &str) -> Option<u32> {
    driver.console("ps").iter().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&job) && f.get(2) == Some(&"busy")).then(|| f[0].parse().unwrap())
    })
}

#[test]
fn prometheus_sees_job_outcomes_exits_cpu_and_reloads() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    let marker = lib.path().join("slow-ran-once");
    lib.file("T/W.toml", &worker(&marker));
    lib.file("T/w.py", &python_worker(WORKER_PY));
    // A crash loop: exits at once, every time.
    lib.file(
        "T/Crash.toml",
        "command = [\"python3\", \"crash.py\"]\n[jobs.crashy]\nmin_processes = 1\n",
    );
    lib.file("T/crash.py", "import sys\nsys.exit(3)\n");
    // A long interval: no periodic CPU reading happens during the test, so
    // the CPU of the process that exits can only come from its last reading.
    let driver = http::start_driver(&lib, &gearmand, "T", &["--interval", "60"]);
    let prometheus = Prometheus::start(&target(&driver));
    let job = "T::W::work";
    driver.wait_processes(job, 1, LONG);

    for i in 0..3 {
        let reply = submit(&gearmand, job, format!("ok{i}").as_bytes());
        assert!(reply.result.is_some());
    }
    for i in 0..2 {
        let reply = submit(&gearmand, job, format!("fail{i}").as_bytes());
        assert!(reply.result.is_none(), "fail jobs fail");
    }
    // Killed mid-job: the job goes back to gearmand and runs again.
    submit_background(&gearmand, job, &[b"slow"]);
    let pid = wait_for(LONG, "the slow job to be running", || {
        busy_pid(&driver, job)
    });
    wait_for(LONG, "the marker", || marker.exists().then_some(()));
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    wait_for(LONG, "the requeued job to be done", || {
        let queued: u64 = gearmand
            .status()
            .iter()
            .filter(|r| r.0 == job)
            .map(|r| r.1)
            .sum();
        (queued == 0 && !driver.pids(job).contains(&pid)).then_some(())
    });
    let burner = wait_for(LONG, "a new process", || {
        driver.pids(job).first().copied().filter(|p| *p != pid)
    });
    assert!(submit(&gearmand, job, b"burn").result.is_some());
    wait_for(LONG, "the burning process to exit", || {
        (!driver.pids(job).contains(&burner)).then_some(())
    });

    let series = |name: &str, extra: &str| format!("{name}{{job=\"{job}\"{extra}}}");
    let outcome = |o: &str| series("gearman_driver_jobs_total", &format!(",outcome=\"{o}\""));
    prometheus.wait_equal(&outcome("done"), 5.0);
    prometheus.wait_equal(&outcome("failed"), 2.0);
    prometheus.wait_equal(&outcome("requeued"), 1.0);
    prometheus.wait_equal(&outcome("timeout"), 0.0);
    prometheus.wait_equal(
        &series("gearman_driver_job_duration_seconds_count", ""),
        7.0,
    );
    let exits = |c: &str| {
        series(
            "gearman_driver_process_exits_total",
            &format!(",cause=\"{c}\""),
        )
    };
    prometheus.wait_equal(&exits("crash"), 2.0);
    prometheus.wait_equal(&exits("killed"), 0.0);
    let starts = series("gearman_driver_process_starts_total", ",reason=\"min\"");
    prometheus.wait_equal(&starts, 3.0);
    let cpu = prometheus.wait_value(
        &series("gearman_driver_workers_cpu_seconds_total", ""),
        |v| v >= 0.45,
    );
    assert!(cpu < 30.0, "CPU seconds look wrong: {cpu}");
    prometheus.wait_value(
        "gearman_driver_crash_loop_backoff_seconds{job=\"T::Crash::crashy\"}",
        |v| v >= 2.0,
    );
    prometheus.wait_value(
        "gearman_driver_process_exits_total{job=\"T::Crash::crashy\",cause=\"crash\"}",
        |v| v >= 2.0,
    );
    // The shipped crash-loop alert picks it up (pending: it has a `for`).
    prometheus.wait_value(
        "ALERTS{alertname=\"GearmanDriverCrashLoop\",job=\"T::Crash::crashy\"}",
        |v| v == 1.0,
    );
    assert!(
        prometheus
            .query(&format!(
                "ALERTS{{alertname=\"GearmanDriverCrashLoop\",job=\"{job}\"}}"
            ))
            .is_empty(),
        "a job that recovered is not in a crash loop"
    );
    prometheus.wait_equal(&series("gearman_driver_processes", ",state=\"idle\""), 1.0);
    prometheus.wait_equal(&series("gearman_driver_processes_max", ""), 1.0);
    prometheus.wait_value(&series("gearman_driver_workers_resident_bytes", ""), |v| {
        v >= 0.0
    });
    prometheus.wait_equal(
        &format!(
            "gearman_driver_gearmand_up{{server=\"{}\"}}",
            gearmand.addr()
        ),
        1.0,
    );
    prometheus.wait_equal(
        &format!(
            "gearman_driver_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        ),
        1.0,
    );
    prometheus.wait_value(
        "process_resident_memory_bytes{job=\"gearman-driver\"}",
        |v| v > 1e6,
    );
    prometheus.wait_value("process_open_fds{job=\"gearman-driver\"}", |v| v >= 3.0);
    prometheus.wait_value("process_cpu_seconds_total{job=\"gearman-driver\"}", |v| {
        v > 0.0
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    prometheus.wait_value("process_start_time_seconds{job=\"gearman-driver\"}", |v| {
        (now - 600.0..=now + 1.0).contains(&v)
    });

    assert_eq!(driver.console("reload")[0], "OK");
    prometheus.wait_equal("gearman_driver_reloads_total{result=\"applied\"}", 1.0);
    lib.file("T/W.toml", "command = [\"python3\", \"w.py\"]\nbogus = 1\n");
    assert!(driver.console("reload")[0].starts_with("ERR"));
    prometheus.wait_equal("gearman_driver_reloads_total{result=\"rejected\"}", 1.0);
}

#[test]
fn prometheus_sees_each_server_backlogs_and_removed_jobs_go() {
    let gearmand = Gearmand::start();
    let dead = free_port();
    let lib = Lib::new();
    lib.file(
        "T/Parked.toml",
        "command = [\"python3\", \"w.py\"]\n[jobs.parked]\nmin_processes = 0\nmax_processes = 0\n",
    );
    lib.file(
        "T/Scaled.toml",
        "command = [\"python3\", \"w.py\"]\n[jobs.scaled]\nmin_processes = 0\nmax_processes = 2\n",
    );
    lib.file("T/w.py", &python_worker("time.sleep(0.3)"));
    let servers = format!("{},127.0.0.1:{dead}", gearmand.addr());
    let driver = Driver::start_with_servers(
        &lib,
        &servers,
        "T",
        &["--http-bind", "127.0.0.1:0", "--interval", "0.5"],
    );
    let prometheus = Prometheus::start(&target(&driver));

    submit_background(&gearmand, "T::Parked::parked", &[b"a", b"b", b"c"]);
    let row = |metric: &str, server: &str| {
        format!("{metric}{{server=\"{server}\",function=\"T::Parked::parked\"}}")
    };
    let live = gearmand.addr();
    prometheus.wait_equal(&row("gearman_driver_gearmand_queued", &live), 3.0);
    prometheus.wait_equal(&row("gearman_driver_gearmand_running", &live), 0.0);
    prometheus.wait_equal(
        &format!("gearman_driver_gearmand_up{{server=\"{live}\"}}"),
        1.0,
    );
    prometheus.wait_equal(
        &format!("gearman_driver_gearmand_up{{server=\"127.0.0.1:{dead}\"}}"),
        0.0,
    );
    // The shipped queue alert: jobs wait while the job is at its max (0).
    prometheus.wait_value(
        "ALERTS{alertname=\"GearmanDriverQueueBackingUp\",job=\"T::Parked::parked\"}",
        |v| v == 1.0,
    );
    let dead_rows = prometheus.query(&format!(
        "gearman_driver_gearmand_queued{{server=\"127.0.0.1:{dead}\"}}"
    ));
    assert!(dead_rows.is_empty(), "a server that is down has no rows");

    let job = "T::Scaled::scaled";
    submit_background(&gearmand, job, &[b"1", b"2", b"3", b"4"]);
    prometheus.wait_equal(
        &format!("gearman_driver_jobs_total{{job=\"{job}\",outcome=\"done\"}}"),
        4.0,
    );
    prometheus.wait_value(
        &format!("gearman_driver_process_starts_total{{job=\"{job}\",reason=\"backlog\"}}"),
        |v| v >= 1.0,
    );
    prometheus.wait_value(
        &format!("gearman_driver_scale_up_seconds_count{{job=\"{job}\"}}"),
        |v| v >= 1.0,
    );
    prometheus.wait_value(
        &format!("gearman_driver_scale_up_seconds_sum{{job=\"{job}\"}}"),
        |v| v > 0.0 && v < 60.0,
    );

    // A job removed by a reload loses its series.
    let parked = "gearman_driver_processes_max{job=\"T::Parked::parked\"}";
    prometheus.wait_equal(parked, 0.0);
    std::fs::remove_file(lib.path().join("T/Parked.toml")).unwrap();
    assert_eq!(driver.console("reload")[0], "OK");
    let url = format!("{}/metrics", http::base_url(&driver));
    wait_for(LONG, "the removed job's series to go", || {
        (!http::get(&url).body.contains("job=\"T::Parked::parked\"")).then_some(())
    });
    wait_for(LONG, "Prometheus to see the series go", || {
        prometheus.query(parked).is_empty().then_some(())
    });
    assert_eq!(
        http::sample(
            &http::get(&url).body,
            &format!("gearman_driver_processes_max{{job=\"{job}\"}}")
        ),
        Some(2.0),
        "the other job keeps its series"
    );
}

#[test]
fn the_shipped_prometheus_config_and_rules_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (what, file) in [
        ("config", "examples/prometheus/prometheus.yml"),
        ("rules", "examples/prometheus/alerts.yml"),
    ] {
        let out = std::process::Command::new("promtool")
            .args(["check", what])
            .arg(root.join(file))
            .output()
            .expect("promtool is installed (Debian package prometheus)");
        assert!(
            out.status.success(),
            "promtool check {what} {file}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
