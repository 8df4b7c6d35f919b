//! Pools in memory, for the unit tests of the command layer and its doors.

use std::collections::BTreeMap;

use super::view::{JobView, Overview, StateCounts};
use super::{JobRow, Pools, ProcRow, ReloadOutcome};
use crate::schedule::ScheduleState;

/// Pools in memory, for the command layer's and the doors' unit tests.
#[derive(Default)]
pub struct FakePools {
    pub jobs: BTreeMap<String, (u32, u32, Vec<u32>)>,
    pub killed: Vec<u32>,
    pub shut: bool,
    pub schedules: Vec<ScheduleState>,
}

impl FakePools {
    pub fn two_jobs() -> FakePools {
        let mut p = FakePools::default();
        p.jobs.insert("J::a".into(), (1, 5, vec![10, 11]));
        p.jobs.insert("J::long_name".into(), (0, 12, vec![20]));
        p
    }
}

impl Pools for FakePools {
    fn job_rows(&mut self) -> Vec<JobRow> {
        self.jobs
            .iter()
            .map(|(n, (min, max, pids))| JobRow {
                name: n.clone(),
                min: *min,
                max: *max,
                processes: pids.len(),
                lastrun: 0,
                lasterror: 0,
                lasterror_msg: String::new(),
            })
            .collect()
    }
    fn job_pids(&self, name: &str) -> Option<Vec<u32>> {
        self.jobs.get(name).map(|j| j.2.clone())
    }
    fn limits(&self, name: &str) -> Option<(u32, u32)> {
        self.jobs.get(name).map(|j| (j.0, j.1))
    }
    fn set_limits(&mut self, name: &str, min: Option<u32>, max: Option<u32>) {
        let j = self.jobs.get_mut(name).unwrap();
        j.0 = min.unwrap_or(j.0);
        j.1 = max.unwrap_or(j.1);
    }
    fn owns(&self, pid: u32) -> bool {
        self.jobs.values().any(|j| j.2.contains(&pid))
    }
    fn kill(&mut self, pids: &[u32]) {
        self.killed.extend(pids);
    }
    fn proc_rows(&self) -> Vec<ProcRow> {
        vec![]
    }
    fn shutdown(&mut self) {
        self.shut = true;
    }
    fn overview(&mut self) -> Overview {
        let jobs = self
            .jobs
            .iter()
            .map(|(n, (min, max, pids))| JobView {
                name: n.clone(),
                min: *min,
                max: *max,
                processes: StateCounts {
                    idle: pids.len(),
                    ..StateCounts::default()
                },
                waiting: 0,
                running: 0,
                workers: 0,
                lastrun: 0,
                lasterror: 0,
                message: String::new(),
                done: 0,
                failed: 0,
                timeouts: 0,
            })
            .collect();
        Overview {
            version: env!("CARGO_PKG_VERSION").into(),
            started: 0,
            servers: vec![],
            jobs,
            processes: vec![],
            schedules: self.schedules.clone(),
        }
    }
    fn reload(&mut self) -> ReloadOutcome {
        ReloadOutcome::Applied(vec!["nothing changed".into()])
    }
    fn schedules(&self) -> Vec<ScheduleState> {
        self.schedules.clone()
    }
}
