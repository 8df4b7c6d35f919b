//! Reading what worker processes print besides the protocol: lines of at most
//! 64 KiB (longer ones are cut), logged with the process's `pid` and `job`.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

use crate::config::JobSpec;

const MAX_LINE: u64 = 64 * 1024;

/// Calls `each` with every line (without its line end) until EOF.
pub async fn for_each_line(output: impl AsyncRead + Unpin, mut each: impl FnMut(&str)) {
    let mut reader = BufReader::new(output);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => each(String::from_utf8_lossy(&line).trim_end_matches(['\n', '\r'])),
        }
    }
}

/// Logs a process's standard error line by line.
pub async fn log_stderr(pid: u32, job: Arc<JobSpec>, stderr: impl AsyncRead + Unpin) {
    let job = job.name.as_str();
    for_each_line(stderr, |line| tracing::info!(pid, job, "STDERR: {line}")).await;
}
