//! The wake-up connections (`src/gearman/wakeup.rs`) against a real gearmand:
//! every arrival of work for a watched function is reported, not only the
//! first; no job is ever taken or charged a retry; work that sits in the
//! queue does not make them spin. And the gearmand behaviour they rely on.

mod common;
use common::*;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use gearman_driver::gearman::{arg, connect, wakeup, Link, Packet, PacketType};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::timeout;

const F: &str = "Wake::f";

/// Wake-up watchers on `servers`, and a channel that gets one message per
/// notification they raise.
fn watchers(
    servers: &[String],
    watched: &[&str],
) -> (watch::Sender<Vec<String>>, mpsc::UnboundedReceiver<()>) {
    let (set_tx, set_rx) = watch::channel(watched.iter().map(|s| s.to_string()).collect());
    let wake = Arc::new(Notify::new());
    wakeup::spawn(servers, set_rx, wake.clone());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            wake.notified().await;
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    (set_tx, rx)
}

async fn next_wake(rx: &mut mpsc::UnboundedReceiver<()>, what: &str) {
    timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no wake-up for {what} within 10 s"));
}

fn set(tx: &watch::Sender<Vec<String>>, functions: &[&str]) {
    tx.send_replace(functions.iter().map(|s| s.to_string()).collect());
}

async fn submit_bg(addr: &str, function: &str) {
    let mut c = Client::connect(addr).await.unwrap();
    c.submit_background(function, &b"x"[..]).await.unwrap();
}

fn request(ptype: PacketType, args: &[&[u8]]) -> Packet {
    Packet::request(
        ptype,
        args.iter().map(|a| Bytes::copy_from_slice(a)).collect(),
    )
}

async fn recv(link: &mut Link) -> Packet {
    timeout(Duration::from_secs(10), link.next())
        .await
        .expect("an answer from gearmand")
        .expect("open connection")
        .expect("a packet")
}

/// Takes one queued job of `function` and completes it.
async fn take_and_complete(addr: &str, function: &str) {
    let mut w = connect(addr).await.unwrap();
    w.send(request(PacketType::CanDo, &[function.as_bytes()]))
        .await
        .unwrap();
    w.send(request(PacketType::GrabJob, &[])).await.unwrap();
    let p = recv(&mut w).await;
    assert_eq!(p.ptype, PacketType::JobAssign, "a job to take");
    w.send(request(PacketType::WorkComplete, &[&arg(&p, 0), b""]))
        .await
        .unwrap();
    w.send(request(PacketType::EchoReq, &[b"done"]))
        .await
        .unwrap();
    assert_eq!(recv(&mut w).await.ptype, PacketType::EchoRes);
}

/// `show jobs`: the retry count of every job gearmand holds.
fn retries(gearmand: &Gearmand) -> Vec<u64> {
    gearmand
        .admin("show jobs")
        .iter()
        .map(|l| l.split('\t').nth(1).unwrap().parse().unwrap())
        .collect()
}

/// (total, running) of `function` in gearmand's `status`.
fn queue(gearmand: &Gearmand, function: &str) -> (u64, u64) {
    gearmand
        .status()
        .into_iter()
        .find(|r| r.0 == function)
        .map_or((0, 0), |r| (r.1, r.2))
}

#[test]
fn every_arrival_wakes_the_watcher_and_no_job_is_taken() {
    let gearmand = Gearmand::start();
    let addr = gearmand.addr();
    block_on(Duration::from_secs(120), async {
        let (set_tx, mut wakes) = watchers(std::slice::from_ref(&addr), &[F]);
        for round in 1..=4 {
            submit_bg(&addr, F).await;
            next_wake(&mut wakes, &format!("round {round}")).await;
            // As the supervisor does: a process starts, the job is no longer watched.
            set(&set_tx, &[]);
            assert_eq!(queue(&gearmand, F), (1, 0), "queued, not taken");
            assert_eq!(retries(&gearmand), vec![0], "no retry spent");
            take_and_complete(&addr, F).await;
            assert_eq!(queue(&gearmand, F).0, 0);
            // Reaped to zero: watched again.
            set(&set_tx, &[F]);
        }
    });
}

#[test]
fn work_queued_before_the_function_is_watched_is_noticed() {
    let gearmand = Gearmand::start();
    let addr = gearmand.addr();
    block_on(Duration::from_secs(60), async {
        let (set_tx, mut wakes) = watchers(std::slice::from_ref(&addr), &[]);
        submit_bg(&addr, F).await;
        set(&set_tx, &["Wake::other", F]);
        next_wake(&mut wakes, "work queued before").await;
        assert_eq!(queue(&gearmand, F), (1, 0));
    });
}

#[test]
fn work_at_the_second_server_wakes_its_watcher() {
    let first = Gearmand::start();
    let second = Gearmand::start();
    let servers = [first.addr(), second.addr()];
    block_on(Duration::from_secs(60), async {
        let (set_tx, mut wakes) = watchers(&servers, &[F]);
        for round in 1..=3 {
            submit_bg(&servers[1], F).await;
            next_wake(&mut wakes, &format!("round {round} at the second server")).await;
            set(&set_tx, &[]);
            take_and_complete(&servers[1], F).await;
            set(&set_tx, &[F]);
        }
        assert_eq!(queue(&first, F).0, 0);
    });
}

#[test]
fn a_backlog_left_in_the_queue_wakes_rarely_not_in_a_loop() {
    let gearmand = Gearmand::start();
    let addr = gearmand.addr();
    let woken = block_on(Duration::from_secs(60), async {
        let (_set_tx, mut wakes) = watchers(std::slice::from_ref(&addr), &[F]);
        submit_bg(&addr, F).await;
        next_wake(&mut wakes, "the job").await;
        // Nobody takes the job and the watched set stays: the watcher re-arms
        // on its own, finds the job still queued, and must back off.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut woken = 1;
        while wakes.try_recv().is_ok() {
            woken += 1;
        }
        woken
    });
    assert!(woken >= 2, "re-armed and saw the job again ({woken})");
    // Backing off from 50 ms doubling to 2 s gives about 6 in 3 s; a
    // re-arm per NOOP would give hundreds.
    assert!(woken <= 12, "{woken} wake-ups in 3 s");
    assert_eq!(queue(&gearmand, F), (1, 0), "never taken");
    assert_eq!(retries(&gearmand), vec![0], "no retry spent");
}

/// The gearmand behaviour the wake-up design rests on (see the module doc
/// of `src/gearman/wakeup.rs`), checked packet by packet.
#[test]
fn gearmand_wakes_a_sleeper_once_and_only_a_grab_rearms_it() {
    let gearmand = Gearmand::start();
    let addr = gearmand.addr();
    block_on(Duration::from_secs(60), async {
        let mut w = connect(&addr).await.unwrap();
        // A fresh connection starts armed. (The echo makes sure gearmand has
        // seen PRE_SLEEP before the job comes from the other connection.)
        for p in [
            request(PacketType::CanDo, &[F.as_bytes()]),
            request(PacketType::PreSleep, &[]),
            request(PacketType::EchoReq, &[b"asleep"]),
        ] {
            w.feed(p).await.unwrap();
        }
        w.flush().await.unwrap();
        assert_eq!(recv(&mut w).await.ptype, PacketType::EchoRes);
        submit_bg(&addr, F).await;
        assert_eq!(recv(&mut w).await.ptype, PacketType::Noop);
        take_and_complete(&addr, F).await;

        // PRE_SLEEP and CAN_DO again do not re-arm it: the next job brings nothing.
        for p in [
            request(PacketType::PreSleep, &[]),
            request(PacketType::ResetAbilities, &[]),
            request(PacketType::CanDo, &[F.as_bytes()]),
            request(PacketType::PreSleep, &[]),
            request(PacketType::EchoReq, &[b"asleep"]),
        ] {
            w.feed(p).await.unwrap();
        }
        w.flush().await.unwrap();
        assert_eq!(recv(&mut w).await.ptype, PacketType::EchoRes);
        submit_bg(&addr, F).await;
        w.send(request(PacketType::EchoReq, &[b"after"]))
            .await
            .unwrap();
        assert_eq!(
            recv(&mut w).await.ptype,
            PacketType::EchoRes,
            "no NOOP for the second job"
        );

        // PRE_SLEEP while work is queued answers NOOP at once.
        w.send(request(PacketType::PreSleep, &[])).await.unwrap();
        assert_eq!(recv(&mut w).await.ptype, PacketType::Noop);

        // GRAB_JOB with nothing registered takes nothing (NO_JOB) and re-arms.
        for p in [
            request(PacketType::ResetAbilities, &[]),
            request(PacketType::GrabJob, &[]),
        ] {
            w.feed(p).await.unwrap();
        }
        w.flush().await.unwrap();
        assert_eq!(recv(&mut w).await.ptype, PacketType::NoJob);
        assert_eq!(queue(&gearmand, F), (1, 0), "still queued, not taken");
        take_and_complete(&addr, F).await;
        for p in [
            request(PacketType::CanDo, &[F.as_bytes()]),
            request(PacketType::PreSleep, &[]),
            request(PacketType::EchoReq, &[b"asleep"]),
        ] {
            w.feed(p).await.unwrap();
        }
        w.flush().await.unwrap();
        assert_eq!(recv(&mut w).await.ptype, PacketType::EchoRes);
        submit_bg(&addr, F).await;
        assert_eq!(
            recv(&mut w).await.ptype,
            PacketType::Noop,
            "re-armed by the grab"
        );
        assert_eq!(retries(&gearmand), vec![0]);
    });
}
