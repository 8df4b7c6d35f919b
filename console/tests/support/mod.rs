//! Helpers shared by the client's integration tests: a fake console server,
//! a bounded run of the client binary, and a tmux pane to type into.

// Each test binary uses its own part of these helpers.
#![allow(dead_code)]

pub mod fake_console;
pub mod tmux;

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The client under test, as Cargo built it for this test run.
pub const CLIENT: &str = env!("CARGO_BIN_EXE_gearman-driver-console");

/// No single run of the client may take longer than this.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// What one run of the client did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// Runs the client with `args` and no input, killing it if it outlives
/// [`RUN_LIMIT`]. A token in the test's own environment is not passed on.
pub fn run_client(args: &[&str]) -> Run {
    run_client_with_env(args, &[])
}

/// As [`run_client`], with these environment variables set.
pub fn run_client_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let started = Instant::now();
    let mut child = Command::new(CLIENT)
        .env_remove("GEARMAN_DRIVER_TOKEN")
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the client");
    // Drained on threads so a chatty client cannot block on a full pipe.
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the client ran longer than {RUN_LIMIT:?} with {args:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        took: started.elapsed(),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// A loopback address where nothing listens: the port was free a moment
/// ago and is not handed out again that soon.
pub fn unused_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}
