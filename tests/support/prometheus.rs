//! A real Prometheus server for the metrics tests: started on a free
//! loopback port with its own storage folder and a scrape config for one
//! driver (every second), and its HTTP query API.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{free_port, wait_for};
use crate::http;

pub struct Prometheus {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// One sample of a query's answer: its labels and value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Prometheus {
    /// Scrapes `target` (`127.0.0.1:PORT`) every second and evaluates the
    /// shipped alert rules (`examples/prometheus/alerts.yml`) every second.
    /// `honor_labels` keeps the driver's own `job` label, as the shipped
    /// scrape config does.
    pub fn start(target: &str) -> Prometheus {
        for _ in 0..5 {
            if let Some(p) = Self::try_start(target) {
                return p;
            }
        }
        panic!("prometheus could not get a port of its own");
    }

    fn try_start(target: &str) -> Option<Prometheus> {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: gearman-driver\n    honor_labels: true\n\
                 \x20   static_configs:\n      - targets: ['{target}']\n",
                alert_rules().display()
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let mut child = Command::new(binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus is installed (Debian package prometheus)");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                // Most likely the port was taken meanwhile: try another.
                return None;
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && http::get(&format!("http://127.0.0.1:{port}/-/ready")).status == 200
            {
                return Some(Prometheus { child, port, dir });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("prometheus did not become ready:\n{}", read_log(dir.path()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }

    /// An instant query's samples.
    pub fn query(&self, promql: &str) -> Vec<Sample> {
        let url = format!(
            "http://127.0.0.1:{}/api/v1/query?query={}",
            self.port,
            encode(promql)
        );
        let reply = http::get(&url);
        let json = reply.json();
        assert_eq!(json["status"], "success", "{promql}: {}", reply.body);
        json["data"]["result"]
            .as_array()
            .expect("a vector result")
            .iter()
            .map(|r| Sample {
                labels: r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect(),
                value: r["value"][1].as_str().unwrap().parse().unwrap(),
            })
            .collect()
    }

    /// The value of a query with a single sample, once `accept` takes it.
    pub fn wait_value(&self, promql: &str, accept: impl Fn(f64) -> bool) -> f64 {
        let mut last = None;
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(Duration::from_secs(60), promql, || {
                let samples = self.query(promql);
                last = samples.first().map(|s| s.value);
                match samples.as_slice() {
                    [one] if accept(one.value) => Some(one.value),
                    _ => None,
                }
            })
        }));
        match found {
            Ok(v) => v,
            Err(_) => panic!(
                "{promql}: no acceptable value within 60 s (last {last:?})\nprometheus log:\n{}",
                self.log()
            ),
        }
    }

    /// Waits for a query's single value to be exactly `expected`.
    pub fn wait_equal(&self, promql: &str, expected: f64) {
        self.wait_value(promql, |v| v == expected);
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The alert rules the README shows.
pub fn alert_rules() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prometheus/alerts.yml")
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
}

fn binary() -> &'static str {
    if Path::new("/usr/bin/prometheus").exists() {
        "/usr/bin/prometheus"
    } else {
        "prometheus"
    }
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
