//! The one command layer behind every door. The console (TCP or Unix
//! socket) and the HTTP API each parse their input into a [`Request`]; the
//! supervisor answers it with [`execute`] against its [`Pools`]; each door
//! renders the [`Answer`] its own way (console lines, HTTP status and JSON).
//! So the rules of `set_processes` and friends, their checks in order and
//! their `ERR` texts exist once, whichever way a command came in.
//!
//! - [`Request`]: what can be asked, already parsed but not yet validated
//!   (a count that is not a number is carried as [`Count::Invalid`] so that
//!   validation, and its error text, stays here).
//! - [`Answer`] and [`CommandError`]: what comes back.
//! - [`Pools`]: what the supervisor lets commands see and change.
//! - [`Envelope`]: a request on its way to the supervisor loop, with the peer
//!   it came from (for the audit log) and where the answer goes.
//! - [`view`]: the status view behind `/api/status` and the console's
//!   `status` and `ps`.
//! - [`Lifecycle`]: whether the supervisor is supervising or shutting down,
//!   readable by every door without asking the loop.

mod execute;
#[cfg(test)]
pub(crate) mod fake;
pub mod view;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::schedule::ScheduleState;
use crate::supervisor::WorkerId;

pub use execute::{audit, execute, reload_answer, upgrade_answer, version};
pub use view::Overview;

/// A process count as given by a client: a valid one, or something that
/// is not a count (text, a negative or fractional number, a missing word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Valid(u32),
    Invalid,
}

impl Count {
    /// A count as Gearman::Driver's console accepted it: digits only.
    pub fn parse(word: Option<&str>) -> Count {
        match word {
            Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().map_or(Count::Invalid, Count::Valid)
            }
            _ => Count::Invalid,
        }
    }

    /// A count from JSON: a non-negative integer that fits.
    pub fn from_json(value: &serde_json::Value) -> Count {
        value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map_or(Count::Invalid, Count::Valid)
    }
}

/// Everything a client can ask of the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Status,
    /// The whole status view (`/api/status`).
    Overview,
    Show {
        job: String,
    },
    Ps,
    /// `set_min_processes` (only `min`), `set_max_processes` (only `max`),
    /// `set_processes` (both), or the HTTP API's either-or-both.
    SetLimits {
        job: String,
        min: Option<Count>,
        max: Option<Count>,
    },
    /// SIGTERM to those of `pids` that are ours (a slot has no PID: only
    /// `killall` reaches it).
    Kill {
        pids: Vec<u32>,
    },
    /// Every member of the jobs (processes and slots); `*` alone means
    /// every job.
    KillAll {
        jobs: Vec<String>,
    },
    Reload,
    Shutdown,
    /// Re-execute the binary in place, keeping every worker (see
    /// [`crate::upgrade`]); answered once the new binary passed `check`.
    Upgrade,
    Version,
    /// The `[[schedule]]` entries: next run, last run and its result.
    Schedules,
    Help,
    Quit,
    Unknown {
        command: String,
    },
}

impl Request {
    /// Whether the request changes the supervisor's state (and is audited).
    pub fn changes_state(&self) -> bool {
        matches!(
            self,
            Request::SetLimits { .. }
                | Request::Kill { .. }
                | Request::KillAll { .. }
                | Request::Reload
                | Request::Upgrade
                | Request::Shutdown
        )
    }
}

impl fmt::Display for Request {
    /// As a console line, for the audit log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |c: &Count| match c {
            Count::Valid(n) => n.to_string(),
            Count::Invalid => "?".into(),
        };
        match self {
            Request::Status => write!(f, "status"),
            Request::Overview => write!(f, "status (as JSON)"),
            Request::Show { job } => write!(f, "show {job}"),
            Request::Ps => write!(f, "ps"),
            Request::SetLimits { job, min, max } => match (min, max) {
                (Some(min), Some(max)) => {
                    write!(f, "set_processes {job} {} {}", count(min), count(max))
                }
                (Some(min), None) => write!(f, "set_min_processes {job} {}", count(min)),
                (None, Some(max)) => write!(f, "set_max_processes {job} {}", count(max)),
                (None, None) => write!(f, "set_processes {job}"),
            },
            Request::Kill { pids } => {
                let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
                write!(f, "kill {}", pids.join(" "))
            }
            Request::KillAll { jobs } => write!(f, "killall {}", jobs.join(" ")),
            Request::Reload => write!(f, "reload"),
            Request::Upgrade => write!(f, "upgrade"),
            Request::Shutdown => write!(f, "shutdown"),
            Request::Version => write!(f, "version"),
            Request::Schedules => write!(f, "schedules"),
            Request::Help => write!(f, "help"),
            Request::Quit => write!(f, "quit"),
            Request::Unknown { command } => write!(f, "{command}"),
        }
    }
}

/// What a command failed with; shown as `ERR <kind>: <detail>`, or
/// `ERR <detail>` for kinds without a label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    pub kind: ErrorKind,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidJobName,
    InvalidValue,
    UnknownCommand,
    /// A reload whose configuration has errors.
    InvalidConfig,
    /// Refused by a door: no or a wrong admin token.
    Unauthorized,
    /// An upgrade that cannot go ahead; nothing changed.
    UpgradeRefused,
}

impl ErrorKind {
    /// The word before the colon in Gearman::Driver's error lines; errors
    /// the original did not have are plain sentences.
    pub fn label(self) -> Option<&'static str> {
        match self {
            ErrorKind::InvalidJobName => Some("invalid_job_name"),
            ErrorKind::InvalidValue => Some("invalid_value"),
            ErrorKind::UnknownCommand => Some("unknown_command"),
            ErrorKind::UpgradeRefused => Some("upgrade refused"),
            ErrorKind::InvalidConfig | ErrorKind::Unauthorized => None,
        }
    }
}

impl CommandError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> CommandError {
        CommandError {
            kind,
            detail: detail.into(),
        }
    }

    /// The console's error line, e.g. `ERR invalid_job_name: nope`.
    pub fn line(&self) -> String {
        match self.kind.label() {
            Some(label) => format!("ERR {label}: {}", self.detail),
            None => format!("ERR {}", self.detail),
        }
    }
}

/// The answer to one request, before a door renders it.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Done; the console says `OK`.
    Ok,
    /// Done, with lines to show (a reload's changes).
    OkWith(Vec<String>),
    /// Lines of information (`help`, `version`).
    Text(Vec<String>),
    Status(Vec<JobRow>),
    Show {
        row: JobRow,
        pids: Vec<u32>,
    },
    Processes(Vec<ProcRow>),
    Schedules(Vec<ScheduleState>),
    Overview(Box<Overview>),
    /// `quit`: the door closes the conversation.
    Close,
    /// Failed; `details` are further lines (a rejected reload's errors).
    Failed {
        error: CommandError,
        details: Vec<String>,
    },
}

impl Answer {
    pub fn failed(kind: ErrorKind, detail: impl Into<String>) -> Answer {
        Answer::Failed {
            error: CommandError::new(kind, detail),
            details: Vec::new(),
        }
    }

    pub fn is_failure(&self) -> bool {
        matches!(self, Answer::Failed { .. })
    }
}

/// A job's row: the console's `status` line, before formatting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub name: String,
    pub min: u32,
    pub max: u32,
    pub processes: usize,
    pub lastrun: i64,
    pub lasterror: i64,
    pub lasterror_msg: String,
}

/// A member's row: the console's `ps` line, before formatting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcRow {
    /// `None` for an http slot.
    pub pid: Option<u32>,
    pub job: String,
    pub state: String,
    pub jobs_done: u64,
    pub uptime: Duration,
    pub rss_kib: Option<u64>,
}

/// The outcome of re-reading the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Applied; one line per change (or `nothing changed`).
    Applied(Vec<String>),
    /// The new configuration has errors; nothing changed.
    Rejected(Vec<String>),
}

/// What commands may see and change; the supervisor implements it.
pub trait Pools {
    /// Every job, sorted by name.
    fn job_rows(&mut self) -> Vec<JobRow>;
    /// The job's members (processes and slots), or `None` for no such job.
    fn job_members(&self, name: &str) -> Option<Vec<WorkerId>>;
    fn limits(&self, name: &str) -> Option<(u32, u32)>;
    fn set_limits(&mut self, name: &str, min: Option<u32>, max: Option<u32>);
    /// The member with this PID, if it is ours.
    fn member_with_pid(&self, pid: u32) -> Option<WorkerId>;
    /// Ends the members: SIGTERM to processes, a slot stops at once.
    fn kill(&mut self, members: &[WorkerId]);
    fn proc_rows(&self) -> Vec<ProcRow>;
    fn overview(&mut self) -> Overview;
    fn shutdown(&mut self);
    fn reload(&mut self) -> ReloadOutcome;
    /// Why an upgrade cannot start now, if it cannot (one is under way,
    /// the supervisor is shutting down). The supervisor answers an upgrade
    /// that may start once the new binary passed `check`.
    fn upgrade_blocked(&self) -> Option<String>;
    /// Every schedule, sorted by name.
    fn schedules(&self) -> Vec<ScheduleState>;
}

/// Whether the supervisor is still supervising; set by the supervisor,
/// read by the doors (`/healthz`) without a round trip through its loop.
#[derive(Debug, Default)]
pub struct Lifecycle {
    shutting_down: AtomicBool,
}

impl Lifecycle {
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}

/// Where a request came from, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    Console(String),
    Http(String),
    /// The supervisor itself (signals).
    Internal,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Console(addr) => write!(f, "console {addr}"),
            Peer::Http(addr) => write!(f, "http {addr}"),
            Peer::Internal => write!(f, "signal"),
        }
    }
}

/// A request on its way to the supervisor loop.
pub struct Envelope {
    pub request: Request,
    pub peer: Peer,
    pub reply: oneshot::Sender<Answer>,
}

/// Sends requests to the supervisor loop and awaits the answers; each door
/// holds a clone.
#[derive(Clone)]
pub struct Handle {
    tx: tokio::sync::mpsc::Sender<Envelope>,
    /// State-changing requests answered so far, through any door.
    changes: Arc<AtomicU64>,
}

impl Handle {
    pub fn new(tx: tokio::sync::mpsc::Sender<Envelope>) -> Handle {
        Handle {
            tx,
            changes: Arc::default(),
        }
    }

    /// The answer, or `None` once the supervisor has gone.
    pub async fn ask(&self, request: Request, peer: Peer) -> Option<Answer> {
        let (reply, answer) = oneshot::channel();
        let changes_state = request.changes_state();
        self.tx
            .send(Envelope {
                request,
                peer,
                reply,
            })
            .await
            .ok()?;
        let answer = answer.await.ok();
        // Counted before the asker sees the answer, so that whatever it
        // reads next is a view made after its change.
        if changes_state {
            self.changes.fetch_add(1, Ordering::SeqCst);
        }
        answer
    }

    /// How many state-changing requests have been answered: a view made
    /// at another count may show the pool before a change.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
