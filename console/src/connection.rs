//! One connection to a console server, TCP or Unix socket, with every
//! wait bounded, and the token sent first when there is one.
//!
//! Plain blocking sockets: the client talks to one server at a time and
//! waits for its answer, so threads or an async runtime would buy nothing.
//! The timeout applies to connecting, to each read and to each write, so a
//! server that accepts and then says nothing cannot hang a script.

use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::address::ServerAddress;
use crate::framing::{closes_connection, encode_command, read_answer, Answer};
use crate::token::Token;

/// Why a server gave no answer.
#[derive(Debug)]
pub enum Failure {
    /// No connection could be made (name lookup, refused, timed out).
    Connect(io::Error),
    /// The connection broke, timed out or carried garbage during a command.
    Exchange(io::Error),
    /// The server refused the token; its answer line.
    Auth(String),
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
            Failure::Auth(answer) => write!(
                f,
                "the token was refused: {answer} (see --token-file and GEARMAN_DRIVER_TOKEN)"
            ),
        }
    }
}

/// A TCP or Unix stream; both take the same timeouts.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn connect(address: &ServerAddress, timeout: Duration) -> io::Result<Stream> {
        match address.socket_path() {
            Some(path) => UnixStream::connect(path).map(Stream::Unix),
            None => connect_any(address, timeout).map(Stream::Tcp),
        }
    }

    fn configure(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                // Commands are single small writes waiting for an answer;
                // Nagle's delay would only add latency.
                s.set_nodelay(true)
            }
            Stream::Unix(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))
            }
        }
    }

    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(on),
            Stream::Unix(s) => s.set_nonblocking(on),
        }
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).read(buf),
            Stream::Unix(s) => (&*s).read(buf),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).write(buf),
            Stream::Unix(s) => (&*s).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub struct Connection {
    reader: BufReader<Stream>,
    timeout: Duration,
}

impl Connection {
    /// Connects to the server (for TCP, the first of its resolved addresses
    /// that accepts within `timeout`; each gets the full timeout), then
    /// sends `auth` with the token, if there is one.
    pub fn open(
        address: &ServerAddress,
        timeout: Duration,
        token: Option<&Token>,
    ) -> Result<Connection, Failure> {
        let stream = Stream::connect(address, timeout)
            .map_err(|err| Failure::Connect(explain_timeout(err, "no connection", timeout)))?;
        stream.configure(timeout).map_err(Failure::Connect)?;
        let mut connection = Connection {
            reader: BufReader::new(stream),
            timeout,
        };
        if let Some(token) = token {
            let answer = connection.ask(&token.auth_command())?;
            if answer.is_error() {
                return Err(Failure::Auth(answer.lines.join(" ")));
            }
        }
        Ok(connection)
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
        read_answer(&mut self.reader, closes_connection(command))
    }

    /// Whether this idle connection can no longer carry a command: the
    /// server closed it, or sent bytes nobody asked for, which would be
    /// mistaken for the next answer. Checked without blocking; a stale
    /// connection is dropped, so the probe may consume what it finds.
    pub fn is_stale(&self) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        let stream = self.reader.get_ref();
        if stream.set_nonblocking(true).is_err() {
            return true;
        }
        let mut probe = [0u8; 1];
        let stale = match (&mut &*stream).read(&mut probe) {
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
        let mut connection = Connection::open(&address, Duration::from_secs(5), None).unwrap();
        let answer = connection.ask("set_processes job 1 2").unwrap();
        assert_eq!(answer.lines, ["OK"]);
        assert_eq!(server.join().unwrap(), "set_processes job 1 2\n");
    }

    /// Serves one connection: answers each line with `reply(line)` and
    /// returns the lines received.
    fn serve_lines(
        listener: impl FnOnce() -> Box<dyn ReadWrite>,
        reply: fn(&str) -> &'static [u8],
    ) -> thread::JoinHandle<Vec<String>> {
        let stream = listener();
        thread::spawn(move || {
            let mut stream = stream;
            let mut received = Vec::new();
            let mut reader = BufReader::new(stream.try_clone_box());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return received;
                }
                let line = line.trim_end().to_string();
                stream.write_all(reply(&line)).unwrap();
                received.push(line);
            }
        })
    }

    trait ReadWrite: Read + Write + Send {
        fn try_clone_box(&self) -> Box<dyn ReadWrite>;
    }

    impl ReadWrite for std::net::TcpStream {
        fn try_clone_box(&self) -> Box<dyn ReadWrite> {
            Box::new(self.try_clone().unwrap())
        }
    }

    impl ReadWrite for UnixStream {
        fn try_clone_box(&self) -> Box<dyn ReadWrite> {
            Box::new(self.try_clone().unwrap())
        }
    }

    fn token() -> Token {
        Token::parse("s3cret", "test").unwrap()
    }

    #[test]
    fn the_token_goes_first() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = local(&listener);
        let connect = thread::spawn(move || {
            Connection::open(&address, Duration::from_secs(5), Some(&token()))
                .and_then(|mut c| c.ask("status"))
        });
        let (stream, _) = listener.accept().unwrap();
        let server = serve_lines(move || Box::new(stream), |_| b"OK\r\n.\r\n");
        let answer = connect.join().unwrap().unwrap();
        assert_eq!(answer.lines, ["OK"]);
        assert_eq!(server.join().unwrap(), ["auth s3cret", "status"]);
    }

    #[test]
    fn a_refused_token_is_an_auth_failure() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = local(&listener);
        let connect = thread::spawn(move || {
            Connection::open(&address, Duration::from_secs(5), Some(&token()))
        });
        let (stream, _) = listener.accept().unwrap();
        let server = serve_lines(move || Box::new(stream), |_| b"ERR unauthorized\r\n.\r\n");
        let Err(failure) = connect.join().unwrap() else {
            panic!("a refused token must fail the connection");
        };
        assert!(matches!(failure, Failure::Auth(_)), "{failure:?}");
        assert!(
            failure.to_string().contains("ERR unauthorized"),
            "{failure}"
        );
        drop(server);
    }

    #[test]
    fn talks_over_a_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let address = ServerAddress::unix(&path);
        let connect = thread::spawn(move || {
            let mut connection = Connection::open(&address, Duration::from_secs(5), None)?;
            let answer = connection.ask("status")?;
            Ok::<_, Failure>((answer, connection.is_stale()))
        });
        let (stream, _) = listener.accept().unwrap();
        let server = serve_lines(move || Box::new(stream), |_| b"job  0  1\r\n.\r\n");
        let (answer, stale) = connect.join().unwrap().unwrap();
        assert_eq!(answer.lines, ["job  0  1"]);
        assert!(!stale);
        assert_eq!(server.join().unwrap(), ["status"]);
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
        let mut connection = Connection::open(&address, Duration::from_millis(200), None).unwrap();
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
        let Err(err) = Connection::open(&address, Duration::from_secs(5), None) else {
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
        let connection = Connection::open(&address, Duration::from_secs(5), None).unwrap();
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
