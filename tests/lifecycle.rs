//! Signals: graceful TERM with a job in flight, and no orphans after kill -9.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn term_lets_the_running_job_finish_then_exits_zero_without_leftovers() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker("time.sleep(2)"));
    lib.file(
        "T/W.toml",
        "command = [\"python3\", \"w.py\"]\n[jobs.slow]\n",
    );
    let pid_file = lib.path().join("driver.pid");
    let mut driver = Driver::start(
        &lib,
        &gearmand,
        "T",
        &["--pid-file", pid_file.to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        driver.pid().to_string()
    );
    let worker = wait_for(Duration::from_secs(10), "a worker", || {
        driver.pids("T::W::slow").first().copied()
    });
    let addr = gearmand.addr();
    let submitter = std::thread::spawn(move || {
        block_on(Duration::from_secs(30), async move {
            let mut c = Client::connect(&addr).await.unwrap();
            c.submit("T::W::slow", b"", &b"abc"[..]).await.unwrap()
        })
    });
    wait_for(Duration::from_secs(10), "the job to run", || {
        driver
            .console("ps")
            .iter()
            .any(|l| l.contains("busy"))
            .then_some(())
    });
    let status = driver.terminate(Duration::from_secs(15));
    assert!(status.success(), "exit status {status}");
    let reply = submitter.join().unwrap();
    assert_eq!(
        reply.result.as_deref(),
        Some(&b"cba"[..]),
        "the in-flight job finished"
    );
    assert!(!pid_alive(worker), "worker {worker} is gone");
    assert!(!pid_file.exists(), "the pid file was removed");
}

#[test]
fn kill_9_of_the_supervisor_takes_every_worker_with_it() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker(""));
    lib.file("T/W.toml", "command = [\"python3\", \"w.py\"]\n[jobs.a]\nmin_processes = 3\nmax_processes = 3\n[jobs.b]\nmin_processes = 2\nmax_processes = 2\n");
    let mut driver = Driver::start(&lib, &gearmand, "T", &[]);
    driver.wait_processes("T::W::a", 3, Duration::from_secs(10));
    driver.wait_processes("T::W::b", 2, Duration::from_secs(10));
    let mut pids = driver.pids("T::W::a");
    pids.extend(driver.pids("T::W::b"));
    assert_eq!(pids.len(), 5);
    let mut child = driver.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    wait_for(Duration::from_secs(2), "every worker to die", || {
        pids.iter().all(|p| !pid_alive(*p)).then_some(())
    });
}

#[test]
fn a_stdio_process_that_outlives_its_closed_stdin_gets_its_stop_signal() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    // Ignores the end of its stdin; leaves on SIGUSR1 only.
    lib.file(
        "T/w.py",
        "import os, signal, sys, time\n\
         def leave(*_):\n    sys.stderr.write('got SIGUSR1\\n'); sys.stderr.flush(); os._exit(0)\n\
         signal.signal(signal.SIGUSR1, leave)\n\
         sys.stdout.write('READY\\n'); sys.stdout.flush()\n\
         sys.stdin.read()\n\
         while True: time.sleep(1)\n",
    );
    lib.file(
        "T/W.toml",
        "command = [\"python3\", \"w.py\"]\nstop_signal = \"USR1\"\n[jobs.a]\n",
    );
    let mut driver = Driver::start(&lib, &gearmand, "T", &["--shutdown-timeout", "1"]);
    let worker = wait_for(Duration::from_secs(10), "a ready worker", || {
        driver
            .console("ps")
            .iter()
            .find(|l| l.contains("idle"))
            .and_then(|l| l.split_whitespace().next()?.parse::<u32>().ok())
    });
    let status = driver.terminate(Duration::from_secs(15));
    assert!(status.success(), "exit status {status}");
    let log = driver.log_text();
    assert!(
        log.contains(&format!(
            "({worker}) [T::W::a] did not exit in time; sending SIGUSR1"
        )) && log.contains("STDERR: got SIGUSR1")
            && log.contains(&format!("({worker}) [T::W::a] Exited with status 0")),
        "{log}"
    );
}
