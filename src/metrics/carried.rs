//! The counters' values across an upgrade: [`Recorder::export_counters`]
//! reads every counter the recorder feeds, [`Recorder::restore_counters`]
//! adds them back in the next image, so that Prometheus's `rate()` and
//! `increase()` see the counters continue instead of a reset.
//!
//! Values are keyed by the series' names and labels as `/metrics` shows
//! them, which are a contract already; the hand-over's format
//! (`crate::upgrade::state`) carries them as they are. Gauges are not
//! carried (the next image sets them from what it sees), nor are the
//! duration histograms (prometheus-client does not read a histogram's
//! buckets back; Prometheus's `rate()` over them counts the upgrade as a
//! reset, losing at most one scrape interval's observations).

use std::collections::BTreeMap;

use prometheus_client::metrics::counter::Counter;

use super::families::{ResultLabels, CAUSES, OUTCOMES, START_REASONS};
use super::recorder::Recorder;
use crate::supervisor::Job;

pub const JOBS: &str = "gearman_driver_jobs_total";
pub const STARTS: &str = "gearman_driver_process_starts_total";
pub const EXITS: &str = "gearman_driver_process_exits_total";
pub const WORKERS_CPU: &str = "gearman_driver_workers_cpu_seconds_total";
pub const RELOADS: &str = "gearman_driver_reloads_total";
const RELOAD_RESULTS: [&str; 2] = ["applied", "rejected"];

/// One counter's value, named and labelled as `/metrics` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterValue {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

fn value(name: &str, labels: &[(&str, &str)], value: f64) -> CounterValue {
    CounterValue {
        name: name.to_string(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
    }
}

impl Recorder {
    /// Every counter that is not zero.
    pub fn export_counters(&self) -> Vec<CounterValue> {
        let mut out = Vec::new();
        for (job, h) in &self.jobs {
            for (reason, c) in START_REASONS.iter().zip(&h.starts) {
                out.push(value(
                    STARTS,
                    &[("job", job), ("reason", reason)],
                    c.get() as f64,
                ));
            }
            for (cause, c) in CAUSES.iter().zip(&h.exits) {
                out.push(value(
                    EXITS,
                    &[("job", job), ("cause", cause)],
                    c.get() as f64,
                ));
            }
            out.push(value(WORKERS_CPU, &[("job", job)], h.cpu.get()));
            for (function, f) in &h.functions {
                let function = String::from_utf8_lossy(function);
                for (outcome, c) in OUTCOMES.iter().zip(&f.outcomes) {
                    let labels = [
                        ("job", job.as_str()),
                        ("function", &function),
                        ("outcome", outcome),
                    ];
                    out.push(value(JOBS, &labels, c.get() as f64));
                }
            }
        }
        for result in RELOAD_RESULTS {
            if let Some(c) = self.f.reloads.get(&ResultLabels { result }) {
                out.push(value(RELOADS, &[("result", result)], c.get() as f64));
            }
        }
        out.retain(|v| v.value > 0.0);
        out
    }

    /// Adds carried values onto the series of the jobs (and functions)
    /// that `jobs` still has; values of anything else are dropped, as a
    /// reload drops the series of a removed job.
    pub fn restore_counters(&mut self, values: &[CounterValue], jobs: &BTreeMap<String, Job>) {
        for v in values {
            let label = |key: &str| v.labels.get(key).map(String::as_str).unwrap_or_default();
            if v.name == RELOADS {
                if let Some(result) = RELOAD_RESULTS.into_iter().find(|r| *r == label("result")) {
                    self.f
                        .reloads
                        .get_or_create(&ResultLabels { result })
                        .inc_by(whole(v.value));
                }
                continue;
            }
            let Some((name, job)) = jobs.get_key_value(label("job")) else {
                continue;
            };
            let h = self.handles(name, job);
            let counter: Option<&Counter> = match v.name.as_str() {
                STARTS => pick(&START_REASONS, &h.starts, label("reason")),
                EXITS => pick(&CAUSES, &h.exits, label("cause")),
                JOBS => h
                    .functions
                    .get(label("function").as_bytes())
                    .and_then(|f| pick(&OUTCOMES, &f.outcomes, label("outcome"))),
                WORKERS_CPU => {
                    h.cpu.inc_by(v.value.max(0.0));
                    None
                }
                _ => None,
            };
            if let Some(counter) = counter {
                counter.inc_by(whole(v.value));
            }
        }
    }
}

/// The counter of `label` among `labels`.
fn pick<'a>(labels: &[&str], counters: &'a [Counter], label: &str) -> Option<&'a Counter> {
    counters.get(labels.iter().position(|l| *l == label)?)
}

fn whole(value: f64) -> u64 {
    value.max(0.0).round() as u64
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{JobSpec, Protocol};
    use crate::schedule::Schedules;

    fn recorder() -> Recorder {
        super::super::new(Schedules::new(Vec::new(), Arc::new(Vec::new())))
    }

    fn jobs(names: &[&str]) -> BTreeMap<String, Job> {
        names
            .iter()
            .map(|name| {
                let spec = Arc::new(JobSpec::for_test(name, Protocol::Stdio));
                (name.to_string(), Job::new(spec))
            })
            .collect()
    }

    #[test]
    fn counters_continue_in_the_next_recorder_under_their_exposed_names() {
        let before = jobs(&["A::f", "Gone::g"]);
        let mut old = recorder();
        for (name, job) in &before {
            let h = old.handles(name, job);
            h.starts[1].inc_by(3);
            h.exits[index(&CAUSES, "crash")].inc_by(2);
            h.cpu.inc_by(1.5);
            let done = &h.functions.values().next().unwrap().outcomes[0];
            done.inc_by(41);
        }
        old.on_reload(false);
        let exported = old.export_counters();
        let text = old.exposition().encode();
        for value in &exported {
            assert!(
                text.contains(&format!("{}{{", value.name)),
                "{} is not a series of /metrics",
                value.name
            );
        }

        let mut new = recorder();
        new.restore_counters(&exported, &jobs(&["A::f"]));
        let text = new.exposition().encode();
        for line in [
            r#"gearman_driver_jobs_total{job="A::f",function="A::f",outcome="done"} 41"#,
            r#"gearman_driver_process_starts_total{job="A::f",reason="backlog"} 3"#,
            r#"gearman_driver_process_exits_total{job="A::f",cause="crash"} 2"#,
            r#"gearman_driver_workers_cpu_seconds_total{job="A::f"} 1.5"#,
            r#"gearman_driver_reloads_total{result="rejected"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(
            !text.contains("Gone::g"),
            "a job that is gone has no series"
        );
        assert_eq!(
            new.export_counters().len(),
            exported.len() - 4,
            "the rest carried over"
        );
    }

    fn index(labels: &[&str], label: &str) -> usize {
        labels.iter().position(|l| *l == label).unwrap()
    }
}
