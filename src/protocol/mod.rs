//! The stdio worker protocol as the supervisor speaks it: the `JOB` header it
//! writes ([`job_header`]) and a decoder for the worker's answers
//! ([`WorkerCodec`], yielding [`WorkerFrame`]s).
//!
//! The decoder is a `tokio_util` codec rather than ad-hoc reads so that the
//! per-process loop can `select!` on it safely: partial frames stay buffered
//! across wake-ups, and payloads are split off the read buffer without copying.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// Largest payload a worker may send in one frame.
pub const MAX_FRAME_PAYLOAD: usize = 1 << 30;
/// Longest header line; anything longer is not this protocol.
const MAX_HEADER_LINE: usize = 256;

/// One message from a worker process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerFrame {
    Ready,
    Data(Bytes),
    Warning(Bytes),
    Status(Bytes, Bytes),
    Done(Bytes),
    Fail(Bytes),
}

/// Output that does not follow the protocol; the process is killed for it.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("unexpected output: \"{0}\"")]
    Garbage(String),
    #[error("frame size {0} is beyond the 1 GiB limit")]
    TooLarge(u64),
    #[error("output ends in the middle of a frame: \"{0}\"")]
    Truncated(String),
    #[error("reading worker output: {0}")]
    Io(#[from] std::io::Error),
}

/// Escapes up to the first 200 bytes for a log line.
pub fn escape_for_log(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(200)];
    let mut out: String = shown.escape_ascii().to_string();
    if bytes.len() > 200 {
        out.push_str("...");
    }
    out
}

#[derive(Debug, Default)]
pub struct WorkerCodec {
    /// A header already parsed whose payload has not fully arrived.
    pending: Option<(FrameKind, usize)>,
}

#[derive(Debug, Clone, Copy)]
enum FrameKind {
    Data,
    Warning,
    Done,
    Fail,
}

impl WorkerCodec {
    pub fn new() -> Self {
        Self::default()
    }

    fn parse_header(line: &[u8]) -> Result<Header, ProtocolError> {
        let garbage = || ProtocolError::Garbage(escape_for_log(line));
        let text = std::str::from_utf8(line).map_err(|_| garbage())?;
        let mut parts = text.split(' ');
        let word = parts.next().unwrap_or("");
        let args: Vec<&str> = parts.collect();
        let size = |args: &[&str]| -> Result<usize, ProtocolError> {
            match args {
                [n] if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    let n: u64 = n.parse().map_err(|_| garbage())?;
                    if n > MAX_FRAME_PAYLOAD as u64 {
                        Err(ProtocolError::TooLarge(n))
                    } else {
                        Ok(n as usize)
                    }
                }
                _ => Err(garbage()),
            }
        };
        match word {
            "READY" if args.is_empty() => Ok(Header::Ready),
            "DATA" => Ok(Header::Sized(FrameKind::Data, size(&args)?)),
            "WARNING" => Ok(Header::Sized(FrameKind::Warning, size(&args)?)),
            "DONE" => Ok(Header::Sized(FrameKind::Done, size(&args)?)),
            "FAIL" => Ok(Header::Sized(FrameKind::Fail, size(&args)?)),
            "STATUS" => match args.as_slice() {
                [n, d] if is_number(n) && is_number(d) => Ok(Header::Status(
                    Bytes::copy_from_slice(n.as_bytes()),
                    Bytes::copy_from_slice(d.as_bytes()),
                )),
                _ => Err(garbage()),
            },
            _ => Err(garbage()),
        }
    }
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())
}

enum Header {
    Ready,
    Status(Bytes, Bytes),
    Sized(FrameKind, usize),
}

impl Decoder for WorkerCodec {
    type Item = WorkerFrame;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<WorkerFrame>, ProtocolError> {
        if self.pending.is_none() {
            let Some(newline) = src
                .iter()
                .take(MAX_HEADER_LINE + 1)
                .position(|&b| b == b'\n')
            else {
                if src.len() > MAX_HEADER_LINE {
                    return Err(ProtocolError::Garbage(escape_for_log(src)));
                }
                return Ok(None);
            };
            let line = src.split_to(newline + 1);
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            match Self::parse_header(line)? {
                Header::Ready => return Ok(Some(WorkerFrame::Ready)),
                Header::Status(n, d) => return Ok(Some(WorkerFrame::Status(n, d))),
                Header::Sized(kind, size) => self.pending = Some((kind, size)),
            }
        }
        let (kind, size) = self.pending.expect("set above");
        if src.len() < size {
            src.reserve(size - src.len());
            return Ok(None);
        }
        self.pending = None;
        let payload = src.split_to(size).freeze();
        Ok(Some(match kind {
            FrameKind::Data => WorkerFrame::Data(payload),
            FrameKind::Warning => WorkerFrame::Warning(payload),
            FrameKind::Done => WorkerFrame::Done(payload),
            FrameKind::Fail => WorkerFrame::Fail(payload),
        }))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<WorkerFrame>, ProtocolError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && self.pending.is_none() => Ok(None),
            None => {
                let shown = escape_for_log(src);
                src.advance(src.len());
                self.pending = None;
                Err(ProtocolError::Truncated(shown))
            }
        }
    }
}

/// `JOB <name> <handle> <unique> <size>\n`.
pub fn job_header(name: &str, handle: &[u8], unique: &[u8], size: usize) -> Vec<u8> {
    let mut header = Vec::with_capacity(name.len() + handle.len() + unique.len() + 32);
    header.extend_from_slice(b"JOB ");
    header.extend_from_slice(name.as_bytes());
    header.push(b' ');
    header.extend_from_slice(handle);
    header.push(b' ');
    header.extend_from_slice(percent_encode_unique(unique).as_bytes());
    header.push(b' ');
    header.extend_from_slice(size.to_string().as_bytes());
    header.push(b'\n');
    header
}

/// The client's unique id, percent-encoded (bytes outside `!`..`~` and `%`
/// itself), or `-` when empty.
pub fn percent_encode_unique(unique: &[u8]) -> String {
    if unique.is_empty() {
        return "-".to_string();
    }
    if unique == b"-" {
        // A literal "-" must not read as "no unique id".
        return "%2D".to_string();
    }
    let mut out = String::with_capacity(unique.len());
    for &b in unique {
        if (b'!'..=b'~').contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<Vec<WorkerFrame>, ProtocolError> {
        let mut codec = WorkerCodec::new();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        // Feed one byte at a time: framing must not depend on read boundaries.
        for &b in input {
            buf.extend_from_slice(&[b]);
            while let Some(f) = codec.decode(&mut buf)? {
                out.push(f);
            }
        }
        if let Some(f) = codec.decode_eof(&mut buf)? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn decodes_every_frame_kind() {
        let frames =
            decode_all(b"READY\nDATA 3\na\nbSTATUS 1 2\nWARNING 0\nDONE 4\n\0\0\n\0FAIL 2\nno")
                .unwrap();
        assert_eq!(
            frames,
            vec![
                WorkerFrame::Ready,
                WorkerFrame::Data(Bytes::from_static(b"a\nb")),
                WorkerFrame::Status(Bytes::from_static(b"1"), Bytes::from_static(b"2")),
                WorkerFrame::Warning(Bytes::new()),
                WorkerFrame::Done(Bytes::from_static(b"\0\0\n\0")),
                WorkerFrame::Fail(Bytes::from_static(b"no")),
            ]
        );
    }

    #[test]
    fn garbage_is_an_error_with_escaped_text() {
        let err = decode_all(b"hello world\n").unwrap_err();
        assert_eq!(err.to_string(), "unexpected output: \"hello world\"");
        assert!(matches!(
            decode_all(b"DONE x\n"),
            Err(ProtocolError::Garbage(_))
        ));
        assert!(matches!(
            decode_all(b"DONE -1\n"),
            Err(ProtocolError::Garbage(_))
        ));
        assert!(matches!(
            decode_all(b"STATUS 1\n"),
            Err(ProtocolError::Garbage(_))
        ));
        assert!(matches!(
            decode_all(b"READY 1\n"),
            Err(ProtocolError::Garbage(_))
        ));
    }

    #[test]
    fn oversize_and_truncated_frames() {
        assert!(matches!(
            decode_all(b"DONE 2000000000\n"),
            Err(ProtocolError::TooLarge(_))
        ));
        assert!(matches!(
            decode_all(b"DONE 5\nab"),
            Err(ProtocolError::Truncated(_))
        ));
        assert!(matches!(
            decode_all(&[b'x'; 300]),
            Err(ProtocolError::Garbage(_))
        ));
    }

    #[test]
    fn header_percent_encodes_unique() {
        assert_eq!(job_header("f", b"H:1", b"", 3), b"JOB f H:1 - 3\n");
        assert_eq!(
            job_header("f", b"H:1", b"a b%\n~", 0),
            b"JOB f H:1 a%20b%25%0A~ 0\n"
        );
    }
}
