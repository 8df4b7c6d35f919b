//! One slot of an `http` job: a pool member with no process. It holds its
//! own Gearman connections and grab loop ([`crate::gearman::grab`]), like a
//! stdio process, and runs one job at a time by POSTing it to the job's
//! endpoint ([`crate::endpoint`]) and answering gearmand from the response.
//!
//! An endpoint that cannot be reached is handled like a crashed worker: the
//! slot drops its connections so that gearmand hands the job out again, and
//! ends with the error, so the supervisor's crash-loop backoff and the
//! console's last-error column apply as to any process. A job over its
//! `timeout` fails (the request is abandoned, its connection closed) and the
//! slot goes on.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::time::sleep_until;

use super::events::{Control, Event, ExitCause, JobOutcome, StopReason};
use super::member::recycling_due;
use super::stdio::{new_grab_loop, ProcessSetup};
use crate::config::HttpEndpoint;
use crate::endpoint::{wire, EndpointClient, Outcome, Unreachable};
use crate::gearman::grab::{self, Assignment, GrabLoop, Then};

type Request = BoxFuture<'static, Result<Outcome, Unreachable>>;

struct InFlight {
    request: Request,
    function: Bytes,
    started: Instant,
    deadline: Option<(Instant, Duration)>,
}

enum Wake {
    Grab(grab::Wake),
    Answered(Result<Outcome, Unreachable>),
    Control(Option<Control>),
    Timer,
}

struct Slot {
    /// `Slot 3`: how log lines name the slot (it has no PID field).
    name: String,
    setup: ProcessSetup,
    endpoint: HttpEndpoint,
    client: EndpointClient,
    grab: GrabLoop,
    job: Option<InFlight>,
    started: Instant,
    jobs_done: u64,
    /// Asked to stop (scale-down, shutdown, recycling) once the job in
    /// flight is answered, and why (the first request counts).
    stopping: Option<StopReason>,
    /// The function of a job abandoned in flight, which gearmand re-queues.
    requeued: Option<Bytes>,
    /// When a job still running at shutdown is cut short.
    shutdown_deadline: Option<Instant>,
    /// Set when the slot has ended: why.
    ended: Option<ExitCause>,
}

/// Runs the slot until it ends; the last thing it sends is `Exited`.
pub async fn run(setup: ProcessSetup, client: EndpointClient) {
    let name = setup.id.noun();
    let Some(endpoint) = setup.job.endpoint.clone() else {
        // Config loading gives every http job its endpoint.
        let _ = setup.events.send(Event::Exited {
            id: setup.id,
            status: None,
            cause: ExitCause::StartFailed("no endpoint configured".into()),
            requeued: None,
            usage: None,
        });
        return;
    };
    let grab = new_grab_loop(&setup);
    let mut slot = Slot {
        name,
        setup,
        endpoint,
        client,
        grab,
        job: None,
        started: Instant::now(),
        jobs_done: 0,
        stopping: None,
        requeued: None,
        shutdown_deadline: None,
        ended: None,
    };
    slot.run().await;
}

/// The answer of the request in flight, if there is one.
async fn answer(job: &mut Option<InFlight>) -> Result<Outcome, Unreachable> {
    match job {
        Some(job) => job.request.as_mut().await,
        None => std::future::pending().await,
    }
}

impl Slot {
    async fn run(&mut self) {
        self.send_event(Event::Ready { id: self.setup.id });
        self.grab.start().await;
        while self.ended.is_none() {
            let deadline = self.deadline();
            let wake = tokio::select! {
                w = self.grab.wake() => Wake::Grab(w),
                a = answer(&mut self.job) => Wake::Answered(a),
                c = self.setup.control.recv() => Wake::Control(c),
                _ = sleep_until(deadline.into()) => Wake::Timer,
            };
            match wake {
                Wake::Grab(w) => {
                    if let Some(job) = self.grab.on_wake(w).await {
                        self.start_job(job);
                    }
                }
                Wake::Answered(answer) => self.answered(answer).await,
                Wake::Control(Some(Control::Kill)) => self.end_now(StopReason::Killed),
                Wake::Control(Some(Control::Shutdown) | None) => {
                    self.shutdown_deadline = Some(Instant::now() + self.setup.shutdown_timeout);
                    self.request_stop(StopReason::Shutdown);
                }
                Wake::Control(Some(Control::Retire(reason, text))) => {
                    self.retire(reason, text);
                    self.request_stop(reason);
                }
                Wake::Control(Some(Control::Stop(reason))) => self.request_stop(reason),
                Wake::Control(Some(Control::HandOver)) => self.request_stop(StopReason::Upgrade),
                Wake::Timer => self.on_timer().await,
            }
        }
        let cause = self
            .ended
            .take()
            .unwrap_or(ExitCause::Requested(StopReason::Shutdown));
        let requeued = self.requeued.take();
        self.send_event(Event::Exited {
            id: self.setup.id,
            status: None,
            cause,
            requeued,
            usage: None,
        });
    }

    /// The `job` field of this slot's log lines.
    fn job(&self) -> &str {
        &self.setup.job.name
    }

    fn send_event(&self, event: Event) {
        let _ = self.setup.events.send(event);
    }

    fn deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let at = match &self.job {
            Some(job) => [job.deadline.map(|(d, _)| d), self.shutdown_deadline]
                .into_iter()
                .flatten()
                .min(),
            None => self.setup.job.max_lifetime.map(|l| self.started + l),
        };
        at.unwrap_or(far)
    }

    fn start_job(&mut self, job: Assignment) {
        let timeout = self
            .setup
            .job
            .function(&job.function)
            .and_then(|f| f.timeout);
        let fields = wire::JobFields {
            function_name: &job.function,
            job_handle: &job.handle,
            unique: &job.unique,
            workload: &job.workload,
        };
        let body = wire::encode(&fields, self.endpoint.format);
        let client = self.client.clone();
        let endpoint = self.endpoint.clone();
        let request = async move { client.post(&endpoint, body).await }.boxed();
        self.job = Some(InFlight {
            request,
            function: job.function.clone(),
            started: Instant::now(),
            deadline: timeout.map(|t| (Instant::now() + t, t)),
        });
        self.send_event(Event::Busy {
            id: self.setup.id,
            function: job.function,
        });
    }

    async fn answered(&mut self, answer: Result<Outcome, Unreachable>) {
        let Some(job) = self.job.take() else {
            return;
        };
        match answer {
            Ok(Outcome::Done(result)) => {
                let then = self.job_ended(&job, JobOutcome::Done);
                self.grab.complete(result, then).await;
                self.after_job(then);
            }
            Ok(Outcome::Failed(message)) => {
                tracing::debug!(job = self.job(), "{}: Job failed: {message}", self.name);
                let then = self.job_ended(&job, JobOutcome::Failed(message.clone()));
                self.grab.fail(message.as_bytes(), then).await;
                self.after_job(then);
            }
            Err(Unreachable(why)) => {
                self.requeued = Some(job.function);
                tracing::warn!(
                    job = self.job(),
                    "{}: Endpoint {} unreachable: {why}; gearmand will hand the job out again",
                    self.name,
                    self.endpoint.url
                );
                // Dropping the connections unanswered hands the job back.
                self.grab.close();
                self.ended = Some(ExitCause::Unexpected(format!(
                    "endpoint unreachable: {why}"
                )));
            }
        }
    }

    /// Counts the job and tells the supervisor how it ended (an answer
    /// that can no longer reach gearmand leaves the job to be handed out
    /// again); says whether the slot takes the next one.
    fn job_ended(&mut self, job: &InFlight, outcome: JobOutcome) -> Then {
        self.jobs_done += 1;
        let outcome = if self.grab.deliverable() {
            outcome
        } else {
            JobOutcome::Requeued
        };
        self.send_event(Event::JobEnded {
            id: self.setup.id,
            function: job.function.clone(),
            outcome,
            duration: job.started.elapsed(),
        });
        let due = recycling_due(
            &self.setup.job,
            self.jobs_done,
            self.started,
            Instant::now(),
        );
        if let Some((why, text)) = due {
            self.retire(why, text);
        }
        if self.stopping.is_some() {
            Then::Stop
        } else {
            Then::Grab
        }
    }

    fn after_job(&mut self, then: Then) {
        if then == Then::Stop {
            let why = self.stopping.unwrap_or(StopReason::Shutdown);
            self.ended.get_or_insert(ExitCause::Requested(why));
        }
    }

    fn retire(&mut self, why: StopReason, reason: String) {
        if self.stopping.is_none() {
            tracing::info!(job = self.job(), "{}: Recycling: {reason}", self.name);
            self.send_event(Event::Retiring {
                id: self.setup.id,
                reason,
            });
            self.stopping = Some(why);
        }
    }

    /// Stops now when idle, else once the job in flight is answered.
    fn request_stop(&mut self, why: StopReason) {
        let why = *self.stopping.get_or_insert(why);
        if self.job.is_none() {
            self.grab.close();
            self.ended.get_or_insert(ExitCause::Requested(why));
        }
    }

    /// Ends at once; a job in flight is abandoned and goes back to gearmand.
    fn end_now(&mut self, why: StopReason) {
        if let Some(job) = self.job.take() {
            tracing::info!(
                job = self.job(),
                "{}: Stopped with a job in flight; gearmand will hand it out again",
                self.name
            );
            self.requeued = Some(job.function);
        }
        self.grab.close();
        self.ended.get_or_insert(ExitCause::Requested(why));
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        let Some(job) = &self.job else {
            if self
                .setup
                .job
                .max_lifetime
                .is_some_and(|l| now >= self.started + l)
            {
                let secs = self.setup.job.max_lifetime.unwrap_or_default().as_secs();
                self.retire(
                    StopReason::MaxLifetime,
                    format!("max_lifetime {secs}s reached"),
                );
                self.request_stop(StopReason::MaxLifetime);
            }
            return;
        };
        if let Some((deadline, limit)) = job.deadline {
            if now >= deadline {
                return self.time_out(limit).await;
            }
        }
        if self.shutdown_deadline.is_some_and(|d| now >= d) {
            tracing::warn!(
            job = self.job(),
            "{}: Job still running {}s into the shutdown; abandoning it, gearmand will hand it out again",
            self.name,
                self.setup.shutdown_timeout.as_secs_f64()
            );
            self.end_now(StopReason::Shutdown);
        }
    }

    /// Abandons the request (its connection is closed, not reused) and
    /// fails the job; the slot goes on.
    async fn time_out(&mut self, limit: Duration) {
        let Some(job) = self.job.take() else {
            return;
        };
        let message = format!("timeout after {}s", limit.as_secs());
        tracing::warn!(job = self.job(), "{}: Job {message}", self.name);
        let then = self.job_ended(&job, JobOutcome::TimedOut(message.clone()));
        self.grab.fail(message.as_bytes(), then).await;
        self.after_job(then);
    }
}
