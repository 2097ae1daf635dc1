//! Errors of the robust baseline.

use thiserror::Error;

/// A rejected [`RobustBaselineParams`](super::RobustBaselineParams) value, returned by
/// [`linfa::ParamGuard::check`].
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RobustBaselineParamsError {
    /// `window_points` must be in 4..=65536.
    #[error("window_points must be in 4..=65536, got {0}")]
    WindowPoints(usize),
    /// `warmup_points` must be at least 2.
    #[error("warmup_points must be at least 2, got {0}")]
    WarmupPoints(usize),
    /// `ewma_alpha` must be in (0, 1].
    #[error("ewma_alpha must be in (0, 1], got {0}")]
    EwmaAlpha(f64),
    /// `clip_z` must be finite and positive.
    #[error("clip_z must be finite and positive, got {0}")]
    ClipZ(f64),
    /// `relative_scale_floor` must be finite and not negative.
    #[error("relative_scale_floor must be finite and not negative, got {0}")]
    RelativeScaleFloor(f64),
    /// `absolute_scale_floor` must be finite and positive.
    #[error("absolute_scale_floor must be finite and positive, got {0}")]
    AbsoluteScaleFloor(f64),
    /// `season_period_ms` must not be negative.
    #[error("season_period_ms must not be negative, got {0}")]
    SeasonPeriodMs(i64),
    /// `season_bins` must be in 1..=8640.
    #[error("season_bins must be in 1..=8640, got {0}")]
    SeasonBins(usize),
    /// `season_alpha` must be in (0, 1].
    #[error("season_alpha must be in (0, 1], got {0}")]
    SeasonAlpha(f64),
    /// `tail_quantile` must be in 0..0.5.
    #[error("tail_quantile must be in 0..0.5, got {0}")]
    TailQuantile(f64),
    /// `tail_half_life_points` must be finite and at least 1.
    #[error("tail_half_life_points must be finite and at least 1, got {0}")]
    TailHalfLifePoints(f64),
    /// `shift_confirm_points` must not exceed `window_points`.
    #[error("shift_confirm_points must not exceed window_points, got {0}")]
    ShiftConfirmPoints(usize),
    /// `shift_z` must be finite and positive.
    #[error("shift_z must be finite and positive, got {0}")]
    ShiftZ(f64),
    /// `record_half_life_points` must be finite and at least 1.
    #[error("record_half_life_points must be finite and at least 1, got {0}")]
    RecordHalfLifePoints(f64),
    /// `record_hold_ms` must not be negative.
    #[error("record_hold_ms must not be negative, got {0}")]
    RecordHoldMs(i64),
    /// `sequence_weight` must be finite and not negative.
    #[error("sequence_weight must be finite and not negative, got {0}")]
    SequenceWeight(f64),
    /// `recurrence_min_count` must be finite and not negative.
    #[error("recurrence_min_count must be finite and not negative, got {0}")]
    RecurrenceMinCount(f64),
    /// `context_half_life_periods` must be 0 or finite and at least 1.
    #[error("context_half_life_periods must be 0 or finite and at least 1, got {0}")]
    ContextHalfLifePeriods(f64),
    /// `context_tolerance_bins` must not exceed half of `season_bins`.
    #[error("context_tolerance_bins must not exceed half of season_bins, got {0}")]
    ContextToleranceBins(usize),
    /// `sequence_alpha` must be in (0, 1].
    #[error("sequence_alpha must be in (0, 1], got {0}")]
    SequenceAlpha(f64),
    /// `long_spread_floor` must be finite and not negative.
    #[error("long_spread_floor must be finite and not negative, got {0}")]
    LongSpreadFloor(f64),
    /// `record_gain` must be finite and not negative.
    #[error("record_gain must be finite and not negative, got {0}")]
    RecordGain(f64),
}

/// An error of fitting the robust baseline.
#[derive(Debug, Error)]
pub enum RobustBaselineError {
    /// The parameters are invalid.
    #[error(transparent)]
    Params(#[from] RobustBaselineParamsError),
    /// The records do not have the expected shape.
    #[error("records must have 2 columns (timestamp_ms, value), got {0}")]
    RecordColumns(usize),
    /// An error of linfa itself.
    #[error(transparent)]
    Linfa(#[from] linfa::Error),
}
