//! Submits jobs to gearmand and prints the results, with TCP_NODELAY on the
//! connection (without it every job waits for a delayed ACK).
//!
//!     cargo run --example submit -- GDExamples::Convert::convert_to_jpeg picture.png
//!     cargo run --example submit -- --background --count 100 Bench::Reverse::reverse hello
//!
//! The workload is the named file's contents if such a file exists, else the
//! argument itself.

use std::time::Instant;

use clap::Parser;
use gearman_driver::gearman::client::Client;

#[derive(Parser)]
struct Args {
    /// gearmand address.
    #[arg(long, default_value = "localhost:4730")]
    server: String,
    /// Queue as background jobs instead of waiting for results.
    #[arg(long)]
    background: bool,
    /// How many times to submit.
    #[arg(long, default_value_t = 1)]
    count: usize,
    function: String,
    workload: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let workload =
        std::fs::read(&args.workload).unwrap_or_else(|_| args.workload.clone().into_bytes());
    let mut client = Client::connect(&args.server).await?;
    let started = Instant::now();
    for _ in 0..args.count {
        if args.background {
            let handle = client
                .submit_background(&args.function, workload.clone())
                .await?;
            println!("queued {}", String::from_utf8_lossy(&handle));
            continue;
        }
        let reply = client.submit(&args.function, b"", workload.clone()).await?;
        for warning in &reply.warnings {
            eprintln!("warning: {}", String::from_utf8_lossy(warning));
        }
        match reply.result {
            Some(result) => println!("{}", String::from_utf8_lossy(&result)),
            None => {
                eprintln!("job failed");
                std::process::exit(1);
            }
        }
    }
    eprintln!("{} job(s) in {:?}", args.count, started.elapsed());
    Ok(())
}
