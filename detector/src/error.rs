//! Errors of the crate-level components (the series bank).
//!
//! Each model keeps its own errors in `models/<name>/error.rs`; this module holds the errors of
//! what sits above the models.

use thiserror::Error;

use crate::models::robust_baseline::RobustBaselineParamsError;

/// A rejected [`SeriesBankParams`](crate::SeriesBankParams) value, returned by
/// [`linfa::ParamGuard::check`].
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SeriesBankParamsError {
    /// `max_series` must be at least 1.
    #[error("max_series must be at least 1, got {0}")]
    MaxSeries(usize),
    /// `alert_threshold` must be a finite number in 0..=100.
    #[error("alert_threshold must be a finite number in 0..=100, got {0}")]
    AlertThreshold(f64),
    /// `repeat_half_life_points` must be a finite number >= 0.
    #[error("repeat_half_life_points must be a finite number >= 0, got {0}")]
    RepeatHalfLife(f64),
    /// `repeat_damping` must be a number in 0..=1.
    #[error("repeat_damping must be a number in 0..=1, got {0}")]
    RepeatDamping(f64),
    /// `repeat_margin` must be a number in 0..=100.
    #[error("repeat_margin must be a number in 0..=100, got {0}")]
    RepeatMargin(f64),
    /// `min_point_interval_ms` must be >= 0.
    #[error("min_point_interval_ms must be >= 0, got {0}")]
    MinPointInterval(i64),
    /// The per-series model parameters are invalid.
    #[error("model: {0}")]
    Model(#[from] RobustBaselineParamsError),
}
