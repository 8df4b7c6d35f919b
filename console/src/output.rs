//! How answers look on the terminal: every line prefixed with the server it
//! came from, as Gearman::Driver's console printed them, so the output of
//! many servers can be told apart and filtered with grep.

use std::io::{self, Write};

use crate::address::ServerAddress;
use crate::framing::Answer;

/// One answer line as printed: `host:port> line`.
pub fn prefixed(address: &ServerAddress, line: &str) -> String {
    format!("{address}> {line}")
}

/// Writes all lines of `answer`, prefixed, each ending in a newline.
pub fn write_answer(
    out: &mut impl Write,
    address: &ServerAddress,
    answer: &Answer,
) -> io::Result<()> {
    for line in &answer.lines {
        writeln!(out, "{}", prefixed(address, line))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_carries_the_normalized_address() {
        let answer = Answer {
            lines: vec!["OK".into(), "ERR x".into()],
        };
        let mut out = Vec::new();
        write_answer(&mut out, &ServerAddress::new("gd1", 47300), &answer).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "gd1:47300> OK\ngd1:47300> ERR x\n"
        );
    }

    #[test]
    fn ipv6_keeps_its_brackets() {
        assert_eq!(prefixed(&ServerAddress::new("::1", 1), "OK"), "[::1]:1> OK");
    }
}
