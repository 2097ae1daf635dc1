//! Robust streaming baseline for one univariate series.
//!
//! The model keeps the last `window_points` finite values in a ring (and the same values sorted)
//! plus an EWMA of the level. A new value is scored against the state *before* it is absorbed:
//!
//! - the expected value is the window median or the EWMA level, whichever is closer to the value
//!   (a point must depart from both to be anomalous, so a trend followed by the EWMA does not
//!   alert while the median lags);
//! - the scale is the largest of `1.4826 * MAD`, `1.2533 * mean absolute deviation` (both around
//!   the median, both estimate the standard deviation of Gaussian noise), `relative_scale_floor *
//!   |median|` and `absolute_scale_floor`, so constant series do not turn tiny changes into alerts;
//! - the raw score is the robust z-score, normalised to 0-100 by [`crate::score`].
//!
//! No season is modelled. Every finite value enters the window, anomalous or not, so after a
//! lasting level shift the median moves to the new level within half a window and alerts stop.
//! The EWMA is updated with the value clipped to `median ± clip_z * scale`, so single spikes barely
//! move it. Non-finite values are never absorbed. Until `warmup_points` values have been absorbed
//! the model does not score.

mod algorithm;
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
