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
}

impl RecordEnvelope {
    pub(crate) fn new(first: f64) -> Self {
        RecordEnvelope {
            high: first,
            low: first,
        }
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

    /// Takes `value` into the records, after decaying them towards `median` by `keep` (`0.5^(1
    /// / half-life)`).
    pub(crate) fn learn(&mut self, value: f64, median: f64, keep: f64) {
        if self.high > median {
            self.high = median + (self.high - median) * keep;
        }
        if self.low < median {
            self.low = median - (median - self.low) * keep;
        }
        self.high = self.high.max(value);
        self.low = self.low.min(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_values_beyond_the_records_have_an_excess() {
        let mut records = RecordEnvelope::new(10.0);
        for value in [12.0, 8.0, 30.0, 11.0] {
            records.learn(value, 10.0, 1.0);
        }
        assert_eq!(records.excess(29.0, 0.0), 0.0);
        assert!((records.excess(7.0, 0.0) - 1.0 / 22.0).abs() < 1e-6);
        assert!((records.excess(41.0, 0.0) - 0.5).abs() < 1e-6);
        assert_eq!(RecordEnvelope::new(3.0).excess(5.0, 0.0), 0.0);
    }

    #[test]
    fn records_decay_towards_the_median() {
        let mut records = RecordEnvelope::new(10.0);
        records.learn(20.0, 10.0, 0.5f64.powf(0.1));
        for _ in 0..10 {
            records.learn(10.0, 10.0, 0.5f64.powf(0.1));
        }
        // The high record decayed from 20 to 15 (one half-life); the range is 15 - 10 = 5.
        assert!((records.excess(16.0, 0.0) - 0.2).abs() < 1e-6);
    }
}
