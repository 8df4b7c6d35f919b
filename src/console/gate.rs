//! The console's `auth` rule, one [`Gate`] per connection.
//!
//! With an admin token, a TCP connection must send `auth <token>` before
//! anything else: the right token answers `OK` and opens the gate; any
//! other command answers `ERR unauthorized` (and never reaches the
//! supervisor); a wrong token answers `ERR unauthorized` after
//! [`WRONG_TOKEN_DELAY`], and the [`MAX_FAILURES`]th closes the connection.
//! `quit` always works. A connection that needs no token (the Unix socket,
//! whose file permissions decide, or any connection while no token is
//! configured) is open from the start, and `auth` there just answers `OK`,
//! so a client may send its token without knowing whether it is needed.
//!
//! The gate is pure: the connection carries out the delay, the answers and
//! the close, each in its own task, so a slow or hostile client delays only
//! itself.

use std::time::Duration;

use crate::access::AdminToken;
use crate::command::Request;

use super::syntax;

/// How long a wrong token waits for its answer.
pub const WRONG_TOKEN_DELAY: Duration = Duration::from_secs(1);
/// Wrong tokens a connection may send; the last closes it.
pub const MAX_FAILURES: u32 = 3;

/// What to do with one line.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed: the supervisor answers it.
    Forward(Request),
    /// `auth` with the right token, or where none is needed: `OK`.
    Welcome,
    /// `auth` with a wrong token: `ERR unauthorized` after the delay; the
    /// connection closes after answering when `last`.
    WrongToken { failures: u32, last: bool },
    /// A command before `auth`: `ERR unauthorized` at once.
    Unauthorized(Request),
    /// `quit` before `auth`: close without an answer.
    Close,
}

#[derive(Debug)]
pub struct Gate {
    /// Whether this door asks for the token at all (TCP does, the Unix
    /// socket does not).
    asks_for_token: bool,
    authorized: bool,
    failures: u32,
}

impl Gate {
    /// A gate for a TCP connection: closed while a token is configured.
    pub fn tcp() -> Gate {
        Gate {
            asks_for_token: true,
            authorized: false,
            failures: 0,
        }
    }

    /// A gate that is always open (the Unix socket).
    pub fn open() -> Gate {
        Gate {
            asks_for_token: false,
            authorized: true,
            failures: 0,
        }
    }

    /// Judges one line (without its line end) against the token in force
    /// now (`None`: no token configured).
    pub fn check(&mut self, line: &str, token: Option<&AdminToken>) -> Verdict {
        let candidate = auth_argument(line);
        let token = match token {
            Some(t) if self.asks_for_token && !self.authorized => t,
            _ => {
                return match candidate {
                    Some(_) => Verdict::Welcome,
                    None => Verdict::Forward(syntax::parse(line)),
                }
            }
        };
        match candidate {
            Some(candidate) if token.matches(candidate.as_bytes()) => {
                self.authorized = true;
                Verdict::Welcome
            }
            Some(_) => {
                self.failures += 1;
                Verdict::WrongToken {
                    failures: self.failures,
                    last: self.failures >= MAX_FAILURES,
                }
            }
            None => match syntax::parse(line) {
                Request::Quit => Verdict::Close,
                request => Verdict::Unauthorized(request),
            },
        }
    }
}

/// The token of an `auth` line (possibly empty), or `None` for any other line.
fn auth_argument(line: &str) -> Option<&str> {
    let line = line.trim();
    let rest = line.strip_prefix("auth")?;
    if rest.is_empty() {
        return Some("");
    }
    rest.starts_with(char::is_whitespace).then(|| rest.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> AdminToken {
        AdminToken::new(b"s3cret").unwrap()
    }

    #[test]
    fn auth_opens_the_gate() {
        let t = token();
        let mut gate = Gate::tcp();
        assert_eq!(
            gate.check("status", Some(&t)),
            Verdict::Unauthorized(Request::Status)
        );
        assert_eq!(gate.check("auth s3cret", Some(&t)), Verdict::Welcome);
        assert_eq!(
            gate.check("status", Some(&t)),
            Verdict::Forward(Request::Status)
        );
        assert_eq!(gate.check("auth again", Some(&t)), Verdict::Welcome);
    }

    #[test]
    fn three_wrong_tokens_and_out() {
        let t = token();
        let mut gate = Gate::tcp();
        let wrong = |failures, last| Verdict::WrongToken { failures, last };
        assert_eq!(gate.check("auth nope", Some(&t)), wrong(1, false));
        assert_eq!(gate.check("auth", Some(&t)), wrong(2, false));
        assert_eq!(
            gate.check("shutdown", Some(&t)),
            Verdict::Unauthorized(Request::Shutdown)
        );
        assert_eq!(gate.check("auth s3cret x", Some(&t)), wrong(3, true));
    }

    #[test]
    fn quit_works_before_auth() {
        assert_eq!(Gate::tcp().check("quit", Some(&token())), Verdict::Close);
    }

    #[test]
    fn without_a_token_or_on_the_socket_everything_passes() {
        let mut tcp = Gate::tcp();
        assert_eq!(tcp.check("status", None), Verdict::Forward(Request::Status));
        assert_eq!(tcp.check("auth whatever", None), Verdict::Welcome);
        let mut socket = Gate::open();
        let t = token();
        assert_eq!(
            socket.check("shutdown", Some(&t)),
            Verdict::Forward(Request::Shutdown)
        );
        assert_eq!(socket.check("auth wrong", Some(&t)), Verdict::Welcome);
    }

    #[test]
    fn only_the_word_auth_is_auth() {
        assert_eq!(auth_argument("auth  tok "), Some("tok"));
        assert_eq!(auth_argument("auth"), Some(""));
        assert_eq!(auth_argument("authx tok"), None);
        assert_eq!(auth_argument("status"), None);
        let mut gate = Gate::tcp();
        assert_eq!(
            gate.check("authx tok", Some(&token())),
            Verdict::Unauthorized(Request::Unknown {
                command: "authx".into()
            })
        );
    }
}
