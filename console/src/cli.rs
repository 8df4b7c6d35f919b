//! The command line: flags, their defaults, and `--help`, which is the
//! reference for the client.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

use crate::address::{parse_server_list, ServerAddress, DEFAULT_PORT};

const ABOUT: &str = "Talk to the management console of one or more gearman-driver supervisors";

const LONG_ABOUT: &str = "\
Talk to the management console of one or more gearman-driver supervisors.

With a COMMAND, sends it to every server at once, prints each answer line \
prefixed with the server's `host:port> ` (servers in the order given), and \
exits. Without one, opens an interactive `console> ` prompt connected to all \
servers at once.";

/// Shown by both `-h` and `--help`: scripts care about it most.
macro_rules! exit_status_help {
    () => {
        "\
Exit status (with a COMMAND):
  0  every server answered, none with ERR
  1  at least one server answered ERR
  2  at least one server could not be reached, did not answer within --timeout,
     or cut its answer short (2 wins over 1); also a mistake on the command line"
    };
}

const EXIT_STATUS: &str = exit_status_help!();

const AFTER_LONG_HELP: &str = concat!(
    "\
Console commands (answered by the server; `help` lists what it knows):
  status                           one line per job: name, min, max, processes,
                                   last run, last error, error message
  show <job>                       the job's status line, then one line per PID
  ps                               every process and its state
  set_min_processes <job> <n>      change a job's minimum number of processes
  set_max_processes <job> <n>      change a job's maximum number of processes
  set_processes <job> <min> <max>  change both at once
  kill <pid> [<pid> ...]           SIGTERM to those processes of the supervisor
  killall <job> [<job> ...]        SIGTERM to every process of the jobs (`*`: all)
  reload                           re-read the config and worker files
  shutdown                         stop the supervisor
  auth <token>                     prove the admin token (sent by the client
                                   itself with --token-file)
  quit                             close the connection

Interactive mode:
  - Line editing with Emacs keys; Up/Down and Ctrl-R search the history,
    which is kept in ~/.gearman_driver_history (see --history).
  - Tab completes command names, and job names after show, set_min_processes,
    set_max_processes, set_processes and killall. The job names come from
    `status`, asked again before every prompt.
  - `COMMAND | PIPELINE` sends COMMAND and feeds the answer lines, prefixed as
    above, to `sh -c PIPELINE`; for example `status | grep jpeg`.
  - One connection per server stays open. A server that goes away is reported
    and reconnected on the next command (with `auth` again, given a token).
  - `quit`, `exit` or Ctrl-D leave with exit status 0; Ctrl-C clears the line.

",
    exit_status_help!(),
    "

Examples:
  gearman-driver-console status
  gearman-driver-console --server 'gd1 gd2:47301' \\
      set_processes GDExamples::Convert::convert_to_gif 2 10
  gearman-driver-console -s '[::1]:47300' show GDExamples::Convert::convert_to_gif
  gearman-driver-console --server unix:/run/gearman-driver/console.sock status
  GEARMAN_DRIVER_TOKEN=... gearman-driver-console --server gd1 killall '*'
  gearman-driver-console --server gd1,gd2"
);

#[derive(Debug, Parser)]
#[command(
    name = "gearman-driver-console",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXIT_STATUS,
    after_long_help = AFTER_LONG_HELP,
)]
pub struct Cli {
    /// Console server(s) to talk to [default: localhost:47300]
    ///
    /// One value may list several addresses separated by spaces or commas,
    /// and the flag may repeat. An address is HOST, HOST:PORT, [IPV6] or
    /// [IPV6]:PORT; the port defaults to 47300. unix:PATH, or any address
    /// with a `/` in it, is the driver's console socket. Commands go to the
    /// servers in the order given; an address given twice is used once.
    #[arg(
        short = 's',
        long = "server",
        value_name = "ADDRESSES",
        value_parser = parse_server_arg,
        action = ArgAction::Append,
    )]
    servers: Vec<ServerList>,

    /// Give up on a server after this many seconds without progress
    ///
    /// Bounds connecting and every read and write, so a hung supervisor
    /// cannot hang a script. Fractions are allowed (0.5).
    #[arg(
        short = 't',
        long,
        value_name = "SECONDS",
        default_value = "10",
        value_parser = parse_timeout,
    )]
    pub timeout: Duration,

    /// Send `auth <token>` first on every connection, the token being FILE's first line
    ///
    /// Needed when the driver has an admin_token_file and is reached over
    /// TCP (its Unix socket needs none). Without this flag the token is taken
    /// from the GEARMAN_DRIVER_TOKEN environment variable, if set.
    #[arg(long = "token-file", value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Keep the interactive history in FILE [default: ~/.gearman_driver_history]
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,

    /// Send this command to every server and exit (words are joined by spaces)
    ///
    /// Without a COMMAND the client is interactive. Flags go before COMMAND:
    /// everything from COMMAND on is sent as it is.
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<String>,
}

impl Cli {
    /// The servers in the order given, without repeats; localhost when
    /// none was given.
    pub fn servers(&self) -> Vec<ServerAddress> {
        let mut servers: Vec<ServerAddress> = Vec::new();
        for address in self.servers.iter().flat_map(|list| &list.0) {
            if !servers.contains(address) {
                servers.push(address.clone());
            }
        }
        if servers.is_empty() {
            servers.push(ServerAddress::new("localhost", DEFAULT_PORT));
        }
        servers
    }

    /// The one-shot command, or `None` for interactive mode.
    pub fn one_shot_command(&self) -> Option<String> {
        if self.command.is_empty() {
            None
        } else {
            Some(self.command.join(" "))
        }
    }
}

/// The addresses of one `--server` value.
#[derive(Debug, Clone)]
struct ServerList(Vec<ServerAddress>);

fn parse_server_arg(text: &str) -> Result<ServerList, String> {
    parse_server_list(text).map(ServerList)
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(seconds > 0.0 && seconds <= 86_400.0) {
        return Err(format!(
            "`{text}`: the timeout must be more than 0 and at most 86400 seconds"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("gearman-driver-console").chain(args.iter().copied()))
            .unwrap()
    }

    fn printed(servers: Vec<ServerAddress>) -> Vec<String> {
        servers.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn localhost_by_default() {
        assert_eq!(printed(parse(&[]).servers()), ["localhost:47300"]);
    }

    #[test]
    fn server_flags_add_up_in_order_without_repeats() {
        let cli = parse(&["--server", "a b:1", "-s", "c,a:47300", "--server=b:1"]);
        assert_eq!(printed(cli.servers()), ["a:47300", "b:1", "c:47300"]);
    }

    #[test]
    fn a_bad_server_is_a_usage_error() {
        let args = ["gearman-driver-console", "--server", "host:port"];
        let err = Cli::try_parse_from(args).unwrap_err();
        assert!(err.to_string().contains("not a port"), "{err}");
    }

    #[test]
    fn command_words_are_joined_and_may_look_like_flags() {
        let cli = parse(&["-s", "x", "set_processes", "job", "2", "10"]);
        assert_eq!(
            cli.one_shot_command().as_deref(),
            Some("set_processes job 2 10")
        );
        let cli = parse(&["kill", "--", "-1"]);
        assert_eq!(cli.one_shot_command().as_deref(), Some("kill -- -1"));
        assert_eq!(parse(&[]).one_shot_command(), None);
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse(&[]).timeout, Duration::from_secs(10));
        assert_eq!(parse(&["-t", "0.5"]).timeout, Duration::from_millis(500));
        for bad in ["0", "-1", "soon", "NaN", "1e9"] {
            let args = ["gearman-driver-console", "--timeout", bad];
            assert!(Cli::try_parse_from(args).is_err(), "{bad} accepted");
        }
    }
}
