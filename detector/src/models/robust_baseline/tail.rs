//! Calibration of robust z-scores to the series' own tails.
//!
//! The robust window estimates the spread of ordinary points; series with heavy tails (bursty
//! counts, spiky utilisation) routinely produce z-scores of 10 or more that are nothing new. Each
//! side (above and below the typical value) keeps a histogram of the |z| the series produced,
//! with log-spaced bins (a factor `sqrt(2)` apart, from 2 up) and exponentially decaying counts
//! (half-life `half_life_points`). The empirical `quantile` of |z| on that side is compared with
//! what Gaussian noise would give at the same level: when the series' tail is heavier, z-scores
//! on that side are divided by the ratio, so a deviation must be rare for this series, not only
//! far from its typical spread. Until enough points are seen the quantile level is raised to two
//! points' worth, so the calibration starts early and sharpens as history builds up.
//!
//! Cost: the decay is applied to the bins every `DECAY_EVERY` points (new points get the
//! compensating weight meanwhile), and each side's factor is recomputed only when its bins change.

/// Bins per side; bin `k` holds |z| in `[2^(k/2 + 1), 2^((k+1)/2 + 1))`, the last one everything
/// above. |z| below 2 is only counted in the total.
const BINS: usize = 40;

/// |z| at the lower edge of the first bin.
const FIRST_EDGE: f64 = 2.0;

/// Points between two applications of the decay to the bins.
const DECAY_EVERY: u32 = 64;

#[derive(Debug, Clone, PartialEq)]
// Laid out in declaration order: the fields every point reads or writes first, the bins
// (touched by a point in the tail and every `DECAY_EVERY` points) after them.
#[repr(C)]
pub(crate) struct TailHistogram {
    /// Factors of each side, as of the last change of its bins.
    inflation_up: f64,
    inflation_down: f64,
    /// Decayed count of every point (both sides and the centre).
    total: f64,
    /// Points since the decay was last applied, and the weight of a new point meanwhile.
    weight: f64,
    pending: u32,
    up: [f32; BINS],
    down: [f32; BINS],
}

/// Returns the bin of |z| >= FIRST_EDGE.
fn bin_of(abs_z: f64) -> usize {
    let position = 2.0 * (abs_z / FIRST_EDGE).log2();
    (position as usize).min(BINS - 1)
}

/// Returns the lower edge of bin `k`.
fn lower_edge(k: usize) -> f64 {
    FIRST_EDGE * 2f64.powf(k as f64 / 2.0)
}

impl TailHistogram {
    pub(crate) fn new() -> Self {
        TailHistogram {
            up: [0.0; BINS],
            down: [0.0; BINS],
            total: 0.0,
            pending: 0,
            weight: 1.0,
            inflation_up: 1.0,
            inflation_down: 1.0,
        }
    }

    /// Returns the factor (>= 1) a z-score of this sign is divided by: the empirical quantile of
    /// |z| on its side over the Gaussian one, at level `max(quantile, 2 / total)`.
    pub(crate) fn inflation(&self, z: f64) -> f64 {
        if z >= 0.0 {
            self.inflation_up
        } else {
            self.inflation_down
        }
    }

    fn compute_inflation(&self, up: bool, quantile: f64) -> f64 {
        if self.total <= 0.0 {
            return 1.0;
        }
        let level = quantile.max(2.0 / self.total).min(0.5);
        let side = if up { &self.up } else { &self.down };
        let budget = level * self.total;
        let mut above = 0.0;
        for k in (0..BINS).rev() {
            let count = f64::from(side[k]);
            if above + count > budget {
                // The quantile lies in bin k: interpolate log-linearly from its upper edge.
                let fraction = (budget - above) / count;
                let (low, high) = (lower_edge(k), lower_edge(k + 1));
                let empirical = high * (low / high).powf(1.0 - fraction);
                return (empirical / gaussian_upper_quantile(level)).max(1.0);
            }
            above += count;
        }
        1.0
    }

    /// Returns how many earlier points (decayed) lay at least as far out as `z` on its side, and
    /// their share of every point: the series' own tail probability of `z`. Within a bin the
    /// points are taken as spread log-uniformly; |z| below the first bin edge returns the total.
    pub(crate) fn survival(&self, z: f64) -> (f64, f64) {
        if self.total <= 0.0 || z.is_nan() {
            return (0.0, 0.0);
        }
        let abs_z = z.abs();
        if abs_z < FIRST_EDGE {
            return (self.total / self.weight, 1.0);
        }
        let side = if z >= 0.0 { &self.up } else { &self.down };
        let bin = bin_of(abs_z);
        let mut above: f64 = side[bin + 1..].iter().map(|&count| f64::from(count)).sum();
        if bin + 1 < BINS {
            let (low, high) = (lower_edge(bin), lower_edge(bin + 1));
            let share_above = ((high / abs_z).ln() / (high / low).ln()).clamp(0.0, 1.0);
            above += f64::from(side[bin]) * share_above;
        }
        (above / self.weight, (above / self.total).min(1.0))
    }

    /// Counts a raw z-score; `keep` is the decay of the history per point (`0.5^(1 /
    /// half-life)`), `quantile` the calibration level.
    pub(crate) fn learn(&mut self, z: f64, keep: f64, quantile: f64) {
        if z.is_nan() {
            return;
        }
        self.pending += 1;
        self.weight /= keep;
        self.total += self.weight;
        let abs_z = z.abs();
        let (mut refresh_up, mut refresh_down) = (false, false);
        if abs_z >= FIRST_EDGE {
            if z >= 0.0 {
                self.up[bin_of(abs_z)] += self.weight as f32;
                refresh_up = true;
            } else {
                self.down[bin_of(abs_z)] += self.weight as f32;
                refresh_down = true;
            }
        }
        if self.pending >= DECAY_EVERY {
            let factor = 1.0 / self.weight;
            self.total *= factor;
            let factor = factor as f32;
            for count in self.up.iter_mut().chain(self.down.iter_mut()) {
                *count *= factor;
            }
            self.pending = 0;
            self.weight = 1.0;
            (refresh_up, refresh_down) = (true, true);
        }
        if refresh_up {
            self.inflation_up = self.compute_inflation(true, quantile);
        }
        if refresh_down {
            self.inflation_down = self.compute_inflation(false, quantile);
        }
    }
}

/// Returns the z with `P(Z > z) = upper` for a standard normal `Z` (`upper` in (0, 0.5]):
/// Acklam's rational approximation (relative error below 1.2e-9).
pub(crate) fn gaussian_upper_quantile(upper: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = upper.clamp(1e-300, 0.5);
    if p < 0.02425 {
        let q = (-2.0 * p.ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else {
        let q = 0.5 - p;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(half_life_points: f64) -> f64 {
        0.5f64.powf(1.0 / half_life_points)
    }

    #[test]
    fn gaussian_quantiles() {
        assert!((gaussian_upper_quantile(0.5)).abs() < 1e-9);
        assert!((gaussian_upper_quantile(0.025) - 1.959_964).abs() < 1e-5);
        assert!((gaussian_upper_quantile(0.005) - 2.575_829).abs() < 1e-5);
        assert!((gaussian_upper_quantile(1e-6) - 4.753_424).abs() < 1e-5);
    }

    #[test]
    fn heavy_tail_on_one_side_inflates_that_side_only() {
        let mut tail = TailHistogram::new();
        for i in 0..4000 {
            let z = if i % 20 == 0 { 40.0 } else { 0.5 };
            tail.learn(z, keep(1e9), 0.005);
        }
        let up = tail.inflation(1.0);
        assert!(up > 10.0 && up < 25.0, "{up}");
        assert_eq!(tail.inflation(-1.0), 1.0);
    }

    #[test]
    fn gaussian_like_history_leaves_scores_alone() {
        let mut tail = TailHistogram::new();
        for i in 0..4000 {
            // About 0.25% of points at z = 2.1, below the Gaussian quantile 2.58.
            tail.learn(if i % 400 == 0 { 2.1 } else { 0.3 }, keep(1e9), 0.005);
        }
        assert_eq!(tail.inflation(1.0), 1.0);
    }

    #[test]
    fn survival_counts_earlier_points_at_least_as_far_out() {
        let mut tail = TailHistogram::new();
        for i in 0..1000 {
            tail.learn(if i % 100 == 0 { 20.0 } else { 0.5 }, keep(1e9), 0.005);
        }
        let (count, probability) = tail.survival(10.0);
        assert!((count - 10.0).abs() < 1e-3, "{count}");
        assert!((probability - 0.01).abs() < 1e-6, "{probability}");
        assert_eq!(tail.survival(-10.0).0, 0.0);
        assert!(tail.survival(100.0).0 < 1e-9);
        let (count, probability) = tail.survival(1.0);
        assert!(
            (count - 1000.0).abs() < 1e-2 && probability == 1.0,
            "{count}"
        );
    }

    #[test]
    fn old_extremes_are_forgotten() {
        let mut tail = TailHistogram::new();
        for i in 0..1000 {
            tail.learn(if i % 10 == 0 { 50.0 } else { 0.1 }, keep(100.0), 0.005);
        }
        assert!(tail.inflation(1.0) > 5.0);
        for _ in 0..3000 {
            tail.learn(0.1, keep(100.0), 0.005);
        }
        assert_eq!(tail.inflation(1.0), 1.0);
        tail.learn(f64::NAN, keep(100.0), 0.005);
    }
}
