//! The `gearman-driver` binary: parse flags, load the config, then run the
//! supervisor (or `check` it, or serve as an exec slot).

use std::process::ExitCode;

use gearman_driver::config::{self, Cli, Command, ImportFlags, RunFlags};
use gearman_driver::{
    console, daemon, driveshaft_import, exec_slot, http, logging, schedule, supervisor,
};

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    match cli.command {
        Some(Command::Check) => check(&cli.flags),
        Some(Command::ExecSlot { command }) => ExitCode::from(exec_slot::main(command) as u8),
        Some(Command::ImportDriveshaft(flags)) => import_driveshaft(&flags),
        Some(Command::Run) | None => run(cli.flags),
    }
}

fn check(flags: &RunFlags) -> ExitCode {
    match config::load(flags) {
        Ok(loaded) => {
            print!("{}", config::job_table(&loaded.jobs));
            if !loaded.settings.schedules.is_empty() {
                let now = chrono::Utc::now();
                print!("\n{}", schedule::table(&loaded.settings.schedules, now));
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::from(1)
        }
    }
}

/// Writes the files, then loads them as `check` would, so that what was
/// written is known to start.
fn import_driveshaft(flags: &ImportFlags) -> ExitCode {
    let options = driveshaft_import::ImportOptions {
        max_running_time: flags.max_running_time,
    };
    let converted =
        match driveshaft_import::import(&flags.jobsconfig, &flags.out, flags.force, &options) {
            Ok(c) => c,
            Err(errors) => {
                for e in errors {
                    eprintln!("error: {e}");
                }
                return ExitCode::from(1);
            }
        };
    for note in &converted.notes {
        eprintln!("note: {note}");
    }
    for (rel, _) in &converted.files {
        println!("wrote {}", flags.out.join(rel).display());
    }
    let config_file = flags.out.join("driver.toml");
    let run_flags = RunFlags {
        config: Some(config_file.clone()),
        ..RunFlags::default()
    };
    match config::load(&run_flags) {
        Ok(loaded) => {
            print!("\n{}", config::job_table(&loaded.jobs));
            println!(
                "\nRun it: gearman-driver --config {}",
                config_file.display()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("the written files do not load:\n{errors}");
            ExitCode::from(1)
        }
    }
}

fn run(flags: RunFlags) -> ExitCode {
    let loaded = match config::load(&flags) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(1);
        }
    };
    let settings = loaded.settings.clone();
    // Forking is only safe before any thread exists: daemonize first.
    if settings.daemonize {
        if let Some(Err(err)) = settings.pid_file.as_deref().map(daemon::PidFile::check) {
            eprintln!("error: {err}");
            return ExitCode::from(1);
        }
        if let Err(err) = daemon::daemonize() {
            eprintln!("error: cannot daemonize: {err}");
            return ExitCode::from(1);
        }
    }
    if let Err(err) = logging::init(
        settings.loglevel,
        settings.logfile.as_deref(),
        settings.log_format,
    ) {
        eprintln!("error: cannot open log file: {err}");
        return ExitCode::from(1);
    }
    let pid_file = match settings
        .pid_file
        .as_deref()
        .map(daemon::PidFile::create)
        .transpose()
    {
        Ok(p) => p,
        Err(err) => {
            tracing::error!("{err}");
            eprintln!("error: {err}");
            return ExitCode::from(1);
        }
    };
    daemon::raise_fd_limit();
    // One thread: the supervisor is I/O-bound, and on the small machines it
    // shares with gearmand and its workers, cross-thread wake-ups per job
    // cost more than they buy. It also keeps every fork on the main thread,
    // the thread PR_SET_PDEATHSIG ties the workers' lives to.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        // The socket file lives as long as the supervisor runs, and is
        // removed when it returns, cleanly or not.
        let (listeners, _socket_file) = console::bind_all(&settings).await?;
        let http = match &settings.http_bind {
            None => None,
            Some(addr) => match http::bind(addr) {
                Ok(l) => {
                    let writes = if settings.admin_token.is_some() {
                        "writes need the admin token"
                    } else {
                        "read-only: no admin_token_file"
                    };
                    tracing::info!(
                        "HTTP listener on {} (dashboard at /, /metrics, /api/status, /healthz; {writes})",
                        l.url()
                    );
                    if settings.admin_token.is_none() && !gearman_driver::access::is_loopback(addr) {
                        tracing::warn!(
                            "the HTTP listener listens on {addr} without a token (insecure_bind = true): anyone who can reach it can read the driver's state"
                        );
                    }
                    Some(l)
                }
                Err(err) => {
                    return Err(format!(
                        "cannot listen on {addr} for HTTP: {err} (set http_bind, or remove it to turn the listener off)"
                    ))
                }
            },
        };
        let doors = supervisor::Doors {
            console: listeners,
            http,
        };
        supervisor::Supervisor::new(loaded, flags).run(doors).await.map_err(|e| e.to_string())
    });
    drop(pid_file);
    // Process tasks may still hold pipes; do not wait for them.
    runtime.shutdown_background();
    match result {
        Ok(supervisor::Exit::Clean) => ExitCode::SUCCESS,
        Ok(supervisor::Exit::Forced) => ExitCode::from(1),
        Err(msg) => {
            tracing::error!("{msg}");
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}
