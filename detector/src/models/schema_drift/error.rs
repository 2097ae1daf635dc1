//! Errors of the schema drift model.

use thiserror::Error;

/// A rejected [`SchemaDriftParams`](super::SchemaDriftParams) value, returned by
/// [`linfa::ParamGuard::check`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SchemaDriftParamsError {
    /// `warmup_events` must be at least 1.
    #[error("warmup_events must be at least 1, got {0}")]
    WarmupEvents(u64),
    /// `missing_after` must be at least 1.
    #[error("missing_after must be at least 1, got {0}")]
    MissingAfter(u64),
    /// `max_fields` must be at least 1.
    #[error("max_fields must be at least 1, got {0}")]
    MaxFields(usize),
}
