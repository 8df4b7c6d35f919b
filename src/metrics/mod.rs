//! Prometheus metrics: the families of the SPEC's table, fed by the
//! supervisor's events and polls through one [`Recorder`], and encoded for
//! `GET /metrics` by the HTTP listener's thread through an [`Exposition`].
//!
//! The crate is `prometheus-client`, the Prometheus project's own Rust
//! client. It writes OpenMetrics text, which Prometheus scrapes natively
//! (promtool 2.42's `check metrics` reads only the classic format, so the
//! tests let a real Prometheus server scrape and query the driver instead).
//! It was chosen over the `prometheus` crate because its metrics are plain
//! atomics shared by cloning: the supervisor keeps a handle per job and
//! function, so counting a job is an atomic add on the supervisor's own
//! thread, with no registry lookup or lock on the hot path, while the
//! listener's thread encodes the same values; and because removing the
//! series of a job that went away is part of its API.
//!
//! - [`families`]: the metric names, label sets and buckets.
//! - [`Recorder`]: what the supervisor calls, once per event, start, poll,
//!   reload and sampling round.
//! - `own_process`: the supervisor's own `process_*` metrics.
//! - `schedules`: `[[schedule]]` runs, read from the scheduler's counts.
//! - [`carried`]: the counters' values across an upgrade.
//!
//! Label sets stay bounded: job and function names (from the worker files),
//! gearmand server addresses (from the config) and the functions gearmand
//! lists; never PIDs or job handles. A job removed by a reload loses its
//! series once its last process is gone.

pub mod carried;
pub mod families;
mod own_process;
mod recorder;
mod schedules;

use std::sync::Arc;

use prometheus_client::registry::Registry;

pub use carried::CounterValue;
pub use recorder::{cause_label, Recorder};

/// The `Content-Type` of [`Exposition::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry, shared with the thread that serves `/metrics`.
#[derive(Clone)]
pub struct Exposition {
    registry: Arc<Registry>,
}

impl Exposition {
    /// Every metric, as OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A registry with every family, the build info set, the supervisor's own
/// process metrics and the runs of `schedules`.
pub fn new(schedules: crate::schedule::Schedules) -> Recorder {
    let mut registry = Registry::default();
    let families = families::Families::register(&mut registry);
    registry.register_collector(Box::new(own_process::OwnProcess));
    registry.register_collector(Box::new(schedules::ScheduleRuns(schedules)));
    families
        .build_info
        .get_or_create(&families::VersionLabels {
            version: crate::version(),
        })
        .set(1);
    Recorder::new(
        families,
        Exposition {
            registry: Arc::new(registry),
        },
    )
}
