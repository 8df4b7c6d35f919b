//! The gearman and exec protocols under the same supervision as stdio.

mod common;
use common::*;
use std::time::{Duration, Instant};

/// A lib with the repository's gearman CLI wrapper and a worker file using it.
fn gearman_cli_lib(per_job: &str, min: u32, max: u32) -> Lib {
    let lib = Lib::new();
    let wrapper = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/workers/GearmanCLI/gearman-cli-worker.sh"
    ))
    .unwrap();
    lib.file("G/gearman-cli-worker.sh", &wrapper);
    lib.file(
        "G/Cli.toml",
        &format!("command = [\"./gearman-cli-worker.sh\", {per_job}]\nprotocol = \"gearman\"\n[jobs.rev]\nmin_processes = {min}\nmax_processes = {max}\n"),
    );
    lib
}

#[test]
fn gearman_protocol_workers_scale_with_the_queue_and_back() {
    let gearmand = Gearmand::start();
    // 0.3 s per job, so that a backlog lasts long enough to need every process.
    let lib = gearman_cli_lib("\"sh\", \"-c\", \"sleep 0.3; rev\"", 0, 3);
    let driver = Driver::start(
        &lib,
        &gearmand,
        "G",
        &["--interval", "0.3", "--max-idle-time", "1"],
    );
    let job = "G::Cli::rev";
    assert_eq!(driver.process_count(job), 0);
    submit_background_all(&gearmand, job, &payloads("line", 24));
    let peak = drain_watching_peak(&driver, &gearmand, job, 3, Duration::from_secs(30));
    assert_eq!(peak, 3, "scaled to max");
    driver.wait_processes(job, 0, Duration::from_secs(10));
    let reply = submit(&gearmand, job, b"hello");
    assert_eq!(
        reply
            .result
            .as_deref()
            .map(|r| String::from_utf8_lossy(r).trim().to_string()),
        Some("olleh".into())
    );
}

#[test]
fn gearman_protocol_stdout_reports_move_the_console_columns() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file(
        "G/reporter.sh",
        "#!/bin/sh\necho 'lastrun 1264793837'\necho 'lasterror 1264793832'\necho 'lasterror_msg some error'\necho 'just chatter'\nexec sleep 60\n",
    );
    lib.file(
        "G/R.toml",
        "command = \"./reporter.sh\"\nprotocol = \"gearman\"\n[jobs.r]\n",
    );
    let driver = Driver::start(&lib, &gearmand, "G", &[]);
    wait_for(Duration::from_secs(10), "lastrun to be reported", || {
        let line = driver.status_line("G::R::r");
        line.contains("2010-01-29T19:37:17").then_some(line)
    });
    let line = driver.status_line("G::R::r");
    assert_eq!(
        line,
        "G::R::r  1  1  1  2010-01-29T19:37:17  2010-01-29T19:37:12  ERROR: some error"
    );
    driver.wait_log("STDOUT: just chatter", Duration::from_secs(5));
}

#[test]
fn exec_jobs_round_trip_fail_with_stderr_and_time_out_without_losing_the_slot() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file(
        "E/Up.toml",
        "command = [\"tr\", \"a-z\", \"A-Z\"]\nprotocol = \"exec\"\n[jobs.upcase]\n",
    );
    lib.file(
        "E/fail.sh",
        "#!/bin/sh\necho 'first' >&2\necho 'the real reason' >&2\nexit 3\n",
    );
    lib.file(
        "E/Fail.toml",
        "command = \"./fail.sh\"\nprotocol = \"exec\"\n[jobs.fail]\n",
    );
    lib.file(
        "E/slow.sh",
        "#!/bin/sh\nif [ \"$(cat)\" = slow ]; then sleep 30; fi\necho fast\n",
    );
    lib.file(
        "E/Slow.toml",
        "command = \"./slow.sh\"\nprotocol = \"exec\"\n[jobs.slow]\ntimeout = 1\n",
    );
    let driver = Driver::start(&lib, &gearmand, "E", &["--interval", "0.5"]);

    let reply = submit(&gearmand, "E::Up::upcase", b"hello exec\n\0binary");
    assert_eq!(reply.result.as_deref(), Some(&b"HELLO EXEC\n\0BINARY"[..]));

    let reply = submit(&gearmand, "E::Fail::fail", b"x");
    assert_eq!(reply.result, None);
    let line = driver.status_line("E::Fail::fail");
    assert!(line.ends_with("ERROR: the real reason"), "{line}");

    let slot = wait_for(Duration::from_secs(10), "the slow slot", || {
        driver.pids("E::Slow::slow").first().copied()
    });
    let started = Instant::now();
    let reply = submit(&gearmand, "E::Slow::slow", b"slow");
    assert_eq!(reply.result, None, "the job over its timeout fails");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "failed after {:?}",
        started.elapsed()
    );
    assert!(driver
        .status_line("E::Slow::slow")
        .ends_with("ERROR: timeout after 1s"));
    assert_eq!(
        driver.pids("E::Slow::slow"),
        vec![slot],
        "the slot survived its command's timeout"
    );
    let reply = submit(&gearmand, "E::Slow::slow", b"quick");
    assert_eq!(reply.result.as_deref(), Some(&b"fast\n"[..]));
}

#[test]
fn killing_an_exec_slot_replaces_it() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("E/Up.toml", "command = [\"tr\", \"a-z\", \"A-Z\"]\nprotocol = \"exec\"\n[jobs.upcase]\nmin_processes = 2\nmax_processes = 2\n");
    let driver = Driver::start(&lib, &gearmand, "E", &["--interval", "0.5"]);
    driver.wait_processes("E::Up::upcase", 2, Duration::from_secs(10));
    let before = driver.pids("E::Up::upcase");
    assert_eq!(driver.console(&format!("kill {}", before[0])), vec!["OK"]);
    wait_for(Duration::from_secs(10), "a replacement slot", || {
        let now = driver.pids("E::Up::upcase");
        (now.len() == 2 && !now.contains(&before[0])).then_some(())
    });
    assert_eq!(
        submit(&gearmand, "E::Up::upcase", b"ok").result.as_deref(),
        Some(&b"OK"[..])
    );
}

/// Slots run through `/proc/self/exe`; `top`, `pgrep` and `killall` read
/// the kernel's name for a process, which would be `exe`.
#[test]
fn exec_slots_go_by_the_driver_binary_name() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("E/Up.toml", "command = [\"tr\", \"a-z\", \"A-Z\"]\nprotocol = \"exec\"\n[jobs.upcase]\nmin_processes = 2\nmax_processes = 2\n");
    let driver = Driver::start(&lib, &gearmand, "E", &[]);
    driver.wait_processes("E::Up::upcase", 2, Duration::from_secs(10));
    for pid in driver.pids("E::Up::upcase") {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(comm.trim_end(), "gearman-driver", "slot {pid}");
    }
}

/// A package upgrade replaces the binary on disk under a running driver. Its
/// exec slots are the binary itself: one started after that still has to be
/// this version, and has to start at all.
#[test]
fn an_exec_slot_started_after_the_binary_was_replaced_on_disk_runs() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("E/Up.toml", "command = [\"tr\", \"a-z\", \"A-Z\"]\nprotocol = \"exec\"\n[jobs.upcase]\nmin_processes = 1\nmax_processes = 1\n");
    let bin = tempfile::tempdir().unwrap();
    let exe = bin.path().join("gearman-driver");
    std::fs::copy(env!("CARGO_BIN_EXE_gearman-driver"), &exe).unwrap();
    let driver = Driver::start_program(&exe, &lib, &gearmand, "E", &["--interval", "0.5"]);
    driver.wait_processes("E::Up::upcase", 1, Duration::from_secs(10));
    let before = driver.pids("E::Up::upcase");

    // As dpkg does: the new file is renamed over the old one, whose inode
    // lives on only as the running image. This "new version" cannot serve.
    let replacement = bin.path().join("gearman-driver.dpkg-new");
    std::fs::write(&replacement, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(
        &replacement,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::rename(&replacement, &exe).unwrap();

    assert_eq!(driver.console(&format!("kill {}", before[0])), vec!["OK"]);
    let after = wait_for(Duration::from_secs(10), "a replacement slot", || {
        let now = driver.pids("E::Up::upcase");
        (now.len() == 1 && now[0] != before[0]).then(|| now[0])
    });
    assert_eq!(
        submit(&gearmand, "E::Up::upcase", b"still served")
            .result
            .as_deref(),
        Some(&b"STILL SERVED"[..])
    );
    let cmdline = std::fs::read(format!("/proc/{after}/cmdline")).unwrap();
    assert!(
        cmdline.starts_with(exe.to_string_lossy().as_bytes()),
        "ps shows the path the driver was started as: {:?}",
        String::from_utf8_lossy(&cmdline)
    );
    assert_eq!(
        driver.pids("E::Up::upcase"),
        vec![after],
        "the slot served without a restart"
    );
}

#[test]
fn killing_an_exec_slot_mid_job_ends_its_command_too() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    let pid_file = lib.path().join("command.pid");
    lib.file(
        "E/long.sh",
        &format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 30\n",
            pid_file.display()
        ),
    );
    lib.file(
        "E/Long.toml",
        "command = \"./long.sh\"\nprotocol = \"exec\"\n[jobs.long]\n",
    );
    let driver = Driver::start(&lib, &gearmand, "E", &["--interval", "0.5"]);
    let slot = wait_for(Duration::from_secs(10), "the slot", || {
        driver.pids("E::Long::long").first().copied()
    });
    submit_background(&gearmand, "E::Long::long", &[b"x"]);
    let command: u32 = wait_for(Duration::from_secs(10), "the command to start", || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    });
    assert!(pid_alive(command));
    assert_eq!(driver.console(&format!("kill {slot}")), vec!["OK"]);
    wait_for(
        Duration::from_secs(5),
        "the command to die with its slot",
        || (!pid_alive(command)).then_some(()),
    );
}
