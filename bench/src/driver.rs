//! gearman-driver under test: a lib dir of worker files written for the
//! run, the daemon itself with its own console port and log file, its
//! console, and a tail of its log.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::procs::{free_port, quiet, wait_for, Guard};

/// Writes `body` to `dir/rel`, creating folders; `executable` sets mode 755.
pub fn write_file(dir: &Path, rel: &str, body: &str, executable: bool) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
    std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
    if executable {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(path)
}

/// A TOML string literal.
pub fn toml_str(s: &str) -> String {
    let escaped = s.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// A TOML array of strings.
pub fn toml_argv(argv: &[&str]) -> String {
    let items: Vec<String> = argv.iter().map(|a| toml_str(a)).collect();
    format!("[{}]", items.join(", "))
}

/// How to run the driver.
pub struct DriverOptions<'a> {
    pub binary: &'a Path,
    pub lib: &'a Path,
    pub namespace: &'a str,
    pub server: &'a str,
    pub interval: &'a str,
    pub max_idle_time: &'a str,
    /// Where its log goes.
    pub dir: &'a Path,
    /// More flags.
    pub extra: &'a [&'a str],
}

pub struct Driver {
    guard: Guard,
    pub console_port: u16,
    pub log: PathBuf,
}

/// How long the driver may take to stop its pools on SIGTERM before it is
/// killed (its processes then die with it, by PR_SET_PDEATHSIG).
const DRIVER_GRACE: Duration = Duration::from_secs(15);

impl Driver {
    /// Starts the driver and waits until its console answers.
    pub fn start(opts: &DriverOptions) -> Result<Driver> {
        let console_port = free_port()?;
        let log = opts.dir.join("driver.log");
        let mut cmd = Command::new(opts.binary);
        cmd.arg("--lib")
            .arg(opts.lib)
            .args(["--namespaces", opts.namespace, "--server", opts.server])
            .args(["--console-port", &console_port.to_string()])
            .args(["--interval", opts.interval])
            .args(["--max-idle-time", opts.max_idle_time])
            .args(["--shutdown-timeout", "5"])
            .arg("--logfile")
            .arg(&log)
            .args(opts.extra);
        let stderr = opts.dir.join("driver.stderr");
        quiet(&mut cmd, &stderr)?;
        let guard = Guard::spawn(&mut cmd, "gearman-driver", Some(DRIVER_GRACE))?;
        let mut driver = Driver {
            guard,
            console_port,
            log,
        };
        driver.wait_console(&stderr)?;
        Ok(driver)
    }

    fn wait_console(&mut self, stderr: &Path) -> Result<()> {
        let port = self.console_port;
        wait_for(
            Duration::from_secs(15),
            Duration::from_millis(10),
            "the driver's console",
            || {
                if let Some(e) = self.guard.exited() {
                    let why = std::fs::read_to_string(stderr).unwrap_or_default();
                    bail!("{e}: {}", why.trim());
                }
                Ok(TcpStream::connect(("127.0.0.1", port)).ok())
            },
        )?;
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// `127.0.0.1:PORT` of its HTTP listener, from the start-up log line.
    pub fn http_addr(&self) -> Result<String> {
        let log = std::fs::read_to_string(&self.log)?;
        let start = log
            .find("HTTP listener on http://")
            .context("the driver logged no HTTP listener")?;
        let rest = &log[start + "HTTP listener on http://".len()..];
        Ok(rest.split('/').next().unwrap_or_default().to_string())
    }

    /// One console command; the answer's lines, without the closing `.`.
    pub fn console(&self, command: &str) -> Result<Vec<String>> {
        console_command(self.console_port, command)
    }

    /// The processes column of `job`'s `status` line.
    pub fn processes(&self, job: &str) -> Result<usize> {
        let status = self.console("status")?;
        let line = status
            .iter()
            .find(|l| l.split_whitespace().next() == Some(job))
            .with_context(|| format!("{job} is not in the console's status"))?;
        Ok(line.split_whitespace().nth(3).unwrap_or("0").parse()?)
    }

    /// How many processes of the jobs whose names start with `job` `ps`
    /// shows idle (READY, no job).
    pub fn idle(&self, job: &str) -> Result<usize> {
        let rows = self.console("ps")?;
        Ok(rows
            .iter()
            .skip(1)
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.get(1).is_some_and(|j| j.starts_with(job)) && f.get(2) == Some(&"idle")
            })
            .count())
    }
}

/// Sends one command on a new connection (as the console client does) and
/// reads up to the `.` line.
pub fn console_command(port: u16, command: &str) -> Result<Vec<String>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("connecting to the console on port {port}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            bail!("the console closed the connection during {command:?}");
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line == "." {
            return Ok(lines);
        }
        lines.push(line.to_string());
    }
}

/// Reads a growing log file line by line from where it left off.
pub struct LogTail {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl LogTail {
    pub fn new(path: &Path) -> LogTail {
        LogTail {
            path: path.to_path_buf(),
            offset: 0,
            partial: String::new(),
        }
    }

    /// Complete lines written since the last call.
    pub fn new_lines(&mut self) -> Result<Vec<String>> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        self.offset += file.read_to_end(&mut bytes)? as u64;
        self.partial.push_str(&String::from_utf8_lossy(&bytes));
        let Some(cut) = self.partial.rfind('\n') else {
            return Ok(Vec::new());
        };
        let rest = self.partial.split_off(cut + 1);
        let done = std::mem::replace(&mut self.partial, rest);
        Ok(done.lines().map(str::to_string).collect())
    }
}
