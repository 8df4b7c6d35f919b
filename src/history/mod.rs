//! What the dashboard shows beyond the status view, kept by the supervisor
//! while the HTTP listener is on: the last 15 minutes of per-job samples
//! (queue, processes, throughput, duration percentiles) and the latest
//! process events (starts, exits with their cause, crash loops). A page
//! opened now shows the past quarter of an hour at once, and then appends.
//!
//! The supervisor's loop writes (a sample per status poll, at most one a
//! second; an entry per process start, exit and backoff), the HTTP thread
//! reads. Both go through one mutex: the loop holds it for an append, the
//! HTTP thread for a copy of what a request asks for, and serializes after
//! letting go, so a large answer never holds the loop up.
//!
//! - [`samples`]: the ring buffer of samples.
//! - [`events`]: the ring of process events.
//! - [`durations`]: duration bucket counts and percentiles from them.

pub mod durations;
pub mod events;
pub mod samples;

use std::sync::{Arc, Mutex, MutexGuard};

pub use durations::DurationCounts;
pub use events::{EventLog, ProcessEvent};
pub use samples::{JobReading, Samples};

/// Everything kept for the dashboard.
#[derive(Default)]
pub struct History {
    pub samples: Samples,
    pub events: EventLog,
}

/// The history, shared by the supervisor's loop and the HTTP thread.
#[derive(Clone, Default)]
pub struct Shared(Arc<Mutex<History>>);

impl Shared {
    /// The history, locked. A panic while it was held leaves it usable:
    /// it only ever holds whole samples and events.
    pub fn lock(&self) -> MutexGuard<'_, History> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
