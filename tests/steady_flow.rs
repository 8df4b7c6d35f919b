//! Who asks gearmand for work when a job is taken. A member called out of
//! rest that finds a job has met a backlog and calls two more, so a burst
//! spreads in a doubling wave; a member that finds its next job with its
//! answer is a busy pool's steady flow, and calls nobody: its siblings'
//! asks would come back empty (2 of the 6 round trips per job at gearmand
//! with 200 idle processes, before).
//!
//! The server is a stand-in that answers each ask as the test scripts it,
//! so the order of events is the test's, not a race's.

mod common;
use common::packet::*;
use common::*;
use std::collections::HashMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

const PROCESSES: usize = 5;
const LIMIT: Duration = Duration::from_secs(30);

/// A request from connection `conn`; a registration (`ECHO_REQ`) comes
/// with the way to answer that connection.
struct Request {
    conn: usize,
    kind: u32,
    body: Vec<u8>,
    answer_to: Option<TcpStream>,
}

/// The stand-in: every connection's requests, in the order they came, and
/// a way to answer each member connection.
struct StandIn {
    addr: String,
    requests: mpsc::Receiver<Request>,
    members: HashMap<usize, TcpStream>,
}

impl StandIn {
    fn start() -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (requests_tx, requests) = mpsc::channel();
        std::thread::spawn(move || {
            for (conn, stream) in listener.incoming().flatten().enumerate() {
                let requests = requests_tx.clone();
                std::thread::spawn(move || read_requests(conn, stream, requests));
            }
        });
        StandIn {
            addr,
            requests,
            members: HashMap::new(),
        }
    }

    /// The next request from a member, after any registrations.
    fn next(&mut self) -> Request {
        loop {
            let r = self.next_or_registered();
            if r.kind != ECHO_REQ {
                return r;
            }
        }
    }

    /// The next request from a member connection: one that registered with
    /// the `ECHO_REQ` members send after `CAN_DO` (answered here, and also
    /// returned). The status poller and the cold-start connection are not
    /// members.
    fn next_or_registered(&mut self) -> Request {
        loop {
            let mut r = self
                .requests
                .recv_timeout(LIMIT)
                .expect("a request from a member within the limit");
            if r.kind == ECHO_REQ && r.body == b"registered" {
                let stream = r.answer_to.take().expect("its stream");
                self.members.insert(r.conn, stream);
                self.answer(r.conn, ECHO_RES, &[b"registered"]);
                return r;
            } else if self.members.contains_key(&r.conn) {
                return r;
            }
        }
    }

    /// The next member request, which must be of `kind`.
    fn expect(&mut self, kind: u32) -> Request {
        let r = self.next();
        assert_eq!(r.kind, kind, "connection {} sent {}", r.conn, r.kind);
        r
    }

    fn answer(&mut self, conn: usize, kind: u32, args: &[&[u8]]) {
        let packet = gearman_response(kind, &args.join(&0u8));
        self.members
            .get_mut(&conn)
            .unwrap()
            .write_all(&packet)
            .unwrap();
    }

    fn assign(&mut self, conn: usize, handle: &str, data: &str) {
        let args: [&[u8]; 4] = [handle.as_bytes(), b"T::W::work", b"", data.as_bytes()];
        self.answer(conn, JOB_ASSIGN_UNIQ, &args);
    }
}

fn read_requests(conn: usize, mut stream: TcpStream, out: mpsc::Sender<Request>) {
    while let Some((kind, body)) = read_gearman_request(&mut stream) {
        let answer_to = (kind == ECHO_REQ).then(|| stream.try_clone().unwrap());
        let request = Request {
            conn,
            kind,
            body,
            answer_to,
        };
        if out.send(request).is_err() {
            return;
        }
    }
}

#[test]
fn a_called_member_that_finds_a_job_calls_two_a_finisher_calls_none() {
    let mut server = StandIn::start();
    let lib = Lib::new();
    // A job `hold:NAME` holds its process until a file NAME exists.
    let gates = lib.path().to_path_buf();
    let open_gate = |name: &str| std::fs::write(gates.join(name), b"").unwrap();
    lib.file(
        "T/w.py",
        &python_worker(&format!(
            "while data.startswith(b'hold:') and not os.path.exists(os.path.join({gates:?}, data[5:].decode())):\n    time.sleep(0.01)"
        )),
    );
    lib.file(
        "T/W.toml",
        &format!(
            "command = [\"python3\", \"w.py\"]\n\
             [jobs.work]\nmin_processes = {PROCESSES}\nmax_processes = {PROCESSES}\n"
        ),
    );
    let _driver = Driver::start_with_servers(
        &lib,
        &server.addr,
        "T",
        &["--interval", "30", "--max-idle-time", "600"],
    );

    // The pool settles: every member registers, one asks and hears NO_JOB
    // and sleeps on the server; the others, started while it watched, rest
    // without a word.
    let mut sleeper = None;
    while server.members.len() < PROCESSES || sleeper.is_none() {
        let r = server.next_or_registered();
        match r.kind {
            ECHO_REQ => {}
            GRAB_JOB_UNIQ => server.answer(r.conn, NO_JOB, &[]),
            PRE_SLEEP => {
                assert_eq!(sleeper, None, "a second member sleeps on the server");
                sleeper = Some(r.conn);
            }
            kind => panic!("unexpected request {kind} while the pool settles"),
        }
    }
    let sleeper = sleeper.unwrap();

    // A job is queued: the sleeper is woken and takes it (it holds its
    // process), and calls a resting member to watch in its place.
    server.answer(sleeper, NOOP, &[]);
    let r = server.expect(GRAB_JOB_UNIQ);
    assert_eq!(r.conn, sleeper);
    server.assign(sleeper, "H:1", "hold:first");
    let called = server.expect(GRAB_JOB_UNIQ).conn;
    assert_ne!(called, sleeper);

    // The called member finds a job waiting: a backlog. It calls two more;
    // of the two, one rests again and the other sleeps on the server.
    server.assign(called, "H:2", "hold:second");
    let mut siblings = Vec::new();
    for _ in 0..2 {
        let r = server.expect(GRAB_JOB_UNIQ);
        assert!(r.conn != sleeper && r.conn != called && !siblings.contains(&r.conn));
        siblings.push(r.conn);
        server.answer(r.conn, NO_JOB, &[]);
    }
    let r = server.expect(PRE_SLEEP);
    assert!(siblings.contains(&r.conn), "{} sleeps", r.conn);

    // The called member answers its job and asks for the next in the same
    // write; the ask finds one: the steady flow of a busy pool. Nobody is
    // called for it. The next request is the finisher's answer, a process
    // round trip later; a sibling's ask would come within microseconds of
    // the assignment, long before.
    open_gate("second");
    let r = server.expect(WORK_COMPLETE);
    assert_eq!(r.conn, called);
    assert!(r.body.starts_with(b"H:2\0"));
    let r = server.expect(GRAB_JOB_UNIQ);
    assert_eq!(r.conn, called, "the answer comes with the next ask");
    server.assign(called, "H:3", "quick");
    let r = server.next();
    assert_eq!(
        (r.conn, r.kind),
        (called, WORK_COMPLETE),
        "a member asked while the finisher ran its next job: it called a sibling"
    );
    assert!(r.body.starts_with(b"H:3\0"));
    let r = server.expect(GRAB_JOB_UNIQ);
    assert_eq!(r.conn, called);
    // Nothing more queued: it rests, as a member watches already.
    server.answer(called, NO_JOB, &[]);
    open_gate("first");
    let r = server.expect(WORK_COMPLETE);
    assert_eq!(r.conn, sleeper);
    assert!(r.body.starts_with(b"H:1\0"));
}
