//! The command line as users type it, with the real binary: flags before or
//! after `run` and `check` mean the same (the order-by-flag table is in
//! `src/config/cli.rs`'s unit tests).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn driver_cmd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gearman-driver"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

#[test]
fn check_reads_flags_on_either_side() {
    let before = driver_cmd(&["--namespaces", "GDExamples", "--lib", "workers", "check"]);
    let after = driver_cmd(&["check", "--namespaces", "GDExamples", "--lib", "workers"]);
    let mixed = driver_cmd(&["--lib", "workers", "check", "--namespaces", "GDExamples"]);
    for out in [&before, &after, &mixed] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let table = String::from_utf8_lossy(&before.stdout);
    assert!(
        table.contains("GDExamples::Convert::convert_to_jpeg"),
        "{table}"
    );
    assert_eq!(before.stdout, after.stdout);
    assert_eq!(before.stdout, mixed.stdout);
}

#[test]
fn namespaces_given_on_both_sides_are_all_selected() {
    let out = driver_cmd(&[
        "--namespaces",
        "GDExamples",
        "check",
        "--namespaces",
        "ExecExamples",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("GDExamples::Convert::convert_to_gif"),
        "{table}"
    );
    assert!(table.contains("ExecExamples::Text::upcase"), "{table}");
}

#[test]
fn bad_flags_exit_2_on_either_side() {
    for args in [
        &["--namespaces", "GDExamples", "--console-port", "x", "run"][..],
        &["run", "--namespaces", "GDExamples", "--console-port", "x"],
        &["--server", "a", "check", "--server", "b"],
    ] {
        let out = driver_cmd(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn run_with_flags_before_it_as_the_mission_spells_it() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("Order/w.py", &python_worker(""));
    lib.file(
        "Order/W.toml",
        "command = [\"python3\", \"w.py\"]\n[jobs.work]\nmin_processes = 1\n",
    );
    // The harness puts every flag first: `gearman-driver --lib .. --namespaces Order .. run`.
    let driver = Driver::start(&lib, &gearmand, "Order", &["run"]);
    driver.wait_processes("Order::W::work", 1, Duration::from_secs(10));
    let reply = submit(&gearmand, "Order::W::work", b"abc");
    assert_eq!(reply.result.as_deref(), Some(&b"cba"[..]));
}

#[test]
fn run_with_flags_on_both_sides() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("Order/w.py", &python_worker(""));
    lib.file(
        "Order/W.toml",
        "command = [\"python3\", \"w.py\"]\n[jobs.work]\nmin_processes = 1\n",
    );
    let other = Lib::new();
    other.file("Order/v.py", &python_worker(""));
    other.file(
        "Order/V.toml",
        "command = [\"python3\", \"v.py\"]\n[jobs.work]\nmin_processes = 1\n",
    );
    // `--lib <lib> ... run --lib <other>`: both lib dirs are read.
    let other_path = other.path().to_str().unwrap();
    let driver = Driver::start(&lib, &gearmand, "Order", &["run", "--lib", other_path]);
    for job in ["Order::W::work", "Order::V::work"] {
        driver.wait_processes(job, 1, Duration::from_secs(10));
        let reply = submit(&gearmand, job, b"ab");
        assert_eq!(reply.result.as_deref(), Some(&b"ba"[..]));
    }
}
