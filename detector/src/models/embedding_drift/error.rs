//! Errors of the embedding monitor.

use thiserror::Error;

/// A rejected [`EmbeddingDriftParams`](super::EmbeddingDriftParams) value, returned by
/// [`linfa::ParamGuard::check`].
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EmbeddingDriftParamsError {
    /// `dimensions` must be in 1..=65536.
    #[error("dimensions must be in 1..=65536, got {0}")]
    Dimensions(usize),
    /// `reference_points` must be in 8..=65536.
    #[error("reference_points must be in 8..=65536, got {0}")]
    ReferencePoints(usize),
    /// `window_points` must be in 2..=`reference_points`.
    #[error("window_points must be in 2..=reference_points, got {0}")]
    WindowPoints(usize),
    /// `neighbours` must be in 1..`reference_points`.
    #[error("neighbours must be in 1..reference_points, got {0}")]
    Neighbours(usize),
    /// `permutations` must be in 1..=10000.
    #[error("permutations must be in 1..=10000, got {0}")]
    Permutations(usize),
}

/// An error of feeding the embedding monitor.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EmbeddingDriftError {
    /// The parameters are invalid.
    #[error(transparent)]
    Params(#[from] EmbeddingDriftParamsError),
    /// A vector does not have the configured number of dimensions.
    #[error("expected {expected} dimensions, got {actual}")]
    Dimensions {
        /// Configured dimensions.
        expected: usize,
        /// Dimensions of the vector.
        actual: usize,
    },
    /// A vector holds a NaN or an infinity.
    #[error("vector holds a non-finite value")]
    NonFinite,
}
