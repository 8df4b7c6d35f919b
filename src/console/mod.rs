//! The management console, server side: a line protocol compatible with
//! Gearman::Driver's (`telnet localhost 47300`), on TCP and, optionally, on
//! a Unix socket.
//!
//! Each connection is its own task that reads bounded lines, passes them
//! through its [`gate`] (the `auth` rule), parses them ([`syntax`]) and
//! writes answers with a timeout; the supervisor loop only computes answers
//! ([`crate::command::execute`]), so a slow, hostile or silent client, or
//! one guessing tokens, can never stall supervision. Lines over 64 KiB, too
//! many connections, or a client that stops reading get an `ERR` or a
//! closed connection, nothing more. TCP and the Unix socket share the
//! connection code; they differ in the gate (the socket's file permissions
//! stand in for the token) and in how the peer is named in the log.
//!
//! - [`gate`]: the `auth` rule of one connection.
//! - [`syntax`]: lines to requests, answers to lines.
//! - [`unix_socket`]: the socket file (mode, stale files, removal).

pub mod gate;
pub mod syntax;
pub mod unix_socket;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use crate::access::AdminToken;
use crate::command::{self, Answer, ErrorKind, Handle, Peer};
use crate::config::Settings;
use gate::{Gate, Verdict};

/// Longest accepted command line.
pub const MAX_LINE: usize = 64 * 1024;
/// A client that does not take an answer within this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the console's TCP listener (so that a taken port fails start-up).
pub async fn bind(addr: &str, port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind((addr, port)).await
}

/// The console's doors for the start-up log line, e.g.
/// `127.0.0.1:47300 (auth required), unix:/run/gearman-driver/console.sock`.
pub fn describe(settings: &Settings) -> String {
    let mut doors = Vec::new();
    if settings.console_port != 0 {
        let auth = if settings.admin_token.is_some() {
            " (auth required)"
        } else {
            ""
        };
        doors.push(format!(
            "{}:{}{auth}",
            settings.console_bind, settings.console_port
        ));
    }
    if let Some(path) = &settings.console_socket {
        doors.push(format!("unix:{}", path.display()));
    }
    if doors.is_empty() {
        "disabled".to_string()
    } else {
        doors.join(", ")
    }
}

/// Binds every console listener the settings ask for: the TCP port and the
/// Unix socket. The socket file is removed when the returned guard drops.
///
/// Listeners handed over by an upgrade (`inherited`) are served as they
/// are: connections that queued in their backlog meanwhile are accepted.
pub async fn bind_all(
    settings: &Settings,
    inherited: &mut crate::upgrade::inherit::Listeners,
) -> Result<(Listeners, Option<unix_socket::SocketFile>), String> {
    let tcp = match (settings.console_port, inherited.console_tcp.take()) {
        (0, _) => None,
        (_, Some(socket)) => Some(
            socket
                .set_nonblocking(true)
                .and_then(|()| TcpListener::from_std(socket))
                .map_err(inherited_failed)?,
        ),
        (port, None) => Some(bind_tcp(&settings.console_bind, port).await?),
    };
    let (unix, socket_file) = match (&settings.console_socket, inherited.console_unix.take()) {
        (Some(path), Some(socket)) => {
            let listener = socket
                .set_nonblocking(true)
                .and_then(|()| UnixListener::from_std(socket))
                .map_err(inherited_failed)?;
            let file = unix_socket::SocketFile::adopt(path);
            (Some((listener, path.display().to_string())), file)
        }
        (Some(path), None) => {
            let (listener, file) = bind_unix(path)?;
            (Some((listener, path.display().to_string())), Some(file))
        }
        (None, _) => (None, None),
    };
    if tcp.is_some() && settings.admin_token.is_none() && settings.insecure_bind {
        warn_if_exposed(&settings.console_bind);
    }
    let listeners = Listeners {
        tcp,
        unix,
        max_connections: settings.console_max_connections,
    };
    Ok((listeners, socket_file))
}

fn inherited_failed(err: std::io::Error) -> String {
    format!("cannot serve the console's inherited listener: {err}")
}

async fn bind_tcp(addr: &str, port: u16) -> Result<TcpListener, String> {
    bind(addr, port).await.map_err(|err| {
        format!(
            "cannot listen on {addr}:{port} for the console: {err} (set console_port, or 0 to disable it)"
        )
    })
}

fn bind_unix(path: &std::path::Path) -> Result<(UnixListener, unix_socket::SocketFile), String> {
    let cannot =
        |err: std::io::Error| format!("cannot listen on console_socket {}: {err}", path.display());
    let (listener, file) = unix_socket::bind(path).map_err(cannot)?;
    let listener = UnixListener::from_std(listener).map_err(cannot)?;
    Ok((listener, file))
}

/// `insecure_bind = true` let an open console listen beyond loopback: say so.
fn warn_if_exposed(bind: &str) {
    if !crate::access::is_loopback(bind) {
        tracing::warn!(
            "the console listens on {bind} without a token (insecure_bind = true): anyone who can reach it can control the driver"
        );
    }
}

/// The console's listeners, bound before the supervisor starts.
pub struct Listeners {
    pub tcp: Option<TcpListener>,
    /// The Unix socket and its path (which names its peers in the log).
    pub unix: Option<(UnixListener, String)>,
    /// Connections each listener serves at once.
    pub max_connections: usize,
}

impl Listeners {
    /// Serves every listener until the supervisor goes away. `token` is the
    /// admin token in force (it may change on reload).
    pub fn spawn(self, requests: Handle, token: watch::Receiver<Option<AdminToken>>) {
        let door = Arc::new(Door { requests, token });
        if let Some(listener) = self.tcp {
            let slots = Slots::new(self.max_connections);
            tokio::spawn(serve_tcp(listener, door.clone(), slots));
        }
        if let Some((listener, path)) = self.unix {
            let slots = Slots::new(self.max_connections);
            tokio::spawn(serve_unix(listener, path, door, slots));
        }
    }
}

/// What every connection needs.
struct Door {
    requests: Handle,
    token: watch::Receiver<Option<AdminToken>>,
}

async fn serve_tcp(listener: TcpListener, door: Arc<Door>, slots: Slots) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                accept_failed(err).await;
                continue;
            }
        };
        if door.requests.is_closed() {
            return;
        }
        let _ = stream.set_nodelay(true);
        admit(stream, peer.to_string(), Gate::tcp(), &door, &slots);
    }
}

async fn serve_unix(listener: UnixListener, path: String, door: Arc<Door>, slots: Slots) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                accept_failed(err).await;
                continue;
            }
        };
        if door.requests.is_closed() {
            return;
        }
        let peer = match stream.peer_cred() {
            Ok(cred) => format!(
                "unix:{path} (uid {}, pid {})",
                cred.uid(),
                cred.pid().map_or("?".to_string(), |p| p.to_string())
            ),
            Err(_) => format!("unix:{path}"),
        };
        admit(stream, peer, Gate::open(), &door, &slots);
    }
}

/// Out of file descriptors and the like: wait instead of spinning.
async fn accept_failed(err: std::io::Error) {
    tracing::warn!("console accept failed: {err}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Serves a new connection in a task of its own, or refuses it when the
/// listener already serves as many as it may.
fn admit<S>(stream: S, peer: String, gate: Gate, door: &Arc<Door>, slots: &Slots)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let Some(slot) = slots.take() else {
        tracing::warn!("console {peer}: refused, {} connections open", slots.max);
        tokio::spawn(refuse(stream));
        return;
    };
    let door = door.clone();
    tokio::spawn(async move {
        if let Err(err) = converse(stream, &peer, gate, &door).await {
            tracing::debug!("console client {peer}: {err}");
        }
        drop(slot);
    });
}

/// Counts a listener's open connections.
struct Slots {
    open: Arc<AtomicUsize>,
    max: usize,
}

/// One open connection; its slot is free again when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slots {
    fn new(max: usize) -> Slots {
        Slots {
            open: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    fn take(&self) -> Option<Slot> {
        if self.open.fetch_add(1, Ordering::SeqCst) >= self.max {
            self.open.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Slot(self.open.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn refuse<S: AsyncWrite>(stream: S) {
    let mut stream = std::pin::pin!(stream);
    let _ = tokio::time::timeout(
        WRITE_TIMEOUT,
        stream.write_all(b"ERR too many connections\r\n.\r\n"),
    )
    .await;
}

async fn write_timed<W: AsyncWrite + Unpin>(stream: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(bytes)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "client does not read its answers",
        )),
    }
}

fn unauthorized() -> Answer {
    Answer::failed(ErrorKind::Unauthorized, "unauthorized")
}

/// Reads lines and answers them until the client leaves, `quit`s, or is
/// shown the door.
async fn converse<S>(stream: S, peer: &str, mut gate: Gate, door: &Door) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite,
{
    let (read, mut write) = tokio::io::split(stream);
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
        let text = text.trim_end_matches(['\n', '\r']);
        // The token is read afresh per line: a reload may have changed it.
        let verdict = gate.check(text, door.token.borrow().as_ref());
        let (answer, close) = match verdict {
            Verdict::Forward(request) => {
                let peer = Peer::Console(peer.to_string());
                let Some(answer) = door.requests.ask(request, peer).await else {
                    return Ok(());
                };
                let close = answer == Answer::Close;
                (answer, close)
            }
            Verdict::Welcome => (Answer::Ok, false),
            Verdict::WrongToken { failures, last } => {
                let then = if last { "; closing the connection" } else { "" };
                tracing::warn!(
                    "console {peer}: wrong admin token ({failures} of {}){then}",
                    gate::MAX_FAILURES
                );
                tokio::time::sleep(gate::WRONG_TOKEN_DELAY).await;
                (unauthorized(), last)
            }
            Verdict::Unauthorized(request) => {
                let answer = unauthorized();
                command::audit(&Peer::Console(peer.to_string()), &request, &answer);
                (answer, false)
            }
            Verdict::Close => return Ok(()),
        };
        let lines = syntax::render(&answer);
        write_timed(&mut write, &syntax::to_wire(lines.as_deref())).await?;
        if close {
            return Ok(());
        }
    }
}
