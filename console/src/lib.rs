//! `gearman-driver-console`: the client of gearman-driver's management
//! console, interactive with readline or one-shot for scripts, talking to
//! one or many supervisors at once.
//!
//! # Layout
//!
//! - [`cli`]: flags, defaults and `--help`, the user's reference.
//! - [`address`]: `--server` values (`host`, `host:port`, `[ipv6]:port`,
//!   lists) and their printed form, which prefixes every answer line.
//! - [`framing`]: the line protocol without sockets: commands out, answers
//!   in, up to the `.` line (or the close, for `quit`).
//! - [`connection`]: one TCP or Unix-socket connection with every wait
//!   bounded, sending the token first.
//! - [`token`]: the admin token from `--token-file` or `GEARMAN_DRIVER_TOKEN`.
//! - [`output`]: the `host:port> ` prefix.
//! - [`oneshot`]: one command to every server, and the exit status.
//! - [`interactive`]: the `console> ` loop; it uses [`session`] (persistent
//!   connections that reconnect), [`completion`] (Tab), [`input`] (what a
//!   line asks for), [`pipeline`] (`command | sh pipeline`) and [`history`].

pub mod address;
pub mod cli;
pub mod completion;
pub mod connection;
pub mod framing;
pub mod history;
pub mod input;
pub mod interactive;
pub mod oneshot;
pub mod output;
pub mod pipeline;
pub mod session;
pub mod token;

use std::process::ExitCode;

use cli::Cli;
use framing::encode_command;

/// Runs the client as the command line asks and returns its exit status.
pub fn run(cli: &Cli) -> ExitCode {
    let servers = cli.servers();
    let token = match token::resolve(
        cli.token_file.as_deref(),
        std::env::var(token::TOKEN_ENV).ok(),
    ) {
        Ok(token) => token,
        Err(err) => {
            eprintln!("gearman-driver-console: {err}");
            return ExitCode::from(2);
        }
    };
    match cli.one_shot_command() {
        Some(command) => {
            if let Err(err) = encode_command(&command) {
                eprintln!("gearman-driver-console: {err}");
                return ExitCode::from(2);
            }
            oneshot::run(&servers, &command, cli.timeout, token.as_ref()).exit_code()
        }
        None => interactive::run(servers, cli.timeout, cli.history.clone(), token),
    }
}
