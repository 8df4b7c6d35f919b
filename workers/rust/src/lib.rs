//! The worker side of gearman-driver's stdio protocol.
//!
//! A stdio worker is a resident process that the supervisor feeds with jobs
//! over its stdin and that answers on its stdout; it never speaks Gearman
//! itself. This crate is that loop: register a closure per job name, call
//! [`Worker::run`], and each job is handed to its closure and answered.
//!
//! ```no_run
//! use gearman_driver_worker::{Job, Worker};
//!
//! fn main() -> std::io::Result<()> {
//!     Worker::new()
//!         .job("reverse", |job: &mut Job| {
//!             let mut bytes = job.workload().to_vec();
//!             bytes.reverse();
//!             Ok(bytes)
//!         })
//!         .run()
//! }
//! ```
//!
//! The protocol, as the worker sees it:
//!
//! 1. The worker writes `READY\n` once it can take jobs.
//! 2. The supervisor writes `JOB <name> <handle> <unique> <size>\n` and then
//!    exactly `<size>` bytes of workload.
//! 3. The worker answers with any number of `DATA <size>\n<bytes>`,
//!    `WARNING <size>\n<bytes>` and `STATUS <numerator> <denominator>\n`, then
//!    exactly one `DONE <size>\n<bytes>` or `FAIL <size>\n<bytes>`.
//! 4. End of file on stdin means "stop": the worker exits.
//!
//! Stdout belongs to the protocol: anything else printed there makes the
//! supervisor kill the process. Log with `eprintln!`; stderr is logged line by
//! line.

use std::any::Any;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::panic::{self, AssertUnwindSafe};

/// Longest `JOB` header line accepted. Names, handles and percent-encoded
/// unique ids are short; a longer line means the input is not this protocol.
const MAX_HEADER_LINE: u64 = 64 * 1024;

/// Large enough that a typical answer (header and payload) leaves in one
/// write, and a typical job arrives in one read.
const IO_BUFFER: usize = 64 * 1024;

/// The error a job closure returns; its text becomes the `FAIL` message,
/// which the supervisor's console shows as `ERROR: <first line>`.
///
/// Any [`Display`](fmt::Display) value converts into it, so `?` works on
/// `io::Error`, `String`, `&str`, `Box<dyn Error>` and the like:
///
/// ```
/// use gearman_driver_worker::{Job, JobError};
///
/// fn parse(job: &mut Job) -> Result<Vec<u8>, JobError> {
///     let text = std::str::from_utf8(job.workload())?;
///     if text.is_empty() {
///         return Err("empty workload".into());
///     }
///     Ok(text.to_uppercase().into_bytes())
/// }
/// ```
///
/// It deliberately does not implement `Display` itself: that is what lets
/// the blanket conversion from every `Display` type coexist with `From<T> for T`.
pub struct JobError {
    message: String,
}

impl JobError {
    /// An error with this message.
    pub fn new(message: impl fmt::Display) -> Self {
        JobError {
            message: message.to_string(),
        }
    }

    /// The message sent in the `FAIL` frame.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: fmt::Display> From<E> for JobError {
    fn from(error: E) -> Self {
        JobError::new(error)
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JobError").field(&self.message).finish()
    }
}

/// What a job closure returns: the result bytes (`DONE`) or an error (`FAIL`).
pub type JobResult = Result<Vec<u8>, JobError>;

type Handler<'h> = Box<dyn FnMut(&mut Job<'_>) -> JobResult + 'h>;

/// One job handed over by the supervisor, and the channel for the updates a
/// closure may send while it runs.
pub struct Job<'a> {
    name: Cow<'a, str>,
    handle: Cow<'a, str>,
    unique: &'a [u8],
    workload: &'a [u8],
    out: &'a mut dyn Write,
}

impl<'a> Job<'a> {
    /// The job key as declared in the worker file (`convert_to_jpeg`, not
    /// the prefixed Gearman function).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The job handle gearmand assigned, e.g. `H:host:42`.
    pub fn handle(&self) -> &str {
        &self.handle
    }

    /// The client's unique id, decoded; empty when the client sent none.
    pub fn unique(&self) -> &[u8] {
        self.unique
    }

    /// The workload bytes, exactly as the client submitted them.
    pub fn workload(&self) -> &[u8] {
        self.workload
    }

    /// Sends a `DATA` frame: partial result data for the client
    /// (Gearman's WORK_DATA).
    pub fn send_data(&mut self, data: &[u8]) -> io::Result<()> {
        write_frame(self.out, b"DATA", data)?;
        // Updates are only useful while the job is still running, so they
        // must not sit in the buffer until the final answer.
        self.out.flush()
    }

    /// Sends a `WARNING` frame (Gearman's WORK_WARNING).
    pub fn send_warning(&mut self, data: &[u8]) -> io::Result<()> {
        write_frame(self.out, b"WARNING", data)?;
        self.out.flush()
    }

    /// Sends a `STATUS` frame: progress as `numerator` of `denominator`
    /// (Gearman's WORK_STATUS).
    pub fn send_status(&mut self, numerator: u64, denominator: u64) -> io::Result<()> {
        writeln!(self.out, "STATUS {numerator} {denominator}")?;
        self.out.flush()
    }
}

impl fmt::Debug for Job<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name)
            .field("handle", &self.handle)
            .field("unique", &self.unique.escape_ascii().to_string())
            .field("workload_len", &self.workload.len())
            .finish()
    }
}

/// A stdio worker: the job closures it serves, and the loop that serves them.
#[derive(Default)]
pub struct Worker<'h> {
    handlers: HashMap<String, Handler<'h>>,
}

impl<'h> Worker<'h> {
    /// A worker that serves no job yet.
    pub fn new() -> Self {
        Worker {
            handlers: HashMap::new(),
        }
    }

    /// Serves job `name` (the job key from the worker file) with `handler`.
    /// Registering the same name again replaces the earlier closure.
    ///
    /// An `Err` answers `FAIL` with the error's text; so does a panic, after
    /// which the worker keeps serving (the panic message also reaches stderr
    /// through the panic hook).
    pub fn job<F>(mut self, name: impl Into<String>, handler: F) -> Self
    where
        F: FnMut(&mut Job<'_>) -> JobResult + 'h,
    {
        self.handlers.insert(name.into(), Box::new(handler));
        self
    }

    /// Serves jobs from stdin to stdout until stdin is closed.
    ///
    /// Returns `Ok(())` when the supervisor closes stdin between jobs, and an
    /// error when the input breaks the protocol or stdout is gone; either way
    /// the process should then exit.
    ///
    /// From here on stdout is the protocol's: closures must log with
    /// `eprintln!`, as a stray `println!` gets the process killed. Stdin must
    /// not have been read before.
    pub fn run(self) -> io::Result<()> {
        // Whatever was printed before must come out before READY.
        io::stdout().flush()?;
        #[cfg(unix)]
        {
            // Private descriptors for the same pipes: std's stdout is
            // line-buffered and would split every answer whose payload holds
            // a newline into several writes; its stdin adds a lock per read.
            use std::os::fd::AsFd;
            let input = std::fs::File::from(io::stdin().as_fd().try_clone_to_owned()?);
            let output = std::fs::File::from(io::stdout().as_fd().try_clone_to_owned()?);
            self.run_with(input, output)
        }
        #[cfg(not(unix))]
        {
            self.run_with(io::stdin().lock(), io::stdout().lock())
        }
    }

    /// Serves jobs read from `input`, answering on `output`: [`run`](Self::run)
    /// with the streams chosen by the caller (tests, embedding).
    pub fn run_with<R: Read, W: Write>(mut self, input: R, output: W) -> io::Result<()> {
        let mut input = BufReader::with_capacity(IO_BUFFER, input);
        let mut output = BufWriter::with_capacity(IO_BUFFER, output);
        output.write_all(b"READY\n")?;
        output.flush()?;

        // Reused across jobs: at tens of thousands of small jobs a second,
        // per-job allocations show up.
        let mut line = Vec::with_capacity(256);
        let mut unique = Vec::new();
        let mut workload = Vec::new();
        loop {
            line.clear();
            let read = (&mut input)
                .take(MAX_HEADER_LINE)
                .read_until(b'\n', &mut line)?;
            if read == 0 {
                return Ok(());
            }
            let Some(text) = line.strip_suffix(b"\n") else {
                return Err(if read as u64 == MAX_HEADER_LINE {
                    protocol_error("JOB header line too long", &line)
                } else {
                    protocol_error("stdin closed in the middle of a JOB header", &line)
                });
            };
            let header = parse_header(text)?;
            percent_decode(header.unique, &mut unique);
            // Grown as the bytes arrive rather than sized from the header up
            // front, so that a bogus size ends in an error, not an abort.
            workload.clear();
            workload.reserve(header.size.min(IO_BUFFER));
            (&mut input)
                .take(header.size as u64)
                .read_to_end(&mut workload)?;
            if workload.len() != header.size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "stdin closed after {} of a {}-byte workload",
                        workload.len(),
                        header.size
                    ),
                ));
            }

            let mut job = Job {
                name: String::from_utf8_lossy(header.name),
                handle: String::from_utf8_lossy(header.handle),
                unique: &unique,
                workload: &workload,
                out: &mut output,
            };
            let outcome = match self.handlers.get_mut(job.name()) {
                Some(handler) => {
                    match panic::catch_unwind(AssertUnwindSafe(|| handler(&mut job))) {
                        Ok(result) => result,
                        Err(payload) => Err(JobError::new(format_args!(
                            "panicked: {}",
                            panic_message(payload.as_ref())
                        ))),
                    }
                }
                None => Err(JobError::new(format_args!("unknown job: {}", job.name()))),
            };
            match outcome {
                Ok(result) => write_frame(&mut output, b"DONE", &result)?,
                Err(error) => write_frame(&mut output, b"FAIL", error.message.as_bytes())?,
            }
            output.flush()?;
        }
    }
}

impl fmt::Debug for Worker<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut jobs: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        jobs.sort_unstable();
        f.debug_struct("Worker").field("jobs", &jobs).finish()
    }
}

struct Header<'a> {
    name: &'a [u8],
    handle: &'a [u8],
    unique: &'a [u8],
    size: usize,
}

fn parse_header(line: &[u8]) -> io::Result<Header<'_>> {
    let mut fields = line.split(|&b| b == b' ');
    let (Some(b"JOB"), Some(name), Some(handle), Some(unique), Some(size), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(protocol_error(
            "expected JOB <name> <handle> <unique> <size>",
            line,
        ));
    };
    let size = std::str::from_utf8(size)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<usize>().ok())
        .ok_or_else(|| protocol_error("bad workload size in JOB header", line))?;
    if name.is_empty() || handle.is_empty() || unique.is_empty() {
        return Err(protocol_error("empty field in JOB header", line));
    }
    Ok(Header {
        name,
        handle,
        unique,
        size,
    })
}

/// Decodes the header's unique field into `out`: `-` is the empty id, `%XX`
/// is one byte. A `%` not followed by two hex digits is kept as it is, since
/// rejecting the whole job over an id would help nobody.
fn percent_decode(field: &[u8], out: &mut Vec<u8>) {
    out.clear();
    if field == b"-" {
        return;
    }
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'%' && i + 2 < field.len() {
            if let (Some(hi), Some(lo)) = (hex_value(field[i + 1]), hex_value(field[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

fn write_frame(out: &mut dyn Write, tag: &[u8], payload: &[u8]) -> io::Result<()> {
    out.write_all(tag)?;
    writeln!(out, " {}", payload.len())?;
    out.write_all(payload)
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "(no message)"
    }
}

fn protocol_error(what: &str, input: &[u8]) -> io::Error {
    let shown = &input[..input.len().min(200)];
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("stdio protocol: {what}: \"{}\"", shown.escape_ascii()),
    )
}

/// Names of the environment variables the supervisor sets for every process.
pub mod vars {
    /// `host:port,host:port`: the job servers.
    pub const SERVERS: &str = "GEARMAN_SERVERS";
    /// The job's console name, e.g. `GDExamples::Convert::convert_to_jpeg`.
    pub const JOB: &str = "GEARMAN_DRIVER_JOB";
    /// Comma-separated Gearman functions this process serves.
    pub const FUNCTIONS: &str = "GEARMAN_DRIVER_FUNCTIONS";
    /// The worker file's function prefix, e.g. `GDExamples::Convert::`.
    pub const PREFIX: &str = "GEARMAN_DRIVER_PREFIX";
    /// The worker file's module name, e.g. `GDExamples::Convert`.
    pub const MODULE: &str = "GEARMAN_DRIVER_MODULE";
    /// The worker options as a JSON object.
    pub const OPTIONS: &str = "GEARMAN_DRIVER_OPTIONS";
}

/// What the supervisor tells a process through its environment.
///
/// Read once with [`DriverEnv::from_env`]. Unset variables read as empty;
/// [`options`](Self::options) then reads as `{}` so that it always holds a
/// JSON object for whatever JSON parser the worker uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DriverEnv {
    /// `GEARMAN_SERVERS`, split on commas.
    pub servers: Vec<String>,
    /// `GEARMAN_DRIVER_JOB`.
    pub job: String,
    /// `GEARMAN_DRIVER_FUNCTIONS`, split on commas.
    pub functions: Vec<String>,
    /// `GEARMAN_DRIVER_PREFIX`.
    pub prefix: String,
    /// `GEARMAN_DRIVER_MODULE`.
    pub module: String,
    /// `GEARMAN_DRIVER_OPTIONS`, the raw JSON text.
    pub options: String,
}

impl DriverEnv {
    /// Reads the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Reads the variables through `lookup` (a map in tests, say).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let text = |name| lookup(name).unwrap_or_default();
        let list = |name| -> Vec<String> {
            text(name)
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(String::from)
                .collect()
        };
        let options = text(vars::OPTIONS);
        DriverEnv {
            servers: list(vars::SERVERS),
            job: text(vars::JOB),
            functions: list(vars::FUNCTIONS),
            prefix: text(vars::PREFIX),
            module: text(vars::MODULE),
            options: if options.trim().is_empty() {
                "{}".to_string()
            } else {
                options
            },
        }
    }
}

#[cfg(test)]
mod tests;
