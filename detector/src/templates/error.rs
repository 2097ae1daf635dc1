//! Errors of the template miner.

use thiserror::Error;

/// A rejected [`DrainParams`](super::DrainParams) value, returned by
/// [`linfa::ParamGuard::check`].
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DrainParamsError {
    /// `similarity_threshold` must be in 0..=1.
    #[error("similarity_threshold must be in 0..=1, got {0}")]
    SimilarityThreshold(f64),
    /// `depth` must be at least 3.
    #[error("depth must be at least 3, got {0}")]
    Depth(usize),
    /// `max_children` must be at least 1.
    #[error("max_children must be at least 1, got {0}")]
    MaxChildren(usize),
    /// `max_templates` must be at least 1.
    #[error("max_templates must be at least 1, got {0}")]
    MaxTemplates(usize),
    /// `max_tokens` must be at least 1.
    #[error("max_tokens must be at least 1, got {0}")]
    MaxTokens(usize),
}
