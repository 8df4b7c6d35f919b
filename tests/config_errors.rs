//! Configuration errors: `check` and `run` refuse with exit 1 and name the
//! file and the key (and the line for TOML errors).

mod common;
use common::*;
use std::process::Command;

fn check(lib: &Lib, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gearman-driver"))
        .arg("check")
        .arg("--lib")
        .arg(lib.path())
        .args(["--namespaces", "T"])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_refused(lib: &Lib, file: &str, needles: &[&str]) {
    let (code, _, err) = check(lib, &[]);
    assert_eq!(code, 1, "check must fail: {err}");
    let path = lib.path().join(file);
    assert!(
        err.contains(path.to_str().unwrap()),
        "names the file {file}: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "mentions {n:?}: {err}");
    }
}

#[test]
fn a_good_config_prints_the_job_table() {
    let lib = Lib::new();
    lib.file(
        "T/W.toml",
        "command = \"/bin/cat\"\n[jobs.a]\nmin_processes = 0\nmax_processes = 5\n",
    );
    let (code, out, err) = check(&lib, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("JOB"), "{out}");
    assert!(
        out.contains("T::W::a") && out.contains("stdio") && out.contains("/bin/cat"),
        "{out}"
    );
}

#[test]
fn unknown_key() {
    let lib = Lib::new();
    lib.file(
        "T/W.toml",
        "command = \"/bin/cat\"\n[jobs.a]\nmax_proceses = 5\n",
    );
    assert_refused(&lib, "T/W.toml", &["max_proceses", ":3:"]);
}

#[test]
fn wrong_type() {
    let lib = Lib::new();
    lib.file(
        "T/W.toml",
        "command = \"/bin/cat\"\n[jobs.a]\nmin_processes = \"two\"\n",
    );
    assert_refused(&lib, "T/W.toml", &["jobs.a.min_processes", ":3:"]);
}

#[test]
fn unknown_stop_signal_names_file_key_line_and_the_accepted_names() {
    let lib = Lib::new();
    lib.file(
        "T/W.toml",
        "command = \"/bin/cat\"\nprotocol = \"gearman\"\nstop_signal = \"STOP\"\n[jobs.a]\n",
    );
    assert_refused(
        &lib,
        "T/W.toml",
        &[
            "key `stop_signal`",
            ":3:",
            "`STOP`",
            "TERM, INT, QUIT, HUP, USR1, USR2, WINCH, KILL",
        ],
    );
}

#[test]
fn stop_signal_is_refused_for_exec_slots() {
    let lib = Lib::new();
    lib.file(
        "T/W.toml",
        "command = \"/bin/cat\"\nprotocol = \"exec\"\nstop_signal = \"QUIT\"\n[jobs.a]\n",
    );
    assert_refused(
        &lib,
        "T/W.toml",
        &["key `stop_signal`", ":3:", "protocol = \"exec\""],
    );
}

#[test]
fn stop_signal_accepts_sig_names() {
    let lib = Lib::new();
    lib.file(
        "T/W.toml",
        "command = \"/bin/cat\"\nprotocol = \"gearman\"\nstop_signal = \"SIGQUIT\"\n[jobs.a]\n",
    );
    let (code, _, err) = check(&lib, &[]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn toml_syntax() {
    let lib = Lib::new();
    lib.file("T/W.toml", "command = \"/bin/cat\"\n[jobs.a\n");
    assert_refused(&lib, "T/W.toml", &[":2:"]);
}

#[test]
fn min_greater_than_max() {
    let lib = Lib::new();
    lib.file(
        "T/W.toml",
        "command = \"/bin/cat\"\n[jobs.a]\nmin_processes = 4\nmax_processes = 2\n",
    );
    assert_refused(
        &lib,
        "T/W.toml",
        &["jobs.a.min_processes", "greater than max_processes"],
    );
}

#[test]
fn missing_and_non_executable_commands() {
    let lib = Lib::new();
    lib.file("T/W.toml", "command = \"./missing-worker\"\n[jobs.a]\n");
    assert_refused(&lib, "T/W.toml", &["command", "does not exist"]);
    let lib = Lib::new();
    lib.file("T/plain.txt", "not a program");
    lib.file("T/W.toml", "command = \"./plain.txt\"\n[jobs.a]\n");
    assert_refused(&lib, "T/W.toml", &["command", "not executable"]);
    let lib = Lib::new();
    lib.file(
        "T/W.toml",
        "command = \"no-such-program-anywhere\"\n[jobs.a]\n",
    );
    assert_refused(&lib, "T/W.toml", &["command", "not found on PATH"]);
    let lib = Lib::new();
    lib.file(
        "T/W.toml",
        "command = [\"/bin/echo\", \"a\\u0000b\"]\nprotocol = \"exec\"\n[jobs.a]\n",
    );
    assert_refused(&lib, "T/W.toml", &["command", "word 2 holds a NUL byte"]);
}

#[test]
fn two_files_registering_one_function() {
    let lib = Lib::new();
    lib.file(
        "T/A.toml",
        "command = \"/bin/cat\"\nprefix = \"shared::\"\n[jobs.a]\n",
    );
    lib.file(
        "T/B.toml",
        "command = \"/bin/cat\"\nprefix = \"shared::\"\n[jobs.a]\n",
    );
    assert_refused(
        &lib,
        "T/B.toml",
        &["shared::a", "registered twice", "jobs.a"],
    );
}

#[test]
fn min_set_twice_in_a_process_group() {
    let lib = Lib::new();
    lib.file(
        "T/W.toml",
        "command = \"/bin/cat\"\n[jobs.a]\nprocess_group = \"g\"\nmax_processes = 2\n[jobs.b]\nprocess_group = \"g\"\nmax_processes = 3\n",
    );
    assert_refused(
        &lib,
        "T/W.toml",
        &["jobs.b.max_processes", "set twice in process group"],
    );
}

#[test]
fn bad_job_name_and_empty_namespace() {
    let lib = Lib::new();
    lib.file("T/W.toml", "command = \"/bin/cat\"\n[jobs.\"a b\"]\n");
    assert_refused(&lib, "T/W.toml", &["jobs.a b"]);
    let lib = Lib::new();
    lib.file("Other/W.toml", "command = \"/bin/cat\"\n[jobs.a]\n");
    let (code, _, err) = check(&lib, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("namespace `T` selects no worker file"),
        "{err}"
    );
}

#[test]
fn driver_config_errors_name_the_config_file() {
    let lib = Lib::new();
    lib.file("T/W.toml", "command = \"/bin/cat\"\n[jobs.a]\n");
    let cfg = lib.file("driver.toml", "interval = 1\nconsole_prot = 5\n");
    let (code, _, err) = check(&lib, &["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains(cfg.to_str().unwrap()) && err.contains("console_prot") && err.contains(":2:"),
        "{err}"
    );

    let cfg = lib.file(
        "rt.toml",
        "[job_runtime_attributes.\"T::W::a\"]\nmin_processes = 3\nmax_processes = 1\n",
    );
    let (code, _, err) = check(&lib, &["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains(cfg.to_str().unwrap()) && err.contains("job_runtime_attributes.\"T::W::a\""),
        "{err}"
    );
}

#[test]
fn worker_scheduling_names_the_policies_it_takes() {
    let lib = Lib::new();
    lib.file("T/W.toml", "command = \"/bin/cat\"\n[jobs.a]\n");
    let cfg = lib.file("sched.toml", "interval = 1\nworker_scheduling = \"fifo\"\n");
    let (code, _, err) = check(&lib, &["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1);
    for needle in [
        cfg.to_str().unwrap(),
        ":2:",
        "worker_scheduling",
        "`batch` or `normal`",
    ] {
        assert!(err.contains(needle), "mentions {needle:?}: {err}");
    }
    let cfg = lib.file("normal.toml", "worker_scheduling = \"normal\"\n");
    let (code, _, err) = check(&lib, &["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = check(&lib, &["--worker-scheduling", "idle"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("possible values: batch, normal"), "{err}");
}

#[test]
fn run_refuses_a_bad_config_too() {
    let lib = Lib::new();
    lib.file("T/W.toml", "command = \"/bin/cat\"\n[jobs.a]\nbogus = 1\n");
    let out = Command::new(env!("CARGO_BIN_EXE_gearman-driver"))
        .arg("--lib")
        .arg(lib.path())
        .args(["--namespaces", "T", "--console-port", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
}
