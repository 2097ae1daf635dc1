//! PCA residual model: the classic unsupervised detector for count vectors (Xu et al., SOSP
//! 2009), used as the baseline of the log-session benchmark and usable for any vector of
//! features.
//!
//! Fit: optionally weight each column by its inverse document frequency (`ln(n / rows where it
//! is non-zero)`), centre the columns, find the principal components (symmetric
//! eigendecomposition of the covariance with linfa-linalg) and keep the fewest that explain
//! `variance_fraction` of the variance (at most `max_components`).
//! The rest is the residual subspace. Predict: the squared prediction error (SPE) of a row is
//! the squared length of its residual; the Jackson-Mudholkar Q-statistic gives the SPE above
//! which a row is anomalous at the level whose standard normal deviate is `critical_z`.
//! [`PcaResidual::assess`] adds Hotelling's T² within the kept components (a change along a
//! kept component, such as a feature that varies on its own, leaves the SPE alone) with a
//! chi-square threshold at the same level, and names the feature that contributed most.
//!
//! Per-stage use (issue 4, multivariate): rows are windows of a stage's features (throughput,
//! lag, latency percentiles, error ratio) with `tf_idf(false).standardise(true)`; the training
//! path is `fit` on the recent windows (refit in the background as they roll), the prediction
//! path `assess` on each new window.
//!
//! Why not linfa-reduction's `Pca`: its 0.8.1 `explained_variance()` divides by the wrong count,
//! and its truncated SVD (LOBPCG with a random start) returned components far from the true ones
//! on collinear data like event counts (the unit test's data: 91% of the variance found where
//! the exact decomposition finds over 99%). The covariance of count vectors is small (one row
//! and column per template), so the exact decomposition is cheap.

mod algorithm;
mod error;
mod hyperparams;

pub use algorithm::{PcaResidual, RowAssessment};
pub use error::{PcaResidualError, PcaResidualParamsError};
pub use hyperparams::{PcaResidualParams, PcaResidualValidParams};
