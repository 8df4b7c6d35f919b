//! The dashboard in a real headless Chromium (see `support/browser.rs`),
//! against a real driver and gearmand: it loads with no error in the
//! browser's log and no request beyond the driver; a backlog shows up in
//! the waiting count and the chart and the processes rise, without a
//! reload; actions need the token, and with it change the limits (as the
//! console sees them) and show the driver's errors next to the control;
//! and 200 jobs with 1,000 processes update within bounds.
//!
//! `GEARMAN_DRIVER_SCREENSHOT=docs/dashboard.png cargo test --test
//! dashboard under_load -- --nocapture` also writes the README's
//! screenshot.

#[path = "support/browser.rs"]
mod browser;
mod common;
#[path = "support/http.rs"]
mod http;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use browser::{Browser, LogEntry};
use common::*;
use fantoccini::Locator;
use serde_json::Value;

const LONG: Duration = Duration::from_secs(60);
const TOKEN: &str = "dash-s3cret";

/// A stdio worker that takes `seconds` per job.
fn slow_worker(seconds: f64) -> String {
    python_worker(&format!("time.sleep({seconds})"))
}

fn worker_file(jobs: &str) -> String {
    format!("command = [\"python3\", \"w.py\"]\n{jobs}")
}

/// Errors and warnings in the browser's log.
fn problems(log: &[LogEntry]) -> Vec<&LogEntry> {
    log.iter()
        .filter(|e| e.level == "SEVERE" || e.level == "WARNING")
        .collect()
}

/// Opens `url` on a fresh page, with the browser's log of earlier pages
/// (a page whose driver has gone fails its polls) cleared.
fn open(b: &Browser, url: &str) {
    b.goto("about:blank");
    b.take_log();
    b.goto(url);
}

/// Waits until the page has updated `n` more times.
fn wait_updates(b: &Browser, n: u64) {
    let now = b.eval("return window.gdDashboard.stats().updates;");
    let target = now.as_u64().unwrap_or(0) + n;
    b.wait_for(
        LONG,
        "page updates",
        &format!("return window.gdDashboard.stats().updates >= {target};"),
    );
}

/// A cell of a job's row in the jobs table, by column class or position.
fn job_cell_script(job: &str, cell: usize) -> String {
    format!(
        "for (const tr of document.querySelectorAll('#jobs tbody tr')) {{ \
           if (tr.children[1].textContent === {job:?}) return tr.children[{cell}].textContent; }} \
         return null;"
    )
}

const WAITING_CELL: usize = 5;
const PROCESSES_CELL: usize = 4;

fn text_of(b: &Browser, id: &str) -> String {
    b.eval(&format!(
        "return document.getElementById({id:?}).textContent;"
    ))
    .as_str()
    .unwrap_or_default()
    .to_string()
}

fn token_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn limits_seen_by_console(port: u16, job: &str) -> (String, String) {
    let status = console_authed(port, Some(TOKEN), "status");
    let line = status.iter().find(|l| l.starts_with(job)).unwrap();
    let f: Vec<&str> = line.split_whitespace().collect();
    (f[1].to_string(), f[2].to_string())
}

#[test]
fn the_page_loads_offline_with_no_errors_and_says_how_to_enable_actions() {
    let b = browser::browser();
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker(""));
    lib.file(
        "T/W.toml",
        &worker_file("[jobs.a]\nmin_processes = 1\nmax_processes = 2\n"),
    );
    let driver = http::start_driver(&lib, &gearmand, "T", &["--interval", "0.5"]);
    let base = http::base_url(&driver);

    // Every part of the page comes from the driver, under a policy that
    // allows nothing else.
    for (path, kind) in [
        ("/", "text/html"),
        ("/assets/dashboard.js", "text/javascript"),
        ("/assets/dashboard.css", "text/css"),
        ("/assets/uPlot.iife.min.js", "text/javascript"),
        ("/assets/uPlot.min.css", "text/css"),
        ("/assets/icon.svg", "image/svg+xml"),
    ] {
        let reply = http::get(&format!("{base}{path}"));
        assert_eq!(reply.status, 200, "{path}");
        assert!(
            reply.header("content-type").unwrap().starts_with(kind),
            "{path}"
        );
        let csp = reply.header("content-security-policy").unwrap();
        assert!(
            csp.starts_with("default-src 'none'; script-src 'self';"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe") && !csp.contains("http"), "{csp}");
    }

    open(&b, &format!("{base}/"));
    b.wait_for(
        LONG,
        "the job's row",
        &job_cell_script("T::W::a", PROCESSES_CELL),
    );
    wait_updates(&b, 3);

    let log = b.take_log();
    assert!(problems(&log).is_empty(), "browser log: {log:#?}");
    let resources = b.eval(
        "return [location.href].concat(performance.getEntriesByType('resource').map(e => e.name));",
    );
    let resources: Vec<&str> = resources
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(resources.len() >= 6, "{resources:?}");
    for url in &resources {
        assert!(
            url.starts_with(&format!("{base}/")),
            "a request elsewhere: {url}"
        );
    }

    // The policy holds in the browser: a request elsewhere (a loopback
    // address of another origin) is blocked before it leaves, and logged.
    b.eval("fetch('http://127.0.0.2:9/x').catch(() => {}); return 1;");
    wait_for(Duration::from_secs(10), "the CSP violation", || {
        let log = b.take_log();
        log.iter()
            .any(|e| e.message.contains("Content Security Policy"))
            .then_some(())
    });

    // Read-only, and it says how to enable actions.
    assert_eq!(b.eval("return window.gdDashboard.writes();"), "disabled");
    let text = text_of(&b, "access-text");
    assert!(text.contains("admin_token_file"), "{text}");
    assert_eq!(
        b.eval("return document.body.classList.contains('actions-open');"),
        false
    );
    // The servers and the job are shown.
    let servers = text_of(&b, "servers");
    assert!(servers.contains(&gearmand.addr()), "{servers}");
    drop(driver);
}

#[test]
fn a_backlog_shows_up_in_the_count_and_the_chart_without_a_reload() {
    let b = browser::browser();
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", &slow_worker(1.5));
    lib.file(
        "T/W.toml",
        &worker_file("[jobs.slow]\nmin_processes = 0\nmax_processes = 2\n"),
    );
    let driver = http::start_driver(
        &lib,
        &gearmand,
        "T",
        &["--interval", "0.5", "--max-idle-time", "60"],
    );
    let base = http::base_url(&driver);
    let job = "T::W::slow";
    open(&b, &format!("{base}/"));
    b.wait_for(LONG, "the job's row", &job_cell_script(job, PROCESSES_CELL));
    wait_updates(&b, 2);
    // Gone if the page reloads.
    b.eval("window.sameDocument = true; return 1;");
    assert_eq!(
        b.eval(&job_cell_script(job, PROCESSES_CELL))
            .as_str()
            .unwrap(),
        "0"
    );

    let payloads: Vec<Vec<u8>> = (0..12).map(|i| format!("job{i}").into_bytes()).collect();
    let payloads: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
    submit_background(&gearmand, job, &payloads);

    let waiting = b.wait_for(
        LONG,
        "a waiting count in the job's row",
        &format!(
            "const t = (function () {{ {} }})(); return t && Number(t) > 0 ? Number(t) : null;",
            job_cell_script(job, WAITING_CELL)
        ),
    );
    assert!(waiting.as_u64().unwrap() <= 12, "{waiting}");
    b.wait_for(
        LONG,
        "the backlog in the waiting chart",
        &format!(
            "const v = window.gdDashboard.plotted('waiting', {job:?}); \
             return v && v.some(x => x > 0);"
        ),
    );
    b.wait_for(
        LONG,
        "two processes in the job's row",
        &format!(
            "const t = (function () {{ {} }})(); return t && t.startsWith('2');",
            job_cell_script(job, PROCESSES_CELL)
        ),
    );
    b.wait_for(
        LONG,
        "the processes chart to rise",
        &format!(
            "const v = window.gdDashboard.plotted('processes', {job:?}); \
             return v && v.some(x => x >= 1);"
        ),
    );
    b.wait_for(
        LONG,
        "a start for the backlog in the events",
        "return document.getElementById('events').textContent.includes('Process started for a backlog');",
    );
    assert_eq!(
        b.eval("return window.sameDocument === true;"),
        true,
        "no reload"
    );
    let log = b.take_log();
    assert!(problems(&log).is_empty(), "browser log: {log:#?}");
    drop(driver);
}

/// Types `text` into the element `css` (cleared first).
/// Replaces an input's text the way a person does: select all, then type,
/// in one focused gesture. (WebDriver's clear blurs the field, and the
/// page's once-a-second refresh may write the driver's value back into an
/// unfocused, untouched field before the typing starts.)
fn type_into(b: &Browser, css: &str, text: &str) {
    const SELECT_ALL: &str = "\u{E009}a\u{E000}";
    let (css, text) = (css.to_string(), format!("{SELECT_ALL}{text}"));
    b.run(LONG, |c| async move {
        let e = c.find(Locator::Css(&css)).await.expect("the input");
        e.send_keys(&text).await.unwrap();
    });
}

fn click(b: &Browser, css: &str) {
    let css = css.to_string();
    b.run(LONG, |c| async move {
        c.find(Locator::Css(&css))
            .await
            .expect("the control")
            .click()
            .await
            .unwrap();
    });
}

/// The CSS path of an element in a job's row; the page keeps rows in name
/// order, and this test has one job.
const ROW: &str = "#jobs tbody tr:first-child";

#[test]
fn actions_need_the_token_and_show_the_drivers_errors() {
    let b = browser::browser();
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker(""));
    lib.file(
        "T/W.toml",
        &worker_file("[jobs.a]\nmin_processes = 1\nmax_processes = 3\n"),
    );
    let driver = http::start_driver(
        &lib,
        &gearmand,
        "T",
        &[
            "--interval",
            "0.5",
            "--admin-token-file",
            token.to_str().unwrap(),
        ],
    );
    let port = driver.console_port;
    let base = http::base_url(&driver);
    let job = "T::W::a";
    open(&b, &format!("{base}/"));
    b.wait_for(LONG, "the job's row", &job_cell_script(job, PROCESSES_CELL));
    b.wait_for(
        LONG,
        "the access check",
        "return window.gdDashboard.writes() === 'locked';",
    );

    // Read-only: the controls are hidden, the page says what to do, and a
    // write without the token is refused.
    let text = text_of(&b, "access-text");
    assert!(text.contains("Enter the admin token"), "{text}");
    assert_eq!(
        b.eval(&format!(
            "return getComputedStyle(document.querySelector('{ROW} td.action')).display;"
        )),
        "none"
    );
    let status = b.wait_for(
        LONG,
        "a write without the token",
        &format!(
            "if (window.refused === undefined) {{ window.refused = null; \
               fetch('/api/jobs/{job}/processes', {{method: 'POST', body: '{{\"min\": 2}}'}}) \
                 .then(r => {{ window.refused = r.status; }}); }} \
             return window.refused;"
        ),
    );
    assert_eq!(status, 401);
    assert_eq!(limits_seen_by_console(port, job), ("1".into(), "3".into()));

    // A wrong token is turned away, with the driver's reason.
    type_into(&b, "#token", "not-the-token");
    click(&b, "#token-form button");
    let err = b.wait_for(
        LONG,
        "the wrong token's error",
        "const t = document.getElementById('token-err').textContent; return t || null;",
    );
    assert!(err.as_str().unwrap().contains("wrong token"), "{err}");
    assert_eq!(b.eval("return window.gdDashboard.writes();"), "locked");

    // The right token: the controls appear and set the limits.
    type_into(&b, "#token", TOKEN);
    click(&b, "#token-form button");
    b.wait_for(
        LONG,
        "the actions",
        "return document.body.classList.contains('actions-open');",
    );
    type_into(&b, &format!("{ROW} td.action input:nth-of-type(1)"), "2");
    type_into(&b, &format!("{ROW} td.action input:nth-of-type(2)"), "4");
    click(&b, &format!("{ROW} button.set"));
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let limits = limits_seen_by_console(port, job);
        if limits == ("2".into(), "4".into()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the console still sees {limits:?}; the row's error says {}",
            b.eval(&format!(
                "return document.querySelector('{ROW} td.action .err').textContent;"
            ))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    b.wait_for(
        LONG,
        "the new limits in the row",
        &format!(
            "const r = document.querySelector('{ROW}'); \
             return r.children[2].textContent === '2' && r.children[3].textContent === '4';"
        ),
    );

    // min > max: the console's error, next to the control.
    type_into(&b, &format!("{ROW} td.action input:nth-of-type(1)"), "9");
    type_into(&b, &format!("{ROW} td.action input:nth-of-type(2)"), "1");
    click(&b, &format!("{ROW} button.set"));
    let shown = b.wait_for(
        LONG,
        "the error next to the control",
        &format!("const t = document.querySelector('{ROW} td.action .err').textContent; return t || null;"),
    );
    let console_err = console_authed(port, Some(TOKEN), &format!("set_processes {job} 9 1"));
    assert_eq!(
        shown.as_str().unwrap(),
        console_err[0],
        "as the console says it"
    );
    assert_eq!(limits_seen_by_console(port, job), ("2".into(), "4".into()));

    // Kill a process from its row: it goes, and the events say so.
    let pids = console_authed(port, Some(TOKEN), &format!("show {job}"));
    let pid: u32 = pids[1].trim().parse().unwrap();
    b.wait_for(
        LONG,
        "the process's row",
        &format!(
            "return [...document.querySelectorAll('#procs tbody tr')].some(tr => tr.children[0].textContent === '{pid}');"
        ),
    );
    b.eval(&format!(
        "for (const tr of document.querySelectorAll('#procs tbody tr')) \
           if (tr.children[0].textContent === '{pid}') tr.querySelector('button').click(); \
         return 1;"
    ));
    wait_for(LONG, "the killed process to go", || {
        (!pid_alive(pid)).then_some(())
    });
    b.wait_for(
        LONG,
        "the kill in the events",
        &format!("return document.getElementById('events').textContent.includes('({pid}): ');"),
    );

    // Reload from the page.
    click(&b, "#reload");
    b.wait_for(
        LONG,
        "the reload's answer",
        "return document.getElementById('reload-ok').textContent || null;",
    );
    driver.wait_log("reload -> OK", LONG);
    let log = driver.log_text();
    assert!(
        log.lines().any(|l| l.contains("http 127.0.0.1:")
            && l.contains(&format!("set_processes {job} 2 4 -> OK"))),
        "audit line for the page's write:\n{log}"
    );
    // The refused writes logged failed loads; nothing else went wrong.
    let log = b.take_log();
    let unexpected: Vec<&LogEntry> = problems(&log)
        .into_iter()
        .filter(|e| {
            !(e.source == "network" && (e.message.contains("401") || e.message.contains("422")))
        })
        .collect();
    assert!(unexpected.is_empty(), "browser log: {unexpected:#?}");
}

/// 200 jobs of 5 processes each; prints the page's update times.
#[test]
fn two_hundred_jobs_and_a_thousand_processes_stay_responsive() {
    let b = browser::browser();
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    let mut jobs = String::from(
        "command = [\"/bin/sh\", \"-c\", \"echo READY; while read -r _; do :; done\"]\n",
    );
    for i in 0..200 {
        jobs.push_str(&format!(
            "[jobs.j{i:03}]\nmin_processes = 5\nmax_processes = 5\n"
        ));
    }
    lib.file("Big/W.toml", &jobs);
    let driver = http::start_driver(&lib, &gearmand, "Big", &["--interval", "1"]);
    let base = http::base_url(&driver);
    wait_for(Duration::from_secs(120), "1,000 idle processes", || {
        let status = http::get(&format!("{base}/api/status")).json();
        let idle = status["processes"]
            .as_array()?
            .iter()
            .filter(|p| p["state"] == "idle")
            .count();
        (idle == 1000).then_some(())
    });
    open(&b, &format!("{base}/"));
    b.wait_for(
        LONG,
        "1,000 process rows",
        "return document.getElementById('proc-count').textContent === '1000' \
           && document.querySelectorAll('#jobs tbody tr').length === 200;",
    );
    wait_updates(&b, 15);
    let stats = b.eval("return window.gdDashboard.stats();");
    eprintln!("{stats}");
    let status_bytes = http::get(&format!("{base}/api/status")).body.len();
    let charted = b.eval("return window.gdDashboard.charted();");
    let jobs: Vec<String> = charted
        .as_array()
        .unwrap()
        .iter()
        .map(|j| format!("job={}", j.as_str().unwrap()))
        .collect();
    let history = http::get(&format!("{base}/api/history?{}", jobs.join("&")));
    let last = history.json()["times"]
        .as_array()
        .unwrap()
        .last()
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let tail = http::get(&format!(
        "{base}/api/history?{}&after={}",
        jobs.join("&"),
        last - 1.5
    ));
    eprintln!(
        "200 jobs, 1,000 processes: {} updates; first {:.1} ms, then mean {:.1} ms, max {:.1} ms; \
         fetch {:.1} ms; /api/status {} bytes, full history {} bytes, a poll's history {} bytes",
        stats["updates"],
        stats["firstMs"].as_f64().unwrap(),
        stats["meanMs"].as_f64().unwrap(),
        stats["maxMs"].as_f64().unwrap(),
        stats["lastFetchMs"].as_f64().unwrap(),
        status_bytes,
        history.body.len(),
        tail.body.len(),
    );
    assert_eq!(stats["failures"], 0, "{stats}");
    assert!(
        stats["maxMs"].as_f64().unwrap() < 500.0,
        "an update froze the page: {stats}"
    );
    assert!(stats["firstMs"].as_f64().unwrap() < 3000.0, "{stats}");
    assert!(tail.body.len() < 64 * 1024, "a poll's history stays small");
    let log = b.take_log();
    assert!(problems(&log).is_empty(), "browser log: {log:#?}");
}

/// Several jobs, a backlog, busy processes: the page shows them all; with
/// `GEARMAN_DRIVER_SCREENSHOT` set, writes a PNG of it there.
#[test]
fn under_load_the_page_shows_busy_jobs() {
    let b = browser::browser();
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file(
        "Shop/w.py",
        &python_worker(
            "time.sleep(0.05 + (len(data) % 7) * 0.05)\n\
             if data.endswith(b\"13\"):\n    frame(b\"FAIL\", b\"card declined by the test gateway\")\n    continue",
        ),
    );
    lib.file(
        "Shop/Orders.toml",
        &worker_file(
            "[jobs.resize_image]\nmin_processes = 1\nmax_processes = 6\n\
             [jobs.send_email]\nmin_processes = 2\nmax_processes = 4\n\
             [jobs.charge_card]\nmin_processes = 1\nmax_processes = 3\n\
             [jobs.build_report]\nmin_processes = 0\nmax_processes = 2\n\
             [jobs.sync_inventory]\nmin_processes = 1\nmax_processes = 2\n",
        ),
    );
    let driver = http::start_driver(
        &lib,
        &gearmand,
        "Shop",
        &["--interval", "1", "--max-idle-time", "30"],
    );
    let base = http::base_url(&driver);
    open(&b, &format!("{base}/"));
    b.wait_for(
        LONG,
        "the jobs",
        "return document.querySelectorAll('#jobs tbody tr').length === 5;",
    );
    // A burst every second: a few are enough for a backlog; the screenshot
    // gets 20 seconds of history in its charts.
    let screenshot = std::env::var("GEARMAN_DRIVER_SCREENSHOT").ok();
    let rounds = if screenshot.is_some() { 20 } else { 4 };
    for round in 0..rounds {
        let burst = |n: usize, tag: &str| -> Vec<Vec<u8>> {
            (0..n)
                .map(|i| format!("{tag}-{round}-{i}").into_bytes())
                .collect()
        };
        for (function, n) in [
            ("Shop::Orders::resize_image", 25 + (round % 4) * 6),
            ("Shop::Orders::send_email", 8 + round % 5),
            ("Shop::Orders::charge_card", 6),
            (
                "Shop::Orders::build_report",
                if round % 6 == 0 { 6 } else { 0 },
            ),
        ] {
            let payloads = burst(n, "p");
            let payloads: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
            if !payloads.is_empty() {
                submit_background(&gearmand, function, &payloads);
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    b.wait_for(
        LONG,
        "busy processes on the page",
        "return /[1-9][0-9]* busy/.test(document.getElementById('c-procs-sub').textContent);",
    );
    b.wait_for(
        LONG,
        "a backlog on the page",
        "return Number(document.getElementById('c-waiting').textContent.replace(/,/g, '')) > 0;",
    );
    assert_eq!(b.eval("return window.gdDashboard.charted().length;"), 5);
    if let Some(path) = screenshot {
        // The whole page, at a common laptop width.
        b.run(LONG, |c| async move {
            c.set_window_size(1440, 1640).await.unwrap()
        });
        wait_updates(&b, 2);
        let png = b.screenshot();
        b.run(LONG, |c| async move {
            c.set_window_size(1500, 1300).await.unwrap()
        });
        std::fs::write(&path, png).unwrap();
        eprintln!("wrote {path}");
    }
    let log = b.take_log();
    assert!(problems(&log).is_empty(), "browser log: {log:#?}");
}
