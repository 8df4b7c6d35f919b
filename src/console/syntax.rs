//! The console's language: a line becomes a [`Request`], an [`Answer`]
//! becomes lines, exactly as Gearman::Driver's console spoke (`OK`,
//! `ERR <kind>: <detail>`, the aligned `status` table). What the commands
//! do and how they are checked is [`crate::command`]'s.

use chrono::{DateTime, Utc};

use crate::command::{Answer, Count, JobRow, ProcRow, Request};
use crate::schedule::{spec::rfc3339, ScheduleState};

/// Parses one console line (without its line end).
pub fn parse(line: &str) -> Request {
    let mut words = line.split_whitespace();
    let command = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    let job = || args.first().copied().unwrap_or("").to_string();
    let count = |i: usize| Some(Count::parse(args.get(i).copied()));
    match command {
        "status" => Request::Status,
        "show" => Request::Show { job: job() },
        "ps" => Request::Ps,
        "set_min_processes" | "set_min_childs" => Request::SetLimits {
            job: job(),
            min: count(1),
            max: None,
        },
        "set_max_processes" | "set_max_childs" => Request::SetLimits {
            job: job(),
            min: None,
            max: count(1),
        },
        "set_processes" => Request::SetLimits {
            job: job(),
            min: count(1),
            max: count(2),
        },
        // Words that are not PIDs cannot be ours.
        "kill" => Request::Kill {
            pids: args.iter().filter_map(|a| a.parse().ok()).collect(),
        },
        "killall" => Request::KillAll {
            jobs: args.iter().map(|s| s.to_string()).collect(),
        },
        "reload" => Request::Reload,
        "upgrade" => Request::Upgrade,
        "shutdown" => Request::Shutdown,
        "version" => Request::Version,
        "schedules" => Request::Schedules,
        "help" => Request::Help,
        "quit" => Request::Quit,
        other => Request::Unknown {
            command: other.to_string(),
        },
    }
}

/// The answer's lines; `None` for `quit` (the connection closes, no `.`).
pub fn render(answer: &Answer) -> Option<Vec<String>> {
    let lines = match answer {
        Answer::Ok => vec!["OK".to_string()],
        Answer::OkWith(changes) => std::iter::once("OK".to_string())
            .chain(changes.iter().cloned())
            .collect(),
        Answer::Text(lines) => lines.clone(),
        Answer::Status(rows) => format_status(rows),
        Answer::Show { row, pids } => {
            let mut lines = format_status(std::slice::from_ref(row));
            lines.extend(pids.iter().map(u32::to_string));
            lines
        }
        Answer::Processes(rows) => format_ps(rows),
        Answer::Schedules(rows) => format_schedules(rows),
        // Not a console command; shown as the JSON the HTTP API serves.
        Answer::Overview(view) => vec![serde_json::to_string(view).unwrap_or_default()],
        Answer::Close => return None,
        // The detail may echo what the client sent: its control bytes
        // (an escape sequence that clears an operator's terminal) go out
        // spelled, not raw.
        Answer::Failed { error, details } => std::iter::once(escape_controls(&error.line()))
            .chain(details.iter().cloned())
            .collect(),
    };
    Some(lines)
}

/// `text` with control characters other than line breaks and tabs
/// written out: `\x1b`, `\u{9b}`.
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\t' => c.to_string(),
            c if c.is_ascii_control() => format!("\\x{:02x}", c as u32),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// The bytes on the wire: CRLF line ends and the `.` terminator. A line
/// with line breaks in it (a compiler's message in a config error) goes out
/// as several lines, so no client sees a bare LF.
pub fn to_wire(lines: Option<&[String]>) -> Vec<u8> {
    let mut out = Vec::new();
    for part in lines.unwrap_or_default().iter().flat_map(|l| l.lines()) {
        out.extend_from_slice(part.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if lines.is_some() {
        out.extend_from_slice(b".\r\n");
    }
    out
}

fn format_ps(rows: &[ProcRow]) -> Vec<String> {
    let width = rows.iter().map(|r| r.job.len()).max().unwrap_or(3).max(3);
    let mut lines = vec![format!(
        "{:>7}  {:<width$}  {:<8}  {:>7}  {:>9}  {:>9}",
        "PID", "JOB", "STATE", "JOBS", "UPTIME", "RSS_KIB"
    )];
    for r in rows {
        let rss = r.rss_kib.map_or("-".to_string(), |k| k.to_string());
        let pid = r.pid.map_or("-".to_string(), |p| p.to_string());
        lines.push(format!(
            "{:>7}  {:<width$}  {:<8}  {:>7}  {:>9}  {:>9}",
            pid,
            r.job,
            r.state,
            r.jobs_done,
            format!("{}s", r.uptime.as_secs()),
            rss
        ));
    }
    lines
}

/// `schedules` lines: a header, then per schedule its name, next run, last
/// run (times as in the runs' unique ids, `-` for none) and how the last run
/// ended (`submitted to <server>`, `failed: <why>`, `missed: <why>`).
fn format_schedules(rows: &[ScheduleState]) -> Vec<String> {
    let name_w = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(4);
    let time_w = "YYYY-MM-DDTHH:MM:SSZ".len();
    let time = |t: Option<DateTime<Utc>>| t.map_or("-".to_string(), rfc3339);
    let line = |name: &str, next: &str, last: &str, result: &str| {
        format!("{name:<name_w$}  {next:<time_w$}  {last:<time_w$}  {result}")
            .trim_end()
            .to_string()
    };
    std::iter::once(line("NAME", "NEXT RUN", "LAST RUN", "RESULT"))
        .chain(rows.iter().map(|r| {
            let last = r.last_run.as_ref();
            line(
                &r.name,
                &time(r.next_run),
                &time(last.map(|l| l.scheduled)),
                &last.map_or("-".to_string(), |l| l.describe()),
            )
        }))
        .collect()
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
    use crate::command::execute;
    use crate::command::fake::FakePools;

    fn answer(p: &mut FakePools, line: &str) -> String {
        let answer = execute(p, &parse(line));
        String::from_utf8(to_wire(render(&answer).as_deref())).unwrap()
    }

    #[test]
    fn the_error_table() {
        let mut p = FakePools::two_jobs();
        let cases = [
            ("asdf", "ERR unknown_command: asdf\r\n.\r\n"),
            (
                "\x1b[2J\x07boom\u{9b}",
                "ERR unknown_command: \\x1b[2J\\x07boom\\u{9b}\r\n.\r\n",
            ),
            (
                "show J::\x1b]0;x\x07",
                "ERR invalid_job_name: J::\\x1b]0;x\\x07\r\n.\r\n",
            ),
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
                "set_min_processes J::a",
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
                "set_processes J::a 1",
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
            (
                "kill ten",
                "ERR invalid_value: the given PID(s) do not belong to us\r\n.\r\n",
            ),
            ("killall", "ERR invalid_value: no job_names given\r\n.\r\n"),
            ("killall J::a nope", "ERR invalid_job_name: nope\r\n.\r\n"),
            ("show nope", "ERR invalid_job_name: nope\r\n.\r\n"),
            ("show", "ERR invalid_job_name: \r\n.\r\n"),
        ];
        for (line, expected) in cases {
            assert_eq!(answer(&mut p, line), expected, "{line:?}");
        }
        assert!(p.killed.is_empty(), "a failed killall kills nothing");
    }

    #[test]
    fn set_commands_change_limits() {
        let mut p = FakePools::two_jobs();
        assert_eq!(answer(&mut p, "set_min_processes J::a 5"), "OK\r\n.\r\n");
        assert_eq!(p.jobs["J::a"].0, 5);
        assert_eq!(answer(&mut p, "set_max_childs J::a 9"), "OK\r\n.\r\n");
        assert_eq!(answer(&mut p, "set_processes J::a 2 3"), "OK\r\n.\r\n");
        assert_eq!((p.jobs["J::a"].0, p.jobs["J::a"].1), (2, 3));
    }

    #[test]
    fn status_is_aligned_with_two_trailing_spaces_when_no_error() {
        let mut p = FakePools::two_jobs();
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
    fn show_kill_killall_quit_shutdown_version() {
        let mut p = FakePools::two_jobs();
        assert_eq!(
            answer(&mut p, "show J::a"),
            "J::a  1  5  2  1970-01-01T00:00:00  1970-01-01T00:00:00  \r\n10\r\n11\r\n.\r\n"
        );
        assert_eq!(answer(&mut p, "kill 10 999"), "OK\r\n.\r\n");
        assert_eq!(p.killed_pids(), vec!["10"]);
        assert_eq!(answer(&mut p, "killall *"), "OK\r\n.\r\n");
        assert_eq!(p.killed_pids(), vec!["10", "10", "11", "20"]);
        assert_eq!(answer(&mut p, "quit"), "");
        assert_eq!(
            answer(&mut p, "version"),
            format!("gearman-driver {}\r\n.\r\n", crate::version())
        );
        assert!(answer(&mut p, "help").starts_with("status "));
        assert_eq!(answer(&mut p, "shutdown"), "OK\r\n.\r\n");
        assert!(p.shut);
    }

    #[test]
    fn schedules_list_next_and_last_run_with_its_result() {
        use crate::schedule::{LastRun, Priority, RunCounts, RunResult};
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let state = |name: &str, last: Option<LastRun>| ScheduleState {
            name: name.into(),
            when: "every 1h".into(),
            function: "F::f".into(),
            priority: Priority::Normal,
            next_run: Some(at("2026-11-24T03:00:00Z")),
            last_run: last,
            runs: RunCounts::default(),
        };
        let mut p = FakePools::two_jobs();
        p.schedules = vec![
            state("fresh", None),
            state(
                "nightly-report",
                Some(LastRun {
                    scheduled: at("2026-11-23T03:00:00Z"),
                    result: RunResult::Submitted,
                    detail: "127.0.0.1:4730".into(),
                }),
            ),
            state(
                "tick",
                Some(LastRun {
                    scheduled: at("2026-11-23T02:00:00Z"),
                    result: RunResult::Failed,
                    detail: "no server accepted it".into(),
                }),
            ),
        ];
        assert_eq!(
            answer(&mut p, "schedules"),
            "NAME            NEXT RUN              LAST RUN              RESULT\r\n\
             fresh           2026-11-24T03:00:00Z  -                     -\r\n\
             nightly-report  2026-11-24T03:00:00Z  2026-11-23T03:00:00Z  submitted to 127.0.0.1:4730\r\n\
             tick            2026-11-24T03:00:00Z  2026-11-23T02:00:00Z  failed: no server accepted it\r\n\
             .\r\n"
        );
        p.schedules.clear();
        assert_eq!(
            answer(&mut p, "schedules"),
            "NAME  NEXT RUN              LAST RUN              RESULT\r\n.\r\n"
        );
    }

    #[test]
    fn embedded_line_breaks_become_crlf_lines() {
        let lines = vec!["ERR x".to_string(), "a\nb\r\nc".to_string()];
        assert_eq!(to_wire(Some(&lines)), b"ERR x\r\na\r\nb\r\nc\r\n.\r\n");
        assert_eq!(to_wire(None), b"");
    }

    #[test]
    fn reload_answers_ok_and_its_changes() {
        let mut p = FakePools::two_jobs();
        assert_eq!(answer(&mut p, "reload"), "OK\r\nnothing changed\r\n.\r\n");
        assert_eq!(
            answer(&mut p, "upgrade"),
            "ERR upgrade refused: an upgrade is under way\r\n.\r\n"
        );
    }
}
