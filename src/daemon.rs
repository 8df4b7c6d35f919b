//! Process-level concerns of the supervisor itself: detaching from the
//! terminal (`--daemonize`), the pid file, and the file-descriptor limit
//! (each worker costs the supervisor four descriptors).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Detaches: fork, setsid, fork again, stdio to /dev/null. Must run before
/// any thread is started.
pub fn daemonize() -> std::io::Result<()> {
    use nix::unistd::{fork, setsid, ForkResult};
    // SAFETY: called from main before the runtime or any other thread exists.
    match unsafe { fork() }.map_err(std::io::Error::from)? {
        ForkResult::Parent { .. } => std::process::exit(0),
        ForkResult::Child => {}
    }
    setsid().map_err(std::io::Error::from)?;
    // SAFETY: still single-threaded.
    match unsafe { fork() }.map_err(std::io::Error::from)? {
        ForkResult::Parent { .. } => std::process::exit(0),
        ForkResult::Child => {}
    }
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    use std::os::fd::AsRawFd;
    for fd in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
    Ok(())
}

/// A pid file, written atomically and removed when dropped.
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Refuses when the file names a live process other than this one.
    /// `--daemonize` calls this before forking too, so that the refusal
    /// reaches the launching terminal and its exit status.
    pub fn check(path: &Path) -> Result<(), String> {
        if let Ok(text) = fs::read_to_string(path) {
            if let Ok(pid) = text.trim().parse::<i32>() {
                let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
                if alive && pid != std::process::id() as i32 {
                    return Err(format!(
                        "pid file {} names process {pid}, which is still running; is another gearman-driver up?",
                        path.display()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Refuses when the file names a live process; a stale file is replaced.
    pub fn create(path: &Path) -> Result<PidFile, String> {
        Self::check(path)?;
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            writeln!(f, "{}", std::process::id())?;
            f.sync_all()?;
            fs::rename(&tmp, path)
        };
        write().map_err(|e| format!("cannot write pid file {}: {e}", path.display()))?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Raises the soft limit on open files to the hard limit.
pub fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
