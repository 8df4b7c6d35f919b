//! The HTTP door's half of access control, over real HTTP against a driver
//! and gearmand: writes refused with `403` while no token is configured,
//! `401` for a missing, malformed or wrong Bearer token, `200` and `422`
//! (with the console's `ERR` text) for the right one, the changes seen
//! through the console, an audit line for every write and refusal, and the
//! start-up refusal of an `http_bind` beyond loopback without a token.

mod common;
#[path = "support/http.rs"]
mod http;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "http-s3cret";
const JOB: &str = "T::W::a";

fn token_file(dir: &Path) -> PathBuf {
    let path = dir.join("token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn start(extra: &[&str]) -> (Gearmand, Lib, Driver, String) {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker(""));
    lib.file(
        "T/W.toml",
        "command = [\"python3\", \"w.py\"]\n[jobs.a]\nmin_processes = 1\nmax_processes = 3\n",
    );
    let driver = http::start_driver(&lib, &gearmand, "T", extra);
    let url = http::base_url(&driver);
    (gearmand, lib, driver, url)
}

/// One console command after `auth` (when `token` is given).
fn console(port: u16, token: Option<&str>, command: &str) -> Vec<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut answer = |line: &str| {
        writer.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            assert!(reader.read_line(&mut l).unwrap() > 0, "closed: {lines:?}");
            let l = l.trim_end().to_string();
            if l == "." {
                return lines;
            }
            lines.push(l);
        }
    };
    if let Some(token) = token {
        assert_eq!(answer(&format!("auth {token}")), ["OK"]);
    }
    answer(command)
}

/// min and max of `JOB` in the console's `status`.
fn limits(port: u16, token: Option<&str>) -> (String, String) {
    let status = console(port, token, "status");
    let line = status.iter().find(|l| l.starts_with(JOB)).unwrap();
    let f: Vec<&str> = line.split_whitespace().collect();
    (f[1].to_string(), f[2].to_string())
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn set_processes(url: &str, auth: Option<&str>, body: &str) -> http::Reply {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    http::request(
        "POST",
        &format!("{url}/api/jobs/{JOB}/processes"),
        &headers,
        body,
    )
}

#[test]
fn without_a_token_configured_writes_answer_403_and_say_how_to_enable_them() {
    let (_g, _lib, driver, url) = start(&[]);
    let reply = set_processes(&url, Some(&bearer(TOKEN)), r#"{"min": 2}"#);
    assert_eq!(reply.status, 403, "{}", reply.body);
    let body = reply.json();
    assert!(
        body["error"].as_str().unwrap().contains("admin_token_file"),
        "{body}"
    );
    assert_eq!(body["writes"], "disabled");
    for path in ["/api/reload", &format!("/api/jobs/{JOB}/killall")] {
        let reply = http::post(&format!("{url}{path}"), "");
        assert_eq!(reply.status, 403, "{path}");
    }
    let access = http::get(&format!("{url}/api/access"));
    assert_eq!(
        (access.status, access.json()["writes"].clone()),
        (200, "disabled".into())
    );
    assert_eq!(limits(driver.console_port, None), ("1".into(), "3".into()));
    driver.wait_log(
        &format!("set_min_processes {JOB} 2 -> ERR unauthorized: writes are disabled"),
        Duration::from_secs(5),
    );
    // Reads stay open.
    assert_eq!(http::get(&format!("{url}/api/status")).status, 200);
}

#[test]
fn a_token_opens_writes_only_with_the_right_bearer_header() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let (_g, _lib, driver, url) = start(&["--admin-token-file", token.to_str().unwrap()]);
    let port = driver.console_port;

    // Missing and malformed headers: 401 at once, with a challenge.
    for auth in [None, Some("Basic aHR0cA=="), Some("Bearer"), Some(TOKEN)] {
        let reply = set_processes(&url, auth, r#"{"min": 2}"#);
        assert_eq!(reply.status, 401, "{auth:?}: {}", reply.body);
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer realm=\"gearman-driver\"")
        );
        assert_eq!(reply.json()["writes"], "locked");
    }
    // A wrong token: 401 after the console's delay for a wrong token.
    let asked = Instant::now();
    let reply = set_processes(&url, Some(&bearer("not-it")), r#"{"min": 2}"#);
    assert_eq!(reply.status, 401);
    assert!(asked.elapsed() >= Duration::from_millis(900));
    assert_eq!(reply.json()["error"], "unauthorized: wrong token");
    assert_eq!(limits(port, Some(TOKEN)), ("1".into(), "3".into()));

    // The right token: 200, and the console sees the change.
    let reply = set_processes(&url, Some(&bearer(TOKEN)), r#"{"min": 2, "max": 4}"#);
    assert_eq!(
        (reply.status, reply.json()),
        (200, serde_json::json!({"ok": true}))
    );
    assert_eq!(limits(port, Some(TOKEN)), ("2".into(), "4".into()));
    wait_for(Duration::from_secs(60), "two processes", || {
        let status = console(port, Some(TOKEN), "status");
        let line = status.iter().find(|l| l.starts_with(JOB))?;
        (line.split_whitespace().nth(3) == Some("2")).then_some(())
    });

    // min > max: 422 with exactly the console's error line.
    let reply = set_processes(&url, Some(&bearer(TOKEN)), r#"{"min": 9, "max": 1}"#);
    assert_eq!(reply.status, 422, "{}", reply.body);
    let console_err = console(port, Some(TOKEN), &format!("set_processes {JOB} 9 1"));
    assert_eq!(reply.json()["error"], console_err[0].as_str());
    assert!(console_err[0].starts_with("ERR "), "{console_err:?}");
    assert_eq!(limits(port, Some(TOKEN)), ("2".into(), "4".into()));

    // Access check, reload, killall with the token.
    let locked = http::get(&format!("{url}/api/access")).json();
    assert_eq!(locked["writes"], "locked", "{locked}");
    let auth = bearer(TOKEN);
    let with_token = [("Authorization", auth.as_str())];
    let reply = http::request("GET", &format!("{url}/api/access"), &with_token, "");
    assert_eq!(
        (reply.status, reply.json()["writes"].clone()),
        (200, "open".into())
    );
    let reply = http::request("POST", &format!("{url}/api/reload"), &with_token, "");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let pids = console(port, Some(TOKEN), &format!("show {JOB}"));
    let reply = http::request(
        "POST",
        &format!("{url}/api/jobs/{JOB}/killall"),
        &with_token,
        "",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let old: Vec<u32> = pids[1..]
        .iter()
        .map(|p| p.trim().parse().unwrap())
        .collect();
    wait_for(
        Duration::from_secs(30),
        "the killed processes to go",
        || old.iter().all(|p| !pid_alive(*p)).then_some(()),
    );

    // Every write and refusal is in the log with the peer.
    let log = driver.log_text();
    for line in [
        format!("set_min_processes {JOB} 2 -> ERR unauthorized"),
        format!("set_processes {JOB} 2 4 -> OK"),
        format!("set_processes {JOB} 9 1 -> ERR "),
        "reload -> OK".to_string(),
        format!("killall {JOB} -> OK"),
    ] {
        let found = log
            .lines()
            .any(|l| l.contains("http 127.0.0.1:") && l.contains(&line));
        assert!(found, "no audit line with {line:?} in\n{log}");
    }
}

#[test]
fn a_bad_body_is_refused_after_the_token_check() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let (_g, _lib, driver, url) = start(&["--admin-token-file", token.to_str().unwrap()]);
    // Without the token, a bad body gets 401 like any other.
    assert_eq!(set_processes(&url, None, "{").status, 401);
    let reply = set_processes(&url, Some(&bearer(TOKEN)), "{");
    assert_eq!(reply.status, 400);
    assert!(reply.json()["error"].as_str().unwrap().contains("not JSON"));
    driver.wait_log(
        &format!("set_processes {JOB} -> ERR invalid_value: the body is not JSON"),
        Duration::from_secs(5),
    );
}

/// Runs the driver until it exits on its own; its exit code and stderr.
fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gearman-driver"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for(Duration::from_secs(15), "the driver to exit", || {
        child.try_wait().unwrap()
    });
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err)
}

#[test]
fn an_http_bind_beyond_loopback_needs_a_token_or_insecure_bind() {
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker(""));
    lib.file(
        "T/W.toml",
        "command = [\"python3\", \"w.py\"]\n[jobs.a]\nmin_processes = 0\nmax_processes = 1\n",
    );
    let server = format!("127.0.0.1:{}", free_port());
    let base = [
        "--lib",
        lib.path().to_str().unwrap(),
        "--namespaces",
        "T",
        "--server",
        &server,
        "--console-port",
        "0",
    ];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        args
    }
    for sub in [&[][..], &["check"][..]] {
        let mut args = sub.to_vec();
        args.extend(with(&base, &["--http-bind", "0.0.0.0:0"]));
        let (code, err) = run_to_exit(&args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains("key `http_bind`"), "{err}");
        assert!(err.contains("not a loopback address"), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    for extra in [
        vec!["--http-bind", "0.0.0.0:0", "--insecure-bind"],
        vec![
            "--http-bind",
            "0.0.0.0:0",
            "--admin-token-file",
            token.to_str().unwrap(),
        ],
        vec!["--http-bind", "127.0.0.1:0"],
    ] {
        let mut args = vec!["check"];
        args.extend(with(&base, &extra));
        let (code, err) = run_to_exit(&args);
        assert_eq!(code, Some(0), "{extra:?}: {err}");
    }
    // insecure_bind really starts, and warns.
    let gearmand = Gearmand::start();
    let driver = Driver::start(
        &lib,
        &gearmand,
        "T",
        &["--http-bind", "0.0.0.0:0", "--insecure-bind"],
    );
    driver.wait_log(
        "the HTTP listener listens on 0.0.0.0:0 without a token",
        Duration::from_secs(5),
    );
}
