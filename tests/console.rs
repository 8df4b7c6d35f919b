//! The console against a running supervisor: the exact bytes of every answer
//! on a raw TCP connection, the commands that change pools and processes,
//! and clients that misbehave (huge lines, binary, never reading, hanging up,
//! hundreds at once) while others keep being served and jobs keep running.

mod common;
use common::*;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const NEVER: &str = "1970-01-01T00:00:00";

/// A raw console connection: answers come back as the exact bytes sent.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(port: u16) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Conn {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// One line as sent, line end included; empty at end of stream.
    fn raw_line(&mut self) -> std::io::Result<Vec<u8>> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        Ok(line)
    }

    /// Everything up to and including the `.` line, byte for byte.
    fn answer(&mut self) -> String {
        let mut all = Vec::new();
        loop {
            let line = self.raw_line().expect("answer within 10 s");
            assert!(
                !line.is_empty(),
                "connection closed before `.`; got {:?}",
                String::from_utf8_lossy(&all)
            );
            all.extend_from_slice(&line);
            if line == b".\r\n" {
                break;
            }
        }
        String::from_utf8(all).expect("answers are UTF-8")
    }

    fn ask(&mut self, line: &str) -> String {
        self.send(format!("{line}\n").as_bytes());
        self.answer()
    }

    /// The answer's lines without CRLF and without the `.`.
    fn lines(&mut self, line: &str) -> Vec<String> {
        let answer = self.ask(line);
        let body = answer.strip_suffix(".\r\n").unwrap();
        body.split_terminator("\r\n").map(str::to_string).collect()
    }

    /// True when the server closed the connection (EOF or reset) with
    /// nothing more to say.
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => rest.is_empty(),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => rest.is_empty(),
            Err(e) => panic!("expected the connection to close: {e}"),
        }
    }
}

/// A gearmand and a driver serving the worker files `files` (path, body)
/// under namespace `T`.
fn start(files: &[(&str, &str)], extra: &[&str]) -> (Gearmand, Lib, Driver) {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    for (path, body) in files {
        lib.file(path, body);
    }
    let driver = Driver::start(&lib, &gearmand, "T", extra);
    (gearmand, lib, driver)
}

/// A job's PIDs (from `show`) once there are exactly `n`, all alive and
/// none of them in `old`.
fn wait_new_pids(driver: &Driver, job: &str, n: usize, old: &[u32], limit: Duration) -> Vec<u32> {
    wait_for(limit, &format!("{n} fresh processes for {job}"), || {
        let pids = driver.pids(job);
        (pids.len() == n
            && pids.iter().all(|p| !old.contains(p) && pid_alive(*p))
            && old.iter().all(|p| !pid_alive(*p)))
        .then_some(pids)
    })
}

/// `ps` rows: (pid, job, state).
fn ps_rows(driver: &Driver) -> Vec<(u32, String, String)> {
    driver
        .console("ps")
        .iter()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].parse().unwrap(), f[1].to_string(), f[2].to_string())
        })
        .collect()
}

fn wait_idle(driver: &Driver, job: &str, n: usize) {
    wait_for(
        Duration::from_secs(15),
        &format!("{n} idle processes of {job}"),
        || {
            let rows = ps_rows(driver);
            let of_job: Vec<_> = rows.iter().filter(|r| r.1 == job).collect();
            (of_job.len() == n && of_job.iter().all(|r| r.2 == "idle")).then_some(())
        },
    );
}

/// Submits a foreground job from another thread.
fn submit_in_background(
    gearmand: &Gearmand,
    function: &str,
    payload: &[u8],
) -> JoinHandle<JobReply> {
    let addr = gearmand.addr();
    let function = function.to_string();
    let payload = payload.to_vec();
    std::thread::spawn(move || {
        block_on(Duration::from_secs(60), async move {
            let mut c = Client::connect(&addr).await.unwrap();
            c.submit(&function, b"", payload).await.unwrap()
        })
    })
}

/// Every `YYYY-MM-DDTHH:MM:SS` in a line, in order.
fn timestamps(line: &str) -> Vec<String> {
    let b = line.as_bytes();
    let shape = b"0000-00-00T00:00:00";
    (0..b.len().saturating_sub(shape.len() - 1))
        .filter(|&i| {
            shape.iter().enumerate().all(|(k, s)| match s {
                b'0' => b[i + k].is_ascii_digit(),
                c => b[i + k] == *c,
            })
        })
        .map(|i| line[i..i + shape.len()].to_string())
        .collect()
}

fn assert_recent(stamp: &str, since: i64) {
    let t = chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%S")
        .unwrap()
        .and_utc()
        .timestamp();
    let now = chrono::Utc::now().timestamp();
    assert!(
        t >= since - 1 && t <= now + 1,
        "{stamp} is not between the test's start and now (UTC)"
    );
}

const TWO_JOBS: &str = "command = [\"python3\", \"w.py\"]\n\
    [jobs.a]\nmin_processes = 1\nmax_processes = 5\n\
    [jobs.longer_name]\nmin_processes = 0\nmax_processes = 3\n";

#[test]
fn the_error_table_byte_for_byte_on_one_connection() {
    let (_gearmand, _lib, driver) = start(
        &[("T/w.py", &python_worker("")), ("T/W.toml", TWO_JOBS)],
        &[],
    );
    let pids = wait_new_pids(&driver, "T::W::a", 1, &[], Duration::from_secs(10));
    let mut c = Conn::open(driver.console_port);
    let driver_pid = driver.pid().to_string();
    let own_pid = std::process::id().to_string();
    let kill_not_ours = "ERR invalid_value: the given PID(s) do not belong to us\r\n.\r\n";
    let min_ge0 = "ERR invalid_value: min_processes must be >= 0\r\n.\r\n";
    let max_ge0 = "ERR invalid_value: max_processes must be >= 0\r\n.\r\n";
    let min_lt = "ERR invalid_value: min_processes must be smaller than max_processes\r\n.\r\n";
    let max_gt = "ERR invalid_value: max_processes must be greater than min_processes\r\n.\r\n";
    let cases: Vec<(String, &str)> = vec![
        ("asdf\n".into(), "ERR unknown_command: asdf\r\n.\r\n"),
        (
            "asdf with args\r\n".into(),
            "ERR unknown_command: asdf\r\n.\r\n",
        ),
        ("STATUS\n".into(), "ERR unknown_command: STATUS\r\n.\r\n"),
        ("\n".into(), "ERR unknown_command: \r\n.\r\n"),
        ("\r\n".into(), "ERR unknown_command: \r\n.\r\n"),
        ("   \t \n".into(), "ERR unknown_command: \r\n.\r\n"),
        ("show nope\n".into(), "ERR invalid_job_name: nope\r\n.\r\n"),
        // set_min_processes: job, then the number, then against max (5).
        (
            "set_min_processes nope 1\n".into(),
            "ERR invalid_job_name: nope\r\n.\r\n",
        ),
        (
            "set_min_processes nope x\n".into(),
            "ERR invalid_job_name: nope\r\n.\r\n",
        ),
        (
            "set_min_processes\n".into(),
            "ERR invalid_job_name: \r\n.\r\n",
        ),
        ("set_min_processes T::W::a\n".into(), min_ge0),
        ("set_min_processes T::W::a ten\n".into(), min_ge0),
        ("set_min_processes T::W::a -1\n".into(), min_ge0),
        ("set_min_processes T::W::a 1.5\n".into(), min_ge0),
        ("set_min_processes T::W::a 6\r\n".into(), min_lt),
        ("set_min_processes T::W::a 100\n".into(), min_lt),
        // set_max_processes: job, then the number, then against min (1).
        (
            "set_max_processes nope 1\n".into(),
            "ERR invalid_job_name: nope\r\n.\r\n",
        ),
        (
            "set_max_processes nope -1\n".into(),
            "ERR invalid_job_name: nope\r\n.\r\n",
        ),
        ("set_max_processes T::W::a\n".into(), max_ge0),
        ("set_max_processes T::W::a five\n".into(), max_ge0),
        ("set_max_processes T::W::a -5\n".into(), max_ge0),
        ("set_max_processes T::W::a 0\r\n".into(), max_gt),
        // set_processes: job, min, max, then max >= min.
        (
            "set_processes nope x y\n".into(),
            "ERR invalid_job_name: nope\r\n.\r\n",
        ),
        ("set_processes T::W::a x -1\n".into(), min_ge0),
        ("set_processes T::W::a -1 2\n".into(), min_ge0),
        ("set_processes T::W::a 1 y\n".into(), max_ge0),
        ("set_processes T::W::a 1\n".into(), max_ge0),
        ("set_processes T::W::a 1 -2\n".into(), max_ge0),
        ("set_processes T::W::a 3 2\n".into(), max_gt),
        // kill: nothing of ours among the PIDs, not even the supervisor itself.
        ("kill 1\n".into(), kill_not_ours),
        (format!("kill {driver_pid}\n"), kill_not_ours),
        (format!("kill {own_pid} 1 abc\n"), kill_not_ours),
        ("kill abc\n".into(), kill_not_ours),
        ("kill\n".into(), kill_not_ours),
        (
            "killall\n".into(),
            "ERR invalid_value: no job_names given\r\n.\r\n",
        ),
        (
            "killall nope\n".into(),
            "ERR invalid_job_name: nope\r\n.\r\n",
        ),
        (
            "killall T::W::a nope\r\n".into(),
            "ERR invalid_job_name: nope\r\n.\r\n",
        ),
    ];
    for (line, expected) in &cases {
        c.send(line.as_bytes());
        assert_eq!(&c.answer(), expected, "answer to {line:?}");
    }

    // Nothing above changed a limit or touched a process.
    assert_eq!(
        c.ask("show T::W::a"),
        format!(
            "T::W::a  1  5  1  {NEVER}  {NEVER}  \r\n{}\r\n.\r\n",
            pids[0]
        )
    );
    // A SIGTERM sent by mistake would have ended the worker by now.
    std::thread::sleep(Duration::from_millis(300));
    assert!(pid_alive(pids[0]), "a failed killall kills nothing");
    assert_eq!(driver.pids("T::W::a"), pids);

    // Boundaries that are accepted: min == max, max == min.
    assert_eq!(
        c.ask("set_min_processes T::W::longer_name 3"),
        "OK\r\n.\r\n"
    );
    assert_eq!(
        c.ask("set_max_processes T::W::longer_name 3"),
        "OK\r\n.\r\n"
    );
    assert_eq!(c.ask("set_processes T::W::longer_name 0 0"), "OK\r\n.\r\n");
    assert_eq!(c.ask("set_processes T::W::a 1 7"), "OK\r\n.\r\n");
    let show = c.lines("show T::W::a");
    assert!(show[0].starts_with("T::W::a  1  7  "), "{show:?}");

    // Answers to lines sent in one write come back in order.
    c.send(b"nope1\nshow nope2\r\nkillall\n");
    assert_eq!(c.answer(), "ERR unknown_command: nope1\r\n.\r\n");
    assert_eq!(c.answer(), "ERR invalid_job_name: nope2\r\n.\r\n");
    assert_eq!(c.answer(), "ERR invalid_value: no job_names given\r\n.\r\n");

    c.send(b"quit\r\n");
    assert!(c.closed(), "quit closes without a `.`");
    let mut c = Conn::open(driver.console_port);
    c.send(b"quit\n");
    assert!(c.closed(), "quit closes without a `.`");
    assert_eq!(
        driver.console("show nope"),
        vec!["ERR invalid_job_name: nope"]
    );
}

#[test]
fn status_columns_lastrun_and_the_last_error() {
    let fail_worker = "import sys\nout, inp = sys.stdout.buffer, sys.stdin.buffer\n\
        out.write(b'READY\\n'); out.flush()\nfor h in inp:\n    inp.read(int(h.split()[4]))\n    \
        msg = b'disk full\\nsecond line'\n    out.write(b'FAIL %d\\n' % len(msg) + msg); out.flush()\n";
    let (gearmand, _lib, driver) = start(
        &[
            ("T/w.py", &python_worker("")),
            (
                "T/W.toml",
                "command = [\"python3\", \"w.py\"]\n\
                 [jobs.a]\nmin_processes = 1\nmax_processes = 12\n\
                 [jobs.longer_name]\nmin_processes = 0\nmax_processes = 3\n",
            ),
            ("T/fail.py", fail_worker),
            (
                "T/Fail.toml",
                "command = [\"python3\", \"fail.py\"]\n[jobs.broken]\n",
            ),
        ],
        // A poll taken just before a job is grabbed could start a second
        // process for it; the column widths here want exactly one.
        &["--interval", "30"],
    );
    let since = chrono::Utc::now().timestamp();
    wait_idle(&driver, "T::W::a", 1);
    wait_idle(&driver, "T::Fail::broken", 1);
    let mut c = Conn::open(driver.console_port);
    assert_eq!(
        c.ask("status"),
        format!(
            "T::Fail::broken    1   1  1  {NEVER}  {NEVER}  \r\n\
             T::W::a            1  12  1  {NEVER}  {NEVER}  \r\n\
             T::W::longer_name  0   3  0  {NEVER}  {NEVER}  \r\n.\r\n"
        )
    );

    let reply = submit(&gearmand, "T::W::a", b"abc");
    assert_eq!(reply.result.as_deref(), Some(&b"cba"[..]));
    let reply = submit(&gearmand, "T::Fail::broken", b"x");
    assert_eq!(reply.result, None, "the job failed");

    let lines = wait_for(Duration::from_secs(5), "the failure in status", || {
        let lines = c.lines("status");
        (lines[0].contains("ERROR") && timestamps(&lines[1])[0] != NEVER).then_some(lines)
    });
    let broken = timestamps(&lines[0]);
    let a = timestamps(&lines[1]);
    assert_eq!((broken.len(), a.len()), (2, 2), "{lines:?}");
    for stamp in [&broken[0], &broken[1], &a[0]] {
        assert_recent(stamp, since);
    }
    assert_eq!(a[1], NEVER, "a never failed");
    assert_eq!(
        lines,
        vec![
            format!(
                "T::Fail::broken    1   1  1  {}  {}  ERROR: disk full",
                broken[0], broken[1]
            ),
            format!("T::W::a            1  12  1  {}  {NEVER}  ", a[0]),
            format!("T::W::longer_name  0   3  0  {NEVER}  {NEVER}  "),
        ]
    );

    // `show` formats its one line on its own widths.
    let pid = driver.pids("T::Fail::broken")[0];
    assert_eq!(
        c.ask("show T::Fail::broken"),
        format!(
            "T::Fail::broken  1  1  1  {}  {}  ERROR: disk full\r\n{pid}\r\n.\r\n",
            broken[0], broken[1]
        )
    );
}

#[test]
fn kill_and_killall_replace_processes_as_min_requires() {
    let (_gearmand, _lib, driver) = start(
        &[
            ("T/w.py", &python_worker("")),
            (
                "T/W.toml",
                "command = [\"python3\", \"w.py\"]\n\
                 [jobs.a]\nmin_processes = 2\nmax_processes = 4\n\
                 [jobs.b]\nmin_processes = 1\nmax_processes = 2\n\
                 [jobs.c]\nmin_processes = 0\nmax_processes = 2\n",
            ),
        ],
        &["--interval", "1"],
    );
    // One interval plus room for a slow machine; replacement is not meant
    // to wait for a poll at all.
    let replaced_within = Duration::from_secs(3);
    let a = wait_new_pids(&driver, "T::W::a", 2, &[], Duration::from_secs(10));
    let b = wait_new_pids(&driver, "T::W::b", 1, &[], Duration::from_secs(10));
    let mut c = Conn::open(driver.console_port);
    assert_eq!(
        c.ask("show T::W::a"),
        format!(
            "T::W::a  2  4  2  {NEVER}  {NEVER}  \r\n{}\r\n{}\r\n.\r\n",
            a[0], a[1]
        )
    );

    // PIDs not ours are ignored when one of them is.
    assert_eq!(
        c.ask(&format!("kill {} 1 abc {}", a[0], a[1])),
        "OK\r\n.\r\n"
    );
    let a2 = wait_new_pids(&driver, "T::W::a", 2, &a, replaced_within);
    assert_eq!(
        driver.pids("T::W::b"),
        b,
        "kill touches only the given PIDs"
    );
    let show = c.lines("show T::W::a");
    assert_eq!(show.len(), 3);
    assert!(show[0].starts_with("T::W::a  2  4  2  "), "{show:?}");

    assert_eq!(c.ask("killall T::W::a"), "OK\r\n.\r\n");
    let a3 = wait_new_pids(&driver, "T::W::a", 2, &a2, replaced_within);
    assert_eq!(driver.pids("T::W::b"), b);

    assert_eq!(c.ask("killall T::W::a T::W::b"), "OK\r\n.\r\n");
    let a4 = wait_new_pids(&driver, "T::W::a", 2, &a3, replaced_within);
    let b2 = wait_new_pids(&driver, "T::W::b", 1, &b, replaced_within);

    assert_eq!(c.ask("killall *"), "OK\r\n.\r\n");
    wait_new_pids(&driver, "T::W::a", 2, &a4, replaced_within);
    wait_new_pids(&driver, "T::W::b", 1, &b2, replaced_within);
    assert_eq!(
        driver.pids("T::W::c"),
        Vec::<u32>::new(),
        "min 0 stays empty"
    );

    // Processes killed from the console are neither failures nor crash loops.
    let status = c.lines("status");
    assert!(status.iter().all(|l| !l.contains("ERROR")), "{status:?}");
}

#[test]
fn raising_min_starts_at_once_and_lowering_max_waits_for_the_busy_one() {
    let (gearmand, _lib, driver) = start(
        &[
            (
                "T/w.py",
                &python_worker("if data == b'slow':\n    time.sleep(3)"),
            ),
            (
                "T/W.toml",
                "command = [\"python3\", \"w.py\"]\n[jobs.a]\nmin_processes = 1\nmax_processes = 5\n",
            ),
        ],
        // No poll comes to the rescue during this test.
        &["--interval", "30"],
    );
    let job = "T::W::a";
    let first = wait_new_pids(&driver, job, 1, &[], Duration::from_secs(10));
    let mut c = Conn::open(driver.console_port);

    assert_eq!(c.ask("set_min_processes T::W::a 3"), "OK\r\n.\r\n");
    let pids = wait_for(Duration::from_secs(5), "min 3 processes", || {
        let pids = driver.pids(job);
        (pids.len() == 3 && pids.iter().all(|p| pid_alive(*p))).then_some(pids)
    });
    assert!(pids.contains(&first[0]), "the first process stays");
    wait_idle(&driver, job, 3);

    let slow = submit_in_background(&gearmand, job, b"slow");
    let busy = wait_for(Duration::from_secs(5), "the slow job to run", || {
        let rows = ps_rows(&driver);
        let busy: Vec<u32> = rows.iter().filter(|r| r.2 == "busy").map(|r| r.0).collect();
        (busy.len() == 1).then(|| busy[0])
    });
    let idle: Vec<u32> = pids.iter().copied().filter(|p| *p != busy).collect();

    assert_eq!(c.ask("set_min_processes T::W::a 0"), "OK\r\n.\r\n");
    assert_eq!(c.ask("set_max_processes T::W::a 0"), "OK\r\n.\r\n");
    wait_for(Duration::from_secs(2), "the idle surplus to stop", || {
        (idle.iter().all(|p| !pid_alive(*p)) && driver.pids(job) == vec![busy]).then_some(())
    });
    assert!(
        !slow.is_finished(),
        "the idle processes stopped while the job still ran"
    );
    assert!(pid_alive(busy), "the busy process finishes its job first");

    let reply = slow.join().unwrap();
    assert_eq!(reply.result.as_deref(), Some(&b"wols"[..]));
    wait_for(Duration::from_secs(5), "the busy process to stop", || {
        (!pid_alive(busy) && driver.pids(job).is_empty()).then_some(())
    });
    assert!(
        c.lines("status")[0].starts_with("T::W::a  0  0  0  "),
        "{:?}",
        c.lines("status")
    );
}

#[test]
fn ps_and_help_answer() {
    let (gearmand, _lib, driver) = start(
        &[
            (
                "T/w.py",
                &python_worker("if data == b'slow':\n    time.sleep(2)"),
            ),
            (
                "T/W.toml",
                "command = [\"python3\", \"w.py\"]\n\
                 [jobs.a]\nmin_processes = 2\nmax_processes = 2\n\
                 [jobs.b]\nmin_processes = 1\nmax_processes = 1\n",
            ),
        ],
        &["--interval", "1"],
    );
    wait_idle(&driver, "T::W::a", 2);
    wait_idle(&driver, "T::W::b", 1);
    let slow = submit_in_background(&gearmand, "T::W::a", b"slow");

    let (header, rows) = wait_for(Duration::from_secs(5), "a busy process in ps", || {
        let lines = driver.console("ps");
        let rows = ps_rows(&driver);
        rows.iter()
            .any(|r| r.2 == "busy")
            .then(|| (lines[0].clone(), rows))
    });
    let header: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(&header[..3], ["PID", "JOB", "STATE"]);
    let mut shown: Vec<(u32, String)> = Vec::new();
    for job in ["T::W::a", "T::W::b"] {
        shown.extend(driver.pids(job).into_iter().map(|p| (p, job.to_string())));
    }
    shown.sort();
    let mut listed: Vec<(u32, String)> = rows.iter().map(|r| (r.0, r.1.clone())).collect();
    listed.sort();
    assert_eq!(listed, shown, "one ps line per process");
    let states: Vec<(&str, &str)> = rows.iter().map(|r| (r.1.as_str(), r.2.as_str())).collect();
    assert!(states.contains(&("T::W::a", "busy")), "{states:?}");
    assert!(states.contains(&("T::W::a", "idle")), "{states:?}");
    assert!(states.contains(&("T::W::b", "idle")), "{states:?}");
    assert_eq!(slow.join().unwrap().result.as_deref(), Some(&b"wols"[..]));

    let help = driver.console("help");
    for command in [
        "status",
        "show",
        "ps",
        "set_min_processes",
        "set_max_processes",
        "set_processes",
        "kill",
        "killall",
        "quit",
        "shutdown",
        "help",
    ] {
        assert!(
            help.iter()
                .any(|l| l.split_whitespace().next() == Some(command)),
            "help lists {command}: {help:?}"
        );
    }
}

#[test]
fn long_lines_and_binary_input_get_err_and_others_keep_being_served() {
    let (_gearmand, _lib, driver) = start(
        &[("T/w.py", &python_worker("")), ("T/W.toml", TWO_JOBS)],
        &[],
    );
    let port = driver.console_port;
    let mut other = Conn::open(port);
    let status = other.ask("status");
    assert!(status.starts_with("T::W::a  "), "{status:?}");

    // Just under the limit is a line like any other.
    let mut c = Conn::open(port);
    let long_name = "x".repeat(60 * 1024);
    assert_eq!(
        c.ask(&long_name),
        format!("ERR unknown_command: {long_name}\r\n.\r\n")
    );
    assert_eq!(c.ask("status"), status);

    // Over the limit: one short ERR line, and no part of the line is taken
    // for a command; the connection may close after it.
    for ending in [&b"\n"[..], b""] {
        let mut c = Conn::open(port);
        let mut line = vec![b'y'; 100 * 1024];
        line.extend_from_slice(ending);
        c.send(&line);
        let first = c.raw_line().expect("an answer, not a reset");
        assert!(
            first.starts_with(b"ERR ") && first.ends_with(b"\r\n") && first.len() < 200,
            "{:?}",
            String::from_utf8_lossy(&first[..first.len().min(200)])
        );
        let after: Vec<u8> = c.raw_line().unwrap_or_default();
        if after == b".\r\n" {
            // Still open or not, the next thing heard is this status or the end.
            let _ = c.writer.write_all(b"status\n");
            let mut next = Vec::new();
            while let Ok(l) = c.raw_line() {
                next.extend_from_slice(&l);
                if l.is_empty() || l == b".\r\n" {
                    break;
                }
            }
            assert!(
                next.is_empty() || next == status.as_bytes(),
                "after the ERR: {:?}",
                String::from_utf8_lossy(&next[..next.len().min(200)])
            );
        } else {
            assert!(after.is_empty(), "{:?}", String::from_utf8_lossy(&after));
        }
        assert_eq!(other.ask("status"), status);
    }

    let mut c = Conn::open(port);
    for (input, command) in [
        (&b"\xff\xfe\n"[..], "\u{fffd}\u{fffd}"),
        // Control bytes come back spelled out, never raw.
        (b"sta\0tus\n", "sta\\x00tus"),
        (b"\0\n", "\\x00"),
        (b"status\xc3\n", "status\u{fffd}"),
        (b"\x01\x02\x1b[2J killall *\r\n", "\\x01\\x02\\x1b[2J"),
    ] {
        c.send(input);
        assert_eq!(
            c.answer(),
            format!("ERR unknown_command: {command}\r\n.\r\n"),
            "answer to {input:?}"
        );
    }
    assert_eq!(c.ask("status"), status, "the same connection still works");
    assert_eq!(other.ask("status"), status);
}

#[test]
fn clients_that_never_read_or_hang_up_stall_nothing() {
    let (gearmand, _lib, mut driver) = start(
        &[("T/w.py", &python_worker("")), ("T/W.toml", TWO_JOBS)],
        &["--interval", "1"],
    );
    let port = driver.console_port;
    let status = Conn::open(port).ask("status");

    // Clients that hang up with many answers unread, or halfway through one.
    for _ in 0..3 {
        let mut quitter = TcpStream::connect(("127.0.0.1", port)).unwrap();
        quitter.write_all(&b"status\n".repeat(2000)).unwrap();
        drop(quitter);
    }
    let mut partial = Conn::open(port);
    partial.send(&b"status\n".repeat(50));
    let mut some = [0u8; 10];
    partial.reader.read_exact(&mut some).unwrap();
    drop(partial);

    // Sends and sends and never reads, until its answers fill every buffer
    // between it and the server.
    let hog = TcpStream::connect(("127.0.0.1", port)).unwrap();
    hog.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let burst = b"status\n".repeat(10_000);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut sent = 0usize;
    let mut blocked = false;
    while Instant::now() < deadline {
        match (&hog).write(&burst) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                blocked = true;
                break;
            }
            Err(e) => panic!("the server dropped the hog early: {e} after {sent} bytes"),
        }
    }
    assert!(blocked, "the server kept reading {sent} bytes of commands");

    // The hog's connection is stuck; everyone else is served, and jobs run.
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(Conn::open(port).ask("status"), status);
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "status took {:?}",
        started.elapsed()
    );
    let reply = submit(&gearmand, "T::W::a", b"hello");
    assert_eq!(reply.result.as_deref(), Some(&b"olleh"[..]));
    let status_after = Conn::open(port).lines("status");
    assert_ne!(timestamps(&status_after[0])[0], NEVER, "lastrun moved");

    // A client that does not take its answers is dropped after the server's
    // write timeout (10 s) instead of holding a connection slot for ever; its
    // next write then meets the reset.
    wait_for(
        Duration::from_secs(30),
        "the server to drop the hog",
        || match (&hog).write(b"status\n") {
            Ok(_) => None,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(_) => Some(()),
        },
    );
    assert!(
        driver.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the supervisor is alive"
    );
    assert_eq!(Conn::open(port).lines("status"), status_after);
    assert_eq!(driver.pids("T::W::a").len(), 1);
}

#[test]
fn hundreds_of_connections_at_once() {
    let (_gearmand, _lib, mut driver) = start(
        &[("T/w.py", &python_worker("")), ("T/W.toml", TWO_JOBS)],
        &[],
    );
    let port = driver.console_port;
    let status = Conn::open(port).ask("status");

    // 300 connections: past the default limit of 64 (console_max_connections)
    // the rest hear ERR.
    let mut conns: Vec<Conn> = (0..300).map(|_| Conn::open(port)).collect();
    for c in &mut conns {
        c.send(b"status\n");
    }
    let (mut served, mut refused) = (0, 0);
    for (i, c) in conns.iter_mut().enumerate() {
        let answer = c.answer();
        if answer == status {
            served += 1;
        } else {
            assert_eq!(
                answer, "ERR too many connections\r\n.\r\n",
                "connection {i}"
            );
            refused += 1;
        }
    }
    assert_eq!((served, refused), (64, 236));
    drop(conns);

    // Once they are gone, new connections are served again.
    wait_for(Duration::from_secs(5), "a full answer again", || {
        (Conn::open(port).ask("status") == status).then_some(())
    });
    assert!(
        driver.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the supervisor is alive"
    );
}

#[test]
fn shutdown_stops_the_workers_and_exits_zero() {
    let (_gearmand, _lib, mut driver) = start(
        &[
            ("T/w.py", &python_worker("")),
            (
                "T/W.toml",
                "command = [\"python3\", \"w.py\"]\n[jobs.a]\nmin_processes = 2\nmax_processes = 2\n",
            ),
        ],
        &[],
    );
    let pids = wait_new_pids(&driver, "T::W::a", 2, &[], Duration::from_secs(10));
    wait_idle(&driver, "T::W::a", 2);
    let mut c = Conn::open(driver.console_port);
    assert_eq!(c.ask("shutdown"), "OK\r\n.\r\n");
    let child = driver.child.as_mut().unwrap();
    let exit = wait_for(Duration::from_secs(15), "the supervisor to exit", || {
        child.try_wait().unwrap()
    });
    assert_eq!(exit.code(), Some(0), "{}", driver.log_text());
    for pid in pids {
        assert!(!pid_alive(pid), "worker {pid} is gone");
    }
    assert!(c.closed(), "the console went away with the supervisor");
}
