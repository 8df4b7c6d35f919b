//! `gearman-driver import-driveshaft jobsconfig.json --out DIR`: turns a
//! driveshaft jobs config into a driver config and one `http` worker file
//! per pool, so that a driveshaft installation moves over with its
//! endpoints unchanged.
//!
//! The mapping: `gearman_servers_list` → `server`; each pool → the worker
//! file `workers/Driveshaft/<pool>.toml` whose jobs (`jobs_list`, registered
//! under their own names: `prefix = ""`) share one process group named
//! after the pool, as they shared driveshaft's threads; `worker_count` →
//! `max_processes` (min 0: slots now follow the queue);
//! `job_processing_uri` → `url`, posted as a form as driveshaft's code does;
//! driveshaft's `--max_running_time` flag, if given, → `timeout`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The namespace the imported worker files live in.
pub const NAMESPACE: &str = "Driveshaft";

/// A driveshaft jobs config, as its README describes it.
#[derive(Debug, Deserialize)]
pub struct JobsConfig {
    pub gearman_servers_list: Vec<String>,
    pub pools_list: BTreeMap<String, Pool>,
}

#[derive(Debug, Deserialize)]
pub struct Pool {
    pub job_processing_uri: String,
    pub worker_count: u32,
    pub jobs_list: Vec<String>,
}

/// Options of the import besides the jobs config itself.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// driveshaft's `--max_running_time`, in seconds.
    pub max_running_time: Option<u64>,
}

/// The files to write (relative to the output folder) and remarks for the
/// operator.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Converted {
    pub files: Vec<(PathBuf, String)>,
    pub notes: Vec<String>,
}

/// Converts a jobs config; `source` names it in the files' comments.
pub fn convert(
    config: &JobsConfig,
    source: &str,
    options: &ImportOptions,
) -> Result<Converted, Vec<String>> {
    let mut errors = Vec::new();
    let mut out = Converted::default();
    if config.gearman_servers_list.is_empty() {
        errors.push("gearman_servers_list is empty".to_string());
    }
    let mut seen: HashMap<&str, &str> = HashMap::new();
    let mut files: HashMap<String, &str> = HashMap::new();
    for (name, pool) in &config.pools_list {
        let file_stem = sanitize(name);
        if let Some(other) = files.insert(file_stem.clone(), name) {
            errors.push(format!(
                "pools `{other}` and `{name}` would both be written as {file_stem}.toml; rename one"
            ));
        }
        for function in &pool.jobs_list {
            if !is_valid_key(function) {
                errors.push(format!(
                    "pool `{name}`: job `{function}` cannot be a job key (only A-Z a-z 0-9 _ . : -)"
                ));
            }
            if let Some(other) = seen.insert(function, name) {
                errors.push(format!(
                    "job `{function}` is in pools `{other}` and `{name}`; gearman-driver registers a function once"
                ));
            }
        }
        if pool.jobs_list.is_empty() {
            errors.push(format!("pool `{name}` has an empty jobs_list"));
            continue;
        }
        let max = if pool.worker_count == 0 {
            out.notes.push(format!(
                "pool `{name}` has worker_count 0, which would never run a job; written as max_processes = 1"
            ));
            1
        } else {
            pool.worker_count
        };
        let body = worker_file(name, &file_stem, pool, max, source, options);
        let path = Path::new("workers")
            .join(NAMESPACE)
            .join(format!("{file_stem}.toml"));
        out.files.push((path, body));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    out.files.insert(
        0,
        (PathBuf::from("driver.toml"), driver_config(config, source)),
    );
    Ok(out)
}

fn worker_file(
    pool_name: &str,
    group: &str,
    pool: &Pool,
    max: u32,
    source: &str,
    options: &ImportOptions,
) -> String {
    let mut s = format!(
        "# driveshaft pool {} of {source}, imported by gearman-driver import-driveshaft.\n",
        quoted(pool_name)
    );
    s.push_str("protocol = \"http\"\n");
    s.push_str(&format!("url = {}\n", quoted(&pool.job_processing_uri)));
    s.push_str("# driveshaft posts multipart/form-data; \"json\" sends a JSON body instead.\n");
    s.push_str("request_format = \"form\"\n");
    s.push_str("# Functions are registered under their own names, as driveshaft did.\n");
    s.push_str("prefix = \"\"\n\n");
    s.push_str("[defaults]\n");
    s.push_str(
        "# The pool's jobs share its slots; the console lists the job by the pool's name.\n",
    );
    s.push_str(&format!("process_group = {}\n", quoted(group)));
    s.push_str("# worker_count was driveshaft's fixed thread count; slots now follow the queue.\n");
    s.push_str("min_processes = 0\n");
    s.push_str(&format!("max_processes = {max}\n"));
    if let Some(t) = options.max_running_time {
        s.push_str(&format!("timeout = {t}\n"));
    }
    for function in &pool.jobs_list {
        s.push_str(&format!("\n[jobs.{}]\n", quoted(function)));
    }
    s
}

fn driver_config(config: &JobsConfig, source: &str) -> String {
    let servers: Vec<String> = config
        .gearman_servers_list
        .iter()
        .map(|s| quoted(s))
        .collect();
    format!(
        "# Imported from driveshaft's {source} by gearman-driver import-driveshaft.\n\
         # Run: gearman-driver --config driver.toml\n\
         server = [{}]\n\
         namespaces = [{}]\n\
         lib = [\"workers\"]\n\
         # Seconds between queue polls; slots also start at once when work arrives.\n\
         interval = 1\n\
         # Seconds a surplus slot may sit idle before it is stopped.\n\
         max_idle_time = 10\n",
        servers.join(", "),
        quoted(NAMESPACE)
    )
}

/// A TOML basic string.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn is_valid_key(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
}

/// A pool name as a file stem and group name: what a job key may hold.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

/// Reads `jobsconfig`, converts it and writes the files below `out`.
/// Existing files are left alone unless `force`. Returns what was written.
pub fn import(
    jobsconfig: &Path,
    out: &Path,
    force: bool,
    options: &ImportOptions,
) -> Result<Converted, Vec<String>> {
    let text = std::fs::read_to_string(jobsconfig)
        .map_err(|e| vec![format!("{}: cannot read: {e}", jobsconfig.display())])?;
    let config: JobsConfig = serde_json::from_str(&text).map_err(|e| {
        vec![format!(
            "{}: line {}, column {}: {e}",
            jobsconfig.display(),
            e.line(),
            e.column()
        )]
    })?;
    let name = jobsconfig
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| jobsconfig.display().to_string());
    let converted = convert(&config, &name, options)?;
    if !force {
        let existing: Vec<String> = converted
            .files
            .iter()
            .map(|(rel, _)| out.join(rel))
            .filter(|p| p.exists())
            .map(|p| format!("{} exists (pass --force to overwrite)", p.display()))
            .collect();
        if !existing.is_empty() {
            return Err(existing);
        }
    }
    for (rel, body) in &converted.files {
        let path = out.join(rel);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|_| std::fs::write(&path, body));
        if let Err(e) = written {
            return Err(vec![format!("{}: cannot write: {e}", path.display())]);
        }
    }
    Ok(converted)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// driveshaft README's example, as published.
    const README_EXAMPLE: &str = r#"{
    "gearman_servers_list": [ "localhost" ],
    "pools_list": {
        "ShopStats": { "job_processing_uri": "http://localhost/job.php", "worker_count": 0, "jobs_list": [ "ShopStats" ] },
        "Newsfeed": { "job_processing_uri": "http://localhost/job.php", "worker_count": 0, "jobs_list": [ "Newsfeed" ] },
        "Regular": { "job_processing_uri": "http://localhost/job.php", "worker_count": 0, "jobs_list": [ "Sum3", "Sum", "Sum2" ] }
    }
}"#;

    fn converted(json: &str, options: &ImportOptions) -> Result<Converted, Vec<String>> {
        convert(&serde_json::from_str(json).unwrap(), "jobs.json", options)
    }

    #[test]
    fn the_readme_example_becomes_three_worker_files_and_a_config() {
        let out = converted(README_EXAMPLE, &ImportOptions::default()).unwrap();
        let paths: Vec<String> = out
            .files
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        assert_eq!(
            paths,
            vec![
                "driver.toml",
                "workers/Driveshaft/Newsfeed.toml",
                "workers/Driveshaft/Regular.toml",
                "workers/Driveshaft/ShopStats.toml",
            ]
        );
        assert_eq!(out.notes.len(), 3, "each worker_count 0 is remarked on");
        let driver: toml::Table = toml::from_str(&out.files[0].1).unwrap();
        assert_eq!(driver["server"], toml::Value::from(vec!["localhost"]));
        assert_eq!(driver["namespaces"], toml::Value::from(vec!["Driveshaft"]));
        let regular: toml::Table = toml::from_str(&out.files[2].1).unwrap();
        assert_eq!(regular["protocol"].as_str(), Some("http"));
        assert_eq!(regular["url"].as_str(), Some("http://localhost/job.php"));
        assert_eq!(regular["prefix"].as_str(), Some(""));
        assert_eq!(
            regular["defaults"]["process_group"].as_str(),
            Some("Regular")
        );
        assert_eq!(regular["defaults"]["max_processes"].as_integer(), Some(1));
        let jobs: Vec<&String> = regular["jobs"].as_table().unwrap().keys().collect();
        assert_eq!(jobs, vec!["Sum", "Sum2", "Sum3"]);
        assert!(regular["defaults"].get("timeout").is_none());
    }

    #[test]
    fn worker_count_is_max_and_max_running_time_is_timeout() {
        let json = r#"{"gearman_servers_list": ["g1:4730", "g2"], "pools_list": {"P": {"job_processing_uri": "https://h/j", "worker_count": 12, "jobs_list": ["a"]}}}"#;
        let options = ImportOptions {
            max_running_time: Some(300),
        };
        let out = converted(json, &options).unwrap();
        assert!(out.notes.is_empty());
        let p: toml::Table = toml::from_str(&out.files[1].1).unwrap();
        assert_eq!(p["defaults"]["max_processes"].as_integer(), Some(12));
        assert_eq!(p["defaults"]["min_processes"].as_integer(), Some(0));
        assert_eq!(p["defaults"]["timeout"].as_integer(), Some(300));
        let d: toml::Table = toml::from_str(&out.files[0].1).unwrap();
        assert_eq!(d["server"], toml::Value::from(vec!["g1:4730", "g2"]));
    }

    #[test]
    fn what_cannot_be_imported_is_said() {
        let json = r#"{"gearman_servers_list": [], "pools_list": {
            "A": {"job_processing_uri": "http://h/", "worker_count": 1, "jobs_list": ["f", "bad name"]},
            "B": {"job_processing_uri": "http://h/", "worker_count": 1, "jobs_list": ["f"]},
            "C": {"job_processing_uri": "http://h/", "worker_count": 1, "jobs_list": []},
            "a/b": {"job_processing_uri": "http://h/", "worker_count": 1, "jobs_list": ["x"]},
            "a_b": {"job_processing_uri": "http://h/", "worker_count": 1, "jobs_list": ["y"]}
        }}"#;
        let errors = converted(json, &ImportOptions::default()).unwrap_err();
        let all = errors.join("\n");
        for expected in [
            "gearman_servers_list is empty",
            "job `bad name` cannot be a job key",
            "job `f` is in pools `A` and `B`",
            "pool `C` has an empty jobs_list",
            "pools `a/b` and `a_b` would both be written as a_b.toml",
        ] {
            assert!(all.contains(expected), "{expected} in:\n{all}");
        }
    }
}
