//! Error-budget burn rates over time-bucketed SLI counts (pure arithmetic, no clock).
//!
//! An SLO with objective `o` (say 0.999) allows an error ratio of `1 - o` (the *budget*). The
//! burn rate over a window is the window's error ratio divided by the budget: 1 spends the
//! budget exactly over the SLO period, 14.4 spends 2% of a 30-day budget in one hour. A
//! multi-window alert fires when both a long window (1 h) and a short one (1/12 of it, 5 min)
//! burn at least the threshold: the long window gives significance, the short one makes the
//! alert stop soon after the problem does.
//!
//! Events are counted in buckets of `resolution` ms: bucket `i` holds events with timestamps in
//! `((i-1)·res, i·res]`, and a window of `w` ms at `now` sums the buckets whose end `i·res` lies
//! in `(now - w, now]`. When `now` and `w` are multiples of the resolution, that is exactly the
//! events with timestamps in `(now - w, now]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Good and total event counts in fixed-width time buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliBuckets {
    resolution_ms: i64,
    /// Bucket index -> (good, total).
    buckets: BTreeMap<i64, (u64, u64)>,
}

impl SliBuckets {
    /// Creates empty buckets of `resolution_ms` (at least 1).
    pub fn new(resolution_ms: i64) -> Self {
        Self {
            resolution_ms: resolution_ms.max(1),
            buckets: BTreeMap::new(),
        }
    }

    /// Returns the bucket width in ms.
    pub fn resolution_ms(&self) -> i64 {
        self.resolution_ms
    }

    /// Adds `good` of `total` events at `timestamp_ms` (`good` is capped at `total`).
    pub fn add(&mut self, timestamp_ms: i64, good: u64, total: u64) {
        let index = ceil_div(timestamp_ms, self.resolution_ms);
        let bucket = self.buckets.entry(index).or_insert((0, 0));
        bucket.0 = bucket.0.saturating_add(good.min(total));
        bucket.1 = bucket.1.saturating_add(total);
    }

    /// Returns `(good, total)` over the window of `window_ms` ending at `now_ms`.
    pub fn window(&self, now_ms: i64, window_ms: i64) -> (u64, u64) {
        // Buckets whose end i·res lies in (now - w, now].
        let first = (now_ms.saturating_sub(window_ms)).div_euclid(self.resolution_ms) + 1;
        let last = now_ms.div_euclid(self.resolution_ms);
        if first > last {
            return (0, 0);
        }
        self.buckets
            .range(first..=last)
            .fold((0, 0), |(g, t), (_, (bg, bt))| {
                (g.saturating_add(*bg), t.saturating_add(*bt))
            })
    }

    /// Forgets buckets that no window of up to `keep_ms` ending at or after `now_ms` can reach.
    pub fn prune(&mut self, now_ms: i64, keep_ms: i64) {
        let first = (now_ms.saturating_sub(keep_ms)).div_euclid(self.resolution_ms) + 1;
        self.buckets = self.buckets.split_off(&first);
    }

    /// Returns the number of buckets held.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Returns true when no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

fn ceil_div(a: i64, b: i64) -> i64 {
    let q = a.div_euclid(b);
    if a.rem_euclid(b) == 0 { q } else { q + 1 }
}

/// Returns the error ratio `(total - good) / total`, or `None` without events.
pub fn error_ratio(good: u64, total: u64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let bad = total.saturating_sub(good.min(total));
    Some(bad as f64 / total as f64)
}

/// Returns the burn rate: the error ratio divided by the error budget `1 - objective`
/// (0 without events).
pub fn burn_rate(good: u64, total: u64, objective: f64) -> f64 {
    let budget = 1.0 - objective;
    match error_ratio(good, total) {
        Some(ratio) if budget > 0.0 => ratio / budget,
        _ => 0.0,
    }
}

/// Burn rates of one long/short window pair at one time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowBurn {
    /// Burn rate over the long window.
    pub long: f64,
    /// Burn rate over the short window.
    pub short: f64,
    /// Events in the long window.
    pub long_total: u64,
    /// Events in the short window.
    pub short_total: u64,
}

impl WindowBurn {
    /// Computes both burn rates from `buckets` at `now_ms`.
    pub fn at(
        buckets: &SliBuckets,
        now_ms: i64,
        long_ms: i64,
        short_ms: i64,
        objective: f64,
    ) -> Self {
        let (lg, lt) = buckets.window(now_ms, long_ms);
        let (sg, st) = buckets.window(now_ms, short_ms);
        Self {
            long: burn_rate(lg, lt, objective),
            short: burn_rate(sg, st, objective),
            long_total: lt,
            short_total: st,
        }
    }

    /// Returns true when both windows burn at least `threshold` and the short window holds at
    /// least `min_events` events.
    pub fn fires(&self, threshold: f64, min_events: u64) -> bool {
        self.short_total >= min_events.max(1) && self.long >= threshold && self.short >= threshold
    }
}

/// Returns how long, in ms, a whole budget of `period_ms` lasts at `burn_rate` (`None` when
/// nothing burns).
pub fn budget_lasts_ms(burn_rate: f64, period_ms: i64) -> Option<i64> {
    if burn_rate > 0.0 && burn_rate.is_finite() {
        Some((period_ms as f64 / burn_rate) as i64)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn ratio_and_rate_by_hand() {
        assert_eq!(error_ratio(0, 0), None);
        assert_eq!(error_ratio(990, 1000), Some(0.01));
        // 1% errors against a 99.9% objective burns 10x.
        assert!(close(burn_rate(990, 1000, 0.999), 10.0));
        // 0.1% errors burns exactly 1x.
        assert!(close(burn_rate(999, 1000, 0.999), 1.0));
        // 50% errors against 99% burns 50x.
        assert!(close(burn_rate(50, 100, 0.99), 50.0));
        assert_eq!(burn_rate(0, 0, 0.999), 0.0);
        // A 30-day budget at 14.4x lasts 50 hours.
        assert_eq!(budget_lasts_ms(14.4, 30 * 24 * HOUR), Some(50 * HOUR));
        assert_eq!(budget_lasts_ms(0.0, HOUR), None);
    }

    #[test]
    fn windows_cover_exactly_the_half_open_range() {
        let mut b = SliBuckets::new(MIN);
        let now = 10 * HOUR;
        b.add(now - HOUR, 1, 1); // exactly at the long window's start: excluded
        b.add(now - HOUR + 1, 0, 1); // just inside
        b.add(now - 5 * MIN, 1, 1); // exactly at the short window's start: excluded
        b.add(now - 5 * MIN + 30_000, 0, 2); // inside the short window
        b.add(now, 3, 3); // at now: included
        b.add(now + 1, 7, 7); // in the future: excluded
        // Long window: 0/1 + 1/1 + 0/2 + 3/3.
        assert_eq!(b.window(now, HOUR), (4, 7));
        assert_eq!(b.window(now, 5 * MIN), (3, 5));
    }

    #[test]
    fn multiwindow_fires_by_hand() {
        // One hour of traffic, 100 events per minute, objective 99.9%.
        let now = 100 * HOUR;
        let fill = |bad_per_minute: &dyn Fn(i64) -> u64| {
            let mut b = SliBuckets::new(MIN);
            for m in 0..60 {
                let ts = now - m * MIN; // bucket ends, newest first
                let bad = bad_per_minute(m);
                b.add(ts, 100 - bad, 100);
            }
            b
        };

        // 1% errors everywhere: long 60/6000 = 1% -> 10x; short 5/500 = 1% -> 10x. Below 14.4.
        let steady = fill(&|_| 1);
        let burn = WindowBurn::at(&steady, now, HOUR, 5 * MIN, 0.999);
        assert!(
            close(burn.long, 10.0) && close(burn.short, 10.0),
            "{burn:?}"
        );
        assert_eq!((burn.long_total, burn.short_total), (6000, 500));
        assert!(!burn.fires(14.4, 1));

        // Half the events fail in the last 5 minutes only: short 250/500 = 50% -> 500x;
        // long 250/6000 = 4.1666% -> 41.666x. Both above 14.4: fires.
        let spike = fill(&|m| if m < 5 { 50 } else { 0 });
        let burn = WindowBurn::at(&spike, now, HOUR, 5 * MIN, 0.999);
        assert!(close(burn.short, 500.0), "{burn:?}");
        assert!(close(burn.long, 250.0 / 6000.0 / 0.001), "{burn:?}");
        assert!(burn.fires(14.4, 1));

        // The same spike 10 minutes ago: the long window still burns 41.7x but the short one
        // is clean, so the alert has stopped.
        let past = fill(&|m| if (10..15).contains(&m) { 50 } else { 0 });
        let burn = WindowBurn::at(&past, now, HOUR, 5 * MIN, 0.999);
        assert!(close(burn.short, 0.0));
        assert!(close(burn.long, 250.0 / 6000.0 / 0.001));
        assert!(!burn.fires(14.4, 1));

        // 6h/30m at 6x, 99.9%: 0.7% errors for six hours burns 7x in both windows.
        let mut b = SliBuckets::new(MIN);
        for m in 0..360 {
            b.add(now - m * MIN, 993, 1000);
        }
        let burn = WindowBurn::at(&b, now, 6 * HOUR, 30 * MIN, 0.999);
        assert!(close(burn.long, 7.0) && close(burn.short, 7.0), "{burn:?}");
        assert!(burn.fires(6.0, 1));
        assert!(
            !burn.fires(6.0, 30_001),
            "min_events gates the short window"
        );
    }

    #[test]
    fn prunes_old_buckets_and_rounds_timestamps_up() {
        let mut b = SliBuckets::new(MIN);
        b.add(1, 1, 1); // bucket 1
        b.add(MIN, 1, 1); // bucket 1
        b.add(MIN + 1, 1, 1); // bucket 2
        assert_eq!(b.len(), 2);
        assert_eq!(b.window(MIN, MIN), (2, 2));
        b.prune(3 * MIN, MIN);
        assert!(b.is_empty());
    }
}
