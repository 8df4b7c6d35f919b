//! systemd notification (`sd_notify`): what the service manager is told,
//! and when. Active only when systemd set `NOTIFY_SOCKET` (`Type=notify`);
//! otherwise every call here does nothing.
//!
//! - `READY=1` once every job has its `min_processes` ready, or failed
//!   trying (a missing command, a crash loop, no `READY` within
//!   `start_timeout`): a start that cannot succeed must not hang
//!   `systemctl start` until its timeout.
//! - `STATUS=<summary>` every `interval`, shown by `systemctl status`.
//! - `RELOADING=1` (with `MONOTONIC_USEC`, which `Type=notify-reload` wants)
//!   then `READY=1` around a reload.
//! - `STOPPING=1` when shutdown begins.
//! - `WATCHDOG=1` every half `WATCHDOG_USEC`, from an arm of the
//!   supervisor's main loop, so that a loop that stops turning stops the pings
//!   and systemd restarts the driver.
//!
//! Messages go through the `sd-notify` crate (pure Rust, no libsystemd):
//! it speaks the datagram protocol and checks `WATCHDOG_PID`. The variables
//! stay in the driver's environment, so that a re-executed driver (same PID)
//! still reaches systemd; worker processes do not get them
//! ([`SERVICE_MANAGER_ENV`]).

use std::fmt;
use std::time::Duration;

use sd_notify::NotifyState;

/// systemd's variables that worker processes must not inherit: a worker that
/// speaks sd_notify itself would otherwise talk for the driver.
pub const SERVICE_MANAGER_ENV: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// The supervisor's line to systemd.
#[derive(Debug)]
pub struct Notifier {
    enabled: bool,
    ready_sent: bool,
    watchdog_every: Option<Duration>,
    send_failed: bool,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` (and `WATCHDOG_PID`).
    pub fn from_env() -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        let watchdog_every = sd_notify::watchdog_enabled()
            .filter(|_| enabled)
            .map(|timeout| timeout / 2)
            .filter(|every| !every.is_zero());
        Notifier {
            enabled,
            ready_sent: false,
            watchdog_every,
            send_failed: false,
        }
    }

    /// Whether systemd listens at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Sends `READY=1` the first time `settled` holds. `settled` is only
    /// asked while systemd listens and READY has not been sent.
    pub fn ready_once(&mut self, settled: impl FnOnce() -> bool) {
        if self.enabled && !self.ready_sent && settled() {
            self.ready_sent = true;
            self.send(&[NotifyState::Ready]);
        }
    }

    /// Sends `STATUS=`; `summary` is only built while systemd listens.
    pub fn status(&mut self, summary: impl FnOnce() -> Summary) {
        if self.enabled {
            let line = summary().to_string();
            self.send(&[NotifyState::Status(&line)]);
        }
    }

    /// A reload begins.
    pub fn reloading(&mut self) {
        if !self.enabled {
            return;
        }
        let mut states = vec![NotifyState::Reloading];
        states.extend(NotifyState::monotonic_usec_now().ok());
        self.send(&states);
    }

    /// A reload is over. `READY=1` again, unless start-up had not reached
    /// READY yet: then [`Notifier::ready_once`] still decides.
    pub fn reloaded(&mut self) {
        if self.enabled && self.ready_sent {
            self.send(&[NotifyState::Ready]);
        }
    }

    /// Shutdown begins.
    pub fn stopping(&mut self) {
        if self.enabled {
            self.send(&[NotifyState::Stopping]);
        }
    }

    /// The main loop turns.
    pub fn watchdog(&mut self) {
        if self.watchdog_every.is_some() {
            self.send(&[NotifyState::Watchdog]);
        }
    }

    /// Ticks every half `WATCHDOG_USEC`; never when systemd set no watchdog.
    pub fn watchdog_timer(&self) -> WatchdogTimer {
        WatchdogTimer(self.watchdog_every.map(|every| {
            let mut timer = tokio::time::interval(every);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            timer
        }))
    }

    fn send(&mut self, states: &[NotifyState]) {
        match sd_notify::notify(states) {
            Ok(()) => self.send_failed = false,
            // Once per failure streak: a vanished socket must not flood the log.
            Err(err) if !self.send_failed => {
                self.send_failed = true;
                tracing::warn!("cannot notify systemd: {err}");
            }
            Err(_) => {}
        }
    }
}

/// See [`Notifier::watchdog_timer`].
pub struct WatchdogTimer(Option<tokio::time::Interval>);

impl WatchdogTimer {
    /// Waits for the next tick (forever without a watchdog).
    pub async fn tick(&mut self) {
        match &mut self.0 {
            Some(timer) => {
                timer.tick().await;
            }
            None => std::future::pending().await,
        }
    }
}

/// The one-line `STATUS=` of `systemctl status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub jobs: usize,
    pub starting: usize,
    pub idle: usize,
    pub busy: usize,
    pub stopping: usize,
    /// Jobs waiting in gearmand for this driver's functions.
    pub waiting: u64,
    /// Jobs whose restarts are held back after quick failures.
    pub backing_off: usize,
    pub servers_up: usize,
    pub servers: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let processes = self.starting + self.idle + self.busy + self.stopping;
        write!(
            f,
            "{} jobs, {processes} processes ({} busy, {} idle",
            self.jobs, self.busy, self.idle
        )?;
        if self.starting > 0 {
            write!(f, ", {} starting", self.starting)?;
        }
        if self.stopping > 0 {
            write!(f, ", {} stopping", self.stopping)?;
        }
        write!(
            f,
            "), {} waiting; gearmand {}/{} up",
            self.waiting, self.servers_up, self.servers
        )?;
        if self.backing_off > 0 {
            write!(f, "; {} backing off after failures", self.backing_off)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_one_short_line() {
        let mut s = Summary {
            jobs: 3,
            idle: 4,
            busy: 2,
            waiting: 7,
            servers_up: 1,
            servers: 2,
            ..Default::default()
        };
        assert_eq!(
            s.to_string(),
            "3 jobs, 6 processes (2 busy, 4 idle), 7 waiting; gearmand 1/2 up"
        );
        s.starting = 1;
        s.stopping = 2;
        s.backing_off = 1;
        assert_eq!(
            s.to_string(),
            "3 jobs, 9 processes (2 busy, 4 idle, 1 starting, 2 stopping), 7 waiting; gearmand 1/2 up; 1 backing off after failures"
        );
    }

    #[test]
    fn silent_without_notify_socket() {
        // The unit tests run without NOTIFY_SOCKET unless a service manager
        // started them; either way a disabled notifier never asks.
        let mut n = Notifier {
            enabled: false,
            ready_sent: false,
            watchdog_every: None,
            send_failed: false,
        };
        n.ready_once(|| panic!("not asked when disabled"));
        n.status(|| panic!("not built when disabled"));
        assert!(!n.ready_sent);
    }
}
