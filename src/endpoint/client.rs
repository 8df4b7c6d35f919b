//! The HTTP client every slot shares: hyper's (via `hyper-util`'s pooled
//! client), so connections to an endpoint are kept alive and reused from job
//! to job and from slot to slot, with `TCP_NODELAY` on every one, and https
//! verified against the system's root certificates (rustls).
//!
//! [`EndpointClient::post`] sorts what can go wrong into the two kinds the
//! slot must tell apart: the endpoint answered (even with garbage), so the job
//! has an [`Outcome`]; or it never answered ([`Unreachable`]), so the job
//! must go back to gearmand.

use std::error::Error as StdError;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::wire::{self, Body, Outcome};
use crate::config::HttpEndpoint;

/// How long connecting may take before the endpoint counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Answers past this size are refused rather than held in memory.
const BODY_MAX: usize = 64 * 1024 * 1024;

/// The endpoint did not answer: the request never reached it, or the
/// connection was closed or reset before any answer came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable(pub String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A pooled keep-alive client; clones share the pool.
#[derive(Clone)]
pub struct EndpointClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl EndpointClient {
    pub fn new() -> EndpointClient {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .unwrap_or_else(|err| {
                // https endpoints then fail their requests with the reason.
                tracing::warn!("no system root certificates for https endpoints: {err}");
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                    rustls::ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                )
            })
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        EndpointClient {
            inner: Client::builder(TokioExecutor::new()).build(tls),
        }
    }

    /// POSTs one job and reads the whole answer.
    pub async fn post(&self, endpoint: &HttpEndpoint, body: Body) -> Result<Outcome, Unreachable> {
        let mut request = http::Request::post(&endpoint.url)
            .header(http::header::CONTENT_TYPE, body.content_type);
        for (name, value) in &endpoint.headers {
            request = request.header(name, value);
        }
        let request = match request.body(Full::new(body.bytes)) {
            Ok(r) => r,
            Err(err) => return Ok(Outcome::Failed(format!("cannot build the request: {err}"))),
        };
        let response = match self.inner.request(request).await {
            Ok(response) => response,
            Err(err) => return classify(&err),
        };
        let status = response.status().as_u16();
        match Limited::new(response.into_body(), BODY_MAX).collect().await {
            Ok(collected) => Ok(wire::interpret(status, &collected.to_bytes())),
            Err(err) => Ok(Outcome::Failed(format!(
                "bad response: the body could not be read ({})",
                chain(err.as_ref())
            ))),
        }
    }
}

impl Default for EndpointClient {
    fn default() -> Self {
        Self::new()
    }
}

/// An error before any answer: a response that was not HTTP is an answer
/// (a bad one); everything else means the endpoint was not reached.
fn classify(err: &hyper_util::client::legacy::Error) -> Result<Outcome, Unreachable> {
    let hyper_error = sources(err).find_map(|e| e.downcast_ref::<hyper::Error>());
    if let Some(h) = hyper_error {
        if h.is_parse() || h.is_parse_status() {
            return Ok(Outcome::Failed(format!(
                "bad response: not HTTP ({})",
                chain(err)
            )));
        }
    }
    if err.is_connect() {
        return Err(Unreachable(format!("cannot connect: {}", chain(err))));
    }
    Err(Unreachable(format!(
        "connection closed before an answer: {}",
        chain(err)
    )))
}

fn sources<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    let mut next = Some(err);
    std::iter::from_fn(move || {
        let current = next?;
        next = current.source();
        Some(current)
    })
}

/// The innermost messages of an error chain, outer ones that only repeat
/// their source left out (`client error (Connect)` says nothing new).
fn chain(err: &(dyn StdError + 'static)) -> String {
    let messages: Vec<String> = sources(err).map(|e| e.to_string()).collect();
    let useful: Vec<&String> = messages
        .iter()
        .filter(|m| !m.starts_with("client error ("))
        .collect();
    match useful.as_slice() {
        [] => messages.join(": "),
        many => many
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(": "),
    }
}
