//! The management console, server side: a line protocol on TCP compatible
//! with Gearman::Driver's (`telnet localhost 47300`).
//!
//! Each connection is its own task that reads bounded lines and writes
//! answers with a timeout; the supervisor loop only computes answers
//! ([`commands::execute`]), so a slow, hostile or silent client can never
//! stall supervision. Lines over 64 KiB, too many connections, or a client
//! that stops reading get an `ERR` or a closed connection, nothing more.

pub mod commands;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// Longest accepted command line.
pub const MAX_LINE: usize = 64 * 1024;
/// Connections served at once; more are told so and closed.
pub const MAX_CONNECTIONS: usize = 256;
/// A client that does not take an answer within this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// One console line for the supervisor to answer.
pub struct ConsoleRequest {
    pub line: String,
    pub reply: oneshot::Sender<Reply>,
}

/// The answer to one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub lines: Vec<String>,
    /// `quit`: close without the `.` line.
    pub close: bool,
}

impl Reply {
    pub fn lines(lines: Vec<String>) -> Reply {
        Reply {
            lines,
            close: false,
        }
    }

    pub fn error(message: impl Into<String>) -> Reply {
        Reply {
            lines: vec![message.into()],
            close: false,
        }
    }

    /// The bytes on the wire: CRLF line ends and the `.` terminator.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for line in &self.lines {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !self.close {
            out.extend_from_slice(b".\r\n");
        }
        out
    }
}

/// A job's `status` line, before formatting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub name: String,
    pub min: u32,
    pub max: u32,
    pub processes: usize,
    pub lastrun: i64,
    pub lasterror: i64,
    pub lasterror_msg: String,
}

/// A process's `ps` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcRow {
    pub pid: u32,
    pub job: String,
    pub state: String,
    pub jobs_done: u64,
    pub uptime: Duration,
    pub rss_kib: Option<u64>,
}

/// What the console may see and change; the supervisor implements it.
pub trait Pools {
    /// Every job, sorted by name.
    fn job_rows(&mut self) -> Vec<JobRow>;
    fn job_pids(&self, name: &str) -> Option<Vec<u32>>;
    fn limits(&self, name: &str) -> Option<(u32, u32)>;
    fn set_limits(&mut self, name: &str, min: Option<u32>, max: Option<u32>);
    fn owns(&self, pid: u32) -> bool;
    /// SIGTERM to those of `pids` that are ours.
    fn kill(&mut self, pids: &[u32]);
    fn proc_rows(&self) -> Vec<ProcRow>;
    fn shutdown(&mut self);
    fn reload(&mut self) -> Vec<String>;
}

/// Binds the console's listener (so that a taken port fails start-up).
pub async fn bind(addr: &str, port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind((addr, port)).await
}

/// Accepts connections until the supervisor goes away.
pub async fn serve(listener: TcpListener, requests: mpsc::Sender<ConsoleRequest>) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!("console accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if requests.is_closed() {
            return;
        }
        let _ = stream.set_nodelay(true);
        if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::SeqCst);
            tokio::spawn(refuse(stream));
            continue;
        }
        let open = open.clone();
        let requests = requests.clone();
        tokio::spawn(async move {
            if let Err(err) = handle(stream, requests).await {
                tracing::debug!("console client {peer}: {err}");
            }
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(
        WRITE_TIMEOUT,
        stream.write_all(b"ERR too_many_connections\r\n.\r\n"),
    )
    .await;
}

async fn write_timed(
    stream: &mut tokio::net::tcp::OwnedWriteHalf,
    bytes: &[u8],
) -> std::io::Result<()> {
    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(bytes)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "client does not read its answers",
        )),
    }
}

async fn handle(stream: TcpStream, requests: mpsc::Sender<ConsoleRequest>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if line.len() > MAX_LINE {
            write_timed(
                &mut write,
                b"ERR line_too_long: lines are limited to 65536 bytes\r\n.\r\n",
            )
            .await?;
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']).to_string();
        let (reply_tx, reply_rx) = oneshot::channel();
        if requests
            .send(ConsoleRequest {
                line: text,
                reply: reply_tx,
            })
            .await
            .is_err()
        {
            return Ok(());
        }
        let Ok(reply) = reply_rx.await else {
            return Ok(());
        };
        write_timed(&mut write, &reply.to_wire()).await?;
        if reply.close {
            return Ok(());
        }
    }
}
