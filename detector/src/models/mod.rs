//! Detector models, one module each in linfa's layout: `hyperparams.rs` (`XParams`,
//! `XValidParams`, checked by [`linfa::ParamGuard`]), `algorithm.rs` (fit, incremental update,
//! predict) and `error.rs`.
//!
//! - [`robust_baseline`]: per-series streaming baseline (median/MAD over a ring window plus a
//!   robust EWMA level); the model every derived series is scored by.
//! - [`windowed_gaussian`]: the textbook mean/standard-deviation baseline, kept for benchmarks.

pub mod robust_baseline;
pub mod windowed_gaussian;
