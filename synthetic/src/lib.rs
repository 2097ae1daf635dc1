//! Synthetic probes: inject test events end to end through a pipeline and measure latency, loss
//! and duplicates stage by stage.
//!
//! This crate is reserved in the workspace layout; its probes arrive with their own issue and
//! nothing here is used by the app yet.
#![warn(missing_docs)]
