//! Pools in memory, for the unit tests of the command layer and its doors.

use std::collections::BTreeMap;

use super::view::{JobView, Overview, StateCounts};
use super::{JobRow, Pools, ProcRow, ReloadOutcome};
use crate::schedule::ScheduleState;
use crate::supervisor::WorkerId;

/// Pools in memory, for the command layer's and the doors' unit tests.
#[derive(Default)]
pub struct FakePools {
    pub jobs: BTreeMap<String, (u32, u32, Vec<WorkerId>)>,
    pub killed: Vec<WorkerId>,
    pub shut: bool,
    pub schedules: Vec<ScheduleState>,
}

impl FakePools {
    pub fn two_jobs() -> FakePools {
        let mut p = FakePools::default();
        let process = |pid| WorkerId::process(u64::from(pid), pid);
        p.jobs
            .insert("J::a".into(), (1, 5, vec![process(10), process(11)]));
        p.jobs
            .insert("J::long_name".into(), (0, 12, vec![process(20)]));
        p
    }

    /// What `kill` was given, as `ps` shows the members.
    pub fn killed_pids(&self) -> Vec<String> {
        self.killed.iter().map(WorkerId::to_string).collect()
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
    fn job_members(&self, name: &str) -> Option<Vec<WorkerId>> {
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
    fn member_with_pid(&self, pid: u32) -> Option<WorkerId> {
        self.jobs
            .values()
            .flat_map(|j| j.2.iter())
            .find(|m| m.pid() == Some(pid))
            .copied()
    }
    fn kill(&mut self, members: &[WorkerId]) {
        self.killed.extend(members);
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
            version: crate::version(),
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
    fn upgrade_blocked(&self) -> Option<String> {
        Some("an upgrade is under way".into())
    }
    fn schedules(&self) -> Vec<ScheduleState> {
        self.schedules.clone()
    }
}
