//! The Gearman side of one pool member: its worker connections (one per
//! server) and the grab loop that asks for work only while the member is
//! idle. Executors sit on top of it: the stdio/exec process task
//! ([`crate::supervisor::stdio`]) writes each job to a pipe, the http slot
//! ([`crate::supervisor::http_slot`]) POSTs it to an endpoint.
//!
//! The rules it keeps, whatever runs the jobs:
//! - grab only while idle, from one server at a time (`GRAB_JOB_UNIQ`; on
//!   `NO_JOB` the next server); when every connected server said `NO_JOB`,
//!   `PRE_SLEEP` on all of them until any wakes the member with `NOOP`, or,
//!   when enough of the job's other members watch, rest silently until one
//!   of them calls ([`super::arming`]: no thundering herd);
//! - connect and register (`CAN_DO`) off the member's loop, a few members
//!   at a time (gearmand's listen backlog is small), reconnect with backoff
//!   to a server that went away;
//! - relay `WORK_*` packets for the job in flight to the server it came
//!   from; `WORK_COMPLETE` leaves in one write with the next `GRAB_JOB`;
//! - [`GrabLoop::close`] drops the connections without an answer, which is
//!   how a job in flight goes back to gearmand (as when a worker dies).
//!
//! It is driven like a state machine from the executor's own `select!`:
//! [`GrabLoop::wake`] is cancel-safe and only waits; [`GrabLoop::on_wake`]
//! acts on what it returned and hands back a job when one was assigned.

use std::future::poll_fn;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, Semaphore};

use super::arming::{Arming, Seat};
use super::{arg, GearmanError, Link, Packet, PacketType, CONNECT_TIMEOUT};

/// Reconnect backoff to a server that went away. The cap is low so that
/// work flows again within about a second of a restarted gearmand's return;
/// a failed attempt costs one connect, made off the member's loop.
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(1);

/// A job gearmand assigned.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub function: Bytes,
    pub handle: Bytes,
    /// The client's unique id; empty when it gave none.
    pub unique: Bytes,
    pub workload: Bytes,
}

/// What the member does once the job in flight has been answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Ask for the next job.
    Grab,
    /// Send the answer and close the connections: the member is stopping.
    Stop,
}

/// What [`GrabLoop::wake`] saw; give it to [`GrabLoop::on_wake`].
pub enum Wake {
    Packet(usize, Option<Result<Packet, GearmanError>>),
    Connected(Connected),
    Reconnect,
    /// A sibling called this resting member.
    Called,
}

/// How many members may be connecting to gearmand at once. gearmand
/// listens with a backlog of 32 by default; connections beyond it are
/// dropped, and the kernel retries them only after 1, 3, 7 s: a pool of
/// 1,000 processes starting together took 15 s to register instead of 2 s.
const REGISTERING_AT_ONCE: usize = 16;
static REGISTERING: Semaphore = Semaphore::const_new(REGISTERING_AT_ONCE);

/// Connects to `addr` and registers `functions` (`CAN_DO`). The slot in
/// [`REGISTERING`] is held until gearmand echoes a request on the new
/// connection, which it does only once it has accepted it.
async fn register(addr: &str, functions: Vec<Bytes>) -> Result<Link, String> {
    let _slot = REGISTERING.acquire().await.map_err(|e| e.to_string())?;
    let mut link = super::connect(addr).await.map_err(|e| e.to_string())?;
    for f in functions {
        let can_do = Packet::request(PacketType::CanDo, vec![f]);
        link.feed(can_do).await.map_err(|e| e.to_string())?;
    }
    let echo = Packet::request(PacketType::EchoReq, vec![Bytes::from_static(b"registered")]);
    link.send(echo).await.map_err(|e| e.to_string())?;
    match tokio::time::timeout(CONNECT_TIMEOUT, link.next()).await {
        Ok(Some(Ok(p))) if p.ptype == PacketType::EchoRes => Ok(link),
        Ok(Some(Ok(p))) => Err(format!("gearmand answered {:?} to ECHO_REQ", p.ptype)),
        Ok(Some(Err(err))) => Err(err.to_string()),
        Ok(None) => Err("gearmand closed the connection".into()),
        Err(_) => Err(format!(
            "no answer within {}s of connecting",
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

/// What made a member ask gearmand for a job, which says whether a job it
/// gets was waiting with no member asking for it (a backlog, see
/// [`super::arming`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prompt {
    /// Its first ask: at start, or when its first server connected.
    Started,
    /// A `NOOP`: the job was queued while the member slept.
    Noop,
    /// A sibling called it out of rest.
    Called,
    /// It answered a job and asks for the next in the same write. A job
    /// found so is the next of a busy pool's steady flow (with a few more
    /// clients than busy members gearmand always holds one), not a backlog:
    /// calling two siblings for it had them ask in vain, 2 of the 6
    /// round trips per job at gearmand with 200 idle processes.
    Finished,
}

impl Prompt {
    fn found_backlog(self) -> bool {
        matches!(self, Prompt::Started | Prompt::Called)
    }
}

/// A connect task's result: the server's index and a registered link.
type Connected = (usize, Result<Link, String>);

enum State {
    /// Not grabbing: not yet started, or closed.
    Off,
    /// Waiting for the answer to a GRAB_JOB_UNIQ sent to `server`.
    Asking {
        server: usize,
        asked: usize,
    },
    Sleeping,
    /// Idle without asking: enough of the job's other members watch.
    Resting,
    Busy(InFlight),
}

struct InFlight {
    server: usize,
    handle: Bytes,
    /// False once that server's connection broke: the answer has nowhere to go.
    deliverable: bool,
}

struct ServerLink {
    addr: String,
    link: Option<Link>,
    reconnect_at: Option<Instant>,
    backoff: Duration,
    /// A connect task is under way; its result arrives as `Wake::Connected`.
    connecting: bool,
}

/// Whose grab loop it is, for the `pid` and `job` fields of log lines.
#[derive(Debug, Clone)]
pub struct Member {
    /// `None` for a member without a process (an http slot).
    pub pid: Option<u32>,
    pub job: String,
}

pub struct GrabLoop {
    who: Member,
    functions: Vec<Bytes>,
    /// Spreads reconnects of many members over time.
    jitter_seed: u32,
    servers: Vec<ServerLink>,
    connects_tx: mpsc::UnboundedSender<Connected>,
    connects_rx: mpsc::UnboundedReceiver<Connected>,
    state: State,
    next_server: usize,
    closed: bool,
    seat: Seat,
    /// Why the member is asking: whether a job it gets means a backlog.
    asking_for: Prompt,
}

impl GrabLoop {
    /// `functions`: the registered names the member serves; `arming`: its
    /// job's, shared with the other members.
    pub fn new(
        who: Member,
        servers: &[String],
        functions: Vec<Bytes>,
        jitter_seed: u32,
        arming: &Arming,
    ) -> Self {
        let servers = servers
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
        GrabLoop {
            who,
            functions,
            jitter_seed,
            servers,
            connects_tx,
            connects_rx,
            state: State::Off,
            next_server: 0,
            closed: false,
            seat: arming.seat(),
            asking_for: Prompt::Started,
        }
    }

    /// Connects to every server and starts grabbing (or sleeping until a
    /// server is connected).
    pub async fn start(&mut self) {
        for i in 0..self.servers.len() {
            self.connect_server(i);
        }
        self.seat.watch();
        self.asking_for = Prompt::Started;
        self.grab_or_sleep(self.next_server, 0).await;
    }

    /// A job is in flight.
    pub fn is_busy(&self) -> bool {
        matches!(self.state, State::Busy(_))
    }

    /// The job in flight can still be answered: the connection it came
    /// from has not broken meanwhile (else gearmand hands it out again).
    pub fn deliverable(&self) -> bool {
        matches!(&self.state, State::Busy(job) if job.deliverable)
    }

    /// Waiting for work (asking or asleep): neither busy nor off.
    pub fn is_idle(&self) -> bool {
        matches!(
            self.state,
            State::Asking { .. } | State::Sleeping | State::Resting
        )
    }

    /// Waits for a packet, a finished connect or a reconnect time; acts on
    /// nothing. Cancel-safe, for the executor's `select!`.
    pub async fn wake(&mut self) -> Wake {
        let reconnect = self.servers.iter().filter_map(|s| s.reconnect_at).min();
        let resting = self.seat.is_resting();
        tokio::select! {
            (i, p) = next_packet(&mut self.servers) => Wake::Packet(i, p),
            Some(c) = self.connects_rx.recv() => Wake::Connected(c),
            _ = sleep_until_some(reconnect) => Wake::Reconnect,
            _ = self.seat.called(), if resting => Wake::Called,
        }
    }

    /// Acts on what [`GrabLoop::wake`] returned; `Some` when a job was
    /// assigned (the loop is then busy until it is answered).
    pub async fn on_wake(&mut self, wake: Wake) -> Option<Assignment> {
        match wake {
            Wake::Packet(i, Some(Ok(packet))) => return self.on_packet(i, packet).await,
            Wake::Packet(i, _) => {
                let was_asking = matches!(self.state, State::Asking { server, .. } if server == i);
                self.server_lost(i);
                // Ask the other servers, or sleep on them: their NOOPs
                // only come to a worker that said PRE_SLEEP.
                if was_asking {
                    self.grab_or_sleep(self.next_server, 0).await;
                }
            }
            Wake::Connected((i, result)) => self.on_connected(i, result).await,
            Wake::Reconnect => self.reconnect_due(Instant::now()),
            Wake::Called => {
                if !self.closed && !self.is_busy() {
                    self.asking_for = Prompt::Called;
                    self.grab_or_sleep(self.next_server, 0).await;
                }
            }
        }
        None
    }

    /// Connects and registers in a task of its own: a server that drops
    /// SYNs would otherwise hold up the member's loop, and with it the work
    /// coming from every other server, for the whole connect timeout.
    fn connect_server(&mut self, i: usize) {
        let s = &mut self.servers[i];
        s.reconnect_at = None;
        if s.connecting {
            return;
        }
        s.connecting = true;
        let addr = s.addr.clone();
        let functions = self.functions.clone();
        let done = self.connects_tx.clone();
        tokio::spawn(async move {
            let _ = done.send((i, register(&addr, functions).await));
        });
    }

    async fn on_connected(&mut self, i: usize, result: Result<Link, String>) {
        self.servers[i].connecting = false;
        if self.closed {
            return;
        }
        match result {
            Ok(link) => {
                let s = &mut self.servers[i];
                s.link = Some(link);
                s.reconnect_at = None;
                s.backoff = RECONNECT_MIN;
                if matches!(self.state, State::Sleeping) {
                    self.grab_or_sleep(self.next_server, 0).await;
                }
            }
            Err(err) => {
                tracing::debug!(
                    pid = self.who.pid,
                    job = self.who.job.as_str(),
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
        if self.closed {
            return;
        }
        // Jitter so that hundreds of members do not reconnect in step.
        let jitter = Duration::from_millis(
            u64::from(self.jitter_seed % 97) * s.backoff.as_millis() as u64 / 200,
        );
        s.reconnect_at = Some(Instant::now() + s.backoff + jitter);
        s.backoff = (s.backoff * 2).min(RECONNECT_MAX);
    }

    fn reconnect_due(&mut self, now: Instant) {
        let due: Vec<usize> = (0..self.servers.len())
            .filter(|&i| self.servers[i].reconnect_at.is_some_and(|t| t <= now))
            .collect();
        for i in due {
            self.connect_server(i);
        }
    }

    fn connected(&self) -> usize {
        self.servers.iter().filter(|s| s.link.is_some()).count()
    }

    /// Asks the next connected server from `from` for a job, or sleeps when
    /// `asked` servers already said NO_JOB.
    async fn grab_or_sleep(&mut self, from: usize, asked: usize) {
        if self.closed {
            return;
        }
        let n = self.servers.len();
        if asked < self.connected() {
            for step in 0..n {
                let i = (from + step) % n;
                let grab = Packet::request(PacketType::GrabJobUniq, vec![]);
                if self.servers[i].link.is_some() && self.send_to(i, grab).await {
                    self.state = State::Asking { server: i, asked };
                    return;
                }
            }
        }
        if self.seat.rest_after_no_job() {
            self.state = State::Resting;
            return;
        }
        for i in 0..n {
            if self.servers[i].link.is_some() {
                self.send_to(i, Packet::request(PacketType::PreSleep, vec![]))
                    .await;
            }
        }
        self.state = State::Sleeping;
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

    async fn on_packet(&mut self, i: usize, packet: Packet) -> Option<Assignment> {
        match packet.ptype {
            PacketType::Noop => {
                if matches!(self.state, State::Sleeping | State::Resting) {
                    // Resting members sent no PRE_SLEEP; a NOOP there is
                    // left from an earlier sleep, and is answered the same.
                    self.seat.watch();
                    self.asking_for = Prompt::Noop;
                    self.grab_or_sleep(i, 0).await;
                }
            }
            PacketType::NoJob => {
                if let State::Asking { server, asked } = self.state {
                    if server == i {
                        let n = self.servers.len();
                        self.grab_or_sleep((i + 1) % n, asked + 1).await;
                    }
                }
            }
            PacketType::JobAssignUniq | PacketType::JobAssign => {
                if matches!(self.state, State::Asking { server, .. } if server == i) {
                    return self.take_job(i, packet).await;
                }
            }
            PacketType::Error => {
                tracing::warn!(
                    pid = self.who.pid,
                    job = self.who.job.as_str(),
                    "gearmand {} answered ERROR {}: {}",
                    self.servers[i].addr,
                    String::from_utf8_lossy(&arg(&packet, 0)),
                    String::from_utf8_lossy(&arg(&packet, 1))
                );
            }
            _ => {}
        }
        None
    }

    async fn take_job(&mut self, server: usize, packet: Packet) -> Option<Assignment> {
        let uniq = packet.ptype == PacketType::JobAssignUniq;
        let handle = arg(&packet, 0);
        let function = arg(&packet, 1);
        let (unique, workload) = if uniq {
            (arg(&packet, 2), arg(&packet, 3))
        } else {
            (Bytes::new(), arg(&packet, 2))
        };
        self.next_server = (server + 1) % self.servers.len();
        if !self.functions.contains(&function) {
            tracing::warn!(
                pid = self.who.pid,
                job = self.who.job.as_str(),
                "was assigned unknown function {}",
                String::from_utf8_lossy(&function)
            );
            self.send_to(server, Packet::request(PacketType::WorkFail, vec![handle]))
                .await;
            self.grab_or_sleep(self.next_server, 0).await;
            return None;
        }
        self.seat.took_job(self.asking_for.found_backlog());
        self.state = State::Busy(InFlight {
            server,
            handle: handle.clone(),
            deliverable: true,
        });
        Some(Assignment {
            function,
            handle,
            unique,
            workload,
        })
    }

    /// Sends a WORK_* packet (DATA, WARNING, STATUS) for the job in flight.
    pub async fn relay(&mut self, ptype: PacketType, rest: Vec<Bytes>) {
        let State::Busy(job) = &self.state else {
            return;
        };
        let server = job.server;
        self.relay_unflushed(ptype, rest).await;
        self.flush_server(server).await;
    }

    /// Queues a WORK_* packet for the job in flight without flushing it.
    async fn relay_unflushed(&mut self, ptype: PacketType, rest: Vec<Bytes>) {
        let State::Busy(job) = &self.state else {
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

    /// WORK_COMPLETE for the job in flight; it leaves with the next
    /// GRAB_JOB in one write, or at once if the member stops.
    pub async fn complete(&mut self, result: Bytes, then: Then) {
        let State::Busy(job) = &self.state else {
            return;
        };
        let server = job.server;
        self.relay_unflushed(PacketType::WorkComplete, vec![result])
            .await;
        self.state = State::Sleeping;
        match then {
            Then::Stop => {
                self.flush_server(server).await;
                self.close();
            }
            Then::Grab => {
                self.next_or_rest().await;
                self.flush_server(server).await;
            }
        }
    }

    /// WORK_FAIL for the job in flight, preceded by the message as
    /// WORK_WARNING so that a foreground client can see why (WORK_FAIL
    /// itself carries no text).
    pub async fn fail(&mut self, message: &[u8], then: Then) {
        if !self.is_busy() {
            return;
        }
        if !message.is_empty() {
            self.relay(
                PacketType::WorkWarning,
                vec![Bytes::copy_from_slice(message)],
            )
            .await;
        }
        self.relay(PacketType::WorkFail, vec![]).await;
        self.state = State::Sleeping;
        match then {
            Then::Stop => self.close(),
            Then::Grab => self.next_or_rest().await,
        }
    }

    /// After a job: ask for the next one (on `NO_JOB` the member rests if
    /// enough of the job's other members watch).
    async fn next_or_rest(&mut self) {
        self.seat.watch();
        self.asking_for = Prompt::Finished;
        self.grab_or_sleep(self.next_server, 0).await;
    }

    /// Drops every connection without an answer: a job in flight goes back
    /// to gearmand, which hands it to another worker. Dropping them while a
    /// GRAB is unanswered is as safe: a job assigned meanwhile is requeued.
    pub fn close(&mut self) {
        self.closed = true;
        self.seat.leave();
        for s in &mut self.servers {
            s.link = None;
            s.reconnect_at = None;
        }
        self.state = State::Off;
    }

    fn server_lost(&mut self, i: usize) {
        tracing::debug!(
            pid = self.who.pid,
            job = self.who.job.as_str(),
            "lost its connection to gearmand {}",
            self.servers[i].addr
        );
        self.schedule_reconnect(i);
        match &mut self.state {
            State::Busy(job) if job.server == i => job.deliverable = false,
            State::Asking { server, .. } if *server == i => self.state = State::Sleeping,
            _ => {}
        }
    }
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

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
