//! Log lines: `2026-11-23T08:12:40Z  INFO (1234) [GDExamples::Convert::convert_to_jpeg] Process started`.
//! A UTC timestamp, the level, and for process events `(pid) [job]`, written
//! to standard error or appended to `--logfile`.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

struct UtcSeconds;

impl FormatTime for UtcSeconds {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        write!(w, "{}", chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"))
    }
}

/// Installs the global subscriber. Call once, before any thread logs.
pub fn init(level: tracing::Level, logfile: Option<&Path>) -> std::io::Result<()> {
    let builder = tracing_subscriber::fmt()
        .with_timer(UtcSeconds)
        .with_target(false)
        .with_max_level(level);
    match logfile {
        Some(path) => {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            builder
                .with_ansi(false)
                .with_writer(Mutex::new(file))
                .init();
        }
        None => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            builder.with_ansi(ansi).with_writer(std::io::stderr).init();
        }
    }
    Ok(())
}

/// The `(pid) [job]` prefix of process events.
pub fn proc_tag(pid: u32, job: &str) -> String {
    format!("({pid}) [{job}]")
}
