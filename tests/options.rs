//! worker_options, job_runtime_attributes and the process environment.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn options_env_and_runtime_attributes_reach_the_processes() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file(
        "T/w.py",
        &python_worker(
            "keys = ['GEARMAN_SERVERS','GEARMAN_DRIVER_JOB','GEARMAN_DRIVER_FUNCTIONS','GEARMAN_DRIVER_PREFIX','GEARMAN_DRIVER_MODULE','GEARMAN_DRIVER_OPTIONS','QUALITY']\nresult = '\\n'.join(k + '=' + os.environ.get(k, '') for k in keys).encode() + b'\\ncwd=' + os.getcwd().encode()",
        ),
    );
    lib.file(
        "T/Opt.toml",
        "command = [\"python3\", \"w.py\"]\nprefix = \"P::\"\nenv = { QUALITY = \"85\" }\n[jobs.env]\nmin_processes = 0\nmax_processes = 1\n",
    );
    let cfg = lib.file(
        "driver.toml",
        "[worker_options.GLOBAL]\ndsn = \"db\"\nquality = 1\n[worker_options.\"T::Opt\"]\nquality = 85\n[job_runtime_attributes.\"P::env\"]\nmin_processes = 2\nmax_processes = 4\n",
    );
    let driver = Driver::start(&lib, &gearmand, "T", &["--config", cfg.to_str().unwrap()]);
    driver.wait_processes("P::env", 2, Duration::from_secs(10));
    assert!(
        driver
            .status_line("P::env")
            .starts_with("P::env  2  4  2  "),
        "{}",
        driver.status_line("P::env")
    );

    let reply = submit(&gearmand, "P::env", b"");
    let text = String::from_utf8(reply.result.unwrap().to_vec()).unwrap();
    let expected = [
        format!("GEARMAN_SERVERS={}", gearmand.addr()),
        "GEARMAN_DRIVER_JOB=P::env".into(),
        "GEARMAN_DRIVER_FUNCTIONS=P::env".into(),
        "GEARMAN_DRIVER_PREFIX=P::".into(),
        "GEARMAN_DRIVER_MODULE=T::Opt".into(),
        r#"GEARMAN_DRIVER_OPTIONS={"dsn":"db","quality":85}"#.into(),
        "QUALITY=85".into(),
        format!(
            "cwd={}",
            lib.path().join("T").canonicalize().unwrap().display()
        ),
    ];
    for line in expected {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[test]
fn user_switches_worker_processes_when_root() {
    if !nix_is_root() {
        eprintln!("skipped: switching users needs root");
        return;
    }
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    // The worker runs as nobody: it must be able to enter and read its folder.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(lib.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    lib.file(
        "T/w.py",
        &python_worker("result = str(os.getuid()).encode()"),
    );
    lib.file(
        "T/W.toml",
        "command = [\"/usr/bin/python3\", \"w.py\"]\n[jobs.whoami]\n",
    );
    std::fs::set_permissions(lib.path().join("T"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let _driver = Driver::start(&lib, &gearmand, "T", &["--user", "nobody"]);
    let reply = submit(&gearmand, "T::W::whoami", b"");
    assert_eq!(reply.result.as_deref(), Some(&b"65534"[..]));
}

fn nix_is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}
