//! Real PHP (`GearmanWorker`, Debian's php-gearman) and Perl
//! (`Gearman::Worker`, libgearman-client-perl) workers under
//! `protocol = "gearman"`, from the examples in `workers/GearmanPHP` and
//! `workers/GearmanPerl`: started from zero twice with the right answers,
//! `ps` counting their jobs from their `lastrun` lines, and their
//! `stop_signal` honoured. QUIT, which the examples handle, lets the job in
//! flight finish on scale-down and on shutdown; TERM, which they do not
//! handle (as an unmodified worker handles none), cuts the job off and
//! gearmand keeps it for another worker.

mod common;
use common::*;
use std::time::Duration;

const JOB: &str = "T::Rev::reverse";

#[derive(Clone, Copy)]
enum Lang {
    Php,
    Perl,
}

/// The example worker of `lang` as module `T::Rev`, each job taking `delay` seconds.
fn example(lang: Lang, stop_signal: Option<&str>, delay: &str) -> Lib {
    let (dir, script, interpreter) = match lang {
        Lang::Php => ("GearmanPHP", "rev_worker.php", "php"),
        Lang::Perl => ("GearmanPerl", "rev_worker.pl", "perl"),
    };
    let source = std::fs::read_to_string(format!(
        "{}/workers/{dir}/{script}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let lib = Lib::new();
    lib.file(&format!("T/{script}"), &source);
    let stop_signal = stop_signal.map_or(String::new(), |s| format!("stop_signal = \"{s}\"\n"));
    lib.file(
        "T/Rev.toml",
        &format!(
            "command = [\"{interpreter}\", \"{script}\"]\nprotocol = \"gearman\"\n{stop_signal}\
             env = {{ DELAY = \"{delay}\" }}\n[jobs.reverse]\nmin_processes = 0\nmax_processes = 1\n"
        ),
    );
    lib
}

fn start(lib: &Lib, gearmand: &Gearmand) -> Driver {
    Driver::start(
        lib,
        gearmand,
        "T",
        &[
            "--interval",
            "1",
            "--max-idle-time",
            "1",
            "--shutdown-timeout",
            "20",
        ],
    )
}

/// The JOBS column of the job's only process in `ps`, with its PID.
fn ps_jobs(driver: &Driver) -> Option<(u32, u64)> {
    driver.console("ps").iter().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        (cols.get(1) == Some(&JOB)).then(|| (cols[0].parse().unwrap(), cols[3].parse().unwrap()))
    })
}

/// (total, running) of the job's function in gearmand.
fn queue(gearmand: &Gearmand) -> (u64, u64) {
    gearmand
        .status()
        .into_iter()
        .find(|r| r.0 == JOB)
        .map_or((0, 0), |r| (r.1, r.2))
}

fn reversed(s: &str) -> Vec<u8> {
    s.bytes().rev().collect()
}

fn scales_from_zero_twice_and_finishes_its_job_on_quit(lang: Lang) {
    let gearmand = Gearmand::start();
    let lib = example(lang, Some("QUIT"), "1.5");
    let mut driver = start(&lib, &gearmand);
    for round in 0..2 {
        driver.wait_processes(JOB, 0, Duration::from_secs(30));
        let payload = format!("round {round}");
        let reply = submit(&gearmand, JOB, payload.as_bytes());
        assert_eq!(reply.result.as_deref(), Some(&reversed(&payload)[..]));
        // Its `lastrun` line is its job count in `ps`.
        let (pid, _) = wait_for(Duration::from_secs(10), "ps to count the job", || {
            ps_jobs(&driver).filter(|(_, jobs)| *jobs == 1)
        });
        // The scale-down asks with QUIT; the worker exits by itself.
        let tag = format!("({pid}) [{JOB}]");
        driver.wait_log(
            &format!("{tag} Process stopped (idle"),
            Duration::from_secs(30),
        );
        driver.wait_log(
            &format!("{tag} Exited with status 0"),
            Duration::from_secs(30),
        );
    }
    let log = driver.log_text();
    assert!(log.contains("sent SIGQUIT (its stop_signal)"), "{log}");
    assert!(!log.contains("killed by signal"), "{log}");

    // Shutdown while a job runs: QUIT now, and the job still completes.
    driver.wait_processes(JOB, 0, Duration::from_secs(30));
    let addr = gearmand.addr();
    let client = std::thread::spawn(move || {
        block_on(Duration::from_secs(60), async move {
            let mut c = Client::connect(&addr).await.unwrap();
            c.submit(JOB, b"", &b"in flight"[..]).await.unwrap()
        })
    });
    wait_for(Duration::from_secs(20), "the job to run", || {
        (queue(&gearmand) == (1, 1)).then_some(())
    });
    let status = driver.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    let reply = client.join().unwrap();
    assert_eq!(reply.result.as_deref(), Some(&reversed("in flight")[..]));
    let log = driver.log_text();
    assert!(
        log.contains(&format!(
            "[{JOB}] 1 gearman-protocol process(es) get SIGQUIT (stop_signal) now"
        )),
        "{log}"
    );
    assert_eq!(queue(&gearmand), (0, 0));
}

#[test]
fn php_worker_scales_from_zero_twice_and_finishes_its_job_on_quit() {
    scales_from_zero_twice_and_finishes_its_job_on_quit(Lang::Php);
}

#[test]
fn perl_worker_scales_from_zero_twice_and_finishes_its_job_on_quit() {
    scales_from_zero_twice_and_finishes_its_job_on_quit(Lang::Perl);
}

fn sigterm_cuts_the_job_off_and_gearmand_keeps_it(lang: Lang) {
    let gearmand = Gearmand::start();
    // No stop_signal: TERM, which the example does not handle.
    let lib = example(lang, None, "5");
    let mut driver = start(&lib, &gearmand);
    submit_background(&gearmand, JOB, &[b"cut off"]);
    wait_for(Duration::from_secs(20), "the job to run", || {
        (queue(&gearmand) == (1, 1)).then_some(())
    });
    let status = driver.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    let log = driver.log_text();
    assert!(
        log.contains(&format!(
            "[{JOB}] 1 gearman-protocol process(es) get SIGTERM (stop_signal) now"
        )) && log.contains("Exited on its stop_signal (SIGTERM)"),
        "{log}"
    );
    // Back in the queue, one retry spent.
    wait_for(Duration::from_secs(10), "the job back in the queue", || {
        (queue(&gearmand) == (1, 0)).then_some(())
    });
    let retries: Vec<String> = gearmand
        .admin("show jobs")
        .iter()
        .map(|l| l.split('\t').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(retries, vec!["1"]);
}

#[test]
fn php_worker_on_sigterm_dies_at_once_and_its_job_goes_back_to_gearmand() {
    sigterm_cuts_the_job_off_and_gearmand_keeps_it(Lang::Php);
}

#[test]
fn perl_worker_on_sigterm_dies_at_once_and_its_job_goes_back_to_gearmand() {
    sigterm_cuts_the_job_off_and_gearmand_keeps_it(Lang::Perl);
}
