//! Talking to gearmand.
//!
//! We use the `gearman` crate's codec ([`gearman::protocol::GearmanCodec`],
//! [`Packet`]) and admin client, but open every TCP stream ourselves:
//! the crate never sets `TCP_NODELAY`, and with Nagle's algorithm on, each
//! request/response pair waits for a delayed ACK (about 180 jobs/s instead of
//! about 40,000). Its `WorkerBuilder` also grabs on all server connections at
//! once, which breaks "grab only while this process is idle" when there are
//! several servers, so the grab loop is ours ([`grab`]), on top of the framed
//! connections made here.
//!
//! - [`connect`]: a framed, `TCP_NODELAY` connection.
//! - [`grab`]: a pool member's worker connections and grab loop.
//! - [`arming`]: which of a job's idle members sleep on gearmand (no thundering herd).
//! - [`status`]: the admin `status` poller, summed over servers.
//! - [`client`]: a small job-submitting client for tests, examples and the benchmark.

pub mod arming;
pub mod client;
pub mod grab;
pub mod status;
pub mod wakeup;

use std::io;
use std::time::Duration;

use bytes::Bytes;
use gearman::protocol::GearmanCodec;
pub use gearman::protocol::{Packet, PacketType};
pub use gearman::GearmanError;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// A framed Gearman binary-protocol connection.
pub type Link = Framed<TcpStream, GearmanCodec>;

/// How long connecting to a server may take before it counts as down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a TCP connection with `TCP_NODELAY` set.
pub async fn connect_stream(addr: &str) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {addr} timed out"),
            )
        })??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens a framed binary-protocol connection with `TCP_NODELAY` set.
pub async fn connect(addr: &str) -> io::Result<Link> {
    Ok(Framed::new(
        connect_stream(addr).await?,
        GearmanCodec::new(),
    ))
}

/// The argument at `i`, or empty.
pub fn arg(packet: &Packet, i: usize) -> Bytes {
    packet.args.get(i).cloned().unwrap_or_default()
}
