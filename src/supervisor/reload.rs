//! Reloading the config and worker files (HUP, the console's `reload`,
//! `POST /api/reload`) without stalling supervision.
//!
//! Reading the files can take a while (a Perl worker class is described by
//! running perl), and the supervisor's single thread also carries every
//! process's job traffic, so the files are read on a blocking thread. A
//! request to reload waits for that read and is then answered like any
//! other (the same answer for the console and HTTP, see
//! [`command::reload_answer`]). Requests that arrive while a read is under
//! way get a read of their own right after it, so every answer reflects the
//! files as they were when it was asked, or later.
//!
//! Applying: jobs whose declaration did not change keep their processes
//! (a changed min/max applies live, console-set limits survive); changed
//! jobs get new processes while the old ones stop after their current job;
//! removed jobs stop. A configuration with any error changes nothing.

use tokio::sync::mpsc;

use super::{Job, StopReason, Supervisor};
use crate::command::{self, Envelope, ReloadOutcome};
use crate::config::{ConfigErrors, Loaded};
use crate::logging;

type Read = Result<Loaded, ConfigErrors>;

/// Reloads asked for and the read under way.
pub(super) struct Reloads {
    tx: mpsc::UnboundedSender<Read>,
    rx: mpsc::UnboundedReceiver<Read>,
    reading: bool,
    /// Waiting for the read under way (`None`: a HUP).
    covered: Vec<Option<Envelope>>,
    /// Asked while it was under way: the next read is theirs.
    next: Vec<Option<Envelope>>,
}

impl Reloads {
    pub(super) fn new() -> Reloads {
        let (tx, rx) = mpsc::unbounded_channel();
        Reloads {
            tx,
            rx,
            reading: false,
            covered: Vec::new(),
            next: Vec::new(),
        }
    }

    /// The files, once a read is done.
    pub(super) async fn read(&mut self) -> Option<Read> {
        self.rx.recv().await
    }
}

impl Supervisor {
    /// A HUP (`None`) or a request to reload.
    pub(super) fn ask_reload(&mut self, waiter: Option<Envelope>) {
        if self.reloads.reading {
            self.reloads.next.push(waiter);
            return;
        }
        self.reloads.covered.push(waiter);
        self.start_reading();
    }

    /// Reopens the log file first (logrotate may have moved it and sent the
    /// HUP), so that everything about this reload goes to the new file.
    fn start_reading(&mut self) {
        logging::reopen();
        tracing::debug!("reload: reading the config and worker files");
        self.reloads.reading = true;
        self.notify.reloading();
        let flags = self.flags.clone();
        let done = self.reloads.tx.clone();
        tokio::task::spawn_blocking(move || {
            let _ = done.send(crate::config::load(&flags));
        });
    }

    /// The files are read: apply them, answer everyone who waited for
    /// this read.
    pub(super) fn on_read(&mut self, read: Read) {
        self.reloads.reading = false;
        let outcome = self.apply_read(read);
        self.notify.reloaded();
        for waiter in std::mem::take(&mut self.reloads.covered) {
            match waiter {
                Some(envelope) => {
                    let answer = command::reload_answer(outcome.clone());
                    command::audit(&envelope.peer, &envelope.request, &answer);
                    let _ = envelope.reply.send(answer);
                }
                None => log_changes(&outcome),
            }
        }
        if !self.reloads.next.is_empty() {
            self.reloads.covered = std::mem::take(&mut self.reloads.next);
            self.start_reading();
        }
    }

    /// Reads and applies the files at once, on this thread. Only for
    /// callers outside the loop's own deferred path (see [`Self::ask_reload`]).
    pub(super) fn reload_now(&mut self) -> ReloadOutcome {
        logging::reopen();
        let read = crate::config::load(&self.flags);
        self.apply_read(read)
    }

    fn apply_read(&mut self, read: Read) -> ReloadOutcome {
        let outcome = match read {
            Ok(loaded) => ReloadOutcome::Applied(self.apply_config(loaded)),
            Err(errors) => {
                let lines: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
                tracing::error!("reload: ERR the new configuration is invalid; nothing changed");
                for line in &lines {
                    tracing::error!("reload: {line}");
                }
                ReloadOutcome::Rejected(lines)
            }
        };
        self.observe_reload(&outcome);
        outcome
    }

    /// Applies a valid configuration; one line per change.
    fn apply_config(&mut self, loaded: Loaded) -> Vec<String> {
        let mut lines = Vec::new();
        let mut new_jobs = std::collections::BTreeMap::new();
        for spec in loaded.jobs {
            let name = spec.name.clone();
            match self.jobs.remove(&name) {
                Some(mut old) if old.spec.same_processes(&spec) => {
                    // Only a change in the files moves the limits: what an
                    // operator set from the console survives a reload.
                    let file_changed = (old.spec.min_processes, old.spec.max_processes)
                        != (spec.min_processes, spec.max_processes);
                    if file_changed {
                        lines.push(format!(
                            "{name}: processes {}..{} -> {}..{}",
                            old.min, old.max, spec.min_processes, spec.max_processes
                        ));
                        old.min = spec.min_processes;
                        old.max = spec.max_processes;
                    }
                    old.spec = spec;
                    new_jobs.insert(name, old);
                }
                Some(mut old) => {
                    lines.push(format!("{name}: changed; replacing its processes"));
                    let mut job = Job::new(spec);
                    job.lastrun = old.lastrun;
                    job.lasterror = old.lasterror;
                    job.lasterror_msg = std::mem::take(&mut old.lasterror_msg);
                    job.tally = old.tally;
                    for (id, mut proc) in std::mem::take(&mut old.procs) {
                        proc.stop(StopReason::Reload);
                        job.procs.insert(id, proc);
                    }
                    new_jobs.insert(name, job);
                }
                None => {
                    lines.push(format!("{name}: added"));
                    new_jobs.insert(name.clone(), Job::new(spec));
                }
            }
        }
        for (name, mut old) in std::mem::take(&mut self.jobs) {
            lines.push(format!("{name}: removed; stopping its processes"));
            for proc in old.procs.values_mut() {
                proc.stop(StopReason::Reload);
            }
            // Keep it listed until its processes are gone, with no processes wanted.
            old.min = 0;
            old.max = 0;
            old.removed = true;
            new_jobs.insert(name, old);
        }
        self.jobs = new_jobs;
        self.settings.max_idle_time = loaded.settings.max_idle_time;
        self.settings.shutdown_timeout = loaded.settings.shutdown_timeout;
        self.settings.unknown_job_command = loaded.settings.unknown_job_command;
        let scheduling = loaded.settings.worker_scheduling;
        if self.settings.worker_scheduling != scheduling {
            // A running process keeps its policy: changing it under a job
            // in flight would gain nothing the next start does not.
            lines.push(format!(
                "worker_scheduling: {} -> {}; processes started from now on",
                self.settings.worker_scheduling.name(),
                scheduling.name()
            ));
            self.settings.worker_scheduling = scheduling;
        }
        lines.extend(self.schedules.reload(loaded.settings.schedules));
        if self.settings.admin_token != loaded.settings.admin_token {
            lines.push("admin token: changed".into());
            self.admin_token
                .send_replace(loaded.settings.admin_token.clone());
            self.settings.admin_token = loaded.settings.admin_token;
        }
        if lines.is_empty() {
            lines.push("nothing changed".into());
        }
        lines
    }
}

/// A HUP's changes go to the log (its errors were logged when applied).
fn log_changes(outcome: &ReloadOutcome) {
    if let ReloadOutcome::Applied(changes) = outcome {
        for line in changes {
            tracing::info!("reload: {line}");
        }
    }
}
