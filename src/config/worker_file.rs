//! The worker file format (`workers/GDExamples/Convert.toml`): the raw TOML
//! shape, parsed strictly so that unknown keys and wrong types are errors with
//! a line and column.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::error::ConfigError;
use super::http_worker::RequestFormat;

/// A command: an argv array, or a string split like a shell would (no shell
/// is run).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum CommandSpec {
    Argv(Vec<String>),
    Line(String),
}

impl CommandSpec {
    pub fn to_argv(&self) -> Result<Vec<String>, String> {
        let argv = match self {
            CommandSpec::Argv(v) => v.clone(),
            CommandSpec::Line(s) => {
                shell_words::split(s).map_err(|e| format!("cannot split command: {e}"))?
            }
        };
        if argv.is_empty() || argv[0].is_empty() {
            return Err("command is empty".into());
        }
        Ok(argv)
    }
}

/// How the supervisor talks to a worker's processes.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Resident process, jobs over stdin/stdout; the supervisor speaks Gearman.
    #[default]
    Stdio,
    /// The process speaks Gearman itself.
    Gearman,
    /// One command run per job.
    Exec,
    /// No process: each slot POSTs its jobs to an HTTP endpoint (driveshaft's).
    Http,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Stdio => "stdio",
            Protocol::Gearman => "gearman",
            Protocol::Exec => "exec",
            Protocol::Http => "http",
        }
    }
}

/// Per-job attributes; also the shape of `[defaults]` and `[overrides]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JobAttrs {
    pub min_processes: Option<u32>,
    pub max_processes: Option<u32>,
    pub timeout: Option<u64>,
    pub max_jobs: Option<u64>,
    pub max_lifetime: Option<u64>,
    pub max_rss: Option<u64>,
    pub start_timeout: Option<u64>,
    pub process_group: Option<String>,
}

impl JobAttrs {
    /// `self` where set, else `fallback`.
    pub fn or(&self, fallback: &JobAttrs) -> JobAttrs {
        JobAttrs {
            min_processes: self.min_processes.or(fallback.min_processes),
            max_processes: self.max_processes.or(fallback.max_processes),
            timeout: self.timeout.or(fallback.timeout),
            max_jobs: self.max_jobs.or(fallback.max_jobs),
            max_lifetime: self.max_lifetime.or(fallback.max_lifetime),
            max_rss: self.max_rss.or(fallback.max_rss),
            start_timeout: self.start_timeout.or(fallback.start_timeout),
            process_group: self
                .process_group
                .clone()
                .or_else(|| fallback.process_group.clone()),
        }
    }
}

/// A worker file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerFile {
    /// Required by every protocol but `http`, where it is an error.
    pub command: Option<Spanned<CommandSpec>>,
    #[serde(default)]
    pub protocol: Protocol,
    /// `http` only: the endpoint every job is POSTed to.
    pub url: Option<Spanned<String>>,
    /// `http` only: extra request headers.
    pub headers: Option<Spanned<BTreeMap<String, String>>>,
    /// `http` only: how the job is encoded in the request body.
    pub request_format: Option<Spanned<RequestFormat>>,
    pub prefix: Option<String>,
    /// `TERM` (default), `QUIT`, ...: see [`super::stop_signal`].
    pub stop_signal: Option<Spanned<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Run the processes as this user (a root driver only); see
    /// [`super::isolation`] for these four keys.
    pub user: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    /// An octal string, e.g. `"0027"`.
    pub umask: Option<Spanned<toml::Value>>,
    /// `{ nofile = 1024, as_mib = 2048, cpu_s = 600, core = 0 }`.
    #[serde(default)]
    pub rlimits: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    pub defaults: JobAttrs,
    #[serde(default)]
    pub overrides: JobAttrs,
    #[serde(default)]
    pub jobs: BTreeMap<String, Spanned<JobAttrs>>,
}

impl WorkerFile {
    pub fn parse(path: &Path, source: &str) -> Result<WorkerFile, ConfigError> {
        toml::from_str(source).map_err(|e| ConfigError::from_toml(path, source, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_example() {
        let src = r#"
command = ["python3", "convert.py"]
protocol = "stdio"
prefix = "GDExamples::Convert::"
env = { QUALITY = "85" }
[defaults]
min_processes = 0
[overrides]
max_processes = 5
[jobs.convert_to_jpeg]
min_processes = 0
max_processes = 5
timeout = 30
[jobs.convert_to_gif]
process_group = "image"
"#;
        let wf = WorkerFile::parse(Path::new("x.toml"), src).unwrap();
        assert_eq!(wf.jobs.len(), 2);
        assert_eq!(wf.overrides.max_processes, Some(5));
        assert_eq!(
            wf.command.unwrap().get_ref().to_argv().unwrap(),
            vec!["python3", "convert.py"]
        );
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let src = "command = \"w\"\n[jobs.a]\nmin_procs = 1\n";
        let err = WorkerFile::parse(Path::new("x.toml"), src).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("min_procs"));
        assert_eq!(err.position.map(|p| p.0), Some(3));
    }

    #[test]
    fn wrong_type_has_line() {
        let src = "command = \"w\"\n[jobs.a]\nmin_processes = \"two\"\n";
        let err = WorkerFile::parse(Path::new("x.toml"), src).unwrap_err();
        assert_eq!(err.position.map(|p| p.0), Some(3));
    }

    #[test]
    fn isolation_keys_parse() {
        let src = "command = \"w\"\nuser = \"nobody\"\ngroup = \"nogroup\"\numask = \"0027\"\nrlimits = { nofile = 1024, as_mib = 2048, cpu_s = 600, core = 0 }\n[jobs.a]\n";
        let wf = WorkerFile::parse(Path::new("x.toml"), src).unwrap();
        assert_eq!(wf.user.unwrap().into_inner(), "nobody");
        assert_eq!(wf.rlimits.len(), 4);
        assert_eq!(wf.rlimits["nofile"].get_ref(), &toml::Value::Integer(1024));
    }

    #[test]
    fn string_command_is_split_like_a_shell() {
        let c = CommandSpec::Line("python3 'my worker.py' -v".into());
        assert_eq!(c.to_argv().unwrap(), vec!["python3", "my worker.py", "-v"]);
    }
}
