//! The supervisor's own `process_*` metrics under the names every Prometheus
//! client uses (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`, `process_start_time_seconds`), read from `/proc/self`
//! at each scrape by a collector and written through the crate's encoder.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

#[derive(Debug, Default)]
pub struct OwnProcess;

/// What `/proc/self` says right now.
struct Reading {
    cpu_seconds: f64,
    resident_bytes: i64,
    open_fds: i64,
    start_time: f64,
}

fn read() -> Option<Reading> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
    // SAFETY: sysconf has no preconditions.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK).max(1) as f64,
            libc::sysconf(libc::_SC_PAGESIZE).max(4096) as f64,
        )
    };
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as i64 - 1);
    Some(Reading {
        cpu_seconds: (field(14)? + field(15)?) / ticks,
        resident_bytes: (field(24)? * page) as i64,
        open_fds: open_fds.max(0),
        start_time: boot_time()? + field(22)? / ticks,
    })
}

/// Epoch seconds at boot, from `/proc/stat`.
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

impl Collector for OwnProcess {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(r) = read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(r.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "User and system CPU time of the supervisor",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory",
                "Resident memory of the supervisor",
                Some(Unit::Bytes),
                r.resident_bytes,
            ),
            (
                "process_open_fds",
                "Open file descriptors of the supervisor",
                None,
                r.open_fds,
            ),
        ];
        for (name, help, unit, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(
                name,
                help,
                unit.as_ref(),
                gauge.metric_type(),
            )?)?;
        }
        let start = ConstGauge::new(r.start_time);
        start.encode(encoder.encode_descriptor(
            "process_start_time",
            "When the supervisor started, epoch seconds",
            Some(&Unit::Seconds),
            start.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let r = read().expect("/proc/self is readable");
        assert!(r.resident_bytes > 0);
        assert!(r.open_fds >= 3);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(r.start_time <= now + 1.0 && r.start_time > now - 3600.0);
    }
}
