//! The supervisor's side of an upgrade (the format, the descriptors, the
//! check and the exec are [`crate::upgrade`]'s):
//!
//! - asked (SIGUSR2, `upgrade`, `POST /api/upgrade`), it has the new binary
//!   checked off the loop and answers `OK` or `ERR upgrade refused: ...`;
//! - then it quiesces: no process is started or stopped by the policy any
//!   more, every process gives its pipes back between jobs (a busy one
//!   answers its job first: no job crosses the exec, so none can be lost),
//!   http slots stop after their job (the next image starts its own);
//! - once every member has been handed over or has exited, the loop ends
//!   with the [`Prepared`] hand-over, which `main` executes on the main
//!   thread;
//! - the next image (or this one, if the exec failed) builds its supervisor
//!   from it with [`Supervisor::adopt`]: the same path either way.
//!
//! The upgrade waits as long as jobs in flight run: a job's `timeout` bounds
//! it, and the console and HTTP stay served meanwhile.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::mpsc;

use super::events::StopReason;
use super::member::WorkerId;
use super::pools::{Job, Proc};
use super::sampling::{ExitWatch, Usage};
use super::spawn::{signal_group, Spawned};
use super::stdio::ProcessSetup;
use super::{gearman_proc, stdio, Supervisor};
use crate::command::{self, Envelope};
use crate::config::{JobSpec, Protocol};
use crate::metrics::CounterValue;
use crate::schedule::{self, LastRun, RunCounts, RunResult, ScheduleState};
use crate::upgrade::state::{
    self, CounterState, GearmanState, HandOver, JobState, LastRunState, Launch, MemberState,
    ScheduleCarried, StdioState, Worker,
};
use crate::upgrade::{fds, Fds, Origin, Prepared};

/// A process's pipes as its task begins.
pub struct Pipes {
    pub stdin: ChildStdin,
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
    /// Output read before (by the previous image) and not yet parsed.
    pub stdout_unread: Vec<u8>,
}

/// How a process task begins: a process just started, or one adopted.
pub struct Begin {
    pub pipes: Pipes,
    /// It has printed READY already (stdio).
    pub ready: bool,
    pub jobs_done: u64,
    pub started: Instant,
}

impl Begin {
    pub fn fresh(spawned: Spawned) -> Begin {
        Begin {
            pipes: Pipes {
                stdin: spawned.stdin,
                stdout: spawned.stdout,
                stderr: spawned.stderr,
                stdout_unread: Vec::new(),
            },
            ready: false,
            jobs_done: 0,
            started: Instant::now(),
        }
    }
}

/// What a process task gives back: its state and its (duplicated) pipes.
#[derive(Debug)]
pub struct Parts {
    pub worker: Worker,
    pub fds: Vec<OwnedFd>,
    pub jobs_done: u64,
}

/// The parts of a stdio (or exec) process between jobs.
pub fn stdio_parts(
    stdin: &ChildStdin,
    stdout: &ChildStdout,
    stdout_unread: &[u8],
    stderr: RawFd,
    ready: bool,
    jobs_done: u64,
) -> io::Result<Parts> {
    let taken = [
        fds::duplicate(stdin.as_raw_fd())?,
        fds::duplicate(stdout.as_raw_fd())?,
        fds::duplicate(stderr)?,
    ];
    let worker = Worker::Stdio(StdioState {
        stdin: taken[0].as_raw_fd(),
        stdout: taken[1].as_raw_fd(),
        stdout_unread: stdout_unread.to_vec(),
        stderr: taken[2].as_raw_fd(),
        ready,
    });
    Ok(Parts {
        worker,
        fds: taken.into(),
        jobs_done,
    })
}

/// The parts of a gearman-protocol process: stdin, stdout, stderr.
pub fn gearman_parts(pipes: [RawFd; 3], jobs_done: u64) -> io::Result<Parts> {
    let taken = [
        fds::duplicate(pipes[0])?,
        fds::duplicate(pipes[1])?,
        fds::duplicate(pipes[2])?,
    ];
    let worker = Worker::Gearman(GearmanState {
        stdin: taken[0].as_raw_fd(),
        stdout: taken[1].as_raw_fd(),
        stderr: taken[2].as_raw_fd(),
    });
    Ok(Parts {
        worker,
        fds: taken.into(),
        jobs_done,
    })
}

/// Where an upgrade stands.
enum Phase {
    Idle,
    /// The new binary is being checked; these wait for the answer (`None`:
    /// SIGUSR2).
    Checking(Vec<Option<Envelope>>),
    /// Collecting the members' parts.
    HandingOver(BTreeMap<WorkerId, Parts>),
}

type Checked = Result<Vec<String>, String>;

/// Upgrades asked for, and what the hand-over needs from start-up.
pub(super) struct Upgrades {
    origin: Arc<Origin>,
    phase: Phase,
    checked_tx: mpsc::UnboundedSender<Checked>,
    checked_rx: mpsc::UnboundedReceiver<Checked>,
    /// The listening sockets the doors serve (their tasks own them).
    pub(super) listeners: Vec<state::ListenerState>,
    /// Stops the HTTP listener's thread before the exec.
    pub(super) http: Option<crate::http::Running>,
    /// Counters from the image before, until the recorder exists.
    carried_counters: Vec<CounterValue>,
}

impl Upgrades {
    pub(super) fn new(origin: Arc<Origin>) -> Upgrades {
        let (checked_tx, checked_rx) = mpsc::unbounded_channel();
        Upgrades {
            origin,
            phase: Phase::Idle,
            checked_tx,
            checked_rx,
            listeners: Vec::new(),
            http: None,
            carried_counters: Vec::new(),
        }
    }

    /// The check's result, once it is done.
    pub(super) async fn checked(&mut self) -> Option<Checked> {
        self.checked_rx.recv().await
    }

    /// Members are giving their parts back: the policy holds still.
    pub(super) fn handing_over(&self) -> bool {
        matches!(self.phase, Phase::HandingOver(_))
    }

    pub(super) fn blocked(&self, shutting_down: bool) -> Option<String> {
        if shutting_down {
            return Some("the driver is shutting down".into());
        }
        match self.phase {
            Phase::Idle => None,
            _ => Some("an upgrade is under way".into()),
        }
    }
}

impl Supervisor {
    /// SIGUSR2 (`None`) or a request to upgrade.
    pub(super) fn ask_upgrade(&mut self, waiter: Option<Envelope>) {
        if let Some(why) = self.upgrades.blocked(self.shutting_down) {
            tracing::warn!("upgrade refused: {why}");
            return self.answer_upgrade(waiter, Err(why));
        }
        let origin = self.upgrades.origin.clone();
        tracing::info!("upgrade: checking {}", origin.exe.display());
        self.notify.reloading();
        self.upgrades.phase = Phase::Checking(vec![waiter]);
        let done = self.upgrades.checked_tx.clone();
        tokio::spawn(async move {
            let _ = done.send(crate::upgrade::check::run(&origin).await);
        });
    }

    fn answer_upgrade(&mut self, waiter: Option<Envelope>, outcome: Checked) {
        if let Some(envelope) = waiter {
            let answer = command::upgrade_answer(outcome);
            command::audit(&envelope.peer, &envelope.request, &answer);
            let _ = envelope.reply.send(answer);
        }
    }

    /// The check is done: refuse (nothing changed), or begin handing over.
    pub(super) fn on_checked(&mut self, outcome: Checked) {
        let Phase::Checking(waiters) = std::mem::replace(&mut self.upgrades.phase, Phase::Idle)
        else {
            return;
        };
        match &outcome {
            Err(why) => {
                tracing::error!("upgrade refused: {why}");
                self.notify.reloaded();
            }
            Ok(_) => {
                tracing::info!("upgrade: the new binary passed check; handing over");
                self.upgrades.phase = Phase::HandingOver(BTreeMap::new());
            }
        }
        for waiter in waiters {
            self.answer_upgrade(waiter, outcome.clone());
        }
        if outcome.is_ok() {
            for job in self.jobs.values_mut() {
                for proc in job.procs.values_mut() {
                    let _ = proc.control.send(super::events::Control::HandOver);
                }
            }
        }
    }

    /// A member gave its parts back.
    pub(super) fn on_handed_over(&mut self, id: WorkerId, parts: Parts) {
        if let Phase::HandingOver(handed) = &mut self.upgrades.phase {
            handed.insert(id, parts);
        }
    }

    /// Every member has been handed over or is gone: the hand-over, ready
    /// for the exec.
    pub(super) fn handover_complete(&mut self) -> Option<Box<Prepared>> {
        let Phase::HandingOver(handed) = &self.upgrades.phase else {
            return None;
        };
        let waiting = self
            .jobs
            .values()
            .flat_map(|j| j.procs.keys())
            .any(|id| !handed.contains_key(id));
        if waiting {
            return None;
        }
        let Phase::HandingOver(handed) = std::mem::replace(&mut self.upgrades.phase, Phase::Idle)
        else {
            return None;
        };
        Some(Box::new(self.hand_over(handed)))
    }

    fn hand_over(&mut self, mut handed: BTreeMap<WorkerId, Parts>) -> Prepared {
        let mut held = Fds::new();
        let mut listeners = Vec::new();
        for listener in &self.upgrades.listeners {
            match fds::duplicate(listener.fd) {
                Ok(fd) => listeners.push(state::ListenerState {
                    fd: held.add(fd),
                    ..listener.clone()
                }),
                Err(err) => tracing::error!("cannot hand over {}: {err}", listener.bind),
            }
        }
        let mut members = Vec::new();
        let mut jobs = Vec::new();
        for (name, job) in &self.jobs {
            if !job.removed {
                jobs.push(job_state(name, job));
            }
            for (id, proc) in &job.procs {
                let (Some(parts), Some(pid)) = (handed.remove(id), id.pid()) else {
                    continue;
                };
                held.extend(parts.fds);
                members.push(MemberState {
                    job: name.clone(),
                    seq: id.seq(),
                    pid,
                    started_ms: state::epoch_ms(proc.started),
                    jobs_done: parts.jobs_done,
                    worker: parts.worker,
                    cpu_seconds_counted: proc.usage.last.map(|u| u.cpu_seconds),
                });
            }
        }
        let state = HandOver {
            format: state::FORMAT,
            from_version: crate::version(),
            written_at_ms: state::now_ms(),
            exe: self.upgrades.origin.exe.to_string_lossy().into_owned(),
            argv: self.upgrades.origin.argv.clone(),
            started: self.started_epoch,
            next_seq: self.next_seq,
            listeners,
            jobs,
            members,
            counters: self.metrics.as_ref().map_or_else(Vec::new, |m| {
                m.export_counters().into_iter().map(counter_state).collect()
            }),
            schedules: self
                .schedules
                .states()
                .iter()
                .map(schedule_carried)
                .collect(),
        };
        tracing::info!(
            "upgrade: handing over {} process(es) and {} listener(s) to {}",
            state.members.len(),
            state.listeners.len(),
            self.upgrades.origin.exe.display()
        );
        Prepared {
            state,
            fds: held,
            http: self.upgrades.http.take(),
        }
    }

    /// Builds the supervisor of a new image (or of this one, after an exec
    /// that failed) from a hand-over: the state, then every process adopted
    /// with its pipes. Processes of a job whose files changed, or that is
    /// gone, stop after their job, as on reload.
    pub fn adopt(mut self, state: HandOver, mut held: Fds) -> Self {
        self.started_epoch = state.started;
        self.next_seq = self.next_seq.max(state.next_seq);
        for carried in &state.jobs {
            if let Some(job) = self.jobs.get_mut(&carried.name) {
                restore_job(job, carried);
            }
        }
        for carried in &state.schedules {
            self.schedules.restore(schedule_restored(carried));
        }
        self.upgrades.carried_counters = state.counters.iter().map(counter_value).collect();
        let launches: BTreeMap<&str, &Launch> = state
            .jobs
            .iter()
            .map(|j| (j.name.as_str(), &j.launch))
            .collect();
        for member in state.members {
            let pipes = match take_pipes(&member.worker, &mut held) {
                Ok(pipes) => pipes,
                Err(err) => {
                    tracing::error!(pid = member.pid, job = member.job, "cannot adopt: {err}");
                    tokio::spawn(end_orphan(member.pid, self.settings.shutdown_timeout));
                    continue;
                }
            };
            let same = launches
                .get(member.job.as_str())
                .zip(self.jobs.get(&member.job))
                .is_some_and(|(launch, job)| **launch == launch_of(&job.spec));
            self.adopt_member(member, pipes, same);
        }
        self
    }

    fn adopt_member(&mut self, member: MemberState, pipes: Pipes, same: bool) {
        let kind_fits = |spec: &JobSpec| match member.worker {
            Worker::Stdio(_) => matches!(spec.protocol, Protocol::Stdio | Protocol::Exec),
            Worker::Gearman(_) => spec.protocol == Protocol::Gearman,
        };
        let Some(job) = self
            .jobs
            .get_mut(&member.job)
            .filter(|j| kind_fits(&j.spec))
        else {
            tracing::info!(
                pid = member.pid,
                job = member.job,
                "its job is gone from the configuration; stopping the process"
            );
            drop(pipes);
            tokio::spawn(end_orphan(member.pid, self.settings.shutdown_timeout));
            return;
        };
        let id = WorkerId::process(member.seq, member.pid);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let setup = ProcessSetup {
            id,
            pid: member.pid,
            job: job.spec.clone(),
            servers: self.servers.clone(),
            events: self.events_tx.clone(),
            control: control_rx,
            shutdown_timeout: self.settings.shutdown_timeout,
            arming: job.arming.clone(),
        };
        let started = state::instant(member.started_ms);
        let ready = matches!(&member.worker, Worker::Stdio(s) if s.ready);
        let begin = Begin {
            pipes,
            ready,
            jobs_done: member.jobs_done,
            started,
        };
        match member.worker {
            Worker::Stdio(_) => tokio::spawn(stdio::run(setup, begin)),
            Worker::Gearman(_) => tokio::spawn(gearman_proc::run(setup, begin)),
        };
        let mut proc = Proc::new(control_tx);
        proc.started = started;
        proc.jobs_done = member.jobs_done;
        proc.usage.last = member.cpu_seconds_counted.map(|cpu_seconds| Usage {
            cpu_seconds,
            rss_bytes: 0,
        });
        if !same {
            tracing::info!(
                pid = member.pid,
                job = member.job,
                "its job changed in the files; the process stops after its job"
            );
            proc.stop(StopReason::Reload);
        }
        job.procs.insert(id, proc);
        self.owner.insert(id, member.job.clone());
    }
}

impl Supervisor {
    /// The counters of the image before onto the recorder, once it exists
    /// and before `/metrics` is served (a scrape in between would see a
    /// reset).
    pub(super) fn restore_carried_counters(&mut self) {
        let carried = std::mem::take(&mut self.upgrades.carried_counters);
        if let Some(metrics) = self.metrics.as_mut() {
            metrics.restore_counters(&carried, &self.jobs);
        }
    }
}

fn counter_state(value: CounterValue) -> CounterState {
    CounterState {
        name: value.name,
        labels: value.labels,
        value: value.value,
    }
}

fn counter_value(carried: &CounterState) -> CounterValue {
    CounterValue {
        name: carried.name.clone(),
        labels: carried.labels.clone(),
        value: carried.value,
    }
}

fn schedule_carried(schedule: &ScheduleState) -> ScheduleCarried {
    ScheduleCarried {
        name: schedule.name.clone(),
        when: schedule.when.clone(),
        next_run_ms: schedule.next_run.map(|t| t.timestamp_millis()),
        last: schedule.last_run.as_ref().map(|l| LastRunState {
            scheduled_ms: l.scheduled.timestamp_millis(),
            result: l.result.as_str().to_string(),
            detail: l.detail.clone(),
        }),
        submitted: schedule.runs.submitted,
        failed: schedule.runs.failed,
        missed: schedule.runs.missed,
    }
}

fn schedule_restored(carried: &ScheduleCarried) -> schedule::Carried {
    let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms);
    schedule::Carried {
        name: carried.name.clone(),
        when: carried.when.clone(),
        next_run: carried.next_run_ms.and_then(at),
        last: carried.last.as_ref().and_then(|l| {
            Some(LastRun {
                scheduled: at(l.scheduled_ms)?,
                result: RunResult::named(&l.result)?,
                detail: l.detail.clone(),
            })
        }),
        runs: RunCounts {
            submitted: carried.submitted,
            failed: carried.failed,
            missed: carried.missed,
        },
    }
}

fn job_state(name: &str, job: &Job) -> JobState {
    let now = Instant::now();
    JobState {
        name: name.to_string(),
        min: job.min,
        max: job.max,
        declared_min: job.spec.min_processes,
        declared_max: job.spec.max_processes,
        lastrun: job.lastrun,
        lasterror: job.lasterror,
        lasterror_msg: job.lasterror_msg.clone(),
        failures: job.failures,
        backoff_until_ms: job.blocked_until.filter(|t| *t > now).map(state::epoch_ms),
        done: job.tally.done,
        failed: job.tally.failed,
        timeouts: job.tally.timeouts,
        launch: launch_of(&job.spec),
    }
}

/// A job's state onto the job of the same name in the new configuration.
/// Limits set from the console survive unless the files changed them (as
/// on reload).
fn restore_job(job: &mut Job, carried: &JobState) {
    let declared = (job.spec.min_processes, job.spec.max_processes);
    if declared == (carried.declared_min, carried.declared_max) {
        job.min = carried.min;
        job.max = carried.max;
    }
    job.lastrun = carried.lastrun;
    job.lasterror = carried.lasterror;
    job.lasterror_msg = carried.lasterror_msg.clone();
    job.failures = carried.failures;
    job.blocked_until = carried.backoff_until_ms.map(state::instant);
    job.tally.done = carried.done;
    job.tally.failed = carried.failed;
    job.tally.timeouts = carried.timeouts;
}

/// What decides whether a process still fits its job's configuration.
fn launch_of(spec: &JobSpec) -> Launch {
    Launch {
        protocol: format!("{:?}", spec.protocol).to_lowercase(),
        dir: spec.dir.to_string_lossy().into_owned(),
        command: spec.command.clone(),
        env: spec.env.clone(),
        options_json: spec.options_json.clone(),
        functions: spec
            .functions
            .iter()
            .map(|f| format!("{}={}", f.key, f.function))
            .collect(),
        code_digest: spec.code_digest.clone(),
    }
}

fn take_pipes(worker: &Worker, held: &mut Fds) -> io::Result<Pipes> {
    let [stdin, stdout, stderr] = worker.fds();
    let (stdin, stdout, stderr) = (held.take(stdin)?, held.take(stdout)?, held.take(stderr)?);
    let stdout_unread = match worker {
        Worker::Stdio(s) => s.stdout_unread.clone(),
        Worker::Gearman(_) => Vec::new(),
    };
    Ok(Pipes {
        stdin: ChildStdin::from_std(std::process::ChildStdin::from(stdin))?,
        stdout: ChildStdout::from_std(std::process::ChildStdout::from(stdout))?,
        stderr: ChildStderr::from_std(std::process::ChildStderr::from(stderr))?,
        stdout_unread,
    })
}

/// Stops and reaps a process that cannot be adopted (its pipes are gone,
/// or its job is): SIGTERM, then SIGKILL if it does not exit in time.
async fn end_orphan(pid: u32, grace: Duration) {
    let mut exit = ExitWatch::new(pid);
    signal_group(pid, Signal::SIGTERM);
    if tokio::time::timeout(grace, exit.wait()).await.is_err() {
        signal_group(pid, Signal::SIGKILL);
        let _ = exit.wait().await;
    }
}
