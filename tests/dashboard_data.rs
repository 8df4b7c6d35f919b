//! What the dashboard reads besides `/api/status`, over plain HTTP against
//! a real driver and gearmand: `/api/history` (samples of the queue,
//! processes and throughput, fetched whole once and then after a time) and
//! `/api/events` (starts, exits with their cause, crash loops).

mod common;
#[path = "support/http.rs"]
mod http;

use std::time::Duration;

use common::*;
use serde_json::Value;

const LONG: Duration = Duration::from_secs(60);

fn events(base: &str, after: u64) -> Vec<Value> {
    let reply = http::get(&format!("{base}/api/events?after={after}"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    let events = answer["events"].as_array().unwrap().clone();
    if let Some(newest) = events.last() {
        assert_eq!(answer["last"], newest["seq"], "{answer}");
    }
    events
}

#[test]
fn history_holds_the_backlog_and_answers_only_what_is_new() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker(""));
    lib.file(
        "T/W.toml",
        "command = [\"python3\", \"w.py\"]\n\
         [jobs.held]\nmin_processes = 0\nmax_processes = 0\n\
         [jobs.quick]\nmin_processes = 1\nmax_processes = 1\n",
    );
    let driver = http::start_driver(&lib, &gearmand, "T", &["--interval", "0.3"]);
    let base = http::base_url(&driver);
    // max 0: the jobs wait in gearmand.
    submit_background(&gearmand, "T::W::held", &[b"1", b"2", b"3"]);
    for _ in 0..5 {
        assert!(submit(&gearmand, "T::W::quick", b"abc").result.is_some());
    }
    let url = format!("{base}/api/history?job=T::W::held&job=T::W::quick");
    let history = wait_for(LONG, "three waiting in a sample", || {
        let h = http::get(&url).json();
        let waiting = h["series"]["T::W::held"]["waiting"].as_array()?.clone();
        (waiting.last()? == 3).then_some(h)
    });
    assert_eq!(history["span"], 900);
    let times: Vec<f64> = history["times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[1] - w[0] >= 0.99), "{times:?}");
    for series in ["waiting", "processes", "busy", "done", "failed"] {
        for job in ["T::W::held", "T::W::quick"] {
            let values = history["series"][job][series].as_array().unwrap();
            assert_eq!(values.len(), times.len(), "{job} {series}");
        }
    }
    // The quick job's five jobs show as throughput in some sample.
    let done: f64 = wait_for(LONG, "the quick job's throughput", || {
        let h = http::get(&url).json();
        let sum: f64 = h["series"]["T::W::quick"]["done"]
            .as_array()?
            .iter()
            .filter_map(Value::as_f64)
            .sum();
        (sum > 0.0).then_some(sum)
    });
    assert!(done > 0.0);
    let latest = &history["latest"]["T::W::quick"];
    assert!(
        latest.get("p50").is_some() && latest.get("done").is_some(),
        "{latest}"
    );

    // After the last sample: only newer ones.
    let last = *times.last().unwrap();
    let newer = wait_for(LONG, "a newer sample", || {
        let h = http::get(&format!("{url}&after={last}")).json();
        (!h["times"].as_array()?.is_empty()).then_some(h)
    });
    let newer_times = newer["times"].as_array().unwrap();
    assert!(newer_times.iter().all(|t| t.as_f64().unwrap() > last));
    assert_eq!(
        newer["series"]["T::W::held"]["waiting"]
            .as_array()
            .unwrap()
            .len(),
        newer_times.len()
    );

    // Bad requests say what is wrong.
    for query in ["after=soon", "jobs=x"] {
        let reply = http::get(&format!("{base}/api/history?{query}"));
        assert_eq!(reply.status, 400, "{query}");
        assert!(reply.json()["error"].is_string());
    }
    assert_eq!(http::get(&format!("{base}/api/events?after=x")).status, 400);
}

#[test]
fn events_name_starts_exits_and_crash_loops() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker(""));
    lib.file(
        "T/W.toml",
        "command = [\"python3\", \"w.py\"]\n[jobs.ok]\nmin_processes = 1\nmax_processes = 1\n",
    );
    lib.file(
        "T/Bad.toml",
        "command = [\"/bin/sh\", \"-c\", \"exit 3\"]\n[jobs.bad]\nmin_processes = 1\nmax_processes = 1\n",
    );
    let driver = http::start_driver(&lib, &gearmand, "T", &["--interval", "0.5"]);
    let base = http::base_url(&driver);
    let found = |kind: &str, job: &str, cause: &str| {
        let kind = kind.to_string();
        let (job, cause) = (job.to_string(), cause.to_string());
        move |e: &Value| {
            e["kind"] == kind.as_str() && e["job"] == job.as_str() && e["cause"] == cause.as_str()
        }
    };
    let all = wait_for(LONG, "a crash loop", || {
        let all = events(&base, 0);
        all.iter()
            .any(found("crash_loop", "T::Bad::bad", "backoff"))
            .then_some(all)
    });
    assert!(all.iter().any(found("start", "T::W::ok", "min")), "{all:?}");
    assert!(
        all.iter().any(found("exit", "T::Bad::bad", "crash")),
        "{all:?}"
    );
    let crash_loop = all.iter().find(|e| e["kind"] == "crash_loop").unwrap();
    let text = crash_loop["text"].as_str().unwrap();
    assert!(text.contains("next start in"), "{text}");
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");

    // A process killed from the console is an exit with cause `killed`.
    let last = *seqs.last().unwrap();
    let pid = driver.pids("T::W::ok")[0];
    driver.console(&format!("kill {pid}"));
    let newer = wait_for(LONG, "the kill", || {
        let newer = events(&base, last);
        newer
            .iter()
            .any(|e| e["kind"] == "exit" && e["pid"] == pid && e["cause"] == "killed")
            .then_some(newer)
    });
    assert!(newer.iter().all(|e| e["seq"].as_u64().unwrap() > last));
}
