//! The HTTP listener (`http_bind`): `/metrics`, `/api/status`, `/healthz`,
//! the dashboard at `/` and the write endpoints, the second door onto
//! [`crate::command`].
//!
//! It runs on a thread of its own with its own runtime: encoding metrics,
//! serializing JSON and serving slow clients can never delay the
//! supervisor's single-threaded loop, which only ever sees a request when a
//! client asks for the status view (coalesced, see [`coalesce`]) or, with
//! the right token, changes something.
//!
//! - [`bind`]: binds at start-up, so that a taken port fails it.
//! - [`server`]: connections: the caps and timeouts that keep a hostile
//!   client to its own connection.
//! - [`routes`]: what each path answers.
//! - [`access`]: who may use the write endpoints (the Bearer token).
//! - [`dashboard`]: the page at `/`, its assets, and the history it charts.
//! - [`coalesce`]: one answer shared by every request of a short window.

pub mod access;
pub mod coalesce;
pub mod dashboard;
pub mod routes;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::command::{Handle, Lifecycle};
use crate::metrics::Exposition;

pub use access::WriteAccess;

/// A bound listener, not yet serving.
pub struct Listener {
    socket: std::net::TcpListener,
    addr: SocketAddr,
}

impl Listener {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:47301/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

/// Binds `addr` (`host:port`; port 0 picks a free one).
pub fn bind(addr: &str) -> std::io::Result<Listener> {
    Listener::from_std(std::net::TcpListener::bind(addr)?)
}

impl Listener {
    /// A socket already listening (inherited across an upgrade).
    pub fn from_std(socket: std::net::TcpListener) -> std::io::Result<Listener> {
        socket.set_nonblocking(true)?;
        let addr = socket.local_addr()?;
        Ok(Listener { socket, addr })
    }

    pub fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.socket)
    }
}

/// The listener's thread, serving.
pub struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Running {
    /// Stops accepting and ends the thread (its open connections close).
    /// The socket stays open where it was duplicated (an upgrade's
    /// hand-over): connections then wait in its backlog.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// What the routes need.
#[derive(Clone)]
pub struct Context {
    /// The way to the supervisor's loop.
    pub requests: Handle,
    pub metrics: Exposition,
    pub lifecycle: Arc<Lifecycle>,
    pub access: WriteAccess,
    /// The dashboard's samples and process events.
    pub history: crate::history::Shared,
}

/// Serves on a thread of its own until the process exits or it is stopped.
/// The thread keeps the supervisor's signals blocked, so that they are
/// delivered to the main thread (see [`crate::upgrade::signals`]).
pub fn spawn(listener: Listener, context: Context) -> std::io::Result<Running> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = crate::upgrade::signals::with_blocked(|| {
        std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener.socket) {
                        Ok(socket) => tokio::select! {
                            _ = server::serve(socket, routes::router(context)) => {}
                            _ = stopped => {}
                        },
                        Err(err) => tracing::error!("HTTP listener: {err}"),
                    }
                })
            })
    })?;
    Ok(Running { stop, thread })
}
