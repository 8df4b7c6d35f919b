//! A scraper like Prometheus and an open dashboard: every second it fetches
//! `/metrics`, `/api/status`, and what the dashboard asks for besides (the
//! samples of the last two seconds from `/api/history`, the process events
//! from `/api/events`) from the driver, each on a new connection, until it
//! is dropped. Every answer must be a 200.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub const PERIOD: Duration = Duration::from_secs(1);

pub struct Scraper {
    stop: Arc<AtomicBool>,
    pub scrapes: Arc<AtomicUsize>,
    pub failures: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Scraper {
    /// Scrapes `addr` (`host:port`) from now on, charting `job` as the
    /// dashboard would.
    pub fn start(addr: String, job: String) -> Scraper {
        let stop = Arc::new(AtomicBool::new(false));
        let scrapes = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, scrapes, failures) = (stop.clone(), scrapes.clone(), failures.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let recent = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64() - 2.0);
                    let history = format!("/api/history?job={job}&after={recent:.3}");
                    for path in ["/metrics", "/api/status", &history, "/api/events?after=0"] {
                        match fetch(&addr, path) {
                            Ok(200) => scrapes.fetch_add(1, Ordering::Relaxed),
                            _ => failures.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    std::thread::sleep(PERIOD);
                }
            })
        };
        Scraper {
            stop,
            scrapes,
            failures,
            thread: Some(thread),
        }
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One GET; the status code.
fn fetch(addr: &str, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let head = String::from_utf8_lossy(&answer[..answer.len().min(32)]).into_owned();
    Ok(head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}
