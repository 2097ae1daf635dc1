//! Errors of the session workflow model.

use thiserror::Error;

/// A rejected [`SessionWorkflowParams`](super::SessionWorkflowParams) value, returned by
/// [`linfa::ParamGuard::check`].
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SessionWorkflowParamsError {
    /// `novel_fraction` must be in 0..=1 and not above `rare_fraction`.
    #[error("novel_fraction must be in 0..=1 and not above rare_fraction, got {0}")]
    NovelFraction(f64),
    /// `rare_fraction` must be in 0..=1.
    #[error("rare_fraction must be in 0..=1, got {0}")]
    RareFraction(f64),
    /// `timeout_margin` must be finite and at least 1.
    #[error("timeout_margin must be finite and at least 1, got {0}")]
    TimeoutMargin(f64),
    /// `invariant_support` must be in (0, 1].
    #[error("invariant_support must be in (0, 1], got {0}")]
    InvariantSupport(f64),
    /// `invariant_hold` must be in (0.5, 1].
    #[error("invariant_hold must be in (0.5, 1], got {0}")]
    InvariantHold(f64),
    /// `min_lag_ms` must not be negative.
    #[error("min_lag_ms must not be negative, got {0}")]
    MinLagMs(i64),
    /// `min_state_sessions` must be at least 1.
    #[error("min_state_sessions must be at least 1, got {0}")]
    MinStateSessions(u32),
    /// `max_refinement_terms` must be at most 16.
    #[error("max_refinement_terms must be at most 16, got {0}")]
    MaxRefinementTerms(usize),
}

/// An error of fitting the session workflow model.
#[derive(Debug, Error)]
pub enum SessionWorkflowError {
    /// The parameters are invalid.
    #[error(transparent)]
    Params(#[from] SessionWorkflowParamsError),
    /// No training session.
    #[error("no session to learn from")]
    NoSessions,
    /// An error of linfa itself.
    #[error(transparent)]
    Linfa(#[from] linfa::Error),
}
