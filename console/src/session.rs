//! The interactive console's connections: one per server, kept open
//! between commands, as telnet users of Gearman::Driver had them.
//!
//! A server that goes away must not end the session: the others keep
//! working, the loss is reported once, and the next command reconnects
//! (sending the token again, as every new connection does).
//! Problems go to stderr, prefixed with the server's address.

use std::time::Duration;

use crate::address::ServerAddress;
use crate::connection::{Connection, Failure};
use crate::framing::Answer;
use crate::token::Token;

/// One server's answer to a command sent to all of them.
#[derive(Debug)]
pub struct ServerAnswer {
    pub address: ServerAddress,
    pub answer: Answer,
}

pub struct Session {
    servers: Vec<Server>,
    timeout: Duration,
    /// Sent as `auth` on every new connection, reconnections included.
    token: Option<Token>,
}

struct Server {
    address: ServerAddress,
    connection: Option<Connection>,
}

impl Session {
    /// Connects to every server; those that cannot be reached now are
    /// reported and tried again on the first command.
    pub fn open(addresses: Vec<ServerAddress>, timeout: Duration, token: Option<Token>) -> Session {
        let mut servers: Vec<Server> = addresses
            .into_iter()
            .map(|address| Server {
                address,
                connection: None,
            })
            .collect();
        for server in &mut servers {
            server.connect(timeout, token.as_ref());
        }
        Session {
            servers,
            timeout,
            token,
        }
    }

    /// Sends `command` to every server, reconnecting where needed, and
    /// returns the answers of those that gave one, in server order.
    pub fn ask_all(&mut self, command: &str) -> Vec<ServerAnswer> {
        let (timeout, token) = (self.timeout, self.token.as_ref());
        self.servers
            .iter_mut()
            .filter_map(|server| {
                server.reconnect_if_needed(timeout, token);
                let answer = server.ask(command)?;
                Some(ServerAnswer {
                    address: server.address.clone(),
                    answer,
                })
            })
            .collect()
    }

    /// The job names that the connected servers report in `status`, sorted
    /// and without repeats. Disconnected servers are left alone: trying
    /// them before every prompt would repeat the same error endlessly.
    pub fn job_names(&mut self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for server in &mut self.servers {
            if server.connection.as_ref().is_some_and(Connection::is_stale) {
                server.lose(None);
            }
            if server.connection.is_none() {
                continue;
            }
            if let Some(answer) = server.ask("status") {
                names.extend(job_names_in_status(&answer));
            }
        }
        names.sort();
        names.dedup();
        names
    }
}

impl Server {
    fn connect(&mut self, timeout: Duration, token: Option<&Token>) {
        match Connection::open(&self.address, timeout, token) {
            Ok(connection) => self.connection = Some(connection),
            Err(failure) => {
                eprintln!(
                    "{}: {failure}; will retry on the next command",
                    self.address
                );
            }
        }
    }

    fn reconnect_if_needed(&mut self, timeout: Duration, token: Option<&Token>) {
        if self.connection.as_ref().is_some_and(Connection::is_stale) {
            eprintln!(
                "{}: the server closed the connection, reconnecting",
                self.address
            );
            self.connection = None;
        }
        if self.connection.is_none() {
            self.connect(timeout, token);
        }
    }

    /// Asks over the current connection, if any; a failure drops it.
    fn ask(&mut self, command: &str) -> Option<Answer> {
        match self.connection.as_mut()?.ask(command) {
            Ok(answer) => Some(answer),
            Err(failure) => {
                self.lose(Some(&failure));
                None
            }
        }
    }

    fn lose(&mut self, reason: Option<&Failure>) {
        self.connection = None;
        let reason = reason.map(|r| format!(" ({r})")).unwrap_or_default();
        eprintln!(
            "{}: connection lost, will reconnect on the next command{reason}",
            self.address
        );
    }
}

/// The first column of each status line; an `ERR` answer names no jobs.
fn job_names_in_status(answer: &Answer) -> Vec<String> {
    if answer.is_error() {
        return Vec::new();
    }
    answer
        .lines
        .iter()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(lines: &[&str]) -> Answer {
        Answer {
            lines: lines.iter().map(|l| l.to_string()).collect(),
        }
    }

    #[test]
    fn job_names_are_the_first_column() {
        let status = answer(&[
            "GDExamples::Convert::convert_to_gif   0  5  0  2010-01-29T20:37:12  2010-01-29T20:37:12  ERROR: x",
            "GDExamples::Convert::convert_to_jpeg  0  5  3  2010-01-29T20:37:17  1970-01-01T00:00:00  ",
            "",
        ]);
        assert_eq!(
            job_names_in_status(&status),
            [
                "GDExamples::Convert::convert_to_gif",
                "GDExamples::Convert::convert_to_jpeg"
            ]
        );
    }

    #[test]
    fn an_error_names_no_jobs() {
        assert!(job_names_in_status(&answer(&["ERR too_many_connections"])).is_empty());
    }
}
