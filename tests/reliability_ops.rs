//! Fault injection from the operator's side: reloads (SIGHUP and the
//! console's `reload`), a broken worker file on reload, and a console under
//! fuzzing while jobs run.

mod common;
#[path = "support/reliability.rs"]
mod support;

use common::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

const WORKER_EXTRA: &str = "if name == 'bg':
    with open('bg.log', 'ab') as f:
        f.write(data + b'\\n')
elif name == 'pid':
    result = str(os.getpid()).encode()";

/// Writes `T/<module>.toml` for the python worker with the given argv tail and jobs.
fn module(lib: &Lib, name: &str, version: &str, jobs: &str) {
    lib.file(
        &format!("T/{name}.toml"),
        &format!("command = [\"python3\", \"w.py\", \"{version}\"]\n{jobs}"),
    );
}

fn remove_module(lib: &Lib, name: &str) {
    std::fs::remove_file(lib.path().join(format!("T/{name}.toml"))).unwrap();
}

fn hup(driver: &Driver) {
    unsafe { libc::kill(driver.pid() as i32, libc::SIGHUP) };
}

fn job_names(driver: &Driver) -> Vec<String> {
    driver
        .console("status")
        .iter()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

fn max_of(driver: &Driver, job: &str) -> u32 {
    driver
        .status_line(job)
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap()
}

/// One live PID per job, once every listed job has exactly one.
fn single_pids(driver: &Driver, jobs: &[&str]) -> HashMap<String, u32> {
    wait_for(Duration::from_secs(10), "one process per job", || {
        let mut found = HashMap::new();
        for job in jobs {
            match driver.pids(job).as_slice() {
                [pid] if pid_alive(*pid) => found.insert(job.to_string(), *pid),
                _ => return None,
            };
        }
        Some(found)
    })
}

fn serves(gearmand: &Gearmand, job: &str) {
    let reply = submit(gearmand, job, b"");
    assert!(reply.result.is_some(), "{job} serves");
}

#[test]
fn sighup_and_console_reload_apply_exactly_what_changed() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker(WORKER_EXTRA));
    module(&lib, "Keep", "v1", "[jobs.keep]\nmax_processes = 2\n");
    module(&lib, "Cmd", "v1", "[jobs.cmd]\n");
    module(&lib, "Gone", "v1", "[jobs.gone]\n");
    let driver = Driver::start(&lib, &gearmand, "T", &["--interval", "0.5"]);
    let before = single_pids(&driver, &["T::Keep::keep", "T::Cmd::cmd", "T::Gone::gone"]);

    // SIGHUP: one of each kind of change.
    module(&lib, "Keep", "v1", "[jobs.keep]\nmax_processes = 3\n");
    module(&lib, "Cmd", "v2", "[jobs.cmd]\n");
    remove_module(&lib, "Gone");
    module(&lib, "New", "v1", "[jobs.new]\n");
    hup(&driver);
    driver.wait_log("reload: T::New::new: added", Duration::from_secs(5));
    let after = single_pids(&driver, &["T::Keep::keep", "T::Cmd::cmd", "T::New::new"]);
    assert_eq!(
        after["T::Keep::keep"], before["T::Keep::keep"],
        "a new max keeps the processes"
    );
    assert_eq!(max_of(&driver, "T::Keep::keep"), 3);
    assert_ne!(after["T::Cmd::cmd"], before["T::Cmd::cmd"]);
    wait_for(Duration::from_secs(10), "old processes to stop", || {
        (!pid_alive(before["T::Cmd::cmd"]) && !pid_alive(before["T::Gone::gone"])).then_some(())
    });
    wait_for(Duration::from_secs(5), "the removed job to go", || {
        (job_names(&driver) == ["T::Cmd::cmd", "T::Keep::keep", "T::New::new"]).then_some(())
    });
    let log = driver.log_text();
    for line in [
        "reload: T::Keep::keep: processes 1..2 -> 1..3",
        "reload: T::Cmd::cmd: changed; replacing its processes",
        "reload: T::Gone::gone: removed; stopping its processes",
        "reload: T::New::new: added",
    ] {
        assert!(log.contains(line), "{line}\n{log}");
    }
    for job in ["T::Keep::keep", "T::Cmd::cmd", "T::New::new"] {
        serves(&gearmand, job);
    }

    // The console's `reload` does the same and says what it did.
    module(&lib, "Keep", "v1", "[jobs.keep]\nmax_processes = 4\n");
    module(&lib, "Cmd", "v1", "[jobs.cmd]\n");
    remove_module(&lib, "New");
    module(&lib, "Gone", "v1", "[jobs.gone]\n");
    let mut answer = driver.console("reload");
    assert_eq!(answer.remove(0), "OK");
    answer.sort();
    assert_eq!(
        answer,
        [
            "T::Cmd::cmd: changed; replacing its processes",
            "T::Gone::gone: added",
            "T::Keep::keep: processes 1..3 -> 1..4",
            "T::New::new: removed; stopping its processes",
        ]
    );
    let again = single_pids(&driver, &["T::Keep::keep", "T::Cmd::cmd", "T::Gone::gone"]);
    assert_eq!(again["T::Keep::keep"], before["T::Keep::keep"]);
    assert_ne!(again["T::Cmd::cmd"], after["T::Cmd::cmd"]);
    wait_for(Duration::from_secs(10), "old processes to stop", || {
        (!pid_alive(after["T::Cmd::cmd"]) && !pid_alive(after["T::New::new"])).then_some(())
    });
    assert_eq!(max_of(&driver, "T::Keep::keep"), 4);
    for job in ["T::Keep::keep", "T::Cmd::cmd", "T::Gone::gone"] {
        serves(&gearmand, job);
    }
    assert_eq!(driver.console("reload"), ["OK", "nothing changed"]);
}

#[test]
fn a_reload_with_a_broken_worker_file_changes_nothing() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker(WORKER_EXTRA));
    module(&lib, "Keep", "v1", "[jobs.keep]\nmax_processes = 2\n");
    module(&lib, "Cmd", "v1", "[jobs.cmd]\n");
    let driver = Driver::start(&lib, &gearmand, "T", &["--interval", "0.5"]);
    let jobs = ["T::Cmd::cmd", "T::Keep::keep"];
    let pids = single_pids(&driver, &jobs);
    let status = driver.console("status");

    // A valid change next to a broken file must not be applied either.
    module(&lib, "Cmd", "v2", "[jobs.cmd]\n");
    let broken = lib.file(
        "T/Keep.toml",
        "command = [\"python3\", \"w.py\"]\n[jobs.keep]\nmax_processes = \"two\"\n",
    );
    hup(&driver);
    driver.wait_log(
        "reload: ERR the new configuration is invalid; nothing changed",
        Duration::from_secs(5),
    );
    let log = driver.log_text();
    let error = log
        .lines()
        .find(|l| l.contains("ERROR reload:") && l.contains(&broken.display().to_string()))
        .unwrap_or_else(|| panic!("the error names the file:\n{log}"));
    assert!(error.contains("max_processes"), "and the key: {error}");
    // Give a wrongly applied reload time to show.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(single_pids(&driver, &jobs), pids, "same processes");
    assert_eq!(driver.console("status"), status, "same status");

    let answer = driver.console("reload");
    assert!(answer[0].starts_with("ERR"), "{answer:?}");
    assert!(
        answer
            .iter()
            .any(|l| l.contains(&broken.display().to_string())),
        "{answer:?}"
    );
    assert_eq!(single_pids(&driver, &jobs), pids);

    module(&lib, "Keep", "v1", "[jobs.keep]\nmax_processes = 2\n");
    assert_eq!(
        driver.console("reload"),
        ["OK", "T::Cmd::cmd: changed; replacing its processes"]
    );
    for job in jobs {
        serves(&gearmand, job);
    }
}

/// One fuzzing connection of a random kind; every read is bounded.
fn fuzz_once(port: u16, noise: &mut Noise) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut sink = Vec::new();
    match noise.below(6) {
        0 => {
            let len = 1 + noise.below(4096) as usize;
            let _ = s.write_all(&noise.bytes(len));
            let _ = s.write_all(b"\n");
            let _ = s.read(&mut [0; 4096]);
        }
        1 => {
            // Over the 64 KiB line limit, with or without an end.
            let mut line =
                vec![b'A' + noise.below(26) as u8; 65 * 1024 + noise.below(200_000) as usize];
            if noise.below(2) == 0 {
                line.push(b'\n');
            }
            let _ = s.write_all(&line);
            let _ = s.shutdown(Shutdown::Write);
            let _ = s.read_to_end(&mut sink);
        }
        2 => {
            // Half-closed after a partial line: answered, then closed.
            let _ = s.write_all(b"sta");
            s.shutdown(Shutdown::Write).unwrap();
            let _ = s.read_to_end(&mut sink);
            assert!(
                sink.is_empty() || sink == b"ERR unknown_command: sta\r\n.\r\n",
                "{:?}",
                String::from_utf8_lossy(&sink)
            );
        }
        3 => {
            let lines: [&[u8]; 8] = [
                b"set_processes T::W::fg -1 x\n",
                b"set_max_processes T::W::fg 99999999999999999999999\n",
                b"show \xff\xfe\x00\n",
                b"kill 1 0 -1 4294967296\n",
                b"killall T::nope\n",
                b"\r\n",
                b"status\r\nstatus\nps\n",
                b"\x04\x1b[A\x7f\n",
            ];
            let _ = s.write_all(lines[noise.below(lines.len() as u64) as usize]);
            let _ = s.read(&mut [0; 4096]);
        }
        4 => {
            // Asks and hangs up without reading.
            let _ = s.write_all(b"status\nps\nhelp\n");
        }
        _ => {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

#[test]
fn console_fuzzing_while_jobs_run_hurts_nothing() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker(WORKER_EXTRA));
    lib.file(
        "T/W.toml",
        "command = [\"python3\", \"w.py\"]\n[jobs.fg]\nmin_processes = 2\nmax_processes = 2\n[jobs.bg]\n",
    );
    let driver = Driver::start(&lib, &gearmand, "T", &["--interval", "0.5"]);
    driver.wait_processes("T::W::fg", 2, Duration::from_secs(10));
    let fg_pids = driver.pids("T::W::fg");

    let stop = Arc::new(AtomicBool::new(false));
    let port = driver.console_port;
    let fuzzers: Vec<_> = (0..4u64)
        .map(|seed| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut noise = Noise::new(0x5eed_0000 + seed);
                let mut connections = 0;
                while !stop.load(Ordering::Relaxed) {
                    fuzz_once(port, &mut noise);
                    connections += 1;
                }
                connections
            })
        })
        .collect();
    let addr = gearmand.addr();
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let loaders: Vec<_> = (0..2)
        .map(|c| {
            let stop = stop.clone();
            let addr = addr.clone();
            let answered = answered.clone();
            std::thread::spawn(move || {
                block_on(Duration::from_secs(30), async move {
                    let mut client = Client::connect(&addr).await.unwrap();
                    let mut results = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let payload = format!("c{c}-{i}");
                        let reply = client
                            .submit("T::W::fg", b"", payload.clone().into_bytes())
                            .await
                            .unwrap();
                        results.push((payload.clone(), reply));
                        answered.fetch_add(1, Ordering::Relaxed);
                        client
                            .submit_background("T::W::bg", payload.into_bytes())
                            .await
                            .unwrap();
                        i += 1;
                    }
                    results
                })
            })
        })
        .collect();

    // Fuzz for 3 s and at least 20 jobs, however busy the machine is.
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    wait_for(
        Duration::from_secs(20),
        "20 jobs answered while fuzzing",
        || (answered.load(Ordering::Relaxed) >= 20).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    let connections: u32 = fuzzers.into_iter().map(|f| f.join().unwrap()).sum();
    let mut payloads = Vec::new();
    for loader in loaders {
        for (payload, reply) in loader.join().unwrap() {
            let expected: Vec<u8> = payload.bytes().rev().collect();
            assert_eq!(reply.result.as_deref(), Some(&expected[..]), "{payload}");
            payloads.push(payload);
        }
    }
    eprintln!(
        "{connections} fuzzing connections and {} jobs in {:?}",
        payloads.len(),
        started.elapsed()
    );
    assert!(connections >= 20, "the fuzzers ran ({connections})");
    assert!(payloads.len() >= 20, "jobs ran ({})", payloads.len());

    let bg_log = lib.path().join("T/bg.log");
    wait_for(Duration::from_secs(15), "every background job", || {
        let seen = file_lines(&bg_log);
        payloads.iter().all(|p| seen.contains(p)).then_some(())
    });
    let status = driver.console("status");
    assert_eq!(status.len(), 2, "{status:?}");
    assert!(status[0].starts_with("T::W::bg  "), "{status:?}");
    let fg: Vec<&str> = status[1].split_whitespace().collect();
    assert_eq!(&fg[..4], ["T::W::fg", "2", "2", "2"], "{status:?}");
    assert_ne!(fg[4], "1970-01-01T00:00:00", "lastrun is set: {status:?}");
    assert!(status[1].ends_with("  "), "no error: {status:?}");
    assert_eq!(driver.pids("T::W::fg"), fg_pids, "nothing was killed");
    assert!(driver.child.as_ref().is_some(), "the supervisor still runs");
}

#[test]
fn a_reload_keeps_limits_set_from_the_console() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker(""));
    lib.file("T/W.toml", "command = [\"python3\", \"w.py\"]\n[jobs.a]\nmin_processes = 1\nmax_processes = 2\n[jobs.b]\nmin_processes = 1\nmax_processes = 2\n");
    let driver = Driver::start(&lib, &gearmand, "T", &["--interval", "0.5"]);
    assert_eq!(driver.console("set_processes T::W::a 2 5"), ["OK"]);
    // b's limits change in the file; a's do not.
    lib.file("T/W.toml", "command = [\"python3\", \"w.py\"]\n[jobs.a]\nmin_processes = 1\nmax_processes = 2\n[jobs.b]\nmin_processes = 0\nmax_processes = 3\n");
    assert_eq!(
        driver.console("reload"),
        ["OK", "T::W::b: processes 1..2 -> 0..3"]
    );
    assert!(
        driver.status_line("T::W::a").starts_with("T::W::a  2  5  "),
        "{}",
        driver.status_line("T::W::a")
    );
    assert!(
        driver.status_line("T::W::b").starts_with("T::W::b  0  3  "),
        "{}",
        driver.status_line("T::W::b")
    );
}

#[test]
fn reading_the_files_for_a_reload_holds_up_no_job() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker(""));
    lib.file(
        "T/W.toml",
        "command = [\"python3\", \"w.py\"]\n[jobs.fg]\nmin_processes = 1\n",
    );
    let driver = Driver::start(&lib, &gearmand, "T", &["--interval", "0.5"]);
    driver.wait_processes("T::W::fg", 1, Duration::from_secs(10));
    assert_eq!(
        submit(&gearmand, "T::W::fg", b"warm").result.as_deref(),
        Some(&b"mraw"[..])
    );

    // Describing this class for the reload takes as long as it compiles.
    lib.file(
        "T/Slow.pm",
        "package T::Slow;\nBEGIN { sleep 4 }\nuse base qw(Gearman::Driver::Worker);\nuse Moose;\n\
         sub slow : Job : MinProcesses(0) { return 'x' }\n1;\n",
    );
    let port = driver.console_port;
    let reload = std::thread::spawn(move || console_command(port, "reload"));
    driver.wait_log(
        "reload: reading the config and worker files",
        Duration::from_secs(10),
    );
    let asked = Instant::now();
    let reply = submit(&gearmand, "T::W::fg", b"during");
    let took = asked.elapsed();
    assert_eq!(reply.result.as_deref(), Some(&b"gnirud"[..]));
    assert!(
        !reload.is_finished(),
        "the job was answered while the files were still being read ({took:?})"
    );
    assert!(took < Duration::from_secs(3), "the job waited {took:?}");
    let answer = reload.join().unwrap();
    assert_eq!(answer[0], "OK", "{answer:?}");
    assert!(
        answer.contains(&"T::Slow::slow: added".to_string()),
        "{answer:?}"
    );
}
