//! State, scoring and drift test of the embedding monitor.

use linfa::ParamGuard;

use super::error::EmbeddingDriftError;
use super::hyperparams::{EmbeddingDriftParams, EmbeddingDriftValidParams};
use crate::score::{Deviation, Score};

/// Ratio of the standard deviation to the MAD for Gaussian noise.
const MAD_TO_SIGMA: f64 = 1.4826;

/// Dimensions listed in a drift report.
const TOP_DIMENSIONS: usize = 5;

/// Movement of one dimension between the reference and the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DimensionShift {
    /// Index of the dimension.
    pub dimension: usize,
    /// Mean of the window minus mean of the reference, in reference standard deviations.
    pub shift: f64,
}

/// Result of comparing a full window with the reference population.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftReport {
    /// Unbiased squared maximum mean discrepancy between window and reference.
    pub mmd2: f64,
    /// Share of permutations at least as discrepant (with the observed one counted).
    pub p_value: f64,
    /// `mmd2` as a z-score against the permutation distribution.
    pub z: f64,
    /// Drift score in 0..=100 (the shared normalisation of `z`).
    pub score: f64,
    /// The dimensions whose means moved most, largest first.
    pub shifts: Vec<DimensionShift>,
}

/// What the monitor says about one vector.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingAssessment {
    /// The vector's nearest-neighbour distance against the reference population (`None` until
    /// the reference holds enough vectors); its score is [`Score::from_deviation`].
    pub outlier: Option<Deviation>,
    /// The drift report, when this vector completed a window.
    pub drift: Option<DriftReport>,
}

/// The embedding monitor of one stream (see the [module docs](super)).
///
/// ```
/// use linfa::ParamGuard;
/// use pipewarden_detector::Score;
/// use pipewarden_detector::models::embedding_drift::EmbeddingDrift;
///
/// let params = EmbeddingDrift::params(2).reference_points(32).window_points(8).check()?;
/// let mut monitor = EmbeddingDrift::new(params);
/// for i in 0..64 {
///     let angle = i as f64;
///     monitor.observe(&[angle.cos(), angle.sin()])?;
/// }
/// let far = monitor.observe(&[8.0, 8.0])?.outlier.expect("the reference is full");
/// assert!(Score::from_deviation(&far).value() > 90.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingDrift {
    params: EmbeddingDriftValidParams,
    /// Reference vectors, row after row (a ring once full).
    reference: Vec<f64>,
    reference_len: usize,
    reference_next: usize,
    /// Vectors of the current window, row after row.
    window: Vec<f64>,
    /// Median and scale of the reference's own nearest-neighbour distances.
    calibration: Option<(f64, f64)>,
    windows_tested: u64,
}

impl EmbeddingDrift {
    /// Returns the default parameters for vectors of `dimensions` dimensions (see
    /// [`EmbeddingDriftParams::new`]).
    pub fn params(dimensions: usize) -> EmbeddingDriftParams {
        EmbeddingDriftParams::new(dimensions)
    }

    /// Returns an empty monitor.
    pub fn new(params: EmbeddingDriftValidParams) -> Self {
        EmbeddingDrift {
            reference: Vec::with_capacity(params.reference_points * params.dimensions),
            window: Vec::with_capacity(params.window_points * params.dimensions),
            params,
            reference_len: 0,
            reference_next: 0,
            calibration: None,
            windows_tested: 0,
        }
    }

    /// Returns the number of reference vectors held.
    pub fn reference_len(&self) -> usize {
        self.reference_len
    }

    /// Returns the heap bytes held.
    pub fn approx_heap_bytes(&self) -> usize {
        (self.reference.capacity() + self.window.capacity()) * size_of::<f64>()
    }

    /// Scores `vector` against the reference population, then absorbs it (and runs the drift
    /// test when it completes a window).
    ///
    /// # Errors
    /// When the vector has the wrong number of dimensions or a non-finite value (it is then
    /// ignored).
    pub fn observe(&mut self, vector: &[f64]) -> Result<EmbeddingAssessment, EmbeddingDriftError> {
        let dimensions = self.params.dimensions;
        if vector.len() != dimensions {
            return Err(EmbeddingDriftError::Dimensions {
                expected: dimensions,
                actual: vector.len(),
            });
        }
        if vector.iter().any(|x| !x.is_finite()) {
            return Err(EmbeddingDriftError::NonFinite);
        }
        let outlier = self.calibration.map(|(median, scale)| {
            let distance = self.neighbour_distance(vector, None);
            Deviation {
                actual: distance,
                typical: median,
                scale,
                z: ((distance - median) / scale).max(0.0),
            }
        });
        let mut drift = None;
        if self.reference_len < self.params.reference_points {
            self.reference.extend_from_slice(vector);
            self.reference_len += 1;
            if self.reference_len == self.params.reference_points {
                self.calibrate();
            }
        } else {
            self.window.extend_from_slice(vector);
            if self.window.len() == self.params.window_points * dimensions {
                drift = Some(self.test_drift());
                self.promote_window();
                self.calibrate();
            }
        }
        Ok(EmbeddingAssessment { outlier, drift })
    }

    fn row(data: &[f64], dimensions: usize, index: usize) -> &[f64] {
        &data[index * dimensions..(index + 1) * dimensions]
    }

    /// Returns the mean distance of `vector` to its nearest reference vectors (skipping the
    /// reference vector `skip`, when scoring the reference itself).
    fn neighbour_distance(&self, vector: &[f64], skip: Option<usize>) -> f64 {
        let dimensions = self.params.dimensions;
        let mut distances: Vec<f64> = (0..self.reference_len)
            .filter(|&index| Some(index) != skip)
            .map(|index| distance(vector, Self::row(&self.reference, dimensions, index)))
            .collect();
        let neighbours = self.params.neighbours.min(distances.len()).max(1);
        if distances.is_empty() {
            return 0.0;
        }
        distances.select_nth_unstable_by(neighbours - 1, f64::total_cmp);
        distances[..neighbours].iter().sum::<f64>() / neighbours as f64
    }

    /// Recomputes the median and scale of the reference's own neighbour distances.
    fn calibrate(&mut self) {
        let dimensions = self.params.dimensions;
        let mut own: Vec<f64> = (0..self.reference_len)
            .map(|index| {
                let vector = Self::row(&self.reference, dimensions, index).to_vec();
                self.neighbour_distance(&vector, Some(index))
            })
            .collect();
        let centre = median(&mut own);
        let mut deviations: Vec<f64> = own.iter().map(|x| (x - centre).abs()).collect();
        let scale = (MAD_TO_SIGMA * median(&mut deviations))
            .max(1e-3 * centre.abs())
            .max(1e-12);
        self.calibration = Some((centre, scale));
    }

    /// Compares the full window with the reference.
    fn test_drift(&mut self) -> DriftReport {
        let dimensions = self.params.dimensions;
        let window_len = self.params.window_points;
        let pooled: Vec<&[f64]> = (0..window_len)
            .map(|index| Self::row(&self.window, dimensions, index))
            .chain(
                (0..self.reference_len).map(|index| Self::row(&self.reference, dimensions, index)),
            )
            .collect();
        let total = pooled.len();
        let mut squared = vec![0.0; total * total];
        for i in 0..total {
            for j in i + 1..total {
                let d2 = squared_distance(pooled[i], pooled[j]);
                squared[i * total + j] = d2;
                squared[j * total + i] = d2;
            }
        }
        // Bandwidth: the median distance within the reference.
        let mut reference_distances =
            Vec::with_capacity(self.reference_len * self.reference_len / 2);
        for i in window_len..total {
            for j in i + 1..total {
                reference_distances.push(squared[i * total + j].sqrt());
            }
        }
        let bandwidth = median(&mut reference_distances).max(1e-12);
        let gamma = 1.0 / (2.0 * bandwidth * bandwidth);
        let kernel: Vec<f64> = squared.iter().map(|d2| (-gamma * d2).exp()).collect();

        let order: Vec<usize> = (0..total).collect();
        let observed = mmd2(&kernel, total, &order, window_len);
        let mut generator =
            XorShift::new(self.params.seed ^ self.windows_tested.wrapping_mul(0x9e37_79b9));
        let mut shuffled = order.clone();
        let mut permuted = Vec::with_capacity(self.params.permutations);
        for _ in 0..self.params.permutations {
            generator.shuffle(&mut shuffled);
            permuted.push(mmd2(&kernel, total, &shuffled, window_len));
        }
        self.windows_tested += 1;
        let at_least = permuted.iter().filter(|&&value| value >= observed).count();
        let p_value = (1 + at_least) as f64 / (1 + permuted.len()) as f64;
        let mean = permuted.iter().sum::<f64>() / permuted.len() as f64;
        let spread = (permuted
            .iter()
            .map(|value| (value - mean).powi(2))
            .sum::<f64>()
            / permuted.len() as f64)
            .sqrt()
            .max(1e-12);
        let z = ((observed - mean) / spread).max(0.0);

        let mut shifts: Vec<DimensionShift> = (0..dimensions)
            .map(|dimension| {
                let column = |data: &[f64], rows: usize| -> (f64, f64) {
                    let values = (0..rows).map(|row| data[row * dimensions + dimension]);
                    let mean = values.clone().sum::<f64>() / rows as f64;
                    let variance =
                        values.map(|value| (value - mean).powi(2)).sum::<f64>() / rows as f64;
                    (mean, variance.sqrt())
                };
                let (window_mean, _) = column(&self.window, window_len);
                let (reference_mean, reference_std) = column(&self.reference, self.reference_len);
                let shift = (window_mean - reference_mean) / reference_std.max(1e-12);
                DimensionShift { dimension, shift }
            })
            .collect();
        shifts.sort_by(|a, b| {
            b.shift
                .abs()
                .total_cmp(&a.shift.abs())
                .then(a.dimension.cmp(&b.dimension))
        });
        shifts.truncate(TOP_DIMENSIONS);
        DriftReport {
            mmd2: observed,
            p_value,
            z,
            score: Score::from_z(z).value(),
            shifts,
        }
    }

    /// Moves the window into the reference ring, replacing its oldest vectors.
    fn promote_window(&mut self) {
        let dimensions = self.params.dimensions;
        for index in 0..self.params.window_points {
            let slot = self.reference_next;
            self.reference[slot * dimensions..(slot + 1) * dimensions].copy_from_slice(Self::row(
                &self.window,
                dimensions,
                index,
            ));
            self.reference_next = (self.reference_next + 1) % self.params.reference_points;
        }
        self.window.clear();
    }
}

impl EmbeddingDriftParams {
    /// Checks the parameters and returns an empty monitor.
    ///
    /// # Errors
    /// Returns the first invalid parameter.
    pub fn build(self) -> Result<EmbeddingDrift, EmbeddingDriftError> {
        Ok(EmbeddingDrift::new(self.check()?))
    }
}

/// Returns the unbiased squared MMD between the first `first` indices of `order` and the rest.
fn mmd2(kernel: &[f64], total: usize, order: &[usize], first: usize) -> f64 {
    let (xs, ys) = order.split_at(first);
    let within = |set: &[usize]| -> f64 {
        let mut sum = 0.0;
        for (position, &i) in set.iter().enumerate() {
            for &j in &set[position + 1..] {
                sum += kernel[i * total + j];
            }
        }
        2.0 * sum / (set.len() * (set.len() - 1)).max(1) as f64
    };
    let mut across = 0.0;
    for &i in xs {
        for &j in ys {
            across += kernel[i * total + j];
        }
    }
    within(xs) + within(ys) - 2.0 * across / (xs.len() * ys.len()).max(1) as f64
}

fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn distance(a: &[f64], b: &[f64]) -> f64 {
    squared_distance(a, b).sqrt()
}

/// Returns the median of a slice (reordering it), 0 when empty.
fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let middle = values.len() / 2;
    values.select_nth_unstable_by(middle, f64::total_cmp);
    values[middle]
}

/// A small deterministic generator (xorshift64*) for the permutations.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Fisher-Yates shuffle.
    fn shuffle(&mut self, items: &mut [usize]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points of a noisy cluster around `centre` (deterministic).
    fn cluster(centre: &[f64], count: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut generator = XorShift::new(seed);
        (0..count)
            .map(|_| {
                centre
                    .iter()
                    .map(|c| c + (generator.next() % 1000) as f64 / 1000.0 - 0.5)
                    .collect()
            })
            .collect()
    }

    fn monitor() -> EmbeddingDrift {
        EmbeddingDrift::params(4)
            .reference_points(64)
            .window_points(16)
            .permutations(50)
            .build()
            .unwrap()
    }

    #[test]
    fn far_vectors_are_outliers_and_near_ones_are_not() {
        let mut monitor = monitor();
        for vector in cluster(&[0.0, 0.0, 0.0, 0.0], 64, 1) {
            assert!(monitor.observe(&vector).unwrap().outlier.is_none());
        }
        let near = monitor
            .observe(&[0.1, -0.1, 0.0, 0.2])
            .unwrap()
            .outlier
            .unwrap();
        assert!(Score::from_deviation(&near).value() < 30.0, "{near:?}");
        let far = monitor
            .observe(&[5.0, 5.0, 0.0, 0.0])
            .unwrap()
            .outlier
            .unwrap();
        assert!(Score::from_deviation(&far).value() > 90.0, "{far:?}");
    }

    #[test]
    fn a_shifted_window_drifts_on_the_moved_dimension_then_becomes_the_norm() {
        let mut monitor = monitor();
        for vector in cluster(&[0.0; 4], 64 + 16, 2) {
            let assessment = monitor.observe(&vector).unwrap();
            if let Some(drift) = assessment.drift {
                assert!(drift.score < 50.0, "{drift:?}");
            }
        }
        let mut reports = Vec::new();
        for vector in cluster(&[0.0, 0.0, 2.0, 0.0], 16 * 8, 3) {
            if let Some(drift) = monitor.observe(&vector).unwrap().drift {
                reports.push(drift);
            }
        }
        let first = &reports[0];
        assert!(first.score > 70.0 && first.p_value < 0.05, "{first:?}");
        assert_eq!(first.shifts[0].dimension, 2);
        assert!(first.shifts[0].shift > 3.0);
        // Four windows later the reference is all new: no drift any more.
        let last = reports.last().unwrap();
        assert!(last.score < 50.0, "{last:?}");
    }

    #[test]
    fn rejects_bad_vectors_and_repeats_exactly() {
        let mut monitor = monitor();
        assert_eq!(
            monitor.observe(&[1.0]),
            Err(EmbeddingDriftError::Dimensions {
                expected: 4,
                actual: 1
            })
        );
        assert_eq!(
            monitor.observe(&[f64::NAN, 0.0, 0.0, 0.0]),
            Err(EmbeddingDriftError::NonFinite)
        );
        let run = || {
            let mut monitor = self::monitor();
            cluster(&[1.0; 4], 200, 9)
                .iter()
                .map(|vector| monitor.observe(vector).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
