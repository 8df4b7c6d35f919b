//! Upgrading a running driver in place: the binary on disk is re-executed
//! in the same process (same PID), so every worker process stays its child
//! and keeps running; listening sockets are inherited, so no connection is
//! refused; the supervisor's state crosses the exec in one versioned struct.
//!
//! - [`state`]: the hand-over's format ([`state::HandOver`]), the one
//!   contract between two versions of the driver.
//! - [`fds`]: the descriptors that cross the exec, and only those.
//! - [`signals`]: TERM, HUP, ... held pending across the exec.
//! - [`check`]: the new binary must pass `check` (and read the format)
//!   before anything changes.
//! - [`exec`]: the exec itself, on the main thread, and what happens when
//!   it fails.
//! - [`inherit`]: the new image finding its hand-over and its listeners.
//!
//! The supervisor's part (quiescing, collecting every member's pipes,
//! adopting them) is [`crate::supervisor`]'s `handover` module.

pub mod check;
pub mod exec;
pub mod fds;
pub mod inherit;
pub mod signals;
pub mod state;

use std::ffi::OsString;
use std::path::PathBuf;

pub use fds::Fds;

/// The environment variable naming the descriptor of the hand-over state.
pub const STATE_FD_ENV: &str = "GEARMAN_DRIVER_HANDOVER_FD";

/// How the driver was started: every upgrade re-executes this path with
/// these arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub exe: PathBuf,
    pub argv: Vec<String>,
}

impl Origin {
    /// Read at start-up, before anything can replace the binary (a replaced
    /// binary's `/proc/self/exe` reads `... (deleted)`).
    pub fn of_this_process() -> Origin {
        let argv: Vec<String> = std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let exe = std::env::current_exe()
            .unwrap_or_else(|_| PathBuf::from(argv.first().cloned().unwrap_or_default()));
        Origin { exe, argv }
    }

    /// As carried by a hand-over.
    pub fn carried(state: &state::HandOver) -> Origin {
        Origin {
            exe: PathBuf::from(&state.exe),
            argv: state.argv.clone(),
        }
    }

    /// The arguments of `check` with the same flags.
    pub fn check_args(&self) -> Vec<OsString> {
        let argv: Vec<OsString> = self.argv.iter().map(OsString::from).collect();
        crate::config::cli::check_argv(argv)
            .into_iter()
            .skip(1)
            .collect()
    }
}

/// A hand-over ready for the exec: the state, the descriptors it names,
/// and the HTTP listener's thread (stopped just before the exec).
pub struct Prepared {
    pub state: state::HandOver,
    pub fds: Fds,
    pub http: Option<crate::http::Running>,
}
