//! The log as operators read and rotate it: the text format's process events,
//! `--log-format json`, and a log file that logrotate can move away (the
//! driver opens a new one on HUP and on the console's `reload`).

mod common;

use std::time::Duration;

use common::*;

const JOB: &str = "Logs::Echo::work";

fn echo_lib() -> Lib {
    let lib = Lib::new();
    lib.file(
        "Logs/echo.py",
        &python_worker("sys.stderr.write('handled %s\\n' % data.decode()); sys.stderr.flush()"),
    );
    lib.file(
        "Logs/Echo.toml",
        "command = [\"python3\", \"echo.py\"]\n[jobs.work]\nmin_processes = 1\nmax_processes = 1\n",
    );
    lib
}

/// `2026-11-23T09:12:03Z  INFO (4242) [job] Process started`, exactly.
fn is_text_process_event(line: &str, pid: u32, event: &str) -> bool {
    let Some((ts, rest)) = line.split_once(' ') else {
        return false;
    };
    chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%SZ").is_ok()
        && rest == format!(" INFO ({pid}) [{JOB}] {event}")
}

#[test]
fn text_lines_carry_pid_and_job_before_the_message() {
    let gearmand = Gearmand::start();
    let lib = echo_lib();
    let driver = Driver::start(&lib, &gearmand, "Logs", &[]);
    driver.wait_processes(JOB, 1, Duration::from_secs(10));
    let pid = driver.pids(JOB)[0];
    let reply = submit(&gearmand, JOB, b"abc");
    assert_eq!(reply.result.as_deref(), Some(&b"cba"[..]));
    driver.wait_log("STDERR: handled abc", Duration::from_secs(10));
    let log = driver.log_text();
    for event in ["Process started", "STDERR: handled abc"] {
        assert!(
            log.lines().any(|l| is_text_process_event(l, pid, event)),
            "no `{event}` line for {pid}:\n{log}"
        );
    }
}

#[test]
fn json_lines_parse_and_process_events_have_pid_and_job() {
    let gearmand = Gearmand::start();
    let lib = echo_lib();
    let mut driver = Driver::start(&lib, &gearmand, "Logs", &["--log-format", "json"]);
    driver.wait_processes(JOB, 1, Duration::from_secs(10));
    let pid = driver.pids(JOB)[0];
    submit(&gearmand, JOB, b"xyz");
    driver.wait_log("STDERR: handled xyz", Duration::from_secs(10));
    assert!(driver.terminate(Duration::from_secs(30)).success());

    let log = driver.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for line in &lines {
        let ts = line["ts"].as_str().expect("ts");
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{line}");
        assert!(
            ["error", "warn", "info", "debug", "trace"].contains(&line["level"].as_str().unwrap()),
            "{line}"
        );
        assert!(line["msg"].is_string(), "{line}");
    }
    let event = |msg: &str| {
        lines
            .iter()
            .find(|l| l["msg"] == msg)
            .unwrap_or_else(|| panic!("no {msg:?} in\n{log}"))
    };
    for msg in [
        "Process started",
        "STDERR: handled xyz",
        "Exited with status 0",
    ] {
        let line = event(msg);
        assert_eq!(line["pid"], pid, "{line}");
        assert_eq!(line["job"], JOB, "{line}");
        assert_eq!(line["level"], "info", "{line}");
    }
    // Lines that are no process event have neither field.
    let started = lines
        .iter()
        .find(|l| l["msg"].as_str().unwrap().contains(" started: "))
        .unwrap();
    assert!(started.get("pid").is_none() && started.get("job").is_none());
}

#[test]
fn log_format_in_the_config_file_and_a_bad_value() {
    let lib = echo_lib();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("driver.toml");
    std::fs::write(&config, "namespaces = \"Logs\"\nlog_format = \"xml\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gearman-driver"))
        .arg("check")
        .arg("--config")
        .arg(&config)
        .arg("--lib")
        .arg(lib.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("driver.toml") && err.contains("log_format") && err.contains("json"),
        "{err}"
    );
}

#[test]
fn hup_and_console_reload_reopen_a_rotated_log_file() {
    let gearmand = Gearmand::start();
    let lib = echo_lib();
    let driver = Driver::start(&lib, &gearmand, "Logs", &[]);
    driver.wait_processes(JOB, 1, Duration::from_secs(10));
    let first = driver.log.with_extension("log.1");
    let second = driver.log.with_extension("log.2");

    // logrotate's way: move the file, then HUP.
    std::fs::rename(&driver.log, &first).unwrap();
    unsafe { libc::kill(driver.pid() as i32, libc::SIGHUP) };
    driver.wait_log("reload: nothing changed", Duration::from_secs(10));
    submit(&gearmand, JOB, b"after-hup");
    driver.wait_log("STDERR: handled after-hup", Duration::from_secs(10));
    let rotated = std::fs::read_to_string(&first).unwrap();
    assert!(rotated.contains("Process started"), "{rotated}");
    assert!(
        !rotated.contains("reload:") && !rotated.contains("after-hup"),
        "lines after the HUP went to the moved file:\n{rotated}"
    );

    // The console's reload reopens it too.
    std::fs::rename(&driver.log, &second).unwrap();
    assert_eq!(driver.console("reload"), ["OK", "nothing changed"]);
    submit(&gearmand, JOB, b"after-reload");
    driver.wait_log("STDERR: handled after-reload", Duration::from_secs(10));
    let rotated = std::fs::read_to_string(&second).unwrap();
    assert!(rotated.contains("after-hup"), "{rotated}");
    assert!(!rotated.contains("after-reload"), "{rotated}");
}
