//! The stdio protocol end to end: a real gearmand, real worker processes.

mod common;
use common::*;
use std::time::Duration;

const W: &str = "T::W::";

fn setup(worker_py: &str, toml_extra: &str) -> (Gearmand, Lib, Driver) {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", worker_py);
    lib.file(
        "T/W.toml",
        &format!("command = [\"python3\", \"w.py\"]\n{toml_extra}"),
    );
    let driver = Driver::start(&lib, &gearmand, "T", &["--interval", "0.5"]);
    (gearmand, lib, driver)
}

#[test]
fn foreground_jobs_round_trip_binary_large_and_progress() {
    let worker = python_worker(
        "if name == 'progress':\n    frame(b'DATA', b'part1')\n    out.write(b'STATUS 1 2\\n')\n    frame(b'WARNING', b'careful')\n    frame(b'DATA', b'part2')\n    result = b'all done'",
    );
    let (gearmand, _lib, _driver) = setup(&worker, "[jobs.reverse]\n[jobs.progress]\n");

    let binary = b"a\0b\nc\r\n\0\xff end".to_vec();
    let reply = submit(&gearmand, &format!("{W}reverse"), &binary);
    let mut expected = binary.clone();
    expected.reverse();
    assert_eq!(reply.result.as_deref(), Some(&expected[..]));

    let big: Vec<u8> = (0..10 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let reply = submit(&gearmand, &format!("{W}reverse"), &big);
    let mut expected = big.clone();
    expected.reverse();
    assert!(
        reply.result.as_deref() == Some(&expected[..]),
        "10 MiB payload came back reversed"
    );

    let reply = submit(&gearmand, &format!("{W}progress"), b"x");
    assert_eq!(reply.data, vec![&b"part1"[..], &b"part2"[..]]);
    assert_eq!(reply.statuses, vec![("1".to_string(), "2".to_string())]);
    assert_eq!(reply.warnings, vec![&b"careful"[..]]);
    assert_eq!(reply.result.as_deref(), Some(&b"all done"[..]));
}

#[test]
fn fail_answers_work_fail_and_shows_in_status() {
    let worker = "import sys\nout, inp = sys.stdout.buffer, sys.stdin.buffer\nout.write(b'READY\\n'); out.flush()\nfor h in inp:\n    n = int(h.split()[4]); inp.read(n)\n    msg = b'disk full\\nsecond line'\n    out.write(b'FAIL %d\\n' % len(msg) + msg); out.flush()\n";
    let (gearmand, _lib, driver) = setup(worker, "[jobs.broken]\n");
    let reply = submit(&gearmand, &format!("{W}broken"), b"x");
    assert_eq!(reply.result, None, "FAIL becomes WORK_FAIL");
    assert_eq!(
        reply.warnings,
        vec![&b"disk full\nsecond line"[..]],
        "the message reaches the client"
    );
    let line = driver.status_line(&format!("{W}broken"));
    assert!(line.ends_with("  ERROR: disk full"), "{line}");
    assert!(
        !line.contains("1970-01-01T00:00:00  ERROR"),
        "lasterror is set: {line}"
    );
}

#[test]
fn process_group_jobs_share_processes() {
    let worker = python_worker("result = str(os.getpid()).encode()");
    let toml = "[jobs.a]\nprocess_group = \"g\"\nmin_processes = 1\n[jobs.b]\nprocess_group = \"g\"\n[jobs.c]\n";
    let (gearmand, _lib, driver) = setup(&worker, toml);
    let status = driver.console("status");
    let names: Vec<&str> = status
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, vec!["T::W::c", "T::W::g"]);
    let a = submit(&gearmand, &format!("{W}a"), b"").result.unwrap();
    let b = submit(&gearmand, &format!("{W}b"), b"").result.unwrap();
    let c = submit(&gearmand, &format!("{W}c"), b"").result.unwrap();
    assert_eq!(a, b, "a and b run in the group's one process");
    assert_ne!(a, c, "c has its own process");
    let group_pids = driver.pids("T::W::g");
    assert_eq!(
        group_pids,
        vec![String::from_utf8(a.to_vec())
            .unwrap()
            .parse::<u32>()
            .unwrap()]
    );
}

#[test]
fn a_worker_killed_mid_job_has_its_job_retried_and_is_replaced() {
    let worker = python_worker("time.sleep(1.0)");
    let (gearmand, _lib, driver) = setup(&worker, "[jobs.slow]\n");
    let job = format!("{W}slow");
    let first = wait_for(Duration::from_secs(10), "first process", || {
        driver.pids(&job).first().copied()
    });
    let addr = gearmand.addr();
    let fname = job.clone();
    let submitter = std::thread::spawn(move || {
        block_on(Duration::from_secs(30), async move {
            let mut c = Client::connect(&addr).await.unwrap();
            c.submit(&fname, b"", &b"payload"[..]).await.unwrap()
        })
    });
    wait_for(Duration::from_secs(10), "the job to be running", || {
        driver
            .console("ps")
            .iter()
            .any(|l| l.contains("busy"))
            .then_some(())
    });
    unsafe { libc::kill(first as i32, libc::SIGKILL) };
    let reply = submitter.join().unwrap();
    assert_eq!(
        reply.result.as_deref(),
        Some(&b"daolyap"[..]),
        "the job completed after a retry"
    );
    let now = driver.pids(&job);
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], first, "the dead process was replaced");
    assert!(
        driver.log_text().contains("died with a job in flight"),
        "{}",
        driver.log_text()
    );
}

#[test]
fn garbage_on_stdout_kills_and_replaces_the_process() {
    // The first process to see a job writes garbage; later ones behave.
    let worker = python_worker(
        "marker = 'garbage-done'\nif not os.path.exists(marker):\n    open(marker, 'w').close()\n    out.write(b'hello there\\n'); out.flush()\n    time.sleep(30)",
    );
    let (gearmand, _lib, driver) = setup(&worker, "[jobs.reverse]\n");
    let job = format!("{W}reverse");
    let first = wait_for(Duration::from_secs(10), "first process", || {
        driver.pids(&job).first().copied()
    });
    let reply = submit(&gearmand, &job, b"abc");
    assert_eq!(reply.result.as_deref(), Some(&b"cba"[..]));
    assert!(
        !pid_alive(first),
        "the process that wrote garbage was killed"
    );
    let log = driver.log_text();
    assert!(
        log.contains("Protocol error: unexpected output: \"hello there\""),
        "{log}"
    );
    let line = driver.status_line(&job);
    assert!(line.contains("ERROR: protocol error"), "{line}");
}
