//! The supervisor: owns every job's pool of processes and is the one place
//! where side effects happen. It runs a single loop that reacts to process
//! events, queue snapshots from the poller, console requests, signals and
//! timers; after each it asks [`crate::policy::decide`] what to do per job
//! and applies the answer (spawn, stop).
//!
//! - [`spawn`]: starting processes (environment, die-with-parent, process groups).
//! - [`stdio`]: the per-process task of stdio (and exec) workers, an
//!   executor on the grab loop ([`crate::gearman::grab`]).
//! - [`http_slot`]: the task of an http job's slot, the other executor.
//! - [`gearman_proc`]: the per-process task of workers that speak Gearman themselves.
//! - [`handover`]: an upgrade's quiescing, hand-over and adoption of processes.
//! - [`events`]: messages between the loop and the member tasks.
//! - [`member`]: the id of a pool member (a process or a slot).
//! - [`output`]: worker output outside the protocol, logged line by line.
//! - [`pools`]: jobs and processes as the loop tracks them.
//! - [`stopping`]: what stopping does per protocol, in the log's words.
//! - [`sampling`]: CPU and memory of the processes, from `/proc`.
//! - `observe`: the status view and the one place that feeds the metrics.
//! - `feed`: the dashboard's history (samples and process events).

pub mod events;
mod feed;
pub mod gearman_proc;
pub mod handover;
pub mod http_slot;
pub mod member;
mod observe;
pub mod output;
pub mod pools;
mod reload;
pub mod sampling;
pub mod spawn;
pub mod stdio;
pub mod stopping;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, Notify};
use tokio::time::sleep_until;

use crate::command::{self, Envelope, Lifecycle, Pools, ReloadOutcome};
use crate::config::{JobSpec, Loaded, Protocol, RunFlags, Settings};
use crate::console;
use crate::endpoint::EndpointClient;
use crate::gearman::status::{StatusPoller, StatusSnapshot};
use crate::notify::Notifier;
use crate::policy::{self, Action, ProcState, StartReason};
use crate::schedule::Schedules;
use events::{Event, ExitCause, JobOutcome, Report, StopReason};
pub use member::WorkerId;
pub use pools::{Job, Proc};

/// A process that dies sooner than this after its start counts towards a crash loop.
const CRASH_WINDOW: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Event-driven polls come at most this often.
const MIN_EVENT_POLL_GAP: Duration = Duration::from_millis(20);
/// How often the same unknown function is warned about.
const UNKNOWN_WARN_EVERY: Duration = Duration::from_secs(60);

pub struct Supervisor {
    settings: Settings,
    flags: RunFlags,
    servers: Arc<Vec<String>>,
    jobs: std::collections::BTreeMap<String, Job>,
    owner: HashMap<WorkerId, String>,
    /// Numbers the members for their [`WorkerId`]s.
    next_seq: u64,
    /// The keep-alive client every http slot shares, made on first use.
    endpoint_client: Option<EndpointClient>,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    status: StatusSnapshot,
    poll_now: Arc<Notify>,
    last_event_poll: Instant,
    console_killed: HashSet<WorkerId>,
    unknown_warned: HashMap<String, Instant>,
    shutting_down: bool,
    force_exit_at: Option<Instant>,
    /// Pool sizes may have changed since the watched set was computed.
    watched_dirty: bool,
    /// Functions of jobs with no process, for the wake-up connections.
    watched: tokio::sync::watch::Sender<Vec<String>>,
    /// The scheduler task's handle (`[[schedule]]` entries).
    schedules: Schedules,
    /// The admin token in force, for the doors; a reload may change it.
    admin_token: tokio::sync::watch::Sender<Option<crate::access::AdminToken>>,
    /// systemd's READY, STATUS, RELOADING, STOPPING and WATCHDOG.
    notify: Notifier,
    /// Reloads asked for, and the reading of the files for them.
    reloads: reload::Reloads,
    /// Present while the HTTP listener is on.
    metrics: Option<crate::metrics::Recorder>,
    lifecycle: Arc<Lifecycle>,
    started_epoch: i64,
    /// When the last poll's snapshot came in.
    polled_at: Instant,
    /// When the last round of CPU and memory readings began.
    sampled_at: Option<Instant>,
    /// Upgrades asked for, and what a hand-over needs.
    upgrades: handover::Upgrades,
    /// The dashboard's history; present while the HTTP listener is on.
    feed: Option<feed::Feed>,
}

/// The listeners the supervisor serves, bound before it starts (so that a
/// port conflict fails start-up).
pub struct Doors {
    pub console: console::Listeners,
    pub http: Option<crate::http::Listener>,
}

impl Doors {
    /// The listening sockets, as an upgrade hands them over.
    fn listeners(&self, settings: &Settings) -> Vec<crate::upgrade::state::ListenerState> {
        use crate::upgrade::inherit::bind_of;
        use crate::upgrade::state::{Door, ListenerState};
        use std::os::fd::AsRawFd;
        let tcp = self
            .console
            .tcp
            .as_ref()
            .map(|l| (Door::ConsoleTcp, l.as_raw_fd()));
        let unix = self
            .console
            .unix
            .as_ref()
            .map(|(l, _)| (Door::ConsoleUnix, l.as_raw_fd()));
        let http = self.http.as_ref().map(|l| (Door::Http, l.as_raw_fd()));
        [tcp, unix, http]
            .into_iter()
            .flatten()
            .filter_map(|(door, fd)| {
                let bind = bind_of(settings, door)?;
                Some(ListenerState { door, bind, fd })
            })
            .collect()
    }
}

/// Why the loop ended.
pub enum Exit {
    Clean,
    Forced,
    /// Every process has been handed over: `main` executes the new binary.
    Upgrade(Box<crate::upgrade::Prepared>),
}

impl Supervisor {
    /// `origin`: how the driver was first started, what an upgrade executes.
    pub fn new(loaded: Loaded, flags: RunFlags, origin: Arc<crate::upgrade::Origin>) -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let servers = Arc::new(loaded.settings.servers.clone());
        let admin_token = tokio::sync::watch::Sender::new(loaded.settings.admin_token.clone());
        let jobs = loaded
            .jobs
            .into_iter()
            .map(|spec| (spec.name.clone(), Job::new(spec)))
            .collect();
        let schedules = Schedules::new(loaded.settings.schedules.clone(), servers.clone());
        Supervisor {
            settings: loaded.settings,
            flags,
            servers,
            jobs,
            owner: HashMap::new(),
            next_seq: 0,
            endpoint_client: None,
            events_tx,
            events_rx,
            status: StatusSnapshot::default(),
            poll_now: Arc::new(Notify::new()),
            last_event_poll: Instant::now() - MIN_EVENT_POLL_GAP,
            console_killed: HashSet::new(),
            unknown_warned: HashMap::new(),
            shutting_down: false,
            force_exit_at: None,
            watched: tokio::sync::watch::Sender::new(Vec::new()),
            watched_dirty: true,
            schedules,
            admin_token,
            notify: Notifier::from_env(),
            reloads: reload::Reloads::new(),
            metrics: None,
            lifecycle: Arc::new(Lifecycle::default()),
            started_epoch: now_epoch(),
            polled_at: Instant::now(),
            sampled_at: None,
            upgrades: handover::Upgrades::new(origin),
            feed: None,
        }
    }

    /// Runs until shutdown. The listeners must already be bound (see
    /// [`console::bind_all`], [`crate::http::bind`]) so that a port conflict
    /// fails start-up.
    pub async fn run(mut self, doors: Doors) -> std::io::Result<Exit> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut usr2 = signal(SignalKind::user_defined2())?;
        // Held since an upgrade's exec, if this image is the result of one.
        crate::upgrade::signals::unblock();
        self.upgrades.listeners = doors.listeners(&self.settings);
        let (requests_tx, mut requests_rx) = mpsc::channel::<Envelope>(64);
        let requests = command::Handle::new(requests_tx);
        doors
            .console
            .spawn(requests.clone(), self.admin_token.subscribe());
        if let Some(listener) = doors.http {
            let schedules = self.schedules.clone();
            self.metrics
                .get_or_insert_with(|| crate::metrics::new(schedules));
            self.restore_carried_counters();
            let metrics = self.metrics.as_ref().expect("made above");
            let history = crate::history::Shared::default();
            self.feed = Some(feed::Feed::new(history.clone()));
            self.upgrades.http = Some(crate::http::spawn(
                listener,
                crate::http::Context {
                    requests,
                    metrics: metrics.exposition(),
                    lifecycle: self.lifecycle.clone(),
                    access: crate::http::WriteAccess::new(self.admin_token.subscribe()),
                    history,
                },
            )?);
        }
        let (usage_tx, mut usage_rx) = mpsc::unbounded_channel();
        let (snap_tx, mut snap_rx) = mpsc::unbounded_channel();
        tokio::spawn(poll_loop(
            StatusPoller::new(&self.servers),
            self.poll_now.clone(),
            snap_tx,
        ));
        crate::gearman::wakeup::spawn(
            &self.servers,
            self.watched.subscribe(),
            self.poll_now.clone(),
        );
        self.schedules.spawn();
        let mut tick = tokio::time::interval(self.settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watchdog = self.notify.watchdog_timer();

        tracing::info!(
            "gearman-driver {} started: {} job(s), servers {}, console {}",
            crate::version(),
            self.jobs.len(),
            self.servers.join(","),
            console::describe(&self.settings)
        );
        self.reconcile(false);
        loop {
            let wake_at = self.next_wakeup();
            tokio::select! {
                Some(event) = self.events_rx.recv() => {
                    // Drain what else is queued, then decide once for the
                    // jobs these events touched: the hot path of every job.
                    let mut touched: Vec<String> = Vec::new();
                    let mut decide: Vec<bool> = Vec::new();
                    let mut next = Some(event);
                    while let Some(event) = next {
                        // Looked up first: an exit takes the member off `owner`.
                        let at = self.owner.get(&event.id()).map(|name| {
                            touched.iter().position(|t| t == name).unwrap_or_else(|| {
                                touched.push(name.clone());
                                decide.push(false);
                                touched.len() - 1
                            })
                        });
                        let change = event.member_change();
                        self.on_event(event);
                        // After the event: a job taken no longer waits.
                        if let Some(i) = at {
                            decide[i] = decide[i] || self.may_change_decision(&touched[i], change);
                        }
                        next = self.events_rx.try_recv().ok();
                    }
                    let to_decide: Vec<String> = touched
                        .iter()
                        .zip(&decide)
                        .filter(|(_, d)| **d)
                        .map(|(name, _)| name.clone())
                        .collect();
                    self.apply_policy(&to_decide, false);
                    self.refresh_gauges(&touched);
                    if let Some(prepared) = self.handover_complete() {
                        return Ok(Exit::Upgrade(prepared));
                    }
                }
                Some(snapshot) = snap_rx.recv() => {
                    self.on_snapshot(snapshot);
                    self.reconcile(true);
                }
                Some(envelope) = requests_rx.recv() => {
                    self.on_request(envelope);
                    self.reconcile(false);
                }
                _ = tick.tick() => {
                    self.poll_now.notify_one();
                    self.notify.status(|| pools::summary(&self.jobs, &self.status, self.servers.len()));
                    self.sample_usage(&usage_tx);
                }
                _ = watchdog.tick() => self.notify.watchdog(),
                Some(samples) = usage_rx.recv() => self.on_usage(samples),
                _ = term.recv() => if self.on_stop_signal("TERM") { return Ok(Exit::Forced) },
                _ = int.recv() => if self.on_stop_signal("INT") { return Ok(Exit::Forced) },
                _ = hup.recv() => self.ask_reload(None),
                _ = usr2.recv() => self.ask_upgrade(None),
                Some(checked) = self.upgrades.checked() => {
                    self.on_checked(checked);
                    if let Some(prepared) = self.handover_complete() {
                        return Ok(Exit::Upgrade(prepared));
                    }
                }
                Some(read) = self.reloads.read() => {
                    self.on_read(read);
                    self.reconcile(false);
                }
                _ = sleep_until(wake_at.into()) => self.reconcile(false),
            }
            self.notify
                .ready_once(|| !self.shutting_down && pools::all_settled(&self.jobs));
            if self.shutting_down && self.owner.is_empty() {
                tracing::info!("all processes stopped; exiting");
                return Ok(Exit::Clean);
            }
            if self.force_exit_at.is_some_and(|t| Instant::now() >= t) {
                tracing::error!("processes still running after the shutdown timeout; killing them");
                self.kill_everything();
                return Ok(Exit::Forced);
            }
        }
    }

    fn next_wakeup(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let blocked = self
            .jobs
            .values()
            .filter_map(|j| j.blocked_until)
            .filter(|t| *t > Instant::now());
        blocked.chain(self.force_exit_at).min().unwrap_or(far)
    }

    /// Returns true when the supervisor must exit at once (second signal).
    fn on_stop_signal(&mut self, name: &str) -> bool {
        if self.shutting_down {
            tracing::warn!("second {name}: killing every process now");
            self.kill_everything();
            return true;
        }
        self.log_shutdown(&format!("{name} received"));
        self.begin_shutdown();
        false
    }

    /// Says what the shutdown will do to each protocol's processes.
    fn log_shutdown(&self, cause: &str) {
        let lines = stopping::shutdown_lines(
            cause,
            self.settings.shutdown_timeout,
            self.jobs.values().map(|j| (&*j.spec, j.procs.len())),
        );
        for line in lines {
            tracing::info!("{line}");
        }
    }

    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
        self.schedules.stop();
        self.notify.stopping();
        self.lifecycle.begin_shutdown();
        // Process tasks escalate to TERM and KILL themselves; this is the backstop.
        self.force_exit_at =
            Some(Instant::now() + self.settings.shutdown_timeout + Duration::from_secs(10));
        for job in self.jobs.values_mut() {
            for proc in job.procs.values_mut() {
                proc.shut_down();
            }
        }
    }

    fn kill_everything(&mut self) {
        for pid in self.owner.keys().filter_map(WorkerId::pid) {
            spawn::signal_group(pid, Signal::SIGKILL);
        }
    }

    fn job_of(&mut self, id: WorkerId) -> Option<&mut Job> {
        let name = self.owner.get(&id)?;
        self.jobs.get_mut(name)
    }

    fn on_event(&mut self, event: Event) {
        self.observe_event(&event);
        match event {
            Event::Ready { id } => {
                if let Some(job) = self.job_of(id) {
                    if let Some(p) = job.procs.get_mut(&id) {
                        p.set_state(ProcState::Idle {
                            since: Instant::now(),
                        });
                    }
                }
            }
            Event::Busy { id, function } => {
                let Some(job) = self.job_of(id) else { return };
                job.lastrun = now_epoch();
                job.note_taken(Instant::now());
                if let Some(p) = job.procs.get_mut(&id) {
                    p.set_state(ProcState::Busy);
                    p.current = Some((function, Instant::now()));
                }
                // The last idle process just became busy: more may be waiting.
                // (Counting the pool only then: with 1,000 idle processes a
                // count per job was a tenth of the supervisor's time.)
                let no_idle = !job
                    .procs
                    .values()
                    .any(|p| matches!(p.state, ProcState::Idle { .. }));
                if no_idle && job.live_count() < job.max as usize {
                    self.request_event_poll();
                }
            }
            Event::JobEnded { id, outcome, .. } => {
                let Some(job) = self.job_of(id) else { return };
                match &outcome {
                    JobOutcome::Done => job.tally.done += 1,
                    JobOutcome::Failed(message) => {
                        job.tally.failed += 1;
                        job.record_error(message);
                    }
                    JobOutcome::TimedOut(message) => {
                        job.tally.timeouts += 1;
                        job.record_error(message);
                    }
                    JobOutcome::Requeued => {}
                }
                if let Some(p) = job.procs.get_mut(&id) {
                    p.jobs_done += 1;
                    p.current = None;
                    p.set_state(ProcState::Idle {
                        since: Instant::now(),
                    });
                }
            }
            Event::Retiring { id, .. } => {
                if let Some(p) = self.job_of(id).and_then(|j| j.procs.get_mut(&id)) {
                    p.state = ProcState::Stopping;
                }
            }
            Event::Report { id, report } => {
                let Some(job) = self.job_of(id) else { return };
                match report {
                    Report::LastRun(t) => {
                        // Each `lastrun` line is one job done, as for Gearman::Driver's children.
                        job.lastrun = t;
                        if let Some(p) = job.procs.get_mut(&id) {
                            p.jobs_done += 1;
                        }
                    }
                    Report::LastError(t) => job.lasterror = t,
                    Report::LastErrorMsg(m) => job.lasterror_msg = m,
                }
            }
            Event::HandedOver { id, parts } => self.on_handed_over(id, *parts),
            Event::Exited {
                id, status, cause, ..
            } => {
                let name = self.owner.get(&id).cloned();
                self.on_exit(id, status, cause);
                if let Some(name) = name {
                    self.feed_backoff(&name);
                }
            }
        }
    }

    fn on_exit(
        &mut self,
        id: WorkerId,
        status: Option<std::process::ExitStatus>,
        cause: ExitCause,
    ) {
        self.watched_dirty = true;
        let Some(name) = self.owner.remove(&id) else {
            return;
        };
        let by_console = self.console_killed.remove(&id);
        let shutting_down = self.shutting_down;
        let Some(job) = self.jobs.get_mut(&name) else {
            return;
        };
        let Some(proc) = job.procs.remove(&id) else {
            return;
        };
        let pid = id.pid();
        let described = match (&status, pid) {
            (Some(status), _) => spawn::describe_exit(status),
            (None, Some(_)) => "exited".into(),
            (None, None) => format!("{} ended", id.noun()),
        };
        let code = status
            .and_then(|s| s.code())
            .map_or(described.clone(), |c| format!("Exited with status {c}"));
        match cause {
            ExitCause::Requested(StopReason::Timeout) => {
                tracing::info!(pid, job = name.as_str(), "{code}")
            }
            ExitCause::Requested(_) => match &status {
                Some(status) => tracing::info!(
                    pid,
                    job = name.as_str(),
                    "{}",
                    spawn::describe_stop(status, job.spec.stop_signal)
                ),
                None => tracing::info!(pid, job = name.as_str(), "{code}"),
            },
            _ if by_console || shutting_down => tracing::info!(pid, job = name.as_str(), "{code}"),
            ExitCause::Unexpected(why)
            | ExitCause::StartFailed(why)
            | ExitCause::ProtocolError(why) => {
                let quick = proc.started.elapsed() < CRASH_WINDOW;
                job.record_error(&why);
                // Lead with the process event (`Exited with status N`) that
                // operators grep for, then what it meant.
                let event = match why.strip_prefix(described.as_str()) {
                    Some(rest) => format!("{code}{rest}"),
                    None => format!("{code}: {why}"),
                };
                if quick {
                    let delay = job.note_quick_failure();
                    tracing::warn!(
                        pid,
                        job = name.as_str(),
                        "{event}; within {}s of its start, next start in {}s",
                        CRASH_WINDOW.as_secs(),
                        delay.as_secs()
                    );
                } else {
                    job.failures = 0;
                    tracing::warn!(pid, job = name.as_str(), "{event}");
                }
            }
        }
    }

    fn request_event_poll(&mut self) {
        if self.last_event_poll.elapsed() >= MIN_EVENT_POLL_GAP {
            self.last_event_poll = Instant::now();
            self.poll_now.notify_one();
        }
    }

    fn on_snapshot(&mut self, snapshot: StatusSnapshot) {
        self.status = snapshot;
        self.observe_poll();
        self.warn_unknown_functions();
        let now = Instant::now();
        for job in self.jobs.values_mut() {
            job.forget_taken_before(self.status.requested_at);
            let (waiting, running) = job.queue(&self.status);
            if waiting > 0 || running > 0 {
                job.quiet_since = now;
            }
            if job.spec.protocol == Protocol::Gearman {
                job.estimate_gearman_states(running, now);
            }
        }
        self.check_rss();
    }

    fn warn_unknown_functions(&mut self) {
        let served: HashSet<&str> = self
            .jobs
            .values()
            .flat_map(|j| j.spec.function_names())
            .collect();
        let now = Instant::now();
        let mut unknown = Vec::new();
        for (function, counts) in &self.status.functions {
            if counts.total == 0 || served.contains(function.as_str()) {
                continue;
            }
            let recently = self
                .unknown_warned
                .get(function)
                .is_some_and(|t| now.duration_since(*t) < UNKNOWN_WARN_EVERY);
            if !recently {
                unknown.push((function.clone(), *counts));
            }
        }
        for (function, counts) in unknown {
            self.unknown_warned.insert(function.clone(), now);
            tracing::warn!(
                "gearmand queues {} job(s) for `{function}`, which no job serves",
                counts.total
            );
            if let Some(argv) = &self.settings.unknown_job_command {
                let row = serde_json::json!({
                    "name": function, "queue": counts.total, "busy": counts.running, "free": counts.workers.saturating_sub(counts.running),
                });
                tokio::spawn(run_unknown_job_command(argv.clone(), row.to_string()));
            }
        }
    }

    /// Recycles processes past their job's `max_rss`.
    fn check_rss(&mut self) {
        for job in self.jobs.values_mut() {
            if job.spec.max_rss_mib == 0 {
                continue;
            }
            let limit = job.spec.max_rss_mib * 1024;
            for (id, proc) in job.procs.iter_mut() {
                if proc.is_stopping() {
                    continue;
                }
                if let Some(rss) = id.pid().and_then(pools::rss_kib) {
                    if rss > limit {
                        let reason = format!(
                            "max_rss {} MiB passed ({} MiB resident)",
                            job.spec.max_rss_mib,
                            rss / 1024
                        );
                        proc.retire(StopReason::MaxRss, reason);
                    }
                }
            }
        }
    }

    /// Applies the policy to every job.
    fn reconcile(&mut self, fresh_poll: bool) {
        let names: Vec<String> = self.jobs.keys().cloned().collect();
        self.reconcile_jobs(&names, fresh_poll);
        self.watched_dirty = true;
        self.update_watched();
    }

    /// Whether deciding again for `name` after a member's `change` can act
    /// (see [`policy::may_change_decision`]).
    fn may_change_decision(&self, name: &str, change: policy::MemberChange) -> bool {
        let waiting = self
            .jobs
            .get(name)
            .map_or(0, |job| job.waiting(&self.status));
        policy::may_change_decision(change, waiting)
    }

    /// Applies the policy to the named jobs.
    fn reconcile_jobs(&mut self, names: &[String], fresh_poll: bool) {
        self.apply_policy(names, fresh_poll);
        self.refresh_gauges(names);
    }

    fn apply_policy(&mut self, names: &[String], fresh_poll: bool) {
        if self.shutting_down || self.upgrades.handing_over() {
            return;
        }
        let now = Instant::now();
        let ctx = policy::Context {
            now,
            max_idle_time: self.settings.max_idle_time,
            fresh_poll,
        };
        for name in names {
            let Some(job) = self.jobs.get(name) else {
                continue;
            };
            let actions = {
                let waiting = (self.status.servers_answered > 0).then(|| job.waiting(&self.status));
                let view = policy::JobView {
                    min: job.min,
                    max: job.max,
                    procs: job.proc_views(),
                    waiting,
                    restart_blocked: job.blocked_until.is_some_and(|t| t > now),
                };
                policy::decide(&view, &ctx)
            };
            for action in actions {
                self.watched_dirty = true;
                self.apply(name, action);
            }
        }
        self.update_watched();
    }

    /// Jobs without any process get their functions watched for new work,
    /// unless no process could be started for them now anyway (a crash
    /// loop's backoff, shutdown): work queued for those would only wake the
    /// watcher again and again.
    fn update_watched(&mut self) {
        if !std::mem::take(&mut self.watched_dirty) {
            return;
        }
        let now = Instant::now();
        let mut functions: Vec<String> = self
            .jobs
            .values()
            .filter(|_| !self.shutting_down)
            .filter(|j| j.live_count() == 0 && j.max > 0 && !j.removed)
            .filter(|j| j.blocked_until.is_none_or(|t| t <= now))
            .flat_map(|j| j.spec.functions.iter().map(|f| f.function.clone()))
            .collect();
        functions.sort();
        self.watched.send_if_modified(|current| {
            if *current == functions {
                return false;
            }
            *current = functions;
            true
        });
    }

    fn apply(&mut self, name: &str, action: Action) {
        match action {
            Action::Start { count, reason } => {
                for _ in 0..count {
                    if !self.start_process(name, reason) {
                        self.feed_backoff(name);
                        break;
                    }
                }
            }
            Action::Stop { id, idle_for } => {
                let Some(job) = self.jobs.get_mut(name) else {
                    return;
                };
                let note = stopping::stop_note(&job.spec);
                if let Some(proc) = job.procs.get_mut(&id) {
                    tracing::info!(
                        pid = id.pid(),
                        job = name,
                        "{} stopped (idle {}s){note}",
                        id.noun(),
                        idle_for.as_secs()
                    );
                    proc.stop(StopReason::Idle);
                }
            }
            Action::StopAfterJob { id } => {
                let Some(job) = self.jobs.get_mut(name) else {
                    return;
                };
                let what = stopping::busy_stop(&job.spec);
                if let Some(proc) = job.procs.get_mut(&id) {
                    tracing::info!(pid = id.pid(), job = name, "{what}");
                    proc.stop(StopReason::Idle);
                }
            }
        }
    }

    /// Spawns one process (or starts a slot); false when spawning failed
    /// (then backoff applies).
    fn start_process(&mut self, name: &str, reason: StartReason) -> bool {
        let seq = self.take_seq();
        let Some(job) = self.jobs.get_mut(name) else {
            return false;
        };
        let spec: Arc<JobSpec> = job.spec.clone();
        if spec.protocol == Protocol::Http {
            return self.start_slot(name, spec, WorkerId::slot(seq), reason);
        }
        let spawned = match spawn::spawn(&spec, &self.servers, self.settings.worker_scheduling) {
            Ok(spawned) => spawned,
            Err(err) => {
                let why = format!("cannot start {}: {err}", spec.command[0]);
                job.record_error(&why);
                let delay = job.note_quick_failure();
                tracing::error!(job = name, "{why}; next start in {}s", delay.as_secs());
                return false;
            }
        };
        let pid = spawned.pid;
        let id = WorkerId::process(seq, pid);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let setup = stdio::ProcessSetup {
            id,
            pid,
            job: spec.clone(),
            servers: self.servers.clone(),
            events: self.events_tx.clone(),
            control: control_rx,
            shutdown_timeout: self.settings.shutdown_timeout,
            arming: job.arming.clone(),
        };
        let begin = handover::Begin::fresh(spawned);
        if spec.protocol == Protocol::Gearman {
            tokio::spawn(gearman_proc::run(setup, begin));
        } else {
            tokio::spawn(stdio::run(setup, begin));
        }
        job.procs.insert(id, Proc::new(control_tx));
        self.owner.insert(id, name.to_string());
        tracing::info!(pid, job = name, "Process started");
        self.observe_start(name, id, reason);
        true
    }

    /// Starts one slot of an http job: a member with no process.
    fn start_slot(
        &mut self,
        name: &str,
        spec: Arc<JobSpec>,
        id: WorkerId,
        reason: StartReason,
    ) -> bool {
        let client = self
            .endpoint_client
            .get_or_insert_with(EndpointClient::new)
            .clone();
        let Some(arming) = self.jobs.get(name).map(|j| j.arming.clone()) else {
            return false;
        };
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let setup = stdio::ProcessSetup {
            id,
            pid: 0,
            job: spec,
            servers: self.servers.clone(),
            events: self.events_tx.clone(),
            control: control_rx,
            shutdown_timeout: self.settings.shutdown_timeout,
            arming,
        };
        tokio::spawn(http_slot::run(setup, client));
        let Some(job) = self.jobs.get_mut(name) else {
            return false;
        };
        job.procs.insert(id, Proc::new(control_tx));
        self.owner.insert(id, name.to_string());
        tracing::info!(job = name, "{} started", id.noun());
        self.observe_start(name, id, reason);
        true
    }

    fn take_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn on_request(&mut self, envelope: Envelope) {
        if envelope.request == command::Request::Reload {
            return self.ask_reload(Some(envelope));
        }
        let blocked = self.upgrades.blocked(self.shutting_down);
        if envelope.request == command::Request::Upgrade && blocked.is_none() {
            return self.ask_upgrade(Some(envelope));
        }
        self.answer(envelope);
    }

    /// Executes a request now and sends its answer.
    fn answer(&mut self, envelope: Envelope) {
        let answer = command::execute(self, &envelope.request);
        command::audit(&envelope.peer, &envelope.request, &answer);
        let _ = envelope.reply.send(answer);
    }

    fn drop_removed_jobs(&mut self) {
        self.jobs.retain(|_, j| !(j.removed && j.procs.is_empty()));
    }
}

impl Pools for Supervisor {
    fn job_rows(&mut self) -> Vec<command::JobRow> {
        self.drop_removed_jobs();
        self.job_views().iter().map(command::JobRow::from).collect()
    }

    fn job_members(&self, name: &str) -> Option<Vec<WorkerId>> {
        self.jobs
            .get(name)
            .filter(|j| !j.removed)
            .map(|j| j.procs.keys().copied().collect())
    }

    fn set_limits(&mut self, name: &str, min: Option<u32>, max: Option<u32>) {
        if let Some(job) = self.jobs.get_mut(name) {
            if let Some(min) = min {
                job.min = min;
            }
            if let Some(max) = max {
                job.max = max;
            }
            tracing::info!(
                job = name,
                "processes set to min {} max {} from the console",
                job.min,
                job.max
            );
        }
    }

    fn limits(&self, name: &str) -> Option<(u32, u32)> {
        self.jobs
            .get(name)
            .filter(|j| !j.removed)
            .map(|j| (j.min, j.max))
    }

    fn kill(&mut self, members: &[WorkerId]) {
        for id in members {
            let Some(name) = self.owner.get(id) else {
                continue;
            };
            self.console_killed.insert(*id);
            match id.pid() {
                Some(pid) => {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        Signal::SIGTERM,
                    );
                }
                None => {
                    if let Some(proc) = self.jobs.get_mut(name).and_then(|j| j.procs.get_mut(id)) {
                        proc.kill_slot();
                    }
                }
            }
        }
    }

    fn member_with_pid(&self, pid: u32) -> Option<WorkerId> {
        self.owner.keys().find(|id| id.pid() == Some(pid)).copied()
    }

    fn proc_rows(&self) -> Vec<command::ProcRow> {
        let views = self.process_views();
        views.iter().map(command::ProcRow::from).collect()
    }

    fn overview(&mut self) -> command::Overview {
        self.drop_removed_jobs();
        Supervisor::overview(self)
    }

    fn shutdown(&mut self) {
        self.log_shutdown("shutdown requested from the console");
        self.begin_shutdown();
    }

    fn reload(&mut self) -> ReloadOutcome {
        self.reload_now()
    }

    fn schedules(&self) -> Vec<crate::schedule::ScheduleState> {
        self.schedules.states()
    }

    fn upgrade_blocked(&self) -> Option<String> {
        self.upgrades.blocked(self.shutting_down)
    }
}

fn now_epoch() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn poll_loop(
    mut poller: StatusPoller,
    wake: Arc<Notify>,
    out: mpsc::UnboundedSender<StatusSnapshot>,
) {
    loop {
        wake.notified().await;
        let snapshot = poller.poll().await;
        if out.send(snapshot).is_err() {
            return;
        }
    }
}

async fn run_unknown_job_command(argv: Vec<String>, row: String) {
    use tokio::io::AsyncWriteExt;
    let mut command = tokio::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true);
    spawn::hide_service_manager(command.as_std_mut());
    let child = command.spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(err) => return tracing::error!("unknown_job_command {}: {err}", argv[0]),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(row.as_bytes()).await;
        let _ = stdin.write_all(b"\n").await;
    }
    match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
        Ok(Ok(status)) if !status.success() => {
            tracing::warn!(
                "unknown_job_command {} {}",
                argv[0],
                spawn::describe_exit(&status)
            )
        }
        Ok(_) => {}
        Err(_) => tracing::warn!("unknown_job_command {} ran over 60s; killed", argv[0]),
    }
}
