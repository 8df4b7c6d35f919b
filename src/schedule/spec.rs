//! What a validated `[[schedule]]` entry means: when it runs ([`Timing`]),
//! what it submits ([`ScheduleSpec`]), at which priority, and the unique id
//! each run carries. Pure: no I/O, no clock reads, so every rule here is
//! unit-tested with fixed instants (daylight-saving changes included).

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::gearman::PacketType;

/// gearmand keeps at most 63 bytes of a unique id (a 64-byte C string);
/// longer ones are cut, and two runs could then share one id.
pub const MAX_UNIQUE_LEN: usize = 63;
/// `@` and `YYYY-MM-DDTHH:MM:SSZ` follow the name in the unique id.
pub const MAX_NAME_LEN: usize = MAX_UNIQUE_LEN - 1 - 20;

/// The queue a run is submitted to: `SUBMIT_JOB_HIGH_BG`, `_BG` or `_LOW_BG`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    pub fn packet_type(self) -> PacketType {
        match self {
            Priority::High => PacketType::SubmitJobHighBg,
            Priority::Normal => PacketType::SubmitJobBg,
            Priority::Low => PacketType::SubmitJobLowBg,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

/// When a schedule runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Timing {
    /// A cron expression read on the wall clock of `timezone`. Daylight-saving
    /// changes are handled as Vixie cron does (see [`Timing::next_after`]).
    Cron {
        expression: String,
        cron: Box<croner::Cron>,
        timezone: Tz,
    },
    /// A fixed interval of real time (whole seconds), counted from the Unix
    /// epoch: `every = "1h"` runs on every full hour UTC, wherever and
    /// whenever the driver was started, so a restart does not shift the
    /// runs and two drivers with the same entry name the same instants.
    Every(Duration),
}

impl Timing {
    /// Parses a cron expression: 5 fields (minute hour day-of-month month
    /// day-of-week) or 6 with seconds first. A pattern that can never match
    /// (`0 0 30 2 *`) is refused too.
    pub fn cron(expression: &str, timezone: Tz) -> Result<Timing, String> {
        let parser = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .year(croner::parser::Year::Disallowed)
            .build();
        let cron = parser.parse(expression).map_err(|e| {
            format!(
                "cannot parse `{expression}`: {e} (5 fields: minute hour day-of-month month \
                 day-of-week, or 6 with seconds first)"
            )
        })?;
        let timing = Timing::Cron {
            expression: expression.trim().to_string(),
            cron: Box::new(cron),
            timezone,
        };
        // Any fixed instant works: a pattern that matches some day matches
        // within a few years of any other.
        let reference = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
        if timing.next_after(reference).is_none() {
            return Err(format!("`{expression}` never matches a date"));
        }
        Ok(timing)
    }

    /// Parses an interval such as `30s`, `5m`, `1h`, `1h30m` or `1d`.
    pub fn every(text: &str) -> Result<Timing, String> {
        let interval = humantime::parse_duration(text.trim()).map_err(|e| {
            format!("cannot read `{text}` as an interval ({e}); write e.g. \"30s\", \"5m\", \"1h\" or \"1h30m\"")
        })?;
        if interval.subsec_nanos() != 0 || interval.as_secs() == 0 {
            return Err(format!(
                "`{text}` must be a whole number of seconds, at least 1s"
            ));
        }
        Ok(Timing::Every(interval))
    }

    /// The first run strictly after `after`, or None if there is none.
    ///
    /// Cron expressions follow Vixie cron across daylight-saving changes:
    /// a fixed time that the clock skips (02:30 when 02:00 jumps to 03:00)
    /// runs right after the jump, at 03:00; a fixed time that the clock
    /// passes twice (02:30 when 03:00 falls back to 02:00) runs once, the
    /// first time. Wildcard fields follow the clock: `*/15 * * * *` runs
    /// on every quarter hour the clock shows, both passes of a repeated hour
    /// included, none in a skipped one.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Timing::Cron { cron, timezone, .. } => cron
                .find_next_occurrence(&after.with_timezone(timezone), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            Timing::Every(interval) => {
                let period = interval.as_secs() as i64;
                let next = (after.timestamp().div_euclid(period) + 1) * period;
                DateTime::from_timestamp(next, 0)
            }
        }
    }

    /// The latest run at or before `at`. Only for counting past a long
    /// delay: across a repeated hour it may pick a run [`Timing::next_after`]
    /// skips.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Timing::Cron { cron, timezone, .. } => cron
                .find_previous_occurrence(&at.with_timezone(timezone), true)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            Timing::Every(interval) => {
                let period = interval.as_secs() as i64;
                DateTime::from_timestamp(at.timestamp().div_euclid(period) * period, 0)
            }
        }
    }
}

impl fmt::Display for Timing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Timing::Cron {
                expression,
                timezone,
                ..
            } => write!(f, "cron `{expression}` ({timezone})"),
            Timing::Every(interval) => {
                write!(f, "every {}", humantime::format_duration(*interval))
            }
        }
    }
}

/// One validated `[[schedule]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSpec {
    pub name: String,
    pub timing: Timing,
    pub function: String,
    /// `workload`, or the bytes of `workload_file` as read at (re)load.
    pub workload: Bytes,
    pub priority: Priority,
}

impl ScheduleSpec {
    /// The unique id of the run scheduled at `at`: `<name>@<time>`, the time
    /// in UTC as RFC 3339 with whole seconds (`nightly@2026-03-29T01:00:00Z`).
    /// UTC because it is one spelling per instant whatever the entry's time
    /// zone, sorts in time order, and matches the log's timestamps. gearmand
    /// coalesces a submission whose unique id is already queued, so two
    /// drivers running the same entry against one gearmand queue a run once.
    pub fn unique_id(&self, at: DateTime<Utc>) -> String {
        format!("{}@{}", self.name, rfc3339(at))
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Schedule names are `[A-Za-z0-9_.:-]+` (as job keys) and short enough for
/// the unique id to fit gearmand's limit.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
    if name.is_empty() || !valid_chars {
        return Err(format!(
            "`{name}` is not a valid schedule name: use [A-Za-z0-9_.:-]+"
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "`{name}` is {} bytes long; at most {MAX_NAME_LEN} fit, as `<name>@<time>` must stay \
             within gearmand's {MAX_UNIQUE_LEN}-byte unique ids",
            name.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cron(expression: &str, zone: &str) -> Timing {
        Timing::cron(expression, zone.parse().unwrap()).unwrap()
    }

    /// The next `n` runs after `start`, as RFC 3339 in the entry's zone.
    fn runs(timing: &Timing, start: &str, n: usize) -> Vec<String> {
        let zone = match timing {
            Timing::Cron { timezone, .. } => *timezone,
            Timing::Every(_) => Tz::UTC,
        };
        let mut at = utc(start);
        (0..n)
            .map(|_| {
                at = timing.next_after(at).expect("a next run");
                at.with_timezone(&zone).to_rfc3339()
            })
            .collect()
    }

    #[test]
    fn spring_forward_runs_a_skipped_time_right_after_the_jump() {
        // Berlin, 2025-03-30: 02:00 CET becomes 03:00 CEST; 02:30 does not exist.
        let t = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            runs(&t, "2025-03-28T12:00:00Z", 3),
            [
                "2025-03-29T02:30:00+01:00",
                "2025-03-30T03:00:00+02:00",
                "2025-03-31T02:30:00+02:00",
            ]
        );
        // New York, 2025-03-09: 02:00 EST becomes 03:00 EDT.
        let t = cron("30 2 * * *", "America/New_York");
        assert_eq!(
            runs(&t, "2025-03-08T12:00:00Z", 2),
            ["2025-03-09T03:00:00-04:00", "2025-03-10T02:30:00-04:00"]
        );
    }

    #[test]
    fn fall_back_runs_a_repeated_time_once() {
        // Berlin, 2025-10-26: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        let t = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            runs(&t, "2025-10-24T12:00:00Z", 3),
            [
                "2025-10-25T02:30:00+02:00",
                "2025-10-26T02:30:00+02:00",
                "2025-10-27T02:30:00+01:00",
            ]
        );
        // New York, 2025-11-02: 02:00 EDT falls back to 01:00 EST.
        let t = cron("30 1 * * *", "America/New_York");
        assert_eq!(
            runs(&t, "2025-11-01T12:00:00Z", 2),
            ["2025-11-02T01:30:00-04:00", "2025-11-03T01:30:00-05:00"]
        );
    }

    #[test]
    fn wildcards_follow_the_clock_through_both_changes() {
        let t = cron("*/30 * * * *", "Europe/Berlin");
        // The repeated hour runs twice, each pass at its own instant.
        assert_eq!(
            runs(&t, "2025-10-25T23:10:00Z", 6),
            [
                "2025-10-26T01:30:00+02:00",
                "2025-10-26T02:00:00+02:00",
                "2025-10-26T02:30:00+02:00",
                "2025-10-26T02:00:00+01:00",
                "2025-10-26T02:30:00+01:00",
                "2025-10-26T03:00:00+01:00",
            ]
        );
        // The skipped hour has no runs.
        assert_eq!(
            runs(&t, "2025-03-30T00:10:00Z", 3),
            [
                "2025-03-30T01:30:00+01:00",
                "2025-03-30T03:00:00+02:00",
                "2025-03-30T03:30:00+02:00",
            ]
        );
    }

    #[test]
    fn six_fields_put_seconds_first() {
        let t = cron("15 30 2 * * *", "UTC");
        assert_eq!(
            runs(&t, "2025-01-01T00:00:00Z", 2),
            ["2025-01-01T02:30:15+00:00", "2025-01-02T02:30:15+00:00"]
        );
        let t = cron("*/20 * * * * *", "UTC");
        assert_eq!(
            runs(&t, "2025-01-01T00:00:05Z", 3),
            [
                "2025-01-01T00:00:20+00:00",
                "2025-01-01T00:00:40+00:00",
                "2025-01-01T00:01:00+00:00",
            ]
        );
    }

    #[test]
    fn five_fields_run_on_the_minute_in_their_zone() {
        let t = cron("0 3 * * 1-5", "America/New_York");
        // 2025-01-03 is a Friday: the next weekday 03:00 is Monday the 6th.
        assert_eq!(
            runs(&t, "2025-01-03T09:00:00Z", 1),
            ["2025-01-06T03:00:00-05:00"]
        );
    }

    #[test]
    fn the_next_run_is_strictly_later() {
        let t = cron("0 * * * *", "UTC");
        assert_eq!(
            t.next_after(utc("2025-01-01T05:00:00Z")),
            Some(utc("2025-01-01T06:00:00Z"))
        );
        let t = Timing::every("1s").unwrap();
        assert_eq!(
            t.next_after(utc("2025-01-01T05:00:00Z")),
            Some(utc("2025-01-01T05:00:01Z"))
        );
    }

    #[test]
    fn every_counts_from_the_epoch() {
        let t = Timing::every("5m").unwrap();
        assert_eq!(
            runs(&t, "2025-01-01T10:02:17Z", 2),
            ["2025-01-01T10:05:00+00:00", "2025-01-01T10:10:00+00:00"]
        );
        let t = Timing::every("1h30m").unwrap();
        assert_eq!(t, Timing::Every(Duration::from_secs(5400)));
        // 2025-01-01 00:00 UTC is 321,424 intervals of 90 min after the epoch.
        assert_eq!(
            runs(&t, "2025-01-01T00:00:00Z", 2),
            ["2025-01-01T01:30:00+00:00", "2025-01-01T03:00:00+00:00"]
        );
        // A sub-second start still gives the next whole step.
        let t = Timing::every("1s").unwrap();
        let start = utc("2025-01-01T00:00:00Z") + chrono::Duration::milliseconds(500);
        assert_eq!(t.next_after(start), Some(utc("2025-01-01T00:00:01Z")));
    }

    #[test]
    fn bad_intervals_are_refused() {
        for bad in ["", "soon", "0s", "1500ms", "5 parsecs", "-1s"] {
            assert!(Timing::every(bad).is_err(), "{bad:?} must be refused");
        }
        for good in ["30s", "5m", "1h", "1d", "2h 15m"] {
            assert!(Timing::every(good).is_ok(), "{good:?} must parse");
        }
    }

    #[test]
    fn bad_cron_expressions_are_refused() {
        let utc = Tz::UTC;
        for bad in [
            "",
            "* * * *",
            "1 2 3 4 5 6 7",
            "61 * * * *",
            "0 25 * * *",
            "every day",
        ] {
            let err = Timing::cron(bad, utc).unwrap_err();
            assert!(err.contains("cannot parse"), "{bad:?}: {err}");
        }
        let err = Timing::cron("0 0 30 2 *", utc).unwrap_err();
        assert!(err.contains("never matches"), "{err}");
    }

    #[test]
    fn unique_ids_are_name_at_utc_time() {
        let spec = ScheduleSpec {
            name: "nightly-report".into(),
            timing: cron("0 3 * * *", "Europe/Berlin"),
            function: "Reports::nightly".into(),
            workload: Bytes::new(),
            priority: Priority::Normal,
        };
        let at = spec.timing.next_after(utc("2025-03-28T12:00:00Z")).unwrap();
        assert_eq!(spec.unique_id(at), "nightly-report@2025-03-29T02:00:00Z");
    }

    #[test]
    fn names_fit_gearmands_unique_ids() {
        let longest = "n".repeat(MAX_NAME_LEN);
        assert!(check_name(&longest).is_ok());
        let id = format!("{longest}@{}", rfc3339(utc("2025-01-01T00:00:00Z")));
        assert_eq!(id.len(), MAX_UNIQUE_LEN);
        assert!(check_name(&format!("{longest}n")).is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("").is_err());
        assert!(check_name("Reports::nightly-1.2_x").is_ok());
    }

    #[test]
    fn priorities_map_to_their_submit_packets() {
        assert_eq!(Priority::High.packet_type(), PacketType::SubmitJobHighBg);
        assert_eq!(Priority::default().packet_type(), PacketType::SubmitJobBg);
        assert_eq!(Priority::Low.packet_type(), PacketType::SubmitJobLowBg);
    }
}
