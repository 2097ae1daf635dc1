//! A seasonal profile over one period (a day by default), learnt in the shadow of the robust
//! window and switched on only while it predicts clearly better than no season.
//!
//! The period is cut into `bins` equal phase bins by timestamp. The profile learns, per bin, the
//! offset of the value from a slow level (Holt-Winters' additive scheme: the slow level follows the
//! deseasonalised values with a time constant of a quarter period, each bin's offset follows
//! `value - level` at rate `max(alpha / points per bin and period, 1 / updates)`, so `alpha` is
//! the weight of the latest period). After a full period has been seen, both
//! one-step predictions are scored as they happen, "slow level of the deseasonalised values +
//! offset of the bin" against "slow level of the raw values" (the same smoothing without a
//! season), by exponentially weighted mean absolute errors over about a quarter period, each
//! error clipped at `ERROR_CLIP` times its running mean (a spike misses both predictions by
//! about as much: a few unclipped ones would drown the difference). The
//! profile is switched on when its error drops below `ACTIVATE_RATIO` of the plain one and off
//! again above `DEACTIVATE_RATIO`, so series without a season never use it. A switch stands for
//! at least one period: the quarter-period errors follow the time of day, and a decision
//! reviewed at every point flipped the profile on and off many times a day on busy daily
//! series.

/// Error ratio (seasonal / plain) under which the profile is switched on.
const ACTIVATE_RATIO: f64 = 0.6;

/// Error ratio (seasonal / plain) above which the profile is switched off.
const DEACTIVATE_RATIO: f64 = 0.8;

/// Time constant of the slow level, as a fraction of the period.
const SLOW_LEVEL_PERIOD_FRACTION: f64 = 0.25;

/// Clip of a prediction error, in multiples of its running mean (spikes must not decide).
const ERROR_CLIP: f64 = 5.0;

/// Errors averaged (plain mean) before they are clipped.
const ERROR_CLIP_SAMPLES: f64 = 8.0;

/// One phase bin of the profile: 5 bytes, unaligned (the offset as the bytes of an `f32`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct SeasonBin {
    offset: [u8; 4],
    /// Updates of the bin (saturating): 0 = never learnt.
    updates: u8,
}

impl SeasonBin {
    fn offset(self) -> f32 {
        f32::from_ne_bytes(self.offset)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Season {
    period_ms: i64,
    /// Start of the period of the last learnt timestamp (a multiple of `period_ms`): the phase
    /// of a timestamp in that period is a subtraction, where `rem_euclid` divides.
    period_start_ms: i64,
    bins_per_ms: f64,
    /// Rate of the slow level per millisecond of sampling interval (precomputed: divisions are
    /// slow on the per-point path).
    slow_rate_per_ms: f64,
    /// Per phase bin, the learnt offset from the slow level and its updates, side by side (one
    /// cache line per point: the profile of one series among many is usually cold).
    profile: Vec<SeasonBin>,
    /// Slow levels of the deseasonalised values and of the raw values.
    slow_level: Option<f64>,
    plain_level: f64,
    seasonal_error: f64,
    plain_error: f64,
    error_samples: u64,
    first_timestamp_ms: Option<i64>,
    active: bool,
    /// When the profile was last switched on or off.
    switched_ms: Option<i64>,
}

impl Season {
    pub(crate) fn new(period_ms: i64, bins: usize) -> Self {
        Season {
            period_ms,
            period_start_ms: 0,
            bins_per_ms: bins as f64 / period_ms as f64,
            slow_rate_per_ms: 1.0 / (SLOW_LEVEL_PERIOD_FRACTION * period_ms as f64),
            profile: vec![SeasonBin::default(); bins],
            slow_level: None,
            plain_level: 0.0,
            seasonal_error: 0.0,
            plain_error: 0.0,
            error_samples: 0,
            first_timestamp_ms: None,
            active: false,
            switched_ms: None,
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.profile.capacity() * size_of::<SeasonBin>()
    }

    pub(crate) fn is_active(&self) -> bool {
        self.active
    }

    /// Returns the phase bin of `timestamp_ms`.
    pub(crate) fn bin(&self, timestamp_ms: i64) -> usize {
        let phase = self.phase(timestamp_ms) as f64;
        ((phase * self.bins_per_ms) as usize).min(self.profile.len() - 1)
    }

    /// Returns `timestamp_ms.rem_euclid(period_ms)`, without dividing when the timestamp lies
    /// in the period of the last learnt one (the period start is a multiple of the period, so
    /// the difference is that remainder).
    fn phase(&self, timestamp_ms: i64) -> i64 {
        match timestamp_ms.checked_sub(self.period_start_ms) {
            Some(phase) if (0..self.period_ms).contains(&phase) => phase,
            _ => timestamp_ms.rem_euclid(self.period_ms),
        }
    }

    /// Returns the offset to subtract from a value in phase bin `bin`: the learnt offset while
    /// the profile is on (0 for a bin never learnt), 0 otherwise.
    pub(crate) fn offset(&self, bin: usize) -> f64 {
        if self.active {
            self.learnt_offset(bin)
        } else {
            0.0
        }
    }

    /// Returns the learnt offset of phase bin `bin` whether or not the profile is on (0 for a
    /// bin never learnt): the offset [`Season::offset`] gives once it is on.
    pub(crate) fn learnt_offset(&self, bin: usize) -> f64 {
        let entry = self.profile[bin];
        if entry.updates > 0 {
            f64::from(entry.offset())
        } else {
            0.0
        }
    }

    /// Learns from `value` at `timestamp_ms` (in phase bin `bin`); `interval_ms` is the typical
    /// sampling interval. Returns whether the profile was switched on or off.
    pub(crate) fn learn(
        &mut self,
        bin: usize,
        timestamp_ms: i64,
        value: f64,
        interval_ms: f64,
        alpha: f64,
    ) -> bool {
        let first = *self.first_timestamp_ms.get_or_insert(timestamp_ms);
        let phase = self.phase(timestamp_ms);
        if let Some(start) = timestamp_ms.checked_sub(phase) {
            self.period_start_ms = start;
        }
        let entry = self.profile[bin];
        let known = entry.updates > 0;
        let offset = if known {
            f64::from(entry.offset())
        } else {
            0.0
        };
        let Some(level) = self.slow_level else {
            self.slow_level = Some(value);
            self.plain_level = value;
            return false;
        };
        let rate = (interval_ms * self.slow_rate_per_ms).clamp(1e-6, 1.0);
        if known && timestamp_ms.saturating_sub(first) >= self.period_ms {
            self.error_samples += 1;
            let samples = self.error_samples as f64;
            let weight = if samples * rate >= 1.0 {
                rate
            } else {
                1.0 / samples
            };
            // Each error is clipped at `ERROR_CLIP` times its running mean once that has
            // settled: a spike misses both predictions by about as much, and a few unclipped
            // ones would make the errors look alike however well the profile fits the rest.
            let clip = |error: f64, mean: f64| {
                if weight < 1.0 / ERROR_CLIP_SAMPLES {
                    error.min(ERROR_CLIP * mean)
                } else {
                    error
                }
            };
            let seasonal = clip((value - level - offset).abs(), self.seasonal_error);
            let plain = clip((value - self.plain_level).abs(), self.plain_error);
            self.seasonal_error += weight * (seasonal - self.seasonal_error);
            self.plain_error += weight * (plain - self.plain_error);
        }
        self.plain_level += rate * (value - self.plain_level);
        let level = level + rate * (value - offset - level);
        self.slow_level = Some(level);
        let updates = entry.updates;
        // `alpha` is the rate per period: several points in one bin share it, so the profile
        // learns the season, not the last few values.
        // alpha / max(points per bin, 1), at least 1 / (updates + 1).
        let per_point = alpha * (interval_ms * self.bins_per_ms).min(1.0);
        let learnt_points = f64::from(updates) + 1.0;
        let gain = if per_point * learnt_points >= 1.0 {
            per_point
        } else {
            1.0 / learnt_points
        };
        let learnt = offset + gain * (value - level - offset);
        self.profile[bin] = SeasonBin {
            offset: (learnt as f32).to_ne_bytes(),
            updates: updates.saturating_add(1),
        };

        let settled = timestamp_ms.saturating_sub(first) >= self.period_ms + self.period_ms / 2;
        // The errors average over a quarter period, so their ratio follows the time of day
        // (a profile can beat no season in the busy hours and lose at night): a decision
        // stands for a whole period, which spans every time of day, before it is reviewed.
        let reviewable = self
            .switched_ms
            .is_none_or(|at| timestamp_ms.saturating_sub(at) >= self.period_ms);
        if !reviewable {
            return false;
        }
        let was_active = self.active;
        if settled && !self.active && self.seasonal_error < ACTIVATE_RATIO * self.plain_error {
            self.active = true;
        } else if self.active && self.seasonal_error > DEACTIVATE_RATIO * self.plain_error {
            self.active = false;
        }
        let switched = was_active != self.active;
        if switched {
            self.switched_ms = Some(timestamp_ms);
        }
        switched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 3_600_000;

    #[test]
    fn the_phase_is_the_euclidean_remainder_whatever_the_last_learnt_period() {
        // Timestamps within a period, across periods, backwards, negative and at the extremes
        // of i64: the remembered period start only spares the division.
        let period = 24 * HOUR_MS;
        let mut season = Season::new(period, 288);
        let timestamps = [
            0,
            1,
            period - 1,
            period,
            5 * period + 17,
            5 * period + 17,
            3 * period - 2,
            -1,
            -period,
            -7 * period + 5,
            i64::MIN,
            i64::MIN + 1,
            i64::MAX,
            i64::MAX - period,
            12 * HOUR_MS,
        ];
        for (i, &learnt) in timestamps.iter().enumerate() {
            season.learn(season.bin(learnt), learnt, i as f64, 300_000.0, 0.1);
            for &timestamp_ms in &timestamps {
                assert_eq!(
                    season.phase(timestamp_ms),
                    timestamp_ms.rem_euclid(period),
                    "{timestamp_ms} after {learnt}"
                );
                let expected = ((timestamp_ms.rem_euclid(period) as f64 * season.bins_per_ms)
                    as usize)
                    .min(287);
                assert_eq!(season.bin(timestamp_ms), expected);
            }
        }
    }

    #[test]
    fn a_daily_square_wave_switches_the_profile_on() {
        let mut season = Season::new(24 * HOUR_MS, 24);
        let mut switched_at = None;
        for step in 0..24 * 6 {
            let timestamp_ms = step * HOUR_MS;
            let value = if (8..20).contains(&(step % 24)) {
                80.0
            } else {
                20.0
            };
            if season.learn(
                season.bin(timestamp_ms),
                timestamp_ms,
                value,
                HOUR_MS as f64,
                0.2,
            ) {
                switched_at.get_or_insert(step);
            }
        }
        assert!(season.is_active());
        assert!(switched_at.unwrap() >= 36, "{switched_at:?}");
        assert!(season.offset(10) - season.offset(2) > 40.0);
    }

    #[test]
    fn a_switch_stands_for_a_whole_period_however_the_errors_move() {
        // A daily square wave until the profile is on, then the same wave inverted: the
        // profile now predicts worse than no season within hours, but it stays on for a
        // period after the switch, and only then goes off.
        let mut season = Season::new(24 * HOUR_MS, 24);
        let mut on_at = None;
        let mut off_at = None;
        for step in 0..24 * 10 {
            let timestamp_ms = step * HOUR_MS;
            let high = (8..20).contains(&(step % 24));
            let inverted = on_at.is_some();
            let value = if high != inverted { 80.0 } else { 20.0 };
            let switched = season.learn(
                season.bin(timestamp_ms),
                timestamp_ms,
                value,
                HOUR_MS as f64,
                0.2,
            );
            if switched && season.is_active() {
                on_at.get_or_insert(step);
            } else if switched {
                off_at.get_or_insert(step);
                break;
            }
        }
        let (on_at, off_at) = (on_at.unwrap(), off_at.unwrap());
        assert!(off_at >= on_at + 24, "on at {on_at}, off at {off_at}");
        assert!(off_at <= on_at + 30, "on at {on_at}, off at {off_at}");
    }

    #[test]
    fn rare_large_spikes_do_not_keep_a_daily_wave_from_switching_the_profile_on() {
        const MINUTE_MS: i64 = 60_000;
        let noise = |i: i64| ((i.wrapping_mul(2_654_435_761) % 1000) as f64 / 500.0) - 1.0;
        // Five-minute points of a daily wave with a spike of 20 amplitudes every 100 points:
        // a spike misses both predictions by about as much, and unclipped, a few of them
        // would make the errors look alike.
        let mut season = Season::new(24 * HOUR_MS, 288);
        for i in 0..4 * 288 {
            let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
            let spike = if i % 100 == 99 { 1000.0 } else { 0.0 };
            let timestamp_ms = i * 5 * MINUTE_MS;
            season.learn(
                season.bin(timestamp_ms),
                timestamp_ms,
                100.0 + 50.0 * phase.sin() + noise(i) + spike,
                (5 * MINUTE_MS) as f64,
                0.2,
            );
        }
        assert!(season.is_active());
    }

    #[test]
    fn one_unusual_day_moves_the_default_profile_by_a_few_percent_of_its_departure() {
        use linfa::ParamGuard;

        let alpha = crate::RobustBaseline::params()
            .check()
            .unwrap()
            .season_alpha();
        // Hourly points of a daily square wave (80 from 08:00 to 20:00, 20 otherwise) for three
        // weeks, then a day on which the busy hours stay at 20 (a holiday): the offset of a
        // busy hour moves by about 4% of that departure (the slow level takes part of it; a
        // profile giving the latest period 0.2 moved it by 8%), so the next ordinary day is
        // still predicted close to the usual busy level.
        let mut season = Season::new(24 * HOUR_MS, 24);
        let learn = |season: &mut Season, step: i64, holiday: bool| {
            let busy = (8..20).contains(&(step % 24));
            let value = if busy && !holiday { 80.0 } else { 20.0 };
            let timestamp_ms = step * HOUR_MS;
            season.learn(
                season.bin(timestamp_ms),
                timestamp_ms,
                value,
                HOUR_MS as f64,
                alpha,
            );
        };
        for step in 0..24 * 21 {
            learn(&mut season, step, false);
        }
        let before = season.learnt_offset(12);
        for step in 24 * 21..24 * 22 {
            learn(&mut season, step, true);
        }
        let moved = (before - season.learnt_offset(12)) / 60.0;
        assert!(moved > 0.02 && moved < 0.06, "{moved}");
    }

    #[test]
    fn a_series_without_season_keeps_the_profile_off() {
        let mut season = Season::new(24 * HOUR_MS, 24);
        for step in 0..24 * 10 {
            let value = 50.0 + ((step * 7919) % 13) as f64;
            let timestamp_ms = step * HOUR_MS;
            season.learn(
                season.bin(timestamp_ms),
                timestamp_ms,
                value,
                HOUR_MS as f64,
                0.2,
            );
        }
        assert!(!season.is_active());
        assert_eq!(season.offset(5), 0.0);
    }
}
