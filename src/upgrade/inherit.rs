//! The new image's first steps: finding the hand-over it was started with
//! (the descriptor named by [`STATE_FD_ENV`]), claiming the descriptors it
//! names, and the listening sockets its doors serve again.

use std::os::fd::{OwnedFd, RawFd};

use super::state::{self, Door, HandOver};
use super::{Fds, STATE_FD_ENV};
use crate::config::Settings;

/// The hand-over this image was started with, if any. Call it first thing,
/// before any thread exists: it removes the variable (so no worker sees it).
pub fn take() -> Option<Result<(HandOver, Fds), String>> {
    let value = std::env::var_os(STATE_FD_ENV)?;
    std::env::remove_var(STATE_FD_ENV);
    Some(read(&value.to_string_lossy()))
}

fn read(value: &str) -> Result<(HandOver, Fds), String> {
    let fd: RawFd = value
        .trim()
        .parse()
        .map_err(|_| format!("{STATE_FD_ENV}={value} is not a descriptor"))?;
    // SAFETY: the previous image passed this descriptor for us alone; it
    // is claimed once (the variable is gone now).
    let mut file = unsafe { Fds::claim(&[fd]) }?;
    let file: OwnedFd = file.take(fd).map_err(|e| e.to_string())?;
    let bytes = super::fds::read_state_file(file)
        .map_err(|e| format!("cannot read the hand-over state: {e}"))?;
    let state = state::parse(&bytes)?;
    // SAFETY: as above, for the descriptors the state names.
    let fds = unsafe { Fds::claim(&state.fds()) }?;
    Ok((state, fds))
}

/// Listening sockets handed over, for the doors that still ask for them.
#[derive(Debug, Default)]
pub struct Listeners {
    pub console_tcp: Option<std::net::TcpListener>,
    pub console_unix: Option<std::os::unix::net::UnixListener>,
    pub http: Option<std::net::TcpListener>,
}

impl Listeners {
    /// Takes from `fds` the listeners whose address the settings still name;
    /// the others close (a door that moved binds anew).
    pub fn take(settings: &Settings, state: &HandOver, fds: &mut Fds) -> Listeners {
        let mut found = Listeners::default();
        for listener in &state.listeners {
            let Ok(fd) = fds.take(listener.fd) else {
                continue;
            };
            if Some(listener.bind.as_str()) != bind_of(settings, listener.door).as_deref() {
                continue;
            }
            match listener.door {
                Door::ConsoleTcp => found.console_tcp = Some(fd.into()),
                Door::ConsoleUnix => found.console_unix = Some(fd.into()),
                Door::Http => found.http = Some(fd.into()),
            }
        }
        found
    }
}

/// The address a door is configured with, as a hand-over records it.
pub fn bind_of(settings: &Settings, door: Door) -> Option<String> {
    match door {
        Door::ConsoleTcp => (settings.console_port != 0)
            .then(|| format!("{}:{}", settings.console_bind, settings.console_port)),
        Door::ConsoleUnix => settings
            .console_socket
            .as_ref()
            .map(|p| p.display().to_string()),
        Door::Http => settings.http_bind.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_variable_is_an_error_not_a_crash() {
        assert!(read("x").unwrap_err().contains("not a descriptor"));
        assert!(read("1000000").is_err());
    }

    #[test]
    fn the_state_reads_back_with_its_descriptors() {
        use std::os::fd::AsRawFd;
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let a = OwnedFd::from(a);
        let raw = a.as_raw_fd();
        let mut state = state::parse(include_bytes!("fixtures/handover-format-1.json")).unwrap();
        state.members.clear();
        state.listeners = vec![state::ListenerState {
            door: Door::ConsoleTcp,
            bind: "127.0.0.1:1".into(),
            fd: raw,
        }];
        let file = super::super::fds::state_file(&state.to_json()).unwrap();
        let n = file.as_raw_fd();
        std::mem::forget(file);
        std::mem::forget(a);
        let (back, mut fds) = read(&n.to_string()).unwrap();
        assert_eq!(back, state);
        assert!(fds.take(raw).is_ok());
    }
}
