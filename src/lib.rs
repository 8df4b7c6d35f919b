//! gearman-driver: a supervisor that keeps pools of Gearman worker processes,
//! forks more when gearmand's queue for a function grows, reaps them when they
//! sit idle, and lets operators inspect and resize the pools through a telnet
//! console.
//!
//! # Layout
//!
//! - [`config`]: the driver config file and command line, worker files,
//!   Perl worker classes (described by the Perl side in `workers/perl`),
//!   namespaces, and every validation; produces the job table.
//! - [`protocol`]: the stdio worker protocol as the supervisor sees it
//!   (framing of `JOB` headers and of the worker's answers).
//! - [`gearman`]: TCP connections to gearmand with `TCP_NODELAY`, the admin
//!   `status` poller, the wake-up connections that notice work for jobs with
//!   no process, and a small client used by tests, examples and the benchmark.
//! - [`policy`]: the scaling decision, a pure function from observed queue
//!   and pool state to actions.
//! - [`supervisor`]: pools and processes: spawning, the per-process grab loop,
//!   reaping, crash-loop backoff, signals and shutdown. All side effects of the
//!   policy happen here.
//! - [`schedule`]: scheduled jobs (`[[schedule]]`): next-run computation,
//!   the scheduler task, background submission to gearmand.
//! - [`command`]: the one command layer behind the console and the HTTP
//!   API: a request type, its validation and execution, and the answers.
//! - [`console`]: the telnet management console (server side): its line
//!   syntax, the `auth` gate, and the connections on TCP and a Unix socket.
//! - [`access`]: the admin token (loading, constant-time comparison) and the
//!   rule that a door bound beyond loopback needs one.
//! - [`http`]: the HTTP listener on a thread of its own: `/metrics`,
//!   `/api/status`, `/healthz` and the write endpoints.
//! - [`metrics`]: the Prometheus metrics, derived from the supervisor's
//!   events and polls.
//! - [`history`]: what the dashboard shows beyond the status view: the
//!   last 15 minutes of per-job samples and the latest process events.
//! - [`daemon`]: detaching, the pid file, the file-descriptor limit.
//! - [`logging`]: log line formats (text, json) and destinations, and
//!   reopening the log file after rotation.
//! - [`notify`]: systemd notification (READY, STATUS, RELOADING, STOPPING,
//!   WATCHDOG) when run as a `Type=notify` service.
//! - [`exec_slot`]: the resident helper behind the `exec` protocol.
//! - [`driveshaft_import`]: `import-driveshaft`, a driveshaft jobs config
//!   to worker files and a driver config.
//! - [`endpoint`]: the `http` protocol's client side: driveshaft's request
//!   and response format, and the keep-alive client that POSTs jobs.
//! - [`upgrade`]: re-executing a new binary in place without restarting a
//!   worker: the hand-over's format, its descriptors, signals and the exec.

pub mod access;
pub mod command;
pub mod config;
pub mod console;
pub mod daemon;
pub mod driveshaft_import;
pub mod endpoint;
pub mod exec_slot;
pub mod gearman;
pub mod history;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod protocol;
pub mod schedule;
pub mod supervisor;
pub mod upgrade;

/// The running binary's version: the package version, and the build tag a
/// packager may compile in (`GEARMAN_DRIVER_BUILD=2 cargo build` reports
/// `0.1.0+2`), so that two builds of one release tell themselves apart.
pub fn version() -> String {
    match build_tag() {
        Some(tag) if !tag.is_empty() => format!("{}+{tag}", env!("CARGO_PKG_VERSION")),
        _ => env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// `next` in the build the upgrade tests upgrade to (the
/// `upgrade-test-build` feature: it shares the test build's dependencies,
/// where a second `GEARMAN_DRIVER_BUILD` build needs a target folder and a
/// dependency build of its own).
fn build_tag() -> Option<&'static str> {
    if cfg!(feature = "upgrade-test-build") {
        Some("next")
    } else {
        option_env!("GEARMAN_DRIVER_BUILD")
    }
}
