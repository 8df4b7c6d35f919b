//! One TCP connection to a console server, with every wait bounded.
//!
//! Plain blocking sockets: the client talks to one server at a time and
//! waits for its answer, so threads or an async runtime would buy nothing.
//! The timeout applies to connecting, to each read and to each write, so a
//! server that accepts and then says nothing cannot hang a script.

use std::fmt;
use std::io::{self, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::address::ServerAddress;
use crate::framing::{closes_connection, encode_command, read_answer, Answer};

/// Why a server gave no answer.
#[derive(Debug)]
pub enum Failure {
    /// No connection could be made (name lookup, refused, timed out).
    Connect(io::Error),
    /// The connection broke, timed out or carried garbage during a command.
    Exchange(io::Error),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(err) if err.kind() == io::ErrorKind::ConnectionRefused => write!(
                f,
                "cannot connect: {err} (is gearman-driver running with its console on this port?)"
            ),
            Failure::Connect(err) => write!(f, "cannot connect: {err}"),
            Failure::Exchange(err) => write!(f, "{err}"),
        }
    }
}

pub struct Connection {
    reader: BufReader<TcpStream>,
    timeout: Duration,
}

impl Connection {
    /// Connects to the first of the server's resolved addresses that
    /// accepts within `timeout` (each address gets the full timeout).
    pub fn open(address: &ServerAddress, timeout: Duration) -> Result<Connection, Failure> {
        let stream = connect_any(address, timeout)
            .map_err(|err| Failure::Connect(explain_timeout(err, "no connection", timeout)))?;
        let configure = || -> io::Result<()> {
            stream.set_read_timeout(Some(timeout))?;
            stream.set_write_timeout(Some(timeout))?;
            // Commands are single small writes waiting for an answer;
            // Nagle's delay would only add latency.
            stream.set_nodelay(true)
        };
        configure().map_err(Failure::Connect)?;
        Ok(Connection {
            reader: BufReader::new(stream),
            timeout,
        })
    }

    /// Sends one command and reads its whole answer.
    pub fn ask(&mut self, command: &str) -> Result<Answer, Failure> {
        self.exchange(command)
            .map_err(|err| Failure::Exchange(explain_timeout(err, "no answer", self.timeout)))
    }

    fn exchange(&mut self, command: &str) -> io::Result<Answer> {
        let bytes = encode_command(command)?;
        let mut stream = self.reader.get_ref();
        stream.write_all(&bytes)?;
        stream.flush()?;
        read_answer(&mut self.reader, closes_connection(command))
    }

    /// Whether this idle connection can no longer carry a command: the
    /// server closed it, or sent bytes nobody asked for, which would be
    /// mistaken for the next answer. Checked without blocking.
    pub fn is_stale(&self) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        let stream = self.reader.get_ref();
        if stream.set_nonblocking(true).is_err() {
            return true;
        }
        let mut probe = [0u8; 1];
        let stale = match stream.peek(&mut probe) {
            Err(err) => err.kind() != io::ErrorKind::WouldBlock,
            Ok(_) => true,
        };
        stream.set_nonblocking(false).is_err() || stale
    }
}

fn connect_any(address: &ServerAddress, timeout: Duration) -> io::Result<TcpStream> {
    let mut last_error = None;
    for socket_address in address.resolve()? {
        match TcpStream::connect_timeout(&socket_address, timeout) {
            Ok(stream) => return Ok(stream),
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no address to connect to")))
}

/// Socket timeouts surface as "Resource temporarily unavailable" on Unix,
/// which tells a user nothing; say what did not happen in time instead.
fn explain_timeout(err: io::Error, what: &str, timeout: Duration) -> io::Error {
    match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what} within {timeout:?} (see --timeout)"),
        ),
        _ => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, Read};
    use std::net::TcpListener;
    use std::thread;

    fn local(listener: &TcpListener) -> ServerAddress {
        ServerAddress::new("127.0.0.1", listener.local_addr().unwrap().port())
    }

    #[test]
    fn asks_and_reads_one_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = local(&listener);
        let server = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            (&stream).write_all(b"OK\r\n.\r\n").unwrap();
            line
        });
        let mut connection = Connection::open(&address, Duration::from_secs(5)).unwrap();
        let answer = connection.ask("set_processes job 1 2").unwrap();
        assert_eq!(answer.lines, ["OK"]);
        assert_eq!(server.join().unwrap(), "set_processes job 1 2\n");
    }

    #[test]
    fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = local(&listener);
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            // Hold the connection open without answering until the client gives up.
            let _ = stream.read_to_end(&mut Vec::new());
        });
        let mut connection = Connection::open(&address, Duration::from_millis(200)).unwrap();
        let err = connection.ask("status").unwrap_err();
        assert!(err.to_string().contains("no answer within 200ms"), "{err}");
        drop(connection);
        server.join().unwrap();
    }

    #[test]
    fn a_refused_connection_says_what_to_check() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = ServerAddress::new("127.0.0.1", port);
        let Err(err) = Connection::open(&address, Duration::from_secs(5)) else {
            panic!("nothing listens on port {port}, yet it connected");
        };
        assert!(matches!(err, Failure::Connect(_)));
        assert!(
            err.to_string().contains("is gearman-driver running"),
            "{err}"
        );
    }

    #[test]
    fn staleness_is_seen_without_blocking() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = local(&listener);
        let connection = Connection::open(&address, Duration::from_secs(5)).unwrap();
        let (server_side, _) = listener.accept().unwrap();
        assert!(!connection.is_stale());
        drop(server_side);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !connection.is_stale() {
            assert!(std::time::Instant::now() < deadline, "close never seen");
            thread::sleep(Duration::from_millis(10));
        }
    }
}
