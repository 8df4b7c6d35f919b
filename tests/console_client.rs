//! gearman-driver-console in one-shot mode against two real supervisors.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The client binary beside ours, built if this test runs on its own.
fn client_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_gearman-driver"))
        .with_file_name("gearman-driver-console");
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "gearman-driver-console"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    path
}

fn client(servers: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(client_binary())
        .args(["--server", servers, "--timeout", "10"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn one_shot_commands_reach_every_supervisor() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker(""));
    lib.file(
        "T/W.toml",
        "command = [\"python3\", \"w.py\"]\n[jobs.a]\nmin_processes = 1\nmax_processes = 2\n",
    );
    let one = Driver::start(&lib, &gearmand, "T", &["--interval", "0.5"]);
    let two = Driver::start(&lib, &gearmand, "T", &["--interval", "0.5"]);
    let (p1, p2) = (one.console_port, two.console_port);
    let servers = format!("127.0.0.1:{p1},127.0.0.1:{p2}");

    let (code, out) = client(&servers, &["set_processes", "T::W::a", "2", "3"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, format!("127.0.0.1:{p1}> OK\n127.0.0.1:{p2}> OK\n"));
    one.wait_processes("T::W::a", 2, Duration::from_secs(10));
    two.wait_processes("T::W::a", 2, Duration::from_secs(10));

    let (code, out) = client(&servers, &["status"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with(&format!("127.0.0.1:{p1}> T::W::a  2  3  2  ")),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&format!("127.0.0.1:{p2}> T::W::a  2  3  2  ")),
        "{out}"
    );

    let (code, out) = client(&servers, &["set_min_processes", "nope", "1"]);
    assert_eq!(code, 1, "an ERR answer exits 1");
    assert!(
        out.contains(&format!("127.0.0.1:{p1}> ERR invalid_job_name: nope")),
        "{out}"
    );

    let dead = free_port();
    let (code, out) = client(&format!("{servers} 127.0.0.1:{dead}"), &["status"]);
    assert_eq!(code, 2, "an unreachable server exits 2");
    assert_eq!(
        out.lines().count(),
        2,
        "the reachable ones still answered: {out}"
    );
}
