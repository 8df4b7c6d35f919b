//! One-shot mode: send one command to every server at once, print the
//! answers in server order, and turn what happened into the exit status
//! scripts rely on.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use crate::address::ServerAddress;
use crate::connection::{Connection, Failure};
use crate::framing::Answer;
use crate::output::write_answer;
use crate::token::Token;

/// The worst thing that happened across all servers; the order of the
/// variants is their precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Every server answered without `ERR`.
    Answered,
    /// At least one server answered `ERR`.
    Refused,
    /// At least one server could not be asked or did not finish answering.
    Unreachable,
}

impl Outcome {
    pub fn exit_code(self) -> ExitCode {
        match self {
            Outcome::Answered => ExitCode::SUCCESS,
            Outcome::Refused => ExitCode::from(1),
            Outcome::Unreachable => ExitCode::from(2),
        }
    }

    fn of(result: &Result<Answer, Failure>) -> Outcome {
        match result {
            Ok(answer) if answer.is_error() => Outcome::Refused,
            Ok(_) => Outcome::Answered,
            // The server answered: ERR to the token.
            Err(Failure::Auth(_)) => Outcome::Refused,
            Err(_) => Outcome::Unreachable,
        }
    }
}

/// Sends `command` to every server at once, so that servers that do not
/// answer cost one `--timeout` between them, not one each. Answers go to
/// stdout in server order, each as soon as it and those before it are in;
/// failures go to stderr, naming the server.
pub fn run(
    servers: &[ServerAddress],
    command: &str,
    timeout: Duration,
    token: Option<&Token>,
) -> Outcome {
    std::thread::scope(|scope| {
        let asking: Vec<_> = servers
            .iter()
            .map(|address| scope.spawn(move || ask(address, command, timeout, token)))
            .collect();
        let stdout = io::stdout();
        let mut out = stdout.lock();
        let mut outcome = Outcome::Answered;
        for (address, asked) in servers.iter().zip(asking) {
            let result = asked.join().expect("asking a server does not panic");
            outcome = outcome.max(Outcome::of(&result));
            report(&mut out, address, result);
        }
        outcome
    })
}

fn report(out: &mut impl Write, address: &ServerAddress, result: Result<Answer, Failure>) {
    match result {
        Ok(answer) => {
            let printed = write_answer(out, address, &answer).and_then(|()| out.flush());
            // A reader that went away (`| head`) wants no more output;
            // the other servers still get the command.
            if let Err(err) = printed {
                if err.kind() != io::ErrorKind::BrokenPipe {
                    eprintln!("gearman-driver-console: cannot write the answer: {err}");
                }
            }
        }
        Err(failure) => eprintln!("gearman-driver-console: {address}: {failure}"),
    }
}

fn ask(
    address: &ServerAddress,
    command: &str,
    timeout: Duration,
    token: Option<&Token>,
) -> Result<Answer, Failure> {
    Connection::open(address, timeout, token)?.ask(command)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn answer(lines: &[&str]) -> Result<Answer, Failure> {
        Ok(Answer {
            lines: lines.iter().map(|l| l.to_string()).collect(),
        })
    }

    #[test]
    fn outcomes_of_single_answers() {
        assert_eq!(Outcome::of(&answer(&["OK"])), Outcome::Answered);
        assert_eq!(Outcome::of(&answer(&[])), Outcome::Answered);
        assert_eq!(
            Outcome::of(&answer(&["ERR invalid_job_name: x"])),
            Outcome::Refused
        );
        let lost = Err(Failure::Exchange(io::ErrorKind::UnexpectedEof.into()));
        assert_eq!(Outcome::of(&lost), Outcome::Unreachable);
        let refused = Err(Failure::Auth("ERR unauthorized".into()));
        assert_eq!(Outcome::of(&refused), Outcome::Refused);
    }

    #[test]
    fn unreachable_wins_over_refused_wins_over_answered() {
        assert_eq!(Outcome::Answered.max(Outcome::Refused), Outcome::Refused);
        assert_eq!(
            Outcome::Unreachable.max(Outcome::Refused),
            Outcome::Unreachable
        );
        assert_eq!(
            Outcome::Refused.max(Outcome::Unreachable),
            Outcome::Unreachable
        );
    }
}
