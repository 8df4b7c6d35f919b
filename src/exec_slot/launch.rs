//! Starting an `exec` slot's command, once per job, with as few system calls
//! as the kernel allows: `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)` onto a
//! stack the slot keeps for its life, and in the child only what the command
//! needs (its own process group, the three pipes, default signal handlers,
//! an empty signal mask, `execve`).
//!
//! Why not `std::process::Command`, which starts a command through glibc's
//! `posix_spawn` (the same vfork-style clone): glibc's child cannot know which
//! signals have handlers, so it asks about every one of the 64 and resets
//! each: about 125 `rt_sigaction` calls per start, plus a `getrlimit` per file
//! action and a fresh stack mapped and unmapped around each clone. For a
//! one-shot command such as `rev` that was a third of the slot's system calls
//! per job. The slot knows its handlers (its own three and the two std
//! installs), reads them once at start, and the child resets only those.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use crate::config::jobs::resolve_program;

/// Room for the child's few calls before `execve`; glibc gives its
/// `posix_spawn` child 36 KiB.
const CHILD_STACK: usize = 64 * 1024;

/// The command prepared once for every start: its path resolved, its
/// arguments as C strings, the signals whose handlers the child resets.
pub struct Launcher {
    name: String,
    path: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    handled: Vec<libc::c_int>,
    stack: Vec<u8>,
}

/// A started command: its pid, a descriptor that turns readable when it
/// exits (`None` on kernels before 5.2, where the caller polls with
/// `waitpid`), and the slot's ends of its three pipes.
pub struct Running {
    pub pid: libc::pid_t,
    pub pidfd: Option<OwnedFd>,
    pub stdin: File,
    pub stdout: File,
    pub stderr: File,
}

/// What the child reads (and, when `execve` fails, writes) in the memory
/// it shares with the suspended slot.
#[repr(C)]
struct ChildArgs {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    fds: [RawFd; 3],
    handled: *const libc::c_int,
    handled_len: usize,
    exec_errno: libc::c_int,
}

extern "C" {
    static environ: *const *const libc::c_char;
}

impl Launcher {
    /// Prepares `command` (program and arguments); a program without a `/`
    /// is looked up in `PATH` now, as `execvp` would at every start.
    pub fn new(command: &[String]) -> io::Result<Launcher> {
        let Some(program) = command.first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no command"));
        };
        let path = resolve(program);
        let path = CString::new(path.as_os_str().as_bytes())?;
        let argv =
            (command.iter().map(|a| CString::new(a.as_bytes()))).collect::<Result<Vec<_>, _>>()?;
        let mut argv_ptrs: Vec<_> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        Ok(Launcher {
            name: program.clone(),
            path,
            _argv: argv,
            argv_ptrs,
            handled: signals_to_reset(),
            stack: vec![0; CHILD_STACK],
        })
    }

    /// The program as configured, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts the command in a process group of its own, its stdin, stdout
    /// and stderr on fresh pipes. Fails with `execve`'s error when the
    /// program cannot run.
    pub fn start(&mut self) -> io::Result<Running> {
        let (stdin_read, stdin_write) = pipe()?;
        let (stdout_read, stdout_write) = pipe()?;
        let (stderr_read, stderr_write) = pipe()?;
        let mut args = ChildArgs {
            path: self.path.as_ptr(),
            argv: self.argv_ptrs.as_ptr(),
            // SAFETY: reading the process's environment pointer; the slot
            // never changes its environment.
            envp: unsafe { environ },
            fds: [
                stdin_read.as_raw_fd(),
                stdout_write.as_raw_fd(),
                stderr_write.as_raw_fd(),
            ],
            handled: self.handled.as_ptr(),
            handled_len: self.handled.len(),
            exec_errno: 0,
        };
        let (pid, pidfd) = self.clone_child(&mut args)?;
        // SAFETY: the child has exec'd or exited (CLONE_VFORK), so nothing
        // else writes `args` any more.
        let exec_errno = unsafe { std::ptr::read_volatile(&args.exec_errno) };
        if exec_errno != 0 {
            let mut status = 0;
            // SAFETY: reaps the child that failed to exec.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            return Err(io::Error::from_raw_os_error(exec_errno));
        }
        Ok(Running {
            pid,
            pidfd,
            stdin: File::from(stdin_write),
            stdout: File::from(stdout_read),
            stderr: File::from(stderr_read),
        })
    }

    /// Clones the child with every signal blocked (so that no handler of
    /// the slot runs on the shared memory before the child resets it) and
    /// returns once it has exec'd or exited.
    fn clone_child(&mut self, args: &mut ChildArgs) -> io::Result<(libc::pid_t, Option<OwnedFd>)> {
        let stack_top = {
            let end = self.stack.as_mut_ptr_range().end as usize;
            (end & !15) as *mut libc::c_void
        };
        let args_ptr = args as *mut ChildArgs as *mut libc::c_void;
        let old_mask = block_all_signals();
        let mut pidfd: libc::c_int = -1;
        let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
        // SAFETY: `child` only makes async-signal-safe calls on its own
        // stack and reads `args`, which outlives the call: the parent is
        // suspended until the child has exec'd or exited.
        let mut pid = unsafe {
            libc::clone(
                child,
                stack_top,
                flags | libc::CLONE_PIDFD,
                args_ptr,
                &mut pidfd as *mut libc::c_int,
            )
        };
        let mut err = io::Error::last_os_error();
        if pid < 0 && err.raw_os_error() == Some(libc::EINVAL) {
            // A kernel before 5.2: no CLONE_PIDFD.
            // SAFETY: as above.
            pid = unsafe { libc::clone(child, stack_top, flags, args_ptr) };
            err = io::Error::last_os_error();
            pidfd = -1;
        }
        restore_signal_mask(&old_mask);
        if pid < 0 {
            return Err(err);
        }
        // SAFETY: a non-negative pidfd from clone is a descriptor we now own.
        let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
        Ok((pid, pidfd))
    }
}

/// The child: runs on the launcher's stack in the slot's memory until
/// `execve` replaces it, so it only makes system calls.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` the parent prepared and keeps alive
    // while it is suspended; every call below is async-signal-safe.
    unsafe {
        let args = &mut *(arg as *mut ChildArgs);
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        for i in 0..args.handled_len {
            libc::sigaction(*args.handled.add(i), &default, std::ptr::null_mut());
        }
        libc::setpgid(0, 0);
        for (target, &fd) in args.fds.iter().enumerate() {
            let target = target as RawFd;
            if fd == target {
                // dup2 onto itself would keep close-on-exec.
                libc::fcntl(fd, libc::F_SETFD, 0);
            } else if libc::dup2(fd, target) < 0 {
                return fail(args);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(args.path, args.argv, args.envp);
        fail(args)
    }
}

/// Leaves the failed child, telling the parent why through the shared memory.
unsafe fn fail(args: &mut ChildArgs) -> libc::c_int {
    // SAFETY: `args` points into the suspended parent's memory; _exit is
    // async-signal-safe.
    unsafe {
        std::ptr::write_volatile(&mut args.exec_errno, *libc::__errno_location());
        libc::_exit(127)
    }
}

/// The signals that have a handler in this process, plus SIGPIPE, which
/// std ignores and a command expects at its default.
fn signals_to_reset() -> Vec<libc::c_int> {
    let mut reset = vec![libc::SIGPIPE];
    for signal in 1..libc::SIGRTMIN() {
        if signal == libc::SIGPIPE || signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: queries a disposition without changing it.
        let handler = unsafe {
            let mut current: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut current) != 0 {
                continue;
            }
            current.sa_sigaction
        };
        if handler != libc::SIG_DFL && handler != libc::SIG_IGN {
            reset.push(signal);
        }
    }
    reset
}

fn block_all_signals() -> libc::sigset_t {
    // SAFETY: plain signal-mask calls on valid sigset_t values.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    }
}

fn restore_signal_mask(old: &libc::sigset_t) {
    // SAFETY: restores a mask returned by `block_all_signals`.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
}

/// A pipe whose both ends close on exec (the child's end is dup2'd onto
/// 0, 1 or 2, which clears the flag there).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// `program` as the config found it (a bare name on `PATH`), else as given,
/// and `execve` says why it cannot run.
fn resolve(program: &str) -> PathBuf {
    resolve_program(program, Path::new(".")).unwrap_or_else(|_| PathBuf::from(program))
}

/// Whether the command has exited, without waiting.
pub fn try_wait(pid: libc::pid_t) -> io::Result<Option<ExitStatus>> {
    wait(pid, libc::WNOHANG)
}

/// Waits for the command's exit.
pub fn wait_for(pid: libc::pid_t) -> io::Result<ExitStatus> {
    wait(pid, 0).map(|status| status.unwrap_or_else(|| ExitStatus::from_raw(0)))
}

fn wait(pid: libc::pid_t, options: libc::c_int) -> io::Result<Option<ExitStatus>> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child, writing into `status`.
        let got = unsafe { libc::waitpid(pid, &mut status, options) };
        if got == pid {
            return Ok(Some(ExitStatus::from_raw(status)));
        }
        if got == 0 {
            return Ok(None);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_is_searched_once_and_absolute_names_are_kept() {
        assert!(resolve("sh").is_absolute());
        assert_eq!(resolve("/bin/sh"), PathBuf::from("/bin/sh"));
        assert_eq!(resolve("./x"), PathBuf::from("./x"));
        assert_eq!(
            resolve("no-such-program-anywhere"),
            PathBuf::from("no-such-program-anywhere")
        );
    }

    #[test]
    fn a_program_that_cannot_run_is_execves_error() {
        let mut launcher = Launcher::new(&["/nonexistent/program".into()]).unwrap();
        let err = launcher.start().err().expect("cannot start");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn the_command_gets_default_signal_handlers_and_its_own_group() {
        // The slot ignores SIGPIPE (std does) and handles SIGTERM; the
        // command must see neither.
        let mut launcher = Launcher::new(&[
            "/bin/sh".into(),
            "-c".into(),
            "grep -E '^(SigIgn|SigCgt)' /proc/self/status; cut -d' ' -f5 /proc/$$/stat; echo $$"
                .into(),
        ])
        .unwrap();
        assert!(launcher.handled.contains(&libc::SIGPIPE));
        let mut running = launcher.start().unwrap();
        drop(running.stdin);
        let mut out = String::new();
        std::io::Read::read_to_string(&mut running.stdout, &mut out).unwrap();
        assert!(wait_for(running.pid).unwrap().success());
        let lines: Vec<&str> = out.lines().collect();
        let sigpipe_bit = 1u64 << (libc::SIGPIPE - 1);
        for line in &lines[..2] {
            let mask = u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap();
            assert_eq!(mask & sigpipe_bit, 0, "{line}");
        }
        assert_eq!(lines[2].trim(), lines[3].trim(), "pgid = pid: {out}");
    }
}
