//! `plain-reverse-worker`: the benchmark's throughput ceiling. A Gearman
//! worker with no supervisor in between: one `TCP_NODELAY` connection,
//! `CAN_DO`, then `GRAB_JOB_UNIQ` / `PRE_SLEEP` / `NOOP` and `WORK_COMPLETE`
//! with the workload reversed.
//!
//!     plain-reverse-worker --server 127.0.0.1:4730 --function reverse

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use futures::{SinkExt, StreamExt};
use gearman_driver::gearman::{arg, connect, Link, Packet, PacketType};

#[derive(Parser)]
#[command(about = "A plain Gearman worker answering each workload reversed")]
struct Args {
    /// gearmand address, host:port.
    #[arg(long, default_value = "127.0.0.1:4730")]
    server: String,
    /// The function to register.
    #[arg(long, default_value = "reverse")]
    function: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut link = connect(&args.server)
        .await
        .with_context(|| format!("connecting to {}", args.server))?;
    let function = Bytes::from(args.function.into_bytes());
    link.feed(Packet::request(PacketType::CanDo, vec![function]))
        .await?;
    link.send(grab()).await?;
    serve(&mut link).await
}

fn grab() -> Packet {
    Packet::request(PacketType::GrabJobUniq, vec![])
}

async fn serve(link: &mut Link) -> Result<()> {
    while let Some(packet) = link.next().await {
        let packet = packet?;
        match packet.ptype {
            PacketType::JobAssignUniq => {
                // One write for the answer and the next grab: half the
                // syscalls, and gearmand sees both at once.
                link.feed(complete(&packet)).await?;
                link.send(grab()).await?;
            }
            PacketType::NoJob => {
                link.send(Packet::request(PacketType::PreSleep, vec![]))
                    .await?
            }
            PacketType::Noop => link.send(grab()).await?,
            PacketType::Error => bail!(
                "gearmand error: {}",
                String::from_utf8_lossy(&arg(&packet, 1))
            ),
            _ => {}
        }
    }
    Ok(())
}

fn complete(assign: &Packet) -> Packet {
    let mut result = arg(assign, 3).to_vec();
    result.reverse();
    Packet::request(
        PacketType::WorkComplete,
        vec![arg(assign, 0), Bytes::from(result)],
    )
}
