//! Upgrading a running driver in place: `upgrade` (console), SIGUSR2.
//!
//! The driver runs from a copy of its binary in a folder of the test's; an
//! upgrade replaces that file (as a package manager does: write beside it,
//! rename over it) with a second build of the driver that reports another
//! version (`gearman-driver-next`, `<version>+next`), built once per run of
//! this test binary and shared by the tests.

mod common;
#[path = "support/http.rs"]
mod http;
use common::*;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Building the second binary (this crate once more) on a busy machine.
const BUILD_LIMIT: Duration = Duration::from_secs(600);
const UPGRADE_LIMIT: Duration = Duration::from_secs(90);
/// The admin token of the tests that write through HTTP.
const TOKEN: &str = "upgrade-s3cret";

/// The driver built a second time with the `upgrade-test-build` feature:
/// `gearman-driver-next`, which reports `<version>+next` (see Cargo.toml).
/// Built once per run of this test binary, into the test build's own target
/// folder. `--example submit` makes Cargo resolve the dev-dependencies as
/// the test build did, so the dependencies are that build's and only this
/// crate is compiled again.
fn next_build() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        // What cargo sets for this test, not for a build: a build script that
        // watches one of these (ring watches CARGO_MANIFEST_DIR) would see it
        // change and compile its crate, and all that depends on it, again.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let set_for_the_test = [
                "CARGO_MANIFEST_",
                "CARGO_PKG_",
                "CARGO_BIN_",
                "CARGO_CRATE_",
            ]
            .iter()
            .any(|p| name.starts_with(p))
                || ["CARGO_TARGET_TMPDIR", "CARGO_PRIMARY_PACKAGE", "OUT_DIR"].contains(&&*name);
            if set_for_the_test {
                build.env_remove(&*name);
            }
        }
        let mut child = build
            .args([
                "build",
                "--bin",
                "gearman-driver-next",
                "--example",
                "submit",
            ])
            .args(["--features", "upgrade-test-build", "--manifest-path"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            // Into the folder of the profile this test was built with.
            .args((!cfg!(debug_assertions)).then_some("--release"))
            .spawn()
            .expect("cargo runs");
        let status = wait_for(BUILD_LIMIT, "the second build", || {
            child.try_wait().unwrap()
        });
        assert!(status.success(), "the second build failed");
        Path::new(env!("CARGO_BIN_EXE_gearman-driver")).with_file_name("gearman-driver-next")
    })
}

/// The installed driver on namespace `U` with its HTTP listener on a free
/// loopback port; returns the port too.
fn start_with_http(installed: &Installed, lib: &Lib, gearmand: &Gearmand) -> (Driver, u16) {
    let http_port = free_port();
    let bind = format!("127.0.0.1:{http_port}");
    let driver =
        Driver::start_program(&installed.path, lib, gearmand, "U", &["--http-bind", &bind]);
    (driver, http_port)
}

/// A binary at a path of the test's, replaced in place like a package would.
struct Installed {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Installed {
    fn first() -> Installed {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gearman-driver");
        let installed = Installed { _dir: dir, path };
        installed.replace_with(Path::new(env!("CARGO_BIN_EXE_gearman-driver")));
        installed
    }

    fn replace_with(&self, binary: &Path) {
        let next = self.path.with_extension("new");
        std::fs::copy(binary, &next).unwrap();
        std::fs::set_permissions(&next, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&next, &self.path).unwrap();
    }
}

fn stdio_worker(lib: &Lib) {
    lib.file("U/rev.py", &python_worker(""));
    lib.file(
        "U/Rev.toml",
        "command = [\"python3\", \"rev.py\"]\n[jobs.rev]\nmin_processes = 1\nmax_processes = 1\n",
    );
}

fn exec_worker(lib: &Lib) {
    lib.file(
        "U/Exec.toml",
        "command = [\"rev\"]\nprotocol = \"exec\"\n[jobs.rev]\nmin_processes = 1\nmax_processes = 1\n",
    );
}

fn gearman_worker(lib: &Lib) {
    let wrapper = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/workers/GearmanCLI/gearman-cli-worker.sh"
    ))
    .unwrap();
    let path = lib.file("U/gearman-cli-worker.sh", &wrapper);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    lib.file(
        "U/Cli.toml",
        "command = [\"./gearman-cli-worker.sh\", \"rev\"]\nprotocol = \"gearman\"\n[jobs.rev]\nmin_processes = 1\nmax_processes = 1\n",
    );
}

/// Foreground jobs one after another until stopped; each answer is checked.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl Load {
    fn start(gearmand: &Gearmand, function: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let (addr, function) = (gearmand.addr(), function.to_string());
        let (stop2, done2) = (stop.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            block_on(Duration::from_secs(600), async move {
                let mut problems = Vec::new();
                let mut client = gearman_driver::gearman::client::Client::connect(&addr)
                    .await
                    .unwrap();
                let mut n = 0u64;
                while !stop2.load(Ordering::SeqCst) {
                    n += 1;
                    let payload = format!("job-{n}");
                    let expected: Vec<u8> = payload.bytes().rev().collect();
                    match client.submit(&function, b"", payload.into_bytes()).await {
                        Ok(reply) if reply.result.as_deref() == Some(&expected[..]) => {
                            done2.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(reply) => problems.push(format!("job {n}: {reply:?}")),
                        Err(err) => problems.push(format!("job {n}: {err}")),
                    }
                }
                problems
            })
        });
        Load { stop, done, thread }
    }

    fn done(&self) -> u64 {
        self.done.load(Ordering::SeqCst)
    }

    fn wait_more(&self, more: u64) {
        let target = self.done() + more;
        wait_for(Duration::from_secs(60), "jobs to complete", || {
            (self.done() >= target).then_some(())
        });
    }

    /// The problems seen (none, if every job was answered correctly).
    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// Connects to the console again and again until stopped, asking `version`;
/// counts refused (or unanswered) connections.
struct Knocker {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, Vec<String>)>,
}

impl Knocker {
    fn start(port: u16) -> Knocker {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut answered, mut failures) = (0, Vec::new());
            while !stop2.load(Ordering::SeqCst) {
                match TcpStream::connect(("127.0.0.1", port)) {
                    Ok(stream) => {
                        drop(stream);
                        answered += 1;
                    }
                    Err(err) => failures.push(err.to_string()),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (answered, failures)
        });
        Knocker { stop, thread }
    }

    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

fn all_pids(driver: &Driver, jobs: &[&str]) -> Vec<(String, Vec<u32>)> {
    jobs.iter()
        .map(|job| {
            let mut pids = driver.pids(job);
            pids.sort();
            (job.to_string(), pids)
        })
        .collect()
}

/// Every `gearman_driver_*_total` series of `/metrics` and its value.
fn counters(http_port: u16) -> BTreeMap<String, f64> {
    let text = http::get(&format!("http://127.0.0.1:{http_port}/metrics")).body;
    text.lines()
        .filter(|l| l.starts_with("gearman_driver_") && l.contains("_total{"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Each counter of `before` is still there and did not go down.
fn assert_no_counter_reset(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) {
    assert!(!before.is_empty());
    for (series, value) in before {
        let now = after.get(series).copied().unwrap_or(0.0);
        assert!(now >= *value, "{series} went from {value} to {now}");
    }
}

fn wait_version(driver: &Driver, needle: &str) {
    wait_for(UPGRADE_LIMIT, &format!("version {needle}"), || {
        let version = std::panic::catch_unwind(|| driver.console("version")).ok()?;
        version.join(" ").contains(needle).then_some(())
    });
}

#[test]
fn an_upgrade_under_load_keeps_every_worker_and_loses_no_job() {
    let second = next_build();
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    stdio_worker(&lib);
    exec_worker(&lib);
    gearman_worker(&lib);
    let installed = Installed::first();
    let (driver, http_port) = start_with_http(&installed, &lib, &gearmand);
    let jobs = ["U::Rev::rev", "U::Exec::rev", "U::Cli::rev"];
    // Limits set from the console, and a status column, must carry over.
    assert_eq!(driver.console("set_processes U::Rev::rev 3 3"), ["OK"]);
    driver.wait_processes("U::Rev::rev", 3, Duration::from_secs(30));
    for job in jobs {
        wait_for(Duration::from_secs(30), "every job served", || {
            (driver.process_count(job) >= 1).then_some(())
        });
    }
    assert_eq!(
        submit(&gearmand, "U::Cli::rev", b"abc").result.as_deref(),
        Some(&b"cba"[..])
    );
    let before = all_pids(&driver, &jobs);
    let version_before = driver.console("version");
    assert!(!version_before[0].contains("+next"), "{version_before:?}");

    let stdio_load = Load::start(&gearmand, "U::Rev::rev");
    let exec_load = Load::start(&gearmand, "U::Exec::rev");
    stdio_load.wait_more(20);
    exec_load.wait_more(5);
    let status_before = driver.status_line("U::Rev::rev");
    let counters_before = counters(http_port);
    let knocker = Knocker::start(driver.console_port);

    installed.replace_with(second);
    assert_eq!(driver.console("upgrade"), ["OK"]);
    wait_version(&driver, "+next");
    stdio_load.wait_more(50);
    exec_load.wait_more(10);

    let (answered, refused) = knocker.finish();
    let stdio_done = stdio_load.done.clone();
    let stdio_problems = stdio_load.finish();
    let exec_problems = exec_load.finish();
    assert!(
        refused.is_empty(),
        "console connections refused: {refused:?}"
    );
    assert!(answered > 0);
    assert!(stdio_problems.is_empty(), "{stdio_problems:?}");
    assert!(exec_problems.is_empty(), "{exec_problems:?}");
    assert_eq!(
        all_pids(&driver, &jobs),
        before,
        "every worker kept its PID"
    );
    for (_, pids) in &before {
        for pid in pids {
            assert!(
                children_of(driver.pid()).contains(pid),
                "{pid} is still a child"
            );
        }
    }
    let status_after = driver.status_line("U::Rev::rev");
    let columns = |line: &str| -> Vec<String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        vec![words[1].into(), words[2].into(), words[3].into()]
    };
    assert_eq!(columns(&status_after), ["3", "3", "3"], "{status_after}");
    assert_eq!(columns(&status_before), columns(&status_after));
    assert_eq!(
        submit(&gearmand, "U::Cli::rev", b"xyz").result.as_deref(),
        Some(&b"zyx"[..])
    );
    // The counters continue: every job the load saw answered is counted,
    // those before the upgrade included, and no series went back.
    let done =
        r#"gearman_driver_jobs_total{job="U::Rev::rev",function="U::Rev::rev",outcome="done"}"#;
    let answered_jobs = stdio_done.load(Ordering::SeqCst) as f64;
    wait_for(
        Duration::from_secs(30),
        "every answered job counted",
        || (counters(http_port).get(done).copied() == Some(answered_jobs)).then_some(()),
    );
    let counters_after = counters(http_port);
    assert_no_counter_reset(&counters_before, &counters_after);
    let starts = r#"gearman_driver_process_starts_total{job="U::Rev::rev",reason="min"}"#;
    assert_eq!(counters_after.get(starts), Some(&3.0), "{counters_after:?}");
    let log = driver.log_text();
    assert!(log.contains("takes over from"), "{log}");
    assert_eq!(
        log.matches("Process started").count(),
        5,
        "no process restarted"
    );
}

#[test]
fn a_refused_upgrade_changes_nothing_and_says_why() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    stdio_worker(&lib);
    let installed = Installed::first();
    let token_dir = tempfile::tempdir().unwrap();
    let token = token_dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let bind = format!("127.0.0.1:{}", free_port());
    let driver = Driver::start_program(
        &installed.path,
        &lib,
        &gearmand,
        "U",
        &[
            "--http-bind",
            &bind,
            "--admin-token-file",
            token.to_str().unwrap(),
        ],
    );
    // The TCP console wants `auth` first once a token is configured.
    let console = |command: &str| console_authed(driver.console_port, Some(TOKEN), command);
    let upgrade = || console("upgrade");
    let pids = || -> Vec<u32> {
        let shown = console("show U::Rev::rev");
        shown.iter().skip(1).map(|l| l.parse().unwrap()).collect()
    };
    let http_upgrade = |auth: Option<&str>| {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(auth) = auth {
            headers.push(("Authorization", auth));
        }
        http::request("POST", &format!("http://{bind}/api/upgrade"), &headers, "")
    };
    let before = wait_for(Duration::from_secs(30), "a process of U::Rev::rev", || {
        let pids = pids();
        (pids.len() == 1).then_some(pids)
    });
    let version = console("version");

    // Not executable.
    std::fs::set_permissions(&installed.path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let answer = upgrade();
    assert!(
        answer[0].starts_with("ERR upgrade refused: cannot run "),
        "{answer:?}"
    );
    assert!(answer[0].contains("Permission denied"), "{answer:?}");
    // Missing.
    std::fs::remove_file(&installed.path).unwrap();
    let answer = upgrade();
    assert!(
        answer[0].starts_with("ERR upgrade refused: cannot run "),
        "{answer:?}"
    );
    assert!(answer[0].contains("No such file"), "{answer:?}");
    // The same through HTTP: a write, so the Bearer token is needed.
    let locked = http_upgrade(None);
    assert_eq!(locked.status, 401, "{}", locked.body);
    let reply = http_upgrade(Some(&format!("Bearer {TOKEN}")));
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(
        reply.json()["error"].as_str().unwrap(),
        answer[0],
        "the HTTP door refuses with the console's words"
    );
    assert_eq!(pids(), before);
    // A configuration that no longer loads: the new binary's check fails.
    installed.replace_with(Path::new(env!("CARGO_BIN_EXE_gearman-driver")));
    lib.file(
        "U/Broken.toml",
        "command = [\"x\"]\n[jobs.x]\nmin_processes = \"many\"\n",
    );
    let answer = upgrade();
    assert!(answer[0].starts_with("ERR upgrade refused: "), "{answer:?}");
    assert!(
        answer[0].contains("check failed") && answer[0].contains("Broken.toml"),
        "{answer:?}"
    );
    // SIGUSR2 is refused the same way, in the log.
    unsafe { libc::kill(driver.pid() as i32, libc::SIGUSR2) };
    driver.wait_log("upgrade refused: ", Duration::from_secs(30));

    assert_eq!(pids(), before, "nothing restarted");
    assert_eq!(console("version"), version);
    let status = http::get(&format!("http://{bind}/api/status")).json();
    let running = status["version"].as_str().unwrap();
    assert!(version[0].contains(running), "{version:?} {running}");
    assert_eq!(
        submit(&gearmand, "U::Rev::rev", b"still").result.as_deref(),
        Some(&b"llits"[..])
    );
}

#[test]
fn sigusr2_upgrades_a_driver_with_an_http_listener_and_inherits_it() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    stdio_worker(&lib);
    let installed = Installed::first();
    let (driver, http_port) = start_with_http(&installed, &lib, &gearmand);
    driver.wait_processes("U::Rev::rev", 1, Duration::from_secs(30));
    let pids = driver.pids("U::Rev::rev");
    assert_eq!(
        submit(&gearmand, "U::Rev::rev", b"xy").result.as_deref(),
        Some(&b"yx"[..])
    );
    let done =
        r#"gearman_driver_jobs_total{job="U::Rev::rev",function="U::Rev::rev",outcome="done"}"#;
    wait_for(Duration::from_secs(30), "the job counted", || {
        (counters(http_port).get(done) == Some(&1.0)).then_some(())
    });
    let started_before = http_status(http_port)["started"].clone();
    unsafe { libc::kill(driver.pid() as i32, libc::SIGUSR2) };
    driver.wait_log("takes over from", UPGRADE_LIMIT);
    driver.wait_processes("U::Rev::rev", 1, Duration::from_secs(30));
    assert_eq!(driver.pids("U::Rev::rev"), pids);
    let status = http_status(http_port);
    assert_eq!(
        status["started"], started_before,
        "the start time carries over"
    );
    assert_eq!(
        submit(&gearmand, "U::Rev::rev", b"ab").result.as_deref(),
        Some(&b"ba"[..])
    );
    wait_for(Duration::from_secs(30), "both jobs counted", || {
        (counters(http_port).get(done) == Some(&2.0)).then_some(())
    });
}

/// `/api/status` as JSON.
fn http_status(port: u16) -> serde_json::Value {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(b"GET /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text)
        })();
        if let Ok(text) = attempt {
            if let Some((_, body)) = text.split_once("\r\n\r\n") {
                if let Ok(value) = serde_json::from_str(body) {
                    return value;
                }
            }
        }
        assert!(Instant::now() < deadline, "no /api/status");
        std::thread::sleep(Duration::from_millis(100));
    }
}
