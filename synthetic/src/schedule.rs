//! When probes run: a fixed interval or a cron expression (UTC), computed from times passed in
//! (never read from a clock here), so schedules are tested with made-up times.

use std::str::FromStr as _;
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};

/// A probe schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Every `interval`, the first run at start.
    Interval(Duration),
    /// At the times of a cron expression (5 fields, or 6 with seconds), UTC.
    Cron(Box<CronSchedule>),
}

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expression: String,
    cron: croner::Cron,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression
    }
}

impl Schedule {
    /// Parses a cron expression (`*/5 * * * *`; a sixth leading field gives seconds).
    ///
    /// # Errors
    /// The parser's message when the expression is not valid.
    pub fn cron(expression: &str) -> Result<Self, String> {
        let cron = croner::Cron::from_str(expression)
            .map_err(|e| format!("`{expression}` is not a cron expression: {e}"))?;
        Ok(Self::Cron(Box::new(CronSchedule {
            expression: expression.to_owned(),
            cron,
        })))
    }

    /// Returns the time of the first run for a prober started at `start_ms` (Unix ms): at start
    /// for an interval, the next cron time otherwise.
    pub fn first_run_ms(&self, start_ms: i64) -> Option<i64> {
        match self {
            Self::Interval(_) => Some(start_ms),
            Self::Cron(_) => self.next_after_ms(start_ms),
        }
    }

    /// Returns the run after one scheduled at `previous_ms`, strictly later than `now_ms` (runs
    /// missed while the prober was busy are skipped, not bunched).
    pub fn next_run_ms(&self, previous_ms: i64, now_ms: i64) -> Option<i64> {
        match self {
            Self::Interval(interval) => {
                let step = i64::try_from(interval.as_millis())
                    .unwrap_or(i64::MAX)
                    .max(1);
                let mut next = previous_ms.saturating_add(step);
                if next <= now_ms {
                    let missed = (now_ms - next) / step + 1;
                    next = next.saturating_add(missed.saturating_mul(step));
                }
                Some(next)
            }
            Self::Cron(_) => self.next_after_ms(previous_ms.max(now_ms)),
        }
    }

    /// Returns the typical time between runs at `now_ms` (the interval, or the gap between the
    /// next two cron times): the unit of the dead-man's switch.
    pub fn period_ms(&self, now_ms: i64) -> i64 {
        match self {
            Self::Interval(interval) => i64::try_from(interval.as_millis()).unwrap_or(i64::MAX),
            Self::Cron(_) => {
                let first = self.next_after_ms(now_ms);
                let second = first.and_then(|f| self.next_after_ms(f));
                match (first, second) {
                    (Some(a), Some(b)) => b - a,
                    _ => i64::MAX,
                }
            }
        }
    }

    fn next_after_ms(&self, after_ms: i64) -> Option<i64> {
        let Self::Cron(schedule) = self else {
            return None;
        };
        // Cron has whole seconds: the next time strictly after the second `after_ms` falls in.
        let after: DateTime<Utc> = Utc.timestamp_opt(after_ms.div_euclid(1000), 0).single()?;
        schedule
            .cron
            .find_next_occurrence(&after, false)
            .ok()
            .map(|t| t.timestamp().saturating_mul(1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-01-01T00:00:00Z
    const T0: i64 = 1_767_225_600_000;

    #[test]
    fn interval_runs_at_start_then_every_interval_skipping_missed_runs() {
        let s = Schedule::Interval(Duration::from_secs(10));
        assert_eq!(s.first_run_ms(T0), Some(T0));
        assert_eq!(s.next_run_ms(T0, T0 + 1), Some(T0 + 10_000));
        // Busy for 35 s: the runs at +10 s, +20 s and +30 s are skipped, not bunched.
        assert_eq!(s.next_run_ms(T0, T0 + 35_000), Some(T0 + 40_000));
        assert_eq!(s.next_run_ms(T0, T0 + 10_000), Some(T0 + 20_000));
        assert_eq!(s.period_ms(T0), 10_000);
    }

    #[test]
    fn cron_runs_at_the_next_matching_minute() {
        let s = Schedule::cron("*/5 * * * *").unwrap();
        assert_eq!(s.first_run_ms(T0 + 1), Some(T0 + 5 * 60_000));
        assert_eq!(
            s.next_run_ms(T0 + 5 * 60_000, T0 + 5 * 60_000 + 10),
            Some(T0 + 10 * 60_000)
        );
        // Late by 12 minutes: the next one after now.
        assert_eq!(
            s.next_run_ms(T0 + 5 * 60_000, T0 + 17 * 60_000),
            Some(T0 + 20 * 60_000)
        );
        assert_eq!(s.period_ms(T0), 5 * 60_000);
    }

    #[test]
    fn cron_with_seconds_and_bad_expressions() {
        let s = Schedule::cron("*/15 * * * * *").unwrap();
        assert_eq!(s.first_run_ms(T0), Some(T0 + 15_000));
        assert!(Schedule::cron("every day").is_err());
        assert!(Schedule::cron("61 * * * *").is_err());
    }
}
