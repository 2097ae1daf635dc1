//! The windowed Gaussian baseline: mean and standard deviation of the last `window_points`
//! values, z-score of the next value against them.
//!
//! This is the simple reference model that benchmarks report beside the real ones (NAB ships it
//! under the same name). It is not robust: one spike inflates the standard deviation of the whole
//! window. Updates are O(1) (running sums, recomputed from the ring each time it wraps to bound
//! rounding drift).

/// Streaming windowed Gaussian model of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowedGaussian {
    window_points: usize,
    ring: Vec<f64>,
    ring_next: usize,
    sum: f64,
    sum_of_squares: f64,
}

impl WindowedGaussian {
    /// Name of the model in reports.
    pub const NAME: &'static str = "windowed_gaussian";

    /// Returns an empty model over the last `window_points` values (at least 2).
    pub fn new(window_points: usize) -> Self {
        let window_points = window_points.max(2);
        WindowedGaussian {
            window_points,
            ring: Vec::with_capacity(window_points),
            ring_next: 0,
            sum: 0.0,
            sum_of_squares: 0.0,
        }
    }

    /// Returns the signed z-score of `value` against the window, or `None` with fewer than two
    /// values or a zero standard deviation, then absorbs `value` (non-finite values are neither
    /// scored nor absorbed).
    pub fn observe(&mut self, value: f64) -> Option<f64> {
        if !value.is_finite() {
            return None;
        }
        let z = self.z(value);
        self.absorb(value);
        z
    }

    /// Returns the mean of the window, if any value was absorbed.
    pub fn mean(&self) -> Option<f64> {
        (!self.ring.is_empty()).then(|| self.sum / self.ring.len() as f64)
    }

    fn z(&self, value: f64) -> Option<f64> {
        let n = self.ring.len() as f64;
        if self.ring.len() < 2 {
            return None;
        }
        let mean = self.sum / n;
        let variance = (self.sum_of_squares / n - mean * mean).max(0.0);
        let deviation = variance.sqrt();
        (deviation > 0.0).then(|| (value - mean) / deviation)
    }

    fn absorb(&mut self, value: f64) {
        if self.ring.len() < self.window_points {
            self.ring.push(value);
            self.sum += value;
            self.sum_of_squares += value * value;
            return;
        }
        let oldest = std::mem::replace(&mut self.ring[self.ring_next], value);
        self.ring_next = (self.ring_next + 1) % self.window_points;
        if self.ring_next == 0 {
            self.sum = self.ring.iter().sum();
            self.sum_of_squares = self.ring.iter().map(|x| x * x).sum();
        } else {
            self.sum += value - oldest;
            self.sum_of_squares += value * value - oldest * oldest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z_score_against_the_window() {
        let mut model = WindowedGaussian::new(4);
        assert_eq!(model.observe(1.0), None);
        assert_eq!(model.observe(3.0), None);
        assert_eq!(model.observe(2.0), Some(0.0));
        for value in [1.0, 3.0, 1.0, 3.0] {
            model.observe(value);
        }
        assert_eq!(model.mean(), Some(2.0));
        assert_eq!(model.observe(4.0), Some(2.0));
        assert_eq!(model.observe(f64::NAN), None);
    }
}
