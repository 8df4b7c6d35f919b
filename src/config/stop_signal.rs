//! A worker file's `stop_signal`: the signal that asks its processes to stop
//! (supervisord's `stopsignal`). `gearman`-protocol processes get it at once
//! when they are stopped; stdio processes, which are asked by closing their
//! stdin, get it only if they have not exited `shutdown_timeout` later.
//!
//! Only signals that a worker may reasonably treat as "stop" are accepted:
//! the ones whose default action ends a process, plus `WINCH`, which some
//! servers use for a graceful stop (Apache httpd's `graceful-stop`), and
//! `KILL` for a worker that must never be asked.

use nix::sys::signal::Signal;

/// The default, as for supervisord and systemd.
pub const DEFAULT_STOP_SIGNAL: Signal = Signal::SIGTERM;

/// Accepted names, as written in a worker file (without `SIG`).
const ACCEPTED: [(&str, Signal); 8] = [
    ("TERM", Signal::SIGTERM),
    ("INT", Signal::SIGINT),
    ("QUIT", Signal::SIGQUIT),
    ("HUP", Signal::SIGHUP),
    ("USR1", Signal::SIGUSR1),
    ("USR2", Signal::SIGUSR2),
    ("WINCH", Signal::SIGWINCH),
    ("KILL", Signal::SIGKILL),
];

/// `TERM`, `SIGTERM`, `term` and `sigterm` all name SIGTERM.
pub fn parse_stop_signal(name: &str) -> Result<Signal, String> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    ACCEPTED
        .iter()
        .find(|(n, _)| *n == bare)
        .map(|(_, s)| *s)
        .ok_or_else(|| {
            let names: Vec<&str> = ACCEPTED.iter().map(|(n, _)| *n).collect();
            format!(
                "unknown stop signal `{name}`; use one of {} (with or without SIG)",
                names.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_or_without_sig_in_any_case() {
        for name in ["TERM", "SIGTERM", "term", "SigTerm", " TERM "] {
            assert_eq!(parse_stop_signal(name), Ok(Signal::SIGTERM), "{name}");
        }
        assert_eq!(parse_stop_signal("QUIT"), Ok(Signal::SIGQUIT));
        assert_eq!(parse_stop_signal("SIGUSR2"), Ok(Signal::SIGUSR2));
        assert_eq!(parse_stop_signal("WINCH"), Ok(Signal::SIGWINCH));
        assert_eq!(parse_stop_signal("KILL"), Ok(Signal::SIGKILL));
    }

    #[test]
    fn signals_that_cannot_mean_stop_are_refused_with_the_list() {
        for name in ["STOP", "CHLD", "SIGPIPE", "15", "", "TERMINATE"] {
            let err = parse_stop_signal(name).unwrap_err();
            assert!(
                err.contains("use one of TERM, INT, QUIT, HUP, USR1, USR2, WINCH, KILL"),
                "{err}"
            );
        }
    }
}
