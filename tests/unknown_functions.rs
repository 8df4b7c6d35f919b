//! A function gearmand queues but no job serves: warned about (once a
//! minute) and handed to `unknown_job_command` as a JSON row.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn unknown_functions_are_logged_and_passed_to_the_command() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker(""));
    lib.file(
        "T/W.toml",
        "command = [\"python3\", \"w.py\"]\n[jobs.known]\nmin_processes = 0\n",
    );
    let seen = lib.path().join("seen.json");
    lib.file(
        "notify.sh",
        &format!("#!/bin/sh\ncat >> {}\n", seen.display()),
    );
    let cfg = lib.file("driver.toml", "unknown_job_command = [\"./notify.sh\"]\n");
    let driver = Driver::start(
        &lib,
        &gearmand,
        "T",
        &["--config", cfg.to_str().unwrap(), "--interval", "0.3"],
    );
    submit_background(&gearmand, "Nobody::serves::this", &[b"a", b"b"]);
    driver.wait_log(
        "gearmand queues 2 job(s) for `Nobody::serves::this`, which no job serves",
        Duration::from_secs(10),
    );
    let row = wait_for(
        Duration::from_secs(10),
        "unknown_job_command to run",
        || {
            std::fs::read_to_string(&seen)
                .ok()
                .filter(|s| s.ends_with('\n'))
        },
    );
    let value: serde_json::Value = serde_json::from_str(row.lines().next().unwrap()).unwrap();
    assert_eq!(value["name"], "Nobody::serves::this");
    assert_eq!(value["queue"], 2);
    // Several polls later, still one warning: it repeats once a minute at most.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(driver.log_text().matches("which no job serves").count(), 1);
    assert_eq!(std::fs::read_to_string(&seen).unwrap().lines().count(), 1);
}
