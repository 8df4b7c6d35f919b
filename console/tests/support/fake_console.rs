//! A stand-in for gearman-driver's console server, small enough to read at
//! a glance: it speaks the same line protocol (CRLF lines, then `.`) and
//! answers from a fixed list of jobs, so the client can be tested without
//! a supervisor or gearmand.
//!
//! What it answers (see [`answer`]):
//! - `status`: one status line per job
//! - `show <job>`: the job's status line and the PID `4242`
//! - `set_processes <job> <min> <max>` (and `set_min/max_processes`): `OK`
//! - `quit`: closes the connection without `.`
//! - `hang`: never answers (for timeouts)
//! - `crash`: closes the connection without answering (a supervisor dying)
//! - anything else: `ERR unknown_command: <command>`; unknown jobs get
//!   `ERR invalid_job_name: <job>`

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

pub const PID: &str = "4242";

pub struct FakeConsole {
    address: String,
    received: Arc<Mutex<Vec<String>>>,
    clients: Arc<Mutex<Vec<TcpStream>>>,
}

/// What the fake does with one command line.
enum Reply {
    Lines(Vec<String>),
    Close,
    Nothing,
}

impl FakeConsole {
    /// Listens on a free loopback port and serves `jobs` until the test
    /// process ends.
    pub fn start(jobs: &[&str]) -> FakeConsole {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let address = listener.local_addr().unwrap().to_string();
        let jobs: Arc<Vec<String>> = Arc::new(jobs.iter().map(|j| j.to_string()).collect());
        let received = Arc::new(Mutex::new(Vec::new()));
        let clients = Arc::new(Mutex::new(Vec::new()));
        let (log, open) = (received.clone(), clients.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                open.lock().unwrap().push(stream.try_clone().unwrap());
                let (jobs, log) = (jobs.clone(), log.clone());
                thread::spawn(move || serve(stream, &jobs, &log));
            }
        });
        FakeConsole {
            address,
            received,
            clients,
        }
    }

    /// `127.0.0.1:PORT`, as the client prints it.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Every command line received so far, on all connections.
    pub fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    /// Closes every open connection, as a restarting supervisor would.
    pub fn drop_connections(&self) {
        for client in self.clients.lock().unwrap().drain(..) {
            let _ = client.shutdown(Shutdown::Both);
        }
    }
}

fn serve(stream: TcpStream, jobs: &[String], log: &Mutex<Vec<String>>) {
    let mut writer = stream.try_clone().unwrap();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        log.lock().unwrap().push(line.clone());
        match answer(jobs, &line) {
            Reply::Lines(lines) => {
                if writer.write_all(wire(&lines).as_bytes()).is_err() {
                    return;
                }
            }
            Reply::Close => {
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
            Reply::Nothing => {}
        }
    }
}

/// The real console's framing: CRLF after every line, then `.`.
fn wire(lines: &[String]) -> String {
    let mut wire: String = lines.iter().map(|line| format!("{line}\r\n")).collect();
    wire.push_str(".\r\n");
    wire
}

fn answer(jobs: &[String], line: &str) -> Reply {
    let words: Vec<&str> = line.split_whitespace().collect();
    let known = |job: &&str| jobs.iter().any(|j| j == job);
    let one = |line: String| Reply::Lines(vec![line]);
    match words.as_slice() {
        ["status"] => Reply::Lines(jobs.iter().map(|job| status_line(job)).collect()),
        ["show", job] if known(job) => Reply::Lines(vec![status_line(job), PID.into()]),
        ["set_processes", job, _, _] | ["set_min_processes" | "set_max_processes", job, _]
            if known(job) =>
        {
            one("OK".into())
        }
        ["show" | "set_processes" | "set_min_processes" | "set_max_processes", job, ..] => {
            one(format!("ERR invalid_job_name: {job}"))
        }
        ["quit"] | ["crash"] => Reply::Close,
        ["hang"] => Reply::Nothing,
        [command, ..] => one(format!("ERR unknown_command: {command}")),
        [] => one("ERR unknown_command: ".into()),
    }
}

/// A status line as the real console writes it; the empty message column
/// leaves two trailing spaces.
pub fn status_line(job: &str) -> String {
    format!("{job}  0  5  0  2010-01-29T20:37:17  1970-01-01T00:00:00  ")
}
