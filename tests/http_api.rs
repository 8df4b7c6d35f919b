//! The HTTP listener against the real binary: `/api/status` agrees with
//! the console's `status` and `ps`, `/healthz` turns 503 during a shutdown
//! and keeps answering until the supervisor exits, the write endpoints are
//! routed and refused without a token, a taken port fails start-up, and
//! hostile clients (a thousand silent connections, ten thousand headers,
//! requests that never end) cost only their own connections while jobs
//! and the console go on.

mod common;
#[path = "support/http.rs"]
mod http;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const LONG: Duration = Duration::from_secs(60);

fn worker_file(jobs: &str) -> String {
    format!("command = [\"python3\", \"w.py\"]\n{jobs}")
}

/// A library with one job `T::W::<name>` of the echoing Python worker.
fn one_job_lib(name: &str, min: u32, max: u32) -> Lib {
    let lib = Lib::new();
    lib.file(
        "T/W.toml",
        &worker_file(&format!(
            "[jobs.{name}]\nmin_processes = {min}\nmax_processes = {max}\n"
        )),
    );
    lib.file("T/w.py", &python_worker(""));
    lib
}

/// The fields of a console `status` line.
fn status_fields(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

fn epoch(console_time: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(console_time, "%Y-%m-%dT%H:%M:%S")
        .unwrap()
        .and_utc()
        .timestamp()
}

fn job<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {status}"))
}

/// What the console's `status` and `ps` print, as `/api/status` shows it.
fn pool_shape(status: &Value) -> Value {
    let jobs: Vec<Value> = status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            serde_json::json!([
                j["min"],
                j["max"],
                j["processes"],
                j["lastrun"],
                j["lasterror"]
            ])
        })
        .collect();
    let processes: Vec<Value> = status["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| serde_json::json!([p["pid"], p["state"], p["jobs"]]))
        .collect();
    serde_json::json!([jobs, processes])
}

#[test]
fn api_status_agrees_with_the_console() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file(
        "T/W.toml",
        &worker_file(
            "[jobs.pair]\nmin_processes = 2\nmax_processes = 3\n\
             [jobs.spare]\nmin_processes = 0\nmax_processes = 1\n",
        ),
    );
    lib.file(
        "T/w.py",
        &python_worker(
            "if data == b\"fail\":\n    frame(b\"FAIL\", b\"no good\\nsecond line\")\n    continue\n\
             if data == b\"hold\":\n    time.sleep(300)",
        ),
    );
    let driver = http::start_driver(&lib, &gearmand, "T", &["--interval", "0.5"]);
    let url = format!("{}/api/status", http::base_url(&driver));
    let started = chrono::Utc::now().timestamp();
    driver.wait_processes("T::W::pair", 2, LONG);
    assert!(submit(&gearmand, "T::W::pair", b"abc").result.is_some());
    assert!(submit(&gearmand, "T::W::pair", b"fail").result.is_none());
    submit_background(&gearmand, "T::W::pair", &[b"hold"]);

    // The status view, once it shows the held job running.
    let status = wait_for(LONG, "a busy process in /api/status", || {
        let reply = http::get(&url);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let status = reply.json();
        let pair = job(&status, "T::W::pair");
        // Busy from the process's own event; running from gearmand's next poll;
        // the tallies from the other process's events, which may come later.
        let busy = pair["processes"]["busy"] == 1 && pair["running"] == 1;
        let counted = pair["done"].as_u64().unwrap() + pair["failed"].as_u64().unwrap() >= 2;
        (busy && counted).then_some(status)
    });
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert!((status["started"].as_i64().unwrap() - started).abs() < 30);
    assert_eq!(
        status["servers"],
        serde_json::json!([{ "address": gearmand.addr(), "up": true }])
    );
    let pair = job(&status, "T::W::pair");
    assert_eq!(
        (&pair["done"], &pair["failed"], &pair["timeouts"]),
        (&Value::from(1), &Value::from(1), &Value::from(0))
    );
    assert_eq!(pair["message"], "no good\nsecond line");

    // The console says the same, field by field. The pool may still be
    // settling (a third process starting for the held job, then idle), so
    // compare views read while /api/status stayed the same around them.
    // Answers are shared for a short window: `after` must be one made after
    // the console answered, which any answer unlike `before` is (uptimes move).
    let (status, console, ps) = wait_for(LONG, "a pool that holds still", || {
        let before = http::get(&url).json();
        let console = driver.console("status");
        let ps = driver.console("ps");
        let after = wait_for(LONG, "a fresh /api/status", || {
            let after = http::get(&url).json();
            (after != before).then_some(after)
        });
        (pool_shape(&before) == pool_shape(&after)).then_some((after, console, ps))
    });
    let names: Vec<&str> = status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["T::W::pair", "T::W::spare"]);
    for (line, view) in console.iter().zip(status["jobs"].as_array().unwrap()) {
        let f = status_fields(line);
        let processes = &view["processes"];
        let total: u64 = ["starting", "idle", "busy", "stopping"]
            .iter()
            .map(|s| processes[s].as_u64().unwrap())
            .sum();
        assert_eq!(f[0], view["name"].as_str().unwrap(), "{line}");
        assert_eq!(f[1], view["min"].to_string(), "{line}");
        assert_eq!(f[2], view["max"].to_string(), "{line}");
        assert_eq!(f[3], total.to_string(), "{line}");
        assert_eq!(epoch(&f[4]), view["lastrun"].as_i64().unwrap(), "{line}");
        assert_eq!(epoch(&f[5]), view["lasterror"].as_i64().unwrap(), "{line}");
    }
    assert!(console[0].ends_with("ERROR: no good"), "{}", console[0]);

    let ps: Vec<Vec<String>> = ps.iter().skip(1).map(|l| status_fields(l)).collect();
    let processes = status["processes"].as_array().unwrap();
    assert_eq!(ps.len(), processes.len());
    for (row, view) in ps.iter().zip(processes) {
        assert_eq!(row[0], view["pid"].to_string());
        assert_eq!(row[1], view["job"].as_str().unwrap());
        assert_eq!(row[2], view["state"].as_str().unwrap());
        assert_eq!(row[3], view["jobs"].to_string());
        assert!(view["uptime"].as_f64().unwrap() >= 0.0);
        assert!(view["rss"].as_u64().unwrap() > 0, "{view}");
        if view["state"] == "busy" {
            assert_eq!(view["function"], "T::W::pair");
            assert!(view["busy_for"].as_f64().unwrap() >= 0.0);
        } else {
            assert!(view["function"].is_null() && view["busy_for"].is_null());
        }
    }
    // CPU is sampled each interval: every process has a figure soon.
    wait_for(LONG, "CPU figures", || {
        let status = http::get(&url).json();
        status["processes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["cpu"].as_f64().is_some_and(|c| c >= 0.0))
            .then_some(())
    });
}

/// `/api/status` answers are shared for a moment, but never across a
/// change: a limit set through the console shows in the very next read.
#[test]
fn a_change_through_the_console_shows_in_the_next_status_read() {
    let gearmand = Gearmand::start();
    let lib = one_job_lib("a", 0, 1);
    let driver = http::start_driver(&lib, &gearmand, "T", &["--interval", "30"]);
    let url = format!("{}/api/status", http::base_url(&driver));
    let max = || {
        job(&http::get(&url).json(), "T::W::a")["max"]
            .as_u64()
            .unwrap()
    };
    for n in 2..6 {
        assert_eq!(max(), n - 1);
        let set = format!("set_max_processes T::W::a {n}");
        assert_eq!(driver.console(&set), ["OK"]);
        assert_eq!(max(), n, "the read right after `{set}`");
    }
}

#[test]
fn healthz_is_503_while_shutting_down_until_the_supervisor_exits() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    let release = lib.path().join("release");
    lib.file(
        "T/W.toml",
        &format!(
            "command = [\"python3\", \"w.py\"]\nenv = {{ RELEASE = \"{}\" }}\n[jobs.hold]\n",
            release.display()
        ),
    );
    lib.file(
        "T/w.py",
        &python_worker("while not os.path.exists(os.environ[\"RELEASE\"]):\n    time.sleep(0.05)"),
    );
    let mut driver = http::start_driver(&lib, &gearmand, "T", &["--shutdown-timeout", "120"]);
    let base = http::base_url(&driver);
    let healthz = format!("{base}/healthz");
    let reply = http::get(&healthz);
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok\n"));

    submit_background(&gearmand, "T::W::hold", &[b"x"]);
    wait_for(LONG, "the job to run", || {
        let status = http::get(&format!("{base}/api/status")).json();
        (job(&status, "T::W::hold")["processes"]["busy"] == 1).then_some(())
    });
    unsafe { libc::kill(driver.pid() as i32, libc::SIGTERM) };
    // The job in flight keeps the supervisor shutting down.
    wait_for(LONG, "/healthz to say 503", || {
        let reply = http::get(&healthz);
        (reply.status == 503).then_some(reply)
    });
    // The status view is served during the shutdown too (fresh within
    // the coalescing window).
    wait_for(LONG, "the process to show as stopping", || {
        let status = http::get(&format!("{base}/api/status"));
        assert_eq!(status.status, 200);
        (job(&status.json(), "T::W::hold")["processes"]["stopping"] == 1).then_some(())
    });
    assert_eq!(http::get(&healthz).status, 503);
    std::fs::write(&release, "").unwrap();
    let mut child = driver.child.take().unwrap();
    let exit = wait_for(LONG, "the driver to exit", || child.try_wait().unwrap());
    assert!(exit.success(), "clean exit after the job: {exit}");
}

#[test]
fn write_endpoints_are_routed_and_refused_without_a_token() {
    let gearmand = Gearmand::start();
    let lib = one_job_lib("a", 1, 2);
    let driver = http::start_driver(&lib, &gearmand, "T", &[]);
    let base = http::base_url(&driver);
    driver.wait_processes("T::W::a", 1, LONG);
    let pid = driver.pids("T::W::a")[0];

    let writes = [
        "/api/jobs/T::W::a/processes".to_string(),
        "/api/jobs/T%3A%3AW%3A%3Aa/processes".to_string(),
        "/api/jobs/nope/processes".to_string(),
        "/api/jobs/T::W::a/killall".to_string(),
        format!("/api/processes/{pid}/kill"),
        "/api/processes/ten/kill".to_string(),
        "/api/reload".to_string(),
    ];
    for path in &writes {
        for body in ["", r#"{"min": 2, "max": 2}"#, "not json"] {
            let reply = http::post(&format!("{base}{path}"), body);
            assert_eq!(reply.status, 403, "POST {path} {body:?}: {reply:?}");
            let error = reply.json()["error"].as_str().unwrap().to_string();
            assert!(error.contains("admin_token_file"), "{error}");
            assert!(error.contains("Authorization: Bearer"), "{error}");
        }
        let reply = http::get(&format!("{base}{path}"));
        assert_eq!(reply.status, 405, "GET {path}");
    }
    // Nothing changed, nothing was killed.
    assert_eq!(driver.pids("T::W::a"), vec![pid]);
    let line = driver.status_line("T::W::a");
    assert_eq!(&status_fields(&line)[1..3], ["1", "2"]);

    // `/` is the dashboard (tests/dashboard.rs); nothing else is there.
    for path in ["/index.html", "/api", "/api/jobs/T::W::a", "/metrics/x"] {
        assert_eq!(http::get(&format!("{base}{path}")).status, 404, "{path}");
    }
    for path in ["/metrics", "/api/status", "/healthz"] {
        let reply = http::request(
            "GET",
            &format!("{base}{path}"),
            &[("Origin", "http://elsewhere.example")],
            "",
        );
        assert_eq!(reply.status, 200, "{path}");
        assert!(
            !reply
                .headers
                .iter()
                .any(|(n, _)| n.starts_with("access-control-")),
            "no CORS headers on {path}: {:?}",
            reply.headers
        );
        assert_eq!(
            http::post(&format!("{base}{path}"), "").status,
            405,
            "POST {path}"
        );
    }
    let metrics = http::get(&format!("{base}/metrics"));
    assert_eq!(
        metrics.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(metrics.body.ends_with("# EOF\n"));
}

#[test]
fn a_taken_http_port_fails_start_up_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let lib = Lib::new();
    lib.file("T/W.toml", &worker_file("[jobs.a]\n"));
    lib.file("T/w.py", &python_worker(""));
    // driveshaft's spelling of the flag.
    let out = Command::new(env!("CARGO_BIN_EXE_gearman-driver"))
        .arg("--lib")
        .arg(lib.path())
        .args(["--namespaces", "T", "--console-port", "0"])
        .args(["--exporter_addr", &addr])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr} for HTTP")),
        "{stderr}"
    );
    assert!(stderr.contains("http_bind"), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_gearman-driver"))
        .args(["check", "--namespaces", "T", "--http-bind", "127.0.0.1"])
        .arg("--lib")
        .arg(lib.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("http_bind"), "{stderr}");
    assert!(stderr.contains("not ADDR:PORT"), "{stderr}");
}

/// Lets this test process hold a thousand sockets.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max.min(65536);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

/// True once the server has closed `stream` (EOF or reset), within `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn hostile_http_clients_cost_only_their_own_connections() {
    raise_fd_limit();
    let gearmand = Gearmand::start();
    let lib = one_job_lib("echo", 1, 1);
    let driver = http::start_driver(&lib, &gearmand, "T", &[]);
    let base = http::base_url(&driver);
    let authority = base.trim_start_matches("http://").to_string();
    driver.wait_processes("T::W::echo", 1, LONG);

    // A thousand connections that never send a byte.
    let silent: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(&authority).expect("connect"))
        .collect();
    // A request head that never ends: one header line every second.
    let mut dribbling = TcpStream::connect(&authority).unwrap();
    dribbling.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    let dribble = std::thread::spawn({
        let mut stream = dribbling.try_clone().unwrap();
        move || {
            for i in 0..60 {
                if stream
                    .write_all(format!("X-{i}: y\r\n").as_bytes())
                    .is_err()
                {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    });
    // A body that never comes.
    let mut no_body = TcpStream::connect(&authority).unwrap();
    no_body
        .write_all(b"POST /api/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{")
        .unwrap();
    // Ten thousand headers.
    let mut headers = TcpStream::connect(&authority).unwrap();
    let mut head = String::from("GET /metrics HTTP/1.1\r\nHost: x\r\n");
    for i in 0..10_000 {
        head.push_str(&format!("X-{i}: y\r\n"));
    }
    head.push_str("\r\n");
    let _ = headers.write_all(head.as_bytes());

    // Meanwhile: jobs round-trip, the console answers, HTTP answers.
    for i in 0..5 {
        let asked = Instant::now();
        let status = driver.console("status");
        assert!(status[0].starts_with("T::W::echo"), "{status:?}");
        let took = asked.elapsed();
        assert!(took < Duration::from_secs(5), "console took {took:?}");
        let payload = format!("job{i}");
        let reply = submit(&gearmand, "T::W::echo", payload.as_bytes());
        let expected: Vec<u8> = payload.bytes().rev().collect();
        assert_eq!(reply.result.as_deref(), Some(&expected[..]));
    }
    assert_eq!(http::get(&format!("{base}/healthz")).status, 200);
    assert_eq!(http::get(&format!("{base}/api/status")).status, 200);

    // The ten thousand headers are refused (431) and the connection closed.
    let mut answer = String::new();
    headers
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = headers.read_to_string(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer:?}"
    );
    // Silent and dribbling heads are closed after the header timeout, the
    // missing body after the request deadline.
    let mut first = silent.into_iter().next().unwrap();
    assert!(closed_within(&mut first, Duration::from_secs(40)));
    assert!(closed_within(&mut dribbling, Duration::from_secs(40)));
    assert!(closed_within(&mut no_body, Duration::from_secs(40)));
    dribble.join().unwrap();
    let status = driver.console("status");
    assert!(status[0].starts_with("T::W::echo"));
}

#[test]
fn timeouts_are_counted_as_timeouts_for_stdio_and_exec() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file(
        "T/W.toml",
        &worker_file("[jobs.slow]\ntimeout = 1\nmin_processes = 1\n"),
    );
    lib.file("T/w.py", &python_worker("time.sleep(30)"));
    lib.file(
        "T/X.toml",
        "command = \"./slow.sh\"\nprotocol = \"exec\"\n[jobs.slow]\ntimeout = 1\nmin_processes = 1\n",
    );
    lib.file("T/slow.sh", "#!/bin/sh\nsleep 30\n");
    let driver = http::start_driver(&lib, &gearmand, "T", &[]);
    let base = http::base_url(&driver);
    for job in ["T::W::slow", "T::X::slow"] {
        driver.wait_processes(job, 1, LONG);
        assert_eq!(submit(&gearmand, job, b"x").result, None, "{job}");
    }
    wait_for(LONG, "both timeouts in /api/status and /metrics", || {
        let status = http::get(&format!("{base}/api/status")).json();
        let metrics = http::get(&format!("{base}/metrics")).body;
        ["T::W::slow", "T::X::slow"]
            .iter()
            .all(|name| {
                let view = job(&status, name);
                let series = format!(
                    "gearman_driver_jobs_total{{job=\"{name}\",function=\"{name}\",outcome=\"timeout\"}}"
                );
                view["timeouts"] == 1
                    && view["failed"] == 0
                    && http::sample(&metrics, &series) == Some(1.0)
            })
            .then_some(())
    });
}
