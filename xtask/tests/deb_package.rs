//! The Debian package, for real: build it with `cargo xtask deb`, install it
//! with `dpkg -i` on this machine, check what an operator gets (files,
//! conffiles, the system user, man pages, completions, `check` with the
//! packaged config, log rotation with the packaged logrotate config), then
//! remove and purge it, leaving the machine as it was.
//!
//! It needs root, dpkg, cargo-deb, man, logrotate and adduser, and a machine
//! where systemd is not running (the rotation check runs the driver by hand
//! and the logrotate config then HUPs it through its pid file). Where one is
//! missing it says so; with `CI=true` that is a failure, elsewhere the test
//! explains and passes. Test runs on one machine take turns (a lock file).
//!
//! The package is built with the `dev` profile, which reuses what
//! `cargo test` just compiled: the package's layout, metadata and scripts
//! are the release package's, its binaries are unoptimized.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PACKAGE: &str = "gearman-driver";
const USER: &str = "gearman-driver";
const RUN_DIR: &str = "/run/gearman-driver";
const LOG_DIR: &str = "/var/log/gearman-driver";

#[test]
fn package_builds_installs_works_and_purges_cleanly() {
    let missing = missing_requirements();
    if !missing.is_empty() {
        let why = format!("the package test cannot run here: {}", missing.join("; "));
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{why}");
        }
        eprintln!("SKIPPED (not CI): {why}");
        return;
    }
    let _turn = MachineLock::take();
    assert!(
        !installed(),
        "the {PACKAGE} package is installed on this machine already; the test installs and \
         purges its own, so remove that one first"
    );
    let mut machine = Restore::new();

    let out_dir = tempfile::tempdir().unwrap();
    let deb = build_package(out_dir.path());
    run(Command::new("dpkg").arg("-i").arg(&deb));
    machine.installed = true;

    check_files();
    check_conffiles();
    check_user();
    check_man_pages();
    check_bash_completion();
    check_packaged_config();
    check_perl_side();
    check_console_default();
    check_log_rotation(&mut machine);

    run(Command::new("dpkg").args(["--remove", PACKAGE]));
    assert!(!Path::new("/usr/bin/gearman-driver").exists());
    assert!(
        Path::new("/etc/gearman-driver/driver.toml").exists(),
        "conffiles stay until purge"
    );
    run(Command::new("dpkg").args(["--purge", PACKAGE]));
    machine.installed = false;
    assert!(!installed(), "purged");
    for gone in ["/etc/gearman-driver", LOG_DIR, "/var/lib/gearman-driver"] {
        assert!(!Path::new(gone).exists(), "{gone} is left after purge");
    }
    assert!(
        user_entry().is_some(),
        "the system user is kept on removal, as Debian packages do"
    );
    // `machine` now deletes the user the package created, and the run dir.
}

/// What the test needs, as sentences for the one running it.
fn missing_requirements() -> Vec<String> {
    let mut missing = Vec::new();
    if unsafe { libc::geteuid() } != 0 {
        missing.push("it must run as root (dpkg -i)".to_string());
    }
    for (tool, how) in [
        ("dpkg", "a Debian system"),
        ("man", "Debian package man-db"),
        ("logrotate", "Debian package logrotate"),
        ("adduser", "Debian package adduser"),
        ("runuser", "Debian package util-linux"),
        ("systemd-analyze", "Debian package systemd"),
    ] {
        if !on_path(tool) {
            missing.push(format!("`{tool}` is missing ({how})"));
        }
    }
    let cargo_deb = Command::new(cargo())
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !cargo_deb {
        missing.push("cargo-deb is missing (`cargo install cargo-deb --locked`)".to_string());
    }
    if Path::new("/run/systemd/system").exists() {
        missing.push(
            "systemd runs on this machine, and the packaged logrotate config would HUP the \
             service rather than the driver this test starts by hand"
                .to_string(),
        );
    }
    missing
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .any(|dir| dir.join(tool).is_file())
    })
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// `cargo xtask deb --profile dev --output DIR`; returns the .deb's path.
fn build_package(out_dir: &Path) -> PathBuf {
    let out = run(Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "deb",
            "--profile",
            "dev",
            "--fast",
            "--no-dbgsym",
            "--strip",
            "--output",
        ])
        .arg(out_dir));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let deb = stdout
        .lines()
        .rev()
        .find(|l| l.ends_with(".deb"))
        .unwrap_or_else(|| panic!("cargo deb named no package:\n{stdout}"));
    let deb = PathBuf::from(deb.trim());
    let deb = if deb.is_absolute() {
        deb
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(deb)
    };
    assert!(
        deb.starts_with(out_dir) || deb.exists(),
        "{}",
        deb.display()
    );
    deb
}

fn check_files() {
    for file in [
        "/usr/bin/gearman-driver",
        "/usr/bin/gearman-driver-console",
        "/etc/gearman-driver/driver.toml",
        "/etc/gearman-driver/workers/Example/Echo.toml",
        "/etc/logrotate.d/gearman-driver",
        "/usr/share/man/man1/gearman-driver.1.gz",
        "/usr/share/man/man1/gearman-driver-console.1.gz",
        "/usr/share/bash-completion/completions/gearman-driver",
        "/usr/share/bash-completion/completions/gearman-driver-console",
        "/usr/share/zsh/vendor-completions/_gearman-driver",
        "/usr/share/fish/vendor_completions.d/gearman-driver.fish",
    ] {
        assert!(Path::new(file).is_file(), "{file} is not installed");
    }
    let version = run(Command::new("/usr/bin/gearman-driver").arg("--version"));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("gearman-driver {}", env!("CARGO_PKG_VERSION"))
    );
    run(Command::new("/usr/bin/gearman-driver-console").arg("--version"));

    let listed = String::from_utf8_lossy(&run(Command::new("dpkg").args(["-L", PACKAGE])).stdout)
        .into_owned();
    let unit_path = listed
        .lines()
        .find(|l| l.ends_with("/systemd/system/gearman-driver.service"))
        .unwrap_or_else(|| panic!("no systemd unit in\n{listed}"));
    let unit = fs::read_to_string(unit_path).unwrap();
    for line in [
        "Type=notify",
        "ExecStart=/usr/bin/gearman-driver --config /etc/gearman-driver/driver.toml run",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=gearman-driver",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "unit lacks {line}:\n{unit}"
        );
    }
    assert!(
        unit.lines().any(|l| l.starts_with("WatchdogSec=")),
        "{unit}"
    );
    // systemd's own reading of the unit: directives, the binary, the man page.
    run(Command::new("systemd-analyze").args(["verify", unit_path]));
}

fn check_conffiles() {
    let out = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", PACKAGE]));
    let conffiles = String::from_utf8_lossy(&out.stdout);
    for file in [
        "/etc/gearman-driver/driver.toml",
        "/etc/gearman-driver/workers/Example/Echo.toml",
        "/etc/logrotate.d/gearman-driver",
    ] {
        assert!(
            conffiles
                .lines()
                .any(|l| l.trim().starts_with(&format!("{file} "))),
            "{file} is no conffile:\n{conffiles}"
        );
    }
}

fn user_entry() -> Option<String> {
    let out = Command::new("getent")
        .args(["passwd", USER])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn check_user() {
    let entry = user_entry().expect("the package creates the user gearman-driver");
    // name:x:uid:gid:gecos:home:shell
    let fields: Vec<&str> = entry.split(':').collect();
    let uid: u32 = fields[2].parse().unwrap();
    assert!(uid < 1000, "a system user: {entry}");
    assert_eq!(fields[5], "/var/lib/gearman-driver", "{entry}");
    assert!(fields[6].ends_with("nologin"), "{entry}");
    let group = run(Command::new("getent").args(["group", USER]));
    assert!(!group.stdout.is_empty());
    for dir in [LOG_DIR, "/var/lib/gearman-driver"] {
        let owner = run(Command::new("stat").args(["-c", "%U:%G", dir]));
        assert_eq!(
            String::from_utf8_lossy(&owner.stdout).trim(),
            "gearman-driver:gearman-driver",
            "{dir}"
        );
    }
}

fn check_man_pages() {
    let man = |page: &str| {
        let out = run(Command::new("man")
            .args(["-P", "cat", page])
            .env("MANWIDTH", "100"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let driver = man("gearman-driver");
    for text in [
        "--namespaces",
        "--log-format",
        "SIGNALS",
        "HUP",
        "gearman-driver-check(1)",
    ] {
        assert!(
            driver.contains(text),
            "man gearman-driver lacks {text}:\n{driver}"
        );
    }
    assert!(man("gearman-driver-run").contains("--namespaces"));
    assert!(man("gearman-driver-console").contains("--server"));
}

/// Asks the installed bash completion what follows `gearman-driver --names`
/// and `gearman-driver --namespaces X run --log-f`.
fn check_bash_completion() {
    let script = r#"
        source /usr/share/bash-completion/completions/gearman-driver
        fn=$(complete -p gearman-driver | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
        COMP_WORDS=(gearman-driver --names); COMP_CWORD=1
        "$fn" gearman-driver --names gearman-driver
        echo "1: ${COMPREPLY[*]}"
        COMP_WORDS=(gearman-driver --namespaces X run --log-f); COMP_CWORD=4
        "$fn" gearman-driver --log-f run
        echo "2: ${COMPREPLY[*]}"
    "#;
    let out = run(Command::new("bash").args(["-c", script]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1: --namespaces\n"), "{text}");
    assert!(text.contains("2: --log-format\n"), "{text}");
}

fn check_packaged_config() {
    for user in [None, Some(USER)] {
        let mut cmd = match user {
            None => Command::new("/usr/bin/gearman-driver"),
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", "/usr/bin/gearman-driver"]);
                c
            }
        };
        let out = run(cmd.args(["check", "--config", "/etc/gearman-driver/driver.toml"]));
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(table.contains("Example::Echo::echo"), "{user:?}: {table}");
    }
}

/// The installed driver finds the installed Perl side by itself: a Perl
/// worker class is listed by `check` without `--perl-lib`.
fn check_perl_side() {
    assert!(Path::new("/usr/share/gearman-driver/perl/gearman-driver-perl").exists());
    let lib = tempfile::tempdir().unwrap();
    fs::create_dir_all(lib.path().join("Pkg")).unwrap();
    fs::write(
        lib.path().join("Pkg/Hello.pm"),
        "package Pkg::Hello;\nuse base qw(Gearman::Driver::Worker);\nuse Moose;\n\
         sub hello : Job : MinProcesses(0) { my ($self, $job, $workload) = @_; return \"hi\" }\n1;\n",
    )
    .unwrap();
    let out = run(Command::new("/usr/bin/gearman-driver")
        .args([
            "check",
            "--namespaces",
            "Pkg",
            "--console-port",
            "0",
            "--lib",
        ])
        .arg(lib.path()));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("Pkg::Hello::hello") && table.contains("/usr/share/gearman-driver/perl/"),
        "{table}"
    );
}

/// `gearman-driver-console` without flags talks to the packaged config's console.
fn check_console_default() {
    let text = fs::read_to_string("/etc/gearman-driver/driver.toml").unwrap();
    let config: toml::Table = text.parse().unwrap();
    let port = config
        .get("console_port")
        .map(|v| v.as_integer().unwrap() as u16)
        .unwrap_or(gearman_driver::config::DEFAULT_CONSOLE_PORT);
    assert_eq!(port, gearman_driver_console::address::DEFAULT_PORT);
    let bind = config
        .get("console_bind")
        .map(|v| v.as_str().unwrap().to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    assert!(
        bind.parse::<std::net::IpAddr>().unwrap().is_loopback(),
        "the client's default server is localhost: {bind}"
    );
}

/// The installed driver, run by hand with the packaged config (no console,
/// a pid file), and the packaged logrotate config run by logrotate: the old
/// file keeps what was written before, a new driver.log what came after.
fn check_log_rotation(machine: &mut Restore) {
    if !Path::new(RUN_DIR).exists() {
        run(Command::new("install").args(["-d", "-o", USER, "-g", USER, RUN_DIR]));
        machine.made_run_dir = true;
    }
    let pid_file = format!("{RUN_DIR}/gearman-driver.pid");
    let log = Path::new(LOG_DIR).join("driver.log");
    let rotated = Path::new(LOG_DIR).join("driver.log.1");
    let child = Command::new("runuser")
        .args(["-u", USER, "--", "/usr/bin/gearman-driver"])
        .args([
            "--config",
            "/etc/gearman-driver/driver.toml",
            "--console-port",
            "0",
        ])
        .args(["--pid-file", &pid_file, "run"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    machine.driver = Some(child);
    wait_for("the driver's start-up line", || {
        (read(&log).contains(" started: ") && Path::new(&pid_file).exists()).then_some(())
    });

    let state = tempfile::tempdir().unwrap();
    run(Command::new("logrotate")
        .args(["--force", "--state"])
        .arg(state.path().join("status"))
        .arg("/etc/logrotate.d/gearman-driver"));
    wait_for("a new driver.log after the HUP", || {
        read(&log).contains("reload: nothing changed").then_some(())
    });
    let old = read(&rotated);
    assert!(old.contains(" started: "), "{old}");
    assert!(
        !old.contains("reload:"),
        "written to the rotated file:\n{old}"
    );

    let pid: i32 = read(Path::new(&pid_file)).trim().parse().unwrap();
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut child = machine.driver.take().unwrap();
    let status = wait_for("the driver to exit", || child.try_wait().unwrap());
    if !status.success() {
        let mut err = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .lines()
            .map_while(Result::ok)
            .for_each(|l| err.push_str(&l));
        panic!("driver exited with {status}: {err}\n{}", read(&log));
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", PACKAGE])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("installed"))
}

/// Runs a command, which must succeed; returns its output.
fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Puts the machine back as it was, also when a check fails halfway: stops
/// the driver, purges the package, and deletes the user and the run dir
/// when this test brought them.
struct Restore {
    installed: bool,
    user_was_there: bool,
    made_run_dir: bool,
    driver: Option<Child>,
}

impl Restore {
    fn new() -> Restore {
        Restore {
            installed: false,
            user_was_there: user_entry().is_some(),
            made_run_dir: false,
            driver: None,
        }
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(mut child) = self.driver.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.installed || installed() {
            let _ = Command::new("dpkg").args(["--purge", PACKAGE]).output();
        }
        if !self.user_was_there && user_entry().is_some() {
            let _ = Command::new("userdel").arg(USER).output();
            let _ = Command::new("groupdel").arg(USER).output();
        }
        if self.made_run_dir {
            let _ = fs::remove_dir_all(RUN_DIR);
        }
    }
}

/// One package test at a time on this machine: dpkg's own lock fails
/// rather than waits, and a purge would pull the package from under another run.
/// The lock is held while the file stays open.
struct MachineLock {
    _file: fs::File,
}

impl MachineLock {
    fn take() -> MachineLock {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/gearman-driver-package-test.lock")
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return MachineLock { _file: file };
            }
            assert!(
                Instant::now() < deadline,
                "another package test held the machine for 10 minutes"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
