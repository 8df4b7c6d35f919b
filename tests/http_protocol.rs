//! The `http` protocol against real HTTP servers: PHP's built-in web server
//! serving an endpoint in driveshaft's format, and a fault endpoint of our
//! own. Every answer is read back through a real gearmand client.

mod common;
#[path = "support/endpoints.rs"]
mod endpoints;
#[path = "support/http.rs"]
mod http;

use common::*;
use endpoints::{FaultEndpoint, Mode, PhpEndpoint};
use std::time::{Duration, Instant};

fn http_worker(url: &str, extra: &str, jobs: &str) -> String {
    format!("protocol = \"http\"\nurl = \"{url}\"\n{extra}\n{jobs}")
}

fn submit_unique(gearmand: &Gearmand, function: &str, unique: &[u8], payload: &[u8]) -> JobReply {
    let addr = gearmand.addr();
    let (unique, payload) = (unique.to_vec(), payload.to_vec());
    let function = function.to_string();
    block_on(Duration::from_secs(60), async move {
        let mut c = Client::connect(&addr).await.unwrap();
        c.submit(&function, &unique, payload).await.unwrap()
    })
}

/// `(..) [job] Slot 3 ended` lines in the log.
fn slots_ended(driver: &Driver) -> usize {
    driver
        .log_text()
        .lines()
        .filter(|l| l.contains("] Slot ") && l.ends_with(" ended"))
        .count()
}

fn text(reply: &JobReply) -> Option<String> {
    reply
        .result
        .as_deref()
        .map(|r| String::from_utf8_lossy(r).into_owned())
}

fn warnings(reply: &JobReply) -> Vec<String> {
    reply
        .warnings
        .iter()
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect()
}

#[test]
fn a_php_endpoint_in_driveshafts_format_runs_jobs_as_json_and_as_a_form() {
    let gearmand = Gearmand::start();
    let php = PhpEndpoint::start();
    let lib = Lib::new();
    let jobs = "[jobs.Sum]\n[jobs.Echo]\n[jobs.Reverse]\n[jobs.Fail]\n";
    lib.file(
        "H/Json.toml",
        &http_worker(
            &php.url(),
            "headers = { Authorization = \"Bearer s3cret\" }",
            jobs,
        ),
    );
    lib.file(
        "H/Form.toml",
        &http_worker(&php.url(), "request_format = \"form\"", jobs),
    );
    let driver = Driver::start(&lib, &gearmand, "H", &["--interval", "0.5"]);

    for module in ["H::Json", "H::Form"] {
        let reply = submit(&gearmand, &format!("{module}::Sum"), b"[1,2]");
        assert_eq!(text(&reply).as_deref(), Some("3"), "{module}");

        let function = format!("{module}::Echo");
        let reply = submit_unique(&gearmand, &function, b"57a7b604-u", b"[1,2]");
        let echoed: serde_json::Value =
            serde_json::from_str(&text(&reply).expect("Echo completes")).unwrap();
        let format = if module == "H::Json" { "json" } else { "form" };
        assert_eq!(echoed["format"], format);
        assert_eq!(echoed["function_name"], function.as_str());
        assert_eq!(echoed["unique"], "57a7b604-u");
        assert_eq!(echoed["workload"], "[1,2]");
        let handle = echoed["job_handle"].as_str().unwrap();
        assert!(handle.starts_with("H:"), "a gearmand job handle: {handle}");
        let auth = (module == "H::Json").then_some("Bearer s3cret");
        assert_eq!(echoed["authorization"].as_str(), auth, "headers are sent");

        // Bytes that are not UTF-8 travel as workload_base64 (JSON) or raw
        // (form), and come back through response_base64.
        let bytes = b"\xff\x00binary\xfe";
        let reply = submit(&gearmand, &format!("{module}::Reverse"), bytes);
        let mut reversed = bytes.to_vec();
        reversed.reverse();
        assert_eq!(reply.result.as_deref(), Some(&reversed[..]), "{module}");

        let reply = submit(&gearmand, &format!("{module}::Fail"), b"etsy");
        assert_eq!(reply.result, None, "non-zero gearman_ret fails the job");
        assert_eq!(warnings(&reply), vec!["no such shop: etsy"]);
        let line = driver.status_line(&format!("{module}::Fail"));
        assert!(line.ends_with("ERROR: no such shop: etsy"), "{line}");
    }
}

#[test]
fn endpoint_failures_fail_the_job_with_what_came_back_and_the_slot_goes_on() {
    let gearmand = Gearmand::start();
    let endpoint = FaultEndpoint::start(Mode::Serve);
    let lib = Lib::new();
    lib.file(
        "F/W.toml",
        &http_worker(&endpoint.url(), "", "[jobs.f]\ntimeout = 1\n"),
    );
    let driver = Driver::start(&lib, &gearmand, "F", &["--interval", "0.5"]);
    let job = "F::W::f";

    let reply = submit(&gearmand, job, b"status:500");
    assert_eq!(reply.result, None);
    assert_eq!(warnings(&reply), vec!["HTTP 500: <h1>boom</h1>"]);
    assert!(driver
        .status_line(job)
        .ends_with("ERROR: HTTP 500: <h1>boom</h1>"));

    let reply = submit(&gearmand, job, b"garbage");
    assert_eq!(reply.result, None);
    let warning = &warnings(&reply)[0];
    assert!(warning.starts_with("bad response: not JSON"), "{warning}");
    assert!(warning.ends_with("body: this is not json"), "{warning}");

    let slots_before = driver.console("ps");
    let started = Instant::now();
    let reply = submit(&gearmand, job, b"sleep:30000:late");
    assert_eq!(reply.result, None, "a job over its timeout fails");
    assert_eq!(warnings(&reply), vec!["timeout after 1s"]);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(driver.status_line(job).ends_with("ERROR: timeout after 1s"));

    // The same slot goes on with the next job.
    let reply = submit(&gearmand, job, b"still here");
    assert_eq!(text(&reply).as_deref(), Some("ereh llits"));
    let slots_after = driver.console("ps");
    assert_eq!(
        slots_before[1]
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>(),
        vec!["-", job],
        "ps lists the slot with PID -: {slots_before:?}"
    );
    assert_eq!(slots_before.len(), slots_after.len());
    assert_eq!(
        slots_ended(&driver),
        0,
        "no slot ended:\n{}",
        driver.log_text()
    );
}

#[test]
fn keep_alive_connections_are_reused_from_job_to_job() {
    let gearmand = Gearmand::start();
    let endpoint = FaultEndpoint::start(Mode::Serve);
    let lib = Lib::new();
    lib.file("K/W.toml", &http_worker(&endpoint.url(), "", "[jobs.k]\n"));
    let _driver = Driver::start(&lib, &gearmand, "K", &[]);
    for i in 0..40 {
        let payload = format!("job {i}");
        let reply = submit(&gearmand, "K::W::k", payload.as_bytes());
        let expected: String = payload.chars().rev().collect();
        assert_eq!(text(&reply), Some(expected));
    }
    assert_eq!(endpoint.requests(), 40);
    assert_eq!(
        endpoint.connections(),
        1,
        "40 jobs of one slot over one connection"
    );
}

/// Foreground jobs submitted now, answered whenever the driver gets to them.
fn submit_in_background(
    gearmand: &Gearmand,
    function: &str,
    payloads: &[&str],
) -> Vec<std::thread::JoinHandle<JobReply>> {
    payloads
        .iter()
        .map(|p| {
            let (addr, function, p) = (gearmand.addr(), function.to_string(), p.to_string());
            std::thread::spawn(move || {
                block_on(Duration::from_secs(120), async move {
                    let mut c = Client::connect(&addr).await.unwrap();
                    c.submit(&function, b"", p.into_bytes()).await.unwrap()
                })
            })
        })
        .collect()
}

fn queued(gearmand: &Gearmand, function: &str) -> u64 {
    gearmand
        .status()
        .iter()
        .find(|r| r.0 == function)
        .map_or(0, |r| r.1)
}

#[test]
fn an_unreachable_endpoint_hands_jobs_back_backs_off_and_recovers() {
    let gearmand = Gearmand::start();
    let mut refusing = FaultEndpoint::down();
    let hanging_up = FaultEndpoint::start(Mode::HangUp);
    let lib = Lib::new();
    lib.file(
        "D/Refused.toml",
        &http_worker(&refusing.url(), "", "[jobs.r]\nmax_processes = 2\n"),
    );
    lib.file(
        "D/HungUp.toml",
        &http_worker(&hanging_up.url(), "", "[jobs.h]\nmax_processes = 2\n"),
    );
    let driver = Driver::start(&lib, &gearmand, "D", &["--interval", "0.5"]);

    let refused = submit_in_background(&gearmand, "D::Refused::r", &["one", "two", "three"]);
    let hung_up = submit_in_background(&gearmand, "D::HungUp::h", &["four", "five"]);
    for (job, cause) in [
        ("D::Refused::r", "Connection refused"),
        ("D::HungUp::h", "connection closed before an answer"),
    ] {
        let line = wait_for(Duration::from_secs(20), "the error in status", || {
            let line = driver.status_line(job);
            line.contains(cause).then_some(line)
        });
        assert!(line.contains("ERROR: endpoint unreachable: "), "{line}");
    }
    // Slots back off as in a crash loop, and nothing is failed or lost:
    // gearmand still holds every job.
    driver.wait_log("next start in 2s", Duration::from_secs(20));
    assert_eq!(queued(&gearmand, "D::Refused::r"), 3);
    assert_eq!(queued(&gearmand, "D::HungUp::h"), 2);
    // The backoff line may be the refused job's: wait for the hung-up job's
    // own retry rather than assume both got that far together.
    wait_for(
        Duration::from_secs(20),
        "the hang-ups to be retried",
        || (hanging_up.connections() >= 2).then_some(()),
    );
    assert_eq!(hanging_up.requests(), 0);

    refusing.come_up();
    hanging_up.set_mode(Mode::Serve);
    let mut answers: Vec<String> = refused
        .into_iter()
        .chain(hung_up)
        .map(|t| text(&t.join().unwrap()).expect("completed once the endpoint is back"))
        .collect();
    answers.sort();
    assert_eq!(answers, vec!["eerht", "eno", "evif", "owt", "ruof"]);
    assert_eq!(queued(&gearmand, "D::Refused::r"), 0);
}

#[test]
fn https_endpoints_are_verified_against_the_system_root_certificates() {
    let gearmand = Gearmand::start();
    let endpoint = FaultEndpoint::start_tls();
    let lib = Lib::new();
    lib.file("S/W.toml", &http_worker(&endpoint.url(), "", "[jobs.s]\n"));
    let job = "S::W::s";

    // The endpoint's CA is in no system's root store: its certificate is
    // refused, and the job waits in gearmand rather than fail.
    let mut untrusting = Driver::start(&lib, &gearmand, "S", &[]);
    let reply = submit_in_background(&gearmand, job, &["secure"]);
    let line = wait_for(Duration::from_secs(20), "the refusal in status", || {
        let line = untrusting.status_line(job);
        line.contains("invalid peer certificate").then_some(line)
    });
    assert!(
        line.contains("ERROR: endpoint unreachable: cannot connect: "),
        "{line}"
    );
    assert!(endpoint.connections() >= 1, "the handshake was tried");
    assert_eq!(endpoint.requests(), 0, "nothing was sent unverified");
    assert_eq!(queued(&gearmand, job), 1);
    assert!(untrusting.terminate(Duration::from_secs(30)).success());

    // SSL_CERT_FILE adds the CA to the system's roots, as for openssl.
    let ca = FaultEndpoint::tls_ca_file();
    let _trusting = Driver::start_with_env(
        &lib,
        &gearmand.addr(),
        "S",
        &[],
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    );
    let reply = reply.into_iter().next().unwrap().join().unwrap();
    assert_eq!(
        text(&reply).as_deref(),
        Some("eruces"),
        "answered over https"
    );
    assert_eq!(endpoint.requests(), 1);
}

#[test]
fn slots_scale_between_min_and_max_with_the_queue() {
    let gearmand = Gearmand::start();
    let endpoint = FaultEndpoint::start(Mode::Serve);
    let lib = Lib::new();
    lib.file(
        "S/W.toml",
        &http_worker(
            &endpoint.url(),
            "",
            "[jobs.s]\nmin_processes = 1\nmax_processes = 4\n",
        ),
    );
    let driver = Driver::start(
        &lib,
        &gearmand,
        "S",
        &["--interval", "0.3", "--max-idle-time", "1"],
    );
    let job = "S::W::s";
    driver.wait_processes(job, 1, Duration::from_secs(10));
    assert_eq!(
        driver.console(&format!("show {job}")).len(),
        1,
        "show prints the status line only: slots have no PID"
    );
    let payloads: Vec<String> = (0..24).map(|i| format!("sleep:300:job{i}")).collect();
    let refs: Vec<&str> = payloads.iter().map(String::as_str).collect();
    let clients = submit_in_background(&gearmand, job, &refs);
    wait_for(Duration::from_secs(10), "the jobs to be queued", || {
        (queued(&gearmand, job) > 0).then_some(())
    });
    let peak = drain_watching_peak(&driver, &gearmand, job, 4, Duration::from_secs(60));
    assert_eq!(peak, 4, "scaled to max");
    let mut answers: Vec<String> = clients
        .into_iter()
        .map(|c| text(&c.join().unwrap()).expect("every job completes"))
        .collect();
    answers.sort();
    let mut expected: Vec<String> = (0..24)
        .map(|i| format!("job{i}").chars().rev().collect())
        .collect();
    expected.sort();
    assert_eq!(answers, expected);
    driver.wait_processes(job, 1, Duration::from_secs(15));

    // killall stops the slots; the job is brought back to its min.
    let started = |d: &Driver| {
        d.log_text()
            .lines()
            .filter(|l| l.contains("] Slot ") && l.ends_with(" started"))
            .count()
    };
    let before = started(&driver);
    assert_eq!(driver.console(&format!("killall {job}")), vec!["OK"]);
    wait_for(Duration::from_secs(10), "the slot to end", || {
        (slots_ended(&driver) > 0).then_some(())
    });
    wait_for(Duration::from_secs(10), "a replacement slot", || {
        (started(&driver) > before).then_some(())
    });
    driver.wait_processes(job, 1, Duration::from_secs(10));
    let reply = submit(&gearmand, job, b"again");
    assert_eq!(text(&reply).as_deref(), Some("niaga"));
    assert_eq!(
        driver.console("kill 1"),
        vec!["ERR invalid_value: the given PID(s) do not belong to us"]
    );
}

#[test]
fn process_keys_in_an_http_worker_file_are_errors() {
    let lib = Lib::new();
    let path = lib.file(
        "C/W.toml",
        "protocol = \"http\"\nurl = \"http://127.0.0.1:1/job\"\ncommand = \"./w\"\n[jobs.a]\nstart_timeout = 5\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gearman-driver"))
        .arg("check")
        .arg("--lib")
        .arg(lib.path())
        .args(["--namespaces", "C"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    for key in ["command", "jobs.a.start_timeout"] {
        assert!(
            err.lines().any(|l| l.contains(&file) && l.contains(key)),
            "{key} named with the file in:\n{err}"
        );
    }
    assert!(err.contains("line 3") || err.contains(":3:"), "{err}");
}

/// driveshaft's README example converts as published, and, pointed at a
/// real endpoint and gearmand, runs.
#[test]
fn the_driveshaft_readme_example_imports_and_runs() {
    let readme_example = r#"{
    "gearman_servers_list": [ "localhost" ],
    "pools_list": {
        "ShopStats": { "job_processing_uri": "http://localhost/job.php", "worker_count": 0, "jobs_list": [ "ShopStats" ] },
        "Newsfeed": { "job_processing_uri": "http://localhost/job.php", "worker_count": 0, "jobs_list": [ "Newsfeed" ] },
        "Regular": { "job_processing_uri": "http://localhost/job.php", "worker_count": 0, "jobs_list": [ "Sum3", "Sum", "Sum2" ] }
    }
}"#;
    let gearmand = Gearmand::start();
    let php = PhpEndpoint::start();
    let dir = tempfile::tempdir().unwrap();
    let import = |json: &str, out: &str| {
        let config = dir.path().join(format!("{out}.json"));
        std::fs::write(&config, json).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_gearman-driver"))
            .arg("import-driveshaft")
            .arg(&config)
            .arg("--out")
            .arg(dir.path().join(out))
            .output()
            .unwrap()
    };
    let out = import(readme_example, "as-published");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in ["Newsfeed", "Regular", "ShopStats", "Sum,Sum2,Sum3"] {
        assert!(stdout.contains(row), "{row} in:\n{stdout}");
    }
    let again = import(readme_example, "as-published");
    assert_eq!(again.status.code(), Some(1), "existing files are kept");

    let local = readme_example
        .replace("http://localhost/job.php", &php.url())
        .replace("\"localhost\"", &format!("\"{}\"", gearmand.addr()));
    assert!(import(&local, "local").status.success());
    let config = dir.path().join("local/driver.toml");
    let mut driver = Driver::start_with_config(&config);
    for (function, payload, expected) in [
        ("Sum", "[1,2]", "3"),
        ("Sum2", "[4,5,6]", "15"),
        ("Sum3", "[]", "0"),
        ("ShopStats", "42", "ShopStats for 42"),
        ("Newsfeed", "7", "Newsfeed for 7"),
    ] {
        let reply = submit(&gearmand, function, payload.as_bytes());
        assert_eq!(text(&reply).as_deref(), Some(expected), "{function}");
    }
    let status = driver.console("status");
    assert!(
        status.iter().any(|l| l.starts_with("Regular ")),
        "{status:?}"
    );
    assert!(driver.terminate(Duration::from_secs(30)).success());
}

/// An http job in `/api/status` and `/metrics` like any other: its slots
/// (pid null), done/failed/timeouts, and the exits of killed slots.
#[test]
fn http_jobs_show_in_the_status_api_and_metrics_like_any_other() {
    let gearmand = Gearmand::start();
    let endpoint = FaultEndpoint::start(Mode::Serve);
    let lib = Lib::new();
    lib.file(
        "M/W.toml",
        &http_worker(
            &endpoint.url(),
            "",
            "[jobs.f]\nmin_processes = 1\nmax_processes = 2\ntimeout = 1\n",
        ),
    );
    let driver = http::start_driver(&lib, &gearmand, "M", &["--interval", "0.5"]);
    let base = http::base_url(&driver);
    let job = "M::W::f";
    driver.wait_processes(job, 1, Duration::from_secs(10));
    assert!(submit(&gearmand, job, b"ok").result.is_some());
    assert!(submit(&gearmand, job, b"status:500").result.is_none());
    assert!(submit(&gearmand, job, b"sleep:5000:late").result.is_none());
    assert_eq!(driver.console(&format!("killall {job}")), vec!["OK"]);

    let series = |outcome: &str| {
        format!(
            "gearman_driver_jobs_total{{job=\"{job}\",function=\"{job}\",outcome=\"{outcome}\"}}"
        )
    };
    let killed = format!("gearman_driver_process_exits_total{{job=\"{job}\",cause=\"killed\"}}");
    let (status, metrics) = wait_for(
        Duration::from_secs(20),
        "the http job in both views",
        || {
            let status = http::get(&format!("{base}/api/status")).json();
            let metrics = http::get(&format!("{base}/metrics")).body;
            let view = status["jobs"]
                .as_array()?
                .iter()
                .find(|j| j["name"] == job)?
                .clone();
            let counted = (&view["done"], &view["failed"], &view["timeouts"])
                == (&1.into(), &1.into(), &1.into());
            let exported = ["done", "failed", "timeout"]
                .iter()
                .all(|o| http::sample(&metrics, &series(o)) == Some(1.0))
                && http::sample(&metrics, &killed) == Some(1.0);
            let replaced = view["processes"]["idle"] == 1;
            (counted && exported && replaced).then_some((status, metrics))
        },
    );
    let slots: Vec<&serde_json::Value> = status["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["job"] == job)
        .collect();
    assert_eq!(slots.len(), 1, "{status}");
    assert!(slots[0]["pid"].is_null(), "a slot has no PID: {}", slots[0]);
    assert_eq!(slots[0]["state"], "idle");
    let idle = format!("gearman_driver_processes{{job=\"{job}\",state=\"idle\"}}");
    assert_eq!(http::sample(&metrics, &idle), Some(1.0), "{metrics}");
}
