//! A minimal Gearman client on a `TCP_NODELAY` connection: one foreground or
//! background job at a time per connection. Tests, the example client and the
//! benchmark's load generator use it (open several for concurrency).

use std::io;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};

use super::{arg, connect, Link, Packet, PacketType};

/// What a foreground job sent back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobReply {
    pub data: Vec<Bytes>,
    pub warnings: Vec<Bytes>,
    pub statuses: Vec<(String, String)>,
    /// `Some(result)` on WORK_COMPLETE, `None` on WORK_FAIL.
    pub result: Option<Bytes>,
}

pub struct Client {
    link: Link,
}

fn io_err(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

impl Client {
    pub async fn connect(addr: &str) -> io::Result<Client> {
        Ok(Client {
            link: connect(addr).await?,
        })
    }

    async fn send(&mut self, ptype: PacketType, args: Vec<Bytes>) -> io::Result<()> {
        self.link
            .send(Packet::request(ptype, args))
            .await
            .map_err(|e| io_err(e.to_string()))
    }

    async fn recv(&mut self) -> io::Result<gearman::protocol::Packet> {
        match self.link.next().await {
            Some(Ok(p)) => Ok(p),
            Some(Err(e)) => Err(io_err(e.to_string())),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "gearmand closed the connection",
            )),
        }
    }

    async fn created(&mut self) -> io::Result<Bytes> {
        let p = self.recv().await?;
        match p.ptype {
            PacketType::JobCreated => Ok(arg(&p, 0)),
            PacketType::Error => Err(io_err(format!(
                "gearmand error: {}",
                String::from_utf8_lossy(&arg(&p, 1))
            ))),
            other => Err(io_err(format!("expected JOB_CREATED, got {other:?}"))),
        }
    }

    /// Runs a foreground job and waits for its end.
    pub async fn submit(
        &mut self,
        function: &str,
        unique: &[u8],
        payload: impl Into<Bytes>,
    ) -> io::Result<JobReply> {
        self.send(
            PacketType::SubmitJob,
            vec![
                Bytes::copy_from_slice(function.as_bytes()),
                Bytes::copy_from_slice(unique),
                payload.into(),
            ],
        )
        .await?;
        let handle = self.created().await?;
        let mut reply = JobReply::default();
        loop {
            let p = self.recv().await?;
            if arg(&p, 0) != handle {
                continue;
            }
            match p.ptype {
                PacketType::WorkData => reply.data.push(arg(&p, 1)),
                PacketType::WorkWarning => reply.warnings.push(arg(&p, 1)),
                PacketType::WorkStatus => reply.statuses.push((
                    String::from_utf8_lossy(&arg(&p, 1)).into_owned(),
                    String::from_utf8_lossy(&arg(&p, 2)).into_owned(),
                )),
                PacketType::WorkComplete => {
                    reply.result = Some(arg(&p, 1));
                    return Ok(reply);
                }
                PacketType::WorkFail | PacketType::WorkException => return Ok(reply),
                _ => {}
            }
        }
    }

    /// Queues a background job and returns its handle.
    pub async fn submit_background(
        &mut self,
        function: &str,
        payload: impl Into<Bytes>,
    ) -> io::Result<Bytes> {
        self.submit_background_as(PacketType::SubmitJobBg, function, b"", payload)
            .await
    }

    /// Queues a background job with a unique id through `ptype`
    /// (`SubmitJobBg`, `SubmitJobHighBg` or `SubmitJobLowBg`) and returns
    /// its handle. gearmand answers a unique id it already holds with the
    /// queued job's handle instead of queueing a second one.
    pub async fn submit_background_as(
        &mut self,
        ptype: PacketType,
        function: &str,
        unique: &[u8],
        payload: impl Into<Bytes>,
    ) -> io::Result<Bytes> {
        self.send(
            ptype,
            vec![
                Bytes::copy_from_slice(function.as_bytes()),
                Bytes::copy_from_slice(unique),
                payload.into(),
            ],
        )
        .await?;
        self.created().await
    }
}
