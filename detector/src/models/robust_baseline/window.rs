//! A bounded window of recent values kept both in arrival order (a ring) and sorted, so that
//! median and quartiles cost O(1) and the mean absolute deviation one pass, without allocating.

/// Ratio of the interquartile range to the standard deviation for Gaussian noise.
const IQR_TO_SIGMA: f64 = 1.349;

/// Ratio of the standard deviation to the mean absolute deviation for Gaussian noise.
const MEAN_ABSOLUTE_DEVIATION_TO_SIGMA: f64 = 1.2533;

/// Robust location and spread of a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WindowStats {
    /// Median of the window.
    pub(crate) median: f64,
    /// Largest of the interquartile range and the mean absolute deviation around the median,
    /// both scaled to estimate the standard deviation of Gaussian noise (0 for a constant
    /// window). The first ignores outliers, the second notices a wide minority.
    pub(crate) spread: f64,
}

/// The last `capacity` values, in arrival order and sorted by `f64::total_cmp`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RobustWindow {
    capacity: usize,
    ring: Vec<f64>,
    /// Index in `ring` of the oldest value once the ring is full.
    ring_next: usize,
    sorted: Vec<f64>,
}

impl RobustWindow {
    pub(crate) fn new(capacity: usize) -> Self {
        RobustWindow {
            capacity,
            ring: Vec::with_capacity(capacity),
            ring_next: 0,
            sorted: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.ring.clear();
        self.sorted.clear();
        self.ring_next = 0;
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        (self.ring.capacity() + self.sorted.capacity()) * size_of::<f64>()
    }

    /// Adds a finite value, dropping the oldest one when full.
    pub(crate) fn push(&mut self, value: f64) {
        if self.ring.len() < self.capacity {
            self.ring.push(value);
            let position = self
                .sorted
                .partition_point(|probe| probe.total_cmp(&value).is_lt());
            self.sorted.insert(position, value);
            return;
        }
        let oldest = std::mem::replace(&mut self.ring[self.ring_next], value);
        self.ring_next = (self.ring_next + 1) % self.capacity;
        let Ok(old) = self
            .sorted
            .binary_search_by(|probe| probe.total_cmp(&oldest))
        else {
            // Unreachable (the sorted copy holds every ring value); rebuild rather than panic.
            self.resort();
            return;
        };
        // Replace the oldest value by the new one, moving only the values between them.
        let new = self
            .sorted
            .partition_point(|probe| probe.total_cmp(&value).is_lt());
        if new <= old {
            self.sorted.copy_within(new..old, new + 1);
            self.sorted[new] = value;
        } else {
            self.sorted.copy_within(old + 1..new, old);
            self.sorted[new - 1] = value;
        }
    }

    fn resort(&mut self) {
        self.sorted.clear();
        self.sorted.extend_from_slice(&self.ring);
        self.sorted.sort_by(f64::total_cmp);
    }

    /// Returns the most recent values, newest first (at most `count`).
    pub(crate) fn newest(&self, count: usize) -> impl Iterator<Item = f64> + '_ {
        let len = self.ring.len();
        // The newest value sits just before `ring_next` (or at the end until the ring is full).
        let newest = if len < self.capacity {
            len
        } else {
            self.ring_next + len
        };
        (1..=count.min(len)).map(move |back| self.ring[(newest - back) % len])
    }

    /// Adds `offset` to every value except the `keep` newest ones (a level shift of the past).
    pub(crate) fn shift_older(&mut self, offset: f64, keep: usize) {
        let len = self.ring.len();
        let newest = if len < self.capacity {
            len
        } else {
            self.ring_next + len
        };
        for back in keep + 1..=len {
            let index = (newest - back) % len;
            self.ring[index] += offset;
        }
        self.resort();
    }

    /// Returns whether `value` makes up at least a fifth of the window.
    pub(crate) fn is_usual(&self, value: f64) -> bool {
        let start = self
            .sorted
            .partition_point(|probe| probe.total_cmp(&value).is_lt());
        let end = self
            .sorted
            .partition_point(|probe| probe.total_cmp(&value).is_le());
        5 * (end - start) >= self.sorted.len().max(1)
    }

    /// Returns the median (halves added separately: no overflow), `None` when empty.
    pub(crate) fn median(&self) -> Option<f64> {
        (!self.sorted.is_empty()).then(|| median_of_sorted(&self.sorted))
    }

    /// Returns the median and spread, `None` when empty.
    pub(crate) fn stats(&self) -> Option<WindowStats> {
        let median = self.median()?;
        let n = self.sorted.len();
        // Halves subtracted separately: no overflow.
        let interquartile_range = self.sorted[(3 * n) / 4] / 2.0 - self.sorted[n / 4] / 2.0;
        let mean_absolute_deviation = sum_of_distances(&self.sorted, median) / n as f64;
        let spread = (2.0 * interquartile_range / IQR_TO_SIGMA)
            .max(MEAN_ABSOLUTE_DEVIATION_TO_SIGMA * mean_absolute_deviation);
        Some(WindowStats { median, spread })
    }

    #[cfg(test)]
    pub(crate) fn sorted(&self) -> &[f64] {
        &self.sorted
    }
}

/// Returns the sum of `|x - centre|`, in four lanes so that it vectorises.
fn sum_of_distances(values: &[f64], centre: f64) -> f64 {
    let mut lanes = [0.0; 4];
    let mut chunks = values.chunks_exact(4);
    for chunk in &mut chunks {
        for (lane, x) in lanes.iter_mut().zip(chunk) {
            *lane += (x - centre).abs();
        }
    }
    let rest: f64 = chunks.remainder().iter().map(|x| (x - centre).abs()).sum();
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + rest
}

/// Returns the median of a non-empty sorted slice.
fn median_of_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        sorted[n / 2 - 1] / 2.0 + sorted[n / 2] / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_a_window() {
        let mut window = RobustWindow::new(8);
        assert_eq!(window.stats(), None);
        for value in [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 100.0] {
            window.push(value);
        }
        let stats = window.stats().unwrap();
        assert_eq!(stats.median, 4.5);
        // Mean absolute deviation (4 x 3.5 / 8 + ... = 14.75) beats the quartile spread.
        let mean_absolute_deviation = (3.5 + 2.5 + 1.5 + 0.5 + 0.5 + 1.5 + 2.5 + 95.5) / 8.0;
        assert!((stats.spread - 1.2533 * mean_absolute_deviation).abs() < 1e-9);
        let mut constant = RobustWindow::new(4);
        constant.push(3.0);
        assert_eq!(constant.stats().unwrap().spread, 0.0);
    }

    #[test]
    fn ring_keeps_the_last_values_sorted() {
        let mut window = RobustWindow::new(4);
        for value in [4.0, 1.0, 3.0, 2.0, 10.0, 0.0] {
            window.push(value);
        }
        assert_eq!(window.sorted(), [0.0, 2.0, 3.0, 10.0]);
        assert_eq!(window.median(), Some(2.5));
        assert_eq!(window.newest(3).collect::<Vec<_>>(), [0.0, 10.0, 2.0]);
    }

    #[test]
    fn push_keeps_the_sorted_copy_equal_to_the_ring() {
        let mut window = RobustWindow::new(7);
        let mut state = 12345u64;
        for _ in 0..500 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            window.push(((state >> 33) % 10) as f64);
            let mut expected = window.ring.clone();
            expected.sort_by(f64::total_cmp);
            assert_eq!(window.sorted, expected);
        }
    }

    #[test]
    fn shift_older_moves_all_but_the_newest() {
        let mut window = RobustWindow::new(4);
        for value in [1.0, 2.0, 3.0, 20.0, 21.0] {
            window.push(value);
        }
        window.shift_older(18.0, 2);
        assert_eq!(window.sorted(), [20.0, 20.0, 21.0, 21.0]);
        let mut partial = RobustWindow::new(8);
        for value in [1.0, 2.0, 30.0] {
            partial.push(value);
        }
        partial.shift_older(28.0, 1);
        assert_eq!(partial.newest(3).collect::<Vec<_>>(), [30.0, 30.0, 29.0]);
    }
}
