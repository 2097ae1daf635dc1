//! Detector models, one module each in linfa's layout: `hyperparams.rs` (`XParams`,
//! `XValidParams`, checked by [`linfa::ParamGuard`]), `algorithm.rs` (fit, incremental update,
//! predict) and `error.rs`.
//!
//! - [`robust_baseline`]: per-series streaming baseline (median/MAD over a ring window plus a
//!   robust EWMA level); the model every derived series is scored by.
//! - [`windowed_gaussian`]: the textbook mean/standard-deviation baseline, kept for benchmarks.
//! - [`pca_residual`]: PCA residual (SPE with the Q-statistic) on vectors such as the event
//!   counts of a log session; the classic baseline of log anomaly detection.
//! - [`embedding_drift`]: outliers and window drift (MMD, centroid shift) of embedding vectors.
//! - [`schema_drift`]: new, missing and retyped fields of structured events.
//! - [`session_workflow`]: log sessions judged against the workflow learnt from earlier ones
//!   (rare templates, stalls, broken count invariants).

pub mod embedding_drift;
pub mod pca_residual;
pub mod robust_baseline;
pub mod schema_drift;
pub mod session_workflow;
pub mod windowed_gaussian;
