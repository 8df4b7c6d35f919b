//! The `gearman-driver` binary: parse flags, load the config, then run the
//! supervisor (or `check` it, or serve as an exec slot).

use std::process::ExitCode;
use std::sync::Arc;

use gearman_driver::config::{self, Cli, Command, ImportFlags, RunFlags};
use gearman_driver::{
    console, daemon, driveshaft_import, exec_slot, http, logging, schedule, supervisor, upgrade,
};

// pub(crate): tests/support/upgrade_next_build.rs compiles this file again as the
// binary the upgrade tests upgrade to.
pub(crate) fn main() -> ExitCode {
    // First, before any thread exists: the hand-over of an upgrade, if this
    // image is the result of one.
    let inherited = upgrade::inherit::take();
    let cli = Cli::parse_args();
    match cli.command {
        Some(Command::Check) => check(&cli.flags),
        Some(Command::HandoverFormats) => {
            for format in upgrade::state::READS {
                println!("{format}");
            }
            ExitCode::SUCCESS
        }
        Some(Command::ExecSlot { command }) => ExitCode::from(exec_slot::main(command) as u8),
        Some(Command::ImportDriveshaft(flags)) => import_driveshaft(&flags),
        Some(Command::Run) | None => run(cli.flags, inherited),
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

fn run(flags: RunFlags, inherited: Option<Inherited>) -> ExitCode {
    let mut handover = match inherited {
        None => None,
        Some(Ok(handover)) => Some(handover),
        Some(Err(why)) => {
            // Nothing can adopt the processes: exiting ends them.
            eprintln!("error: upgrade: {why}");
            return ExitCode::from(1);
        }
    };
    let origin = Arc::new(match &handover {
        Some((state, _)) => upgrade::Origin::carried(state),
        None => upgrade::Origin::of_this_process(),
    });
    let loaded = match config::load(&flags) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(1);
        }
    };
    let settings = loaded.settings.clone();
    // Forking is only safe before any thread exists: daemonize first. An
    // upgraded image is the same process, detached already.
    if settings.daemonize && handover.is_none() {
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
    if let Some((state, _)) = &handover {
        tracing::info!(
            "upgrade: gearman-driver {} takes over from {} (pid {})",
            gearman_driver::version(),
            state.from_version,
            std::process::id()
        );
    }
    // The same PID across an upgrade: the file names this process already.
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
    let mut loaded = Some(loaded);
    let result = loop {
        // One thread: the supervisor is I/O-bound, and on the small machines
        // it shares with gearmand and its workers, cross-thread wake-ups per
        // job cost more than they buy. It also keeps every fork on the main
        // thread, the thread PR_SET_PDEATHSIG ties the workers' lives to.
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_start(upgrade::signals::block)
            .build()
        {
            Ok(rt) => rt,
            Err(err) => {
                eprintln!("error: cannot start the runtime: {err}");
                return ExitCode::from(1);
            }
        };
        let loaded = match loaded.take() {
            Some(loaded) => loaded,
            None => match config::load(&flags) {
                Ok(loaded) => loaded,
                Err(errors) => break Err(errors.to_string()),
            },
        };
        let handed = handover.take();
        let result = runtime.block_on(supervise(loaded, &flags, origin.clone(), handed));
        // Process tasks may still hold pipes; do not wait for them.
        runtime.shutdown_background();
        let (prepared, socket_file) = match result {
            Ok((supervisor::Exit::Upgrade(prepared), socket_file)) => (prepared, socket_file),
            Ok((exit, _socket_file)) => break Ok(exit),
            Err(msg) => break Err(msg),
        };
        // Returns only if the exec failed; the pid file and the socket file
        // stay, for the new image or for this one.
        let failed = upgrade::exec::exec(*prepared);
        std::mem::forget(socket_file);
        tracing::error!(
            "upgrade failed: {}; carrying on with gearman-driver {}",
            failed.why,
            gearman_driver::version()
        );
        handover = Some((failed.state, failed.fds));
    };
    drop(pid_file);
    match result {
        Ok(supervisor::Exit::Forced) => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        Err(msg) => {
            tracing::error!("{msg}");
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}

type Inherited = Result<(upgrade::state::HandOver, upgrade::Fds), String>;

/// Binds (or inherits) the listeners, builds the supervisor (adopting the
/// processes of a hand-over) and runs it. The socket file lives as long as
/// the supervisor runs, and is removed when it returns, cleanly or not,
/// unless it is handed over.
async fn supervise(
    loaded: config::Loaded,
    flags: &RunFlags,
    origin: Arc<upgrade::Origin>,
    mut handover: Option<(upgrade::state::HandOver, upgrade::Fds)>,
) -> Result<(supervisor::Exit, Option<console::unix_socket::SocketFile>), String> {
    let settings = loaded.settings.clone();
    let mut inherited = match &mut handover {
        Some((state, fds)) => upgrade::inherit::Listeners::take(&settings, state, fds),
        None => upgrade::inherit::Listeners::default(),
    };
    let (listeners, socket_file) = console::bind_all(&settings, &mut inherited).await?;
    let http = match (&settings.http_bind, inherited.http.take()) {
        (None, _) => None,
        (Some(addr), socket) => {
            let listener = match socket {
                Some(socket) => http::Listener::from_std(socket),
                None => http::bind(addr),
            };
            match listener {
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
            }
        }
    };
    let doors = supervisor::Doors {
        console: listeners,
        http,
    };
    let mut supervisor = supervisor::Supervisor::new(loaded, flags.clone(), origin);
    if let Some((state, fds)) = handover {
        supervisor = supervisor.adopt(state, fds);
    }
    let exit = supervisor.run(doors).await.map_err(|e| e.to_string())?;
    Ok((exit, socket_file))
}
