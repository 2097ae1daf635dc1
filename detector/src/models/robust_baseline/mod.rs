//! Robust streaming baseline for one univariate series: the model every derived series is
//! scored by.
//!
//! State per series: the last `window_points` values (a ring plus a sorted copy), an EWMA level, a
//! seasonal profile (learnt for every series, used only while it clearly helps), a histogram of
//! past z-scores per side, high and low records, and a few counters. A value is scored against
//! the state *before* it is absorbed:
//!
//! 1. **Season.** With the seasonal profile on (see `season.rs`: a daily profile in
//!    `season_bins` phase bins, switched on only while it predicts clearly better than none, and
//!    then on or off for at least a period),
//!    the value is deseasonalised by its bin's offset; everything below works on deseasonalised
//!    values, and the offset is added back to the typical value.
//! 2. **Expected value and scale.** The expected value is the window median or the EWMA level,
//!    whichever is closer (a point must depart from both: a trend followed by the EWMA does not
//!    alert while the median lags). The scale is the largest of the window's robust spread
//!    (interquartile range or mean absolute deviation, both scaled to a Gaussian standard
//!    deviation), `long_spread_floor` times its long-term mean (quiet spells do not make every
//!    movement huge), `relative_scale_floor * |typical|` and `absolute_scale_floor` (constant
//!    series do not turn tiny changes into alerts). The raw score is `z = departure / scale`.
//! 3. **Tail calibration** (`tail.rs`). Series with heavy tails routinely produce large z: z is
//!    divided by how much heavier than Gaussian the series' own tail is on that side, at level
//!    `tail_quantile`, so a deviation must be rare *for this series*.
//!    Optionally (`recurrence_min_count` > 0, off by default), a deviation that at least that
//!    many earlier points (decayed) reached on the same side is capped at the Gaussian z of its
//!    empirical tail probability: a recurring spike is judged by how rare it is, not how far.
//!    **Time-of-day context** (`context.rs`, `context_half_life_periods` 7,
//!    `context_tolerance_bins` 3; applied after the records of step 4): per phase bin of the
//!    seasonal period, the two largest calibrated deviations per side (decaying). When the
//!    series has already gone as far twice near this time of day (within the tolerance, so a
//!    daily job running a few minutes early or late counts), the deviation's z (a record floor
//!    included) is scored relative to that reach (`z' = 3 z / reach`): a recurring daily spike
//!    stops alerting, one twice as large as before still alerts. Independent of whether the
//!    profile is on.
//! 4. **Records** (`record.rs`). A value beyond the high or low record of the recent past (half-life
//!    `record_half_life_points`) by a fraction `e` of the records' range (at least 60 scales)
//!    scores at least `z = 3 + record_gain * e` (`record_gain` 150: 2% of the range is an
//!    alert), however ordinary its z: going where the series has never been is news (Numenta's
//!    "spatial anomaly"). A record decays only once the series has not come within 20% of
//!    the range of it for `record_hold_ms` (8 days): a peak reached every day or every week stays the
//!    reference, so the next one is not a "new record" merely because the record decayed in
//!    between.
//! 5. **Sequence score** (off by default: `sequence_weight` 0). The short-term mean of the
//!    calibrated |z| (an EWMA with weight `sequence_alpha`, |z| clipped at 6) is compared with its
//!    own long-term mean and spread; `sequence_weight` times that z-score is a floor of z. It
//!    catches a run of moderate deviations that no single point shows (a variance change, a small
//!    level shift). On the NAB corpus it added more false positives than detections, hence off.
//!
//! The resulting z is normalised to 0-100 by [`crate::score`] (z = 3 scores 0, z = 6 about 71).
//!
//! Adaptation: every finite value enters the window, anomalous or not, so after a lasting level
//! shift the median reaches the new level within half a window; `shift_confirm_points`
//! consecutive strong deviations on one side move the older part of the window to the new level
//! at once. The EWMA is fed values clipped to `median ± clip_z * scale`, so single spikes barely
//! move it. Non-finite values are never absorbed. Until `warmup_points` values have been absorbed
//! the model does not score. Each value in the window (and each record) keeps the learnt offset
//! of its phase bin, so when the season is switched on or off they move into the other frame
//! (raw or deseasonalised) and the model goes on scoring: a switch costs no warm-up.
//!
//! Cost: O(1) per point except two binary searches in the sorted window and a move of the sorted
//! values between the oldest and the newest (the mean absolute deviation comes from running sums
//! of the window's halves; the context is read only for points that would score); about 4.5 KB
//! per series with the defaults (the seasonal profile is 5 bytes per bin, the context 4, the
//! window 14 bytes per value with its offsets, 10 without a season; the hyperparameters are
//! shared by the models of a bank).

mod algorithm;
mod context;
mod error;
mod hyperparams;
mod record;
mod season;
mod tail;
mod window;

pub use algorithm::RobustBaseline;
pub use error::{RobustBaselineError, RobustBaselineParamsError};
pub(crate) use hyperparams::validate as validate_params;
pub use hyperparams::{RobustBaselineParams, RobustBaselineValidParams};
