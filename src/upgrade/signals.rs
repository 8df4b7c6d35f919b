//! The supervisor's signals (TERM, INT, HUP, USR2) across an exec.
//!
//! A signal handler does not survive `execve`: between the exec and the new
//! image installing its handlers, a TERM or HUP would take its default
//! action and end the driver (and with it every worker, through
//! `PR_SET_PDEATHSIG`). A *blocked* signal instead stays pending across the
//! exec and is delivered once the new image unblocks it. So:
//! - every thread but the main one blocks these signals for its whole life
//!   (the runtime's blocking threads through `on_thread_start`, the HTTP
//!   thread by being created under [`with_blocked`]), so that the kernel
//!   only ever delivers them to the main thread;
//! - the main thread blocks them just before the exec ([`block`]);
//! - the new image unblocks them once its handlers are installed
//!   ([`unblock`], called by the supervisor after it has set up its signal
//!   streams).
//!
//! Worker processes start with an empty signal mask whatever the mask of
//! the thread that forked them (Rust's `Command` resets it).

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};

/// The signals the supervisor acts on.
pub const HELD: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGUSR2,
];

fn held() -> SigSet {
    let mut set = SigSet::empty();
    for signal in HELD {
        set.add(signal);
    }
    set
}

/// Blocks the signals in the calling thread.
pub fn block() {
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&held()), None);
}

/// Unblocks them in the calling thread: pending ones are delivered now.
pub fn unblock() {
    let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&held()), None);
}

/// Runs `f` with the signals blocked in the calling thread, then restores
/// its mask: threads that `f` creates inherit the blocked mask.
pub fn with_blocked<T>(f: impl FnOnce() -> T) -> T {
    let mut previous = SigSet::empty();
    let blocked = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&held()), Some(&mut previous));
    let result = f();
    if blocked.is_ok() {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
    }
    result
}

/// Whether the calling thread has them blocked.
pub fn blocked() -> bool {
    SigSet::thread_get_mask()
        .map(|mask| HELD.iter().all(|s| mask.contains(*s)))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_made_under_with_blocked_keep_the_signals_blocked() {
        // On a thread of its own, so the test harness's threads keep theirs.
        std::thread::spawn(|| {
            unblock();
            let inner = with_blocked(|| std::thread::spawn(blocked).join().unwrap());
            assert!(inner, "a thread created under with_blocked");
            assert!(!blocked(), "the creating thread's mask is restored");
            block();
            assert!(blocked());
            unblock();
            assert!(!blocked());
        })
        .join()
        .unwrap();
    }
}
