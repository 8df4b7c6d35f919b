//! Noticing new work for jobs that have no process at all.
//!
//! A job scaled down to zero has no connection on which gearmand could tell
//! us that work arrived, so we would only learn of it at the next poll. This
//! module keeps one extra worker connection per server that registers
//! (`CAN_DO`) the functions of exactly those jobs and sleeps (`PRE_SLEEP`);
//! gearmand wakes it (`NOOP`) as soon as one of them is queued, and we poll at
//! once. It never grabs a job. After a wake-up it re-arms only when the set
//! of watched functions changes or after [`REARM_AFTER`], because gearmand
//! answers `PRE_SLEEP` with an immediate `NOOP` while such a job is queued.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::sync::{watch, Notify};

use super::{connect, Link, Packet, PacketType};

/// Least time between two wake-ups from one server for an unchanged set.
pub const REARM_AFTER: Duration = Duration::from_millis(200);
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(1);

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
                if serve(link, &mut functions, &wake).await.is_break() {
                    return;
                }
            }
            Err(err) => tracing::trace!("wake-up connection to {addr}: {err}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

/// Runs one connection until it breaks (Continue) or the supervisor is gone (Break).
async fn serve(
    mut link: Link,
    functions: &mut watch::Receiver<Vec<String>>,
    wake: &Notify,
) -> std::ops::ControlFlow<()> {
    use std::ops::ControlFlow::{Break, Continue};
    let mut watched: Vec<String> = functions.borrow_and_update().clone();
    if register(&mut link, &watched).await.is_err() {
        return Continue(());
    }
    let mut rearm_at: Option<tokio::time::Instant> = None;
    loop {
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
                rearm_at = None;
                if register(&mut link, &watched).await.is_err() {
                    return Continue(());
                }
            }
            packet = link.next() => match packet {
                Some(Ok(p)) if p.ptype == PacketType::Noop => {
                    wake.notify_one();
                    rearm_at = Some(tokio::time::Instant::now() + REARM_AFTER);
                }
                Some(Ok(_)) => {}
                _ => return Continue(()),
            },
            _ = rearm => {
                rearm_at = None;
                if !watched.is_empty() && link.send(Packet::request(PacketType::PreSleep, vec![])).await.is_err() {
                    return Continue(());
                }
            }
        }
    }
}

/// Replaces the registered functions and goes to sleep.
async fn register(link: &mut Link, functions: &[String]) -> Result<(), gearman::GearmanError> {
    tracing::debug!("wake-up connection watches {} function(s)", functions.len());
    link.feed(Packet::request(PacketType::ResetAbilities, vec![]))
        .await?;
    for f in functions {
        link.feed(Packet::request(
            PacketType::CanDo,
            vec![Bytes::from(f.clone())],
        ))
        .await?;
    }
    if !functions.is_empty() {
        link.feed(Packet::request(PacketType::PreSleep, vec![]))
            .await?;
    }
    link.flush().await
}
