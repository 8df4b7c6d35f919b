//! Validation and execution of a [`Request`]: the checks, in the order
//! Gearman::Driver's console made them, and their error texts.

use super::{Answer, Count, ErrorKind, Pools, ReloadOutcome, Request};
use crate::supervisor::WorkerId;

/// Answers one request. Requests that change state are logged with the peer
/// by the caller (see [`audit`]).
pub fn execute(pools: &mut dyn Pools, request: &Request) -> Answer {
    match request {
        Request::Status => Answer::Status(pools.job_rows()),
        Request::Overview => Answer::Overview(Box::new(pools.overview())),
        Request::Show { job } => show(pools, job),
        Request::Ps => Answer::Processes(pools.proc_rows()),
        Request::SetLimits { job, min, max } => set_limits(pools, job, *min, *max),
        Request::Kill { pids } => kill(pools, pids),
        Request::KillAll { jobs } => killall(pools, jobs),
        Request::Reload => reload_answer(pools.reload()),
        Request::Upgrade => match pools.upgrade_blocked() {
            Some(why) => upgrade_answer(Err(why)),
            None => upgrade_answer(Ok(Vec::new())),
        },
        Request::Shutdown => {
            pools.shutdown();
            Answer::Ok
        }
        Request::Version => Answer::Text(vec![version()]),
        Request::Schedules => Answer::Schedules(pools.schedules()),
        Request::Help => Answer::Text(help()),
        Request::Quit => Answer::Close,
        Request::Unknown { command } => Answer::failed(ErrorKind::UnknownCommand, command),
    }
}

/// The answer to `reload`, for every door: `OK` and the changes, or the
/// errors of a configuration that changed nothing.
pub fn reload_answer(outcome: ReloadOutcome) -> Answer {
    match outcome {
        ReloadOutcome::Applied(changes) => Answer::OkWith(changes),
        ReloadOutcome::Rejected(errors) => Answer::Failed {
            error: super::CommandError::new(
                ErrorKind::InvalidConfig,
                "the new configuration is invalid; nothing changed",
            ),
            details: errors,
        },
    }
}

/// The answer to `upgrade`, for every door: `OK` (the hand-over starts),
/// or `ERR upgrade refused: <why>` (nothing changed).
pub fn upgrade_answer(outcome: Result<Vec<String>, String>) -> Answer {
    match outcome {
        Ok(lines) if lines.is_empty() => Answer::Ok,
        Ok(lines) => Answer::OkWith(lines),
        Err(why) => Answer::failed(ErrorKind::UpgradeRefused, why),
    }
}

/// `gearman-driver 0.2.0`: the running binary's version.
pub fn version() -> String {
    format!("gearman-driver {}", crate::version())
}

/// Every command in console syntax, for `help`.
pub const HELP: &[(&str, &str)] = &[
    (
        "status",
        "one line per job: name min max processes lastrun lasterror message",
    ),
    ("show <job>", "the job's status line, then its process IDs"),
    ("ps", "one line per process: pid job state jobs uptime rss"),
    (
        "set_min_processes <job> <n>",
        "change a job's minimum process count",
    ),
    (
        "set_max_processes <job> <n>",
        "change a job's maximum process count",
    ),
    ("set_processes <job> <min> <max>", "change both"),
    (
        "kill <pid> [<pid> ...]",
        "SIGTERM to those of our processes (they are replaced as needed)",
    ),
    (
        "killall <job> [<job> ...] | killall *",
        "SIGTERM to every process of the jobs",
    ),
    ("reload", "re-read the config and worker files (as SIGHUP)"),
    (
        "upgrade",
        "re-execute the binary on disk, keeping every worker (as SIGUSR2)",
    ),
    ("version", "the running gearman-driver's version"),
    (
        "schedules",
        "one line per [[schedule]]: name, next run, last run and its result",
    ),
    ("help", "this list"),
    (
        "auth <token>",
        "prove the admin token (first, on TCP, when admin_token_file is set)",
    ),
    ("quit", "close this connection"),
    ("shutdown", "stop the supervisor (as SIGTERM)"),
];

fn help() -> Vec<String> {
    HELP.iter().map(|(c, d)| format!("{c:<38}  {d}")).collect()
}

/// Logs a state-changing request with who asked and how it ended.
pub fn audit(peer: &super::Peer, request: &Request, answer: &Answer) {
    if !request.changes_state() {
        return;
    }
    let result = match answer {
        Answer::Failed { error, .. } => error.line(),
        _ => "OK".to_string(),
    };
    tracing::info!("{peer}: {request} -> {result}");
}

fn invalid_job(name: &str) -> Answer {
    Answer::failed(ErrorKind::InvalidJobName, name)
}

fn show(pools: &mut dyn Pools, job: &str) -> Answer {
    let Some(members) = pools.job_members(job) else {
        return invalid_job(job);
    };
    // Slots have no PID to show.
    let pids = members.iter().filter_map(WorkerId::pid).collect();
    match pools.job_rows().into_iter().find(|r| r.name == job) {
        Some(row) => Answer::Show { row, pids },
        None => invalid_job(job),
    }
}

const MIN_NOT_A_COUNT: &str = "min_processes must be >= 0";
const MAX_NOT_A_COUNT: &str = "max_processes must be >= 0";
const MIN_OVER_MAX: &str = "min_processes must be smaller than max_processes";
const MAX_UNDER_MIN: &str = "max_processes must be greater than min_processes";

/// The job first, then min, then max, then that they fit together. A
/// request that names max is refused with max's message when they do not
/// fit; one that names only min, with min's.
fn set_limits(pools: &mut dyn Pools, job: &str, min: Option<Count>, max: Option<Count>) -> Answer {
    let Some((current_min, current_max)) = pools.limits(job) else {
        return invalid_job(job);
    };
    if min.is_none() && max.is_none() {
        return Answer::failed(
            ErrorKind::InvalidValue,
            "give min_processes, max_processes or both",
        );
    }
    let new_min = match min {
        None => current_min,
        Some(Count::Valid(n)) => n,
        Some(Count::Invalid) => return Answer::failed(ErrorKind::InvalidValue, MIN_NOT_A_COUNT),
    };
    let new_max = match max {
        None => current_max,
        Some(Count::Valid(n)) => n,
        Some(Count::Invalid) => return Answer::failed(ErrorKind::InvalidValue, MAX_NOT_A_COUNT),
    };
    if new_min > new_max {
        let message = if max.is_some() {
            MAX_UNDER_MIN
        } else {
            MIN_OVER_MAX
        };
        return Answer::failed(ErrorKind::InvalidValue, message);
    }
    pools.set_limits(job, min.map(|_| new_min), max.map(|_| new_max));
    Answer::Ok
}

fn kill(pools: &mut dyn Pools, pids: &[u32]) -> Answer {
    let ours: Vec<WorkerId> = pids
        .iter()
        .filter_map(|p| pools.member_with_pid(*p))
        .collect();
    if ours.is_empty() {
        return Answer::failed(
            ErrorKind::InvalidValue,
            "the given PID(s) do not belong to us",
        );
    }
    pools.kill(&ours);
    Answer::Ok
}

fn killall(pools: &mut dyn Pools, jobs: &[String]) -> Answer {
    if jobs.is_empty() {
        return Answer::failed(ErrorKind::InvalidValue, "no job_names given");
    }
    let names: Vec<String> = if jobs == ["*"] {
        pools.job_rows().into_iter().map(|r| r.name).collect()
    } else {
        jobs.to_vec()
    };
    let mut members = Vec::new();
    for name in &names {
        match pools.job_members(name) {
            Some(mut m) => members.append(&mut m),
            None => return invalid_job(name),
        }
    }
    pools.kill(&members);
    Answer::Ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::fake::FakePools;

    fn limits(job: &str, min: Option<Count>, max: Option<Count>) -> Request {
        Request::SetLimits {
            job: job.into(),
            min,
            max,
        }
    }

    fn error_of(answer: Answer) -> String {
        match answer {
            Answer::Failed { error, .. } => error.line(),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn limits_are_checked_job_min_max_then_fit() {
        let mut p = FakePools::two_jobs();
        let v = Count::Valid;
        let bad = Some(Count::Invalid);
        let cases = [
            (limits("nope", bad, bad), "ERR invalid_job_name: nope"),
            (
                limits("J::a", bad, bad),
                "ERR invalid_value: min_processes must be >= 0",
            ),
            (
                limits("J::a", Some(v(1)), bad),
                "ERR invalid_value: max_processes must be >= 0",
            ),
            (
                limits("J::a", Some(v(6)), None),
                "ERR invalid_value: min_processes must be smaller than max_processes",
            ),
            (
                limits("J::a", None, Some(v(0))),
                "ERR invalid_value: max_processes must be greater than min_processes",
            ),
            (
                limits("J::a", Some(v(5)), Some(v(1))),
                "ERR invalid_value: max_processes must be greater than min_processes",
            ),
            (
                limits("J::a", None, None),
                "ERR invalid_value: give min_processes, max_processes or both",
            ),
        ];
        for (request, expected) in cases {
            assert_eq!(error_of(execute(&mut p, &request)), expected, "{request}");
        }
        assert_eq!(
            p.limits("J::a"),
            Some((1, 5)),
            "failed requests change nothing"
        );
    }

    #[test]
    fn limits_change_only_what_is_named() {
        let mut p = FakePools::two_jobs();
        let v = Count::Valid;
        assert_eq!(
            execute(&mut p, &limits("J::a", Some(v(5)), None)),
            Answer::Ok
        );
        assert_eq!(p.limits("J::a"), Some((5, 5)));
        assert_eq!(
            execute(&mut p, &limits("J::a", None, Some(v(9)))),
            Answer::Ok
        );
        assert_eq!(p.limits("J::a"), Some((5, 9)));
        assert_eq!(
            execute(&mut p, &limits("J::a", Some(v(2)), Some(v(3)))),
            Answer::Ok
        );
        assert_eq!(p.limits("J::a"), Some((2, 3)));
    }

    #[test]
    fn counts_parse_like_the_console_and_json() {
        assert_eq!(Count::parse(Some("12")), Count::Valid(12));
        for bad in [
            None,
            Some(""),
            Some("-1"),
            Some("1.5"),
            Some("ten"),
            Some("99999999999"),
        ] {
            assert_eq!(Count::parse(bad), Count::Invalid, "{bad:?}");
        }
        let json = |s: &str| Count::from_json(&serde_json::from_str(s).unwrap());
        assert_eq!(json("3"), Count::Valid(3));
        for bad in ["-1", "1.5", "\"3\"", "null", "5000000000"] {
            assert_eq!(json(bad), Count::Invalid, "{bad}");
        }
    }

    #[test]
    fn kill_and_killall() {
        let mut p = FakePools::two_jobs();
        assert_eq!(
            error_of(execute(&mut p, &Request::Kill { pids: vec![1] })),
            "ERR invalid_value: the given PID(s) do not belong to us"
        );
        assert_eq!(
            execute(
                &mut p,
                &Request::Kill {
                    pids: vec![10, 999]
                }
            ),
            Answer::Ok
        );
        assert_eq!(p.killed_pids(), vec!["10"]);
        let all = Request::KillAll {
            jobs: vec!["*".into()],
        };
        assert_eq!(execute(&mut p, &all), Answer::Ok);
        assert_eq!(p.killed_pids(), vec!["10", "10", "11", "20"]);
        let partly_unknown = Request::KillAll {
            jobs: vec!["J::a".into(), "nope".into()],
        };
        assert_eq!(
            error_of(execute(&mut p, &partly_unknown)),
            "ERR invalid_job_name: nope"
        );
        assert_eq!(p.killed.len(), 4, "a failed killall kills nothing");
        assert_eq!(
            error_of(execute(&mut p, &Request::KillAll { jobs: vec![] })),
            "ERR invalid_value: no job_names given"
        );
    }

    #[test]
    fn slots_are_reached_by_killall_only_and_show_lists_no_pid_for_them() {
        let mut p = FakePools::two_jobs();
        p.jobs.get_mut("J::a").unwrap().2.push(WorkerId::slot(99));
        let killall = Request::KillAll {
            jobs: vec!["J::a".into()],
        };
        assert_eq!(execute(&mut p, &killall), Answer::Ok);
        assert!(p.killed.contains(&WorkerId::slot(99)));
        match execute(&mut p, &Request::Show { job: "J::a".into() }) {
            Answer::Show { pids, .. } => assert_eq!(pids, vec![10, 11]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_state_changes_are_audited() {
        assert!(Request::Reload.changes_state());
        assert!(Request::Kill { pids: vec![1] }.changes_state());
        assert!(!Request::Status.changes_state());
        assert!(!Request::Ps.changes_state());
    }
}
