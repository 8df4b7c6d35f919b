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

#[test]
fn the_client_sends_the_token_and_talks_to_the_unix_socket() {
    use std::os::unix::fs::PermissionsExt;
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("T/w.py", &python_worker(""));
    lib.file(
        "T/W.toml",
        "command = [\"python3\", \"w.py\"]\n[jobs.a]\nmin_processes = 1\nmax_processes = 2\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let socket = dir.path().join("console.sock");
    let driver = Driver::start(
        &lib,
        &gearmand,
        "T",
        &[
            "--admin-token-file",
            token.to_str().unwrap(),
            "--console-socket",
            socket.to_str().unwrap(),
        ],
    );
    let tcp = format!("127.0.0.1:{}", driver.console_port);
    let run = |args: &[&str], env: Option<&str>| {
        let mut cmd = Command::new(client_binary());
        cmd.env_remove("GEARMAN_DRIVER_TOKEN")
            .args(["--timeout", "10"])
            .args(args);
        if let Some(value) = env {
            cmd.env("GEARMAN_DRIVER_TOKEN", value);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, out, _) = run(&["--server", &tcp, "status"], None);
    assert_eq!(
        (code, out.as_str()),
        (1, format!("{tcp}> ERR unauthorized\n").as_str())
    );

    let token = token.to_str().unwrap();
    let (code, out, err) = run(
        &[
            "--token-file",
            token,
            "--server",
            &tcp,
            "set_processes",
            "T::W::a",
            "1",
            "2",
        ],
        None,
    );
    assert_eq!(
        (code, out.as_str()),
        (0, format!("{tcp}> OK\n").as_str()),
        "{err}"
    );

    let (code, out, err) = run(&["--server", &tcp, "status"], Some("s3cret"));
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("{tcp}> T::W::a  1  2  ")), "{out}");

    let (code, _, err) = run(&["--server", &tcp, "status"], Some("wrong"));
    assert_eq!(code, 1);
    assert!(
        err.contains("the token was refused: ERR unauthorized"),
        "{err}"
    );

    let unix = format!("unix:{}", socket.display());
    for server in [unix.clone(), socket.display().to_string()] {
        let (code, out, err) = run(&["--server", &server, "status"], None);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.starts_with(&format!("{unix}> T::W::a  1  2  ")),
            "{out}"
        );
    }
    let (code, out, err) = run(
        &["--server", &unix, "set_max_processes", "T::W::a", "3"],
        None,
    );
    assert_eq!(
        (code, out.as_str()),
        (0, format!("{unix}> OK\n").as_str()),
        "{err}"
    );
    driver.wait_log(&format!("console {unix} (uid "), Duration::from_secs(5));
    driver.wait_log(
        ": set_max_processes T::W::a 3 -> OK",
        Duration::from_secs(5),
    );
}
