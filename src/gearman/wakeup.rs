//! Noticing new work for jobs that have no process at all.
//!
//! A job scaled down to zero has no connection on which gearmand could tell
//! us that work arrived, so we would only learn of it at the next poll. This
//! module keeps one extra worker connection per server that registers
//! (`CAN_DO`) the functions of exactly those jobs and sleeps (`PRE_SLEEP`);
//! gearmand wakes it (`NOOP`) as soon as one of them is queued, and the
//! supervisor polls at once. It never takes a job.
//!
//! # What gearmand does, and what this relies on
//!
//! Read in gearmand 1.1.20 (Debian's `gearman-job-server`; unchanged on the
//! 1.1 branch and on master) and checked against it by `tests/wakeup.rs`:
//!
//! 1. A worker connection carries two flags, `is_sleeping` and
//!    `is_noop_sent` (`libgearman-server/struct/io.h`). A new connection
//!    starts with both false (`_server_con_create()` in
//!    `libgearman-server/connection.cc`).
//! 2. Queuing a job, new or handed back, sends `NOOP` only to connections
//!    registered for its function with `is_sleeping && !is_noop_sent`, and
//!    then sets `is_noop_sent` (`gearman_server_job_queue()` in
//!    `libgearman-server/job.cc`). With `--worker-wakeup N` only N such
//!    connections are woken per job, taken round-robin from the function's
//!    worker list; the default 0 wakes them all (the thundering herd).
//! 3. `PRE_SLEEP` (`gearman_server_run_command()` in
//!    `libgearman-server/server.cc`) answers `NOOP` at once, without
//!    sleeping, when `gearman_server_job_peek()` (`gearmand_con.cc`) finds a
//!    runnable job for any function of the connection; otherwise it sets
//!    `is_sleeping`. It never clears `is_noop_sent`.
//! 4. Only `GRAB_JOB`, `GRAB_JOB_UNIQ` and `GRAB_JOB_ALL` clear both flags
//!    (same function). `CAN_DO`, `CANT_DO` and `RESET_ABILITIES` leave them
//!    alone. So a connection that was woken once and never grabs is deaf to
//!    every later job: re-sending `PRE_SLEEP` or `CAN_DO` does not re-arm it.
//! 5. `GRAB_JOB` takes a job only from the functions the connection has
//!    registered (`gearman_server_job_take()`, `gearmand_con.cc`): with none
//!    registered it answers `NO_JOB` and takes nothing.
//! 6. A job counts a retry only when it had been taken by a worker and is
//!    queued again (`gearman_server_job_queue()`: `job->worker` set); with
//!    `--job-retries N` gearmand drops it at the Nth. A job never taken
//!    spends no retry.
//! 7. Packets of one connection are handled in the order they were sent, and
//!    `ECHO_REQ` is answered in that order without touching the flags.
//!
//! # How a connection re-arms
//!
//! Arming writes, in one go: `RESET_ABILITIES`, `GRAB_JOB` (registered for
//! nothing, so by 5 it takes nothing and by 4 clears `is_noop_sent`),
//! `CAN_DO` per watched function, `PRE_SLEEP`, and an `ECHO_REQ` as a marker.
//! Nothing can be taken and no retry spent (5, 6), and no arrival is missed:
//! work queued before the `PRE_SLEEP` is answered by it (3), work queued
//! after it wakes the sleeping connection (2).
//!
//! A `NOOP` that arrives before the marker's echo answered the `PRE_SLEEP`:
//! the work was already queued when the connection armed. One that arrives
//! after it is new work. Either way the supervisor is asked to poll. The
//! connection re-arms when the set of watched functions changes (the
//! supervisor started a process, so that job is no longer watched), and
//! otherwise after [`REARM_AFTER`]; each further `NOOP` answering the
//! `PRE_SLEEP` doubles that wait, up to [`REARM_MAX`], so that work which
//! sits in the queue (a job whose processes cannot start) does not turn
//! wake-ups into a busy loop. The supervisor leaves such jobs out of the
//! watched set, so this is a backstop.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::{connect, Link, Packet, PacketType};

/// How soon a woken connection re-arms when the watched set has not changed.
pub const REARM_AFTER: Duration = Duration::from_millis(50);
/// The longest wait before re-arming while work sits in the queue.
pub const REARM_MAX: Duration = Duration::from_secs(2);
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(1);
/// The `ECHO_REQ` payload that marks the end of an arming.
const MARKER: &[u8] = b"gearman-driver wake-up armed";

/// Starts one watcher task per server. `functions` holds the functions to
/// watch (sorted); `wake` is notified when any server has work for them.
pub fn spawn(servers: &[String], functions: watch::Receiver<Vec<String>>, wake: Arc<Notify>) {
    for addr in servers {
        tokio::spawn(watch_server(addr.clone(), functions.clone(), wake.clone()));
    }
}

async fn watch_server(
    addr: String,
    mut functions: watch::Receiver<Vec<String>>,
    wake: Arc<Notify>,
) {
    let mut backoff = RECONNECT_MIN;
    loop {
        match connect(&addr).await {
            Ok(link) => {
                backoff = RECONNECT_MIN;
                let mut watcher = Watcher {
                    link,
                    unanswered_markers: 0,
                    rearm_at: None,
                    rearm_wait: REARM_AFTER,
                };
                if watcher.serve(&mut functions, &wake).await.is_break() {
                    return;
                }
            }
            Err(err) => tracing::trace!("wake-up connection to {addr}: {err}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

/// One wake-up connection.
struct Watcher {
    link: Link,
    /// Armings whose `PRE_SLEEP` gearmand may still be answering.
    unanswered_markers: u32,
    /// Woken, and due to re-arm then.
    rearm_at: Option<Instant>,
    /// The wait before the next re-arm of an unchanged set.
    rearm_wait: Duration,
}

impl Watcher {
    /// Runs until the connection breaks (Continue) or the supervisor is gone (Break).
    async fn serve(
        &mut self,
        functions: &mut watch::Receiver<Vec<String>>,
        wake: &Notify,
    ) -> std::ops::ControlFlow<()> {
        use std::ops::ControlFlow::{Break, Continue};
        let mut watched: Vec<String> = functions.borrow_and_update().clone();
        if self.arm(&watched).await.is_err() {
            return Continue(());
        }
        loop {
            let rearm_at = self.rearm_at;
            let rearm = async {
                match rearm_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = functions.changed() => {
                    if changed.is_err() {
                        return Break(());
                    }
                    watched = functions.borrow_and_update().clone();
                    self.rearm_wait = REARM_AFTER;
                    if self.arm(&watched).await.is_err() {
                        return Continue(());
                    }
                }
                packet = self.link.next() => match packet {
                    Some(Ok(p)) => self.on_packet(&p, wake),
                    _ => return Continue(()),
                },
                _ = rearm => {
                    if self.arm(&watched).await.is_err() {
                        return Continue(());
                    }
                }
            }
        }
    }

    fn on_packet(&mut self, packet: &Packet, wake: &Notify) {
        match packet.ptype {
            PacketType::Noop => {
                wake.notify_one();
                let queued_before_arming = self.unanswered_markers > 0;
                if queued_before_arming && self.rearm_at.is_none() {
                    self.rearm_wait = (self.rearm_wait * 2).min(REARM_MAX);
                } else if !queued_before_arming {
                    self.rearm_wait = REARM_AFTER;
                }
                tracing::trace!(
                    "wake-up NOOP ({}); re-arming within {:?}",
                    if queued_before_arming {
                        "work already queued"
                    } else {
                        "new work"
                    },
                    self.rearm_wait
                );
                self.rearm_at = Some(Instant::now() + self.rearm_wait);
            }
            PacketType::EchoRes => {
                self.unanswered_markers = self.unanswered_markers.saturating_sub(1);
            }
            _ => {}
        }
    }

    /// Registers exactly `functions` and goes to sleep armed (see the module doc).
    async fn arm(&mut self, functions: &[String]) -> Result<(), gearman::GearmanError> {
        tracing::debug!("wake-up connection watches {} function(s)", functions.len());
        self.rearm_at = None;
        let link = &mut self.link;
        link.feed(Packet::request(PacketType::ResetAbilities, vec![]))
            .await?;
        if functions.is_empty() {
            return link.flush().await;
        }
        link.feed(Packet::request(PacketType::GrabJob, vec![]))
            .await?;
        for f in functions {
            link.feed(Packet::request(
                PacketType::CanDo,
                vec![Bytes::from(f.clone())],
            ))
            .await?;
        }
        link.feed(Packet::request(PacketType::PreSleep, vec![]))
            .await?;
        link.feed(Packet::request(
            PacketType::EchoReq,
            vec![Bytes::from_static(MARKER)],
        ))
        .await?;
        self.unanswered_markers += 1;
        link.flush().await
    }
}
