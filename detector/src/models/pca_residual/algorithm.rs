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

    /// Returns the squared prediction error of one row.
    pub fn spe(&self, row: ArrayView1<'_, f64>) -> f64 {
        self.residual(row).mapv(|x| x * x).sum()
    }

    /// Returns the residual of one row per column (weighted and centred units): the part of
    /// the row the kept components do not explain.
    pub fn residual(&self, row: ArrayView1<'_, f64>) -> Array1<f64> {
        let mut centred = row.to_owned();
        if let Some(weights) = &self.weights {
            centred *= weights;
        }
        centred -= &self.mean;
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
