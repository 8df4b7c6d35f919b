//! Command-line flags. They mirror the driver config file's keys and win over
//! it; Perl's underscore spellings (`--console_port`, `--configfile`) are
//! accepted as aliases so existing init scripts keep working.
//!
//! Flags may stand before or after the subcommand (`gearman-driver
//! --namespaces NS run` as Gearman::Driver's users type it). clap reads
//! global flags on either side, but lets the subcommand's occurrence of a flag
//! replace the one before it; so [`Cli::parse_args`] first moves the
//! subcommand word to the front, and every flag is then read in one place
//! with clap's usual rules for repeats (`--namespaces A run --namespaces B`
//! selects both; `--server` twice is refused wherever the two stand).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::logging::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "gearman-driver",
    version,
    about = "Keeps pools of Gearman worker processes: scales them on gearmand's queue, reaps idle ones, and offers a telnet console.",
    after_help = "Flags may stand before or after the subcommand. Exit status: 0 on a clean shutdown (or `check` finding no problem), 1 on configuration errors, 2 on bad flags."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Every flag is global, so the subcommand's `--help` and the shell
    /// completions offer them after it too.
    #[command(flatten)]
    pub flags: RunFlags,
}

impl Cli {
    /// Parses the process's arguments; exits with clap's message on a mistake.
    pub fn parse_args() -> Cli {
        let args = subcommand_first(&Cli::command(), std::env::args_os().collect());
        Cli::parse_from(args)
    }

    /// As [`Cli::parse_args`], for the given argv (argv\[0\] included).
    pub fn try_parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        let args = args.into_iter().map(Into::into).collect();
        Cli::try_parse_from(subcommand_first(&Cli::command(), args))
    }
}

/// The same arguments with `check` as the subcommand (argv\[0\] included):
/// what an upgrade runs the new binary with first.
pub fn check_argv(args: Vec<OsString>) -> Vec<OsString> {
    let cmd = Cli::command();
    let mut args = subcommand_first(&cmd, args);
    let has_subcommand = args
        .get(1)
        .and_then(|w| w.to_str())
        .is_some_and(|w| cmd.find_subcommand(w).is_some());
    if has_subcommand {
        args[1] = "check".into();
    } else {
        args.insert(1.min(args.len()), "check".into());
    }
    args
}

/// Moves the subcommand word (the first word that is neither a flag nor a
/// flag's value) to just after argv\[0\]. Words after `--` are left alone, and
/// so is an argv whose first such word is no subcommand (clap then says so).
fn subcommand_first(cmd: &clap::Command, mut args: Vec<OsString>) -> Vec<OsString> {
    let mut i = 1;
    while i < args.len() {
        let Some(word) = args[i].to_str() else { break };
        if word == "--" {
            break;
        }
        if word.starts_with('-') && word.len() > 1 {
            i += if flag_takes_separate_value(cmd, word) {
                2
            } else {
                1
            };
            continue;
        }
        if cmd.find_subcommand(word).is_some() {
            let sub = args.remove(i);
            args.insert(1, sub);
        }
        break;
    }
    args
}

/// `--server` (value in the next word), not `--server=h` nor `--daemonize`.
fn flag_takes_separate_value(cmd: &clap::Command, word: &str) -> bool {
    let arg = if let Some(long) = word.strip_prefix("--") {
        if long.contains('=') {
            return false;
        }
        cmd.get_arguments().find(|a| {
            a.get_long() == Some(long)
                || a.get_all_aliases()
                    .is_some_and(|aliases| aliases.contains(&long))
        })
    } else {
        let mut shorts = word[1..].chars();
        match (shorts.next(), shorts.next()) {
            (Some(c), None) => cmd.get_arguments().find(|a| a.get_short() == Some(c)),
            _ => None,
        }
    };
    arg.is_some_and(|a| a.get_action().takes_values())
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the supervisor (the default).
    Run,
    /// Load and validate the config and worker files, print the job table, exit 0 (or print the errors, exit 1).
    Check,
    /// Write worker files and a driver config for a driveshaft jobs config
    /// (its pools become `http` jobs; see README, "Coming from driveshaft").
    ImportDriveshaft(ImportFlags),
    /// Internal: the hand-over formats this binary reads, for an upgrade's
    /// check (see README, "Upgrade without restarting workers").
    #[command(hide = true)]
    HandoverFormats,
    /// Internal: the resident process behind an `exec` job slot.
    #[command(hide = true)]
    ExecSlot {
        /// The command to run for every job.
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ImportFlags {
    /// driveshaft's jobs config (JSON: gearman_servers_list, pools_list).
    #[arg(value_name = "JOBSCONFIG")]
    pub jobsconfig: PathBuf,
    /// Folder to write driver.toml and workers/Driveshaft/<pool>.toml into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// driveshaft's --max_running_time: becomes every job's `timeout`.
    #[arg(
        long = "max-running-time",
        alias = "max_running_time",
        value_name = "SECONDS"
    )]
    pub max_running_time: Option<u64>,
    /// Overwrite files that exist already.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Default, Args)]
pub struct RunFlags {
    /// Driver config file (TOML); flags override its keys.
    #[arg(global = true, long, alias = "configfile", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Namespace(s) of worker files to run, e.g. GDExamples (repeatable, commas allowed).
    #[arg(
        global = true,
        long = "namespaces",
        alias = "namespace",
        value_name = "NS"
    )]
    pub namespaces: Vec<String>,
    /// Folder(s) holding worker files (repeatable; default: workers).
    #[arg(global = true, long, value_name = "DIR")]
    pub lib: Vec<String>,
    /// gearmand servers, "host:port,host:port" (default localhost:4730).
    #[arg(global = true, long, value_name = "LIST")]
    pub server: Option<String>,
    /// Console TCP port; 0 disables the console (default 47300).
    #[arg(
        global = true,
        long = "console-port",
        alias = "console_port",
        value_name = "PORT"
    )]
    pub console_port: Option<u16>,
    /// Address the console listens on (default 127.0.0.1).
    #[arg(
        global = true,
        long = "console-bind",
        alias = "console_bind",
        value_name = "ADDR"
    )]
    pub console_bind: Option<String>,
    /// Serve /metrics, /api/status and /healthz over HTTP on ADDR:PORT (default: off; "" turns it off).
    #[arg(
        global = true,
        long = "http-bind",
        visible_alias = "exporter_addr",
        alias = "http_bind",
        value_name = "ADDR:PORT"
    )]
    pub http_bind: Option<String>,
    /// Seconds between queue polls; fractions allowed (default 5).
    #[arg(global = true, long, value_name = "SECONDS")]
    pub interval: Option<f64>,
    /// Seconds a surplus process may sit idle before it is stopped (default 0).
    #[arg(
        global = true,
        long = "max-idle-time",
        alias = "max_idle_time",
        value_name = "SECONDS"
    )]
    pub max_idle_time: Option<f64>,
    /// Seconds in-flight jobs get on shutdown before processes are killed (default 30).
    #[arg(
        global = true,
        long = "shutdown-timeout",
        alias = "shutdown_timeout",
        value_name = "SECONDS"
    )]
    pub shutdown_timeout: Option<f64>,
    /// Log file (default: standard error).
    #[arg(global = true, long, value_name = "FILE")]
    pub logfile: Option<String>,
    /// error|warn|info|debug|trace (Perl's INFO/DEBUG spellings accepted; default info).
    #[arg(global = true, long, value_name = "LEVEL")]
    pub loglevel: Option<String>,
    /// Log line format (default text).
    #[arg(
        global = true,
        long = "log-format",
        alias = "log_format",
        value_name = "FORMAT"
    )]
    pub log_format: Option<LogFormat>,
    /// CPU scheduling policy of the worker processes (default batch: they do
    /// not preempt the supervisor that relays their jobs).
    #[arg(
        global = true,
        long = "worker-scheduling",
        alias = "worker_scheduling",
        value_name = "POLICY"
    )]
    pub worker_scheduling: Option<super::isolation::WorkerScheduling>,
    /// Write the supervisor's PID to this file; refuse to start if a live supervisor holds it.
    #[arg(
        global = true,
        long = "pid-file",
        alias = "pid_file",
        value_name = "FILE"
    )]
    pub pid_file: Option<String>,
    /// Detach from the terminal and run in the background.
    #[arg(global = true, long)]
    pub daemonize: bool,
    /// Run worker processes as this user (when the driver runs as root).
    #[arg(global = true, long, value_name = "USER")]
    pub user: Option<String>,
    /// File whose first line is the admin token: console clients must send `auth <token>` first
    /// (the file must not be readable by others).
    #[arg(
        global = true,
        long = "admin-token-file",
        alias = "admin_token_file",
        value_name = "FILE"
    )]
    pub admin_token_file: Option<PathBuf>,
    /// Also serve the console on this Unix socket (mode 0660, no `auth` needed).
    #[arg(
        global = true,
        long = "console-socket",
        alias = "console_socket",
        value_name = "PATH"
    )]
    pub console_socket: Option<PathBuf>,
    /// Console connections served at once per listener; more are told so and closed (default 64).
    #[arg(
        global = true,
        long = "console-max-connections",
        alias = "console_max_connections",
        value_name = "N"
    )]
    pub console_max_connections: Option<usize>,
    /// Allow a console or HTTP listener bound beyond loopback without an admin token.
    #[arg(global = true, long = "insecure-bind", alias = "insecure_bind")]
    pub insecure_bind: bool,
    /// The Perl side of the driver (gearman-driver-perl and its lib/), for Perl
    /// worker classes; found by itself in the source tree or the installed package.
    #[arg(
        global = true,
        long = "perl-lib",
        alias = "perl_lib",
        value_name = "DIR"
    )]
    pub perl_lib: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_args(std::iter::once("gearman-driver").chain(args.iter().copied()))
    }

    #[test]
    fn an_upgrade_checks_with_the_same_flags_wherever_the_subcommand_stood() {
        let check = |args: &[&str]| -> Vec<String> {
            let argv = std::iter::once("gd").chain(args.iter().copied());
            check_argv(argv.map(OsString::from).collect())
                .into_iter()
                .map(|a| a.into_string().unwrap())
                .collect()
        };
        assert_eq!(
            check(&["--config", "run", "run"]),
            ["gd", "check", "--config", "run"]
        );
        assert_eq!(
            check(&["--config", "d.toml"]),
            ["gd", "check", "--config", "d.toml"]
        );
        assert_eq!(check(&[]), ["gd", "check"]);
        let parsed =
            Cli::try_parse_args(check(&["--namespaces", "A", "run", "--server", "h:1"])).unwrap();
        assert_eq!(parsed.command, Some(Command::Check));
        assert_eq!(parsed.flags.namespaces, ["A"]);
    }

    /// `(--flag, a value it takes)` for every flag and alias of [`RunFlags`],
    /// read from clap's own definitions so that new flags are covered too.
    fn every_run_flag() -> Vec<(String, Option<String>)> {
        let cmd = RunFlags::augment_args(clap::Command::new("flags"));
        let mut flags = Vec::new();
        for arg in cmd.get_arguments() {
            let value = arg.get_action().takes_values().then(|| {
                arg.get_possible_values()
                    .last()
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_else(|| "7".to_string())
            });
            let long = arg.get_long().expect("every flag has a long name");
            let aliases = arg.get_all_aliases().unwrap_or_default();
            for name in std::iter::once(long).chain(aliases) {
                flags.push((format!("--{name}"), value.clone()));
            }
        }
        assert!(flags.len() >= 15, "{flags:?}");
        flags
    }

    fn flag_words(flag: &(String, Option<String>)) -> Vec<&str> {
        std::iter::once(flag.0.as_str())
            .chain(flag.1.as_deref())
            .collect()
    }

    #[test]
    fn every_flag_means_the_same_before_and_after_the_subcommand() {
        for flag in every_run_flag() {
            let words = flag_words(&flag);
            let alone = parse(&words).unwrap_or_else(|e| panic!("{words:?}: {e}"));
            assert_ne!(
                format!("{:?}", alone.flags),
                format!("{:?}", RunFlags::default()),
                "{words:?} sets something"
            );
            for sub in ["run", "check"] {
                let before: Vec<&str> = words.iter().copied().chain([sub]).collect();
                let after: Vec<&str> = [sub].into_iter().chain(words.iter().copied()).collect();
                for args in [before, after] {
                    let cli = parse(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
                    let expected = if sub == "run" {
                        Command::Run
                    } else {
                        Command::Check
                    };
                    assert_eq!(cli.command, Some(expected), "{args:?}");
                    assert_eq!(
                        format!("{:?}", cli.flags),
                        format!("{:?}", alone.flags),
                        "{args:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_four_spellings_of_the_mission() {
        let spellings: [&[&str]; 4] = [
            &["--namespaces", "GDExamples", "run"],
            &["run", "--namespaces", "GDExamples"],
            &["--namespaces", "GDExamples"],
            &["--namespaces", "GDExamples", "check"],
        ];
        for args in spellings {
            let cli = parse(args).unwrap();
            assert_eq!(cli.flags.namespaces, ["GDExamples"], "{args:?}");
        }
        assert_eq!(parse(spellings[2]).unwrap().command, None);
    }

    #[test]
    fn repeatable_flags_on_both_sides_add_up() {
        let cli = parse(&[
            "--namespaces",
            "A",
            "--lib",
            "w1",
            "run",
            "--namespaces",
            "B,C",
            "--lib=w2",
        ])
        .unwrap();
        assert_eq!(cli.flags.namespaces, ["A", "B,C"]);
        assert_eq!(cli.flags.lib, ["w1", "w2"]);
    }

    #[test]
    fn a_single_value_flag_twice_is_refused_wherever_the_two_stand() {
        for args in [
            &["--server", "a", "--server", "b"][..],
            &["--server", "a", "run", "--server", "b"],
            &["check", "--server", "a", "--server", "b"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{args:?}"
            );
        }
    }

    #[test]
    fn a_flag_value_that_reads_like_a_subcommand_stays_a_value() {
        let cli = parse(&["--namespaces", "run", "check"]).unwrap();
        assert_eq!(cli.flags.namespaces, ["run"]);
        assert_eq!(cli.command, Some(Command::Check));
        let cli = parse(&["--logfile", "check"]).unwrap();
        assert_eq!(cli.flags.logfile.as_deref(), Some("check"));
        assert_eq!(cli.command, None);
    }

    #[test]
    fn unknown_words_are_still_refused() {
        let err = parse(&["--namespaces", "A", "runn"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidSubcommand);
        let err = parse(&["--namespaces", "A", "run", "extra"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn exec_slot_keeps_its_command_line() {
        let cli = parse(&["exec-slot", "--", "tr", "--lib", "run"]).unwrap();
        assert_eq!(
            cli.command,
            Some(Command::ExecSlot {
                command: vec!["tr".into(), "--lib".into(), "run".into()]
            })
        );
    }

    #[test]
    fn help_lists_every_flag_for_the_subcommands_too() {
        for sub in [None, Some("run"), Some("check")] {
            let mut cmd = Cli::command();
            cmd.build();
            let help = match sub {
                None => cmd.render_long_help().to_string(),
                Some(name) => cmd
                    .find_subcommand_mut(name)
                    .unwrap()
                    .render_long_help()
                    .to_string(),
            };
            let flags = RunFlags::augment_args(clap::Command::new("flags"));
            for long in flags.get_arguments().filter_map(|a| a.get_long()) {
                assert!(
                    help.contains(&format!("--{long}")),
                    "{sub:?} help: --{long}"
                );
            }
            assert!(help.contains("--namespaces <NS>"), "{sub:?}:\n{help}");
            assert!(!help.contains("exec-slot"), "{sub:?}:\n{help}");
        }
    }
}
