//! The shipped workers, run as the supervisor runs them: spawned with pipes,
//! spoken to in the stdio protocol. Covers the Rust `reverse-worker`, the
//! Python helper (through `workers/python/reverse.py` and a small script of
//! its own) and the `GDExamples::Convert` example.
//!
//! Every wait is bounded: the child's stdout is parsed by a reader thread
//! and awaited with `recv_timeout`, its stdin is fed by a writer thread, and
//! a child still alive at the end of a test is killed.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Ready,
    Data(Vec<u8>),
    Warning(Vec<u8>),
    Status(u64, u64),
    Done(Vec<u8>),
    Fail(Vec<u8>),
    /// The child closed its stdout.
    Eof,
}

struct Worker {
    child: Child,
    input: Option<Sender<Vec<u8>>>,
    frames: Receiver<Result<Frame, String>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Worker {
    fn spawn(mut command: Command) -> Worker {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?} (is python3 installed?): {e}"));

        let mut stdin = child.stdin.take().unwrap();
        let (input, chunks) = mpsc::channel::<Vec<u8>>();
        thread::spawn(move || {
            for chunk in chunks {
                if stdin
                    .write_all(&chunk)
                    .and_then(|()| stdin.flush())
                    .is_err()
                {
                    return;
                }
            }
        });

        let stdout = child.stdout.take().unwrap();
        let (frames_tx, frames) = mpsc::channel();
        thread::spawn(move || read_frames(BufReader::new(stdout), frames_tx));

        let mut stderr_pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = stderr_pipe.read(&mut chunk) {
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });

        Worker {
            child,
            input: Some(input),
            frames,
            stderr,
        }
    }

    fn send_job(&self, name: &str, handle: &str, unique: &str, workload: &[u8]) {
        let mut message = format!("JOB {name} {handle} {unique} {}\n", workload.len()).into_bytes();
        message.extend_from_slice(workload);
        self.input
            .as_ref()
            .expect("stdin open")
            .send(message)
            .expect("writer thread alive");
    }

    fn next(&self) -> Frame {
        match self.frames.recv_timeout(WAIT) {
            Ok(Ok(frame)) => frame,
            Ok(Err(garbage)) => panic!(
                "protocol error from worker: {garbage}\nstderr:\n{}",
                self.stderr_text()
            ),
            Err(e) => panic!(
                "no frame from worker within {WAIT:?} ({e})\nstderr:\n{}",
                self.stderr_text()
            ),
        }
    }

    /// Sends one job and returns every frame up to and including its answer.
    fn call(&self, name: &str, workload: &[u8]) -> Vec<Frame> {
        self.send_job(name, "H:test:1", "-", workload);
        let mut frames = Vec::new();
        loop {
            let frame = self.next();
            let last = matches!(frame, Frame::Done(_) | Frame::Fail(_) | Frame::Eof);
            frames.push(frame);
            if last {
                return frames;
            }
        }
    }

    /// The answer to one job that is expected to send nothing but its answer.
    fn answer(&self, name: &str, workload: &[u8]) -> Frame {
        let mut frames = self.call(name, workload);
        assert_eq!(frames.len(), 1, "unexpected updates: {frames:?}");
        frames.pop().unwrap()
    }

    /// Closes stdin, as the supervisor does to stop an idle process, and
    /// waits for the exit.
    fn close_and_wait(&mut self) -> ExitStatus {
        self.input = None;
        assert_eq!(self.next(), Frame::Eof);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "worker did not exit after stdin was closed"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn stderr_text(&self) -> String {
        // Give the stderr thread a moment to catch up with what was written.
        thread::sleep(Duration::from_millis(100));
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_frames(mut out: impl BufRead, frames: Sender<Result<Frame, String>>) {
    loop {
        let mut line = Vec::new();
        let frame = match out.read_until(b'\n', &mut line) {
            Ok(0) => Ok(Frame::Eof),
            Ok(_) => parse_frame(&line, &mut out),
            Err(e) => Err(e.to_string()),
        };
        let finished = !matches!(
            frame,
            Ok(Frame::Ready
                | Frame::Data(_)
                | Frame::Warning(_)
                | Frame::Status(..)
                | Frame::Done(_)
                | Frame::Fail(_))
        );
        if frames.send(frame).is_err() || finished {
            return;
        }
    }
}

fn parse_frame(line: &[u8], out: &mut impl Read) -> Result<Frame, String> {
    let garbage = || format!("{:?}", String::from_utf8_lossy(line));
    let text = std::str::from_utf8(line).map_err(|_| garbage())?;
    let text = text.strip_suffix('\n').ok_or_else(garbage)?;
    let fields: Vec<&str> = text.split(' ').collect();
    let mut payload = |size: &str| -> Result<Vec<u8>, String> {
        let mut bytes = vec![0; size.parse().map_err(|_| garbage())?];
        out.read_exact(&mut bytes).map_err(|e| e.to_string())?;
        Ok(bytes)
    };
    Ok(match fields.as_slice() {
        ["READY"] => Frame::Ready,
        ["DATA", n] => Frame::Data(payload(n)?),
        ["WARNING", n] => Frame::Warning(payload(n)?),
        ["DONE", n] => Frame::Done(payload(n)?),
        ["FAIL", n] => Frame::Fail(payload(n)?),
        ["STATUS", n, d] => Frame::Status(
            n.parse().map_err(|_| garbage())?,
            d.parse().map_err(|_| garbage())?,
        ),
        _ => return Err(garbage()),
    })
}

fn workers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn python(script: &str) -> Command {
    let mut command = Command::new("python3");
    command.arg(workers_dir().join(script));
    command
}

fn reversed(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().rev().copied().collect()
}

/// What every `reverse` worker must get right, whatever its language.
fn check_reverse_worker(mut worker: Worker) {
    assert_eq!(worker.next(), Frame::Ready);

    let binary = b"\0head\nJOB reverse H:x:1 - 3\n\r\n\xff\xfe\0tail\0";
    assert_eq!(
        worker.answer("reverse", binary),
        Frame::Done(reversed(binary))
    );

    let big: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    assert_eq!(worker.answer("reverse", &big), Frame::Done(reversed(&big)));

    assert_eq!(worker.answer("reverse", b""), Frame::Done(Vec::new()));

    match worker.answer("no_such_job", b"payload") {
        Frame::Fail(message) => {
            let message = String::from_utf8_lossy(&message);
            assert!(message.contains("no_such_job"), "{message}");
        }
        other => panic!("expected FAIL for an unknown job, got {other:?}"),
    }

    // Pipelined jobs: the next header is already waiting while one is served.
    for i in 0..50 {
        worker.send_job(
            "reverse",
            &format!("H:x:{i}"),
            &format!("u{i}%20x"),
            format!("job {i}\n").as_bytes(),
        );
    }
    for i in 0..50 {
        assert_eq!(
            worker.next(),
            Frame::Done(reversed(format!("job {i}\n").as_bytes()))
        );
    }

    let status = worker.close_and_wait();
    assert!(
        status.success(),
        "exit status {status}; stderr:\n{}",
        worker.stderr_text()
    );
}

#[test]
fn rust_reverse_worker_speaks_the_protocol() {
    check_reverse_worker(Worker::spawn(Command::new(env!(
        "CARGO_BIN_EXE_reverse-worker"
    ))));
}

#[test]
fn python_reverse_worker_speaks_the_protocol() {
    check_reverse_worker(Worker::spawn(python("python/reverse.py")));
}

/// A Python worker exercising the rest of the helper's surface.
const PYTHON_SCRIPT: &str = r#"
import os, sys
sys.path.insert(0, sys.argv[1])
from gearman_driver_worker import Worker

w = Worker()

@w.job("raise")
def fails(job):
    raise ValueError("first line of the error\nsecond line")

@w.job("raise_empty")
def fails_without_text(job):
    raise RuntimeError()

@w.job("wrong_type")
def wrong_type(job):
    return 42

@w.job("text")
def text(job):
    return "caf\u00e9"

@w.job("none")
def nothing(job):
    return None

@w.job("stray_output")
def stray_output(job):
    print("printed by the job")
    sys.stdout.flush()
    os.write(1, b"written to fd 1\n")
    return b"clean"

@w.job("progress")
def progress(job):
    job.send_status(1, 3)
    job.send_data(b"part\0\n")
    job.send_warning("careful")
    job.send_status(3, 3)
    return job.workload.upper()

@w.job("describe")
def describe(job):
    return repr((job.name, job.handle, job.unique, job.options, w.servers, w.functions,
                 w.job_name, w.prefix, w.module)).encode()

w.run()
"#;

#[test]
fn python_helper_fails_jobs_and_keeps_serving() {
    let mut command = Command::new("python3");
    command
        .arg("-c")
        .arg(PYTHON_SCRIPT)
        .arg(workers_dir().join("python"))
        .env("GEARMAN_DRIVER_OPTIONS", r#"{"quality": 85, "name": "x"}"#)
        .env("GEARMAN_SERVERS", "h1:4730,h2:4731")
        .env("GEARMAN_DRIVER_FUNCTIONS", "T::describe,T::raise")
        .env("GEARMAN_DRIVER_JOB", "T::describe")
        .env("GEARMAN_DRIVER_PREFIX", "T::")
        .env("GEARMAN_DRIVER_MODULE", "T");
    let mut worker = Worker::spawn(command);
    assert_eq!(worker.next(), Frame::Ready);

    assert_eq!(
        worker.answer("raise", b"x"),
        Frame::Fail(b"first line of the error".to_vec())
    );
    assert_eq!(
        worker.call("progress", b"after a failure"),
        vec![
            Frame::Status(1, 3),
            Frame::Data(b"part\0\n".to_vec()),
            Frame::Warning(b"careful".to_vec()),
            Frame::Status(3, 3),
            Frame::Done(b"AFTER A FAILURE".to_vec()),
        ]
    );
    assert_eq!(
        worker.answer("raise_empty", b""),
        Frame::Fail(b"RuntimeError".to_vec())
    );
    match worker.answer("wrong_type", b"") {
        Frame::Fail(message) => assert!(
            String::from_utf8_lossy(&message).contains("returned int"),
            "{message:?}"
        ),
        other => panic!("expected FAIL, got {other:?}"),
    }
    assert_eq!(
        worker.answer("text", b""),
        Frame::Done("caf\u{e9}".as_bytes().to_vec())
    );
    assert_eq!(worker.answer("none", b""), Frame::Done(Vec::new()));
    assert_eq!(
        worker.answer("stray_output", b""),
        Frame::Done(b"clean".to_vec())
    );

    worker.send_job("describe", "H:host:7", "a%20b%00", b"");
    let Frame::Done(description) = worker.next() else {
        panic!("describe failed")
    };
    assert_eq!(
        String::from_utf8_lossy(&description),
        "('describe', 'H:host:7', b'a b\\x00', {'quality': 85, 'name': 'x'}, ['h1:4730', 'h2:4731'], \
         ['T::describe', 'T::raise'], 'T::describe', 'T::', 'T')"
    );

    let status = worker.close_and_wait();
    assert!(status.success(), "exit status {status}");
    let stderr = worker.stderr_text();
    assert!(
        stderr.contains("printed by the job") && stderr.contains("written to fd 1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("ValueError: first line of the error"),
        "traceback expected in:\n{stderr}"
    );
}

#[test]
fn convert_example_reports_and_fails_on_demand() {
    let mut command = python("GDExamples/convert.py");
    command
        .current_dir(workers_dir().join("GDExamples"))
        .env("GEARMAN_DRIVER_OPTIONS", r#"{"quality": 85}"#);
    let mut worker = Worker::spawn(command);
    assert_eq!(worker.next(), Frame::Ready);

    // A PNG header for a 3x2 image is all the stand-in reads.
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    png.extend_from_slice(&3u32.to_be_bytes());
    png.extend_from_slice(&2u32.to_be_bytes());
    png.extend_from_slice(b"\x08\x02\0\0\0");
    let Frame::Done(jpeg) = worker.answer("convert_to_jpeg", &png) else {
        panic!("convert_to_jpeg failed")
    };
    let jpeg = String::from_utf8(jpeg).unwrap();
    assert!(
        jpeg.starts_with("convert_to_jpeg: png 3x2, 29 bytes, sha256 "),
        "{jpeg}"
    );
    assert!(jpeg.contains("-> jpeg, quality 85"), "{jpeg}");
    // Deterministic: the same image gives the same answer.
    assert_eq!(
        worker.answer("convert_to_jpeg", &png),
        Frame::Done(jpeg.into_bytes())
    );

    match worker.answer("convert_to_gif", b"fail\n") {
        Frame::Fail(message) => assert_eq!(
            message,
            b"cannot convert to gif: the workload asked to fail"
        ),
        other => panic!("expected FAIL, got {other:?}"),
    }
    let Frame::Done(gif) = worker.answer("convert_to_gif", b"GIF89a\x07\0\x09\0") else {
        panic!("convert_to_gif failed")
    };
    assert!(
        String::from_utf8_lossy(&gif).starts_with("convert_to_gif: gif 7x9, 10 bytes"),
        "{gif:?}"
    );

    assert!(worker.close_and_wait().success());
}
