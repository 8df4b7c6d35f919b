//! A stand-in for gearman-driver's console server, small enough to read at
//! a glance: it speaks the same line protocol (CRLF lines, then `.`) and
//! answers from a fixed list of jobs, so the client can be tested without
//! a supervisor or gearmand.
//!
//! What it answers (see [`answer`]):
//! - `status`: one status line per job
//! - `show <job>`: the job's status line and the PID `4242`
//! - `set_processes <job> <min> <max>` (and `set_min/max_processes`): `OK`
//! - `auth <token>`: `OK` for the right token (see [`FakeConsole::with_token`])
//! - `quit`: closes the connection without `.`
//! - `hang`: never answers (for timeouts)
//! - `crash`: closes the connection without answering (a supervisor dying)
//! - anything else: `ERR unknown_command: <command>`; unknown jobs get
//!   `ERR invalid_job_name: <job>`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;

pub const PID: &str = "4242";

pub struct FakeConsole {
    address: String,
    received: Arc<Mutex<Vec<String>>>,
    clients: Arc<Mutex<Vec<Box<dyn Client>>>>,
}

/// What the fake does with one command line.
enum Reply {
    Lines(Vec<String>),
    Close,
    Nothing,
}

/// A connection of either kind.
trait Client: Read + Write + Send + 'static {
    fn clone_client(&self) -> Box<dyn Client>;
    fn hang_up(&self);
}

impl Client for TcpStream {
    fn clone_client(&self) -> Box<dyn Client> {
        Box::new(self.try_clone().unwrap())
    }
    fn hang_up(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

impl Client for UnixStream {
    fn clone_client(&self) -> Box<dyn Client> {
        Box::new(self.try_clone().unwrap())
    }
    fn hang_up(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

impl FakeConsole {
    /// Listens on a free loopback port and serves `jobs` until the test
    /// process ends.
    pub fn start(jobs: &[&str]) -> FakeConsole {
        Self::serve_tcp(jobs, None)
    }

    /// As [`start`](Self::start), but like a driver with an admin token:
    /// every connection must send `auth <token>` first; other commands
    /// before that, and a wrong token, answer `ERR unauthorized`.
    pub fn with_token(jobs: &[&str], token: &str) -> FakeConsole {
        Self::serve_tcp(jobs, Some(token.to_string()))
    }

    /// Listens on a Unix socket at `path` (no `auth` needed there).
    pub fn on_unix_socket(jobs: &[&str], path: &Path) -> FakeConsole {
        let listener = UnixListener::bind(path).expect("bind the socket");
        let address = format!("unix:{}", path.display());
        let incoming = std::iter::from_fn(move || {
            Some(
                listener
                    .accept()
                    .map(|(s, _)| Box::new(s) as Box<dyn Client>),
            )
        });
        Self::serve(jobs, None, address, incoming)
    }

    fn serve_tcp(jobs: &[&str], token: Option<String>) -> FakeConsole {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let address = listener.local_addr().unwrap().to_string();
        let incoming = std::iter::from_fn(move || {
            Some(
                listener
                    .accept()
                    .map(|(s, _)| Box::new(s) as Box<dyn Client>),
            )
        });
        Self::serve(jobs, token, address, incoming)
    }

    fn serve(
        jobs: &[&str],
        token: Option<String>,
        address: String,
        incoming: impl Iterator<Item = std::io::Result<Box<dyn Client>>> + Send + 'static,
    ) -> FakeConsole {
        let jobs: Arc<Vec<String>> = Arc::new(jobs.iter().map(|j| j.to_string()).collect());
        let received = Arc::new(Mutex::new(Vec::new()));
        let clients = Arc::new(Mutex::new(Vec::new()));
        let (log, open) = (received.clone(), clients.clone());
        thread::spawn(move || {
            for stream in incoming {
                let Ok(stream) = stream else { continue };
                open.lock().unwrap().push(stream.clone_client());
                let (jobs, log, token) = (jobs.clone(), log.clone(), token.clone());
                thread::spawn(move || serve(stream, &jobs, &log, token.as_deref()));
            }
        });
        FakeConsole {
            address,
            received,
            clients,
        }
    }

    /// `127.0.0.1:PORT` or `unix:PATH`, as the client prints it.
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
            client.hang_up();
        }
    }
}

fn serve(stream: Box<dyn Client>, jobs: &[String], log: &Mutex<Vec<String>>, token: Option<&str>) {
    let mut writer = stream.clone_client();
    let mut authorized = token.is_none();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        log.lock().unwrap().push(line.clone());
        let reply = match line.strip_prefix("auth ") {
            Some(given) if Some(given) == token => {
                authorized = true;
                Reply::Lines(vec!["OK".into()])
            }
            _ if !authorized => Reply::Lines(vec!["ERR unauthorized".into()]),
            _ => answer(jobs, &line),
        };
        match reply {
            Reply::Lines(lines) => {
                if writer.write_all(wire(&lines).as_bytes()).is_err() {
                    return;
                }
            }
            Reply::Close => {
                writer.hang_up();
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
