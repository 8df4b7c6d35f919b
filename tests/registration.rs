//! A large pool registers with gearmand a few connections at a time, each
//! slot freed by gearmand's answer on the connection before it: gearmand
//! listens with a backlog of 32, and connections past it are dropped and
//! retried by the kernel seconds later.
//!
//! The server here is a stand-in that answers `ECHO_REQ` only when told to,
//! so that the test can hold registrations open and count them.

mod common;
use common::packet::{CAN_DO, ECHO_REQ, ECHO_RES};
use common::*;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PROCESSES: usize = 40;
/// `REGISTERING_AT_ONCE` in src/gearman/grab.rs.
const AT_ONCE: usize = 16;

/// Member connections that sent `CAN_DO` and `ECHO_REQ`, not yet answered.
#[derive(Default)]
struct Registrations {
    waiting: Vec<(TcpStream, Vec<u8>)>,
    answered: usize,
}

impl Registrations {
    fn answer_all(&mut self) {
        for (mut stream, payload) in self.waiting.drain(..) {
            stream
                .write_all(&gearman_response(ECHO_RES, &payload))
                .unwrap();
            self.answered += 1;
        }
    }
}

/// Reads binary requests until `ECHO_REQ`, which it files under `waiting`
/// when `CAN_DO` came first; anything else (the status poller's text
/// protocol, the cold-start wake-up connection) is read and left alone.
fn serve(mut stream: TcpStream, registrations: Arc<Mutex<Registrations>>) {
    let mut registered = false;
    while let Some((kind, body)) = read_gearman_request(&mut stream) {
        registered |= kind == CAN_DO;
        if kind == ECHO_REQ && registered {
            let answer_to = stream.try_clone().unwrap();
            registrations
                .lock()
                .unwrap()
                .waiting
                .push((answer_to, body));
        }
    }
}

fn start_server() -> (String, Arc<Mutex<Registrations>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let registrations = Arc::new(Mutex::new(Registrations::default()));
    let shared = registrations.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let shared = shared.clone();
            std::thread::spawn(move || serve(stream, shared));
        }
    });
    (addr, registrations)
}

#[test]
fn a_large_pool_registers_a_few_connections_at_a_time() {
    let (server, registrations) = start_server();
    let lib = Lib::new();
    lib.file(
        "R/Tiny.toml",
        &format!(
            "command = [\"/bin/sh\", \"-c\", \"echo READY; while read -r _; do :; done\"]\n\
             [jobs.tiny]\nmin_processes = {PROCESSES}\nmax_processes = {PROCESSES}\n"
        ),
    );
    let driver = Driver::start_with_servers(&lib, &server, "R", &["--interval", "30"]);
    let waiting = || registrations.lock().unwrap().waiting.len();

    // Every process is up and wants its connection: only AT_ONCE of them
    // are connecting, the rest wait for a slot.
    driver.wait_processes("R::Tiny::tiny", PROCESSES, Duration::from_secs(30));
    wait_for(
        Duration::from_secs(20),
        "a first round of registrations",
        || (waiting() == AT_ONCE).then_some(()),
    );
    // A negative can only be watched for a while: more would have come
    // within the same few milliseconds as the first AT_ONCE.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(waiting(), AT_ONCE, "no more than {AT_ONCE} connect at once");

    // Each answer frees a slot for the next member.
    let mut rounds = 0;
    while registrations.lock().unwrap().answered < PROCESSES {
        registrations.lock().unwrap().answer_all();
        rounds += 1;
        assert!(rounds < 100, "registrations stalled");
        wait_for(Duration::from_secs(20), "the next registrations", || {
            let r = registrations.lock().unwrap();
            (r.answered == PROCESSES || !r.waiting.is_empty()).then_some(())
        });
        assert!(waiting() <= AT_ONCE);
    }
    assert!(rounds >= PROCESSES.div_ceil(AT_ONCE), "{rounds} rounds");
    assert_eq!(registrations.lock().unwrap().answered, PROCESSES);
}
