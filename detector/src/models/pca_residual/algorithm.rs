//! Fit and prediction of the PCA residual model.

use linfa::{DatasetBase, prelude::*};
use linfa_linalg::eigh::Eigh;
use ndarray::{Array1, Array2, ArrayBase, ArrayView1, Axis, Data, Ix2};

use super::error::PcaResidualError;
use super::hyperparams::{PcaResidualParams, PcaResidualValidParams};

/// A fitted PCA residual model (see the [module docs](super)).
///
/// ```
/// use linfa::{DatasetBase, ParamGuard, traits::{Fit, Predict}};
/// use ndarray::{Array1, Array2, array};
/// use pipewarden_detector::models::pca_residual::{PcaResidual, PcaResidualError};
///
/// // Normal rows keep columns 0 and 1 equal; column 2 is noise around 1.
/// let rows = Array2::from_shape_fn((200, 3), |(i, j)| match j {
///     0 | 1 => (i % 7) as f64,
///     _ => 1.0 + ((i * 13) % 5) as f64 * 0.1,
/// });
/// let params = PcaResidual::params().tf_idf(false).check()?;
/// let model: PcaResidual = params.fit(&DatasetBase::new(rows, ()))?;
/// let spe: Array1<f64> = model.predict(&array![[3.0, 3.0, 1.2], [3.0, 9.0, 1.2]]);
/// assert!(!model.is_anomaly(spe[0]) && model.is_anomaly(spe[1]));
/// # Ok::<(), PcaResidualError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PcaResidual {
    /// Column weights (inverse document frequency), if any.
    weights: Option<Array1<f64>>,
    mean: Array1<f64>,
    /// Kept components, one per row (k x d).
    components: Array2<f64>,
    /// Variance along each kept component.
    variances: Array1<f64>,
    /// Sums of the residual eigenvalues, their squares and cubes.
    theta: [f64; 3],
    threshold: f64,
    /// Hotelling's T² above which a row is anomalous within the kept components.
    t_squared_threshold: f64,
}

/// What the model makes of one row: both statistics, the verdict and the feature to name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowAssessment {
    /// Squared prediction error (distance from the kept components' subspace).
    pub spe: f64,
    /// Hotelling's T² (distance within that subspace, in units of each component's variance).
    pub t_squared: f64,
    /// Whether either statistic exceeds its threshold.
    pub is_anomaly: bool,
    /// The column that contributes most to the statistic furthest beyond its threshold (relative
    /// to it), and its share of that statistic; `None` for a row exactly at the mean.
    pub top_feature: Option<(usize, f64)>,
}

impl PcaResidual {
    /// Returns the default parameters (see [`PcaResidualParams::new`]).
    pub fn params() -> PcaResidualParams {
        PcaResidualParams::new()
    }

    /// Returns the number of kept components.
    pub fn components(&self) -> usize {
        self.components.nrows()
    }

    /// Returns the variance along each kept component.
    pub fn variances(&self) -> &Array1<f64> {
        &self.variances
    }

    /// Returns the SPE above which a row is anomalous (the Q-statistic).
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Returns whether an SPE is anomalous.
    pub fn is_anomaly(&self, spe: f64) -> bool {
        spe > self.threshold
    }

    /// Returns Hotelling's T² above which a row is anomalous: the chi-square quantile with one
    /// degree of freedom per kept component at `critical_z` (Wilson-Hilferty).
    pub fn t_squared_threshold(&self) -> f64 {
        self.t_squared_threshold
    }

    /// Returns Hotelling's T² of one row: its squared distance from the mean within the kept
    /// components, each in units of its variance. The SPE misses a change along a kept
    /// component (a feature that varies on its own, like an error ratio); T² sees it.
    pub fn t_squared(&self, row: ArrayView1<'_, f64>) -> f64 {
        let projection = self.components.dot(&self.centred(row));
        projection
            .iter()
            .zip(&self.variances)
            .filter(|&(_, &variance)| variance > 0.0)
            .map(|(&p, &variance)| p * p / variance)
            .sum()
    }

    /// Returns the column that contributes most to a row's T² and its share of the positive
    /// contributions (`centred_j * sum_k component_kj * projection_k / variance_k`).
    pub fn top_t_squared_contributor(&self, row: ArrayView1<'_, f64>) -> Option<(usize, f64)> {
        let centred = self.centred(row);
        let projection = self.components.dot(&centred);
        let scaled = Array1::from_iter(
            projection
                .iter()
                .zip(&self.variances)
                .map(|(&p, &variance)| if variance > 0.0 { p / variance } else { 0.0 }),
        );
        let contributions = &centred * &self.components.t().dot(&scaled);
        let total: f64 = contributions.iter().filter(|&&c| c > 0.0).sum();
        if total <= 0.0 {
            return None;
        }
        contributions
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
            .map(|(column, contribution)| (column, contribution / total))
    }

    /// Returns the prediction path for one row: SPE and T², whether either is beyond its
    /// threshold, and the feature that contributed most to the one further beyond.
    pub fn assess(&self, row: ArrayView1<'_, f64>) -> RowAssessment {
        let spe = self.spe(row);
        let t_squared = self.t_squared(row);
        let spe_excess = spe / self.threshold.max(f64::MIN_POSITIVE);
        let t_squared_excess = t_squared / self.t_squared_threshold.max(f64::MIN_POSITIVE);
        let top_feature = if t_squared_excess > spe_excess {
            self.top_t_squared_contributor(row)
        } else {
            self.top_contributor(row)
        };
        RowAssessment {
            spe,
            t_squared,
            is_anomaly: spe > self.threshold || t_squared > self.t_squared_threshold,
            top_feature,
        }
    }

    /// Returns the row weighted and centred like the training rows.
    fn centred(&self, row: ArrayView1<'_, f64>) -> Array1<f64> {
        let mut centred = row.to_owned();
        if let Some(weights) = &self.weights {
            centred *= weights;
        }
        centred -= &self.mean;
        centred
    }

    /// Returns the squared prediction error of one row.
    pub fn spe(&self, row: ArrayView1<'_, f64>) -> f64 {
        self.residual(row).mapv(|x| x * x).sum()
    }

    /// Returns the residual of one row per column (weighted and centred units): the part of
    /// the row the kept components do not explain.
    pub fn residual(&self, row: ArrayView1<'_, f64>) -> Array1<f64> {
        let centred = self.centred(row);
        let projection = self.components.dot(&centred);
        let explained = self.components.t().dot(&projection);
        centred - explained
    }

    /// Returns the column that contributes most to a row's SPE and its share of it (`None` for
    /// a row with no residual): the feature to name in an explanation.
    pub fn top_contributor(&self, row: ArrayView1<'_, f64>) -> Option<(usize, f64)> {
        let squares = self.residual(row).mapv(|x| x * x);
        let total = squares.sum();
        if total <= 0.0 {
            return None;
        }
        squares
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
            .map(|(column, square)| (column, square / total))
    }

    /// Returns the standard normal deviate of an SPE (Jackson and Mudholkar): about N(0, 1) for
    /// normal rows, `critical_z` at the threshold.
    pub fn z(&self, spe: f64) -> f64 {
        let [theta1, theta2, theta3] = self.theta;
        if theta1 <= 0.0 || theta2 <= 0.0 {
            return if spe > self.threshold {
                f64::INFINITY
            } else {
                0.0
            };
        }
        let h0 = 1.0 - 2.0 * theta1 * theta3 / (3.0 * theta2 * theta2);
        theta1 * ((spe / theta1).powf(h0) - 1.0 - theta2 * h0 * (h0 - 1.0) / (theta1 * theta1))
            / (2.0 * theta2 * h0 * h0).sqrt()
    }
}

/// Returns the chi-square quantile with `degrees` degrees of freedom at standard normal
/// deviate `critical_z` (Wilson-Hilferty).
fn chi_square_quantile(degrees: usize, critical_z: f64) -> f64 {
    let k = degrees.max(1) as f64;
    let spread = (2.0 / (9.0 * k)).sqrt();
    k * (1.0 - 2.0 / (9.0 * k) + critical_z * spread)
        .max(0.0)
        .powi(3)
}

/// Returns the Q-statistic of the residual eigenvalue sums at deviate `critical_z`.
fn q_statistic(theta: [f64; 3], critical_z: f64) -> f64 {
    let [theta1, theta2, theta3] = theta;
    if theta1 <= 0.0 || theta2 <= 0.0 {
        return f64::EPSILON;
    }
    let h0 = 1.0 - 2.0 * theta1 * theta3 / (3.0 * theta2 * theta2);
    let inner = critical_z * (2.0 * theta2 * h0 * h0).sqrt() / theta1
        + 1.0
        + theta2 * h0 * (h0 - 1.0) / (theta1 * theta1);
    theta1 * inner.max(0.0).powf(1.0 / h0)
}

impl<D: Data<Elem = f64>, T> Fit<ArrayBase<D, Ix2>, T, PcaResidualError>
    for PcaResidualValidParams
{
    type Object = PcaResidual;

    fn fit(
        &self,
        dataset: &DatasetBase<ArrayBase<D, Ix2>, T>,
    ) -> Result<PcaResidual, PcaResidualError> {
        let records = dataset.records();
        let (rows, columns) = records.dim();
        if rows < 3 || columns < 2 {
            return Err(PcaResidualError::TooSmall { rows, columns });
        }
        let mut weighted = records.to_owned();
        let weights = self.tf_idf.then(|| {
            let weights = Array1::from_iter(weighted.axis_iter(Axis(1)).map(|column| {
                let present = column.iter().filter(|&&x| x != 0.0).count();
                if present == 0 {
                    0.0
                } else {
                    (rows as f64 / present as f64).ln()
                }
            }));
            weighted *= &weights;
            weights
        });
        let weights = if self.standardise {
            let scales = Array1::from_iter(weighted.axis_iter(Axis(1)).map(|column| {
                let spread = column.std(1.0);
                let floor = 1e-9 * (column.mean().unwrap_or(0.0).abs() + 1.0);
                1.0 / spread.max(floor)
            }));
            weighted *= &scales;
            Some(weights.map_or_else(|| scales.clone(), |weights| weights * &scales))
        } else {
            weights
        };
        let mean = weighted
            .mean_axis(Axis(0))
            .unwrap_or_else(|| Array1::zeros(columns));
        let centred = &weighted - &mean;
        let covariance = centred.t().dot(&centred) / (rows as f64 - 1.0);
        let total_variance = covariance.diag().sum();

        // Symmetric eigendecomposition of the covariance: exact and deterministic (linfa-reduction's
        // truncated SVD converged to wrong components on collinear count data).
        let (values, vectors) = covariance.eigh()?;
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
        let mut kept = 0;
        let mut explained = 0.0;
        while kept < order.len().min(self.max_components)
            && explained < self.variance_fraction * total_variance
        {
            explained += values[order[kept]].max(0.0);
            kept += 1;
        }
        let kept = kept.clamp(1, columns - 1);
        let components = Array2::from_shape_fn((kept, columns), |(component, column)| {
            vectors[(column, order[component])]
        });
        let variances = Array1::from_iter(order[..kept].iter().map(|&i| values[i].max(0.0)));

        let square = covariance.dot(&covariance);
        let cube = square.dot(&covariance);
        let traces = [total_variance, square.diag().sum(), cube.diag().sum()];
        let theta = [1, 2, 3].map(|power: i32| {
            let top: f64 = variances.iter().map(|variance| variance.powi(power)).sum();
            (traces[power as usize - 1] - top).max(0.0)
        });
        Ok(PcaResidual {
            weights,
            mean,
            components,
            variances,
            theta,
            threshold: q_statistic(theta, self.critical_z),
            t_squared_threshold: chi_square_quantile(kept, self.critical_z),
        })
    }
}

/// Returns the SPE of each row.
impl<D: Data<Elem = f64>> PredictInplace<ArrayBase<D, Ix2>, Array1<f64>> for PcaResidual {
    fn predict_inplace(&self, records: &ArrayBase<D, Ix2>, targets: &mut Array1<f64>) {
        for (row, target) in records.rows().into_iter().zip(targets.iter_mut()) {
            *target = self.spe(row);
        }
    }

    fn default_target(&self, records: &ArrayBase<D, Ix2>) -> Array1<f64> {
        Array1::zeros(records.nrows())
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    fn correlated(rows: usize) -> Array2<f64> {
        Array2::from_shape_fn((rows, 4), |(i, j)| {
            let base = (i % 5) as f64;
            match j {
                0 => base,
                1 => 2.0 * base,
                2 => base + ((i * 7) % 3) as f64 * 0.1,
                _ => ((i * 11) % 4) as f64 * 0.05,
            }
        })
    }

    #[test]
    fn keeps_the_correlated_direction_and_flags_a_broken_relation() {
        let params = PcaResidual::params().tf_idf(false).check().unwrap();
        let model = params.fit(&DatasetBase::new(correlated(300), ())).unwrap();
        assert!(model.components() >= 1);
        let spe: Array1<f64> = model.predict(&array![[2.0, 4.0, 2.1, 0.05], [2.0, 0.0, 2.1, 0.05]]);
        assert!(!model.is_anomaly(spe[0]), "{spe} {}", model.threshold());
        assert!(model.is_anomaly(spe[1]), "{spe} {}", model.threshold());
        assert!(model.z(spe[1]) > model.z(spe[0]));
        let broken = array![2.0, 0.0, 2.1, 0.05];
        let (column, share) = model.top_contributor(broken.view()).unwrap();
        assert!(column == 1 || column == 0, "{column}");
        assert!(share > 0.3, "{share}");
    }

    /// Per-stage windows: throughput, lag, latency p50 and p99, error ratio (mixed units,
    /// correlated like a real stage: lag falls and latency rises with throughput).
    fn stage_windows(rows: usize) -> Array2<f64> {
        let mut state = 42u64;
        let mut noise = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let mut windows = Array2::zeros((rows, 5));
        for i in 0..rows {
            let throughput = 1000.0 + 200.0 * (i as f64 / 50.0).sin() + 40.0 * noise();
            let p50 = 20.0 + 0.01 * throughput + 2.0 * noise();
            windows[(i, 0)] = throughput;
            windows[(i, 1)] = 5000.0 - 3.0 * throughput + 100.0 * noise();
            windows[(i, 2)] = p50;
            windows[(i, 3)] = 3.0 * p50 + 6.0 * noise();
            windows[(i, 4)] = 0.01 + 0.004 * noise();
        }
        windows
    }

    #[test]
    fn stage_model_refit_on_recent_windows_flags_and_names_the_broken_feature() {
        const NAMES: [&str; 5] = [
            "throughput",
            "lag",
            "latency_p50",
            "latency_p99",
            "error_ratio",
        ];
        let history = stage_windows(600);
        // Training path: refit on the most recent 400 windows.
        let recent = history.slice(ndarray::s![200.., ..]).to_owned();
        let params = PcaResidual::params()
            .tf_idf(false)
            .standardise(true)
            .check()
            .unwrap();
        let model = params.fit(&DatasetBase::new(recent.clone(), ())).unwrap();
        // Prediction path: new windows, one normal and three with one feature broken.
        let normal = history.row(599).to_owned();
        let mut errors = normal.clone();
        errors[4] = 0.05;
        let mut tail_latency = normal.clone();
        tail_latency[3] *= 3.0;
        let mut lag = normal.clone();
        lag[1] += 1500.0;
        let normal_verdict = model.assess(normal.view());
        assert!(!normal_verdict.is_anomaly, "{normal_verdict:?}");
        for (row, expected) in [(&errors, 4), (&tail_latency, 3), (&lag, 1)] {
            let verdict = model.assess(row.view());
            assert!(verdict.is_anomaly, "{}: {verdict:?}", NAMES[expected]);
            let (column, share) = verdict.top_feature.unwrap();
            assert_eq!(NAMES[column], NAMES[expected], "{verdict:?}");
            assert!(share > 0.3, "{verdict:?}");
        }
        // The batch prediction path (SPE per row) agrees with the per-row one.
        let spe: Array1<f64> = model.predict(&ndarray::stack![Axis(0), normal.view(), lag.view()]);
        assert_eq!(spe[1], model.assess(lag.view()).spe);
        // Without standardisation the error ratio (tiny units) is invisible.
        let raw = PcaResidual::params().tf_idf(false).check().unwrap();
        let raw_model = raw.fit(&DatasetBase::new(recent, ())).unwrap();
        assert!(!raw_model.assess(errors.view()).is_anomaly);
    }

    #[test]
    fn variances_come_from_the_row_count() {
        let params = PcaResidual::params()
            .tf_idf(false)
            .max_components(1)
            .check()
            .unwrap();
        let rows = correlated(300);
        let model = params.fit(&DatasetBase::new(rows.clone(), ())).unwrap();
        // The first component of this data carries nearly all of columns 0 and 1.
        let total: f64 = rows.var_axis(Axis(0), 1.0).sum();
        assert!(model.variances()[0] > 0.9 * total && model.variances()[0] <= total + 1e-9);
    }

    #[test]
    fn rejects_too_small_inputs() {
        let params = PcaResidual::params().check().unwrap();
        let error = params.fit(&DatasetBase::new(Array2::<f64>::zeros((2, 3)), ()));
        assert!(matches!(
            error,
            Err(PcaResidualError::TooSmall {
                rows: 2,
                columns: 3
            })
        ));
    }
}
