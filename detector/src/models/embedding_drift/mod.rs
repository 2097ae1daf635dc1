//! Embedding monitor: outliers against the recent population, and drift of the latest window
//! against a reference window, for events that carry a numeric vector (an NLP embedding, a
//! feature vector).
//!
//! State: the last `reference_points` vectors (the reference population, a ring) and the latest
//! `window_points` vectors (the current window). Every vector is first scored, then absorbed:
//!
//! - **Outlier**: the mean distance of the vector to its `neighbours` nearest reference vectors,
//!   as a robust z-score against the same statistic of the reference vectors among themselves
//!   (median and MAD, refreshed whenever a window is promoted), normalised by [`crate::score`].
//! - **Drift**, each time the current window fills: the squared maximum mean discrepancy (MMD,
//!   Gaussian kernel, bandwidth = median distance in the reference) between the window and the
//!   reference, with a permutation p-value (`permutations` shuffles from a seeded generator, so
//!   runs repeat exactly), and the centroid shift per dimension in reference standard deviations,
//!   the dimensions that moved most first. The window then joins the reference (the oldest
//!   reference vectors leave), so a lasting shift is reported once and then becomes the norm.
//!
//! Cost per vector: `reference_points x dimensions` for the outlier score; per window, the kernel
//! matrix of `reference_points + window_points` vectors per permutation. Memory:
//! `(reference_points + window_points) x dimensions x 8` bytes per monitored stream.

mod algorithm;
mod error;
mod hyperparams;

pub use algorithm::{DimensionShift, DriftReport, EmbeddingAssessment, EmbeddingDrift};
pub use error::{EmbeddingDriftError, EmbeddingDriftParamsError};
pub use hyperparams::{EmbeddingDriftParams, EmbeddingDriftValidParams};
