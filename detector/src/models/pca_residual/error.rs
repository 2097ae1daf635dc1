//! Errors of the PCA residual model.

use thiserror::Error;

/// A rejected [`PcaResidualParams`](super::PcaResidualParams) value, returned by
/// [`linfa::ParamGuard::check`].
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PcaResidualParamsError {
    /// `variance_fraction` must be in (0, 1).
    #[error("variance_fraction must be in (0, 1), got {0}")]
    VarianceFraction(f64),
    /// `max_components` must be at least 1.
    #[error("max_components must be at least 1, got {0}")]
    MaxComponents(usize),
    /// `critical_z` must be finite and positive.
    #[error("critical_z must be finite and positive, got {0}")]
    CriticalZ(f64),
}

/// An error of fitting the PCA residual model.
#[derive(Debug, Error)]
pub enum PcaResidualError {
    /// The parameters are invalid.
    #[error(transparent)]
    Params(#[from] PcaResidualParamsError),
    /// Too few rows or columns to separate a residual subspace.
    #[error("need at least 3 rows and 2 columns, got {rows} x {columns}")]
    TooSmall {
        /// Rows of the training matrix.
        rows: usize,
        /// Columns of the training matrix.
        columns: usize,
    },
    /// The eigendecomposition failed.
    #[error("pca: {0}")]
    Linalg(#[from] linfa_linalg::LinalgError),
    /// An error of linfa itself.
    #[error(transparent)]
    Linfa(#[from] linfa::Error),
}
