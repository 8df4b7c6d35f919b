//! Command-line flags. They mirror the driver config file's keys and win over
//! it; Perl's underscore spellings (`--console_port`, `--configfile`) are
//! accepted as aliases so existing init scripts keep working.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "gearman-driver",
    version,
    about = "Keeps pools of Gearman worker processes: scales them on gearmand's queue, reaps idle ones, and offers a telnet console.",
    args_conflicts_with_subcommands = true,
    after_help = "Exit status: 0 on a clean shutdown (or `check` finding no problem), 1 on configuration errors, 2 on bad flags."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunFlags,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the supervisor (the default).
    Run(RunFlags),
    /// Load and validate the config and worker files, print the job table, exit 0 (or print the errors, exit 1).
    Check(RunFlags),
    /// Write worker files and a driver config for a driveshaft jobs config
    /// (its pools become `http` jobs; see README, "Coming from driveshaft").
    ImportDriveshaft(ImportFlags),
    /// Internal: the resident process behind an `exec` job slot.
    #[command(hide = true)]
    ExecSlot {
        /// The command to run for every job.
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, Clone, Args)]
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
    #[arg(long, alias = "configfile", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Namespace(s) of worker files to run, e.g. GDExamples (repeatable, commas allowed).
    #[arg(long = "namespaces", alias = "namespace", value_name = "NS")]
    pub namespaces: Vec<String>,
    /// Folder(s) holding worker files (repeatable; default: workers).
    #[arg(long, value_name = "DIR")]
    pub lib: Vec<String>,
    /// gearmand servers, "host:port,host:port" (default localhost:4730).
    #[arg(long, value_name = "LIST")]
    pub server: Option<String>,
    /// Console TCP port; 0 disables the console (default 47300).
    #[arg(long = "console-port", alias = "console_port", value_name = "PORT")]
    pub console_port: Option<u16>,
    /// Address the console listens on (default 127.0.0.1).
    #[arg(long = "console-bind", alias = "console_bind", value_name = "ADDR")]
    pub console_bind: Option<String>,
    /// Seconds between queue polls; fractions allowed (default 5).
    #[arg(long, value_name = "SECONDS")]
    pub interval: Option<f64>,
    /// Seconds a surplus process may sit idle before it is stopped (default 0).
    #[arg(
        long = "max-idle-time",
        alias = "max_idle_time",
        value_name = "SECONDS"
    )]
    pub max_idle_time: Option<f64>,
    /// Seconds in-flight jobs get on shutdown before processes are killed (default 30).
    #[arg(
        long = "shutdown-timeout",
        alias = "shutdown_timeout",
        value_name = "SECONDS"
    )]
    pub shutdown_timeout: Option<f64>,
    /// Log file (default: standard error).
    #[arg(long, value_name = "FILE")]
    pub logfile: Option<String>,
    /// error|warn|info|debug|trace (Perl's INFO/DEBUG spellings accepted; default info).
    #[arg(long, value_name = "LEVEL")]
    pub loglevel: Option<String>,
    /// Write the supervisor's PID to this file; refuse to start if a live supervisor holds it.
    #[arg(long = "pid-file", alias = "pid_file", value_name = "FILE")]
    pub pid_file: Option<String>,
    /// Detach from the terminal and run in the background.
    #[arg(long)]
    pub daemonize: bool,
    /// Run worker processes as this user (when the driver runs as root).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// File whose first line is the admin token: console clients must send `auth <token>` first
    /// (the file must not be readable by others).
    #[arg(
        long = "admin-token-file",
        alias = "admin_token_file",
        value_name = "FILE"
    )]
    pub admin_token_file: Option<PathBuf>,
    /// Also serve the console on this Unix socket (mode 0660, no `auth` needed).
    #[arg(long = "console-socket", alias = "console_socket", value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Console connections served at once per listener; more are told so and closed (default 64).
    #[arg(
        long = "console-max-connections",
        alias = "console_max_connections",
        value_name = "N"
    )]
    pub console_max_connections: Option<usize>,
    /// Allow a console bound beyond loopback without an admin token.
    #[arg(long = "insecure-bind", alias = "insecure_bind")]
    pub insecure_bind: bool,
}
