//! Log lines, their two formats, and the log file.
//!
//! Process events carry the tracing fields `pid` and `job` (job events only
//! `job`): `tracing::info!(pid, job = name, "Process started")`. Each format
//! renders them its way:
//!
//! - text (the default): `2026-11-23T08:12:40Z  INFO (1234) [GDExamples::Convert::convert_to_jpeg] Process started`,
//!   a UTC timestamp, the level, `(pid) [job]`, the message;
//! - json (`log_format = "json"`): one object per line,
//!   `{"ts":"2026-11-23T08:12:40.120Z","level":"info","msg":"Process started","pid":1234,"job":"..."}`.
//!
//! Lines go to standard error or are appended to `--logfile`, which
//! [`reopen`] opens anew (after logrotate moved it away; called on HUP and
//! on the console's `reload`).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

/// `log_format` / `--log-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text lines: UTC time, level, (pid) [job] for process events, message.
    #[default]
    Text,
    /// One JSON object per line: ts, level, msg, and pid, job for process events.
    Json,
}

/// The log file in use, for [`reopen`]; unset when logging to standard error.
static LOG_FILE: OnceLock<Arc<LogFile>> = OnceLock::new();

/// Installs the global subscriber. Call once, before any thread logs.
pub fn init(level: tracing::Level, logfile: Option<&Path>, format: LogFormat) -> io::Result<()> {
    let builder = tracing_subscriber::fmt()
        .with_timer(UtcSeconds)
        .with_target(false)
        .with_max_level(level)
        .fmt_fields(TextFields);
    match logfile {
        Some(path) => {
            let file = Arc::new(LogFile::open(path)?);
            let _ = LOG_FILE.set(file.clone());
            let builder = builder.with_ansi(false).with_writer(file);
            match format {
                LogFormat::Text => builder.init(),
                LogFormat::Json => builder.event_format(JsonLines).init(),
            }
        }
        None => {
            let ansi =
                format == LogFormat::Text && std::io::IsTerminal::is_terminal(&std::io::stderr());
            let builder = builder.with_ansi(ansi).with_writer(std::io::stderr);
            match format {
                LogFormat::Text => builder.init(),
                LogFormat::Json => builder.event_format(JsonLines).init(),
            }
        }
    }
    Ok(())
}

/// Opens the log file again under its configured path, so that lines go to
/// a new file once logrotate has moved the old one away. Nothing to do when
/// logging to standard error. On failure the old file stays in use.
pub fn reopen() {
    let Some(file) = LOG_FILE.get() else { return };
    if let Err(err) = file.reopen() {
        tracing::error!(
            "cannot reopen log file {}: {err}; still writing to the old one",
            file.path.display()
        );
    }
}

/// An appended log file that can be swapped for a fresh one.
struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl LogFile {
    fn open(path: &Path) -> io::Result<LogFile> {
        Ok(LogFile {
            path: path.to_path_buf(),
            file: Mutex::new(Self::open_append(path)?),
        })
    }

    fn open_append(path: &Path) -> io::Result<File> {
        OpenOptions::new().create(true).append(true).open(path)
    }

    fn reopen(&self) -> io::Result<()> {
        let fresh = Self::open_append(&self.path)?;
        *self.lock() = fresh;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, File> {
        // A panic while writing a line leaves the file usable.
        self.file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Lines are written whole (tracing-subscriber formats a line, then writes
/// it with one `write_all`), so `Arc<LogFile>` serves as the subscriber's
/// writer through tracing-subscriber's `MakeWriter for Arc<W>`.
impl io::Write for &LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.lock().flush()
    }
}

struct UtcSeconds;

impl FormatTime for UtcSeconds {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        write!(w, "{}", chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"))
    }
}

/// A process event's `pid` and `job` fields.
#[derive(Debug, Default, PartialEq, Eq)]
struct ProcFields {
    pid: Option<u64>,
    job: Option<String>,
}

impl ProcFields {
    fn of(fields: &impl RecordFields) -> ProcFields {
        let mut found = ProcFields::default();
        fields.record(&mut found);
        found
    }

    fn is_proc_field(field: &Field) -> bool {
        matches!(field.name(), "pid" | "job")
    }
}

impl Visit for ProcFields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "pid" {
            self.pid = Some(value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "pid" {
            self.pid = u64::try_from(value).ok();
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "job" {
            self.job = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "job" => self.job = Some(format!("{value:?}")),
            "pid" => self.pid = format!("{value:?}").parse().ok(),
            _ => {}
        }
    }
}

/// The text format's fields: `(pid) [job] ` first, then the message and any
/// other field as tracing-subscriber writes them by default.
struct TextFields;

impl<'writer> FormatFields<'writer> for TextFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let tag = ProcFields::of(&fields);
        if let Some(pid) = tag.pid {
            write!(writer, "({pid}) ")?;
        }
        if let Some(job) = &tag.job {
            write!(writer, "[{job}] ")?;
        }
        let mut rest = SkipProcFields(DefaultVisitor::new(writer, true));
        fields.record(&mut rest);
        rest.0.finish()
    }
}

/// Passes every field but `pid` and `job` on.
struct SkipProcFields<V>(V);

impl<V: Visit> Visit for SkipProcFields<V> {
    fn record_i64(&mut self, field: &Field, value: i64) {
        if !ProcFields::is_proc_field(field) {
            self.0.record_i64(field, value)
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if !ProcFields::is_proc_field(field) {
            self.0.record_u64(field, value)
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if !ProcFields::is_proc_field(field) {
            self.0.record_bool(field, value)
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if !ProcFields::is_proc_field(field) {
            self.0.record_str(field, value)
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if !ProcFields::is_proc_field(field) {
            self.0.record_error(field, value)
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !ProcFields::is_proc_field(field) {
            self.0.record_debug(field, value)
        }
    }
}

/// The json format: `{"ts":..,"level":..,"msg":..,"pid":..,"job":..}`, keys
/// in that order, then any other field under its own name.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        writer.write_str(&json_line(&ts.to_string(), &level, fields))?;
        writer.write_char('\n')
    }
}

/// An event's fields as JSON values, the message apart.
#[derive(Default)]
struct JsonFields {
    msg: String,
    pid: Option<serde_json::Value>,
    job: Option<serde_json::Value>,
    other: Vec<(String, serde_json::Value)>,
}

impl JsonFields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        match field.name() {
            "message" => {
                self.msg = match value {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                }
            }
            "pid" => self.pid = Some(value),
            "job" => self.job = Some(value),
            // Metadata of events bridged from the `log` crate, as the text
            // format leaves them out too.
            name if name.starts_with("log.") => {}
            name => self.other.push((name.to_string(), value)),
        }
    }
}

impl Visit for JsonFields {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

fn json_line(ts: &str, level: &str, fields: JsonFields) -> String {
    let mut object = vec![
        ("ts".to_string(), serde_json::Value::from(ts)),
        ("level".to_string(), level.into()),
        ("msg".to_string(), fields.msg.into()),
    ];
    object.extend(fields.pid.map(|v| ("pid".to_string(), v)));
    object.extend(fields.job.map(|v| ("job".to_string(), v)));
    object.extend(fields.other);
    let members: Vec<String> = object
        .into_iter()
        .map(|(key, value)| format!("{}:{value}", serde_json::Value::from(key)))
        .collect();
    format!("{{{}}}", members.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    /// Captures what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<StdMutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn log_with(format: LogFormat, f: impl FnOnce()) -> String {
        let out = Captured::default();
        let sink = out.clone();
        let builder = tracing_subscriber::fmt()
            .with_timer(UtcSeconds)
            .with_target(false)
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .fmt_fields(TextFields)
            .with_writer(move || sink.clone());
        match format {
            LogFormat::Text => tracing::subscriber::with_default(builder.finish(), f),
            LogFormat::Json => {
                tracing::subscriber::with_default(builder.event_format(JsonLines).finish(), f)
            }
        }
        out.text()
    }

    /// Cuts the timestamp off a text line.
    fn after_timestamp(line: &str) -> &str {
        let (ts, rest) = line.split_once(' ').unwrap();
        assert_eq!(ts.len(), "2026-11-23T09:12:03Z".len(), "{line}");
        assert!(ts.ends_with('Z'));
        rest
    }

    #[test]
    fn text_renders_process_fields_as_the_pid_job_prefix() {
        let job = String::from("GDExamples::Convert::convert_to_jpeg");
        let pid: u32 = 4242;
        let out = log_with(LogFormat::Text, || {
            tracing::info!(pid, job = job.as_str(), "Process started");
            tracing::warn!(pid, job = %job, "Exited with status {}", 3);
            tracing::error!(job = job.as_str(), "cannot start x; next start in 1s");
            tracing::info!("gearman-driver started");
        });
        let lines: Vec<&str> = out.lines().map(after_timestamp).collect();
        assert_eq!(
            lines,
            [
                " INFO (4242) [GDExamples::Convert::convert_to_jpeg] Process started",
                " WARN (4242) [GDExamples::Convert::convert_to_jpeg] Exited with status 3",
                "ERROR [GDExamples::Convert::convert_to_jpeg] cannot start x; next start in 1s",
                " INFO gearman-driver started",
            ]
        );
    }

    #[test]
    fn text_keeps_other_fields_after_the_message() {
        let out = log_with(LogFormat::Text, || {
            tracing::info!(pid = 7u32, job = "j", attempt = 2, "retry");
        });
        assert_eq!(
            after_timestamp(out.trim_end()),
            " INFO (7) [j] retry attempt=2"
        );
    }

    #[test]
    fn json_has_ts_level_msg_and_process_fields() {
        let out = log_with(LogFormat::Json, || {
            tracing::info!(pid = 4242u32, job = "A::b", "STDERR: say \"hi\"\t");
            tracing::debug!("plain");
            tracing::warn!(job = "A::b", attempt = 2, "job only");
        });
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["level"], "info");
        assert_eq!(lines[0]["msg"], "STDERR: say \"hi\"\t");
        assert_eq!(lines[0]["pid"], 4242);
        assert_eq!(lines[0]["job"], "A::b");
        let ts = lines[0]["ts"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
        assert_eq!(lines[1]["msg"], "plain");
        assert_eq!(lines[1]["level"], "debug");
        assert!(lines[1].get("pid").is_none() && lines[1].get("job").is_none());
        assert_eq!(lines[2]["job"], "A::b");
        assert_eq!(lines[2]["attempt"], 2);
        // Keys in a fixed order, for people reading the file.
        assert!(out.lines().next().unwrap().starts_with("{\"ts\":"));
    }

    #[test]
    fn reopen_writes_to_a_new_file_after_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("driver.log");
        let file = Arc::new(LogFile::open(&path).unwrap());
        let write = |line: &[u8]| io::Write::write_all(&mut &*file, line).unwrap();
        write(b"one\n");
        std::fs::rename(&path, dir.path().join("driver.log.1")).unwrap();
        write(b"two\n");
        file.reopen().unwrap();
        write(b"three\n");
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(read("driver.log.1"), "one\ntwo\n");
        assert_eq!(read("driver.log"), "three\n");
    }
}
