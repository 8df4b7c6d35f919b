//! The latest process events, newest last, in a ring of [`CAPACITY`]:
//! starts (and why), exits (and their cause), crash loops (and the
//! backoff). Each has a sequence number, so a page asks only for what came
//! after the last one it has.

use std::collections::VecDeque;

use serde::Serialize;

/// Events kept; older ones are dropped.
pub const CAPACITY: usize = 200;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessEvent {
    /// Increases by one per event, from 1.
    pub seq: u64,
    /// Epoch seconds, with milliseconds.
    pub at: f64,
    pub job: String,
    /// None for a process that never started (a failed spawn).
    pub pid: Option<u32>,
    /// `start`, `exit` or `crash_loop`.
    pub kind: &'static str,
    /// For an exit, the cause as `gearman_driver_process_exits_total`
    /// labels it (idle, crash, killed, ...); for a start, min or backlog.
    pub cause: &'static str,
    /// What happened, in the log's words.
    pub text: String,
}

#[derive(Debug, Default)]
pub struct EventLog {
    last_seq: u64,
    ring: VecDeque<ProcessEvent>,
}

/// An event before it has its number and time.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub job: String,
    pub pid: Option<u32>,
    pub kind: &'static str,
    pub cause: &'static str,
    pub text: String,
}

impl EventLog {
    pub fn push(&mut self, at: f64, event: NewEvent) {
        self.last_seq += 1;
        if self.ring.len() == CAPACITY {
            self.ring.pop_front();
        }
        self.ring.push_back(ProcessEvent {
            seq: self.last_seq,
            at,
            job: event.job,
            pid: event.pid,
            kind: event.kind,
            cause: event.cause,
            text: event.text,
        });
    }

    /// The events numbered above `seq` that are still kept, oldest first.
    pub fn after(&self, seq: u64) -> Vec<ProcessEvent> {
        let newer = self.ring.iter().rev().take_while(|e| e.seq > seq).count();
        self.ring
            .iter()
            .skip(self.ring.len() - newer)
            .cloned()
            .collect()
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: usize) -> NewEvent {
        NewEvent {
            job: format!("J{n}"),
            pid: Some(n as u32),
            kind: "start",
            cause: "min",
            text: "Process started".into(),
        }
    }

    #[test]
    fn keeps_the_latest_and_answers_what_came_after() {
        let mut log = EventLog::default();
        assert!(log.after(0).is_empty());
        for n in 1..=CAPACITY + 5 {
            log.push(n as f64, event(n));
        }
        let all = log.after(0);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].seq, 6, "the five oldest were dropped");
        assert_eq!(all.last().unwrap().seq, log.last_seq());
        let newer = log.after(log.last_seq() - 2);
        assert_eq!(newer.iter().map(|e| e.seq).collect::<Vec<_>>(), [204, 205]);
        assert!(log.after(log.last_seq()).is_empty());
    }
}
