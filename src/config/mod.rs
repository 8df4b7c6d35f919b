//! Configuration: the driver config file and flags ([`Settings`]), and the
//! worker files they select ([`JobSpec`]). [`load`] is the one entry point;
//! it returns every error found, each naming file, key and line.

pub mod cli;
pub mod driver_file;
pub mod error;
pub mod http_worker;
pub mod isolation;
pub mod jobs;
pub mod perl;
pub mod schedules;
pub mod stop_signal;
pub mod worker_file;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use cli::{Cli, Command, ImportFlags, RunFlags};
pub use driver_file::{DriverFile, RuntimeAttrs};
pub use error::{ConfigError, ConfigErrors};
pub use http_worker::{HttpEndpoint, RequestFormat};
pub use jobs::{FunctionSpec, JobSpec};
pub use worker_file::Protocol;

use crate::access::{self, AdminToken};
use crate::logging::LogFormat;
use driver_file::split_list;

pub const DEFAULT_SERVER: &str = "localhost:4730";
pub const DEFAULT_GEARMAN_PORT: u16 = 4730;
pub const DEFAULT_CONSOLE_PORT: u16 = 47300;
pub const DEFAULT_CONSOLE_MAX_CONNECTIONS: usize = 64;

/// The driver's resolved settings: file keys, then flags over them.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub config_file: Option<PathBuf>,
    /// `host:port`, port filled in.
    pub servers: Vec<String>,
    pub namespaces: Vec<String>,
    pub lib: Vec<PathBuf>,
    pub console_port: u16,
    pub console_bind: String,
    /// The console also on this Unix socket.
    pub console_socket: Option<PathBuf>,
    /// Connections each console listener serves at once.
    pub console_max_connections: usize,
    pub admin_token_file: Option<PathBuf>,
    /// The token from `admin_token_file`: the TCP console and HTTP writes need it.
    pub admin_token: Option<AdminToken>,
    /// Listen beyond loopback without a token all the same.
    pub insecure_bind: bool,
    /// Where the HTTP listener binds (`host:port`); None: off.
    pub http_bind: Option<String>,
    pub interval: Duration,
    pub max_idle_time: Duration,
    pub shutdown_timeout: Duration,
    pub logfile: Option<PathBuf>,
    pub loglevel: tracing::Level,
    pub log_format: LogFormat,
    /// The CPU scheduling policy of every process the driver starts.
    pub worker_scheduling: isolation::WorkerScheduling,
    pub pid_file: Option<PathBuf>,
    pub daemonize: bool,
    /// Worker processes run as this user (the driver must be root).
    pub user: Option<String>,
    pub unknown_job_command: Option<Vec<String>>,
    /// Where the Perl side of the driver is (`perl_lib`), if set.
    pub perl_lib: Option<PathBuf>,
    pub worker_options: BTreeMap<String, toml::Table>,
    pub job_runtime_attributes: BTreeMap<String, RuntimeAttrs>,
    /// `[[schedule]]` entries, validated.
    pub schedules: Vec<crate::schedule::ScheduleSpec>,
}

/// Everything a run needs: settings and the job table.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    pub jobs: Vec<Arc<JobSpec>>,
}

/// Reads the config file (if any), applies flags, and builds the job table.
pub fn load(flags: &RunFlags) -> Result<Loaded, ConfigErrors> {
    let settings = load_settings(flags)?;
    let jobs = jobs::build_job_table(&jobs::JobTableInput {
        lib: &settings.lib,
        namespaces: &settings.namespaces,
        worker_options: &settings.worker_options,
        runtime_attributes: &settings.job_runtime_attributes,
        config_file: settings.config_file.as_deref(),
        default_user: settings.user.as_deref(),
        servers: &settings.servers,
        perl_lib: settings.perl_lib.as_deref(),
    })?;
    Ok(Loaded { settings, jobs })
}

/// Settings alone: the config file and flags, without reading worker files.
pub fn load_settings(flags: &RunFlags) -> Result<Settings, ConfigErrors> {
    let (file, base_dir, source) = match &flags.config {
        Some(path) => {
            let source = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(format!("cannot read config file: {e}")).in_file(path)
            })?;
            let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
            (DriverFile::parse(path, &source)?, base, source)
        }
        None => (DriverFile::default(), PathBuf::new(), String::new()),
    };
    merge(flags, file, &base_dir, &source)
}

/// Flags over the file's keys. `source` is the file's text (empty without a
/// file), for the lines of errors found after parsing.
fn merge(
    flags: &RunFlags,
    file: DriverFile,
    base_dir: &Path,
    source: &str,
) -> Result<Settings, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let schedules = match &flags.config {
        Some(path) => schedules::resolve(
            &file.schedule,
            &schedules::Source {
                file: path,
                text: source,
                base_dir,
            },
        )
        .unwrap_or_else(|found| {
            errors.0.extend(found.0);
            Vec::new()
        }),
        None => Vec::new(),
    };
    let cfg_err = |key: &str, msg: String| {
        let mut e = ConfigError::new(msg).at_key(key);
        if let Some(path) = &flags.config {
            e = e.in_file(path);
        }
        e
    };

    let servers_raw = match &flags.server {
        Some(list) => split_list([list.as_str()]),
        None => file.server.as_ref().map(|s| s.items()).unwrap_or_default(),
    };
    let servers_raw = if servers_raw.is_empty() {
        vec![DEFAULT_SERVER.to_string()]
    } else {
        servers_raw
    };
    let mut servers = Vec::new();
    for s in servers_raw {
        match normalize_server(&s, DEFAULT_GEARMAN_PORT) {
            Ok(addr) => servers.push(addr),
            Err(msg) => errors.push(cfg_err("server", msg)),
        }
    }

    let namespaces = if flags.namespaces.is_empty() {
        file.namespaces
            .as_ref()
            .map(|n| n.items())
            .unwrap_or_default()
    } else {
        split_list(flags.namespaces.iter().map(String::as_str))
    };

    // Flag paths are relative to the working directory; file paths to the file.
    let lib: Vec<PathBuf> = if !flags.lib.is_empty() {
        split_list(flags.lib.iter().map(String::as_str))
            .into_iter()
            .map(PathBuf::from)
            .collect()
    } else if let Some(l) = &file.lib {
        l.items().into_iter().map(|p| base_dir.join(p)).collect()
    } else {
        vec![base_dir.join("workers")]
    };

    let seconds = |key: &str,
                   flag: Option<f64>,
                   from_file: Option<driver_file::Seconds>,
                   default: f64,
                   min: f64,
                   errors: &mut ConfigErrors| {
        let value = flag.or(from_file.map(|s| s.as_f64())).unwrap_or(default);
        if !value.is_finite() || value < min {
            errors.push(cfg_err(
                key,
                format!("must be a number of seconds >= {min}, got {value}"),
            ));
            return Duration::from_secs_f64(default);
        }
        Duration::from_secs_f64(value)
    };
    let interval = seconds(
        "interval",
        flags.interval,
        file.interval,
        5.0,
        0.01,
        &mut errors,
    );
    let max_idle_time = seconds(
        "max_idle_time",
        flags.max_idle_time,
        file.max_idle_time,
        0.0,
        0.0,
        &mut errors,
    );
    let shutdown_timeout = seconds(
        "shutdown_timeout",
        flags.shutdown_timeout,
        file.shutdown_timeout,
        30.0,
        0.0,
        &mut errors,
    );

    let level_text = flags
        .loglevel
        .clone()
        .or(file.loglevel.clone())
        .unwrap_or_else(|| "info".into());
    let loglevel = match parse_level(&level_text) {
        Some(l) => l,
        None => {
            errors.push(cfg_err(
                "loglevel",
                format!("unknown level `{level_text}` (use error, warn, info, debug or trace)"),
            ));
            tracing::Level::INFO
        }
    };

    let rel_file = |p: &str| base_dir.join(p);
    let unknown_job_command = match &file.unknown_job_command {
        Some(spec) => match spec.to_argv() {
            Ok(mut argv) => match jobs::resolve_program(
                &argv[0],
                if base_dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    base_dir
                },
            ) {
                Ok(p) => {
                    argv[0] = p.to_string_lossy().into_owned();
                    Some(argv)
                }
                Err(msg) => {
                    errors.push(cfg_err("unknown_job_command", msg));
                    None
                }
            },
            Err(msg) => {
                errors.push(cfg_err("unknown_job_command", msg));
                None
            }
        },
        None => None,
    };

    let http_bind = match flags.http_bind.clone().or(file.http_bind.clone()) {
        Some(addr) if addr.trim().is_empty() => None,
        Some(addr) => match check_bind_address(&addr) {
            Ok(()) => Some(addr.trim().to_string()),
            Err(msg) => {
                errors.push(cfg_err("http_bind", msg));
                None
            }
        },
        None => None,
    };

    let user = flags.user.clone().or(file.user.clone());
    if let Some(name) = &user {
        if let Err((_, msg)) = isolation::identity(Some(name), None, isolation::Me::current()) {
            errors.push(cfg_err("user", msg));
        }
    }

    let console_port = flags
        .console_port
        .or(file.console_port)
        .unwrap_or(DEFAULT_CONSOLE_PORT);
    let console_bind = flags
        .console_bind
        .clone()
        .or(file.console_bind.clone())
        .unwrap_or_else(|| "127.0.0.1".into());
    let admin_token_file = flags
        .admin_token_file
        .clone()
        .or(file.admin_token_file.as_deref().map(rel_file));
    let admin_token = admin_token_file.as_deref().and_then(|path| {
        AdminToken::load(path)
            .map_err(|msg| errors.push(cfg_err("admin_token_file", msg)))
            .ok()
    });
    let insecure_bind = flags.insecure_bind || file.insecure_bind.unwrap_or(false);
    // Every door that listens on TCP.
    let mut binds = Vec::new();
    if console_port != 0 {
        binds.push(("console_bind", console_bind.as_str()));
    }
    if let Some(addr) = &http_bind {
        binds.push(("http_bind", addr.as_str()));
    }
    let token_set = admin_token_file.is_some();
    for (key, msg) in access::exposed_binds(&binds, token_set, insecure_bind) {
        errors.push(cfg_err(key, msg));
    }
    let console_max_connections = flags
        .console_max_connections
        .or(file.console_max_connections)
        .unwrap_or(DEFAULT_CONSOLE_MAX_CONNECTIONS);
    if console_max_connections == 0 {
        errors.push(cfg_err(
            "console_max_connections",
            "must be at least 1 (set console_port = 0 to turn the console off)".into(),
        ));
    }
    let console_socket = flags
        .console_socket
        .clone()
        .or(file.console_socket.as_deref().map(rel_file));
    let settings = Settings {
        config_file: flags.config.clone(),
        servers,
        namespaces,
        lib,
        console_port,
        console_bind,
        console_socket,
        console_max_connections,
        admin_token_file,
        admin_token,
        insecure_bind,
        http_bind,
        interval,
        max_idle_time,
        shutdown_timeout,
        logfile: flags
            .logfile
            .as_ref()
            .map(PathBuf::from)
            .or(file.logfile.as_deref().map(rel_file)),
        loglevel,
        log_format: flags.log_format.or(file.log_format).unwrap_or_default(),
        worker_scheduling: flags
            .worker_scheduling
            .or(file.worker_scheduling)
            .unwrap_or_default(),
        pid_file: flags
            .pid_file
            .as_ref()
            .map(PathBuf::from)
            .or(file.pid_file.as_deref().map(rel_file)),
        daemonize: flags.daemonize || file.daemonize.unwrap_or(false),
        user: flags.user.clone().or(file.user),
        unknown_job_command,
        perl_lib: flags
            .perl_lib
            .as_ref()
            .map(PathBuf::from)
            .or(file.perl_lib.as_deref().map(rel_file)),
        worker_options: file.worker_options,
        job_runtime_attributes: file.job_runtime_attributes,
        schedules,
    };
    errors.into_result(settings)
}

/// `host`, `host:port`, `[v6]:port`: returns `host:port` with the default port filled in.
pub fn normalize_server(s: &str, default_port: u16) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty server address".into());
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("bad address `{s}`"))?;
        return match after.strip_prefix(':') {
            Some(port) => port
                .parse::<u16>()
                .map(|p| format!("[{host}]:{p}"))
                .map_err(|_| format!("bad port in `{s}`")),
            None if after.is_empty() => Ok(format!("[{host}]:{default_port}")),
            None => Err(format!("bad address `{s}`")),
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port: u16 = port.parse().map_err(|_| format!("bad port in `{s}`"))?;
            Ok(format!("{host}:{port}"))
        }
        Some(_) => Ok(format!("[{s}]:{default_port}")),
        None => Ok(format!("{s}:{default_port}")),
    }
}

/// `host:port` or `[v6]:port`, with a port.
fn check_bind_address(s: &str) -> Result<(), String> {
    let s = s.trim();
    let port = match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && (!host.contains(':') || host.ends_with(']')) => {
            port
        }
        _ => return Err(format!("`{s}` is not ADDR:PORT (e.g. 127.0.0.1:47301)")),
    };
    port.parse::<u16>()
        .map(|_| ())
        .map_err(|_| format!("bad port in `{s}`"))
}

/// Log levels, with Perl's Log::Log4perl spellings accepted.
pub fn parse_level(s: &str) -> Option<tracing::Level> {
    match s.to_ascii_lowercase().as_str() {
        "error" | "fatal" => Some(tracing::Level::ERROR),
        "warn" | "warning" => Some(tracing::Level::WARN),
        "info" => Some(tracing::Level::INFO),
        "debug" => Some(tracing::Level::DEBUG),
        "trace" => Some(tracing::Level::TRACE),
        _ => None,
    }
}

/// The `check` table: job, min, max, protocol, functions, command.
pub fn job_table(jobs: &[Arc<JobSpec>]) -> String {
    let header = ["JOB", "MIN", "MAX", "PROTOCOL", "FUNCTIONS", "COMMAND"];
    let rows: Vec<[String; 6]> = jobs
        .iter()
        .map(|j| {
            [
                j.name.clone(),
                j.min_processes.to_string(),
                j.max_processes.to_string(),
                j.protocol.as_str().to_string(),
                j.function_names().join(","),
                match &j.endpoint {
                    Some(endpoint) => endpoint.url.clone(),
                    None => shell_words::join(&j.command),
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut push = |cells: [&str; 6]| {
        let line: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 5 {
                    c.to_string()
                } else if i == 1 || i == 2 {
                    format!("{c:>w$}", w = widths[i])
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    };
    push(header);
    for row in &rows {
        push([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_get_default_ports() {
        assert_eq!(normalize_server("h", 4730).unwrap(), "h:4730");
        assert_eq!(normalize_server("h:1", 4730).unwrap(), "h:1");
        assert_eq!(normalize_server("[::1]:5", 4730).unwrap(), "[::1]:5");
        assert_eq!(normalize_server("::1", 4730).unwrap(), "[::1]:4730");
        assert!(normalize_server("h:x", 4730).is_err());
    }

    #[test]
    fn flags_override_file() {
        let file = DriverFile::parse(
            Path::new("d.toml"),
            "server = \"a:1\"\ninterval = 2\nnamespaces = [\"X\"]\nconsole_port = 5",
        )
        .unwrap();
        let flags = RunFlags {
            server: Some("b:2,c".into()),
            console_port: Some(0),
            ..Default::default()
        };
        let s = merge(&flags, file, Path::new("/etc/gd"), "").unwrap();
        assert_eq!(s.servers, vec!["b:2", "c:4730"]);
        assert_eq!(s.interval, Duration::from_secs(2));
        assert_eq!(s.namespaces, vec!["X"]);
        assert_eq!(s.console_port, 0);
        assert_eq!(s.lib, vec![PathBuf::from("/etc/gd/workers")]);
    }

    #[test]
    fn console_access_keys() {
        let file = DriverFile::parse(
            Path::new("d.toml"),
            "console_socket = \"run/c.sock\"\nconsole_max_connections = 0\n\
             console_bind = \"0.0.0.0\"\ninsecure_bind = true\n",
        )
        .unwrap();
        let errs = merge(&RunFlags::default(), file, Path::new("/etc/gd"), "").unwrap_err();
        assert_eq!(errs.0.len(), 1, "{errs}");
        assert_eq!(errs.0[0].key.as_deref(), Some("console_max_connections"));
        let file = DriverFile::parse(Path::new("d.toml"), "console_socket = \"c.sock\"").unwrap();
        let s = merge(&RunFlags::default(), file, Path::new("/etc/gd"), "").unwrap();
        assert_eq!(s.console_socket, Some(PathBuf::from("/etc/gd/c.sock")));
        assert_eq!(s.console_max_connections, 64);
        assert!(!s.insecure_bind);
        assert_eq!(s.admin_token, None);
    }

    #[test]
    fn http_bind_beyond_loopback_needs_a_token() {
        let file = DriverFile::parse(Path::new("d.toml"), "http_bind = \"0.0.0.0:47301\"").unwrap();
        let errs = merge(&RunFlags::default(), file, Path::new("."), "").unwrap_err();
        assert_eq!(errs.0.len(), 1, "{errs}");
        assert_eq!(errs.0[0].key.as_deref(), Some("http_bind"));
        let file = DriverFile::parse(
            Path::new("d.toml"),
            "http_bind = \"0.0.0.0:47301\"\ninsecure_bind = true",
        )
        .unwrap();
        assert!(merge(&RunFlags::default(), file, Path::new("."), "").is_ok());
    }

    #[test]
    fn http_bind_needs_a_port() {
        assert!(check_bind_address("127.0.0.1:47301").is_ok());
        assert!(check_bind_address("[::1]:0").is_ok());
        assert!(check_bind_address("localhost:8080").is_ok());
        assert!(check_bind_address("127.0.0.1").is_err());
        assert!(check_bind_address("::1").is_err());
        assert!(check_bind_address(":80").is_err());
        assert!(check_bind_address("h:http").is_err());
        let flags = RunFlags {
            http_bind: Some("".into()),
            ..Default::default()
        };
        let file = DriverFile::parse(Path::new("d.toml"), "http_bind = \"127.0.0.1:1\"").unwrap();
        assert_eq!(
            merge(&flags, file, Path::new("."), "").unwrap().http_bind,
            None
        );
    }

    #[test]
    fn perl_level_spellings() {
        assert_eq!(parse_level("INFO"), Some(tracing::Level::INFO));
        assert_eq!(parse_level("DEBUG"), Some(tracing::Level::DEBUG));
        assert_eq!(parse_level("loud"), None);
    }
}
