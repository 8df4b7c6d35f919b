//! Starting worker processes: argv, working directory, the environment the
//! SPEC promises, and the safety net that makes every process die with the
//! supervisor (`PR_SET_PDEATHSIG`) in its own process group (so signals reach
//! whatever the worker forks, and a Ctrl-C at the terminal reaches only the
//! supervisor, which then shuts down in order), and the worker file's
//! isolation (umask, resource limits, user and group) applied before exec.

use std::process::Stdio;

use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::signal::Signal;
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};

use crate::config::isolation::{Identity, Isolation, WorkerScheduling};
use crate::config::{JobSpec, Protocol};

/// Environment variables every process gets besides the worker file's `env`.
pub fn process_env(job: &JobSpec, servers: &[String]) -> Vec<(String, String)> {
    let functions: Vec<&str> = job.function_names();
    vec![
        ("GEARMAN_SERVERS".into(), servers.join(",")),
        ("GEARMAN_DRIVER_JOB".into(), job.name.clone()),
        ("GEARMAN_DRIVER_FUNCTIONS".into(), functions.join(",")),
        ("GEARMAN_DRIVER_PREFIX".into(), job.prefix.clone()),
        ("GEARMAN_DRIVER_MODULE".into(), job.module.clone()),
        ("GEARMAN_DRIVER_OPTIONS".into(), job.options_json.clone()),
    ]
}

/// What an exec job's slot runs: this very binary, through the kernel's
/// link to it. `current_exe()` names a path, and once a package upgrade has
/// replaced that file it reads `... (deleted)`: no slot could start until the
/// driver itself was upgraded. The link still reaches the running version,
/// so the supervisor and its slots stay one version until `upgrade`.
const THIS_BINARY: &str = "/proc/self/exe";

/// The argv actually run: `exec` jobs run behind the resident slot helper.
/// `argv[0]` is what `ps` shows; [`program`] is what is executed.
pub fn effective_argv(job: &JobSpec) -> Vec<String> {
    match job.protocol {
        Protocol::Exec => {
            let mut argv = vec![this_binary_name(), "exec-slot".into(), "--".into()];
            argv.extend(job.command.iter().cloned());
            argv
        }
        _ => job.command.clone(),
    }
}

/// The file to execute for `argv` of `job` (see [`effective_argv`]).
fn program<'a>(job: &JobSpec, argv: &'a [String]) -> &'a str {
    match job.protocol {
        Protocol::Exec => THIS_BINARY,
        _ => &argv[0],
    }
}

/// The binary's path as started, also after it was replaced on disk.
fn this_binary_name() -> String {
    let path = std::env::current_exe()
        .map(|exe| exe.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "gearman-driver".into());
    match path.strip_suffix(" (deleted)") {
        Some(original) => original.to_string(),
        None => path,
    }
}

/// Per-function timeouts for the exec slot helper, as `key=secs,key=secs`.
fn exec_timeouts(job: &JobSpec) -> String {
    job.functions
        .iter()
        .filter_map(|f| f.timeout.map(|t| format!("{}={}", f.key, t.as_secs())))
        .collect::<Vec<_>>()
        .join(",")
}

pub const EXEC_TIMEOUTS_ENV: &str = "GEARMAN_DRIVER_EXEC_TIMEOUTS";

/// Leaves systemd's notification variables out of a child's environment
/// (a worker file's `env` may still set them on purpose).
pub fn hide_service_manager(cmd: &mut Command) {
    for var in crate::notify::SERVICE_MANAGER_ENV {
        cmd.env_remove(var);
    }
}

/// A started process: its PID and the supervisor's ends of its pipes.
///
/// There is no `Child` handle on purpose: a process is watched by PID (see
/// [`super::sampling::ExitWatch`]), so one the driver started and one it
/// took over across an upgrade (see [`crate::upgrade`]) are the same thing.
pub struct Spawned {
    pub pid: u32,
    pub stdin: ChildStdin,
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
}

/// Spawns one process of `job` with piped stdio.
pub fn spawn(
    job: &JobSpec,
    servers: &[String],
    scheduling: WorkerScheduling,
) -> std::io::Result<Spawned> {
    let argv = effective_argv(job);
    let mut cmd = Command::new(program(job, &argv));
    hide_service_manager(&mut cmd);
    cmd.arg0(&argv[0])
        .args(&argv[1..])
        .current_dir(&job.dir)
        .envs(&job.env)
        .envs(process_env(job, servers))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if job.protocol == Protocol::Exec {
        cmd.env(EXEC_TIMEOUTS_ENV, exec_timeouts(job));
    }
    let parent = std::process::id() as libc::pid_t;
    let isolation = job.isolation.clone();
    let policy = scheduling.policy();
    // SAFETY: only async-signal-safe calls (setpgid, sched_setscheduler,
    // umask, setrlimit, setgroups, setgid, setuid, prctl, getppid, _exit) run
    // between fork and exec, on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || prepare_child(parent, policy, &isolation));
    }
    let mut child = cmd.spawn()?;
    let piped = || std::io::Error::other("a pipe of the new process is missing");
    // Dropping the std handle neither kills nor reaps the process.
    Ok(Spawned {
        pid: child.id(),
        stdin: ChildStdin::from_std(child.stdin.take().ok_or_else(piped)?)?,
        stdout: ChildStdout::from_std(child.stdout.take().ok_or_else(piped)?)?,
        stderr: ChildStderr::from_std(child.stderr.take().ok_or_else(piped)?)?,
    })
}

/// Runs in the child between fork and exec. The order matters: limits are
/// set while still privileged (only root may raise a hard limit), then the
/// user changes, and only then the parent-death signal, because a change of
/// credentials clears it.
fn prepare_child(
    parent: libc::pid_t,
    policy: libc::c_int,
    isolation: &Isolation,
) -> std::io::Result<()> {
    // SAFETY: plain syscalls on plain data.
    unsafe {
        if libc::setpgid(0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Priority 0 is the only one these two policies take; any user may
        // switch between them.
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, policy, &param) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if let Some(mask) = isolation.umask {
            libc::umask(mask as libc::mode_t);
        }
    }
    for limit in &isolation.rlimits {
        nix::sys::resource::setrlimit(limit.resource, limit.value, limit.value)
            .map_err(|errno| std::io::Error::from_raw_os_error(errno as i32))?;
    }
    if let Some(identity) = &isolation.identity {
        switch_identity(identity)?;
    }
    die_with_parent(parent)
}

fn switch_identity(identity: &Identity) -> std::io::Result<()> {
    // SAFETY: plain syscalls; `groups` outlives the call.
    unsafe {
        if libc::setgroups(identity.groups.len(), identity.groups.as_ptr()) != 0
            || libc::setgid(identity.gid) != 0
            || libc::setuid(identity.uid) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn die_with_parent(parent: libc::pid_t) -> std::io::Result<()> {
    // SAFETY: plain syscalls with constant arguments.
    unsafe {
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        // The supervisor may have died between fork and prctl.
        if libc::getppid() != parent {
            libc::_exit(1);
        }
    }
    Ok(())
}

/// Sends `signal` to a process's whole group (it leads one, see [`spawn`]).
pub fn signal_group(pid: u32, signal: Signal) {
    let pgid = nix::unistd::Pid::from_raw(-(pid as i32));
    if nix::sys::signal::kill(pgid, signal).is_err() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
    }
}

/// The log line of a process we asked to stop with `stop_signal`: dying of
/// that signal is its normal way out, so it reads as such, not as a kill.
pub fn describe_stop(status: &std::process::ExitStatus, stop_signal: Signal) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("Exited with status {code}"),
        (None, Some(sig)) if sig == stop_signal as i32 => {
            format!("Exited on its stop_signal ({})", stop_signal.as_str())
        }
        _ => describe_exit(status),
    }
}

/// `exited with status 3` / `killed by signal SIGKILL`.
pub fn describe_exit(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        format!("exited with status {code}")
    } else if let Some(sig) = status.signal() {
        let name = Signal::try_from(sig)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| sig.to_string());
        format!("killed by signal {name}")
    } else {
        "exited".to_string()
    }
}
