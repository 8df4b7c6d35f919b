//! A real headless Chromium for the dashboard tests, driven over WebDriver
//! (chromedriver, the `fantoccini` crate). One chromedriver and one browser
//! session per test binary, shared by its tests one at a time: starting
//! Chromium is the slow part, and CI has two cores.
//!
//! Chromium runs with the flags that keep it from reaching out on its own
//! (background networking, component updates, sync) on a fresh profile.
//! The browser's log (console messages, uncaught errors, failed loads,
//! Content-Security-Policy violations) is collected by chromedriver
//! (`goog:loggingPrefs`) and read with [`Browser::take_log`].
//!
//! chromedriver runs in a process group of its own, with Chromium inside
//! it; the group is killed, and the profile removed, when the test binary
//! exits.
#![allow(dead_code)]

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

use crate::common::{free_port, wait_for};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// What a test gets: the session, for as long as it holds the lock.
pub struct Browser {
    pub client: Client,
    runtime: tokio::runtime::Runtime,
}

struct Shared {
    browser: Mutex<Browser>,
    _chromedriver: Child,
    _profile: tempfile::TempDir,
}

static SHARED: OnceLock<Shared> = OnceLock::new();
static GROUP: AtomicI32 = AtomicI32::new(0);
/// The browser's profile, removed at exit (the shared state never drops).
static PROFILE: OnceLock<std::path::PathBuf> = OnceLock::new();

extern "C" fn kill_group() {
    let group = GROUP.load(Ordering::SeqCst);
    if group > 0 {
        // SAFETY: a plain syscall.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
    if let Some(profile) = PROFILE.get() {
        let _ = std::fs::remove_dir_all(profile);
    }
}

/// The shared browser, started on first use; one test at a time.
pub fn browser() -> MutexGuard<'static, Browser> {
    let shared = SHARED.get_or_init(start);
    // A test that failed while holding it leaves a usable session.
    shared
        .browser
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn start() -> Shared {
    let port = free_port();
    let mut command = Command::new(CHROMEDRIVER);
    command
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let chromedriver = command
        .spawn()
        .expect("chromedriver (apt-get install chromium-driver)");
    GROUP.store(chromedriver.id() as i32, Ordering::SeqCst);
    // SAFETY: registers a function that only makes a syscall.
    unsafe {
        libc::atexit(kill_group);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let profile = tempfile::tempdir().unwrap();
    let _ = PROFILE.set(profile.path().to_path_buf());
    let url = format!("http://127.0.0.1:{port}");
    wait_for(Duration::from_secs(30), "chromedriver to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let client = runtime.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--window-size=1500,1300",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        tokio::time::timeout(
            Duration::from_secs(60),
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&url),
        )
        .await
        .expect("a browser session within 60 s")
        .expect("a browser session")
    });
    Shared {
        browser: Mutex::new(Browser { client, runtime }),
        _chromedriver: chromedriver,
        _profile: profile,
    }
}

/// chromedriver's log endpoint (`goog:loggingPrefs`).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "type": "browser" }).to_string()),
        )
    }
}

/// One entry of the browser's log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub level: String,
    pub source: String,
    pub message: String,
}

impl Browser {
    /// Runs `f` with the session, within `limit`.
    pub fn run<T, F, Fut>(&self, limit: Duration, f: F) -> T
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = T>,
    {
        let client = self.client.clone();
        self.runtime.block_on(async move {
            tokio::time::timeout(limit, f(client))
                .await
                .expect("the browser step within its time limit")
        })
    }

    /// The browser's log since the last call.
    pub fn take_log(&self) -> Vec<LogEntry> {
        let value = self.run(Duration::from_secs(30), |c| async move {
            c.issue_cmd(BrowserLog).await.expect("the browser log")
        });
        value
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| LogEntry {
                level: text(e, "level"),
                source: text(e, "source"),
                message: text(e, "message"),
            })
            .collect()
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub fn eval(&self, script: &str) -> Value {
        let script = script.to_string();
        self.run(Duration::from_secs(30), |c| async move {
            c.execute(&script, vec![]).await.expect("the script to run")
        })
    }

    pub fn goto(&self, url: &str) {
        let url = url.to_string();
        self.run(Duration::from_secs(60), |c| async move {
            c.goto(&url).await.expect("the page to load")
        });
    }

    /// Polls `script` until it returns something other than null or false.
    pub fn wait_for(&self, limit: Duration, what: &str, script: &str) -> Value {
        wait_for(limit, what, || {
            let v = self.eval(script);
            (!v.is_null() && v != Value::Bool(false)).then_some(v)
        })
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        self.run(Duration::from_secs(60), |c| async move {
            c.screenshot().await.expect("a screenshot")
        })
    }
}

fn text(entry: &Value, key: &str) -> String {
    entry[key].as_str().unwrap_or_default().to_string()
}
