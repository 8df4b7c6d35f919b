//! Asking Perl about worker classes: one `gearman-driver-perl --describe`
//! run per config load (and reload) loads every selected module, as
//! Gearman::Driver's loader did in its one process, and answers with the
//! facts below as JSON. Perl reports; the driver judges (see
//! [`super::attributes`]).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::side::PerlSide;

/// Loading a namespace's modules may be slow (a big framework, a busy
/// machine), but a module that never finishes loading must not hang the
/// driver's start or reload.
pub const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Serialize)]
pub struct Request {
    /// `host:port,host:port`: the `server` every worker object is built with.
    pub servers: String,
    pub modules: Vec<RequestModule>,
}

#[derive(Debug, Serialize)]
pub struct RequestModule {
    pub module: String,
    /// The worker options, passed to the constructor as Gearman::Driver did.
    pub options: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct Answer {
    modules: Vec<ModuleFacts>,
}

/// What Perl found out about one module.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ModuleFacts {
    pub module: String,
    pub status: Status,
    /// Perl's message when it did not load (or its constructor died).
    pub error: Option<String>,
    /// Why a module that loaded is not a worker class.
    pub reason: Option<String>,
    /// The file Perl loaded it from.
    pub file: Option<PathBuf>,
    pub prefix: Option<String>,
    #[serde(default)]
    pub default_attributes: BTreeMap<String, Option<String>>,
    #[serde(default)]
    pub override_attributes: BTreeMap<String, Option<String>>,
    /// Methods with attributes, its ancestors' included (the nearest definition of each).
    #[serde(default)]
    pub methods: Vec<MethodFacts>,
    /// Every method name the class can call.
    #[serde(default)]
    pub can: Vec<String>,
    pub digest: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Worker,
    NotWorker,
    Error,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct MethodFacts {
    pub name: String,
    /// As written: `["Job", "MinProcesses(0)"]`.
    pub attributes: Vec<String>,
    /// Where the method is defined (a base class's file for an inherited one).
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
}

/// Runs the describe for `request`; the facts come back in request order.
pub fn describe(
    side: &PerlSide,
    lib: &[PathBuf],
    request: &Request,
) -> Result<Vec<ModuleFacts>, String> {
    let mut cmd = Command::new(&side.perl);
    cmd.arg(&side.runner).arg("--describe");
    for dir in lib {
        cmd.arg("--lib").arg(dir);
    }
    cmd.env("GEARMAN_SERVERS", &request.servers)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!(
        "{} {} --describe",
        side.perl.display(),
        side.runner.display()
    );
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let body = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A runner that died at once shows in its exit status and stderr below.
        let _ = stdin.write_all(&body);
    }
    let status = wait_bounded(&mut child, DESCRIBE_TIMEOUT)
        .map_err(|e| format!("{shown}: {e}; a module may be stuck while loading"))?;
    let stdout = stdout.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
    if !status.success() {
        return Err(format!(
            "{shown} failed ({status}) loading the Perl modules: {}",
            last_lines(&stderr, 20)
        ));
    }
    let answer: Answer = serde_json::from_slice(&stdout).map_err(|e| {
        format!(
            "{shown} gave no answer gearman-driver understands ({e}); a module may have exited while loading: {}",
            last_lines(&stderr, 20)
        )
    })?;
    let expected: Vec<&str> = request.modules.iter().map(|m| m.module.as_str()).collect();
    let got: Vec<&str> = answer.modules.iter().map(|m| m.module.as_str()).collect();
    if expected != got {
        return Err(format!(
            "{shown} described {got:?} when asked about {expected:?}"
        ));
    }
    Ok(answer.modules)
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut out);
        }
        out
    })
}

fn wait_bounded(
    child: &mut std::process::Child,
    limit: Duration,
) -> Result<std::process::ExitStatus, String> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {} s", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for it: {e}")),
        }
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    let tail = lines[start..].join("\n");
    if tail.is_empty() {
        "(nothing on stderr)".into()
    } else {
        tail
    }
}

/// The line Perl names for `file` in an error message (`... at FILE line 12.`).
pub fn line_in_message(message: &str, file: &Path) -> Option<usize> {
    let needle = format!("{} line ", file.display());
    let start = message.find(&needle)? + needle.len();
    let digits: String = message[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_line_perl_names() {
        let msg = "syntax error at /w/T/Bad.pm line 4, near \"= ;\"";
        assert_eq!(line_in_message(msg, Path::new("/w/T/Bad.pm")), Some(4));
        assert_eq!(line_in_message(msg, Path::new("/w/T/Other.pm")), None);
    }

    #[test]
    fn parses_the_answer() {
        let json = r#"{"modules":[{"module":"A","status":"worker","prefix":"A::",
            "default_attributes":{"Encode":"encode","ProcessGroup":null},"override_attributes":{},
            "methods":[{"name":"x","attributes":["Job"],"file":"/l/A.pm","line":3}],
            "can":["x"],"digest":"d","file":"/l/A.pm"},
            {"module":"B","status":"not_worker","reason":"no"},
            {"module":"C","status":"error","error":"boom"}]}"#;
        let answer: Answer = serde_json::from_str(json).unwrap();
        assert_eq!(answer.modules[0].default_attributes["ProcessGroup"], None);
        assert_eq!(answer.modules[1].status, Status::NotWorker);
        assert_eq!(answer.modules[2].error.as_deref(), Some("boom"));
    }
}
