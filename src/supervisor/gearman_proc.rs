//! One `gearman`-protocol process: it connects to gearmand on its own, so
//! the supervisor only watches it. Its stdout lines `lastrun <epoch>`,
//! `lasterror <epoch>` and `lasterror_msg <text>` feed the console columns
//! (as Gearman::Driver's children reported them); other output is logged.
//!
//! Stopping (scale-down, recycling, reload, shutdown) sends the job's
//! `stop_signal` at once, since the supervisor cannot see whether the process
//! is busy, and SIGKILL if it has not exited `shutdown_timeout` later.
//! Whether a job in flight finishes is up to the worker: an unmodified PHP
//! `GearmanWorker` or Perl `Gearman::Worker` dies at once on every signal
//! whose default action ends a process, and its job goes back to gearmand.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::process::ChildStdout;
use tokio::sync::mpsc;
use tokio::time::sleep_until;

use std::sync::Arc;

use crate::config::JobSpec;

use super::events::{Control, Event, ExitCause, Report, StopReason};
use super::handover::{self, Begin};
use super::member::WorkerId;
use super::sampling::ExitWatch;
use super::spawn::{describe_exit, signal_group};
use super::stdio::ProcessSetup;

/// `begin` is a process just started, or one adopted across an upgrade.
pub async fn run(mut setup: ProcessSetup, begin: Begin) {
    use std::os::fd::AsRawFd;
    let pid = setup.pid;
    let id = setup.id;
    let job = setup.job.clone();
    let pipes = begin.pipes;
    let fds = [
        pipes.stdin.as_raw_fd(),
        pipes.stdout.as_raw_fd(),
        pipes.stderr.as_raw_fd(),
    ];
    // Its stdin stays open and unused: some workers exit on EOF.
    let _stdin = pipes.stdin;
    tokio::spawn(read_reports(
        id,
        job.clone(),
        pipes.stdout,
        setup.events.clone(),
    ));
    tokio::spawn(super::output::log_stderr(pid, job.clone(), pipes.stderr));
    let _ = setup.events.send(Event::Ready { id });
    let stop_signal = setup.job.stop_signal;
    let mut escalation: Option<(Instant, Signal)> = None;
    let mut requested: Option<StopReason> = None;
    let mut exit = ExitWatch::new(pid);
    let status = loop {
        let far = Instant::now() + Duration::from_secs(3600);
        let at = escalation.map_or(far, |(t, _)| t);
        tokio::select! {
            status = exit.wait() => break status.ok(),
            control = setup.control.recv(), if requested.is_none() => {
                if control == Some(Control::HandOver) {
                    // Its pipes go to the next image; the readers here end
                    // with this image.
                    match handover::gearman_parts(fds, begin.jobs_done) {
                        Ok(parts) => {
                            let parts = Box::new(parts);
                            let _ = setup.events.send(Event::HandedOver { id, parts });
                            return;
                        }
                        Err(err) => tracing::error!(pid, job = job.name.as_str(), "cannot hand the process over: {err}; stopping it"),
                    }
                }
                if let Some(Control::Retire(_, reason)) = &control {
                    tracing::info!(pid, job = job.name.as_str(), "Recycling: {reason}");
                }
                requested = Some(control.map_or(StopReason::Shutdown, |c| c.reason()));
                tracing::debug!(pid, job = job.name.as_str(), "sending {} (its stop_signal)", stop_signal.as_str());
                signal_group(pid, stop_signal);
                escalation = Some((Instant::now() + setup.shutdown_timeout, Signal::SIGKILL));
            }
            _ = sleep_until(at.into()), if escalation.is_some() => {
                tracing::warn!(
                    pid,
                    job = job.name.as_str(),
                    "did not exit within {}s of {}; sending SIGKILL",
                    setup.shutdown_timeout.as_secs_f64(),
                    stop_signal.as_str()
                );
                signal_group(pid, Signal::SIGKILL);
                escalation = None;
            }
        }
    };
    let cause = match requested {
        Some(reason) => ExitCause::Requested(reason),
        None => ExitCause::Unexpected(
            status
                .as_ref()
                .map(describe_exit)
                .unwrap_or_else(|| "exited".into()),
        ),
    };
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
    let _ = setup.events.send(Event::Exited {
        id,
        status,
        cause,
        // Its jobs are between it and gearmand: gearmand re-queues them.
        requeued: None,
        usage: exit.take_usage(),
    });
}

async fn read_reports(
    id: WorkerId,
    job: Arc<JobSpec>,
    stdout: ChildStdout,
    events: mpsc::UnboundedSender<Event>,
) {
    super::output::for_each_line(stdout, |text| match parse_report(text) {
        Some(report) => {
            let _ = events.send(Event::Report { id, report });
        }
        None => tracing::info!(pid = id.pid(), job = job.name.as_str(), "STDOUT: {text}"),
    })
    .await;
}

/// `lastrun <epoch>`, `lasterror <epoch>`, `lasterror_msg <text>`.
pub fn parse_report(line: &str) -> Option<Report> {
    let (word, rest) = line.split_once(' ')?;
    match word {
        "lastrun" => rest.trim().parse().ok().map(Report::LastRun),
        "lasterror" => rest.trim().parse().ok().map(Report::LastError),
        "lasterror_msg" => Some(Report::LastErrorMsg(rest.to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gearman_driver_child_reports() {
        assert_eq!(
            parse_report("lastrun 1264793837"),
            Some(Report::LastRun(1264793837))
        );
        assert_eq!(parse_report("lasterror 5"), Some(Report::LastError(5)));
        assert_eq!(
            parse_report("lasterror_msg oops: x"),
            Some(Report::LastErrorMsg("oops: x".into()))
        );
        assert_eq!(parse_report("lastrun soon"), None);
        assert_eq!(parse_report("hello"), None);
    }
}
