//! Starting worker processes: argv, working directory, the environment the
//! SPEC promises, and the safety net that makes every process die with the
//! supervisor (`PR_SET_PDEATHSIG`) in its own process group (so signals reach
//! whatever the worker forks, and a Ctrl-C at the terminal reaches only the
//! supervisor, which then shuts down in order).

use std::process::Stdio;

use tokio::process::{Child, Command};

use crate::config::{Credentials, JobSpec, Protocol};

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

/// The argv actually run: `exec` jobs run behind the resident slot helper.
pub fn effective_argv(job: &JobSpec) -> std::io::Result<Vec<String>> {
    match job.protocol {
        Protocol::Exec => {
            let me = std::env::current_exe()?;
            let mut argv = vec![
                me.to_string_lossy().into_owned(),
                "exec-slot".into(),
                "--".into(),
            ];
            argv.extend(job.command.iter().cloned());
            Ok(argv)
        }
        _ => Ok(job.command.clone()),
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

/// Spawns one process of `job` with piped stdio.
pub fn spawn(
    job: &JobSpec,
    servers: &[String],
    user: Option<Credentials>,
) -> std::io::Result<Child> {
    let argv = effective_argv(job)?;
    let mut cmd = Command::new(&argv[0]);
    hide_service_manager(&mut cmd);
    cmd.args(&argv[1..])
        .current_dir(&job.dir)
        .envs(&job.env)
        .envs(process_env(job, servers))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    if job.protocol == Protocol::Exec {
        cmd.env(EXEC_TIMEOUTS_ENV, exec_timeouts(job));
    }
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (setpgid, prctl, getppid, _exit)
    // run between fork and exec.
    unsafe {
        cmd.pre_exec(move || die_with_parent(parent, user));
    }
    cmd.spawn()
}

/// Runs in the child between fork and exec.
fn die_with_parent(parent: libc::pid_t, user: Option<Credentials>) -> std::io::Result<()> {
    // SAFETY: plain syscalls with constant arguments.
    unsafe {
        if libc::setpgid(0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Before prctl: a change of user clears the parent-death signal.
        if let Some(c) = user {
            let groups = [c.gid];
            if libc::setgroups(1, groups.as_ptr()) != 0
                || libc::setgid(c.gid) != 0
                || libc::setuid(c.uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
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
pub fn signal_group(pid: u32, signal: nix::sys::signal::Signal) {
    let pgid = nix::unistd::Pid::from_raw(-(pid as i32));
    if nix::sys::signal::kill(pgid, signal).is_err() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
    }
}

/// `exited with status 3` / `killed by signal SIGKILL`.
pub fn describe_exit(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        format!("exited with status {code}")
    } else if let Some(sig) = status.signal() {
        let name = nix::sys::signal::Signal::try_from(sig)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| sig.to_string());
        format!("killed by signal {name}")
    } else {
        "exited".to_string()
    }
}
