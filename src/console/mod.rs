//! The management console, server side: a line protocol on TCP compatible
//! with Gearman::Driver's (`telnet localhost 47300`).
//!
//! Each connection is its own task that reads bounded lines, parses them
//! ([`syntax`]) and writes answers with a timeout; the supervisor loop only
//! computes answers
//! ([`crate::command::execute`]), so a slow, hostile or silent client can never
//! stall supervision. Lines over 64 KiB, too many connections, or a client
//! that stops reading get an `ERR` or a closed connection, nothing more.

pub mod syntax;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::command::{Handle, Peer};

/// Longest accepted command line.
pub const MAX_LINE: usize = 64 * 1024;
/// Connections served at once; more are told so and closed.
pub const MAX_CONNECTIONS: usize = 256;
/// A client that does not take an answer within this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the console's listener (so that a taken port fails start-up).
pub async fn bind(addr: &str, port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind((addr, port)).await
}

/// Accepts connections until the supervisor goes away.
pub async fn serve(listener: TcpListener, requests: Handle) {
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
            if let Err(err) = handle(stream, peer, requests).await {
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

async fn handle(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    requests: Handle,
) -> std::io::Result<()> {
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
        let request = syntax::parse(text.trim_end_matches(['\n', '\r']));
        let Some(answer) = requests.ask(request, Peer::Console(peer.to_string())).await else {
            return Ok(());
        };
        let lines = syntax::render(&answer);
        write_timed(&mut write, &syntax::to_wire(lines.as_deref())).await?;
        if lines.is_none() {
            return Ok(());
        }
    }
}
