//! No thundering herd, and nothing lost for it: of a job's many idle
//! processes only a few sleep on gearmand, yet a burst reaches every idle
//! process at once.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PROCESSES: usize = 40;

/// A driver with one stdio job of exactly `PROCESSES` Python workers, each
/// job running `extra`; polling every 30 s so that only events act.
fn pool(extra: &str) -> (Gearmand, Lib, Driver) {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker(extra));
    lib.file(
        "T/W.toml",
        &format!(
            "command = [\"python3\", \"w.py\"]\n[jobs.work]\nmin_processes = {PROCESSES}\nmax_processes = {PROCESSES}\n"
        ),
    );
    let driver = Driver::start(
        &lib,
        &gearmand,
        "T",
        &["--interval", "30", "--max-idle-time", "600"],
    );
    wait_for(Duration::from_secs(60), "every process connected", || {
        let workers = gearmand
            .status()
            .iter()
            .find(|r| r.0 == "T::W::work")
            .map_or(0, |r| r.3);
        (workers as usize >= PROCESSES).then_some(())
    });
    (gearmand, lib, driver)
}

#[test]
fn a_burst_runs_on_every_idle_process_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let running = dir.path().join("running");
    let gate = dir.path().join("gate");
    std::fs::create_dir(&running).unwrap();
    // Each job says which process runs it, then holds that process until
    // the gate opens: only if every job is running at once can all of them
    // have said so before the gate opens.
    let extra = format!(
        "if data.startswith(b'burst'):\n\
         \x20   open(os.path.join({running:?}, '%d-%s' % (os.getpid(), data.decode())), 'w').close()\n\
         \x20   while not os.path.exists({gate:?}):\n\
         \x20       time.sleep(0.01)"
    );
    let (gearmand, _lib, driver) = pool(&extra);
    // A few jobs first, so that the pool has rested its extra watchers.
    for i in 0..3 {
        let reply = submit(&gearmand, "T::W::work", format!("warm{i}").as_bytes());
        assert!(reply.result.is_some());
    }
    submit_background_all(&gearmand, "T::W::work", &payloads("burst", PROCESSES));
    let pids = wait_for(
        Duration::from_secs(60),
        &format!("{PROCESSES} burst jobs running at once"),
        || {
            let pids = burst_pids(&running);
            (pids.len() == PROCESSES).then_some(pids)
        },
    );
    assert_eq!(
        pids.len(),
        PROCESSES,
        "each burst job on a process of its own"
    );
    std::fs::write(&gate, b"").unwrap();
    wait_for(Duration::from_secs(60), "the burst answered", || {
        let queued: u64 = gearmand
            .status()
            .iter()
            .filter(|r| r.0 == "T::W::work")
            .map(|r| r.1)
            .sum();
        (queued == 0).then_some(())
    });
    assert_eq!(driver.process_count("T::W::work"), PROCESSES);
}

/// The processes running a `burst<i>` job.
fn burst_pids(running: &Path) -> BTreeSet<u32> {
    std::fs::read_dir(running)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (pid, job) = name.split_once('-')?;
            job.starts_with("burst").then(|| pid.parse().ok())?
        })
        .collect()
}

#[test]
fn a_job_onto_many_idle_processes_wakes_only_a_few_of_them() {
    let (gearmand, _lib, _driver) = pool("");
    for i in 0..3 {
        submit(&gearmand, "T::W::work", format!("warm{i}").as_bytes());
    }
    // What gearmand sends on the workers' side while 10 jobs run one after
    // the other. With every idle connection asleep on gearmand, each job
    // would cost a NOOP to each of the 40 (12 bytes apiece) and a NO_JOB
    // to all but one: some 950 bytes. JOB_ASSIGN itself is under 100.
    let jobs = 10;
    let before = sent_to_workers(&gearmand);
    for i in 0..jobs {
        let reply = submit(&gearmand, "T::W::work", format!("job{i}").as_bytes());
        assert_eq!(reply.result, Some(format!("{i}boj").into_bytes().into()));
    }
    let per_job = (sent_to_workers(&gearmand) - before) / jobs;
    assert!(
        per_job < PROCESSES as u64 * 12,
        "gearmand sent the workers {per_job} bytes per job: every idle process was woken"
    );
}

/// Bytes gearmand has sent on its open connections (the clients' are
/// closed once each job is answered).
fn sent_to_workers(gearmand: &Gearmand) -> u64 {
    let port = gearmand.addr().rsplit(':').next().unwrap().to_string();
    let out = Command::new("ss")
        .args(["-tinH", "state", "established"])
        .arg(format!("( sport = :{port} )"))
        .output()
        .expect("ss (Debian package iproute2) runs");
    assert!(out.status.success(), "ss failed");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("bytes_sent:"))
        .map(|v| v.parse::<u64>().unwrap())
        .sum()
}
