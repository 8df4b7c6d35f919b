//! Console commands: one function per command, each answering with the exact
//! lines Gearman::Driver's console gave (errors as `ERR ...`), plus the
//! additions `help`, `ps` and `reload`.

use chrono::{DateTime, Utc};

use super::{JobRow, Pools, Reply};

const HELP: &[(&str, &str)] = &[
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
    ("help", "this list"),
    ("quit", "close this connection"),
    ("shutdown", "stop the supervisor (as SIGTERM)"),
];

pub fn execute(pools: &mut dyn Pools, line: &str) -> Reply {
    let mut words = line.split_whitespace();
    let command = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    match command {
        "status" => Reply::lines(format_status(&pools.job_rows())),
        "show" => show(pools, &args),
        "ps" => ps(pools),
        "set_min_processes" | "set_min_childs" => set_min(pools, &args),
        "set_max_processes" | "set_max_childs" => set_max(pools, &args),
        "set_processes" => set_both(pools, &args),
        "kill" => kill(pools, &args),
        "killall" => killall(pools, &args),
        "reload" => Reply::lines(pools.reload()),
        "help" => Reply::lines(HELP.iter().map(|(c, d)| format!("{c:<38}  {d}")).collect()),
        "quit" => Reply {
            lines: vec![],
            close: true,
        },
        "shutdown" => {
            pools.shutdown();
            Reply::lines(vec!["OK".into()])
        }
        other => Reply::error(format!("ERR unknown_command: {other}")),
    }
}

fn invalid_job(name: &str) -> Reply {
    Reply::error(format!("ERR invalid_job_name: {name}"))
}

/// A count as Gearman::Driver accepted it: digits only.
fn count(arg: Option<&&str>) -> Option<u32> {
    let s = arg?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn show(pools: &mut dyn Pools, args: &[&str]) -> Reply {
    let name = args.first().copied().unwrap_or("");
    let Some(pids) = pools.job_pids(name) else {
        return invalid_job(name);
    };
    let Some(row) = pools.job_rows().into_iter().find(|r| r.name == name) else {
        return invalid_job(name);
    };
    let mut lines = format_status(&[row]);
    lines.extend(pids.iter().map(u32::to_string));
    Reply::lines(lines)
}

fn set_min(pools: &mut dyn Pools, args: &[&str]) -> Reply {
    let name = args.first().copied().unwrap_or("");
    let Some((_, max)) = pools.limits(name) else {
        return invalid_job(name);
    };
    let Some(min) = count(args.get(1)) else {
        return Reply::error("ERR invalid_value: min_processes must be >= 0");
    };
    if min > max {
        return Reply::error("ERR invalid_value: min_processes must be smaller than max_processes");
    }
    pools.set_limits(name, Some(min), None);
    Reply::lines(vec!["OK".into()])
}

fn set_max(pools: &mut dyn Pools, args: &[&str]) -> Reply {
    let name = args.first().copied().unwrap_or("");
    let Some((min, _)) = pools.limits(name) else {
        return invalid_job(name);
    };
    let Some(max) = count(args.get(1)) else {
        return Reply::error("ERR invalid_value: max_processes must be >= 0");
    };
    if max < min {
        return Reply::error("ERR invalid_value: max_processes must be greater than min_processes");
    }
    pools.set_limits(name, None, Some(max));
    Reply::lines(vec!["OK".into()])
}

fn set_both(pools: &mut dyn Pools, args: &[&str]) -> Reply {
    let name = args.first().copied().unwrap_or("");
    if pools.limits(name).is_none() {
        return invalid_job(name);
    }
    let Some(min) = count(args.get(1)) else {
        return Reply::error("ERR invalid_value: min_processes must be >= 0");
    };
    let Some(max) = count(args.get(2)) else {
        return Reply::error("ERR invalid_value: max_processes must be >= 0");
    };
    if max < min {
        return Reply::error("ERR invalid_value: max_processes must be greater than min_processes");
    }
    pools.set_limits(name, Some(min), Some(max));
    Reply::lines(vec!["OK".into()])
}

fn kill(pools: &mut dyn Pools, args: &[&str]) -> Reply {
    let ours: Vec<u32> = args
        .iter()
        .filter_map(|a| a.parse().ok())
        .filter(|pid| pools.owns(*pid))
        .collect();
    if ours.is_empty() {
        return Reply::error("ERR invalid_value: the given PID(s) do not belong to us");
    }
    pools.kill(&ours);
    Reply::lines(vec!["OK".into()])
}

fn killall(pools: &mut dyn Pools, args: &[&str]) -> Reply {
    if args.is_empty() {
        return Reply::error("ERR invalid_value: no job_names given");
    }
    let names: Vec<String> = if args == ["*"] {
        pools.job_rows().into_iter().map(|r| r.name).collect()
    } else {
        args.iter().map(|s| s.to_string()).collect()
    };
    let mut pids = Vec::new();
    for name in &names {
        match pools.job_pids(name) {
            Some(mut p) => pids.append(&mut p),
            None => return invalid_job(name),
        }
    }
    pools.kill(&pids);
    Reply::lines(vec!["OK".into()])
}

fn ps(pools: &mut dyn Pools) -> Reply {
    let rows = pools.proc_rows();
    let width = rows.iter().map(|r| r.job.len()).max().unwrap_or(3).max(3);
    let mut lines = vec![format!(
        "{:>7}  {:<width$}  {:<8}  {:>7}  {:>9}  {:>9}",
        "PID", "JOB", "STATE", "JOBS", "UPTIME", "RSS_KIB"
    )];
    for r in rows {
        let rss = r.rss_kib.map_or("-".to_string(), |k| k.to_string());
        lines.push(format!(
            "{:>7}  {:<width$}  {:<8}  {:>7}  {:>9}  {:>9}",
            r.pid,
            r.job,
            r.state,
            r.jobs_done,
            format!("{}s", r.uptime.as_secs()),
            rss
        ));
    }
    Reply::lines(lines)
}

/// UTC `YYYY-MM-DDTHH:MM:SS`; `1970-01-01T00:00:00` for never.
pub fn format_time(epoch: i64) -> String {
    DateTime::<Utc>::from_timestamp(epoch, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

/// `status` lines: columns joined by two spaces, the name padded to the
/// longest, the counts right-aligned to the longest value.
pub fn format_status(rows: &[JobRow]) -> Vec<String> {
    let width = |f: &dyn Fn(&JobRow) -> usize| rows.iter().map(f).max().unwrap_or(1).max(1);
    let name_w = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let min_w = width(&|r| r.min.to_string().len());
    let max_w = width(&|r| r.max.to_string().len());
    let procs_w = width(&|r| r.processes.to_string().len());
    rows.iter()
        .map(|r| {
            let message = match r.lasterror_msg.lines().next() {
                Some(first) if !first.is_empty() => format!("ERROR: {first}"),
                _ => String::new(),
            };
            format!(
                "{:<name_w$}  {:>min_w$}  {:>max_w$}  {:>procs_w$}  {}  {}  {}",
                r.name,
                r.min,
                r.max,
                r.processes,
                format_time(r.lastrun),
                format_time(r.lasterror),
                message
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::ProcRow;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct FakePools {
        jobs: BTreeMap<String, (u32, u32, Vec<u32>)>,
        killed: Vec<u32>,
        shut: bool,
    }

    impl Pools for FakePools {
        fn job_rows(&mut self) -> Vec<JobRow> {
            self.jobs
                .iter()
                .map(|(n, (min, max, pids))| JobRow {
                    name: n.clone(),
                    min: *min,
                    max: *max,
                    processes: pids.len(),
                    lastrun: 0,
                    lasterror: 0,
                    lasterror_msg: String::new(),
                })
                .collect()
        }
        fn job_pids(&self, name: &str) -> Option<Vec<u32>> {
            self.jobs.get(name).map(|j| j.2.clone())
        }
        fn limits(&self, name: &str) -> Option<(u32, u32)> {
            self.jobs.get(name).map(|j| (j.0, j.1))
        }
        fn set_limits(&mut self, name: &str, min: Option<u32>, max: Option<u32>) {
            let j = self.jobs.get_mut(name).unwrap();
            j.0 = min.unwrap_or(j.0);
            j.1 = max.unwrap_or(j.1);
        }
        fn owns(&self, pid: u32) -> bool {
            self.jobs.values().any(|j| j.2.contains(&pid))
        }
        fn kill(&mut self, pids: &[u32]) {
            self.killed.extend(pids);
        }
        fn proc_rows(&self) -> Vec<ProcRow> {
            vec![]
        }
        fn shutdown(&mut self) {
            self.shut = true;
        }
        fn reload(&mut self) -> Vec<String> {
            vec!["OK".into()]
        }
    }

    fn pools() -> FakePools {
        let mut p = FakePools::default();
        p.jobs.insert("J::a".into(), (1, 5, vec![10, 11]));
        p.jobs.insert("J::long_name".into(), (0, 12, vec![20]));
        p
    }

    fn answer(p: &mut FakePools, line: &str) -> String {
        String::from_utf8(execute(p, line).to_wire()).unwrap()
    }

    #[test]
    fn the_error_table() {
        let mut p = pools();
        let cases = [
            ("asdf", "ERR unknown_command: asdf\r\n.\r\n"),
            ("", "ERR unknown_command: \r\n.\r\n"),
            (
                "set_min_processes nope 5",
                "ERR invalid_job_name: nope\r\n.\r\n",
            ),
            (
                "set_min_processes J::a ten",
                "ERR invalid_value: min_processes must be >= 0\r\n.\r\n",
            ),
            (
                "set_min_processes J::a -1",
                "ERR invalid_value: min_processes must be >= 0\r\n.\r\n",
            ),
            (
                "set_min_processes J::a 6",
                "ERR invalid_value: min_processes must be smaller than max_processes\r\n.\r\n",
            ),
            (
                "set_max_processes nope 5",
                "ERR invalid_job_name: nope\r\n.\r\n",
            ),
            (
                "set_max_processes J::a ten",
                "ERR invalid_value: max_processes must be >= 0\r\n.\r\n",
            ),
            (
                "set_max_processes J::a 0",
                "ERR invalid_value: max_processes must be greater than min_processes\r\n.\r\n",
            ),
            (
                "set_processes nope 1 1",
                "ERR invalid_job_name: nope\r\n.\r\n",
            ),
            (
                "set_processes J::a ten ten",
                "ERR invalid_value: min_processes must be >= 0\r\n.\r\n",
            ),
            (
                "set_processes J::a 1 ten",
                "ERR invalid_value: max_processes must be >= 0\r\n.\r\n",
            ),
            (
                "set_processes J::a 5 1",
                "ERR invalid_value: max_processes must be greater than min_processes\r\n.\r\n",
            ),
            (
                "kill 1",
                "ERR invalid_value: the given PID(s) do not belong to us\r\n.\r\n",
            ),
            (
                "kill",
                "ERR invalid_value: the given PID(s) do not belong to us\r\n.\r\n",
            ),
            ("killall", "ERR invalid_value: no job_names given\r\n.\r\n"),
            ("killall J::a nope", "ERR invalid_job_name: nope\r\n.\r\n"),
            ("show nope", "ERR invalid_job_name: nope\r\n.\r\n"),
        ];
        for (line, expected) in cases {
            assert_eq!(answer(&mut p, line), expected, "{line:?}");
        }
        assert!(p.killed.is_empty(), "a failed killall kills nothing");
    }

    #[test]
    fn set_commands_change_limits() {
        let mut p = pools();
        assert_eq!(answer(&mut p, "set_min_processes J::a 5"), "OK\r\n.\r\n");
        assert_eq!(p.limits("J::a"), Some((5, 5)));
        assert_eq!(answer(&mut p, "set_max_processes J::a 9"), "OK\r\n.\r\n");
        assert_eq!(answer(&mut p, "set_processes J::a 2 3"), "OK\r\n.\r\n");
        assert_eq!(p.limits("J::a"), Some((2, 3)));
    }

    #[test]
    fn status_is_aligned_with_two_trailing_spaces_when_no_error() {
        let mut p = pools();
        assert_eq!(
            answer(&mut p, "status"),
            "J::a          1   5  2  1970-01-01T00:00:00  1970-01-01T00:00:00  \r\n\
             J::long_name  0  12  1  1970-01-01T00:00:00  1970-01-01T00:00:00  \r\n.\r\n"
        );
    }

    #[test]
    fn status_shows_the_first_line_of_the_last_error() {
        let rows = vec![JobRow {
            name: "x".into(),
            min: 0,
            max: 5,
            processes: 0,
            lastrun: 1264797432,
            lasterror: 1264797432,
            lasterror_msg: "some error\nat line 3".into(),
        }];
        assert_eq!(
            format_status(&rows),
            vec!["x  0  5  0  2010-01-29T20:37:12  2010-01-29T20:37:12  ERROR: some error"]
        );
    }

    #[test]
    fn show_kill_killall_quit_shutdown() {
        let mut p = pools();
        assert_eq!(
            answer(&mut p, "show J::a"),
            "J::a  1  5  2  1970-01-01T00:00:00  1970-01-01T00:00:00  \r\n10\r\n11\r\n.\r\n"
        );
        assert_eq!(answer(&mut p, "kill 10 999"), "OK\r\n.\r\n");
        assert_eq!(p.killed, vec![10]);
        assert_eq!(answer(&mut p, "killall *"), "OK\r\n.\r\n");
        assert_eq!(p.killed, vec![10, 10, 11, 20]);
        assert_eq!(answer(&mut p, "quit"), "");
        assert_eq!(answer(&mut p, "shutdown"), "OK\r\n.\r\n");
        assert!(p.shut);
    }
}
