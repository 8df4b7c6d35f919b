//! What stopping does to a job's processes, per protocol, in the words the
//! log uses, so that an operator reading the log knows whether a job in
//! flight will finish:
//!
//! - stdio and exec processes are asked by closing their stdin once idle, so
//!   a job in flight always finishes (up to `shutdown_timeout` on shutdown);
//! - `gearman`-protocol processes get their `stop_signal` at once (the
//!   supervisor cannot see whether they are busy); a job in flight finishes
//!   only if the worker handles that signal;
//! - `http` slots have no process: they stop once their request in flight
//!   is answered (up to `shutdown_timeout` on shutdown).

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::config::{JobSpec, Protocol};

/// Added to `Process stopped (idle 12s)` for a process stopped by signal.
pub fn stop_note(job: &JobSpec) -> String {
    match job.protocol {
        Protocol::Gearman => format!(", sent {} (its stop_signal)", job.stop_signal.as_str()),
        Protocol::Stdio | Protocol::Exec | Protocol::Http => String::new(),
    }
}

/// The log line of a busy process stopped because its job is over
/// `max_processes`.
pub fn busy_stop(job: &JobSpec) -> String {
    match job.protocol {
        Protocol::Gearman => format!(
            "Process stopped while it may be running a job, sent {} (its stop_signal)",
            job.stop_signal.as_str()
        ),
        Protocol::Stdio | Protocol::Exec => "Process will stop after its current job".into(),
        Protocol::Http => "Slot will stop after its current job".into(),
    }
}

/// The lines logged when a shutdown begins. `jobs` holds each job with the
/// number of its processes.
pub fn shutdown_lines<'a>(
    received: &str,
    timeout: Duration,
    jobs: impl Iterator<Item = (&'a JobSpec, usize)>,
) -> Vec<String> {
    let secs = timeout.as_secs_f64();
    let mut first = format!("{received}: shutting down");
    let mut gearman = Vec::new();
    let mut piped = 0;
    let mut slots = 0;
    for (job, count) in jobs.filter(|(_, count)| *count > 0) {
        match job.protocol {
            Protocol::Gearman => gearman.push(gearman_line(job, count, secs)),
            Protocol::Stdio | Protocol::Exec => piped += count,
            Protocol::Http => slots += count,
        }
    }
    if piped > 0 {
        first.push_str(&format!(
            "; {piped} stdio/exec process(es) finish the job in flight (up to {secs}s) \
             and are stopped when idle"
        ));
    }
    if slots > 0 {
        first.push_str(&format!(
            "; {slots} http slot(s) finish the request in flight (up to {secs}s)"
        ));
    }
    std::iter::once(first).chain(gearman).collect()
}

fn gearman_line(job: &JobSpec, count: usize, secs: f64) -> String {
    let signal = job.stop_signal;
    let name = signal.as_str();
    let fate = if signal == Signal::SIGKILL {
        "a job in flight goes back to gearmand".to_string()
    } else {
        format!(
            "a job in flight finishes only if the worker handles {name}, \
             otherwise gearmand hands it to another worker"
        )
    };
    format!(
        "[{}] {count} gearman-protocol process(es) get {name} (stop_signal) now, \
         SIGKILL after {secs}s; {fate}",
        job.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn job(name: &str, protocol: Protocol, stop_signal: Signal) -> Arc<JobSpec> {
        Arc::new(JobSpec {
            stop_signal,
            ..JobSpec::for_test(name, protocol)
        })
    }

    #[test]
    fn shutdown_names_the_signal_each_gearman_job_gets() {
        let stdio = job("M::s", Protocol::Stdio, Signal::SIGTERM);
        let php = job("M::php", Protocol::Gearman, Signal::SIGQUIT);
        let idle = job("M::none", Protocol::Gearman, Signal::SIGTERM);
        let exec = job("M::e", Protocol::Exec, Signal::SIGTERM);
        let lines = shutdown_lines(
            "TERM received",
            Duration::from_secs(30),
            [(&*stdio, 2), (&*php, 3), (&*idle, 0), (&*exec, 1)].into_iter(),
        );
        assert_eq!(
            lines,
            vec![
                "TERM received: shutting down; 3 stdio/exec process(es) finish the job in \
                 flight (up to 30s) and are stopped when idle",
                "[M::php] 3 gearman-protocol process(es) get SIGQUIT (stop_signal) now, \
                 SIGKILL after 30s; a job in flight finishes only if the worker handles \
                 SIGQUIT, otherwise gearmand hands it to another worker",
            ]
        );
    }

    #[test]
    fn a_shutdown_without_processes_says_only_that() {
        let php = job("M::php", Protocol::Gearman, Signal::SIGQUIT);
        let lines = shutdown_lines(
            "TERM received",
            Duration::from_secs(3),
            [(&*php, 0)].into_iter(),
        );
        assert_eq!(lines, vec!["TERM received: shutting down"]);
    }

    #[test]
    fn only_signalled_stops_get_a_note() {
        assert_eq!(
            stop_note(&job("a", Protocol::Gearman, Signal::SIGQUIT)),
            ", sent SIGQUIT (its stop_signal)"
        );
        assert_eq!(stop_note(&job("a", Protocol::Stdio, Signal::SIGQUIT)), "");
        assert_eq!(
            busy_stop(&job("a", Protocol::Gearman, Signal::SIGQUIT)),
            "Process stopped while it may be running a job, sent SIGQUIT (its stop_signal)"
        );
        assert_eq!(
            busy_stop(&job("a", Protocol::Exec, Signal::SIGTERM)),
            "Process will stop after its current job"
        );
    }
}
