//! Talking HTTP to the driver (and to Prometheus) in tests: a driver with
//! its HTTP listener on a port the kernel picked, and a minimal HTTP/1.0
//! client on std's TcpStream (one request per connection, the whole answer
//! read to its end, so no chunked bodies and no keep-alive to handle).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::{wait_for, Driver, Gearmand, Lib};

/// A driver with `--http-bind 127.0.0.1:0`; its URL comes from its log.
pub fn start_driver(lib: &Lib, gearmand: &Gearmand, namespaces: &str, extra: &[&str]) -> Driver {
    let mut args = vec!["--http-bind", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Driver::start(lib, gearmand, namespaces, &args)
}

/// `http://127.0.0.1:PORT`, from the driver's start-up log line.
pub fn base_url(driver: &Driver) -> String {
    wait_for(
        Duration::from_secs(10),
        "the HTTP listener's log line",
        || {
            let log = driver.log_text();
            let start = log.find("HTTP listener on http://")? + "HTTP listener on ".len();
            let url = log[start..].split_whitespace().next()?;
            Some(url.trim_end_matches('/').to_string())
        },
    )
}

/// An answer: status code, headers (lower-case names) and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Sends one request to `url` (`http://host:port/path?query`).
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(authority).expect("HTTP server reachable");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {authority}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .expect("the whole answer within 30 s");
    parse_reply(&raw)
}

pub fn get(url: &str) -> Reply {
    request("GET", url, &[], "")
}

pub fn post(url: &str, body: &str) -> Reply {
    request("POST", url, &[("Content-Type", "application/json")], body)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// A sample's value in an exposition: the first line that starts with
/// `series` (name and labels as printed), e.g.
/// `gearman_driver_jobs_total{job="J",function="J",outcome="done"}`.
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}
