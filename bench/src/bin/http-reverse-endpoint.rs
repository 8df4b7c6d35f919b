//! `http-reverse-endpoint`: the benchmark's job endpoint for the `http`
//! protocol. It answers driveshaft's JSON request with the workload reversed,
//! keeps connections alive and sets `TCP_NODELAY`, and prints the port it
//! listens on (loopback, chosen by the kernel) as its first line. One
//! thread: on two cores, handing requests between threads costs more CPU
//! than it saves waiting.
//!
//!     http-reverse-endpoint

use std::borrow::Cow;
use std::convert::Infallible;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let service = service_fn(|req| async { Ok::<_, Infallible>(reverse(req).await) });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn reverse(req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return status(400),
    };
    let Ok(job) = serde_json::from_slice::<Job>(&body) else {
        return status(400);
    };
    let reversed: String = job.workload.chars().rev().collect();
    let answer = Answer {
        gearman_ret: 0,
        response_string: &reversed,
    };
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(&answer).expect("strings always serialize"),
        )))
        .expect("a valid response")
}

/// The part of driveshaft's request this endpoint needs.
#[derive(Deserialize)]
struct Job<'a> {
    #[serde(borrow)]
    workload: Cow<'a, str>,
}

#[derive(Serialize)]
struct Answer<'a> {
    gearman_ret: u32,
    response_string: &'a str,
}

fn status(code: u16) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .body(Full::new(Bytes::new()))
        .expect("a valid response")
}
