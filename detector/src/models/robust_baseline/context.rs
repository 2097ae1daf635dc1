//! Time-of-day context: how far the series has recently gone at the same phase of the period.
//!
//! The period (a day by default) is cut into phase bins like the seasonal profile. Each bin keeps,
//! per side, the two largest calibrated |z| of the points that fell in it, decaying by half every
//! `half_life_periods` visits of the bin. A deviation is compared with the largest one kept in
//! its bin and the `tolerance` bins on either side (so a daily job that runs a few minutes early
//! or late still finds its earlier runs): when the series has gone as far at this time of day
//! before, the deviation is scored relative to that, `z' = Z_FLOOR * z / z_context`, so a
//! recurrence of the same size scores 0 and a deviation twice as large as any seen at this
//! phase still scores like z = 6.
//!
//! Unlike the seasonal profile (a mean offset per bin, which a jittering short spike barely
//! moves), this keeps the extremes, and it is in use whether or not the profile is switched on.
//!
//! Only a recurrence counts: the reference is the *second* largest deviation kept near the phase,
//! so one earlier incident at the same time of day does not mute the next one.
//!
//! Storage: four `u8` per bin (the two largest per side), the base-2 logarithm of |z| in 1/16
//! octave steps (4.4%, |z| from 1 up to about 60,000), so a day of 288 bins costs 1,152 bytes;
//! the decay is a subtraction. An inline bitmap of the bins that keep anything (up to 512 bins)
//! lets an ordinary point in an empty bin skip the array: without it, that cache miss was 9% of
//! the bank's time on a 1,000-series profile, with it 2%.

/// Steps of the logarithmic code per doubling of |z|.
const CODE_PER_OCTAVE: f64 = 16.0;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PhaseContext {
    period_ms: i64,
    bins_per_ms: f64,
    /// Per bin and side (above, below), the codes of the two largest recent calibrated |z|:
    /// `[up_first, up_second, down_first, down_second]`.
    codes: Vec<[u8; 4]>,
    /// Code subtracted at each visit of a bin (the decay).
    decay_code: u8,
    tolerance: usize,
    /// Bit per bin (up to `OCCUPANCY_BINS` bins): whether it keeps anything. Inline, beside
    /// the fields every point reads, so an ordinary point in an empty bin (most points) does
    /// not touch the array.
    occupied: [u64; OCCUPANCY_WORDS],
}

/// Words of the inline occupancy bitmap; a context of more bins than it covers touches the
/// array for every point.
const OCCUPANCY_WORDS: usize = 8;

fn encode(abs_z: f64) -> u8 {
    if abs_z <= 1.0 {
        return 0;
    }
    (abs_z.log2() * CODE_PER_OCTAVE)
        .round()
        .min(f64::from(u8::MAX)) as u8
}

fn decode(code: u8) -> f64 {
    if code == 0 {
        return 0.0;
    }
    (f64::from(code) / CODE_PER_OCTAVE).exp2()
}

impl PhaseContext {
    /// Returns an empty context of `bins` phase bins over `period_ms`, compared within
    /// `tolerance` bins, forgetting with `half_life_periods` visits per bin.
    pub(crate) fn new(
        period_ms: i64,
        bins: usize,
        tolerance: usize,
        half_life_periods: f64,
    ) -> Self {
        let decay = (CODE_PER_OCTAVE / half_life_periods)
            .round()
            .clamp(1.0, 255.0);
        PhaseContext {
            period_ms,
            bins_per_ms: bins as f64 / period_ms as f64,
            codes: vec![[0; 4]; bins],
            decay_code: decay as u8,
            tolerance: tolerance.min(bins / 2),
            occupied: [0; OCCUPANCY_WORDS],
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.codes.capacity() * size_of::<[u8; 4]>()
    }

    fn bin(&self, timestamp_ms: i64) -> usize {
        let phase = timestamp_ms.rem_euclid(self.period_ms) as f64;
        ((phase * self.bins_per_ms) as usize).min(self.codes.len() - 1)
    }

    /// Returns how far the series went on the side of `z` near the phase of `timestamp_ms` at
    /// least twice: the second largest calibrated |z| kept within the tolerance (0 when none).
    /// One earlier excursion at this time of day is not a recurrence; two are.
    pub(crate) fn reach(&self, timestamp_ms: i64, z: f64) -> f64 {
        let bins = self.codes.len();
        let centre = self.bin(timestamp_ms);
        let side = 2 * usize::from(z < 0.0);
        let (mut first, mut second) = (0, 0);
        for step in 0..=2 * self.tolerance {
            let codes = &self.codes[(centre + bins + step - self.tolerance) % bins];
            for &code in &codes[side..side + 2] {
                if code > first {
                    second = first;
                    first = code;
                } else if code > second {
                    second = code;
                }
            }
        }
        decode(second)
    }

    /// Returns `z` rescaled against the context when the series has recurrently reached beyond
    /// `z_floor` near this phase: `z_floor * |z| / reach`; else `|z|`.
    pub(crate) fn contextual_z(&self, timestamp_ms: i64, z: f64, z_floor: f64) -> f64 {
        let reach = self.reach(timestamp_ms, z);
        if reach > z_floor {
            (z_floor * z.abs() / reach).min(z.abs())
        } else {
            z.abs()
        }
    }

    /// Learns a point of calibrated z `z` at `timestamp_ms`: its bin's kept extremes decay by
    /// one visit, then |z| takes its place among the two largest of its side if it exceeds
    /// `z_floor` (only a reach beyond it is ever used). A bin with nothing kept and an ordinary
    /// point, by far the most common case, costs only the bin lookup.
    #[cfg(test)]
    pub(crate) fn learn(&mut self, timestamp_ms: i64, z: f64, z_floor: f64) {
        self.learn_in_bin(self.bin(timestamp_ms), z, z_floor);
    }

    /// [`PhaseContext::learn`] with the phase bin already known (the season's bins are the
    /// same).
    pub(crate) fn learn_in_bin(&mut self, bin: usize, z: f64, z_floor: f64) {
        let bin = bin.min(self.codes.len() - 1);
        let notable = z.abs() > z_floor;
        let (word, bit) = (bin / 64, 1u64 << (bin % 64));
        let tracked = word < OCCUPANCY_WORDS;
        if !notable && tracked && self.occupied[word] & bit == 0 {
            return;
        }
        let codes = &mut self.codes[bin];
        let decay = self.decay_code;
        for code in codes.iter_mut() {
            *code = code.saturating_sub(decay);
        }
        if !notable {
            if tracked && *codes == [0; 4] {
                self.occupied[word] &= !bit;
            }
            return;
        }
        if tracked {
            self.occupied[word] |= bit;
        }
        let side = 2 * usize::from(z < 0.0);
        let code = encode(z.abs());
        if code > codes[side] {
            codes[side + 1] = codes[side];
            codes[side] = code;
        } else if code > codes[side + 1] {
            codes[side + 1] = code;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE_MS: i64 = 60_000;
    const DAY_MS: i64 = 1440 * MINUTE_MS;

    #[test]
    fn code_round_trips_within_three_percent() {
        for z in [1.5, 3.0, 6.0, 42.0, 30_000.0] {
            let back = decode(encode(z));
            assert!((back / z - 1.0).abs() < 0.03, "{z} -> {back}");
        }
        assert_eq!(decode(encode(0.5)), 0.0);
    }

    #[test]
    fn a_spike_recurring_a_few_bins_off_is_scored_against_the_earlier_ones() {
        let mut context = PhaseContext::new(DAY_MS, 288, 3, 7.0);
        // A z = 12 spike at 03:00 on day 0: one excursion is no context yet.
        context.learn(180 * MINUTE_MS, 12.0, 3.0);
        assert_eq!(
            context.contextual_z(DAY_MS + 190 * MINUTE_MS, 12.0, 3.0),
            12.0
        );
        // Again 5 minutes earlier on day 1: on day 2, 10 minutes late, it is a recurrence.
        context.learn(DAY_MS + 175 * MINUTE_MS, 12.0, 3.0);
        let spike = 2 * DAY_MS + 190 * MINUTE_MS;
        assert!(context.contextual_z(spike, 12.0, 3.0) < 3.5);
        // Twice as large still reaches z = 6; a dip, another phase, or a spike beyond the
        // tolerance keep their z.
        let doubled = context.contextual_z(spike, 24.0, 3.0);
        assert!((doubled - 6.0).abs() < 0.2, "{doubled}");
        assert_eq!(context.contextual_z(spike, -12.0, 3.0), 12.0);
        assert_eq!(
            context.contextual_z(2 * DAY_MS + 600 * MINUTE_MS, 12.0, 3.0),
            12.0
        );
        assert_eq!(
            context.contextual_z(2 * DAY_MS + 200 * MINUTE_MS, 12.0, 3.0),
            12.0
        );
        // Across midnight the tolerance wraps.
        context.learn(DAY_MS - 5 * MINUTE_MS, 9.0, 3.0);
        context.learn(2 * DAY_MS - 10 * MINUTE_MS, 9.0, 3.0);
        assert!(context.contextual_z(3 * DAY_MS + 5 * MINUTE_MS, 9.0, 3.0) < 3.5);
    }

    #[test]
    fn kept_extremes_halve_every_half_life_of_visits() {
        let mut context = PhaseContext::new(DAY_MS, 24, 0, 2.0);
        context.learn(0, 16.0, 3.0);
        context.learn(DAY_MS, 16.0, 3.0);
        context.learn(2 * DAY_MS, 0.0, 3.0);
        context.learn(3 * DAY_MS, 0.0, 3.0);
        // The second largest is the first 16, which has seen three later visits since: halved
        // one and a half times.
        let reach = context.reach(4 * DAY_MS, 1.0);
        assert!((reach - 16.0 * 0.5f64.powf(1.5)).abs() < 0.05, "{reach}");
    }

    #[test]
    fn occupancy_follows_what_the_bins_keep() {
        let mut context = PhaseContext::new(DAY_MS, 24, 0, 1.0);
        // 4 = two octaves = 32 codes; a half-life of one visit removes 16 per visit.
        context.learn(5 * DAY_MS / 24, 4.0, 3.0);
        assert_eq!(context.occupied[0], 1 << 5);
        context.learn(DAY_MS + 5 * DAY_MS / 24, 0.0, 3.0);
        assert_eq!(context.occupied[0], 1 << 5);
        context.learn(2 * DAY_MS + 5 * DAY_MS / 24, 0.0, 3.0);
        assert_eq!(context.occupied[0], 0);
        assert_eq!(context.codes[5], [0; 4]);
        // Bins beyond the bitmap are kept and found all the same.
        let mut wide = PhaseContext::new(DAY_MS, 1440, 0, 7.0);
        wide.learn(1000 * MINUTE_MS, 12.0, 3.0);
        wide.learn(DAY_MS + 1000 * MINUTE_MS, 12.0, 3.0);
        assert!(wide.contextual_z(2 * DAY_MS + 1000 * MINUTE_MS, 12.0, 3.0) < 3.5);
    }
}
