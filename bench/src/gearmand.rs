//! The benchmark's own gearmand on a free loopback port, and its admin
//! `status` over one persistent `TCP_NODELAY` connection.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::procs::{free_port, quiet, wait_for, Guard};

pub struct Gearmand {
    pub port: u16,
    _guard: Guard,
}

impl Gearmand {
    /// Starts gearmand with two I/O threads; its log goes to `dir`.
    pub fn start(binary: &Path, dir: &Path, fd_limit: u64) -> Result<Gearmand> {
        let port = free_port()?;
        let mut cmd = Command::new(binary);
        cmd.args([
            "--listen=127.0.0.1",
            &format!("--port={port}"),
            "--threads=2",
            &format!("--file-descriptors={fd_limit}"),
            "--verbose=ERROR",
        ])
        .arg(format!("--log-file={}", dir.join("gearmand.log").display()));
        quiet(&mut cmd, &dir.join("gearmand.stderr"))?;
        let mut guard = Guard::spawn(&mut cmd, "gearmand", None)?;
        wait_for(
            Duration::from_secs(10),
            Duration::from_millis(10),
            "gearmand to listen",
            || {
                if let Some(e) = guard.exited() {
                    bail!("{e}; see {}", dir.join("gearmand.log").display());
                }
                Ok(TcpStream::connect(("127.0.0.1", port)).ok())
            },
        )?;
        Ok(Gearmand {
            port,
            _guard: guard,
        })
    }

    pub fn pid(&self) -> u32 {
        self._guard.pid()
    }

    /// What gearmand sent and received on its connections so far, summed
    /// over the established ones (from `ss -ti`): the per-job cost of the
    /// protocol, whatever the timing.
    pub fn traffic(&self) -> Result<Traffic> {
        let filter = format!("( sport = :{} )", self.port);
        let out = Command::new("ss")
            .args(["-tinH", "state", "established", &filter])
            .output()
            .context("running ss (Debian package iproute2)")?;
        if !out.status.success() {
            bail!("ss failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut t = Traffic::default();
        for word in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let Some((key, value)) = word.split_once(':') else {
                continue;
            };
            let slot = match key {
                "data_segs_in" => &mut t.segs_in,
                "data_segs_out" => &mut t.segs_out,
                "bytes_received" => &mut t.bytes_in,
                "bytes_sent" => &mut t.bytes_out,
                _ => continue,
            };
            *slot += value.parse::<u64>().unwrap_or(0);
        }
        Ok(t)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn admin(&self) -> Result<Admin> {
        Admin::connect(&self.addr())
    }
}

/// gearmand's path: /usr/sbin/gearmand (Debian's gearman-job-server) or
/// whatever PATH finds.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    for p in ["/usr/sbin/gearmand", "/usr/local/sbin/gearmand"] {
        if Path::new(p).exists() {
            return Ok(PathBuf::from(p));
        }
    }
    let out = Command::new("sh")
        .args(["-c", "command -v gearmand"])
        .output()?;
    let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if found.is_empty() {
        bail!("gearmand not found: install Debian's gearman-job-server or pass --gearmand PATH");
    }
    Ok(PathBuf::from(found))
}

/// One row of admin `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Row {
    pub total: u64,
    pub running: u64,
    pub workers: u64,
}

/// A persistent admin connection.
pub struct Admin {
    reader: BufReader<TcpStream>,
}

impl Admin {
    pub fn connect(addr: &str) -> Result<Admin> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(Admin {
            reader: BufReader::new(stream),
        })
    }

    /// The `status` row of `function` (all zero if gearmand has none).
    pub fn row(&mut self, function: &str) -> Result<Row> {
        self.reader.get_mut().write_all(b"status\n")?;
        let mut found = Row::default();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                bail!("gearmand closed the admin connection");
            }
            let line = line.trim_end();
            if line == "." {
                return Ok(found);
            }
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() >= 4 && f[0] == function {
                found = Row {
                    total: f[1].parse()?,
                    running: f[2].parse()?,
                    workers: f[3].parse()?,
                };
            }
        }
    }

    /// Waits until at least `n` workers registered `function`.
    pub fn wait_workers(&mut self, function: &str, n: u64, limit: Duration) -> Result<()> {
        wait_for(
            limit,
            Duration::from_millis(20),
            &format!("{n} workers registered for {function}"),
            || Ok((self.row(function)?.workers >= n).then_some(())),
        )
    }
}

/// Data segments and bytes on gearmand's side of its connections.
#[derive(Debug, Default, Clone, Copy)]
pub struct Traffic {
    pub segs_in: u64,
    pub segs_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Traffic {
    /// Segments (in + out) and bytes (in + out) per job between two readings.
    pub fn per_job(before: Traffic, after: Traffic, jobs: usize) -> (f64, f64) {
        let segs =
            (after.segs_in + after.segs_out).saturating_sub(before.segs_in + before.segs_out);
        let bytes =
            (after.bytes_in + after.bytes_out).saturating_sub(before.bytes_in + before.bytes_out);
        (segs as f64 / jobs as f64, bytes as f64 / jobs as f64)
    }
}

/// `gearmand --version`'s first line.
pub fn version(binary: &Path) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .split(" - ")
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}
