//! The driver config file (`--config FILE`): its raw TOML shape, parsed
//! strictly. Every key is optional; flags override it (see [`super::cli`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::error::ConfigError;
use super::worker_file::CommandSpec;
use crate::schedule::Priority;

/// A list that may be written as one string (commas allowed) or an array.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum StringList {
    One(String),
    Many(Vec<String>),
}

impl StringList {
    /// Items split on commas and trimmed, empty ones dropped.
    pub fn items(&self) -> Vec<String> {
        let raw: Vec<&str> = match self {
            StringList::One(s) => vec![s.as_str()],
            StringList::Many(v) => v.iter().map(String::as_str).collect(),
        };
        split_list(raw)
    }
}

/// Splits every item on commas, trims, drops empties.
pub fn split_list<'a>(items: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    items
        .into_iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Seconds, as an integer or a float.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Seconds {
    Int(i64),
    Float(f64),
}

impl Seconds {
    pub fn as_f64(self) -> f64 {
        match self {
            Seconds::Int(i) => i as f64,
            Seconds::Float(f) => f,
        }
    }
}

/// `[job_runtime_attributes."<job>"]`: min/max that win over the worker file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RuntimeAttrs {
    pub min_processes: Option<u32>,
    pub max_processes: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverFile {
    pub server: Option<StringList>,
    pub namespaces: Option<StringList>,
    pub lib: Option<StringList>,
    pub console_port: Option<u16>,
    pub console_bind: Option<String>,
    pub http_bind: Option<String>,
    pub interval: Option<Seconds>,
    pub max_idle_time: Option<Seconds>,
    pub shutdown_timeout: Option<Seconds>,
    pub logfile: Option<String>,
    pub loglevel: Option<String>,
    pub log_format: Option<crate::logging::LogFormat>,
    pub worker_scheduling: Option<super::isolation::WorkerScheduling>,
    pub pid_file: Option<String>,
    pub daemonize: Option<bool>,
    pub user: Option<String>,
    pub admin_token_file: Option<String>,
    pub console_socket: Option<String>,
    pub console_max_connections: Option<usize>,
    pub insecure_bind: Option<bool>,
    pub unknown_job_command: Option<CommandSpec>,
    pub perl_lib: Option<String>,
    #[serde(default)]
    pub worker_options: BTreeMap<String, toml::Table>,
    #[serde(default)]
    pub job_runtime_attributes: BTreeMap<String, RuntimeAttrs>,
    /// `[[schedule]]` entries, validated by [`super::schedules::resolve`].
    #[serde(default)]
    pub schedule: Vec<Spanned<RawSchedule>>,
}

/// One `[[schedule]]` entry as written; spans locate the errors found later.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    pub name: Spanned<String>,
    pub cron: Option<Spanned<String>>,
    pub every: Option<Spanned<String>>,
    pub function: Spanned<String>,
    pub workload: Option<Spanned<String>>,
    pub workload_file: Option<Spanned<String>>,
    #[serde(default)]
    pub priority: Priority,
    pub timezone: Option<Spanned<String>>,
}

impl DriverFile {
    pub fn parse(path: &Path, source: &str) -> Result<DriverFile, ConfigError> {
        toml::from_str(source).map_err(|e| ConfigError::from_toml(path, source, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_as_string_or_array() {
        let f = DriverFile::parse(Path::new("d.toml"), "server = \"h1:4730, h2:4731\"").unwrap();
        assert_eq!(f.server.unwrap().items(), vec!["h1:4730", "h2:4731"]);
        let f = DriverFile::parse(Path::new("d.toml"), "server = [\"h1:4730\", \"h2\"]").unwrap();
        assert_eq!(f.server.unwrap().items(), vec!["h1:4730", "h2"]);
    }

    #[test]
    fn interval_takes_fractions_and_integers() {
        let f =
            DriverFile::parse(Path::new("d.toml"), "interval = 0.5\nmax_idle_time = 3").unwrap();
        assert_eq!(f.interval.unwrap().as_f64(), 0.5);
        assert_eq!(f.max_idle_time.unwrap().as_f64(), 3.0);
    }

    #[test]
    fn unknown_key_is_an_error() {
        let err = DriverFile::parse(Path::new("d.toml"), "\nconsole_prot = 1").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("console_prot"));
        assert_eq!(err.position.map(|p| p.0), Some(2));
    }
}
