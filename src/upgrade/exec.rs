//! The exec. It runs on the main thread, after the supervisor's runtime
//! has been dropped: `PR_SET_PDEATHSIG` fires when the *thread* that forked
//! a worker exits, and an `execve` from any other thread would end the main
//! thread, the one every worker was forked from. Other threads (the HTTP
//! listener's, the blocking pool's) simply end at the exec.
//!
//! Past the point of no return (the runtime is gone), a failed `execve`
//! hands everything back: descriptors close-on-exec again, signals
//! unblocked, and `main` rebuilds the supervisor from the very same state,
//! the way the new image would have.

use std::ffi::{CString, OsString};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;

use super::{fds, signals, state::HandOver, Fds, Prepared, STATE_FD_ENV};

/// Why the exec failed, with what is needed to carry on without it.
pub struct Failed {
    pub why: String,
    pub state: HandOver,
    pub fds: Fds,
}

/// Replaces this process's image with the new binary. Returns only when
/// that failed.
pub fn exec(prepared: Prepared) -> Failed {
    let Prepared { state, fds, http } = prepared;
    if let Some(http) = http {
        http.stop();
    }
    let why = match try_exec(&state, &fds) {
        Ok(never) => match never {},
        Err(why) => why,
    };
    let _ = fds.set_inheritable(false);
    signals::unblock();
    Failed { why, state, fds }
}

fn try_exec(state: &HandOver, held: &Fds) -> Result<std::convert::Infallible, String> {
    let file = fds::state_file(&state.to_json())
        .map_err(|e| format!("cannot write the hand-over state: {e}"))?;
    let exe = cstring(state.exe.as_bytes())?;
    let argv = state
        .argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let env = environment(file.as_raw_fd())?;
    held.set_inheritable(true)
        .and_then(|()| fds::set_inheritable(file.as_raw_fd(), true))
        .map_err(|e| format!("cannot pass the descriptors on: {e}"))?;
    // Held pending across the exec: the new image acts on them once it
    // has its handlers (an unhandled TERM would end it, and every worker).
    signals::block();
    let err = nix::unistd::execve(&exe, &argv, &env).unwrap_err();
    Err(format!("cannot execute {}: {err}", state.exe))
}

/// This process's environment, with the state's descriptor named.
fn environment(state_fd: i32) -> Result<Vec<CString>, String> {
    let mut env: Vec<CString> = Vec::new();
    for (key, value) in std::env::vars_os() {
        if key == STATE_FD_ENV {
            continue;
        }
        let mut pair = OsString::from(&key);
        pair.push("=");
        pair.push(&value);
        env.push(cstring(pair.as_bytes())?);
    }
    env.push(cstring(format!("{STATE_FD_ENV}={state_fd}").as_bytes())?);
    Ok(env)
}

fn cstring(bytes: &[u8]) -> Result<CString, String> {
    CString::new(bytes).map_err(|_| "an argument holds a NUL byte".to_string())
}
