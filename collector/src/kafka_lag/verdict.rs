//! Lag statuses and the rules that give them, from a window of samples (no I/O, no clock).

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::config::Threshold;

/// Verdict on a partition or a group, from the most to the least benign.
///
/// The order (`Ord`) is the severity used to combine partitions into a group verdict; the
/// number [`LagStatus::code`] is the value of the `pipewarden_kafka_group_status` metric.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum LagStatus {
    /// Caught up (lag within threshold), or consuming without falling behind.
    #[default]
    Ok,
    /// Offsets move but the lag grew at every sample of the window.
    Warn,
    /// The committed offset went back within the window (offsets reset or rewound).
    Rewind,
    /// Lag during the whole window and the committed offset did not move, while the group has
    /// live members (a consumer is there but stuck).
    Stall,
    /// Lag during the whole window and the committed offset did not move, and the group has no
    /// member (the consumer is gone).
    Stop,
    /// The offsets could not be read (error code from the broker for this group or partition).
    Err,
}

impl LagStatus {
    /// Every status, in severity order.
    pub const ALL: [LagStatus; 6] = [
        LagStatus::Ok,
        LagStatus::Warn,
        LagStatus::Rewind,
        LagStatus::Stall,
        LagStatus::Stop,
        LagStatus::Err,
    ];

    /// Returns the upper-case name (`OK`, `WARN`, `REWIND`, `STALL`, `STOP`, `ERR`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warn => "WARN",
            Self::Rewind => "REWIND",
            Self::Stall => "STALL",
            Self::Stop => "STOP",
            Self::Err => "ERR",
        }
    }

    /// Returns the severity rank: 0 OK, 1 WARN, 2 REWIND, 3 STALL, 4 STOP, 5 ERR.
    pub fn code(self) -> i64 {
        match self {
            Self::Ok => 0,
            Self::Warn => 1,
            Self::Rewind => 2,
            Self::Stall => 3,
            Self::Stop => 4,
            Self::Err => 5,
        }
    }
}

impl fmt::Display for LagStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Offsets of one partition for one group at one poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sample {
    /// Poll time, Unix milliseconds.
    pub(crate) t_ms: i64,
    /// Committed offset of the group (`None`: the group never committed this partition).
    pub(crate) committed: Option<i64>,
    /// Low watermark (first available offset).
    pub(crate) low: i64,
    /// High watermark (offset of the next message to be written).
    pub(crate) high: i64,
}

impl Sample {
    /// Offset of the next message the group will read: the committed offset, or the low
    /// watermark without a commit (or when retention removed the committed position).
    pub(crate) fn next_offset(&self) -> i64 {
        match self.committed {
            Some(committed) if committed >= self.low => committed,
            _ => self.low,
        }
    }

    /// Lag in messages: high watermark − committed offset (from the low watermark without a
    /// commit), never negative (a commit read after a watermark can be ahead of it).
    pub(crate) fn lag_messages(&self) -> i64 {
        (self.high - self.next_offset()).max(0)
    }
}

/// Returns true when a lag counts as caught up under `threshold`.
pub(crate) fn is_caught_up(lag_messages: i64, lag_seconds: f64, threshold: Threshold) -> bool {
    let messages = u64::try_from(lag_messages).unwrap_or(0);
    messages <= threshold.min_lag_messages
        || (threshold.min_lag_seconds > 0.0 && lag_seconds <= threshold.min_lag_seconds)
}

/// Returns the verdict for one partition from its newest `window` samples (oldest first).
///
/// `lag_seconds` is the current lag in seconds, `has_members` whether the group has live
/// members. The rules, first match wins, are documented in the module docs of `kafka_lag`.
pub(crate) fn partition_status(
    samples: &VecDeque<Sample>,
    window: usize,
    lag_seconds: f64,
    has_members: bool,
    threshold: Threshold,
) -> LagStatus {
    let start = samples.len().saturating_sub(window);
    let recent: Vec<&Sample> = samples.iter().skip(start).collect();
    let (Some(first), Some(last)) = (recent.first(), recent.last()) else {
        return LagStatus::Ok;
    };
    // 1. REWIND: a committed offset lower than the one before it, anywhere in the window.
    let rewound = recent
        .windows(2)
        .any(|pair| match (pair[0].committed, pair[1].committed) {
            (Some(before), Some(after)) => after < before,
            _ => false,
        });
    if rewound {
        return LagStatus::Rewind;
    }
    // 2. OK when caught up now: an idle topic with a caught-up group is never STOP.
    if is_caught_up(last.lag_messages(), lag_seconds, threshold) {
        return LagStatus::Ok;
    }
    // 3. OK until the window is full: no verdict on a trend without enough history.
    if recent.len() < window {
        return LagStatus::Ok;
    }
    let lagging_throughout = recent
        .iter()
        .all(|s| !is_caught_up(s.lag_messages(), f64::INFINITY, threshold));
    // 4. STALL / STOP: lag all along and the committed offset never moved.
    if lagging_throughout && first.committed == last.committed {
        return if has_members {
            LagStatus::Stall
        } else {
            LagStatus::Stop
        };
    }
    // 5. WARN: offsets move, but the lag grew at every step.
    let growing = recent
        .windows(2)
        .all(|pair| pair[1].lag_messages() >= pair[0].lag_messages())
        && last.lag_messages() > first.lag_messages();
    if growing && first.committed != last.committed {
        return LagStatus::Warn;
    }
    LagStatus::Ok
}

/// Estimates the lag in seconds from the production rate over the window: lag in messages
/// divided by the growth of the high watermark per second. Returns `None` when nothing was
/// produced during the window (the rate is unknown).
pub(crate) fn estimate_lag_seconds(samples: &VecDeque<Sample>, window: usize) -> Option<f64> {
    let start = samples.len().saturating_sub(window);
    let first = samples.get(start)?;
    let last = samples.back()?;
    let produced = last.high - first.high;
    let elapsed_ms = last.t_ms - first.t_ms;
    if produced <= 0 || elapsed_ms <= 0 {
        return None;
    }
    let rate_per_s = produced as f64 * 1000.0 / elapsed_ms as f64;
    Some(last.lag_messages() as f64 / rate_per_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: usize = 4;

    fn window(points: &[(Option<i64>, i64)]) -> VecDeque<Sample> {
        points
            .iter()
            .enumerate()
            .map(|(i, &(committed, high))| Sample {
                t_ms: i as i64 * 1000,
                committed,
                low: 0,
                high,
            })
            .collect()
    }

    fn status(points: &[(Option<i64>, i64)], members: bool) -> LagStatus {
        partition_status(&window(points), WINDOW, 10.0, members, Threshold::default())
    }

    #[test]
    fn lag_counts_from_the_commit_or_the_low_watermark() {
        let s = Sample {
            t_ms: 0,
            committed: Some(4),
            low: 2,
            high: 10,
        };
        assert_eq!(s.lag_messages(), 6);
        let s = Sample {
            committed: None,
            ..s
        };
        assert_eq!(s.lag_messages(), 8);
        let s = Sample {
            committed: Some(1),
            ..s
        };
        assert_eq!(
            s.lag_messages(),
            8,
            "a commit below the low watermark counts from it"
        );
        let s = Sample {
            committed: Some(11),
            ..s
        };
        assert_eq!(s.lag_messages(), 0);
    }

    #[test]
    fn caught_up_is_ok() {
        let c = Some(10);
        assert_eq!(
            status(&[(c, 10), (c, 10), (c, 10), (c, 10)], true),
            LagStatus::Ok
        );
    }

    #[test]
    fn caught_up_on_an_idle_topic_without_members_is_ok_not_stop() {
        let c = Some(10);
        let points = [(c, 10); 10];
        assert_eq!(status(&points, false), LagStatus::Ok);
    }

    #[test]
    fn consuming_with_steady_lag_is_ok() {
        let points = [(Some(0), 5), (Some(5), 10), (Some(10), 15), (Some(15), 20)];
        assert_eq!(status(&points, true), LagStatus::Ok);
    }

    #[test]
    fn growing_lag_while_moving_is_warn() {
        let points = [(Some(0), 5), (Some(2), 10), (Some(4), 15), (Some(6), 20)];
        assert_eq!(status(&points, true), LagStatus::Warn);
        assert_eq!(status(&points, false), LagStatus::Warn);
    }

    #[test]
    fn lag_that_shrinks_once_is_not_warn() {
        let points = [(Some(0), 5), (Some(4), 10), (Some(9), 12), (Some(10), 20)];
        assert_eq!(status(&points, true), LagStatus::Ok);
    }

    #[test]
    fn not_moving_with_lag_is_stall_with_members_and_stop_without() {
        let c = Some(3);
        let points = [(c, 10), (c, 10), (c, 12), (c, 12)];
        assert_eq!(status(&points, true), LagStatus::Stall);
        assert_eq!(status(&points, false), LagStatus::Stop);
        let never = [(None, 10); 4];
        assert_eq!(status(&never, false), LagStatus::Stop);
    }

    #[test]
    fn no_verdict_on_a_trend_before_the_window_is_full() {
        let c = Some(3);
        assert_eq!(status(&[(c, 10), (c, 10), (c, 10)], false), LagStatus::Ok);
    }

    #[test]
    fn a_commit_going_back_is_rewind_while_in_the_window() {
        let points = [(Some(8), 10), (Some(2), 10)];
        assert_eq!(status(&points, true), LagStatus::Rewind);
        let later = [
            (Some(8), 10),
            (Some(2), 10),
            (Some(2), 10),
            (Some(2), 10),
            (Some(2), 10),
        ];
        assert_eq!(
            status(&later, true),
            LagStatus::Stall,
            "the rewind left the window"
        );
    }

    #[test]
    fn thresholds_turn_small_lag_into_ok() {
        let c = Some(0);
        let points = window(&[(c, 150), (c, 150), (c, 150), (c, 150)]);
        let by_messages = Threshold {
            min_lag_messages: 200,
            min_lag_seconds: 0.0,
        };
        assert_eq!(
            partition_status(&points, WINDOW, 100.0, false, by_messages),
            LagStatus::Ok
        );
        let by_seconds = Threshold {
            min_lag_messages: 0,
            min_lag_seconds: 30.0,
        };
        assert_eq!(
            partition_status(&points, WINDOW, 20.0, false, by_seconds),
            LagStatus::Ok
        );
        assert_eq!(
            partition_status(&points, WINDOW, 40.0, false, by_seconds),
            LagStatus::Stop
        );
    }

    #[test]
    fn estimate_uses_the_production_rate() {
        // 10 messages per second produced, 20 behind: 2 seconds.
        let points = window(&[(Some(0), 0), (Some(0), 10), (Some(0), 20)]);
        assert_eq!(estimate_lag_seconds(&points, WINDOW), Some(2.0));
        let idle = window(&[(Some(0), 20), (Some(0), 20)]);
        assert_eq!(estimate_lag_seconds(&idle, WINDOW), None);
    }

    #[test]
    fn severity_order_and_codes() {
        let mut sorted = LagStatus::ALL;
        sorted.sort();
        assert_eq!(sorted, LagStatus::ALL);
        for (i, status) in LagStatus::ALL.iter().enumerate() {
            assert_eq!(status.code(), i as i64);
        }
        assert_eq!(
            serde_json::to_string(&LagStatus::Stall).unwrap(),
            "\"STALL\""
        );
    }
}
