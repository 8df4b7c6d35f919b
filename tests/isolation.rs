//! Worker isolation seen from inside the workers: a stdio worker and an
//! exec command report their umask, resource limits (/proc/self/limits)
//! and user and groups; and the configurations the driver cannot apply are
//! refused before anything starts.

mod common;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Lets a worker that runs as another user enter and read the lib.
fn open_up(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            open_up(&path);
        }
    }
}

/// `(soft, hard)` of a row of /proc/self/limits, e.g. "Max open files".
fn limit(limits: &str, row: &str) -> (String, String) {
    let line = limits
        .lines()
        .find(|l| l.starts_with(row))
        .unwrap_or_else(|| panic!("no {row:?} in\n{limits}"));
    let values: Vec<&str> = line[row.len()..].split_whitespace().collect();
    (values[0].to_string(), values[1].to_string())
}

fn assert_limits(limits: &str, who: &str) {
    let both = |v: &str| (v.to_string(), v.to_string());
    assert_eq!(limit(limits, "Max open files"), both("1024"), "{who}");
    assert_eq!(
        limit(limits, "Max address space"),
        both(&(2048u64 << 20).to_string()),
        "{who}"
    );
    assert_eq!(limit(limits, "Max cpu time"), both("600"), "{who}");
    assert_eq!(limit(limits, "Max core file size"), both("0"), "{who}");
}

const ISOLATION: &str = "umask = \"0027\"\n\
    rlimits = { nofile = 1024, as_mib = 2048, cpu_s = 600, core = 0 }\n";

#[test]
fn umask_rlimits_user_and_group_reach_stdio_and_exec_workers() {
    let switch_user = is_root();
    if !switch_user {
        println!("not root: checking umask and rlimits without user/group");
    }
    let identity = if switch_user {
        "user = \"nobody\"\ngroup = \"nogroup\"\n"
    } else {
        ""
    };
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file(
        "T/w.py",
        &python_worker(
            "import json\n\
             mask = os.umask(0); os.umask(mask)\n\
             result = json.dumps({'pid': os.getpid(), 'uid': os.getuid(), 'gid': os.getgid(), \
             'groups': os.getgroups(), 'umask': mask, \
             'limits': open('/proc/self/limits').read()}).encode()",
        ),
    );
    lib.file(
        "T/W.toml",
        &format!("command = [\"/usr/bin/python3\", \"w.py\"]\n{identity}{ISOLATION}[jobs.probe]\n"),
    );
    lib.file(
        "T/E.toml",
        &format!(
            "command = [\"sh\", \"-c\", \"echo umask $(umask); echo uid $(id -u) gid $(id -g) groups $(id -G); cat /proc/self/limits\"]\n\
             protocol = \"exec\"\n{identity}{ISOLATION}[jobs.probe]\n"
        ),
    );
    // A process that does not stop when its stdin closes, as the stdio
    // worker does: only the parent-death signal ends it with the driver.
    lib.file(
        "T/Sleeper.toml",
        &format!(
            "command = [\"/bin/sleep\", \"600\"]\nprotocol = \"gearman\"\n{identity}{ISOLATION}[jobs.sleep]\n"
        ),
    );
    open_up(lib.path());
    let mut driver = Driver::start(&lib, &gearmand, "T", &[]);

    let reply = submit(&gearmand, "T::W::probe", b"");
    let json: serde_json::Value =
        serde_json::from_slice(&reply.result.expect("the stdio probe answers")).unwrap();
    assert_eq!(json["umask"], 0o027);
    assert_limits(json["limits"].as_str().unwrap(), "stdio worker");

    let reply = submit(&gearmand, "T::E::probe", b"");
    let text = String::from_utf8(reply.result.expect("the exec probe answers").to_vec()).unwrap();
    assert!(text.starts_with("umask 0027\n"), "{text}");
    assert_limits(&text, "exec command");

    if switch_user {
        let nobody = 65534;
        assert_eq!(json["uid"], nobody);
        assert_eq!(json["gid"], nobody);
        assert_eq!(json["groups"], serde_json::json!([nobody]));
        assert!(
            text.contains(&format!("uid {nobody} gid {nobody} groups {nobody}\n")),
            "{text}"
        );
        // The user changed before PR_SET_PDEATHSIG was set (a change of
        // user clears it): the process still dies with the supervisor.
        let sleeper = wait_for(Duration::from_secs(10), "the sleeper", || {
            driver.pids("T::Sleeper::sleep").first().copied()
        });
        let status = std::fs::read_to_string(format!("/proc/{sleeper}/status")).unwrap();
        assert!(status.contains("\nUid:\t65534\t"), "{status}");
        driver.child.as_mut().unwrap().kill().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pid_alive(sleeper) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if pid_alive(sleeper) {
            unsafe { libc::kill(sleeper as i32, libc::SIGKILL) };
            panic!("the worker outlived the driver's SIGKILL");
        }
    }
}

/// Runs `gearman-driver check` on `lib` as a user that is not root
/// (`nobody` when the tests run as root).
fn check_as_non_root(lib: &Lib) -> (i32, String) {
    open_up(lib.path());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gearman-driver"));
    cmd.arg("check")
        .arg("--lib")
        .arg(lib.path())
        .args(["--namespaces", "T", "--console-port", "0"])
        .stdin(Stdio::null());
    if is_root() {
        use std::os::unix::process::CommandExt;
        cmd.uid(65534).gid(65534);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_driver_that_is_not_root_refuses_user_group_and_raised_hard_limits() {
    let lib = Lib::new();
    let file = lib.file(
        "T/W.toml",
        "command = \"/bin/cat\"\nuser = \"root\"\ngroup = \"root\"\n[jobs.a]\n",
    );
    let (code, err) = check_as_non_root(&lib);
    assert_eq!(code, 1, "{err}");
    let shown = file.display();
    assert!(
        err.contains(&format!("{shown}:2:8: key `user`: running worker processes as user `root` needs a driver started as root")),
        "{err}"
    );

    std::fs::write(
        &file,
        "command = \"/bin/cat\"\ngroup = \"root\"\n[jobs.a]\n",
    )
    .unwrap();
    let (code, err) = check_as_non_root(&lib);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "{shown}:2:9: key `group`: running worker processes as group `root` needs"
        )),
        "{err}"
    );

    if let Some(hard) = hard_nofile() {
        std::fs::write(
            &file,
            format!(
                "command = \"/bin/cat\"\nrlimits = {{ nofile = {} }}\n[jobs.a]\n",
                hard + 1
            ),
        )
        .unwrap();
        let (code, err) = check_as_non_root(&lib);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("key `rlimits.nofile`"), "{err}");
        assert!(
            err.contains("only a driver started as root can raise it"),
            "{err}"
        );
    }

    // Lowering limits and setting a umask need no privilege.
    std::fs::write(
        &file,
        format!("command = \"/bin/cat\"\n{ISOLATION}[jobs.a]\n"),
    )
    .unwrap();
    let (code, err) = check_as_non_root(&lib);
    assert_eq!(code, 0, "{err}");
}

/// The hard limit on open files, `None` when unlimited.
fn hard_nofile() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (limit.rlim_max != libc::RLIM_INFINITY).then_some(limit.rlim_max)
}

#[test]
fn unknown_users_groups_limits_and_bad_umasks_name_file_key_and_line() {
    let lib = Lib::new();
    let file = lib.file(
        "T/W.toml",
        "command = \"/bin/cat\"\n\
         user = \"no-such-user-here\"\n\
         group = \"no-such-group-here\"\n\
         umask = 27\n\
         rlimits = { nofile = 64, open_files = 1, as_mib = -1 }\n\
         [jobs.a]\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_gearman-driver"))
        .arg("check")
        .arg("--lib")
        .arg(lib.path())
        .args(["--namespaces", "T", "--console-port", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let shown = file.display();
    for expected in [
        format!("{shown}:2:8: key `user`: no such user `no-such-user-here`"),
        format!("{shown}:4:9: key `umask`: write the umask as an octal string, e.g. umask = \"0027\""),
        format!("{shown}:5:39: key `rlimits.open_files`: unknown resource limit `open_files` (known: nofile, nproc, cpu_s, as_mib"),
        format!("{shown}:5:51: key `rlimits.as_mib`: expected a number >= 0 or \"unlimited\", got -1"),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in\n{err}");
    }
    // A user that does not exist hides nothing about the group: fixed first,
    // the group's own error shows.
    std::fs::write(
        &file,
        "command = \"/bin/cat\"\ngroup = \"no-such-group-here\"\n[jobs.a]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gearman-driver"))
        .arg("check")
        .arg("--lib")
        .arg(lib.path())
        .args(["--namespaces", "T", "--console-port", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{shown}:2:9: key `group`: no such group `no-such-group-here`"
        )),
        "{err}"
    );
}

/// `T::W::policy`: a stdio worker answering its CPU scheduling policy.
fn stdio_policy_probe(lib: &Lib) {
    lib.file(
        "T/w.py",
        &python_worker("result = str(os.sched_getscheduler(0)).encode()"),
    );
    lib.file(
        "T/W.toml",
        "command = [\"/usr/bin/python3\", \"w.py\"]\n[jobs.policy]\n",
    );
}

/// Starts a driver on a stdio and an exec probe of their CPU scheduling
/// policy and returns what each reported (`os.sched_getscheduler`).
fn scheduling_policies(extra: &[&str]) -> (String, String) {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    stdio_policy_probe(&lib);
    lib.file(
        "T/E.toml",
        "command = [\"/usr/bin/python3\", \"-c\", \"import os; print(os.sched_getscheduler(0), end='')\"]\n\
         protocol = \"exec\"\n[jobs.policy]\n",
    );
    let _driver = Driver::start(&lib, &gearmand, "T", extra);
    let answer = |function: &str| {
        let reply = submit(&gearmand, function, b"");
        let bytes = reply.result.unwrap_or_else(|| panic!("{function} answers"));
        String::from_utf8(bytes.to_vec()).unwrap()
    };
    (answer("T::W::policy"), answer("T::E::policy"))
}

#[test]
fn worker_processes_run_sched_batch_unless_told_normal() {
    let batch = libc::SCHED_BATCH.to_string();
    assert_eq!(scheduling_policies(&[]), (batch.clone(), batch));
    let normal = libc::SCHED_OTHER.to_string();
    assert_eq!(
        scheduling_policies(&["--worker-scheduling", "normal"]),
        (normal.clone(), normal)
    );
}

/// A reload's `worker_scheduling` applies to the processes started after
/// it; the running ones keep the policy they started under.
#[test]
fn a_reloaded_worker_scheduling_applies_to_processes_started_after_it() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    stdio_policy_probe(&lib);
    let cfg = lib.file("driver.toml", "worker_scheduling = \"batch\"\n");
    let driver = Driver::start(&lib, &gearmand, "T", &["--config", cfg.to_str().unwrap()]);
    let policy = || {
        let reply = submit(&gearmand, "T::W::policy", b"");
        String::from_utf8(reply.result.expect("the probe answers").to_vec()).unwrap()
    };
    let (batch, normal) = (libc::SCHED_BATCH.to_string(), libc::SCHED_OTHER.to_string());
    assert_eq!(policy(), batch);
    let first = driver.pids("T::W::policy");

    std::fs::write(&cfg, "worker_scheduling = \"normal\"\n").unwrap();
    assert_eq!(
        driver.console("reload"),
        [
            "OK",
            "worker_scheduling: batch -> normal; processes started from now on"
        ]
    );
    assert_eq!(policy(), batch, "the running process keeps its policy");

    assert_eq!(driver.console("killall T::W::policy")[0], "OK");
    wait_for(Duration::from_secs(10), "a new process", || {
        let pids = driver.pids("T::W::policy");
        (pids.len() == 1 && pids != first).then_some(())
    });
    assert_eq!(policy(), normal);
    assert_eq!(driver.console("reload"), ["OK", "nothing changed"]);
}
