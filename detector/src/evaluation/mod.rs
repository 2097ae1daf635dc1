//! Scoring of detector output against labelled data, as the quality benchmarks apply it.
//!
//! Pure functions over scores and labels (no file reading): the benchmark binaries under
//! `benches/` load the data sets and call these.

pub mod nab;
