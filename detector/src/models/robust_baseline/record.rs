//! Records: the highest and lowest (deseasonalised) values of the series' recent past.
//!
//! A deviation from the short-term baseline is news only if the value also goes beyond what the
//! series has done before: a burst to a level it reaches every day is not an anomaly, a burst
//! above every earlier one is. The envelope keeps a high and a low record; each takes any value
//! beyond it and otherwise decays towards the current median with a half-life of
//! `half_life_points` points, so the past is forgotten gradually. The excess of a value is how
//! far it goes beyond the records as a fraction of their range (0 inside): the model turns it
//! into a z-score `3 + record_gain * excess`, like the "spatial anomaly" of Numenta's detector.

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RecordEnvelope {
    high: f64,
    low: f64,
    /// When a value last came near each record (within `reach` of the range).
    high_reached_ms: i64,
    low_reached_ms: i64,
    /// Seasonal offsets of the phase bins where the records were set: what moves them into the
    /// other frame (raw or deseasonalised) when the seasonal profile is switched.
    high_offset: f32,
    low_offset: f32,
}

/// How a record decays: per point by `keep` (`0.5^(1 / half-life)`), but only once no value
/// has come within `reach` (a fraction of the records' range) of it for `hold_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RecordDecay {
    pub(crate) keep: f64,
    pub(crate) hold_ms: i64,
    pub(crate) reach: f64,
}

impl RecordEnvelope {
    pub(crate) fn new(first: f64, timestamp_ms: i64) -> Self {
        RecordEnvelope {
            high: first,
            low: first,
            high_reached_ms: timestamp_ms,
            low_reached_ms: timestamp_ms,
            high_offset: 0.0,
            low_offset: 0.0,
        }
    }

    /// Moves the records into the other seasonal frame: subtracts the offset of the bin where
    /// each was set (`deseasonalise`) or adds it back.
    pub(crate) fn reframe(&mut self, deseasonalise: bool) {
        let sign = if deseasonalise { -1.0 } else { 1.0 };
        let high = self.high + sign * f64::from(self.high_offset);
        let low = self.low + sign * f64::from(self.low_offset);
        self.high = high.max(low);
        self.low = low.min(high);
    }

    /// Returns how far `value` goes beyond the records, as a fraction of their range (0 inside).
    pub(crate) fn excess(&self, value: f64, min_range: f64) -> f64 {
        let range = (self.high - self.low).max(min_range);
        if range <= 0.0 {
            return 0.0;
        }
        if value > self.high {
            (value - self.high) / range
        } else if value < self.low {
            (self.low - value) / range
        } else {
            0.0
        }
    }

    /// Takes `value` at `timestamp_ms` (whose phase bin has the seasonal offset `offset`) into
    /// the records, after decaying them towards `median` as `decay` says: a record the series
    /// keeps reaching (a weekly peak) holds, one it has left behind fades.
    pub(crate) fn learn(
        &mut self,
        value: f64,
        offset: f32,
        median: f64,
        timestamp_ms: i64,
        decay: RecordDecay,
    ) {
        let near = decay.reach * (self.high - self.low);
        if value >= self.high - near {
            self.high_reached_ms = timestamp_ms;
        }
        if value <= self.low + near {
            self.low_reached_ms = timestamp_ms;
        }
        if self.high > median && timestamp_ms.saturating_sub(self.high_reached_ms) > decay.hold_ms {
            self.high = median + (self.high - median) * decay.keep;
        }
        if self.low < median && timestamp_ms.saturating_sub(self.low_reached_ms) > decay.hold_ms {
            self.low = median - (median - self.low) * decay.keep;
        }
        if value >= self.high {
            self.high = value;
            self.high_offset = offset;
        }
        if value <= self.low {
            self.low = value;
            self.low_offset = offset;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decay(keep: f64) -> RecordDecay {
        RecordDecay {
            keep,
            hold_ms: 0,
            reach: 0.0,
        }
    }

    #[test]
    fn only_values_beyond_the_records_have_an_excess() {
        let mut records = RecordEnvelope::new(10.0, 0);
        for value in [12.0, 8.0, 30.0, 11.0] {
            records.learn(value, 0.0, 10.0, 0, decay(1.0));
        }
        assert_eq!(records.excess(29.0, 0.0), 0.0);
        assert!((records.excess(7.0, 0.0) - 1.0 / 22.0).abs() < 1e-6);
        assert!((records.excess(41.0, 0.0) - 0.5).abs() < 1e-6);
        assert_eq!(RecordEnvelope::new(3.0, 0).excess(5.0, 0.0), 0.0);
    }

    #[test]
    fn a_record_the_series_keeps_reaching_holds_and_one_left_behind_decays() {
        let hold = RecordDecay {
            keep: 0.5,
            hold_ms: 100,
            reach: 0.05,
        };
        let mut records = RecordEnvelope::new(0.0, 0);
        records.learn(20.0, 0.0, 0.0, 0, hold);
        // A peak within 5% of the range of the record every 90 ms: the high record stays.
        for t in 1..=1000 {
            let value = if t % 90 == 0 { 19.5 } else { 0.0 };
            records.learn(value, 0.0, 0.0, t, hold);
        }
        assert_eq!(records.excess(20.0, 0.0), 0.0);
        assert!(records.excess(21.0, 0.0) > 0.0);
        // No longer reached (last at 990), the high record holds until 1090, then halves at
        // each point; the low one (0) is reached at every point.
        for t in 1001..=1090 {
            records.learn(0.0, 0.0, 0.0, t, hold);
        }
        assert_eq!(records.excess(20.0, 0.0), 0.0);
        records.learn(0.0, 0.0, 0.0, 1091, hold);
        assert!(
            (records.excess(15.0, 0.0) - 0.5).abs() < 1e-9,
            "{records:?}"
        );
    }

    #[test]
    fn records_decay_towards_the_median() {
        let mut records = RecordEnvelope::new(10.0, 0);
        records.learn(20.0, 0.0, 10.0, 0, decay(0.5f64.powf(0.1)));
        for t in 1..=10 {
            records.learn(10.0, 0.0, 10.0, t, decay(0.5f64.powf(0.1)));
        }
        // The high record decayed from 20 to 15 (one half-life); the range is 15 - 10 = 5.
        assert!((records.excess(16.0, 0.0) - 0.2).abs() < 1e-6);
    }
}
