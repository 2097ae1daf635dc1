//! A bounded window of recent values kept both in arrival order (a ring) and sorted, so that
//! median and MAD cost O(window) without allocating.

/// Ratio of the standard deviation to the MAD for Gaussian noise.
const MAD_TO_SIGMA: f64 = 1.4826;

/// Ratio of the standard deviation to the mean absolute deviation for Gaussian noise.
const MEAN_ABSOLUTE_DEVIATION_TO_SIGMA: f64 = 1.2533;

/// Robust location and spread of a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WindowStats {
    /// Median of the window.
    pub(crate) median: f64,
    /// Largest of the MAD and the mean absolute deviation around the median, both scaled to
    /// estimate the standard deviation of Gaussian noise (0 for a constant window).
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
        } else {
            let oldest = std::mem::replace(&mut self.ring[self.ring_next], value);
            self.ring_next = (self.ring_next + 1) % self.capacity;
            if let Ok(position) = self
                .sorted
                .binary_search_by(|probe| probe.total_cmp(&oldest))
            {
                self.sorted.remove(position);
            }
        }
        let position = self
            .sorted
            .partition_point(|probe| probe.total_cmp(&value).is_lt());
        self.sorted.insert(position, value);
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
        self.sorted.clear();
        self.sorted.extend_from_slice(&self.ring);
        self.sorted.sort_by(f64::total_cmp);
    }

    /// Returns the median (halves added separately: no overflow), `None` when empty.
    pub(crate) fn median(&self) -> Option<f64> {
        (!self.sorted.is_empty()).then(|| median_of_sorted(&self.sorted))
    }

    /// Returns the median and spread, `None` when empty.
    pub(crate) fn stats(&self) -> Option<WindowStats> {
        let median = self.median()?;
        let mad = median_absolute_deviation_of_sorted(&self.sorted, median);
        let mean_absolute_deviation =
            self.sorted.iter().map(|x| (x - median).abs()).sum::<f64>() / self.sorted.len() as f64;
        let spread =
            (MAD_TO_SIGMA * mad).max(MEAN_ABSOLUTE_DEVIATION_TO_SIGMA * mean_absolute_deviation);
        Some(WindowStats { median, spread })
    }

    #[cfg(test)]
    pub(crate) fn sorted(&self) -> &[f64] {
        &self.sorted
    }
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

/// Returns the median of `|x - median|` over a non-empty sorted slice, by merging the distances
/// outward from the median (both sides are already ordered by distance): O(n/2), no allocation.
fn median_absolute_deviation_of_sorted(sorted: &[f64], median: f64) -> f64 {
    let n = sorted.len();
    let split = sorted.partition_point(|&x| x < median);
    let (mut left, mut right) = (split, split);
    let upper_rank = n / 2;
    let mut previous = 0.0;
    for rank in 0..=upper_rank {
        let left_distance = if left > 0 {
            median - sorted[left - 1]
        } else {
            f64::INFINITY
        };
        let right_distance = if right < n {
            sorted[right] - median
        } else {
            f64::INFINITY
        };
        let distance = if left_distance <= right_distance {
            left -= 1;
            left_distance
        } else {
            right += 1;
            right_distance
        };
        if rank == upper_rank {
            return if n % 2 == 1 {
                distance
            } else {
                previous / 2.0 + distance / 2.0
            };
        }
        previous = distance;
    }
    previous
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad_match_a_sort() {
        let values = [5.0, 1.0, 9.0, 3.0, 3.0, 7.0, 2.0, 8.0];
        for n in 1..=values.len() {
            let mut sorted = values[..n].to_vec();
            sorted.sort_by(f64::total_cmp);
            let median = median_of_sorted(&sorted);
            let mut distances: Vec<f64> = sorted.iter().map(|x| (x - median).abs()).collect();
            distances.sort_by(f64::total_cmp);
            let expected = median_of_sorted(&distances);
            assert_eq!(
                median_absolute_deviation_of_sorted(&sorted, median),
                expected,
                "n = {n}"
            );
        }
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
