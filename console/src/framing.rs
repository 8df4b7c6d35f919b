//! Framing of the console's line protocol, independent of sockets.
//!
//! A command is one line ending in LF. An answer is zero or more lines and
//! then a line holding only `.`; an error answer is one line starting with
//! `ERR`. The server ends its lines with CRLF (Gearman::Driver's POE filter
//! wrote network newlines), so both CRLF and LF are accepted and stripped.
//! `quit` is the exception: the server closes the connection instead of
//! sending `.`, so for it the end of the stream ends the answer.

use std::io::{self, BufRead, Read};

/// The line that ends every answer but `quit`'s.
pub const END_OF_ANSWER: &str = ".";

/// A server sending a line longer than this is broken or not a console;
/// the limit keeps such a peer from filling memory.
pub const MAX_ANSWER_LINE: usize = 1024 * 1024;

/// One server's answer to one command, without line ends and without the
/// closing `.`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub lines: Vec<String>,
}

impl Answer {
    /// Whether the server refused the command (`ERR ...`).
    pub fn is_error(&self) -> bool {
        self.lines
            .first()
            .is_some_and(|line| line.starts_with("ERR"))
    }
}

/// Whether the server answers `command` by closing the connection.
pub fn closes_connection(command: &str) -> bool {
    command.split_whitespace().next() == Some("quit")
}

/// The bytes that send `command`, refusing line breaks: they would smuggle
/// a second command into the one the user meant.
pub fn encode_command(command: &str) -> io::Result<Vec<u8>> {
    if command.contains(['\n', '\r']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a command cannot contain a line break",
        ));
    }
    let mut bytes = Vec::with_capacity(command.len() + 1);
    bytes.extend_from_slice(command.as_bytes());
    bytes.push(b'\n');
    Ok(bytes)
}

/// Reads one answer. With `ends_with_close` (the answer to `quit`), the end
/// of the stream is a normal end; otherwise it is an error, because the
/// answer was cut short.
pub fn read_answer<R: BufRead>(reader: &mut R, ends_with_close: bool) -> io::Result<Answer> {
    let mut answer = Answer::default();
    loop {
        match read_line(reader)? {
            Some(line) if line == END_OF_ANSWER => return Ok(answer),
            Some(line) => answer.lines.push(line),
            None if ends_with_close => return Ok(answer),
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection before the end of the answer",
                ))
            }
        }
    }
}

/// One line without its CRLF or LF; `None` at the end of the stream.
/// A last line without a line end still counts as a line.
fn read_line<R: BufRead>(reader: &mut R) -> io::Result<Option<String>> {
    let mut bytes = Vec::new();
    let limit = MAX_ANSWER_LINE as u64 + 2;
    reader.by_ref().take(limit).read_until(b'\n', &mut bytes)?;
    if bytes.is_empty() {
        return Ok(None);
    }
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.len() > MAX_ANSWER_LINE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the server sent a line longer than {MAX_ANSWER_LINE} bytes"),
        ));
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer_of(wire: &[u8]) -> io::Result<Answer> {
        read_answer(&mut &wire[..], false)
    }

    #[test]
    fn crlf_lines_up_to_the_dot() {
        let answer = answer_of(b"job_a  0  5  0\r\njob_b  1  2  1\r\n.\r\n").unwrap();
        assert_eq!(answer.lines, ["job_a  0  5  0", "job_b  1  2  1"]);
        assert!(!answer.is_error());
    }

    #[test]
    fn plain_lf_lines_too() {
        assert_eq!(answer_of(b"OK\n.\n").unwrap().lines, ["OK"]);
    }

    #[test]
    fn empty_answer_is_just_the_dot() {
        assert_eq!(answer_of(b".\r\n").unwrap(), Answer::default());
    }

    #[test]
    fn trailing_spaces_of_a_status_line_are_kept() {
        let answer = answer_of(b"job  0  5  0  1970-01-01T00:00:00  \r\n.\r\n").unwrap();
        assert_eq!(answer.lines, ["job  0  5  0  1970-01-01T00:00:00  "]);
    }

    #[test]
    fn err_line_marks_an_error() {
        let answer = answer_of(b"ERR unknown_command: bad\r\n.\r\n").unwrap();
        assert!(answer.is_error());
        assert_eq!(answer.lines, ["ERR unknown_command: bad"]);
    }

    #[test]
    fn err_only_counts_at_the_start_of_the_first_line() {
        assert!(!answer_of(b"OK\r\nERR later\r\n.\r\n").unwrap().is_error());
        assert!(!answer_of(b"job ERR\r\n.\r\n").unwrap().is_error());
    }

    #[test]
    fn one_answer_at_a_time() {
        let mut wire: &[u8] = b"first\r\n.\r\nsecond\r\n.\r\n";
        assert_eq!(read_answer(&mut wire, false).unwrap().lines, ["first"]);
        assert_eq!(read_answer(&mut wire, false).unwrap().lines, ["second"]);
    }

    #[test]
    fn end_of_stream_before_the_dot_is_an_error() {
        let err = answer_of(b"job_a  0  5  0\r\n").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            answer_of(b"").unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn end_of_stream_ends_the_answer_to_quit() {
        assert_eq!(read_answer(&mut &b""[..], true).unwrap(), Answer::default());
        let answer = read_answer(&mut &b"bye\r\nno newline"[..], true).unwrap();
        assert_eq!(answer.lines, ["bye", "no newline"]);
    }

    #[test]
    fn overlong_lines_are_refused() {
        let mut wire = vec![b'x'; MAX_ANSWER_LINE + 10];
        wire.extend_from_slice(b"\r\n.\r\n");
        let err = answer_of(&wire).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_fine() {
        let mut wire = vec![b'x'; MAX_ANSWER_LINE];
        wire.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(answer_of(&wire).unwrap().lines[0].len(), MAX_ANSWER_LINE);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let answer = answer_of(b"caf\xe9\r\n.\r\n").unwrap();
        assert_eq!(answer.lines, ["caf\u{fffd}"]);
    }

    #[test]
    fn commands_are_lf_terminated_and_single_line() {
        assert_eq!(encode_command("status").unwrap(), b"status\n");
        assert_eq!(encode_command("").unwrap(), b"\n");
        assert!(encode_command("status\nshutdown").is_err());
        assert!(encode_command("status\r").is_err());
    }

    #[test]
    fn only_quit_closes() {
        assert!(closes_connection("quit"));
        assert!(closes_connection("  quit now"));
        assert!(!closes_connection("quitter"));
        assert!(!closes_connection("status"));
    }
}
