//! One stdio-protocol process: its pipes, its Gearman worker connections (one
//! per server) and the grab loop that asks gearmand for work only while the
//! process is idle.
//!
//! The loop is a small state machine driven by one `select!` over the
//! worker's framed stdout, the server connections, supervisor control and a
//! single timer. Grabbing goes server by server (`GRAB_JOB_UNIQ`; on `NO_JOB`
//! the next one); when every server said `NO_JOB` the process sleeps
//! (`PRE_SLEEP`) until any server wakes it with `NOOP`. When the process dies
//! with a job in flight, its connections are dropped without an answer, so
//! gearmand hands the job to another worker.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use nix::sys::signal::Signal;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio::time::sleep_until;
use tokio_util::codec::FramedRead;

use super::events::{Control, Event, ExitCause, JobOutcome, StopReason};
use super::sampling::ExitWatch;
use super::spawn::{describe_exit, signal_group};
use crate::config::{JobSpec, Protocol};
use crate::gearman::{self, arg, GearmanError, Link, Packet, PacketType};
use crate::protocol::{job_header, WorkerCodec, WorkerFrame};

/// Jobs up to this size (header and workload) are written to the worker in
/// one go; it is the Linux pipe's default capacity.
const INLINE_WRITE_MAX: usize = 64 * 1024;
/// How long a process gets between its stop signal (or SIGTERM) and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// Reconnect backoff to a server that went away. The cap is low so that
/// work flows again within about a second of a restarted gearmand's return;
/// a failed attempt costs one connect, made off the process's loop.
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(1);
/// Extra time the supervisor allows an exec slot beyond the job's timeout,
/// so that the slot fails the job itself and survives.
const EXEC_TIMEOUT_SLACK: Duration = Duration::from_secs(5);

pub struct ProcessSetup {
    pub pid: u32,
    pub job: Arc<JobSpec>,
    pub servers: Arc<Vec<String>>,
    pub events: mpsc::UnboundedSender<Event>,
    pub control: mpsc::UnboundedReceiver<Control>,
    pub shutdown_timeout: Duration,
}

enum Phase {
    Starting {
        deadline: Instant,
    },
    /// Waiting for the answer to a GRAB_JOB_UNIQ sent to `server`.
    Asking {
        server: usize,
        asked: usize,
    },
    Sleeping,
    Busy(InFlight),
    /// Stdin closed and connections dropped; waiting for it to exit.
    Draining {
        signal_at: Instant,
        next: Option<Signal>,
    },
}

struct InFlight {
    server: usize,
    handle: Bytes,
    function: Bytes,
    started: Instant,
    /// False once that server's connection broke: the answer has nowhere to go.
    deliverable: bool,
    deadline: Option<(Instant, Duration)>,
}

struct ServerLink {
    addr: String,
    link: Option<Link>,
    reconnect_at: Option<Instant>,
    backoff: Duration,
    /// A connect task is under way; its result arrives as `Wake::Connected`.
    connecting: bool,
}

/// A connect task's result: the server's index and a registered link.
type Connected = (usize, Result<Link, String>);

enum Wake {
    Frame(Option<Result<WorkerFrame, crate::protocol::ProtocolError>>),
    Packet(usize, Option<Result<Packet, GearmanError>>),
    Control(Option<Control>),
    Exited(std::io::Result<std::process::ExitStatus>),
    Connected(Connected),
    Timer,
}

struct StdioProcess {
    setup: ProcessSetup,
    child: Child,
    exit: ExitWatch,
    frames: FramedRead<tokio::process::ChildStdout, WorkerCodec>,
    /// The worker's stdin; dropping it is how a stdio process is asked to exit.
    stdin: Option<BufWriter<ChildStdin>>,
    /// Frames read while a large workload was being written, handled next.
    early_frames: VecDeque<Option<Result<WorkerFrame, crate::protocol::ProtocolError>>>,
    servers: Vec<ServerLink>,
    connects_tx: mpsc::UnboundedSender<Connected>,
    connects_rx: mpsc::UnboundedReceiver<Connected>,
    phase: Phase,
    next_server: usize,
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
}

/// Runs the process until it has exited and been reaped.
pub async fn run(setup: ProcessSetup, mut child: Child) {
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(super::output::log_stderr(
            setup.pid,
            setup.job.clone(),
            stderr,
        ));
    }
    let servers = setup
        .servers
        .iter()
        .map(|addr| ServerLink {
            addr: addr.clone(),
            link: None,
            reconnect_at: None,
            backoff: RECONNECT_MIN,
            connecting: false,
        })
        .collect();
    let (connects_tx, connects_rx) = mpsc::unbounded_channel();
    let start_timeout = setup.job.start_timeout;
    let mut process = StdioProcess {
        exit: ExitWatch::new(setup.pid),
        child,
        frames: FramedRead::with_capacity(stdout, WorkerCodec::new(), 64 * 1024),
        stdin: Some(BufWriter::with_capacity(INLINE_WRITE_MAX, stdin)),
        early_frames: VecDeque::new(),
        servers,
        connects_tx,
        connects_rx,
        phase: Phase::Starting {
            deadline: Instant::now() + start_timeout,
        },
        next_server: 0,
        started: Instant::now(),
        jobs_done: 0,
        stop_requested: false,
        finished: false,
        shutdown_deadline: None,
        retire_reason: None,
        stop_reason: None,
        cause: None,
        requeued: None,
        setup,
    };
    process.run().await;
}

async fn next_packet(servers: &mut [ServerLink]) -> (usize, Option<Result<Packet, GearmanError>>) {
    poll_fn(|cx| {
        for (i, s) in servers.iter_mut().enumerate() {
            if let Some(link) = s.link.as_mut() {
                if let Poll::Ready(item) = link.poll_next_unpin(cx) {
                    return Poll::Ready((i, item));
                }
            }
        }
        Poll::Pending
    })
    .await
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
                (i, p) = next_packet(&mut self.servers) => Wake::Packet(i, p),
                c = self.setup.control.recv() => Wake::Control(c),
                s = self.exit.wait(&mut self.child) => Wake::Exited(s),
                Some(c) = self.connects_rx.recv() => Wake::Connected(c),
                _ = sleep_until(deadline.into()) => Wake::Timer,
            };
            match wake {
                Wake::Frame(frame) => {
                    self.on_frame_or_end(frame).await;
                    if self.finished {
                        return;
                    }
                }
                Wake::Packet(i, Some(Ok(packet))) => self.on_packet(i, packet).await,
                Wake::Packet(i, _) => {
                    let was_asking =
                        matches!(self.phase, Phase::Asking { server, .. } if server == i);
                    self.server_lost(i);
                    // Ask the other servers, or sleep on them: their NOOPs
                    // only come to a worker that said PRE_SLEEP.
                    if was_asking {
                        self.grab_or_sleep(self.next_server, 0).await;
                    }
                }
                Wake::Control(Some(Control::Stop(reason))) => self.request_stop(reason, None),
                Wake::Control(Some(Control::Retire(reason, text))) => {
                    self.request_stop(reason, Some(text))
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
                Wake::Connected((i, result)) => self.on_connected(i, result).await,
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
            Phase::Asking { .. } | Phase::Sleeping => self.lifetime_end(),
            Phase::Draining { next: None, .. } => None,
        };
        let reconnect = self.servers.iter().filter_map(|s| s.reconnect_at).min();
        [phase, reconnect]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(far)
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
                self.relay(PacketType::WorkData, vec![d]).await
            }
            (Phase::Busy(_), WorkerFrame::Warning(w)) => {
                self.relay(PacketType::WorkWarning, vec![w]).await
            }
            (Phase::Busy(_), WorkerFrame::Status(n, d)) => {
                self.relay(PacketType::WorkStatus, vec![n, d]).await
            }
            (Phase::Busy(job), WorkerFrame::Done(result)) => {
                // WORK_COMPLETE goes out with the next GRAB_JOB in one write.
                let server = job.server;
                self.relay_unflushed(PacketType::WorkComplete, vec![result])
                    .await;
                self.job_ended(JobOutcome::Done, Some(server)).await;
            }
            (Phase::Busy(_), WorkerFrame::Fail(message)) => {
                self.fail_in_flight(&message).await;
                let text = String::from_utf8_lossy(&message).into_owned();
                // An exec slot times its commands out itself.
                let outcome = if self.setup.job.protocol == Protocol::Exec
                    && crate::exec_slot::is_timeout_message(&text)
                {
                    JobOutcome::TimedOut(text)
                } else {
                    JobOutcome::Failed(text)
                };
                self.job_ended(outcome, None).await;
            }
            (Phase::Draining { .. }, _) => {}
            (_, frame) => {
                self.protocol_error(format!("unexpected {} outside a job", frame_name(&frame)))
            }
        }
    }

    async fn became_ready(&mut self) {
        for i in 0..self.servers.len() {
            self.connect_server(i);
        }
        tracing::debug!(pid = self.setup.pid, job = self.job(), "ready");
        self.send_event(Event::Ready {
            pid: self.setup.pid,
        });
        self.grab_or_sleep(self.next_server, 0).await;
    }

    /// Connects and registers in a task of its own: a server that drops
    /// SYNs would otherwise hold up this loop, and with it the work coming
    /// from every other server, for the whole connect timeout.
    fn connect_server(&mut self, i: usize) {
        let s = &mut self.servers[i];
        s.reconnect_at = None;
        if s.connecting {
            return;
        }
        s.connecting = true;
        let addr = s.addr.clone();
        let functions: Vec<Bytes> = self
            .setup
            .job
            .functions
            .iter()
            .map(|f| Bytes::from(f.function.clone()))
            .collect();
        let done = self.connects_tx.clone();
        tokio::spawn(async move {
            let result = async {
                let mut link = gearman::connect(&addr).await.map_err(|e| e.to_string())?;
                for f in functions {
                    let can_do = Packet::request(PacketType::CanDo, vec![f]);
                    link.feed(can_do).await.map_err(|e| e.to_string())?;
                }
                link.flush().await.map_err(|e| e.to_string())?;
                Ok(link)
            };
            let _ = done.send((i, result.await));
        });
    }

    async fn on_connected(&mut self, i: usize, result: Result<Link, String>) {
        self.servers[i].connecting = false;
        if matches!(self.phase, Phase::Draining { .. }) {
            return;
        }
        match result {
            Ok(link) => {
                let s = &mut self.servers[i];
                s.link = Some(link);
                s.reconnect_at = None;
                s.backoff = RECONNECT_MIN;
                if matches!(self.phase, Phase::Sleeping) {
                    self.grab_or_sleep(self.next_server, 0).await;
                }
            }
            Err(err) => {
                tracing::debug!(
                    pid = self.setup.pid,
                    job = self.job(),
                    "cannot reach gearmand {}: {err}",
                    self.servers[i].addr
                );
                self.schedule_reconnect(i);
            }
        }
    }

    fn schedule_reconnect(&mut self, i: usize) {
        let s = &mut self.servers[i];
        s.link = None;
        // Jitter by pid so that hundreds of processes do not reconnect in step.
        let jitter = Duration::from_millis(
            u64::from(self.setup.pid % 97) * s.backoff.as_millis() as u64 / 200,
        );
        s.reconnect_at = Some(Instant::now() + s.backoff + jitter);
        s.backoff = (s.backoff * 2).min(RECONNECT_MAX);
    }

    fn connected(&self) -> usize {
        self.servers.iter().filter(|s| s.link.is_some()).count()
    }

    /// Asks the next connected server from `from` for a job, or sleeps when
    /// `asked` servers already said NO_JOB.
    async fn grab_or_sleep(&mut self, from: usize, asked: usize) {
        if self.stop_requested || self.retire_reason.is_some() {
            return self.begin_stop();
        }
        let n = self.servers.len();
        if asked < self.connected() {
            for step in 0..n {
                let i = (from + step) % n;
                let grab = Packet::request(PacketType::GrabJobUniq, vec![]);
                if self.servers[i].link.is_some() && self.send_to(i, grab).await {
                    self.phase = Phase::Asking { server: i, asked };
                    return;
                }
            }
        }
        for i in 0..n {
            if self.servers[i].link.is_some() {
                self.send_to(i, Packet::request(PacketType::PreSleep, vec![]))
                    .await;
            }
        }
        self.phase = Phase::Sleeping;
    }

    /// Sends one packet; a broken connection schedules a reconnect.
    async fn send_to(&mut self, i: usize, packet: Packet) -> bool {
        let Some(link) = self.servers[i].link.as_mut() else {
            return false;
        };
        if link.send(packet).await.is_ok() {
            return true;
        }
        self.server_lost(i);
        false
    }

    async fn on_packet(&mut self, i: usize, packet: Packet) {
        match packet.ptype {
            PacketType::Noop => {
                if matches!(self.phase, Phase::Sleeping) {
                    self.grab_or_sleep(i, 0).await;
                }
            }
            PacketType::NoJob => {
                if let Phase::Asking { server, asked } = self.phase {
                    if server == i {
                        let n = self.servers.len();
                        self.grab_or_sleep((i + 1) % n, asked + 1).await;
                    }
                }
            }
            PacketType::JobAssignUniq | PacketType::JobAssign => {
                if matches!(self.phase, Phase::Asking { server, .. } if server == i) {
                    self.start_job(i, packet).await;
                }
            }
            PacketType::Error => {
                tracing::warn!(
                    pid = self.setup.pid,
                    job = self.job(),
                    "gearmand {} answered ERROR {}: {}",
                    self.servers[i].addr,
                    String::from_utf8_lossy(&arg(&packet, 0)),
                    String::from_utf8_lossy(&arg(&packet, 1))
                );
            }
            _ => {}
        }
    }

    async fn start_job(&mut self, server: usize, packet: Packet) {
        let uniq = packet.ptype == PacketType::JobAssignUniq;
        let handle = arg(&packet, 0);
        let function = arg(&packet, 1);
        let (unique, workload) = if uniq {
            (arg(&packet, 2), arg(&packet, 3))
        } else {
            (Bytes::new(), arg(&packet, 2))
        };
        self.next_server = (server + 1) % self.servers.len();
        let Some(spec) = self.setup.job.function(&function).cloned() else {
            tracing::warn!(
                pid = self.setup.pid,
                job = self.job(),
                "was assigned unknown function {}",
                String::from_utf8_lossy(&function)
            );
            self.send_to(server, Packet::request(PacketType::WorkFail, vec![handle]))
                .await;
            return self.grab_or_sleep(self.next_server, 0).await;
        };
        let header = job_header(&spec.key, &handle, &unique, workload.len());
        let timeout = match (self.setup.job.protocol, spec.timeout) {
            (Protocol::Exec, Some(t)) => Some((Instant::now() + t + EXEC_TIMEOUT_SLACK, t)),
            (_, Some(t)) => Some((Instant::now() + t, t)),
            (_, None) => None,
        };
        self.phase = Phase::Busy(InFlight {
            server,
            handle,
            function: function.clone(),
            started: Instant::now(),
            deliverable: true,
            deadline: timeout,
        });
        self.send_event(Event::Busy {
            pid: self.setup.pid,
            function,
        });
        self.write_job(header, workload).await;
    }

    /// Queues a WORK_* packet for the job in flight without flushing it.
    async fn relay_unflushed(&mut self, ptype: PacketType, rest: Vec<Bytes>) {
        let Phase::Busy(job) = &self.phase else {
            return;
        };
        if !job.deliverable {
            return;
        }
        let server = job.server;
        let mut args = Vec::with_capacity(rest.len() + 1);
        args.push(job.handle.clone());
        args.extend(rest);
        let Some(link) = self.servers[server].link.as_mut() else {
            return;
        };
        if link.feed(Packet::request(ptype, args)).await.is_err() {
            self.server_lost(server);
        }
    }

    async fn flush_server(&mut self, i: usize) {
        let Some(link) = self.servers[i].link.as_mut() else {
            return;
        };
        if link.flush().await.is_err() {
            self.server_lost(i);
        }
    }

    /// Sends a WORK_* packet for the job in flight.
    async fn relay(&mut self, ptype: PacketType, rest: Vec<Bytes>) {
        let Phase::Busy(job) = &self.phase else {
            return;
        };
        let server = job.server;
        self.relay_unflushed(ptype, rest).await;
        self.flush_server(server).await;
    }

    /// WORK_FAIL, preceded by the message as WORK_WARNING so that a
    /// foreground client can see why (WORK_FAIL itself carries no text).
    async fn fail_in_flight(&mut self, message: &[u8]) {
        if !message.is_empty() {
            self.relay(
                PacketType::WorkWarning,
                vec![Bytes::copy_from_slice(message)],
            )
            .await;
        }
        self.relay(PacketType::WorkFail, vec![]).await;
    }

    /// `unflushed`: a server with an answer still queued; it leaves with the
    /// next GRAB_JOB, or at once if the process is about to stop.
    async fn job_ended(&mut self, outcome: JobOutcome, unflushed: Option<usize>) {
        self.jobs_done += 1;
        self.send_job_ended(outcome);
        let job = &self.setup.job;
        if job.max_jobs > 0 && self.jobs_done >= job.max_jobs {
            let text = format!("max_jobs {} reached", job.max_jobs);
            self.retire(StopReason::MaxJobs, text);
        } else if self.lifetime_end().is_some_and(|end| Instant::now() >= end) {
            let text = format!(
                "max_lifetime {}s reached",
                job.max_lifetime.unwrap_or_default().as_secs()
            );
            self.retire(StopReason::MaxLifetime, text);
        }
        self.phase = Phase::Sleeping;
        let stopping = self.stop_requested || self.retire_reason.is_some();
        if let (Some(server), true) = (unflushed, stopping) {
            self.flush_server(server).await;
        }
        self.grab_or_sleep(self.next_server, 0).await;
        if let (Some(server), false) = (unflushed, stopping) {
            self.flush_server(server).await;
        }
    }

    /// The job in flight has an answer (or timed out): tell the supervisor
    /// which, with its function and how long it took. An answer that can no
    /// longer reach gearmand leaves the job to be handed out again.
    fn send_job_ended(&mut self, outcome: JobOutcome) {
        let Phase::Busy(job) = &self.phase else {
            return;
        };
        let outcome = if job.deliverable {
            outcome
        } else {
            JobOutcome::Requeued
        };
        let event = Event::JobEnded {
            pid: self.setup.pid,
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
                pid: self.setup.pid,
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
        for s in &mut self.servers {
            s.link = None;
            s.reconnect_at = None;
        }
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
        for s in &mut self.servers {
            s.link = None;
            s.reconnect_at = None;
        }
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

    fn server_lost(&mut self, i: usize) {
        tracing::debug!(
            pid = self.setup.pid,
            job = self.job(),
            "lost its connection to gearmand {}",
            self.servers[i].addr
        );
        self.schedule_reconnect(i);
        match &mut self.phase {
            Phase::Busy(job) if job.server == i => job.deliverable = false,
            Phase::Asking { server, .. } if *server == i => self.phase = Phase::Sleeping,
            _ => {}
        }
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
                return;
            }
            Phase::Busy(job) => {
                if let Some((deadline, limit)) = job.deadline {
                    if now >= deadline {
                        return self.time_out(limit).await;
                    }
                }
                if self.shutdown_deadline.is_some_and(|d| now >= d) {
                    tracing::warn!(
                        pid = self.setup.pid, job = self.job(), "Job still running {}s into the shutdown; killing the process, gearmand will hand the job to another worker",
                        self.setup.shutdown_timeout.as_secs_f64()
                    );
                    return self.kill_now(ExitCause::Requested(StopReason::Shutdown));
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
                return;
            }
            Phase::Asking { .. } | Phase::Sleeping
                if self.lifetime_end().is_some_and(|end| now >= end) =>
            {
                let secs = self.setup.job.max_lifetime.unwrap_or_default().as_secs();
                self.retire(
                    StopReason::MaxLifetime,
                    format!("max_lifetime {secs}s reached"),
                );
                return self.begin_stop();
            }
            _ => {}
        }
        self.reconnect_due(now);
    }

    fn reconnect_due(&mut self, now: Instant) {
        let due: Vec<usize> = (0..self.servers.len())
            .filter(|&i| self.servers[i].reconnect_at.is_some_and(|t| t <= now))
            .collect();
        for i in due {
            self.connect_server(i);
        }
    }

    async fn time_out(&mut self, limit: Duration) {
        let message = format!("timeout after {}s", limit.as_secs());
        tracing::warn!(
            pid = self.setup.pid,
            job = self.job(),
            "Job {message}; killing the process"
        );
        self.fail_in_flight(message.as_bytes()).await;
        self.send_job_ended(JobOutcome::TimedOut(message));
        // Answered: nothing in flight goes back to gearmand.
        self.phase = Phase::Sleeping;
        self.kill_now(ExitCause::Requested(StopReason::Timeout));
    }

    async fn reap_after_stdout_closed(&mut self) -> Option<std::process::ExitStatus> {
        let exited = self.exit.wait(&mut self.child);
        if let Ok(status) = tokio::time::timeout(KILL_GRACE, exited).await {
            return status.ok();
        }
        tracing::warn!(
            pid = self.setup.pid,
            job = self.job(),
            "closed its stdout but kept running; killing it"
        );
        signal_group(self.setup.pid, Signal::SIGKILL);
        self.exit.wait(&mut self.child).await.ok()
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
        for s in &mut self.servers {
            s.link = None;
        }
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
            pid: self.setup.pid,
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
