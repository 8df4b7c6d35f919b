//! File descriptors across the exec. Everything the driver opens is
//! close-on-exec, so the exec closes it; the descriptors of a hand-over
//! (listeners, worker pipes, the Gearman connection of a job in flight, the
//! state file) are the only ones made inheritable, right before `execve`,
//! and the new image marks them close-on-exec again as it claims them, so
//! that none of them leaks into a worker it starts later.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

/// Descriptors held for a hand-over, by number.
#[derive(Debug, Default)]
pub struct Fds {
    fds: BTreeMap<RawFd, OwnedFd>,
}

impl Fds {
    pub fn new() -> Fds {
        Fds::default()
    }

    /// Keeps `fd`; returns the number the state names it by.
    pub fn add(&mut self, fd: OwnedFd) -> RawFd {
        let n = fd.as_raw_fd();
        self.fds.insert(n, fd);
        n
    }

    pub fn extend(&mut self, fds: impl IntoIterator<Item = OwnedFd>) {
        for fd in fds {
            self.add(fd);
        }
    }

    /// Takes descriptor `n` out (it is then the caller's).
    pub fn take(&mut self, n: RawFd) -> io::Result<OwnedFd> {
        self.fds.remove(&n).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("descriptor {n} was not handed over"),
            )
        })
    }

    pub fn len(&self) -> usize {
        self.fds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// Clears close-on-exec on every descriptor held (`true`), or sets it
    /// again (`false`, after an exec that failed).
    pub fn set_inheritable(&self, inheritable: bool) -> io::Result<()> {
        for fd in self.fds.values() {
            set_inheritable(fd.as_raw_fd(), inheritable)?;
        }
        Ok(())
    }

    /// Takes ownership of descriptors this image inherited, marking each
    /// close-on-exec again.
    ///
    /// # Safety
    /// The numbers must name descriptors this process inherited and that
    /// nothing else in it owns (those a hand-over names, claimed once).
    pub unsafe fn claim(numbers: &[RawFd]) -> Result<Fds, String> {
        let mut fds = Fds::new();
        for &n in numbers {
            if fds.fds.contains_key(&n) {
                return Err(format!("descriptor {n} is named twice"));
            }
            set_inheritable(n, false).map_err(|e| format!("descriptor {n}: {e}"))?;
            // SAFETY: open (fcntl just succeeded on it), and ours alone per
            // this function's contract.
            fds.fds.insert(n, unsafe { OwnedFd::from_raw_fd(n) });
        }
        Ok(fds)
    }
}

/// Sets or clears close-on-exec; fails on a descriptor that is not open.
pub fn set_inheritable(fd: RawFd, inheritable: bool) -> io::Result<()> {
    let flags = fcntl(fd, FcntlArg::F_GETFD).map_err(io::Error::from)?;
    let mut flags = FdFlag::from_bits_truncate(flags);
    flags.set(FdFlag::FD_CLOEXEC, !inheritable);
    fcntl(fd, FcntlArg::F_SETFD(flags)).map_err(io::Error::from)?;
    Ok(())
}

/// Whether `fd` is close-on-exec.
pub fn is_cloexec(fd: RawFd) -> io::Result<bool> {
    let flags = fcntl(fd, FcntlArg::F_GETFD).map_err(io::Error::from)?;
    Ok(FdFlag::from_bits_truncate(flags).contains(FdFlag::FD_CLOEXEC))
}

/// A memory file holding `bytes`, positioned at its start, close-on-exec
/// until the exec that hands it over.
pub fn state_file(bytes: &[u8]) -> io::Result<OwnedFd> {
    let fd = nix::sys::memfd::memfd_create(
        c"gearman-driver-handover",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    let mut file = File::from(fd);
    file.write_all(bytes)?;
    file.rewind()?;
    Ok(OwnedFd::from(file))
}

/// Reads a state file to its end; it is closed afterwards.
pub fn read_state_file(fd: OwnedFd) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::from(fd).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Duplicates a descriptor (close-on-exec), e.g. a listener whose original
/// a door's task owns.
pub fn duplicate(fd: RawFd) -> io::Result<OwnedFd> {
    let n = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(0)).map_err(io::Error::from)?;
    // SAFETY: a descriptor the kernel has just made for us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inheritable_only_while_handed_over_and_claimed_back_close_on_exec() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (a, b) = (OwnedFd::from(a), OwnedFd::from(b));
        assert!(
            is_cloexec(a.as_raw_fd()).unwrap(),
            "std opens close-on-exec"
        );
        let mut fds = Fds::new();
        let na = fds.add(a);
        let nb = fds.add(b);
        fds.set_inheritable(true).unwrap();
        assert!(!is_cloexec(na).unwrap() && !is_cloexec(nb).unwrap());
        // As the new image does with the numbers it was given.
        let numbers = [na, nb];
        std::mem::forget(fds);
        let mut claimed = unsafe { Fds::claim(&numbers) }.unwrap();
        assert!(is_cloexec(na).unwrap() && is_cloexec(nb).unwrap());
        let a = claimed.take(na).unwrap();
        assert!(claimed.take(na).is_err(), "taken once");
        assert_eq!(claimed.len(), 1);
        drop(a);
        assert!(set_inheritable(na, true).is_err(), "closed with its owner");
    }

    #[test]
    fn a_number_that_is_not_open_cannot_be_claimed() {
        let err = unsafe { Fds::claim(&[1_000_000]) }.unwrap_err();
        assert!(err.contains("1000000"), "{err}");
    }

    #[test]
    fn the_state_file_reads_back_from_its_start() {
        let fd = state_file(b"{\"format\":1}").unwrap();
        assert!(is_cloexec(fd.as_raw_fd()).unwrap());
        assert_eq!(read_state_file(fd).unwrap(), b"{\"format\":1}");
    }
}
