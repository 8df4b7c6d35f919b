//! One stdio-protocol process (also an exec slot's resident helper): its
//! pipes, and the executor side of its member task: each job the grab loop
//! ([`crate::gearman::grab`]) hands over is written to the process's stdin,
//! and its answers are relayed back.
//!
//! The loop is a small state machine driven by one `select!` over the
//! worker's framed stdout, the grab loop's connections, supervisor control
//! and a single timer. When the process dies with a job in flight, its
//! connections are dropped without an answer, so gearmand hands the job to
//! another worker.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use nix::sys::signal::Signal;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::process::ChildStdin;
use tokio::sync::mpsc;
use tokio::time::sleep_until;
use tokio_util::codec::FramedRead;

use super::events::{Control, Event, ExitCause, JobOutcome, StopReason};
use super::handover::{self, Begin};
use super::member::{recycling_due, WorkerId};
use super::sampling::ExitWatch;
use super::spawn::{describe_exit, signal_group};
use crate::config::{JobSpec, Protocol};
use crate::gearman::arming::Arming;
use crate::gearman::grab::{self, Assignment, GrabLoop, Then};
use crate::gearman::PacketType;
use crate::protocol::{job_header, WorkerCodec, WorkerFrame};

/// Jobs up to this size (header and workload) are written to the worker in
/// one go; it is the Linux pipe's default capacity.
const INLINE_WRITE_MAX: usize = 64 * 1024;
/// How long a process gets between its stop signal (or SIGTERM) and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// Extra time the supervisor allows an exec slot beyond the job's timeout,
/// so that the slot fails the job itself and survives.
const EXEC_TIMEOUT_SLACK: Duration = Duration::from_secs(5);

/// What a member task needs from the supervisor (a slot's `pid` is 0).
pub struct ProcessSetup {
    pub id: WorkerId,
    pub pid: u32,
    pub job: Arc<JobSpec>,
    pub servers: Arc<Vec<String>>,
    pub events: mpsc::UnboundedSender<Event>,
    pub control: mpsc::UnboundedReceiver<Control>,
    pub shutdown_timeout: Duration,
    /// The job's arming, shared by its members' grab loops.
    pub arming: Arming,
}

enum Phase {
    Starting {
        deadline: Instant,
    },
    /// Ready; the grab loop asks for work or sleeps.
    Idle,
    Busy(InFlight),
    /// Stdin closed and connections dropped; waiting for it to exit.
    Draining {
        signal_at: Instant,
        next: Option<Signal>,
    },
}

struct InFlight {
    function: Bytes,
    started: Instant,
    deadline: Option<(Instant, Duration)>,
}

enum Wake {
    Frame(Option<Result<WorkerFrame, crate::protocol::ProtocolError>>),
    Grab(grab::Wake),
    Control(Option<Control>),
    Exited(std::io::Result<std::process::ExitStatus>),
    Timer,
}

struct StdioProcess {
    setup: ProcessSetup,
    exit: ExitWatch,
    frames: FramedRead<tokio::process::ChildStdout, WorkerCodec>,
    /// The worker's stdin; dropping it is how a stdio process is asked to exit.
    stdin: Option<BufWriter<ChildStdin>>,
    /// Frames read while a large workload was being written, handled next.
    early_frames: VecDeque<Option<Result<WorkerFrame, crate::protocol::ProtocolError>>>,
    grab: GrabLoop,
    phase: Phase,
    started: Instant,
    jobs_done: u64,
    stop_requested: bool,
    /// The process has exited and been reported; the loop ends.
    finished: bool,
    /// When a job still running at shutdown is cut short.
    shutdown_deadline: Option<Instant>,
    retire_reason: Option<String>,
    /// Why we asked it to stop (the first request counts).
    stop_reason: Option<StopReason>,
    cause: Option<ExitCause>,
    /// The function of a job cut short by a kill, which gearmand re-queues.
    requeued: Option<Bytes>,
    /// An upgrade asked for its pipes: given back once it is between jobs.
    handing_over: bool,
    /// Its stderr's descriptor (a task of its own reads it), for a hand-over.
    stderr_fd: std::os::fd::RawFd,
}

/// Runs the process until it has exited and been reaped.
/// `begin` is a process just started, or one adopted across an upgrade.
pub async fn run(setup: ProcessSetup, begin: Begin) {
    let Begin {
        pipes,
        ready,
        jobs_done,
        started,
    } = begin;
    let stderr_fd = std::os::fd::AsRawFd::as_raw_fd(&pipes.stderr);
    tokio::spawn(super::output::log_stderr(
        setup.pid,
        setup.job.clone(),
        pipes.stderr,
    ));
    let grab = new_grab_loop(&setup);
    let start_timeout = setup.job.start_timeout;
    let mut frames = FramedRead::with_capacity(pipes.stdout, WorkerCodec::new(), 64 * 1024);
    frames
        .read_buffer_mut()
        .extend_from_slice(&pipes.stdout_unread);
    let mut process = StdioProcess {
        exit: ExitWatch::new(setup.pid),
        frames,
        stdin: Some(BufWriter::with_capacity(INLINE_WRITE_MAX, pipes.stdin)),
        early_frames: VecDeque::new(),
        grab,
        phase: Phase::Starting {
            deadline: Instant::now() + start_timeout,
        },
        started,
        jobs_done,
        stop_requested: false,
        finished: false,
        shutdown_deadline: None,
        retire_reason: None,
        stop_reason: None,
        cause: None,
        requeued: None,
        handing_over: false,
        stderr_fd,
        setup,
    };
    if ready {
        process.became_ready().await;
    }
    process.run().await;
}

/// The member's grab loop, for the functions of its job.
pub fn new_grab_loop(setup: &ProcessSetup) -> GrabLoop {
    let functions: Vec<Bytes> = setup
        .job
        .functions
        .iter()
        .map(|f| Bytes::from(f.function.clone()))
        .collect();
    // Jitter by pid (by sequence number for a slot).
    let jitter_seed = setup.id.pid().unwrap_or(setup.id.seq() as u32);
    let who = grab::Member {
        pid: setup.id.pid(),
        job: setup.job.name.clone(),
    };
    GrabLoop::new(who, &setup.servers, functions, jitter_seed, &setup.arming)
}

impl StdioProcess {
    /// The `job` field of this process's log lines.
    fn job(&self) -> &str {
        &self.setup.job.name
    }

    async fn run(&mut self) {
        loop {
            if let Some(frame) = self.early_frames.pop_front() {
                self.on_frame_or_end(frame).await;
                if self.finished {
                    return;
                }
                continue;
            }
            let deadline = self.deadline();
            let wake = tokio::select! {
                frame = self.frames.next() => Wake::Frame(frame),
                w = self.grab.wake() => Wake::Grab(w),
                c = self.setup.control.recv() => Wake::Control(c),
                s = self.exit.wait() => Wake::Exited(s),
                _ = sleep_until(deadline.into()) => Wake::Timer,
            };
            match wake {
                Wake::Frame(frame) => {
                    self.on_frame_or_end(frame).await;
                    if self.finished {
                        return;
                    }
                }
                Wake::Grab(w) => {
                    if let Some(job) = self.grab.on_wake(w).await {
                        self.start_job(job).await;
                    }
                }
                Wake::Control(Some(Control::Stop(reason))) => self.request_stop(reason, None),
                // Processes are killed by signal; this is for slots.
                Wake::Control(Some(Control::Kill)) => self.request_stop(StopReason::Killed, None),
                Wake::Control(Some(Control::Retire(reason, text))) => {
                    self.request_stop(reason, Some(text))
                }
                Wake::Control(Some(Control::HandOver)) => {
                    self.handing_over = true;
                    if self.hand_over_if_between_jobs() {
                        return;
                    }
                }
                Wake::Control(Some(Control::Shutdown)) | Wake::Control(None) => {
                    self.shutdown_deadline = Some(Instant::now() + self.setup.shutdown_timeout);
                    self.request_stop(StopReason::Shutdown, None);
                }
                Wake::Exited(status) => {
                    let status = status.ok();
                    // Answers the worker wrote just before exiting still count.
                    while let Ok(Some(Ok(frame))) =
                        tokio::time::timeout(Duration::from_millis(50), self.frames.next()).await
                    {
                        self.on_frame(frame).await;
                    }
                    return self.exited(status);
                }
                Wake::Timer => self.on_timer().await,
            }
        }
    }

    async fn on_frame_or_end(
        &mut self,
        frame: Option<Result<WorkerFrame, crate::protocol::ProtocolError>>,
    ) {
        match frame {
            Some(Ok(frame)) => self.on_frame(frame).await,
            Some(Err(err)) => self.protocol_error(err.to_string()),
            None => {
                let status = self.reap_after_stdout_closed().await;
                self.exited(status);
            }
        }
    }

    /// Writes the job to the worker. A workload that fits the pipe is
    /// written straight away (the worker is idle, so its pipe is empty);
    /// a larger one is written while the worker's output keeps being read,
    /// so that a worker answering before it has read everything cannot
    /// deadlock with us.
    async fn write_job(&mut self, header: Vec<u8>, workload: Bytes) {
        let Some(stdin) = self.stdin.as_mut() else {
            return;
        };
        // A closed pipe shows up as the process exiting; nothing to do here.
        if header.len() + workload.len() <= INLINE_WRITE_MAX {
            let _ = write_frame(stdin, &header, &workload).await;
            return;
        }
        let write = write_frame(stdin, &header, &workload);
        tokio::pin!(write);
        loop {
            tokio::select! {
                _ = &mut write => return,
                frame = self.frames.next() => {
                    let ended = frame.is_none();
                    self.early_frames.push_back(frame);
                    if ended {
                        return;
                    }
                }
            }
        }
    }

    fn deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let phase = match &self.phase {
            Phase::Starting { deadline } => Some(*deadline),
            Phase::Busy(job) => [job.deadline.map(|(d, _)| d), self.shutdown_deadline]
                .into_iter()
                .flatten()
                .min(),
            Phase::Draining {
                signal_at,
                next: Some(_),
            } => Some(*signal_at),
            Phase::Idle => self.lifetime_end(),
            Phase::Draining { next: None, .. } => None,
        };
        phase.unwrap_or(far)
    }

    fn lifetime_end(&self) -> Option<Instant> {
        self.setup.job.max_lifetime.map(|l| self.started + l)
    }

    fn send_event(&self, event: Event) {
        let _ = self.setup.events.send(event);
    }

    async fn on_frame(&mut self, frame: WorkerFrame) {
        match (&self.phase, frame) {
            (Phase::Starting { .. }, WorkerFrame::Ready) => self.became_ready().await,
            (Phase::Busy(_), WorkerFrame::Data(d)) => {
                self.grab.relay(PacketType::WorkData, vec![d]).await
            }
            (Phase::Busy(_), WorkerFrame::Warning(w)) => {
                self.grab.relay(PacketType::WorkWarning, vec![w]).await
            }
            (Phase::Busy(_), WorkerFrame::Status(n, d)) => {
                self.grab.relay(PacketType::WorkStatus, vec![n, d]).await
            }
            (Phase::Busy(_), WorkerFrame::Done(result)) => {
                let then = self.job_ended(JobOutcome::Done);
                self.grab.complete(result, then).await;
                self.after_job(then);
            }
            (Phase::Busy(_), WorkerFrame::Fail(message)) => {
                let text = String::from_utf8_lossy(&message).into_owned();
                // An exec slot times its commands out itself.
                let outcome = if self.setup.job.protocol == Protocol::Exec
                    && crate::exec_slot::is_timeout_message(&text)
                {
                    JobOutcome::TimedOut(text)
                } else {
                    JobOutcome::Failed(text)
                };
                let then = self.job_ended(outcome);
                self.grab.fail(&message, then).await;
                self.after_job(then);
            }
            (Phase::Draining { .. }, _) => {}
            (_, frame) => {
                self.protocol_error(format!("unexpected {} outside a job", frame_name(&frame)))
            }
        }
    }

    async fn became_ready(&mut self) {
        tracing::debug!(pid = self.setup.pid, job = self.job(), "ready");
        self.send_event(Event::Ready { id: self.setup.id });
        self.phase = Phase::Idle;
        self.grab.start().await;
    }

    async fn start_job(&mut self, job: Assignment) {
        let Some(spec) = self.setup.job.function(&job.function).cloned() else {
            // The grab loop takes only the job's functions.
            return;
        };
        let header = job_header(&spec.key, &job.handle, &job.unique, job.workload.len());
        let timeout = match (self.setup.job.protocol, spec.timeout) {
            (Protocol::Exec, Some(t)) => Some((Instant::now() + t + EXEC_TIMEOUT_SLACK, t)),
            (_, Some(t)) => Some((Instant::now() + t, t)),
            (_, None) => None,
        };
        self.phase = Phase::Busy(InFlight {
            function: job.function.clone(),
            started: Instant::now(),
            deadline: timeout,
        });
        self.send_event(Event::Busy {
            id: self.setup.id,
            function: job.function,
        });
        self.write_job(header, job.workload).await;
    }

    /// Counts the job and tells the grab loop what comes next: the next
    /// job, or (when the process is to stop) nothing.
    fn job_ended(&mut self, outcome: JobOutcome) -> Then {
        self.jobs_done += 1;
        self.send_job_ended(outcome);
        let due = recycling_due(
            &self.setup.job,
            self.jobs_done,
            self.started,
            Instant::now(),
        );
        if let Some((why, text)) = due {
            self.retire(why, text);
        }
        self.phase = Phase::Idle;
        if self.stop_requested || self.retire_reason.is_some() || self.handing_over {
            Then::Stop
        } else {
            Then::Grab
        }
    }

    fn after_job(&mut self, then: Then) {
        if then == Then::Stop && !self.hand_over_if_between_jobs() {
            self.begin_stop();
        }
    }

    /// Gives its pipes back for an upgrade if one asked and the process is
    /// between jobs (or not yet ready) and not on its way out; the task
    /// ends then. A busy process gets here again once its job is answered.
    fn hand_over_if_between_jobs(&mut self) -> bool {
        let between = matches!(self.phase, Phase::Idle | Phase::Starting { .. });
        if !self.handing_over || !between || self.stop_requested || self.retire_reason.is_some() {
            return false;
        }
        // Nothing is asked of gearmand any more; a job it assigned to a
        // GRAB still unanswered goes back to its queue.
        self.grab.close();
        let Some(stdin) = self.stdin.as_ref() else {
            return false;
        };
        let ready = matches!(self.phase, Phase::Idle);
        let parts = handover::stdio_parts(
            stdin.get_ref(),
            self.frames.get_ref(),
            self.frames.read_buffer(),
            self.stderr_fd,
            ready,
            self.jobs_done,
        );
        match parts {
            Ok(parts) => {
                self.send_event(Event::HandedOver {
                    id: self.setup.id,
                    parts: Box::new(parts),
                });
                self.finished = true;
                true
            }
            Err(err) => {
                tracing::error!(
                    pid = self.setup.pid,
                    job = self.job(),
                    "cannot hand the process over: {err}; stopping it"
                );
                self.handing_over = false;
                self.request_stop(StopReason::Shutdown, None);
                false
            }
        }
    }

    /// The job in flight has an answer (or timed out): tell the supervisor
    /// which, with its function and how long it took. An answer that can no
    /// longer reach gearmand leaves the job to be handed out again.
    fn send_job_ended(&mut self, outcome: JobOutcome) {
        let Phase::Busy(job) = &self.phase else {
            return;
        };
        let outcome = if self.grab.deliverable() {
            outcome
        } else {
            JobOutcome::Requeued
        };
        let event = Event::JobEnded {
            id: self.setup.id,
            function: job.function.clone(),
            outcome,
            duration: job.started.elapsed(),
        };
        self.send_event(event);
    }

    fn retire(&mut self, why: StopReason, reason: String) {
        if self.retire_reason.is_none() && !self.stop_requested {
            self.stop_reason.get_or_insert(why);
            tracing::info!(
                pid = self.setup.pid,
                job = self.job(),
                "Recycling: {reason}"
            );
            self.send_event(Event::Retiring {
                id: self.setup.id,
                reason: reason.clone(),
            });
            self.retire_reason = Some(reason);
        }
    }

    fn request_stop(&mut self, why: StopReason, retire: Option<String>) {
        match retire {
            Some(reason) => self.retire(why, reason),
            None => {
                self.stop_reason.get_or_insert(why);
                self.stop_requested = true;
            }
        }
        match self.phase {
            Phase::Busy(_) | Phase::Draining { .. } => {}
            // Dropping the connections while a GRAB is unanswered is safe: a
            // job gearmand assigned meanwhile goes back to its queue.
            _ => self.begin_stop(),
        }
    }

    /// Closes the connections and stdin; the process should exit by itself.
    fn begin_stop(&mut self) {
        if matches!(self.phase, Phase::Draining { .. }) {
            return;
        }
        self.grab.close();
        self.stdin = None;
        let why = self.stop_reason.unwrap_or(StopReason::Shutdown);
        self.cause.get_or_insert(ExitCause::Requested(why));
        self.phase = Phase::Draining {
            signal_at: Instant::now() + self.setup.shutdown_timeout,
            next: Some(self.setup.job.stop_signal),
        };
    }

    fn kill_now(&mut self, cause: ExitCause) {
        self.note_requeued();
        self.grab.close();
        self.stdin = None;
        self.cause.get_or_insert(cause);
        signal_group(self.setup.pid, Signal::SIGTERM);
        self.phase = Phase::Draining {
            signal_at: Instant::now() + KILL_GRACE,
            next: Some(Signal::SIGKILL),
        };
    }

    fn protocol_error(&mut self, message: String) {
        tracing::error!(
            pid = self.setup.pid,
            job = self.job(),
            "Protocol error: {message}; killing the process"
        );
        self.kill_now(ExitCause::ProtocolError(format!(
            "protocol error: {message}"
        )));
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        match &self.phase {
            Phase::Starting { deadline } if now >= *deadline => {
                let secs = self.setup.job.start_timeout.as_secs();
                tracing::error!(
                    pid = self.setup.pid,
                    job = self.job(),
                    "No READY within {secs}s; killing the process"
                );
                signal_group(self.setup.pid, Signal::SIGKILL);
                self.cause = Some(ExitCause::StartFailed(format!("no READY within {secs}s")));
                self.phase = Phase::Draining {
                    signal_at: now,
                    next: None,
                };
            }
            Phase::Busy(job) => {
                if let Some((deadline, limit)) = job.deadline {
                    if now >= deadline {
                        return self.time_out(limit).await;
                    }
                }
                if self.shutdown_deadline.is_some_and(|d| now >= d) {
                    tracing::warn!(
            pid = self.setup.pid,
            job = self.job(),
            "Job still running {}s into the shutdown; killing the process, gearmand will hand the job to another worker",
            self.setup.shutdown_timeout.as_secs_f64()
                    );
                    self.kill_now(ExitCause::Requested(StopReason::Shutdown));
                }
            }
            Phase::Draining {
                signal_at,
                next: Some(sig),
            } if now >= *signal_at => {
                let sig = *sig;
                tracing::warn!(
                    pid = self.setup.pid,
                    job = self.job(),
                    "did not exit in time; sending {}",
                    sig.as_str()
                );
                signal_group(self.setup.pid, sig);
                let next = (sig != Signal::SIGKILL).then_some(Signal::SIGKILL);
                self.phase = Phase::Draining {
                    signal_at: now + KILL_GRACE,
                    next,
                };
            }
            Phase::Idle if self.lifetime_end().is_some_and(|end| now >= end) => {
                let secs = self.setup.job.max_lifetime.unwrap_or_default().as_secs();
                self.retire(
                    StopReason::MaxLifetime,
                    format!("max_lifetime {secs}s reached"),
                );
                self.begin_stop();
            }
            _ => {}
        }
    }

    async fn time_out(&mut self, limit: Duration) {
        let message = format!("timeout after {}s", limit.as_secs());
        tracing::warn!(
            pid = self.setup.pid,
            job = self.job(),
            "Job {message}; killing the process"
        );
        self.send_job_ended(JobOutcome::TimedOut(message.clone()));
        self.grab.fail(message.as_bytes(), Then::Stop).await;
        // Answered: nothing in flight goes back to gearmand.
        self.phase = Phase::Idle;
        self.kill_now(ExitCause::Requested(StopReason::Timeout));
    }

    async fn reap_after_stdout_closed(&mut self) -> Option<std::process::ExitStatus> {
        let exited = self.exit.wait();
        if let Ok(status) = tokio::time::timeout(KILL_GRACE, exited).await {
            return status.ok();
        }
        tracing::warn!(
            pid = self.setup.pid,
            job = self.job(),
            "closed its stdout but kept running; killing it"
        );
        signal_group(self.setup.pid, Signal::SIGKILL);
        self.exit.wait().await.ok()
    }

    /// A job in flight when the process is killed or dies goes back to
    /// gearmand: its connection is dropped without an answer.
    fn note_requeued(&mut self) {
        if let Phase::Busy(job) = &self.phase {
            self.requeued.get_or_insert(job.function.clone());
        }
    }

    fn exited(&mut self, status: Option<std::process::ExitStatus>) {
        self.finished = true;
        self.note_requeued();
        // Dropping the connections hands an unanswered job back to gearmand.
        self.grab.close();
        let described = status
            .as_ref()
            .map(describe_exit)
            .unwrap_or_else(|| "exited".into());
        let cause = match (self.cause.take(), &self.phase) {
            (Some(cause), _) => cause,
            (None, Phase::Starting { .. }) => {
                ExitCause::Unexpected(format!("{described} before READY"))
            }
            (None, Phase::Busy(_)) => {
                tracing::warn!(
                    pid = self.setup.pid,
                    job = self.job(),
                    "died with a job in flight; gearmand will retry it"
                );
                ExitCause::Unexpected(format!("{described} while running a job"))
            }
            (None, _) => ExitCause::Unexpected(described.clone()),
        };
        // Stop the escalation timer of a process already gone.
        signal_group_if_alive(self.setup.pid);
        let event = Event::Exited {
            id: self.setup.id,
            status,
            cause,
            requeued: self.requeued.take(),
            usage: self.exit.take_usage(),
        };
        self.send_event(event);
    }
}

/// Kills what the worker may have left behind in its process group.
fn signal_group_if_alive(pid: u32) {
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
}

fn frame_name(frame: &WorkerFrame) -> &'static str {
    match frame {
        WorkerFrame::Ready => "READY",
        WorkerFrame::Data(_) => "DATA",
        WorkerFrame::Warning(_) => "WARNING",
        WorkerFrame::Status(..) => "STATUS",
        WorkerFrame::Done(_) => "DONE",
        WorkerFrame::Fail(_) => "FAIL",
    }
}

async fn write_frame(
    stdin: &mut BufWriter<ChildStdin>,
    header: &[u8],
    workload: &[u8],
) -> std::io::Result<()> {
    stdin.write_all(header).await?;
    stdin.write_all(workload).await?;
    stdin.flush().await
}
