//! Validation of the driver config's `[[schedule]]` entries into
//! [`ScheduleSpec`]s. Every problem is reported with the config file, the
//! key (`schedule[0].cron`, counting entries from 0 as they appear) and the
//! line of the offending value; all of them at once, like the rest of the
//! configuration.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use chrono_tz::Tz;
use toml::Spanned;

use super::driver_file::RawSchedule;
use super::error::{ConfigError, ConfigErrors};
use crate::schedule::spec::{check_name, ScheduleSpec, Timing};

/// Where the entries came from, for the errors and for `workload_file`.
pub struct Source<'a> {
    pub file: &'a Path,
    pub text: &'a str,
    /// `workload_file` is relative to the config file's folder.
    pub base_dir: &'a Path,
}

/// Validates every entry; errors for all bad ones, or the specs in order.
pub fn resolve(
    raw: &[Spanned<RawSchedule>],
    source: &Source<'_>,
) -> Result<Vec<ScheduleSpec>, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let mut specs = Vec::new();
    let mut first_line_of: HashMap<&str, usize> = HashMap::new();
    for (index, entry) in raw.iter().enumerate() {
        let at = |key: &str, offset: usize, message: String| {
            ConfigError::new(message)
                .in_file(source.file)
                .at_key(format!("schedule[{index}]{key}"))
                .at_offset(source.text, offset)
        };
        let table_start = entry.span().start;
        let entry = entry.get_ref();
        let name = entry.name.get_ref();
        if let Err(msg) = check_name(name) {
            errors.push(at(".name", entry.name.span().start, msg));
        }
        let line = super::error::line_col(source.text, entry.name.span().start).0;
        match first_line_of.get(name.as_str()) {
            Some(first) => errors.push(at(
                ".name",
                entry.name.span().start,
                format!("two schedules are named `{name}` (the first on line {first})"),
            )),
            None => {
                first_line_of.insert(name, line);
            }
        }
        match resolve_entry(entry, source) {
            Ok(spec) => specs.push(spec),
            Err(problems) => {
                for p in problems {
                    errors.push(at(p.key, p.offset.unwrap_or(table_start), p.message));
                }
            }
        }
    }
    errors.into_result(specs)
}

/// A problem in one entry: the key after `schedule[i]`, and where.
struct Problem {
    key: &'static str,
    offset: Option<usize>,
    message: String,
}

fn problem(key: &'static str, value: &Spanned<String>, message: String) -> Problem {
    Problem {
        key,
        offset: Some(value.span().start),
        message,
    }
}

fn resolve_entry(entry: &RawSchedule, source: &Source<'_>) -> Result<ScheduleSpec, Vec<Problem>> {
    let mut problems = Vec::new();
    let timing = match resolve_timing(entry) {
        Ok(timing) => Some(timing),
        Err(p) => {
            problems.push(p);
            None
        }
    };
    let workload = match resolve_workload(entry, source.base_dir) {
        Ok(workload) => Some(workload),
        Err(p) => {
            problems.push(p);
            None
        }
    };
    let function = entry.function.get_ref().trim();
    if function.is_empty() {
        problems.push(problem(
            ".function",
            &entry.function,
            "names the Gearman function to submit to and must not be empty".into(),
        ));
    }
    match (timing, workload) {
        (Some(timing), Some(workload)) if problems.is_empty() => Ok(ScheduleSpec {
            name: entry.name.get_ref().clone(),
            timing,
            function: function.to_string(),
            workload,
            priority: entry.priority,
        }),
        _ => Err(problems),
    }
}

fn resolve_timing(entry: &RawSchedule) -> Result<Timing, Problem> {
    match (&entry.cron, &entry.every) {
        (Some(_), Some(every)) => Err(problem(
            ".every",
            every,
            "set either `cron` or `every`, not both".into(),
        )),
        (None, None) => Err(Problem {
            key: "",
            offset: None,
            message: "needs `cron` (e.g. \"0 3 * * *\") or `every` (e.g. \"30s\")".into(),
        }),
        (None, Some(every)) => {
            if let Some(zone) = &entry.timezone {
                return Err(problem(
                    ".timezone",
                    zone,
                    "applies to `cron` only: `every` counts real time from the Unix epoch".into(),
                ));
            }
            Timing::every(every.get_ref()).map_err(|msg| problem(".every", every, msg))
        }
        (Some(cron), None) => {
            let zone = match &entry.timezone {
                Some(zone) => {
                    parse_zone(zone.get_ref()).map_err(|m| problem(".timezone", zone, m))?
                }
                None => Tz::UTC,
            };
            Timing::cron(cron.get_ref(), zone).map_err(|msg| problem(".cron", cron, msg))
        }
    }
}

fn parse_zone(name: &str) -> Result<Tz, String> {
    name.trim().parse::<Tz>().map_err(|_| {
        format!("unknown time zone `{name}`: use an IANA name such as \"UTC\" or \"Europe/Berlin\"")
    })
}

fn resolve_workload(entry: &RawSchedule, base_dir: &Path) -> Result<Bytes, Problem> {
    match (&entry.workload, &entry.workload_file) {
        (Some(_), Some(file)) => Err(problem(
            ".workload_file",
            file,
            "set either `workload` or `workload_file`, not both".into(),
        )),
        (Some(text), None) => Ok(Bytes::copy_from_slice(text.get_ref().as_bytes())),
        (None, Some(file)) => {
            let path = base_dir.join(file.get_ref());
            std::fs::read(&path).map(Bytes::from).map_err(|e| {
                problem(
                    ".workload_file",
                    file,
                    format!("cannot read {}: {e}", path.display()),
                )
            })
        }
        (None, None) => Ok(Bytes::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DriverFile;
    use crate::schedule::Priority;

    fn resolve_text(text: &str, base_dir: &Path) -> Result<Vec<ScheduleSpec>, ConfigErrors> {
        let file = Path::new("d.toml");
        let parsed = DriverFile::parse(file, text).map_err(ConfigErrors::from)?;
        resolve(
            &parsed.schedule,
            &Source {
                file,
                text,
                base_dir,
            },
        )
    }

    /// The single error of `text`, as displayed.
    fn error_of(text: &str) -> String {
        let errors = resolve_text(text, Path::new(".")).unwrap_err();
        assert_eq!(errors.0.len(), 1, "one error: {errors}");
        errors.0[0].to_string()
    }

    #[test]
    fn a_full_entry_resolves() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("payload.json"), b"{\"day\": 1}").unwrap();
        let specs = resolve_text(
            r#"
[[schedule]]
name = "nightly-report"
cron = "0 3 * * *"
function = "Reports::nightly"
workload_file = "payload.json"
priority = "high"
timezone = "Europe/Berlin"

[[schedule]]
name = "tick"
every = "30s"
function = "Ticks::tick"
workload = "{}"
"#,
            dir.path(),
        )
        .unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].name, "nightly-report");
        assert_eq!(specs[0].workload, Bytes::from_static(b"{\"day\": 1}"));
        assert_eq!(specs[0].priority, Priority::High);
        assert_eq!(
            specs[0].timing.to_string(),
            "cron `0 3 * * *` (Europe/Berlin)"
        );
        assert_eq!(specs[1].priority, Priority::Normal);
        assert_eq!(specs[1].timing.to_string(), "every 30s");
        assert_eq!(specs[1].workload, Bytes::from_static(b"{}"));
    }

    #[test]
    fn a_bad_cron_expression_names_key_and_line() {
        let err = error_of("[[schedule]]\nname = \"a\"\nfunction = \"f\"\ncron = \"0 25 * * *\"\n");
        assert!(
            err.starts_with("d.toml:4:8: key `schedule[0].cron`: cannot parse `0 25 * * *`"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_timezone_is_refused() {
        let err = error_of(
            "[[schedule]]\nname = \"a\"\nfunction = \"f\"\ncron = \"0 3 * * *\"\ntimezone = \"Mars/Olympus\"\n",
        );
        assert!(
            err.contains(":5:12: key `schedule[0].timezone`: unknown time zone `Mars/Olympus`"),
            "{err}"
        );
    }

    #[test]
    fn cron_and_every_exclude_each_other() {
        let err = error_of(
            "[[schedule]]\nname = \"a\"\nfunction = \"f\"\ncron = \"0 3 * * *\"\nevery = \"1h\"\n",
        );
        assert!(
            err.contains(":5:9: key `schedule[0].every`: set either `cron` or `every`"),
            "{err}"
        );
        let err = error_of("[[schedule]]\nname = \"a\"\nfunction = \"f\"\n");
        assert!(err.contains("key `schedule[0]`: needs `cron`"), "{err}");
        let err = error_of(
            "[[schedule]]\nname = \"a\"\nfunction = \"f\"\nevery = \"1h\"\ntimezone = \"UTC\"\n",
        );
        assert!(
            err.contains("key `schedule[0].timezone`: applies to `cron` only"),
            "{err}"
        );
    }

    #[test]
    fn workload_and_workload_file_exclude_each_other() {
        let err = error_of(
            "[[schedule]]\nname = \"a\"\nfunction = \"f\"\nevery = \"1h\"\nworkload = \"x\"\nworkload_file = \"x.json\"\n",
        );
        assert!(
            err.contains(":6:17: key `schedule[0].workload_file`: set either"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_workload_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let errors = resolve_text(
            "[[schedule]]\nname = \"a\"\nfunction = \"f\"\nevery = \"1h\"\nworkload_file = \"gone.json\"\n",
            dir.path(),
        )
        .unwrap_err();
        let err = errors.to_string();
        let path = dir.path().join("gone.json");
        assert!(err.contains("key `schedule[0].workload_file`"), "{err}");
        assert!(
            err.contains(&format!("cannot read {}", path.display())),
            "{err}"
        );
    }

    #[test]
    fn duplicate_names_point_at_the_first() {
        let err = error_of(
            "[[schedule]]\nname = \"a\"\nfunction = \"f\"\nevery = \"1h\"\n\n[[schedule]]\nname = \"a\"\nfunction = \"g\"\nevery = \"2h\"\n",
        );
        assert!(
            err.contains(
                ":7:8: key `schedule[1].name`: two schedules are named `a` (the first on line 2)"
            ),
            "{err}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let errors = resolve_text(
            "[[schedule]]\nname = \"bad name\"\nfunction = \"\"\nevery = \"soon\"\n\n[[schedule]]\nname = \"b\"\nfunction = \"f\"\ncron = \"nonsense\"\n",
            Path::new("."),
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.0.iter().filter_map(|e| e.key.as_deref()).collect();
        assert_eq!(
            keys,
            [
                "schedule[0].name",
                "schedule[0].every",
                "schedule[0].function",
                "schedule[1].cron"
            ]
        );
    }

    #[test]
    fn unknown_keys_and_priorities_are_serde_errors_with_lines() {
        let file = Path::new("d.toml");
        let err = DriverFile::parse(
            file,
            "[[schedule]]\nname = \"a\"\nfunction = \"f\"\nevery = \"1h\"\ncrn = \"x\"\n",
        )
        .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("crn"));
        assert_eq!(err.position.map(|p| p.0), Some(5));
        let err = DriverFile::parse(
            file,
            "[[schedule]]\nname = \"a\"\nfunction = \"f\"\nevery = \"1h\"\npriority = \"urgent\"\n",
        )
        .unwrap_err();
        assert!(err.message.contains("urgent"), "{err}");
        assert_eq!(err.position.map(|p| p.0), Some(5));
    }
}
