//! Real HTTP servers for the `http` protocol's tests, on free loopback ports:
//! PHP's built-in web server serving `examples/driveshaft/job.php` (an
//! endpoint in driveshaft's format), and a fault endpoint of our own (hyper) that can be slow, answer
//! 500 or garbage, hang up without answering, or be down and come back, and
//! that counts the connections it accepted (to show keep-alive reuse). It
//! also serves https, with `tls/endpoint.pem` (for 127.0.0.1, signed by
//! `tls/ca.pem`; test-only keys, made with openssl, valid until 2126).
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use crate::common::{free_port, wait_for};

/// `php -S` serving `examples/driveshaft/job.php`.
pub struct PhpEndpoint {
    pub port: u16,
    child: Child,
    _root: tempfile::TempDir,
}

impl PhpEndpoint {
    pub fn start() -> PhpEndpoint {
        let root = tempfile::tempdir().unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/driveshaft/job.php"),
            root.path().join("job.php"),
        )
        .unwrap();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("php")
                .args(["-S", &format!("127.0.0.1:{port}"), "-t"])
                .arg(root.path())
                // Several requests at once, as slots send them.
                .env("PHP_CLI_SERVER_WORKERS", "4")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("php is installed (Debian package php-cli)");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // The port was taken meanwhile: try another.
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return PhpEndpoint {
                        port,
                        child,
                        _root: root,
                    };
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("php -S could not get a port of its own");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/job.php", self.port)
    }
}

impl Drop for PhpEndpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the fault endpoint treats connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Answers every request (how, the workload says: see [`answer`]).
    Serve = 0,
    /// Accepts each connection and closes it without reading a byte.
    HangUp = 1,
}

/// Our own endpoint for the fault cases. Requests carry driveshaft's JSON;
/// the workload picks the answer:
/// - `sleep:<ms>:<text>`: waits, then completes with `<text>` reversed;
/// - `status:<code>`: that status with the body `<h1>boom</h1>`;
/// - `garbage`: 200 with a body that is not JSON;
/// - anything else: completes with the workload reversed.
pub struct FaultEndpoint {
    pub port: u16,
    /// Connections accepted so far.
    pub connections: Arc<AtomicU64>,
    /// Requests answered so far.
    pub requests: Arc<AtomicU64>,
    mode: Arc<AtomicU8>,
    /// Set for an https endpoint.
    tls: Option<TlsAcceptor>,
    /// `Some` while the endpoint is down: the port nothing listens on.
    running: Option<(std::thread::JoinHandle<()>, watch::Sender<bool>)>,
}

impl FaultEndpoint {
    pub fn start(mode: Mode) -> FaultEndpoint {
        FaultEndpoint::listening(mode, None)
    }

    fn listening(mode: Mode, tls: Option<TlsAcceptor>) -> FaultEndpoint {
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        let mut endpoint = FaultEndpoint::down_on(listener.local_addr().unwrap().port());
        endpoint.mode.store(mode as u8, Ordering::SeqCst);
        endpoint.tls = tls;
        endpoint.serve(listener);
        endpoint
    }

    /// An endpoint that is down (connections refused) on a port that was
    /// free a moment ago; [`FaultEndpoint::come_up`] starts it there.
    pub fn down() -> FaultEndpoint {
        FaultEndpoint::down_on(free_port())
    }

    fn down_on(port: u16) -> FaultEndpoint {
        FaultEndpoint {
            port,
            connections: Arc::new(AtomicU64::new(0)),
            requests: Arc::new(AtomicU64::new(0)),
            mode: Arc::new(AtomicU8::new(Mode::Serve as u8)),
            tls: None,
            running: None,
        }
    }

    /// An https endpoint, answering as [`Mode::Serve`] does.
    pub fn start_tls() -> FaultEndpoint {
        FaultEndpoint::listening(Mode::Serve, Some(tls_acceptor()))
    }

    /// The CA that signed the https endpoint's certificate, for
    /// `SSL_CERT_FILE`.
    pub fn tls_ca_file() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tls/ca.pem")
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/job", self.port)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn come_up(&mut self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let listener = wait_for(Duration::from_secs(10), "the endpoint's port", || {
            StdListener::bind(addr).ok()
        });
        self.serve(listener);
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    fn serve(&mut self, listener: StdListener) {
        listener.set_nonblocking(true).unwrap();
        let (stop_tx, stop_rx) = watch::channel(false);
        let connections = self.connections.clone();
        let requests = self.requests.clone();
        let mode = self.mode.clone();
        let tls = self.tls.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let counts = Counts {
                connections,
                requests,
            };
            rt.block_on(accept_loop(listener, counts, mode, tls, stop_rx));
        });
        self.running = Some((thread, stop_tx));
    }
}

impl Drop for FaultEndpoint {
    fn drop(&mut self) {
        if let Some((thread, stop)) = self.running.take() {
            let _ = stop.send(true);
            let _ = thread.join();
        }
    }
}

fn tls_acceptor() -> TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tls");
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join("endpoint.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("endpoint.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

#[derive(Clone)]
struct Counts {
    connections: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

async fn accept_loop(
    listener: StdListener,
    counts: Counts,
    mode: Arc<AtomicU8>,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            _ = stop.changed() => return,
        };
        counts.connections.fetch_add(1, Ordering::SeqCst);
        if mode.load(Ordering::SeqCst) == Mode::HangUp as u8 {
            drop(stream);
            continue;
        }
        let (counts, stop, tls) = (counts.clone(), stop.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                // A client that refuses the certificate ends the handshake.
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        serve_connection(stream, counts, stop).await;
                    }
                }
                None => serve_connection(stream, counts, stop).await,
            }
        });
    }
}

async fn serve_connection<S>(stream: S, counts: Counts, mut stop: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let requests = counts.requests.clone();
        async move {
            let response = answer(req).await;
            requests.fetch_add(1, Ordering::SeqCst);
            Ok::<_, hyper::Error>(response)
        }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        _ = stop.changed() => {}
    }
}

async fn answer(req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let job: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let workload = job["workload"].as_str().unwrap_or_default().to_string();
    let reply = |status: u16, body: String| {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let done = |text: &str| {
        let reversed: String = text.chars().rev().collect();
        reply(
            200,
            serde_json::json!({"gearman_ret": 0, "response_string": reversed}).to_string(),
        )
    };
    if let Some(rest) = workload.strip_prefix("sleep:") {
        let (ms, text) = rest.split_once(':').unwrap_or((rest, ""));
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        return done(text);
    }
    if let Some(code) = workload.strip_prefix("status:") {
        return reply(code.parse().unwrap(), "<h1>boom</h1>\n".into());
    }
    if workload == "garbage" {
        return reply(200, "this is not json".into());
    }
    done(&workload)
}
