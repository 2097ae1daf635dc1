//! A bounded window of recent values kept both in arrival order (a ring) and sorted, so that
//! median, quartiles and the mean absolute deviation cost O(1), without allocating.
//!
//! The mean absolute deviation around the median of a sorted window is the sum of its upper half
//! minus the sum of its lower half (halves of `floor(n / 2)` values), divided by `n`: the window
//! keeps both sums up to date as values come and go, and recomputes them every
//! `RESUM_EVERY` pushes (or when a value leaving would dominate them) so rounding never builds up.

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

/// Largest window whose ranks are counted in one pass rather than binary-searched.
const LINEAR_RANK_MAX: usize = 256;

/// Pushes between two exact recomputations of the half sums.
const RESUM_EVERY: u32 = 1024;

/// The last `capacity` values, in arrival order and sorted (finite values only).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RobustWindow {
    capacity: usize,
    ring: Vec<f64>,
    /// Beside each ring value, the seasonal offset of its phase bin when it arrived (whether or
    /// not the profile was on): what turns it from one frame (raw or deseasonalised) into the
    /// other when the profile is switched.
    offsets: Vec<f32>,
    /// Index in `ring` of the oldest value once the ring is full.
    ring_next: usize,
    sorted: Vec<f64>,
    /// Sums of the lowest and of the highest `floor(len / 2)` sorted values.
    low_sum: f64,
    high_sum: f64,
    /// Pushes since the sums were last recomputed.
    since_resum: u32,
}

impl RobustWindow {
    pub(crate) fn new(capacity: usize) -> Self {
        RobustWindow {
            capacity,
            ring: Vec::with_capacity(capacity),
            offsets: Vec::with_capacity(capacity),
            ring_next: 0,
            sorted: Vec::with_capacity(capacity),
            low_sum: 0.0,
            high_sum: 0.0,
            since_resum: 0,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.ring.clear();
        self.offsets.clear();
        self.sorted.clear();
        self.ring_next = 0;
        self.resum();
    }

    /// Recomputes the half sums exactly.
    fn resum(&mut self) {
        let half = self.sorted.len() / 2;
        let n = self.sorted.len();
        self.low_sum = self.sorted[..half].iter().sum();
        self.high_sum = self.sorted[n - half..].iter().sum();
        self.since_resum = 0;
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        (self.ring.capacity() + self.sorted.capacity()) * size_of::<f64>()
            + self.offsets.capacity() * size_of::<f32>()
    }

    /// Adds a finite value with no seasonal offset, dropping the oldest one when full.
    #[cfg(test)]
    pub(crate) fn push(&mut self, value: f64) {
        self.push_with_offset(value, 0.0);
    }

    /// Adds a finite value and the seasonal offset of its phase bin, dropping the oldest value
    /// when full.
    pub(crate) fn push_with_offset(&mut self, value: f64, offset: f32) {
        if self.ring.len() < self.capacity {
            self.ring.push(value);
            self.offsets.push(offset);
            let position = self.sorted.partition_point(|&probe| probe < value);
            self.sorted.insert(position, value);
            self.resum();
            return;
        }
        let oldest = std::mem::replace(&mut self.ring[self.ring_next], value);
        self.offsets[self.ring_next] = offset;
        self.ring_next = (self.ring_next + 1) % self.capacity;
        // Values are finite, so `<` orders them; equal values are interchangeable.
        let (old, new) = self.ranks(oldest, value);
        if self.sorted.get(old) != Some(&oldest) {
            // Unreachable (the sorted copy holds every ring value); rebuild rather than panic.
            self.resort();
            return;
        }
        // Replace the oldest value by the new one, moving only the values between them.
        let placed = if new <= old {
            self.sorted.copy_within(new..old, new + 1);
            self.sorted[new] = value;
            new
        } else {
            self.sorted.copy_within(old + 1..new, old);
            self.sorted[new - 1] = value;
            new - 1
        };
        self.since_resum += 1;
        // The sums stay in registers for the check below (reading the two fields back just
        // after storing them stalled on store forwarding).
        let (low_sum, high_sum) = self.updated_sums(old, oldest, placed, value);
        self.low_sum = low_sum;
        self.high_sum = high_sum;
        // A value leaving that dwarfs those that stay leaves its rounding error behind.
        let scale = (low_sum.abs() + high_sum.abs()) / self.sorted.len() as f64;
        if self.since_resum >= RESUM_EVERY || oldest.abs() > 1024.0 * scale {
            self.resum();
        }
    }

    /// Returns how many sorted values lie below `a` and below `b` (their insertion points).
    /// A small window is counted in one branch-free pass the compiler vectorises: its cache lines
    /// load in parallel, where the dependent loads of a binary search wait for one another (the
    /// window is usually cold: one series among many). A large one is searched.
    fn ranks(&self, a: f64, b: f64) -> (usize, usize) {
        if self.sorted.len() > LINEAR_RANK_MAX {
            return (
                self.sorted.partition_point(|&probe| probe < a),
                self.sorted.partition_point(|&probe| probe < b),
            );
        }
        let (mut below_a, mut below_b) = (0usize, 0usize);
        for &probe in &self.sorted {
            below_a += usize::from(probe < a);
            below_b += usize::from(probe < b);
        }
        (below_a, below_b)
    }

    /// Returns the half sums after `removed` left sorted index `old` (of the array before) and
    /// `added` took sorted index `placed` (of the array after), the length unchanged.
    fn updated_sums(&self, old: usize, removed: f64, placed: usize, added: f64) -> (f64, f64) {
        let n = self.sorted.len();
        let half = n / 2;
        let (mut low_sum, mut high_sum) = (self.low_sum, self.high_sum);
        if half == 0 {
            return (low_sum, high_sum);
        }
        // Lower half: indices below `half`.
        match (old < half, placed < half) {
            (true, true) => low_sum += added - removed,
            // The value just above the lower half slid into it.
            (true, false) => low_sum += self.sorted[half - 1] - removed,
            // The highest value of the lower half was pushed out of it.
            (false, true) => low_sum += added - self.sorted[half],
            (false, false) => {}
        }
        // Upper half: indices from `n - half`.
        let start = n - half;
        match (old >= start, placed >= start) {
            (true, true) => high_sum += added - removed,
            // The value just below the upper half moved up into it.
            (true, false) => high_sum += self.sorted[start] - removed,
            // The lowest value of the upper half was pushed out of it.
            (false, true) => high_sum += added - self.sorted[start - 1],
            (false, false) => {}
        }
        (low_sum, high_sum)
    }

    fn resort(&mut self) {
        self.sorted.clear();
        self.sorted.extend_from_slice(&self.ring);
        self.sorted.sort_by(f64::total_cmp);
        self.resum();
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

    /// Moves every value into the other seasonal frame: subtracts its offset (`deseasonalise`,
    /// raw values become deseasonalised ones) or adds it back, so a switch of the seasonal
    /// profile keeps the window instead of emptying it.
    pub(crate) fn reframe(&mut self, deseasonalise: bool) {
        let sign = if deseasonalise { -1.0 } else { 1.0 };
        for (value, &offset) in self.ring.iter_mut().zip(&self.offsets) {
            *value += sign * f64::from(offset);
        }
        self.resort();
    }

    /// Returns whether `value` makes up at least a fifth of the window.
    pub(crate) fn is_usual(&self, value: f64) -> bool {
        let start = self.sorted.partition_point(|&probe| probe < value);
        let end = self.sorted.partition_point(|&probe| probe <= value);
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
        // Clamped: rounding in the running sums must not make it negative.
        let mean_absolute_deviation = ((self.high_sum - self.low_sum) / n as f64).max(0.0);
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
#[cfg(test)]
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
    fn ranks_are_insertion_points_whether_counted_or_searched() {
        // 64 values take the counting path, 300 the binary search; many repeats.
        for capacity in [64, LINEAR_RANK_MAX + 44] {
            let mut window = RobustWindow::new(capacity);
            let mut state = 99u64;
            for _ in 0..3 * capacity {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                window.push(((state >> 33) % 50) as f64 - 25.0);
                let mut expected = window.ring.clone();
                expected.sort_by(f64::total_cmp);
                assert_eq!(window.sorted, expected);
            }
            for probe in [-30.0, -25.0, 0.0, 0.5, 24.0, 30.0] {
                let below = |x: f64| window.sorted.iter().filter(|&&v| v < x).count();
                assert_eq!(window.ranks(probe, -probe), (below(probe), below(-probe)));
            }
        }
    }

    #[test]
    fn running_half_sums_give_the_mean_absolute_deviation() {
        for capacity in [4, 7, 64] {
            let mut window = RobustWindow::new(capacity);
            let mut state = 987u64;
            for i in 0..5000 {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let uniform = (state >> 11) as f64 / (1u64 << 53) as f64;
                // Repeated values, negative values and a rare huge one.
                let value = match i % 97 {
                    0 => 1e12,
                    1..=10 => 3.0,
                    _ => uniform * 200.0 - 100.0,
                };
                window.push(value);
                let n = window.sorted.len();
                let median = window.median().unwrap();
                let direct = sum_of_distances(&window.sorted, median) / n as f64;
                let running = (window.high_sum - window.low_sum) / n as f64;
                assert!(
                    (direct - running).abs() <= 1e-9 * direct.max(1.0),
                    "capacity {capacity}, push {i}: {direct} vs {running}"
                );
            }
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

    #[test]
    fn reframe_moves_each_value_by_its_own_offset_and_back() {
        let mut window = RobustWindow::new(3);
        for (value, offset) in [(10.0, 5.0), (20.0, -5.0), (30.0, 0.0), (40.0, 10.0)] {
            window.push_with_offset(value, offset);
        }
        window.reframe(true);
        assert_eq!(window.sorted(), [25.0, 30.0, 30.0]);
        assert_eq!(window.newest(3).collect::<Vec<_>>(), [30.0, 30.0, 25.0]);
        window.reframe(false);
        assert_eq!(window.sorted(), [20.0, 30.0, 40.0]);
    }
}
