//! `sleep-worker`: a stdio worker for the benchmark's burst rows. Each job's
//! workload is a number of milliseconds; the worker sleeps that long and
//! answers `DONE` with the workload. Standard library only, so that a
//! thousand of them cost little memory.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::time::Duration;

fn main() -> std::io::Result<()> {
    let mut input = BufReader::new(std::io::stdin().lock());
    let mut out = BufWriter::new(std::io::stdout().lock());
    out.write_all(b"READY\n")?;
    out.flush()?;
    let mut header = String::new();
    loop {
        header.clear();
        if input.read_line(&mut header)? == 0 {
            return Ok(());
        }
        // JOB <name> <handle> <unique> <size>
        let size: usize = header
            .split_whitespace()
            .nth(4)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad header {header:?}")))?;
        let mut workload = vec![0; size];
        input.read_exact(&mut workload)?;
        let millis: u64 = std::str::from_utf8(&workload)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        std::thread::sleep(Duration::from_millis(millis));
        writeln!(out, "DONE {}", workload.len())?;
        out.write_all(&workload)?;
        out.flush()?;
    }
}
