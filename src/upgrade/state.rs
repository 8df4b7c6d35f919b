//! The hand-over: everything a re-executed driver needs to take over from
//! the image that ran before it in the same process, in one versioned serde
//! struct ([`HandOver`]), written as JSON into a memfd just before `execve`
//! (see [`super::exec`]) and read back first thing by the new image (see
//! [`super::inherit`]).
//!
//! The format is a contract between two versions of the driver, so it lives
//! here and nowhere else: the supervisor's own types are mirrored by plain
//! types of this module rather than serialized as they are, so that changing
//! them cannot change the format by accident.
//!
//! Rules that keep old and new versions talking:
//! - `format` names the layout. A change that an older reader would
//!   misread bumps it, and this version keeps reading the formats listed in
//!   [`READS`] (a committed fixture of each, read by a test, keeps that
//!   true). A field added within a format has a default, so a reader of that
//!   format that does not know it still reads the rest.
//! - A binary that does not read the running driver's format is refused
//!   before the exec (`handover-formats`, see [`super::check`]).
//! - Times are wall-clock epochs in milliseconds (`*_ms`); an `Instant`
//!   means nothing in another image. Durations are milliseconds.
//! - File descriptors are carried by number: they stay open across the exec
//!   (close-on-exec cleared on exactly these) and keep their numbers.
//! - Bytes (output read but not yet parsed) are base64 strings.

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The format this version writes.
pub const FORMAT: u32 = 1;
/// The formats this version reads (the first is the one it writes).
pub const READS: &[u32] = &[1];

/// What crosses the exec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandOver {
    pub format: u32,
    /// The version of the image that wrote it, e.g. `0.1.0`.
    pub from_version: String,
    pub written_at_ms: i64,
    /// The binary's path as the driver was first started, and its argv:
    /// every later upgrade runs the same path again with the same flags.
    pub exe: String,
    pub argv: Vec<String>,
    /// When the driver first started, epoch seconds (`/api/status`'s `started`).
    pub started: i64,
    /// Member sequence numbers continue from here.
    pub next_seq: u64,
    #[serde(default)]
    pub listeners: Vec<ListenerState>,
    #[serde(default)]
    pub jobs: Vec<JobState>,
    #[serde(default)]
    pub members: Vec<MemberState>,
    /// Every metric counter, so that a `rate()` over the upgrade sees no
    /// reset. Absent when the writer served no `/metrics`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counters: Vec<CounterState>,
    /// The `[[schedule]]` entries' runs: counts, last run, next run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleCarried>,
}

/// One metric counter, named and labelled as `/metrics` shows it
/// (`gearman_driver_jobs_total`, `{job, function, outcome}`): those names
/// are a contract of their own, so they key the value here too. A reader
/// that no longer has the series drops the value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CounterState {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A `[[schedule]]` entry's state, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleCarried {
    pub name: String,
    /// Its timing as the console shows it (`every 30s`): the pending run
    /// carries over only to an entry with the same timing.
    pub when: String,
    pub next_run_ms: Option<i64>,
    pub last: Option<LastRunState>,
    pub submitted: u64,
    pub failed: u64,
    pub missed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRunState {
    pub scheduled_ms: i64,
    /// `submitted`, `failed` or `missed`.
    pub result: String,
    pub detail: String,
}

/// A listening socket, inherited so that no connection is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerState {
    pub door: Door,
    /// The address as configured (`127.0.0.1:47300`, the socket's path):
    /// the new image uses the socket only if its settings ask for the same.
    pub bind: String,
    pub fd: RawFd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Door {
    ConsoleTcp,
    ConsoleUnix,
    Http,
}

/// A job's state beyond its configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobState {
    pub name: String,
    /// Limits in force (a console's `set_processes` included).
    pub min: u32,
    pub max: u32,
    /// The limits its files declared, to tell a console's change from a
    /// change in the files (which, as on reload, wins).
    pub declared_min: u32,
    pub declared_max: u32,
    pub lastrun: i64,
    pub lasterror: i64,
    pub lasterror_msg: String,
    /// Quick failures in a row, and the crash-loop backoff in force.
    pub failures: u32,
    pub backoff_until_ms: Option<i64>,
    pub done: u64,
    pub failed: u64,
    pub timeouts: u64,
    /// How its processes were started.
    pub launch: Launch,
}

/// How a job's processes were started: the new image keeps them when its
/// configuration starts them the same way, and otherwise stops them after
/// their job (as a reload does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launch {
    pub protocol: String,
    pub dir: String,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub options_json: String,
    /// `key=function` per function.
    pub functions: Vec<String>,
    pub code_digest: Option<String>,
}

/// One process, adopted by the new image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberState {
    pub job: String,
    pub seq: u64,
    pub pid: u32,
    pub started_ms: i64,
    pub jobs_done: u64,
    pub worker: Worker,
    /// The CPU seconds of its last reading, already counted in
    /// `gearman_driver_workers_cpu_seconds_total`: the new image counts
    /// from there, not from the process's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds_counted: Option<f64>,
}

/// The pipes of a process, by protocol (an exec job's resident helper
/// speaks stdio). At the hand-over a stdio process is between jobs (its job
/// in flight, if any, was answered first), so no Gearman connection and no
/// job crosses the exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "protocol")]
pub enum Worker {
    Stdio(StdioState),
    Gearman(GearmanState),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdioState {
    pub stdin: RawFd,
    pub stdout: RawFd,
    /// Output read from the worker and not yet parsed as frames.
    #[serde(with = "b64")]
    pub stdout_unread: Vec<u8>,
    pub stderr: RawFd,
    /// It printed READY (else it is still starting).
    pub ready: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GearmanState {
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
}

impl Worker {
    /// Its descriptors: stdin, stdout, stderr.
    pub fn fds(&self) -> [RawFd; 3] {
        match self {
            Worker::Stdio(s) => [s.stdin, s.stdout, s.stderr],
            Worker::Gearman(g) => [g.stdin, g.stdout, g.stderr],
        }
    }
}

impl HandOver {
    /// Every descriptor it names.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self.listeners.iter().map(|l| l.fd).collect();
        for member in &self.members {
            fds.extend(member.worker.fds());
        }
        fds
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Plain data: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Reads a hand-over, refusing a format this version does not read.
pub fn parse(bytes: &[u8]) -> Result<HandOver, String> {
    #[derive(Deserialize)]
    struct Probe {
        format: u32,
    }
    let probe: Probe = serde_json::from_slice(bytes)
        .map_err(|e| format!("the hand-over state is not readable: {e}"))?;
    if !READS.contains(&probe.format) {
        return Err(format!(
            "the hand-over state has format {}, this version reads {READS:?}",
            probe.format
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| format!("the hand-over state is not readable: {e}"))
}

/// Now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An instant of this image as epoch milliseconds.
pub fn epoch_ms(at: Instant) -> i64 {
    let now = Instant::now();
    let now_ms = now_ms();
    if at <= now {
        now_ms - now.duration_since(at).as_millis() as i64
    } else {
        now_ms + at.duration_since(now).as_millis() as i64
    }
}

/// Epoch milliseconds as an instant of this image.
pub fn instant(ms: i64) -> Instant {
    let now = Instant::now();
    let delta = ms - now_ms();
    if delta >= 0 {
        now + Duration::from_millis(delta as u64)
    } else {
        now.checked_sub(Duration::from_millis(delta.unsigned_abs()))
            .unwrap_or(now)
    }
}

/// Bytes as a base64 string.
mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The current format as committed: this version must read it, and
    /// write it back unchanged. When the format changes, this fixture stays
    /// (it is then an older format the new version must still read) and a
    /// new one is added beside it.
    const FORMAT_1: &str = include_str!("fixtures/handover-format-1.json");

    #[test]
    fn reads_the_committed_format_1_fixture() {
        let state = parse(FORMAT_1.as_bytes()).expect("format 1 is read");
        assert_eq!(state.format, 1);
        assert_eq!(state.from_version, "0.1.0");
        assert_eq!(state.jobs.len(), 2);
        assert_eq!(state.jobs[0].min, 3, "a console-set limit");
        assert_eq!(state.jobs[0].lasterror_msg, "boom");
        assert_eq!(state.jobs[0].backoff_until_ms, Some(1767225602000));
        let stdio = state
            .members
            .iter()
            .find_map(|m| match &m.worker {
                Worker::Stdio(s) => Some(s),
                _ => None,
            })
            .expect("a stdio member");
        assert_eq!(stdio.stdout_unread, b"DONE 3\nab");
        assert!(stdio.ready);
        assert!(state
            .members
            .iter()
            .any(|m| matches!(m.worker, Worker::Gearman(_))));
        assert_eq!(state.fds(), vec![5, 6, 7, 9, 10, 11, 12, 14, 15]);
        assert!(
            state.counters.is_empty() && state.schedules.is_empty(),
            "fields added within format 1 default to nothing"
        );
        assert!(state
            .members
            .iter()
            .all(|m| m.cpu_seconds_counted.is_none()));
    }

    #[test]
    fn counters_schedules_and_cpu_readings_round_trip() {
        let mut state = parse(FORMAT_1.as_bytes()).unwrap();
        state.counters = vec![CounterState {
            name: "gearman_driver_jobs_total".into(),
            labels: [("job", "A::b"), ("function", "A::b"), ("outcome", "done")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value: 1200.0,
        }];
        state.schedules = vec![ScheduleCarried {
            name: "nightly".into(),
            when: "cron `0 3 * * *` (UTC)".into(),
            next_run_ms: Some(1767236400000),
            last: Some(LastRunState {
                scheduled_ms: 1767150000000,
                result: "submitted".into(),
                detail: "127.0.0.1:4730".into(),
            }),
            submitted: 30,
            failed: 1,
            missed: 0,
        }];
        state.members[0].cpu_seconds_counted = Some(12.25);
        let back = parse(&state.to_json()).expect("reads what it writes");
        assert_eq!(back, state);
    }

    #[test]
    fn the_current_format_writes_the_fixture_back_unchanged() {
        let state = parse(FORMAT_1.as_bytes()).unwrap();
        let written: serde_json::Value = serde_json::from_slice(&state.to_json()).unwrap();
        let committed: serde_json::Value = serde_json::from_str(FORMAT_1).unwrap();
        assert_eq!(
            written, committed,
            "format 1 changed: bump FORMAT, keep this fixture and add one for the new format"
        );
    }

    #[test]
    fn an_unknown_format_is_refused_by_name() {
        let err = parse(br#"{"format": 99}"#).unwrap_err();
        assert!(err.contains("format 99"), "{err}");
        assert!(parse(b"not json").is_err());
    }

    #[test]
    fn fields_added_later_within_a_format_are_ignored_by_this_reader() {
        let mut value: serde_json::Value = serde_json::from_str(FORMAT_1).unwrap();
        value["a_field_from_a_later_version"] = serde_json::json!({"x": 1});
        let state = parse(value.to_string().as_bytes()).unwrap();
        assert_eq!(state.jobs.len(), 2);
    }

    #[test]
    fn instants_cross_as_epoch_milliseconds() {
        let now = Instant::now();
        for offset in [0i64, 1500, -2500] {
            let at = if offset >= 0 {
                now + Duration::from_millis(offset as u64)
            } else {
                now - Duration::from_millis(offset.unsigned_abs())
            };
            let back = instant(epoch_ms(at));
            let diff = if back > at { back - at } else { at - back };
            assert!(diff < Duration::from_millis(50), "{offset}: {diff:?}");
        }
    }
}
