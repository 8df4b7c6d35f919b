//! `gearman_driver_schedule_runs_total{schedule, result}`: read at each
//! scrape from the counts the scheduler already keeps per `[[schedule]]`
//! entry (its runs are not supervisor events, and the counts are kept there
//! for the console's `schedules` anyway), so nothing is counted twice.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;

use crate::schedule::{RunResult, Schedules};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScheduleLabels {
    schedule: String,
    result: String,
}

/// The collector; holds the scheduler's handle.
pub struct ScheduleRuns(pub Schedules);

impl std::fmt::Debug for ScheduleRuns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScheduleRuns")
    }
}

impl Collector for ScheduleRuns {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let states = self.0.states();
        if states.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "gearman_driver_schedule_runs",
            "Runs of each [[schedule]] entry by result (submitted, failed, missed)",
            None,
            MetricType::Counter,
        )?;
        for state in &states {
            for result in RunResult::ALL {
                let labels = ScheduleLabels {
                    schedule: state.name.clone(),
                    result: result.as_str().to_string(),
                };
                ConstCounter::new(state.runs.get(result)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
