//! A periodic schedule's declaration: when it is due (a cron expression with seconds in an IANA
//! time zone, or a fixed interval), and its policies for missed runs and overlap.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeriodicError {
    /// The cron expression does not parse.
    #[error(
        "periodic schedule {name:?}: invalid cron expression {expression:?} at field {field} (column {column}, {text:?}): {reason}"
    )]
    InvalidExpression {
        /// The schedule.
        name: String,
        /// The expression as given.
        expression: String,
        /// The field at fault, 1-based (1 = seconds, 6 = day of week); 0 when the expression as
        /// a whole is wrong (the number of fields).
        field: usize,
        /// The column where that field starts, 1-based.
        column: usize,
        /// That field's text.
        text: String,
        /// The parser's words.
        reason: String,
    },
    /// The time zone is not an IANA name this build knows.
    #[error(
        "periodic schedule {name:?}: unknown time zone {zone:?} (an IANA name such as \"Europe/Berlin\")"
    )]
    UnknownZone {
        /// The schedule.
        name: String,
        /// The zone as given.
        zone: String,
    },
    /// The name is empty, too long, or has characters a job id cannot carry.
    #[error("periodic schedule {name:?}: a name is 1-100 characters of A-Z a-z 0-9 - _ .")]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// An interval of zero, or one that is not whole milliseconds.
    #[error("periodic schedule {name:?}: an interval is at least 1 ms, in whole milliseconds")]
    InvalidInterval {
        /// The schedule.
        name: String,
    },
    /// The payload does not serialize to JSON.
    #[error("periodic schedule {name:?}: the payload does not serialize: {reason}")]
    Payload {
        /// The schedule.
        name: String,
        /// serde_json's words.
        reason: String,
    },
    /// Two schedules of one registry share a name.
    #[error("periodic schedule {name:?} is declared twice")]
    Duplicate {
        /// The name.
        name: String,
    },
}

/// What to do with due times that passed while no worker ran (all workers down, say).
///
/// A due time counts as missed when it is more than [`Periodic::tolerance`] behind the clock
/// when a worker first sees it; due times within the tolerance always fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissedRuns {
    /// Fire none of them.
    Skip,
    /// Fire the latest of them once (the default), unless a due time on time fires anyway.
    FireOnce,
    /// Fire each of them, oldest first: at most `max`, the latest ones, and only those within
    /// `window` of now.
    Backfill {
        /// At most this many missed runs.
        max: u32,
        /// Only missed due times at most this far in the past.
        window: Duration,
    },
}

/// Whether a run may start while the previous run of the schedule is still in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overlap {
    /// Fire every due time (the default).
    #[default]
    Allow,
    /// Skip a due time while the previous run is queued, running or waiting for a retry.
    Skip,
}

#[derive(Clone)]
pub(crate) enum When {
    Cron { cron: Arc<Cron>, expression: String },
    Every(Duration),
}

/// One periodic schedule: a stable name, when it is due, and its policies. Registered with its
/// payload by [`Registry::periodic`](crate::Registry::periodic).
///
/// ```
/// use std::time::Duration;
/// use quern_worker::periodic::{MissedRuns, Overlap, Periodic};
///
/// let nightly = Periodic::cron("nightly-report", "0 30 2 * * *")?
///     .time_zone("Europe/Berlin")?
///     .missed_runs(MissedRuns::Skip)
///     .overlap(Overlap::Skip);
/// assert_eq!(nightly.name(), "nightly-report");
/// let heartbeat = Periodic::every("heartbeat", Duration::from_secs(30))?;
/// assert!(Periodic::cron("bad", "0 61 * * * *").is_err());
/// # Ok::<(), quern_worker::periodic::PeriodicError>(())
/// ```
#[derive(Clone)]
pub struct Periodic {
    pub(crate) name: String,
    pub(crate) when: When,
    pub(crate) zone: Tz,
    pub(crate) missed: MissedRuns,
    pub(crate) overlap: Overlap,
    pub(crate) tolerance: Duration,
}

/// Longest schedule name: the run's id `cron:<name>:<ms>` stays well under an id's limit.
const MAX_NAME: usize = 100;

impl Periodic {
    /// Due at every instant matching `expression`: six fields, seconds first
    /// (`sec min hour day-of-month month day-of-week`), read in UTC unless
    /// [`time_zone`](Self::time_zone) says otherwise.
    pub fn cron(name: impl Into<String>, expression: &str) -> Result<Self, PeriodicError> {
        let name = checked_name(name.into())?;
        let cron = parse(&name, expression)?;
        Ok(Self::new(
            name,
            When::Cron {
                cron: Arc::new(cron),
                expression: expression.trim().to_owned(),
            },
        ))
    }

    /// Due every `interval`, at the multiples of it since the Unix epoch (so every worker
    /// agrees on the due times, whenever it started); the time zone plays no part.
    pub fn every(name: impl Into<String>, interval: Duration) -> Result<Self, PeriodicError> {
        let name = checked_name(name.into())?;
        if interval.as_millis() == 0 || !interval.subsec_nanos().is_multiple_of(1_000_000) {
            return Err(PeriodicError::InvalidInterval { name });
        }
        Ok(Self::new(name, When::Every(interval)))
    }

    fn new(name: String, when: When) -> Self {
        Self {
            name,
            when,
            zone: Tz::UTC,
            missed: MissedRuns::FireOnce,
            overlap: Overlap::Allow,
            tolerance: Duration::from_secs(5),
        }
    }

    /// Reads the cron expression in the IANA time zone `zone` (`"Europe/Berlin"`). A local time
    /// that does not exist (the spring-forward gap) fires once at the first valid instant after
    /// it; one that happens twice (fall back) fires once, at its first occurrence.
    pub fn time_zone(mut self, zone: &str) -> Result<Self, PeriodicError> {
        self.zone = Tz::from_str(zone).map_err(|_| PeriodicError::UnknownZone {
            name: self.name.clone(),
            zone: zone.to_owned(),
        })?;
        Ok(self)
    }

    /// What to do with due times missed while no worker ran; default [`MissedRuns::FireOnce`].
    #[must_use]
    pub fn missed_runs(mut self, policy: MissedRuns) -> Self {
        self.missed = policy;
        self
    }

    /// Whether a run may start while the previous one is still in the queue; default
    /// [`Overlap::Allow`].
    #[must_use]
    pub fn overlap(mut self, policy: Overlap) -> Self {
        self.overlap = policy;
        self
    }

    /// How late a due time may be seen and still count as on time (not missed); default 5 s.
    #[must_use]
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The schedule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schedule as written: the cron expression, or `every <n>ms`.
    pub fn describe(&self) -> String {
        match &self.when {
            When::Cron { expression, .. } => expression.clone(),
            When::Every(d) => format!("every {}ms", d.as_millis()),
        }
    }

    /// The time zone's IANA name.
    pub fn zone_name(&self) -> &'static str {
        self.zone.name()
    }

    /// The first due time strictly after `after_ms` (ms since the epoch), if any.
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        match &self.when {
            When::Every(d) => {
                let step = d.as_millis() as u64;
                Some((after_ms / step + 1) * step)
            }
            When::Cron { cron, .. } => {
                // Cron times are whole seconds: start from the second `after_ms` falls in, and
                // the next occurrence after it is after `after_ms` too.
                let second = (after_ms / 1000 * 1000) as i64;
                let start = self
                    .zone
                    .from_utc_datetime(&Utc.timestamp_millis_opt(second).single()?.naive_utc());
                let mut next = cron.find_next_occurrence(&start, false).ok()?;
                // A wall-clock time that happens twice (fall back) fires at its first instant
                // only: the second one is passed over.
                for _ in 0..10_000 {
                    match self.zone.from_local_datetime(&next.naive_local()) {
                        chrono::LocalResult::Ambiguous(_, later) if later == next => {
                            next = cron.find_next_occurrence(&next, false).ok()?;
                        }
                        _ => break,
                    }
                }
                u64::try_from(next.timestamp_millis()).ok()
            }
        }
    }

    /// The due times in `(after_ms, up_to_ms]`, oldest first; at most `limit`, the latest ones.
    pub(crate) fn due_between(&self, after_ms: u64, up_to_ms: u64, limit: usize) -> Vec<u64> {
        let mut out = std::collections::VecDeque::new();
        let mut at = after_ms;
        // Bounded: a 1 s schedule down for a day is 86,400 steps, computed once at start.
        let mut steps = 0u32;
        if let When::Every(d) = &self.when {
            // Jump close to the end: only the last `limit` can be kept.
            let step = d.as_millis() as u64;
            let skip_to = up_to_ms.saturating_sub(step * (limit as u64 + 1));
            at = at.max(skip_to - skip_to % step);
        }
        while let Some(next) = self.next_after(at) {
            if next > up_to_ms || steps > 1_000_000 {
                break;
            }
            out.push_back(next);
            if out.len() > limit {
                out.pop_front();
            }
            at = next;
            steps += 1;
        }
        out.into()
    }
}

impl fmt::Debug for Periodic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Periodic")
            .field("name", &self.name)
            .field("schedule", &self.describe())
            .field("zone", &self.zone.name())
            .field("missed", &self.missed)
            .field("overlap", &self.overlap)
            .finish()
    }
}

fn checked_name(name: String) -> Result<String, PeriodicError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(name)
    } else {
        Err(PeriodicError::InvalidName { name })
    }
}

fn parser() -> CronParser {
    CronParser::builder().seconds(Seconds::Required).build()
}

/// Parses `expression`, and on failure finds the field at fault: the first one that fails with
/// every other field a wildcard.
fn parse(name: &str, expression: &str) -> Result<Cron, PeriodicError> {
    let err = match parser().parse(expression) {
        Ok(cron) => return Ok(cron),
        Err(e) => e,
    };
    let fields: Vec<(usize, &str)> = expression
        .split_whitespace()
        .map(|f| (f.as_ptr() as usize - expression.as_ptr() as usize + 1, f))
        .collect();
    let blame = (fields.len() == 6)
        .then(|| {
            (0..6).find(|&i| {
                let probe: Vec<&str> = (0..6).map(|j| if j == i { fields[j].1 } else { "*" }).collect();
                parser().parse(&probe.join(" ")).is_err()
            })
        })
        .flatten();
    let (field, column, text) = match blame {
        Some(i) => (i + 1, fields[i].0, fields[i].1.to_owned()),
        None => (0, 1, expression.to_owned()),
    };
    let reason = if fields.len() != 6 {
        format!("{} fields, expected 6 (seconds first)", fields.len())
    } else {
        err.to_string()
    };
    Err(PeriodicError::InvalidExpression {
        name: name.to_owned(),
        expression: expression.to_owned(),
        field,
        column,
        text,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn berlin(expr: &str) -> Periodic {
        Periodic::cron("t", expr)
            .unwrap()
            .time_zone("Europe/Berlin")
            .unwrap()
    }

    fn utc_ms(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> u64 {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .unwrap()
            .timestamp_millis() as u64
    }

    #[test]
    fn a_bad_field_is_named_with_its_position() {
        let e = Periodic::cron("report", "0 */5 25 * * *").unwrap_err();
        match &e {
            PeriodicError::InvalidExpression {
                name,
                field,
                column,
                text,
                ..
            } => {
                assert_eq!(
                    (name.as_str(), *field, *column, text.as_str()),
                    ("report", 3, 7, "25")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("\"report\""), "{e}");
        let e = Periodic::cron("short", "*/5 * * * *").unwrap_err();
        assert!(e.to_string().contains("5 fields, expected 6"), "{e}");
        let e = Periodic::cron("x", "0 0 0 * * *")
            .unwrap()
            .time_zone("Mars/Olympus")
            .unwrap_err();
        assert_eq!(
            e,
            PeriodicError::UnknownZone {
                name: "x".into(),
                zone: "Mars/Olympus".into()
            }
        );
        assert!(matches!(
            Periodic::cron("a b", "* * * * * *"),
            Err(PeriodicError::InvalidName { .. })
        ));
    }

    #[test]
    fn intervals_fall_on_multiples_since_the_epoch() {
        let p = Periodic::every("i", Duration::from_secs(10)).unwrap();
        assert_eq!(p.next_after(1_000), Some(10_000));
        assert_eq!(p.next_after(10_000), Some(20_000));
        assert_eq!(p.due_between(0, 35_000, 10), vec![10_000, 20_000, 30_000]);
        assert_eq!(
            p.due_between(0, 1_000_000_000, 2),
            vec![999_990_000, 1_000_000_000]
        );
    }

    #[test]
    fn a_cron_due_time_is_strictly_after_the_start_even_inside_a_second() {
        let p = Periodic::cron("s", "* * * * * *").unwrap();
        assert_eq!(p.next_after(1_000), Some(2_000));
        assert_eq!(p.next_after(1_500), Some(2_000));
        assert_eq!(p.due_between(1_000, 4_000, 10), vec![2_000, 3_000, 4_000]);
    }

    #[test]
    fn spring_forward_gap_fires_once_at_the_first_valid_instant() {
        // 2025-03-30 in Berlin: 02:00 CET becomes 03:00 CEST; 02:30 never happens.
        let p = berlin("0 30 2 * * *");
        let before = utc_ms(2025, 3, 29, 23, 0, 0);
        let next = p.next_after(before).unwrap();
        assert_eq!(next, utc_ms(2025, 3, 30, 1, 0, 0), "03:00 CEST = 01:00 UTC");
        let day = p.due_between(before, before + 24 * 3_600_000, 10);
        assert_eq!(day, vec![next], "once that day");
    }

    #[test]
    fn fall_back_overlap_fires_once() {
        // 2025-10-26 in Berlin: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
        let p = berlin("0 30 2 * * *");
        let before = utc_ms(2025, 10, 25, 22, 0, 0);
        let day = p.due_between(before, before + 24 * 3_600_000, 10);
        assert_eq!(day, vec![utc_ms(2025, 10, 26, 0, 30, 0)], "02:30 CEST only, once");
        // Every half hour: 02:00 and 02:30 happen twice that night and fire once each.
        let p = berlin("0 */30 * * * *");
        let from = utc_ms(2025, 10, 25, 23, 45, 0); // 01:45 CEST
        let night = p.due_between(from, utc_ms(2025, 10, 26, 2, 45, 0), 20); // to 03:45 CET
        let expected = [
            utc_ms(2025, 10, 25, 23, 0, 0) + 3_600_000, // 02:00 CEST
            utc_ms(2025, 10, 26, 0, 30, 0),             // 02:30 CEST
            utc_ms(2025, 10, 26, 2, 0, 0),              // 03:00 CET
            utc_ms(2025, 10, 26, 2, 30, 0),             // 03:30 CET
        ];
        assert_eq!(night, expected, "no second 02:00 or 02:30 (CET)");
    }
}
