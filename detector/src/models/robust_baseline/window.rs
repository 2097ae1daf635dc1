//! A bounded window of recent values kept sorted, each value tagged with its place in arrival
//! order (so the oldest can leave), so that median, quartiles and the mean absolute deviation
//! cost O(1), without allocating.
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

/// The last `capacity` values (finite values only), kept sorted, each tagged with its place in
/// arrival order.
///
/// There is no separate ring of values: the slot (0..capacity) a value took in arrival order
/// travels beside it in `slots`, so the oldest value is found by its slot (one small array of
/// `u16`) instead of in a second copy of every value. A value costs 10 bytes instead of the 16
/// of a ring plus a sorted copy (14 instead of 20 once seasonal offsets are kept), and the
/// sorted values, their sums and so every score are bit for bit those of the ring (see the
/// tests).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RobustWindow {
    capacity: usize,
    /// The values, sorted.
    sorted: Vec<f64>,
    /// Beside each sorted value, its slot in arrival order: slots fill from 0, and once the
    /// window is full the value in slot `next_slot` is the oldest and the next one replaces it.
    slots: Vec<u16>,
    /// Per slot, the seasonal offset of the value's phase bin when it arrived (whether or not
    /// the profile was on): what turns it from one frame (raw or deseasonalised) into the other
    /// when the profile is switched. Empty while every offset so far was 0 (a series without a
    /// seasonal profile never allocates it); else `capacity` long.
    offsets: Vec<f32>,
    /// Slot of the oldest value once the window is full (0 until then).
    next_slot: usize,
    /// Sums of the lowest and of the highest `floor(len / 2)` sorted values.
    low_sum: f64,
    high_sum: f64,
    /// Pushes since the sums were last recomputed.
    since_resum: u32,
}

impl RobustWindow {
    /// Returns an empty window of `capacity` (at most 65536) values.
    pub(crate) fn new(capacity: usize) -> Self {
        RobustWindow {
            capacity,
            sorted: Vec::with_capacity(capacity),
            slots: Vec::with_capacity(capacity),
            offsets: Vec::new(),
            next_slot: 0,
            low_sum: 0.0,
            high_sum: 0.0,
            since_resum: 0,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.sorted.clear();
        self.slots.clear();
        self.offsets.clear();
        self.next_slot = 0;
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
        self.sorted.capacity() * size_of::<f64>()
            + self.slots.capacity() * size_of::<u16>()
            + self.offsets.capacity() * size_of::<f32>()
    }

    /// Returns the heap bytes of a full window of `capacity` values, with the seasonal offsets
    /// when `seasonal`.
    pub(crate) fn heap_bytes_for(capacity: usize, seasonal: bool) -> usize {
        let offsets = if seasonal { size_of::<f32>() } else { 0 };
        capacity * (size_of::<f64>() + size_of::<u16>() + offsets)
    }

    /// Adds a finite value with no seasonal offset, dropping the oldest one when full.
    #[cfg(test)]
    pub(crate) fn push(&mut self, value: f64) {
        self.push_with_offset(value, 0.0);
    }

    /// Adds a finite value and the seasonal offset of its phase bin, dropping the oldest value
    /// when full.
    pub(crate) fn push_with_offset(&mut self, value: f64, offset: f32) {
        let len = self.sorted.len();
        let slot = if len < self.capacity {
            len
        } else {
            self.next_slot
        };
        if offset != 0.0 && self.offsets.is_empty() {
            self.offsets.resize(self.capacity, 0.0);
        }
        if let Some(stored) = self.offsets.get_mut(slot) {
            *stored = offset;
        }
        // Slots are below `capacity`, at most 65536 (checked with the model's parameters).
        let tag = slot as u16;
        if len < self.capacity {
            let position = self.sorted.partition_point(|&probe| probe < value);
            self.sorted.insert(position, value);
            self.slots.insert(position, tag);
            self.resum();
            return;
        }
        // The next slot wraps round without a division (`capacity` is not known at compile
        // time, so `%` divides).
        self.next_slot = if self.next_slot + 1 == self.capacity {
            0
        } else {
            self.next_slot + 1
        };
        let Some(leaving) = self.position_of_slot(tag) else {
            // Unreachable (every slot below the length is tagged once); renumber rather than
            // panic.
            self.retag();
            return;
        };
        let oldest = self.sorted[leaving];
        // Values are finite, so `<` orders them; equal values are interchangeable: the first of
        // the oldest value's equals leaves, carrying the oldest value's slot.
        let mut old = leaving;
        while old > 0 && self.sorted[old - 1] == oldest {
            old -= 1;
        }
        self.slots.swap(leaving, old);
        let new = self.rank(value);
        // Replace the oldest value by the new one, moving only the values between them.
        let placed = if new <= old {
            self.sorted.copy_within(new..old, new + 1);
            self.slots.copy_within(new..old, new + 1);
            new
        } else {
            self.sorted.copy_within(old + 1..new, old);
            self.slots.copy_within(old + 1..new, old);
            new - 1
        };
        self.sorted[placed] = value;
        self.slots[placed] = tag;
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

    /// Returns the sorted index of the value in arrival slot `slot`. Counted in one branch-free
    /// pass over the small array of slots (the compiler vectorises it; the window is usually
    /// cold, and this touches a few cache lines where a second copy of the values took many).
    fn position_of_slot(&self, slot: u16) -> Option<usize> {
        // Each slot is tagged once: OR-ing the masked indices (positions fit in u16, as slots
        // do) yields the one that matches, checked below.
        let mut position = 0u16;
        for (index, &probe) in self.slots.iter().enumerate() {
            position |= (index as u16) & u16::from(probe == slot).wrapping_neg();
        }
        let position = usize::from(position);
        (self.slots.get(position) == Some(&slot)).then_some(position)
    }

    /// Returns how many sorted values lie below `value` (its insertion point). In a small
    /// window, one quarter is counted in a branch-free pass the compiler vectorises: its cache
    /// lines load in parallel, where the dependent loads of a binary search wait for one
    /// another (the window is usually cold: one series among many). A large one is searched.
    fn rank(&self, value: f64) -> usize {
        let n = self.sorted.len();
        if n > LINEAR_RANK_MAX || n == 0 {
            return self.sorted.partition_point(|&probe| probe < value);
        }
        // The quartiles (just read by `stats`, so at hand) tell which quarter the rank falls
        // in, without a branch: the values up to the last quartile below `value` are all below
        // it, those from the first quartile not below it are all at least it. Only that
        // quarter is counted: a quarter of the loads and compares (and of the cache lines),
        // and as many every time (when the length is a multiple of 4, as the default 64 is), so
        // the loop's exit is predicted.
        let below_quartile = |quartile: usize| usize::from(self.sorted[quartile] < value);
        let quarter = below_quartile(n / 4) + below_quartile(n / 2) + below_quartile((3 * n) / 4);
        // The quarter's bounds: 0, n / 4, n / 2, 3n / 4 and n, rounded down like the quartiles.
        let (start, end) = ((quarter * n) / 4, ((quarter + 1) * n) / 4);
        let mut below = start;
        for &probe in self.sorted.get(start..end).unwrap_or_default() {
            below += usize::from(probe < value);
        }
        below
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

    /// Sorts the values again after they were moved (each keeping its slot), and recomputes
    /// the half sums.
    fn resort(&mut self) {
        let mut pairs: Vec<(f64, u16)> = self
            .sorted
            .iter()
            .copied()
            .zip(self.slots.iter().copied())
            .collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        for ((value, slot), (sorted, slotted)) in pairs
            .into_iter()
            .zip(self.sorted.iter_mut().zip(&mut self.slots))
        {
            *sorted = value;
            *slotted = slot;
        }
        self.resum();
    }

    /// Gives every value a distinct slot again, oldest first in sorted order (a fallback for a
    /// broken invariant: arrival order is lost, the values are kept).
    fn retag(&mut self) {
        for (slot, tag) in self.slots.iter_mut().enumerate() {
            *tag = slot as u16;
        }
        self.next_slot = 0;
        self.resum();
    }

    /// Returns the number of slots back from the newest (1 for the newest) of slot `slot`.
    fn age_of_slot(&self, slot: usize) -> usize {
        let len = self.sorted.len();
        // The newest value sits in the slot just before `next_slot` (or the last one filled).
        let newest = if len < self.capacity {
            len - 1
        } else {
            (self.next_slot + len - 1) % len
        };
        (newest + len - slot) % len + 1
    }

    /// Returns the values in arrival order, oldest first.
    pub(crate) fn in_arrival_order(&self) -> Vec<f64> {
        let len = self.sorted.len();
        let mut ordered = vec![0.0; len];
        for (&value, &slot) in self.sorted.iter().zip(&self.slots) {
            let back = self.age_of_slot(usize::from(slot));
            if let Some(place) = ordered.get_mut(len - back) {
                *place = value;
            }
        }
        ordered
    }

    /// Returns the most recent values, newest first (at most `count`).
    pub(crate) fn newest(&self, count: usize) -> impl Iterator<Item = f64> + use<> {
        let mut ordered = self.in_arrival_order();
        ordered.reverse();
        ordered.truncate(count);
        ordered.into_iter()
    }

    /// Adds `offset` to every value except the `keep` newest ones (a level shift of the past).
    pub(crate) fn shift_older(&mut self, offset: f64, keep: usize) {
        for index in 0..self.sorted.len() {
            if self.age_of_slot(usize::from(self.slots[index])) > keep {
                self.sorted[index] += offset;
            }
        }
        self.resort();
    }

    /// Moves every value into the other seasonal frame: subtracts its offset (`deseasonalise`,
    /// raw values become deseasonalised ones) or adds it back, so a switch of the seasonal
    /// profile keeps the window instead of emptying it.
    pub(crate) fn reframe(&mut self, deseasonalise: bool) {
        // Without offsets (all 0) the values stay; the sums are still recomputed exactly.
        if !self.offsets.is_empty() {
            let sign = if deseasonalise { -1.0 } else { 1.0 };
            for (value, &slot) in self.sorted.iter_mut().zip(&self.slots) {
                let offset = self.offsets.get(usize::from(slot)).copied().unwrap_or(0.0);
                *value += sign * f64::from(offset);
            }
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

    /// One step of a 64-bit linear congruential generator (deterministic test data).
    fn next_state(state: &mut u64) {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }

    /// The top 53 bits of `state` as a value in [0, 1).
    fn unit(state: u64) -> f64 {
        (state >> 11) as f64 / (1u64 << 53) as f64
    }

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

    /// Returns the `capacity` last values of `pushed`, oldest first.
    fn last(pushed: &[f64], capacity: usize) -> Vec<f64> {
        pushed[pushed.len().saturating_sub(capacity)..].to_vec()
    }

    #[test]
    fn push_keeps_the_last_values_sorted_and_in_arrival_order() {
        let mut window = RobustWindow::new(7);
        let mut pushed = Vec::new();
        let mut state = 12345u64;
        for _ in 0..500 {
            next_state(&mut state);
            let value = ((state >> 33) % 10) as f64;
            window.push(value);
            pushed.push(value);
            let in_order = last(&pushed, 7);
            assert_eq!(window.in_arrival_order(), in_order);
            let mut expected = in_order;
            expected.sort_by(f64::total_cmp);
            assert_eq!(window.sorted, expected);
        }
    }

    #[test]
    fn ranks_and_slots_hold_whether_counted_or_searched() {
        // 64 values take the counting path, 300 the binary search; many repeats.
        for capacity in [64, LINEAR_RANK_MAX + 44] {
            let mut window = RobustWindow::new(capacity);
            let mut pushed = Vec::new();
            let mut state = 99u64;
            for _ in 0..3 * capacity {
                next_state(&mut state);
                let value = ((state >> 33) % 50) as f64 - 25.0;
                window.push(value);
                pushed.push(value);
                let in_order = last(&pushed, capacity);
                assert_eq!(window.in_arrival_order(), in_order);
                let mut expected = in_order;
                expected.sort_by(f64::total_cmp);
                assert_eq!(window.sorted, expected);
            }
            for probe in [-30.0, -25.0, 0.0, 0.5, 24.0, 30.0] {
                let below = window.sorted.iter().filter(|&&v| v < probe).count();
                assert_eq!(window.rank(probe), below);
            }
            let mut slots = window.slots.clone();
            slots.sort_unstable();
            assert!(slots.iter().copied().eq(0..capacity as u16));
        }
    }

    #[test]
    fn rank_counted_in_one_quarter_is_the_count_of_smaller_values() {
        // Every length up to a few quarters and one with uneven quarters, many ties, probes
        // below, between, on and above the values.
        for capacity in (1..=13).chain([64, 67]) {
            let mut window = RobustWindow::new(capacity);
            let mut state = 7u64;
            for _ in 0..3 * capacity {
                next_state(&mut state);
                window.push(((state >> 33) % 6) as f64);
                for probe in [-1.0, 0.0, 0.5, 1.0, 2.5, 3.0, 5.0, 5.5, 9.0] {
                    let below = window.sorted.iter().filter(|&&v| v < probe).count();
                    assert_eq!(window.rank(probe), below, "capacity {capacity}, {probe}");
                }
            }
        }
        assert_eq!(RobustWindow::new(4).rank(1.0), 0);
    }

    /// The window as it was kept before the arrival slots: a ring of values plus a sorted copy,
    /// with the same running half sums. Scores depend on the sorted values and the sums only.
    struct RingWindow {
        capacity: usize,
        ring: Vec<f64>,
        next: usize,
        sorted: Vec<f64>,
        low_sum: f64,
        high_sum: f64,
        since_resum: u32,
    }

    impl RingWindow {
        fn resum(&mut self) {
            let (n, half) = (self.sorted.len(), self.sorted.len() / 2);
            self.low_sum = self.sorted[..half].iter().sum();
            self.high_sum = self.sorted[n - half..].iter().sum();
            self.since_resum = 0;
        }

        fn push(&mut self, value: f64) {
            if self.ring.len() < self.capacity {
                self.ring.push(value);
                let position = self.sorted.partition_point(|&probe| probe < value);
                self.sorted.insert(position, value);
                self.resum();
                return;
            }
            let oldest = std::mem::replace(&mut self.ring[self.next], value);
            self.next = (self.next + 1) % self.capacity;
            let old = self.sorted.iter().filter(|&&v| v < oldest).count();
            let new = self.sorted.iter().filter(|&&v| v < value).count();
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
            let (n, half) = (self.sorted.len(), self.sorted.len() / 2);
            if half > 0 {
                match (old < half, placed < half) {
                    (true, true) => self.low_sum += value - oldest,
                    (true, false) => self.low_sum += self.sorted[half - 1] - oldest,
                    (false, true) => self.low_sum += value - self.sorted[half],
                    (false, false) => {}
                }
                let start = n - half;
                match (old >= start, placed >= start) {
                    (true, true) => self.high_sum += value - oldest,
                    (true, false) => self.high_sum += self.sorted[start] - oldest,
                    (false, true) => self.high_sum += value - self.sorted[start - 1],
                    (false, false) => {}
                }
            }
            let scale = (self.low_sum.abs() + self.high_sum.abs()) / n as f64;
            if self.since_resum >= RESUM_EVERY || oldest.abs() > 1024.0 * scale {
                self.resum();
            }
        }

        fn shift_older(&mut self, offset: f64, keep: usize) {
            let len = self.ring.len();
            let newest = if len < self.capacity {
                len
            } else {
                self.next + len
            };
            for back in keep + 1..=len {
                self.ring[(newest - back) % len] += offset;
            }
            self.sorted.clear();
            self.sorted.extend_from_slice(&self.ring);
            self.sorted.sort_by(f64::total_cmp);
            self.resum();
        }
    }

    #[test]
    fn sorted_values_and_half_sums_are_bit_for_bit_those_of_a_ring_plus_sorted_copy() {
        // Many ties (the leaving value is one of several equals), rare huge values (resums),
        // level shifts of the older values; a window filling up and then full.
        for capacity in [4, 7, 64, LINEAR_RANK_MAX + 44] {
            let mut window = RobustWindow::new(capacity);
            let mut reference = RingWindow {
                capacity,
                ring: Vec::new(),
                next: 0,
                sorted: Vec::new(),
                low_sum: 0.0,
                high_sum: 0.0,
                since_resum: 0,
            };
            let mut state = 4242u64;
            for i in 0..6000 {
                next_state(&mut state);
                let uniform = unit(state);
                let value = match i % 89 {
                    0 => 3e11,
                    1..=30 => ((state >> 40) % 4) as f64,
                    _ => uniform * 0.3 - 0.1,
                };
                window.push(value);
                reference.push(value);
                if i % 500 == 499 {
                    window.shift_older(0.7, capacity / 2);
                    reference.shift_older(0.7, capacity / 2);
                }
                assert_eq!(
                    window.sorted, reference.sorted,
                    "capacity {capacity}, push {i}"
                );
                assert_eq!(
                    (window.low_sum.to_bits(), window.high_sum.to_bits()),
                    (reference.low_sum.to_bits(), reference.high_sum.to_bits()),
                    "capacity {capacity}, push {i}"
                );
            }
        }
    }

    #[test]
    fn offsets_are_kept_only_once_one_is_not_zero() {
        let mut window = RobustWindow::new(8);
        for value in [1.0, 2.0, 3.0] {
            window.push(value);
        }
        assert_eq!(window.heap_bytes(), RobustWindow::heap_bytes_for(8, false));
        window.push_with_offset(4.0, 2.0);
        assert_eq!(window.heap_bytes(), RobustWindow::heap_bytes_for(8, true));
        // Only the value that came with an offset moves.
        window.reframe(true);
        assert_eq!(window.in_arrival_order(), [1.0, 2.0, 3.0, 2.0]);
        window.clear();
        window.push(5.0);
        window.reframe(true);
        assert_eq!(window.sorted(), [5.0]);
    }

    #[test]
    fn running_half_sums_give_the_mean_absolute_deviation() {
        for capacity in [4, 7, 64] {
            let mut window = RobustWindow::new(capacity);
            let mut state = 987u64;
            for i in 0..5000 {
                next_state(&mut state);
                let uniform = unit(state);
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
